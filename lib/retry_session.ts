/**
 * What the server does for a named, verified upload (headers `name`,
 * `length`, `sha256`), the kind a client may send again: it may find its
 * file already stored (an idempotent retry: `idempotent.ts`), ask where to go
 * on from (`resume: yes`), and leave its received prefix behind when it
 * breaks (`server --resumable`: `resume_store.ts`).
 *
 * The upload session (`upload_session.ts`) calls it at three points:
 * {@link RetrySession.begin} after the header (locks the upload, refuses a
 * name holding another file, answers `offset <N>`, takes over a kept
 * prefix), {@link RetrySession.publish} once the data is checked (stores it,
 * or finds it stored), and {@link RetrySession.fail} when it broke (keeps
 * the prefix, or records `ERROR` as usual). Every path ends with
 * {@link RetrySession.release}. It works through the store's
 * {@link RetryableUpload} methods; with a store that has none, such an
 * upload is served like any other.
 *
 * @example
 * ```ts
 * import { RetrySession } from "./retry_session.ts";
 * import type { StoredUpload } from "./store.ts";
 * declare const upload: StoredUpload, conn: Socket;
 * const session = RetrySession.for({ name: "a.bin", length: 3, sha256: "ab".repeat(32), resume: true });
 * const prefixHash = await session?.begin(upload, conn, { earlyBytes: 0, timeoutMs: 10_000, maxBytes: Infinity });
 * ```
 * @module
 */
import { createHash, type Hash } from "node:crypto";
import { LimitError, ProtocolError } from "./errors.ts";
import { isNamedVerified, REASON_BUSY, type UploadHeaders } from "./headers.ts";
import { existsError, mayBeStored } from "./idempotent.ts";
import { formatOffsetLine } from "./resume_offset.ts";
import { ResumeStore } from "./resume_store.ts";
import { type Socket, writeAll } from "./socket_io.ts";
import { offersRetries, type RetryableUpload, type StoredUpload } from "./store.ts";

/** Where the connection stands when {@link RetrySession.begin} runs. */
export interface BeginContext {
  /** File bytes that arrived with the header (a resuming client must send none before the offset). */
  earlyBytes: number;
  /** The idle timeout, for writing the offset line. */
  timeoutMs: number;
  /** The server's largest upload: a longer announced length is refused at once. */
  maxBytes: number;
}

/** How {@link RetrySession.publish} ended: stored now, or found stored by an earlier connection. */
export type Published = "stored" | "already-stored";

/** The log's reason for a retry found already stored: saved, and nothing written. */
export const ALREADY_STORED =
  "already stored: the name holds exactly this length and SHA-256; nothing written";

/** Headers of a named, verified upload. */
type RetryHeaders = UploadHeaders & { name: string; length: number; sha256: string };

/** The retry-safe handling of one named, verified upload. */
export class RetrySession {
  readonly #headers: RetryHeaders;
  readonly #store: ResumeStore | undefined;
  readonly #key: string | undefined;
  #release: (() => void) | undefined;
  #upload: StoredUpload | undefined;
  /** The upload, when its store offers what retries need. */
  #retryable: RetryableUpload | undefined;
  /** The name holds a file of the right length: it may be this very upload, stored before. */
  #candidate = false;
  /** Bytes the server held before this connection's data (the offset it answered). */
  offset = 0;

  private constructor(headers: RetryHeaders, store: ResumeStore | undefined) {
    this.#headers = headers;
    this.#store = store;
    this.#key = store ? ResumeStore.keyOf(headers.name, headers.length, headers.sha256) : undefined;
  }

  /**
   * The session for these headers: `undefined` unless they name a verified
   * upload. `store` is the server's, with `--resumable`.
   *
   * @throws {ProtocolError} for `resume` without `name`, `length` and `sha256`.
   */
  static for(headers: UploadHeaders, store?: ResumeStore): RetrySession | undefined {
    if (!isNamedVerified(headers)) {
      if (headers.resume) throw new ProtocolError("resume needs the name, length and sha256 headers");
      return undefined;
    }
    return new RetrySession(headers as RetryHeaders, store);
  }

