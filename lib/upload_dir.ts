/**
 * The server's upload directory: its lock, numbering, temporary files, the
 * repair of what a killed server left, and the atomic publication of each
 * upload as `<N>.file` (complete data, or exactly `ERROR`) or at its name.
 *
 * An upload is written to `.<N>.file.part` in the directory and becomes
 * visible only when finished, by a hard link that fails rather than replace
 * an existing file; the `.part` name is removed after. Nothing stored is ever
 * written again: `ERROR` is only ever written into an inode that has no other
 * name (link count 1), and a new one is created when that does not hold.
 *
 * It is the first implementation of {@link Store}: the upload session writes
 * through that interface only.
 *
 * At start-up every entry is looked at without following links
 * ({@link UploadDirectory.open}): `N.file` of any type holds number N; a
 * `.N.file.part` that is a link or not a regular file is removed (the name
 * only); one with other names (already published, at `N.file` or at a named
 * path, or linked to a stored file) loses only its `.part` name; one with no
 * other name is an upload cut off by a kill: its name is removed and, unless
 * `N.file` exists, a fresh `N.file` = `ERROR` is made. Numbering continues
 * after the highest number held.
 *
 * @example
 * ```ts
 * import { UploadDirectory } from "./upload_dir.ts";
 * const dir = await UploadDirectory.open("/save");
 * const upload = await dir.createNext();
 * await upload.write(new TextEncoder().encode("hello"));
 * await upload.commit(); // /save/1.file now holds "hello"
 * dir.close();
 * ```
 * @module
 */
import { type DirectoryLock, lockDirectory, openLockedDirectory } from "./dir_lock.ts";
import { describeError, FileError } from "./errors.ts";
import { HeldDirectory } from "./held_dir.ts";
import { ERROR_CONTENT, PartFile, removeQuietly, writeFully } from "./part_file.ts";
import { isStored } from "./idempotent.ts";
import { LocalNumbers, type NumberSource, type RetryableUpload, type Store } from "./store.ts";
import { type NamedTarget, NUMBERED_NAME, prepareNamedTarget, type PrepareOptions } from "./upload_name.ts";

export { ERROR_CONTENT } from "./part_file.ts";

/** The largest upload number handed out: beyond it numbers are no longer exact in JavaScript. */
export const MAX_UPLOAD_NUMBER: number = Number.MAX_SAFE_INTEGER;

const PART_NAME = /^\.([0-9]+)\.file\.part$/;
/** The server's own scratch files (probe, ERROR records); a leftover is removed at start. */
const SCRATCH_PREFIX = ".accio-";
/** Not scratch, though it shares the prefix: the forwarder's durable state (lib/forward_state.ts). */
const FORWARD_STATE = ".accio-forward";
/**
 * The directory of kept prefixes (`server --resumable`, see `resume_store.ts`):
 * the one `.accio-*` entry that start-up leaves alone.
 */
export const RESUME_DIR = ".accio-resume";

/**
 * The record of the highest number that left the visible scan (a named
 * upload, a forwarded and deleted file): a dot name, so never an upload name
 * and never a scratch name.
 */
const NUMBERS_NAME = ".accio.numbers";

/** The name of upload `id`'s file. */
export function uploadFileName(id: number): string {
  return `${id}.file`;
}

function join(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * Makes `temporary` visible as `final` as well, never replacing a file
 * already there (`shownAs` names `final` in the error). The temporary name stays (the caller removes it once it has
 * recorded the publication), except on a file system without hard links,
 * where it is renamed.
 */
async function publish(temporary: string, final: string, shownAs = final): Promise<"linked" | "renamed"> {
  const taken = () => new FileError(`${shownAs} already exists; it was not overwritten`);
  try {
    await Deno.link(temporary, final);
    return "linked";
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) throw taken();
    if (!(error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotSupported)) {
      throw error;
    }
  }
  // A file system without hard links: check, then rename (a narrow race, but no other way).
  if (await exists(final)) throw taken();
  await Deno.rename(temporary, final);
  return "renamed";
}

