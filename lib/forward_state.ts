/**
 * The forwarding state, kept beside the uploads so that the upload directory
 * itself is the durable queue: one small JSON record per upload in the hidden
 * `FILE-DIR/.accio-forward/`, named by the SHA-256 of the upload's relative
 * path. A record is written whole to a temporary file, flushed, renamed over
 * the old one and the directory flushed, so a crash leaves the old record or
 * the new one, never a mix. An upload without a record has not been
 * forwarded yet.
 *
 * @example
 * ```ts
 * import { ForwardState } from "./forward_state.ts";
 * const state = await ForwardState.open("/save");
 * await state.put({ path: "1.file", key: "site/gw1/1.file", status: "done", size: 5, attempts: 1 });
 * (await state.get("1.file"))?.status; // "done"
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import { describeError, FileError } from "./errors.ts";

/** The state directory's name inside FILE-DIR (hidden: never an upload, never forwarded). */
export const STATE_DIR = ".accio-forward";

/**
 * Where an upload stands: `multipart` (an upload id is recorded and may be
 * open in the store), `done` (stored and verified), `failed` (gave up; tried
 * again at the next start). No record at all means pending.
 */
export type ForwardStatus = "multipart" | "done" | "failed";

/** One upload's forwarding record. */
export interface ForwardRecord {
  /** The upload's path relative to FILE-DIR, `/`-separated. */
  path: string;
  /** Its object key. */
  key: string;
  /** Where it stands. */
  status: ForwardStatus;
  /** Its size in bytes. */
  size: number;
  /** Forward attempts so far (1 for a first attempt). */
  attempts: number;
  /** The open multipart upload (`multipart`). */
  uploadId?: string;
  /** The verified object's ETag (`done`). */
  etag?: string;
  /** Why it gave up (`failed`). */
  reason?: string;
  /** When the record was written (ISO 8601); set by {@link ForwardState.put}. */
  updated?: string;
}

const recordName = (path: string): string => `${createHash("sha256").update(path).digest("hex")}.json`;

/** The records of one upload directory. */
export class ForwardState {
  /** The state directory's path. */
  readonly dir: string;

  private constructor(dir: string) {
    this.dir = dir;
  }

  /**
   * Creates `FILE-DIR/.accio-forward/` if needed and removes temporary files
   * a crash left in it.
   *
   * @throws {FileError} when it cannot be created or read.
   */
  static async open(fileDir: string): Promise<ForwardState> {
    const dir = `${fileDir.replace(/\/+$/, "")}/${STATE_DIR}`;
    try {
      await Deno.mkdir(dir, { recursive: true });
      for await (const entry of Deno.readDir(dir)) {
        if (entry.name.startsWith(".tmp-")) await Deno.remove(`${dir}/${entry.name}`);
      }
    } catch (error) {
      throw new FileError(`cannot use forwarding state directory ${dir}: ${describeError(error)}`, {
        cause: error,
      });
    }
    return new ForwardState(dir);
  }

  /** The record of the upload at `path`, or `undefined` (also for an unreadable record: forward again). */
  async get(path: string): Promise<ForwardRecord | undefined> {
    try {
      const record = JSON.parse(await Deno.readTextFile(`${this.dir}/${recordName(path)}`)) as ForwardRecord;
      return record.path === path ? record : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Replaces the record of `record.path`, durably (temporary file, fsync,
   * rename, fsync of the directory).
   *
   * @throws {FileError} when it cannot be written.
   */
  async put(record: ForwardRecord): Promise<void> {
    const name = recordName(record.path);
    const temporary = `${this.dir}/.tmp-${name}-${crypto.randomUUID()}`;
    const data = new TextEncoder().encode(
      JSON.stringify({ ...record, updated: new Date().toISOString() }) + "\n",
    );
    try {
      {
        using file = await Deno.open(temporary, { write: true, createNew: true });
        for (let done = 0; done < data.length;) done += await file.write(data.subarray(done));
        await file.sync();
      }
      await Deno.rename(temporary, `${this.dir}/${name}`);
      using dir = await Deno.open(this.dir, { read: true });
      await dir.sync();
    } catch (error) {
      await Deno.remove(temporary).catch(() => {});
      throw new FileError(`cannot record forwarding state of ${record.path}: ${describeError(error)}`, {
        cause: error,
      });
    }
  }

  /**
   * The highest `N` of a top-level `N.file` with a record: with
   * `--forward-delete` the local copies are gone, and the server's numbering
   * must continue after this too, or a new upload would get the key of one
   * already forwarded (which is then refused as a conflict, never overwritten).
   */
  async highestNumber(): Promise<number> {
    let highest = 0;
    for await (const record of this.records()) {
      const match = /^([0-9]+)\.file$/.exec(record.path);
      if (match) highest = Math.max(highest, Number(match[1]));
    }
    return highest;
  }

  /** Every readable record, one at a time (records outlive deleted local copies: they are few bytes each). */
  async *records(): AsyncGenerator<ForwardRecord> {
    for await (const entry of Deno.readDir(this.dir)) {
      if (!entry.name.endsWith(".json") || entry.name.startsWith(".")) continue;
      try {
        const record = JSON.parse(await Deno.readTextFile(`${this.dir}/${entry.name}`)) as ForwardRecord;
        if (recordName(record.path) === entry.name) yield record;
      } catch {
        // Unreadable: that upload is forwarded again, which rewrites the same key.
      }
    }
  }
}
