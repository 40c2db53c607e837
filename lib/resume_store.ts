/**
 * The prefixes a `--resumable` server keeps of broken named, verified
 * uploads, so that the client's next attempt sends only the rest.
 *
 * They live in `FILE-DIR/.accio-resume/`, a hidden directory (no client
 * name can reach it, and no upload number is ever read from it), one regular
 * file per upload, named by {@link ResumeStore.keyOf}: the SHA-256 of the
 * name, the length and the file's SHA-256 together, so nothing a client
 * chooses becomes a path. A prefix is never visible as an upload and never
 * counted as one.
 *
 * Bounded three ways: at most `maxCount` prefixes, `maxBytes` bytes in all
 * (the oldest go first to make room; a prefix larger than the bound alone is
 * not kept), and `windowMs` of age since its last byte arrived. Expired ones
 * are removed at start and then periodically (every half window, at most a
 * minute apart), and a lookup never hands out an expired one. Entries that
 * are not such files are removed (the name only: nothing is followed).
 *
 * One connection at a time per key ({@link ResumeStore.lock}): a second
 * connection for the same upload is refused as `busy` (transient), so two
 * attempts never write one prefix.
 *
 * @example
 * ```ts
 * import { ResumeStore } from "./resume_store.ts";
 * const store = await ResumeStore.open("/save", { windowMs: 86_400_000, maxCount: 100, maxBytes: 2 ** 33 });
 * const key = ResumeStore.keyOf("node7/data.bin", 20480, "9f86...0a08".padEnd(64, "0"));
 * const release = store.lock(key);
 * console.log(await store.held(key)); // 0: nothing kept yet
 * release?.();
 * store.close();
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import { describeError, FileError } from "./errors.ts";
import { RESUME_DIR } from "./upload_dir.ts";

/** Bounds of a {@link ResumeStore}. */
export interface ResumeStoreOptions {
  /** How long a prefix is kept after its last byte arrived, in ms. */
  windowMs: number;
  /** Most prefixes kept at once. */
  maxCount: number;
  /** Most bytes kept in all. */
  maxBytes: number;
  /** Called with problems worth an operator's attention (a name that could not be removed). */
  onLog?: (message: string) => void;
}

/** Default of `--resume-window`: a day. */
export const DEFAULT_RESUME_WINDOW_MS = 86_400_000;
/** Default of `--resume-max-count`. */
export const DEFAULT_RESUME_MAX_COUNT = 100;
/** Default of `--resume-max-bytes`: 8 GiB. */
export const DEFAULT_RESUME_MAX_BYTES = 8 * 2 ** 30;

const KEY = /^[0-9a-f]{64}$/;

interface Entry {
  size: number;
  /** When its last byte arrived (the file's mtime), in ms since the epoch. */
  keptAt: number;
}

/** The kept prefixes of one upload directory. */
export class ResumeStore {
  /** The directory the prefixes are in. */
  readonly path: string;
  readonly #options: ResumeStoreOptions;
  readonly #entries: Map<string, Entry>;
  readonly #locked = new Set<string>();
  #timer: ReturnType<typeof setInterval> | undefined;

  private constructor(path: string, options: ResumeStoreOptions, entries: Map<string, Entry>) {
    this.path = path;
    this.#options = options;
    this.#entries = entries;
  }

  /**
   * Opens (creating it if needed) the store of the upload directory
   * `directory`, indexes what an earlier run kept, and drops what expired.
   *
   * @throws {FileError} when `.accio-resume` is not a directory or cannot be made.
   */
  static async open(directory: string, options: ResumeStoreOptions): Promise<ResumeStore> {
    const path = `${directory.replace(/\/+$/, "")}/${RESUME_DIR}`;
    await makeStoreDirectory(path);
    const store = new ResumeStore(path, options, await scanKept(path, options.onLog));
    await store.sweep();
    const every = Math.min(60_000, Math.max(500, options.windowMs / 2));
    store.#timer = setInterval(() => store.sweep().catch(() => {}), every);
    Deno.unrefTimer(store.#timer); // a pending sweep never keeps the process alive
    return store;
  }

  /** The key of an upload: SHA-256 of its name, length and SHA-256, as hex. */
  static keyOf(name: string, length: number, sha256: string): string {
    return createHash("sha256").update(`${name}\0${length}\0${sha256}`).digest("hex");
  }

  #file(key: string): string {
    return `${this.path}/${key}`;
  }

  async #removeName(name: string): Promise<void> {
    this.#entries.delete(name);
    await removeLogged(this.#file(name), this.#options.onLog);
  }