/**
 * Records upload `id` as `ERROR` in a brand-new file (created exclusively,
 * so no existing inode is ever written), published without replacing.
 */
async function recordError(dir: string, id: number): Promise<void> {
  const scratch = join(dir, `${SCRATCH_PREFIX}error-${id}-${crypto.randomUUID()}`);
  await Deno.writeFile(scratch, ERROR_CONTENT, { createNew: true });
  try {
    await publish(scratch, join(dir, uploadFileName(id)));
  } finally {
    await removeQuietly(scratch);
  }
}

/**
 * Records number `id`, which no upload got, as `ERROR` in the upload
 * directory `dir`: a shared numbering's given-back number below one handed
 * out, when the server stops (so the record has no gap). Never replaces a file.
 *
 * @example
 * ```ts
 * import { recordUnusedNumber } from "./upload_dir.ts";
 * await recordUnusedNumber("/save", 7); // /save/7.file = ERROR
 * ```
 * @throws {FileError} when `id`'s file exists already; other errors when it cannot be written.
 */
export function recordUnusedNumber(dir: string, id: number): Promise<void> {
  return recordError(dir, id);
}

/** What {@link UploadDirectory.open} found and repaired. */
export interface OpenReport {
  /** Numbers of uploads cut off by an earlier run, now recorded as `ERROR`. */
  recovered: number[];
  /** Things worth an operator's attention that did not stop the start (odd leftovers, modes). */
  notes?: string[];
}

/** Options of {@link UploadDirectory.open}. */
export interface OpenOptions {
  /**
   * Prepare for named uploads (holds the directory for {@link UploadFile.useName}).
   *
   * @default {false}
   */
  names?: boolean;
  /**
   * Where numbers come from; told the highest number found at start.
   *
   * @default {new LocalNumbers()}
   */
  numbers?: NumberSource;
  /**
   * Open it as a worker of a server whose main thread has opened it already
   * (locked, repaired, numbered): no second lock, no repair, and numbers no
   * `N.file` will show are recorded by `recordGone` (the main thread's one
   * writer of `.accio.numbers`).
   *
   * @default {undefined}
   */
  attach?: { recordGone(id: number): Promise<void> };
}

/** The directory uploads are saved in. Held (locked) until {@link UploadDirectory.close}. */
export class UploadDirectory implements Store {
  /** The directory's path, as given. */
  readonly path: string;
  readonly #numbers: NumberSource;
  #creating: Promise<unknown> = Promise.resolve();
  readonly #lock: DirectoryLock;
  readonly #root: HeldDirectory | undefined;
  #gone: number;
  #recording: Promise<unknown> = Promise.resolve();
  readonly #recordGoneElsewhere: ((id: number) => Promise<void>) | undefined;

  private constructor(path: string, held: Held) {
    this.path = path;
    this.#numbers = held.numbers;
    this.#lock = held.lock;
    this.#root = held.root;
    this.#gone = held.gone;
    this.#recordGoneElsewhere = held.recordGoneElsewhere;
  }

  /**
   * Checks that `path` is a writable directory, takes its lock (one server
   * per directory), repairs what an earlier run left, and finds the highest
   * upload number in use.
   *
   * @throws {FileError} when the directory is missing, not a directory, not
   * writable, locked by another server, or holds a regular `N.file` above
   * {@link MAX_UPLOAD_NUMBER} (numbering could not continue after it).
   */
  static async open(
    path: string,
    report: OpenReport = { recovered: [] },
    options: OpenOptions = {},
  ): Promise<UploadDirectory> {
    const problem = (what: string, error?: unknown) =>
      new FileError(`cannot use directory "${path}": ${what}${error ? `: ${describeError(error)}` : ""}`);
    await checkDirectory(path, problem);
    // Before anything is repaired: another server's temporary files are uploads in flight.
    const lock = await (options.attach ? openLockedDirectory(path) : lockDirectory(path));
    let root: HeldDirectory | undefined;
    try {
      const numbers = options.numbers ?? new LocalNumbers();
      // A worker's directory was repaired and numbered by the main thread, which holds the lock.
      const gone = options.attach ? 0 : await repairAndNumber(path, report, numbers, problem);
      if (options.names) root = await holdRoot(path);
      return new UploadDirectory(path, {
        numbers,
        lock,
        root,
        gone,
        recordGoneElsewhere: options.attach?.recordGone,
      });
    } catch (error) {
      root?.close();
      lock.release();
      throw error;
    }
  }