  /**
   * After the header, before any data is stored: locks the upload (`busy`
   * when another connection has it), refuses a name that holds a different
   * file, and for `resume` answers `offset <N>`, taking over a kept prefix.
   * Returns the hash of that prefix, read from its disk, for the received
   * bytes to go on from.
   *
   * @throws {ProtocolError} {LimitError} refusals, said in the receipt.
   */
  async begin(upload: StoredUpload, conn: Socket, context: BeginContext): Promise<Hash | undefined> {
    this.#upload = upload;
    this.#retryable = offersRetries(upload) ? upload : undefined;
    const { name, length, resume } = this.#headers;
    if (length > context.maxBytes) {
      throw new LimitError(`upload larger than the limit of ${context.maxBytes} bytes`);
    }
    if (this.#key !== undefined) this.#release = lockUpload(this.#store!, this.#key, name);
    this.#candidate = isCandidate(this.#retryable?.existing, length, name);
    if (!resume) return undefined;
    if (context.earlyBytes > 0) throw new ProtocolError("file data sent before the server's offset line");
    const prefix = this.#candidate
      ? undefined
      : await takePrefix(this.#store, this.#key, this.#retryable, length);
    this.offset = this.#candidate ? length : prefix?.bytes ?? 0;
    await writeAll(conn, formatOffsetLine(this.offset), context.timeoutMs, "the resume offset");
    return prefix?.hash;
  }

  /**
   * Whether the file bytes need their own SHA-256 check: not when the server
   * answered with the whole length (the name already held the file: the
   * check is then {@link publish}'s).
   */
  get checksReceivedBytes(): boolean {
    return !(this.#candidate && this.#headers.resume);
  }

  /**
   * Publishes the checked upload at its name, or finds it already stored
   * there by an earlier connection (then this connection's temporary file is
   * discarded and the stored file is its number's file). A name that holds a
   * different file is refused as `exists`.
   *
   * @throws {ProtocolError} `exists`; {FileError} when it cannot be stored.
   */
  async publish(): Promise<Published> {
    const upload = this.#upload!;
    const retryable = this.#retryable;
    const { name, length, sha256 } = this.#headers;
    if (this.#candidate && retryable) {
      return await discardStored(retryable, length, sha256, existsError(name));
    }
    try {
      await upload.commit();
    } catch (error) {
      // Stored meanwhile by another connection (a server without --resumable does not lock): the same file?
      if (!retryable) throw error;
      return await discardStored(retryable, length, sha256, error);
    }
    if (this.#key !== undefined) await this.#store!.drop(this.#key);
    return "stored";
  }

  /**
   * Ends a failed upload: with `--resumable`, a prefix cut off while its data
   * was arriving (`broken`: not refused or checked and found wrong) is kept
   * for the next attempt, and `N.file` = `ERROR` all the same; otherwise, or
   * when it may not be kept (or a longer prefix of the same upload is kept
   * already), {@link StoredUpload.fail}. Returns what that returns.
   */
  async fail(broken: boolean): Promise<string | undefined> {
    const upload = this.#upload;
    if (!upload) return undefined;
    const keeps = broken && this.#retryable && !this.#candidate;
    const dest = keeps ? await keepAt(this.#store, this.#key, upload.bytes, this.#headers.length) : undefined;
    if (dest === undefined || !this.#retryable) return await upload.fail();
    const failure = await this.#retryable.failKeeping(dest);
    if (failure === undefined) this.#store!.kept(this.#key!, upload.bytes);
    return failure;
  }

  /** Releases the upload's lock. */
  release(): void {
    this.#release?.();
    this.#release = undefined;
  }
}

/** Hashes a kept prefix from disk (what is there, not what was received: a change on disk is caught). */
async function hashFile(path: string): Promise<{ hash: Hash; bytes: number }> {
  const hash = createHash("sha256");
  using file = await Deno.open(path, { read: true });
  const buffer = new Uint8Array(1024 * 1024);
  let bytes = 0;
  for (let n = await file.read(buffer); n !== null; n = await file.read(buffer)) {
    hash.update(buffer.subarray(0, n));
    bytes += n;
  }
  return { hash, bytes };
}

/**
 * Takes the lock of upload `key` in `store` (one connection at a time per
 * upload, on a server that keeps prefixes): its release, or `busy` when
 * another connection has it.
 */
function lockUpload(store: ResumeStore, key: string, name: string): () => void {
  const release = store.lock(key);
  if (release) return release;
  throw new ProtocolError(
    `${REASON_BUSY}: another connection is uploading ${JSON.stringify(name)}; try again later`,
  );
}

/**
 * Whether what the name already is (`existing`) may be this very upload,
 * stored before; `exists` when it cannot be.
 */
function isCandidate(
  existing: { isFile: boolean; size: number } | undefined,
  length: number,
  name: string,
): boolean {
  if (existing && !mayBeStored(existing, length)) throw existsError(name);
  return existing !== undefined;
}

/** Takes over the prefix kept for upload `key`, if any: its hash (read from disk) and length. */
async function takePrefix(
  store: ResumeStore | undefined,
  key: string | undefined,
  upload: RetryableUpload | undefined,
  length: number,
): Promise<{ hash: Hash; bytes: number } | undefined> {
  if (!store || key === undefined || !upload) return undefined;
  const held = await store.held(key);
  if (held === 0) return undefined;
  if (held > length) {
    await store.drop(key);
    return undefined;
  }
  const path = store.take(key);
  const prefix = await hashFile(path);
  const size = await upload.adopt(path);
  if (size !== prefix.bytes) throw new ProtocolError("the kept prefix changed while it was taken over");
  return prefix;
}

/** Where `bytes` of a broken upload of `length` may be kept, if they may. */
async function keepAt(
  store: ResumeStore | undefined,
  key: string | undefined,
  bytes: number,
  length: number,
): Promise<string | undefined> {
  if (!store || key === undefined) return undefined;
  if (bytes === 0 || bytes >= length) return undefined;
  // An attempt that started over without resuming may have got less far than the prefix kept before.
  if (bytes <= await store.held(key)) return undefined;
  return await store.makeRoom(key, bytes);
}

/** Ends `upload` as already stored when its name holds exactly this file; else throws `otherwise`. */
async function discardStored(
  upload: RetryableUpload,
  length: number,
  sha256: string,
  otherwise: unknown,
): Promise<Published> {
  if (!(await upload.holds(length, sha256))) throw otherwise;
  await upload.discard();
  return "already-stored";
}
