/**
 * Where uploads are kept: the interface an upload session writes through
 * ({@link Store}, {@link StoredUpload}), and where their numbers come from
 * ({@link NumberSource}). The local directory ({@link UploadDirectory}) is the
 * first implementation; others (forwarding to object storage, several
 * workers on one numbering) fit behind the same interface without touching
 * the session.
 *
 * An upload's life in a store:
 *
 * 1. {@link Store.createNext} gives it the next number, only once it can take
 *    data, so a failure there uses no number (the connection is closed
 *    before `accio\r\n`);
 * 2. {@link StoredUpload.useName}, optionally, makes it a named upload;
 * 3. its bytes go through {@link StoredUpload.write};
 * 4. it ends with exactly one of {@link StoredUpload.commit} (complete,
 *    durable, visible) or {@link StoredUpload.fail} (recorded as `ERROR`
 *    under its number), or, for a {@link RetryableUpload}, `discard` (found
 *    stored already) or `failKeeping` (`ERROR`, its data kept to resume).
 *
 * @example
 * ```ts
 * import type { Store } from "./store.ts";
 * async function saveHello(store: Store): Promise<string> {
 *   const upload = await store.createNext();
 *   try {
 *     await upload.write(new TextEncoder().encode("hello"));
 *     await upload.commit();
 *     return upload.finalPath;
 *   } catch (error) {
 *     await upload.fail();
 *     throw error;
 *   }
 * }
 * ```
 * @module
 */
import type { ByteSink } from "./receiver.ts";
import type { PrepareOptions } from "./upload_name.ts";

/** Where uploads are created. */
export interface Store {
  /**
   * Starts the next upload and hands out its number. A number is handed out
   * only to an upload that can take data: when this throws, no number was
   * used.
   *
   * @throws {FileError} when the upload cannot be created (descriptors or disk exhausted, no number left).
   */
  createNext(): Promise<StoredUpload>;
}

/** One upload in a {@link Store}. Ends with exactly one of {@link commit} or {@link fail}. */
export interface StoredUpload extends ByteSink {
  /** The upload's number. */
  readonly id: number;
  /** Where a numbered upload becomes visible, and where a failed one (named or not) holds `ERROR`. */
  readonly finalPath: string;
  /** Bytes written so far. */
  readonly bytes: number;
  /**
   * Makes this a named upload, stored at the checked name `segments`.
   * Returns the path it will be stored at.
   *
   * @throws {ProtocolError} when the name is refused; {FileError} when it cannot be prepared.
   */
  useName(segments: readonly string[], options?: PrepareOptions): Promise<string>;
  /** Appends `chunk`; the buffer may be reused once the promise settles. */
  write(chunk: Uint8Array): Promise<void>;
  /** Makes the upload durable and visible. On failure, {@link fail} still ends it. */
  commit(): Promise<void>;
  /**
   * Records the upload as `ERROR`. Never throws, and never touches an upload
   * already committed; returns why `ERROR` could not be recorded, if so.
   */
  fail(): Promise<string | undefined>;
}

/**
 * What a store offers for uploads that may be retries (named, verified:
 * `retry_session.ts`). A store without them serves such uploads like any
 * other: no idempotent `ok`, nothing kept to resume.
 */
export interface RetryableUpload extends StoredUpload {
  /** What the name already is, when {@link StoredUpload.useName} was allowed to find it existing. */
  readonly existing: { isFile: boolean; size: number } | undefined;
  /** Whether the name holds exactly `length` bytes with SHA-256 `sha256`. */
  holds(length: number, sha256: string): Promise<boolean>;
  /** Ends the upload without a file of its own: its name already holds it, so that file is its number's. */
  discard(): Promise<void>;
  /** Goes on from a kept prefix at `path` (taken over); returns its length. */
  adopt(path: string): Promise<number>;
  /** Records `ERROR` like {@link StoredUpload.fail}, and keeps the data at `path` for a later attempt. */
  failKeeping(path: string): Promise<string | undefined>;
}

/** Whether `upload` offers {@link RetryableUpload}'s methods. */
export function offersRetries(upload: StoredUpload): upload is RetryableUpload {
  const candidate = upload as Partial<RetryableUpload>;
  return typeof candidate.holds === "function" && typeof candidate.adopt === "function" &&
    typeof candidate.discard === "function" && typeof candidate.failKeeping === "function";
}

/**
 * Where upload numbers come from. A store asks {@link next} for a number,
 * creates the upload, and only then reports the number used with
 * {@link observe}; until then the number is a proposal, which a failed
 * creation leaves to the next attempt, so that numbers have no gaps.
 *
 * {@link LocalNumbers}, a counter in memory, serves one process. A source
 * shared by several workers (`SharedNumbers`, `shared_numbers.ts`) hands out
 * each number once in `next()`; a store whose creation failed gives the number
 * back with {@link release}, for the next upload in any worker.
 */
export interface NumberSource {
  /** The number for the next upload. */
  next(): number;
  /** Records that `id` is in use (found at start, or just created): it is never proposed again. */
  observe(id: number): void;
  /** The highest number in use. */
  readonly highest: number;
  /** Gives back a number from {@link next} that no upload got (a source whose `next()` claims). */
  release?(id: number): void;
}

/**
 * The numbering of one process: the highest number in use, plus one.
 *
 * @example
 * ```ts
 * import { LocalNumbers } from "./store.ts";
 * const numbers = new LocalNumbers();
 * numbers.observe(41); // found 41.file at start
 * numbers.next(); // 42, until observe(42) says it was used
 * ```
 */
export class LocalNumbers implements NumberSource {
  #highest = 0;

  /** The number after the highest in use. */
  next(): number {
    return this.#highest + 1;
  }

  /** Records `id` as used. */
  observe(id: number): void {
    this.#highest = Math.max(this.#highest, id);
  }

  /** The highest number in use, 0 before any. */
  get highest(): number {
    return this.#highest;
  }
}