  /** The highest upload number handed out or found on disk. */
  get lastId(): number {
    return this.#numbers.highest;
  }

  /**
   * Starts the next upload: creates its temporary file, then hands out its
   * number. A number is only ever given to an upload that has a file, so a
   * failure here (descriptors or disk exhausted, no number left) leaves no
   * gap in the record.
   *
   * @throws {FileError} when the temporary file cannot be created, or every number is used.
   */
  createNext(): Promise<UploadFile> {
    // One creation at a time: the number is claimed only once its file exists.
    const created = this.#creating.then(() => this.#create(this.#numbers.next()));
    this.#creating = created.catch(() => {});
    return created;
  }

  async #create(id: number): Promise<UploadFile> {
    const temporary = await createPart(this.path, id).catch((error) => {
      this.#numbers.release?.(id); // a shared source claimed it: another upload takes it, no gap
      throw error;
    });
    this.#numbers.observe(id);
    return new UploadFile(id, temporary.file, {
      directory: this.path,
      temporaryPath: temporary.path,
      root: this.#root,
      recordGone: (n) => this.recordGone(n),
      syncDirectory: () => this.#lock.sync(),
    });
  }

  /**
   * Records durably that number `id` is used although no `N.file` will show
   * it (a named upload, a file forwarded and deleted), so that a restart never
   * hands it out again. Resolves once the record is on disk.
   *
   * @throws {FileError} when the record cannot be written.
   */
  recordGone(id: number): Promise<void> {
    if (this.#recordGoneElsewhere) return this.#recordGoneElsewhere(id);
    const written = this.#recording.then(async () => {
      if (id <= this.#gone) return;
      await writeGone(this.path, id);
      await this.#lock.sync();
      this.#gone = id;
    });
    this.#recording = written.catch(() => {});
    return written;
  }

  /** Releases the directory's lock and held descriptor. Uploads still running keep their own. */
  close(): void {
    this.#root?.close();
    this.#lock.release();
  }
}

type Problem = (what: string, error?: unknown) => FileError;

/** What an {@link UploadDirectory} holds besides its path. */
interface Held {
  numbers: NumberSource;
  lock: DirectoryLock;
  root: HeldDirectory | undefined;
  /** The number recorded in {@link NUMBERS_NAME}. */
  gone: number;
  recordGoneElsewhere: ((id: number) => Promise<void>) | undefined;
}

/** The start-up of the directory's owner: probe, repair, and numbering after the highest held; returns the recorded gone number. */
async function repairAndNumber(
  path: string,
  report: OpenReport,
  numbers: NumberSource,
  problem: Problem,
): Promise<number> {
  await probeWritable(path, problem);
  const gone = await readGone(path, problem);
  numbers.observe(Math.max(gone, await scanAndRepair(path, report, problem)));
  return gone;
}

/** Throws `problem(...)` unless `path` is a directory. */
async function checkDirectory(path: string, problem: Problem): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (error) {
    throw error instanceof Deno.errors.NotFound
      ? problem("it does not exist")
      : problem("cannot read it", error);
  }
  if (!info.isDirectory) throw problem("it is not a directory");
}