  /** Prefixes kept, and their bytes in all. */
  get usage(): { count: number; bytes: number } {
    let bytes = 0;
    for (const { size } of this.#entries.values()) bytes += size;
    return { count: this.#entries.size, bytes };
  }

  /** Removes every prefix older than the window, except those a connection holds. */
  async sweep(): Promise<void> {
    const oldest = Date.now() - this.#options.windowMs;
    for (const [key, { keptAt }] of [...this.#entries]) {
      if (keptAt < oldest && !this.#locked.has(key)) await this.#removeName(key);
    }
  }

  /** Holds `key` for one connection; returns the release, or `undefined` when another connection holds it. */
  lock(key: string): (() => void) | undefined {
    if (this.#locked.has(key)) return undefined;
    this.#locked.add(key);
    return () => this.#locked.delete(key);
  }

  /** Bytes kept under `key` (a locked one): 0 when nothing is, or it expired (then it is removed). */
  async held(key: string): Promise<number> {
    const entry = this.#entries.get(key);
    if (!entry) return 0;
    if (entry.keptAt < Date.now() - this.#options.windowMs) {
      await this.#removeName(key);
      return 0;
    }
    return entry.size;
  }

  /** Hands the prefix under `key` to the connection resuming it: its path, to be taken over at once. */
  take(key: string): string {
    this.#entries.delete(key);
    return this.#file(key);
  }

  /** Drops the prefix under `key`, if any (its upload was stored, or it cannot be resumed). */
  async drop(key: string): Promise<void> {
    if (this.#entries.has(key)) await this.#removeName(key);
  }

  /**
   * Makes room for `size` bytes under `key`, removing the oldest prefixes of
   * other uploads as needed; returns the path to keep them at, or
   * `undefined` when they may not be kept (larger than the bound, or no room
   * without touching prefixes in use). Call {@link kept} once they are there.
   */
  async makeRoom(key: string, size: number): Promise<string | undefined> {
    const { maxBytes, maxCount } = this.#options;
    if (size > maxBytes || maxCount < 1) return undefined;
    await this.drop(key);
    const byAge = [...this.#entries].filter(([k]) => !this.#locked.has(k)).sort((a, b) =>
      a[1].keptAt - b[1].keptAt
    );
    while (this.#entries.size + 1 > maxCount || this.usage.bytes + size > maxBytes) {
      const oldest = byAge.shift();
      if (!oldest) return undefined;
      await this.#removeName(oldest[0]);
    }
    return this.#file(key);
  }

  /** Records that `size` bytes are kept under `key` (at the path {@link makeRoom} gave). */
  kept(key: string, size: number): void {
    this.#entries.set(key, { size, keptAt: Date.now() });
  }

  /** Stops the periodic sweep. The prefixes stay on disk for the next run. */
  close(): void {
    clearInterval(this.#timer);
  }
}

/** Makes the store's directory `path` unless it is one already (a link or a file is never used). */
async function makeStoreDirectory(path: string): Promise<void> {
  try {
    const info = await Deno.lstat(path).catch((error) => {
      if (error instanceof Deno.errors.NotFound) return undefined;
      throw error;
    });
    if (info === undefined) await Deno.mkdir(path, { mode: 0o700 });
    else if (!info.isDirectory) throw new Error("it is not a directory (a link or a file is never used)");
  } catch (error) {
    throw new FileError(`cannot keep resumable uploads in "${path}": ${describeError(error)}`);
  }
}

/** Indexes the prefixes an earlier run kept in `path`; anything else there is removed (the name only). */
async function scanKept(path: string, onLog?: (message: string) => void): Promise<Map<string, Entry>> {
  const entries = new Map<string, Entry>();
  for await (const entry of Deno.readDir(path)) {
    const file = `${path}/${entry.name}`;
    const info = await Deno.lstat(file).catch(() => undefined);
    if (KEY.test(entry.name) && info?.isFile && (info.nlink ?? 1) === 1) {
      entries.set(entry.name, { size: info.size, keptAt: info.mtime?.getTime() ?? Date.now() });
    } else if (info) {
      await removeLogged(file, onLog);
    }
  }
  return entries;
}

/** Removes `file`; a failure other than its being gone already is told to `onLog`. */
async function removeLogged(file: string, onLog?: (message: string) => void): Promise<void> {
  try {
    await Deno.remove(file);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) {
      onLog?.(`could not remove ${file}: ${describeError(error)}`);
    }
  }
}