/**
 * Creates upload `id`'s temporary file in `dir`, `ERROR` reserved at its
 * start; nothing is left behind when that fails.
 *
 * @throws {FileError} when `id` is above {@link MAX_UPLOAD_NUMBER} or the file cannot be made.
 */
async function createPart(dir: string, id: number): Promise<{ file: Deno.FsFile; path: string }> {
  if (id > MAX_UPLOAD_NUMBER) {
    throw new FileError(
      `no upload number left: ${uploadFileName(MAX_UPLOAD_NUMBER)} is the largest this server hands out`,
    );
  }
  const temporary = join(dir, `.${id}.file.part`);
  let file: Deno.FsFile;
  try {
    file = await Deno.open(temporary, { write: true, createNew: true });
  } catch (error) {
    throw new FileError(`cannot create ${temporary}: ${describeError(error)}`, { cause: error });
  }
  try {
    await reserveError(file);
  } catch (error) {
    file.close();
    await removeQuietly(temporary);
    throw new FileError(`cannot create ${temporary}: ${describeError(error)}`, { cause: error });
  }
  return { file, path: temporary };
}

/** The number in {@link NUMBERS_NAME} (0 when there is none); anything odd stops the start. */
async function readGone(path: string, problem: Problem): Promise<number> {
  let content: string;
  try {
    content = await Deno.readTextFile(join(path, NUMBERS_NAME));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return 0;
    throw problem(`cannot read ${NUMBERS_NAME}`, error);
  }
  const id = /^[0-9]{1,16}\n?$/.test(content) ? Number(content.trim()) : NaN;
  // Guessing could hand a used number out again: the operator decides (the highest number used, or remove it).
  if (!(id <= MAX_UPLOAD_NUMBER)) {
    throw problem(
      `${NUMBERS_NAME} (the highest number used by named uploads) does not hold a number; ` +
        "write the highest upload number used into it, or remove it, to start",
    );
  }
  return id;
}

/** Replaces {@link NUMBERS_NAME} atomically: a scratch file, flushed, renamed over it. */
async function writeGone(path: string, id: number): Promise<void> {
  const scratch = join(path, `${SCRATCH_PREFIX}numbers-${crypto.randomUUID()}`);
  try {
    await using file = await Deno.open(scratch, { write: true, createNew: true });
    await writeFully(file, new TextEncoder().encode(`${id}\n`));
    await file.syncData();
    await Deno.rename(scratch, join(path, NUMBERS_NAME));
  } catch (error) {
    await removeQuietly(scratch);
    throw new FileError(`cannot record number ${id} in ${NUMBERS_NAME}: ${describeError(error)}`, {
      cause: error,
    });
  }
}

async function probeWritable(path: string, problem: Problem): Promise<void> {
  try {
    const probe = await Deno.makeTempFile({ dir: path, prefix: `${SCRATCH_PREFIX}probe-` });
    await Deno.remove(probe);
  } catch (error) {
    throw problem("it is not writable", error);
  }
}

function holdRoot(path: string): Promise<HeldDirectory> {
  return HeldDirectory.openRoot(path.replace(/(?<=.)\/+$/, ""));
}

/** Numbering and repair at start-up; returns the highest number held. */
async function scanAndRepair(path: string, report: OpenReport, problem: Problem): Promise<number> {
  let lastId = 0;
  const parts: { name: string; id: bigint }[] = [];
  const scratch: string[] = [];
  try {
    for await (const entry of Deno.readDir(path)) {
      const final = NUMBERED_NAME.exec(entry.name);
      const part = PART_NAME.exec(entry.name);
      if (final) lastId = Math.max(lastId, await numberHeld(path, entry.name, BigInt(final[1]), problem));
      if (part) parts.push({ name: entry.name, id: BigInt(part[1]) });
      if (
        entry.name.startsWith(SCRATCH_PREFIX) && entry.name !== FORWARD_STATE && entry.name !== RESUME_DIR
      ) {
        scratch.push(entry.name);
      }
    }
  } catch (error) {
    if (error instanceof FileError) throw error;
    throw problem("cannot list it", error);
  }
  for (const name of scratch) await removeLeftover(path, name, report);
  for (const { name, id } of parts) {
    if (id <= MAX_UPLOAD_NUMBER) lastId = Math.max(lastId, Number(id));
    try {
      if (await repairPart(path, name, id)) report.recovered.push(Number(id));
    } catch (error) {
      (report.notes ??= []).push(`could not repair ${name}: ${describeError(error)}`);
    }
  }
  return lastId;
}

/**
 * The number an entry `N.file` holds. Compared as a BigInt: above
 * {@link MAX_UPLOAD_NUMBER}, `Number()` would round and numbering would stop
 * advancing. A regular file up there stops the start (the server could not
 * continue after it); anything else up there is ignored (never handed out,
 * so it can never collide).
 */
async function numberHeld(path: string, name: string, id: bigint, problem: Problem): Promise<number> {
  if (id <= MAX_UPLOAD_NUMBER) return Number(id);
  const info = await Deno.lstat(join(path, name));
  if (info.isFile) {
    throw problem(
      `it holds ${name}, numbered above ${MAX_UPLOAD_NUMBER}, the largest number this server can ` +
        "continue after; move that file elsewhere to start",
    );
  }
  return 0;
}

/** Removes the name `name` (a link itself, or an empty directory), never what it points to. */
async function removeLeftover(path: string, name: string, report: OpenReport): Promise<void> {
  try {
    await Deno.remove(join(path, name));
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) {
      (report.notes ??= []).push(`left ${name} alone: ${describeError(error)}`);
    }
  }
}

/**
 * Repairs one leftover `.N.file.part` by its actual name. Never opens it:
 * only its name is removed. Returns whether `N.file` = `ERROR` was recorded.
 */
async function repairPart(path: string, name: string, id: bigint): Promise<boolean> {
  const entry = join(path, name);
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(entry);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
  // A link, a directory, a FIFO: never ours, never followed; a non-empty directory stays (and throws).
  // With another name it was already published (or is someone's stored file): nothing was cut off.
  const cutOff = info.isFile && (info.nlink ?? 1) === 1 && id <= MAX_UPLOAD_NUMBER &&
    !(await exists(join(path, uploadFileName(Number(id)))));
  // ERROR is linked before the .part name goes: a kill in between leaves a .part the next start repairs.
  if (cutOff) await recordError(path, Number(id));
  await Deno.remove(entry);
  return cutOff;
}

/**
 * Writes `ERROR` into a new temporary file and goes back to its start: the
 * data overwrites it, and a failure later needs no new block (a full disk
 * cannot take the space `ERROR` needs once the upload has begun).
 */
async function reserveError(file: Deno.FsFile): Promise<void> {
  await writeFully(file, ERROR_CONTENT);
  await file.seek(0, Deno.SeekMode.Start);
}

/** Where an {@link UploadFile} lives; given by {@link UploadDirectory.createNext}. */
export interface UploadPlace {
  /** The upload directory's path. */
  directory: string;
  /** The temporary file's path. */
  temporaryPath: string;
  /** The held upload directory, for named uploads. */
  root?: HeldDirectory;
  /** Records a number no `N.file` will show (before a named upload is published). */
  recordGone?: (id: number) => Promise<void>;
  /** Flushes the upload directory's entries (after a name was linked there). */
  syncDirectory?: () => Promise<void>;
}

/** One upload in progress. Ends with exactly one of {@link commit} or {@link fail}. */
export class UploadFile implements RetryableUpload {
  /** The upload's number. */
  readonly id: number;
  /** Where the upload becomes visible, unless it is named. */
  readonly finalPath: string;
  readonly #place: UploadPlace;
  readonly #part: PartFile;
  #target: NamedTarget | undefined;

  /** Use {@link UploadDirectory.createNext}. */
  constructor(id: number, file: Deno.FsFile, place: UploadPlace) {
    this.id = id;
    this.#part = new PartFile(file, place.temporaryPath);
    this.#place = place;
    this.finalPath = join(place.directory, uploadFileName(id));
  }

  /** Bytes written so far. */
  get bytes(): number {
    return this.#part.bytes;
  }

  /**
   * Makes this a named upload: creates and holds the directories of the
   * checked name `segments` under the upload directory. Returns the path it
   * will be stored at.
   *
   * @throws {ProtocolError} when the name is refused; {FileError} when its directories cannot be made.
   */
  async useName(segments: readonly string[], options: PrepareOptions = {}): Promise<string> {
    if (!this.#place.root) throw new FileError("named uploads are not enabled on this directory");
    this.#target?.release();
    return (this.#target = await prepareNamedTarget(this.#place.root, segments, options)).path;
  }

  /** What the name already is (not followed), when {@link useName} was allowed to find it existing. */
  get existing(): Deno.FileInfo | undefined {
    return this.#target?.existing;
  }

  /** Whether the name holds a regular file of exactly `length` bytes with SHA-256 `sha256`. */
  holds(length: number, sha256: string): Promise<boolean> {
    return this.#target ? isStored(this.#target, length, sha256) : Promise.resolve(false);
  }

  /**
   * Ends the upload without a file of its own: the number is recorded as
   * used (no `N.file` will show it), the temporary file goes, and nothing is
   * published. For a retry whose file was found already stored at its name:
   * that file is this number's too.
   *
   * @throws {FileError} when the number cannot be recorded (then {@link fail} still ends it).
   */
  async discard(): Promise<void> {
    if (this.#part.published) throw new FileError("upload already finished");
    await this.#place.recordGone?.(this.id);
    await this.#part.finish(); // nothing of it may be written any more
    this.#release();
  }

  /**
   * Goes on from a kept prefix: `prefixPath`, a regular file with no other
   * name in the upload directory's tree, replaces this upload's temporary
   * file (still empty), and writes go on after its end. Returns its size.
   *
   * @throws {FileError} when data was written already, or the prefix cannot be taken over.
   */
  adopt(prefixPath: string): Promise<number> {
    return this.#part.adopt(prefixPath);
  }

  /**
   * Fails like {@link fail}, but keeps the data for a later attempt: `N.file`
   * = `ERROR` is recorded first (in a new file), then the flushed temporary
   * file is renamed to `dest`. A kill in between loses the data, never the
   * record. Returns what {@link fail} returns.
   */
  async failKeeping(dest: string): Promise<string | undefined> {
    const usable = this.#part.handle && !this.#part.published && !this.#part.detached;
    const kept = usable ? await keepPart(this.#part, this.#place.directory, this.id, dest) : false;
    if (kept === false) return await this.fail();
    this.#release();
    return kept;
  }

  /** Appends `chunk` to the temporary file. */
  write(chunk: Uint8Array): Promise<void> {
    return this.#part.write(chunk);
  }

  #release(): void {
    this.#part.close();
    this.#target?.release();
  }

  /**
   * Flushes the data to disk and publishes it as `N.file`, or at its name.
   * On failure the file stays open for {@link fail}.
   */
  async commit(): Promise<void> {
    if (!this.#part.handle || this.#part.published) throw new FileError("upload already finished");
    await savePart(this.#part, this.#place, this.id, this.#target);
    await this.#part.finish();
    this.#release();
  }

  /**
   * Discards the data and publishes `ERROR` instead. Never throws, and never
   * touches a file already published: when even `ERROR` cannot be written
   * (directory gone, descriptors exhausted) the temporary file is left for the
   * next start to repair, and the returned reason says why, for the log.
   */
  async fail(): Promise<string | undefined> {
    const reason = this.#part.published
      ? `${this.#target?.path ?? this.finalPath} was already saved; it is left as it is`
      : await failPart(this.#part, this.#place.directory, this.id, this.finalPath);
    this.#release();
    return reason;
  }
}

/**
 * Flushes `part` and publishes it at `target` (once `id` is recorded as
 * gone), or as `id`'s `N.file`. Every failure is a {@link FileError}.
 */
async function savePart(
  part: PartFile,
  place: UploadPlace,
  id: number,
  target: NamedTarget | undefined,
): Promise<void> {
  const final = join(place.directory, uploadFileName(id));
  try {
    await part.flush();
    // Before the name is visible: from then on no restart may hand this number out again.
    if (target) await place.recordGone?.(id);
    // Before the client is answered, the new name is flushed too: the upload survives a crash.
    if (target) {
      await publishNamed(part.handle!, place.temporaryPath, target, () => part.detach());
      await target.dir.sync();
    } else {
      await publish(place.temporaryPath, final);
      await place.syncDirectory?.();
    }
  } catch (error) {
    if (error instanceof FileError) throw error;
    throw new FileError(`cannot save ${target?.path ?? final}: ${describeError(error)}`, { cause: error });
  }
}

/**
 * Records upload `id` as `ERROR` in a new file, then renames the flushed
 * temporary file to `dest`. Returns `false` when `ERROR` could not be
 * recorded (nothing kept: the caller fails the upload instead), else why the
 * data could not be kept (the temporary file then goes), or `undefined`.
 */
async function keepPart(
  part: PartFile,
  directory: string,
  id: number,
  dest: string,
): Promise<string | undefined | false> {
  try {
    await part.flush();
    await recordError(directory, id);
  } catch {
    return false;
  }
  try {
    await Deno.rename(part.path, dest);
    return undefined;
  } catch (error) {
    await removeQuietly(part.path);
    return `could not keep the received data: ${describeError(error)}`;
  }
}

/**
 * Records upload `id` as `ERROR`: in place when `part` is open, not
 * detached, and its inode has no other name, else in a new file. Never throws:
 * returns why not, for the log.
 */
async function failPart(
  part: PartFile,
  directory: string,
  id: number,
  final: string,
): Promise<string | undefined> {
  const file = part.handle;
  try {
    if (file && !part.detached && (await file.stat()).nlink === 1) {
      // Written through the open handle (no new descriptor: works under EMFILE), then published.
      await part.writeError();
      await publish(part.path, final);
      await removeQuietly(part.path);
    } else {
      // This inode may be visible elsewhere: never write it; record ERROR in a new file,
      // and only then drop the temporary name (a kill in between leaves it for the next start).
      await recordError(directory, id);
      await removeQuietly(part.path);
    }
    return undefined;
  } catch (error) {
    // The temporary name stays: the next start records this number as ERROR.
    return `could not record ERROR in ${final}: ${describeError(error)}`;
  }
}

/**
 * Links a named upload's data into the held directory of its name, then
 * checks that it landed there and that the directory is still inside the
 * upload directory; if not, takes it back and empties the inode (after
 * `detach`: the inode may have had another name), so that no copy anywhere
 * keeps the bytes.
 */
async function publishNamed(
  file: Deno.FsFile,
  temporary: string,
  target: NamedTarget,
  detach: () => void,
): Promise<void> {
  const moved = () =>
    new FileError(`the directory of ${target.path} was moved or replaced during the upload`);
  if (!(await target.dir.isInside())) throw moved();
  const entry = target.dir.entry(target.leaf);
  const how = await publish(temporary, entry, target.path);
  const mine = await file.stat();
  const there = await Deno.lstat(entry).catch(() => undefined);
  const atEntry = there?.ino === mine.ino && there?.dev === mine.dev;
  if (atEntry && (how === "renamed" || mine.nlink === 2) && (await target.dir.isInside())) return;
  detach();
  if (atEntry) await removeQuietly(entry);
  await file.truncate(0);
  throw moved();
}
