/**
 * What the server says after the client's handshake, read concurrently with
 * the upload, and what it means.
 *
 * Default protocol: the server sends nothing and closes once the file is
 * stored, so a clean end with no byte is the receipt; any byte is a failure
 * (`error <reason>\r\n` says why), and so is a reset. With header extensions
 * the receipt is the one line `ok\r\n` and then the close. Anything arriving
 * while the client is still sending is a failure too: the client stops
 * sending at once ({@link ReplyWatcher.spoke}). At most {@link REPLY_LIMIT}
 * bytes are ever read.
 *
 * @example
 * ```ts
 * import { judgeReply, ReplyWatcher } from "./reply.ts";
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: 5000 });
 * const reply = new ReplyWatcher(conn, false);
 * await conn.closeWrite();
 * await reply.done;
 * const failure = judgeReply(reply.state, { receipt: false, finished: true });
 * if (failure) throw failure;
 * ```
 * @module
 */
import { formatSeconds } from "./deadline.ts";
import { ConnectionError, ProtocolError, RefusedError, TimeoutError } from "./errors.ts";
import { showBytes } from "./handshake.ts";
import { isTransientReason, RECEIPT_OK } from "./headers.ts";
import { connectionFailure, type Socket } from "./socket_io.ts";

/** The most bytes of a reply the client reads; the rest is never read. */
export const REPLY_LIMIT = 4096;
/** The longest reason shown from an `error <reason>` line, in characters. */
export const REASON_LIMIT = 512;

const encoder = new TextEncoder();
const ERROR_PREFIX = encoder.encode("error ");
const OK_LINE = encoder.encode(`${RECEIPT_OK}\r\n`);

/** What has arrived so far. */
export interface ReplyState {
  /** The bytes received, at most {@link REPLY_LIMIT}. */
  bytes: Uint8Array;
  /** True once the server closed its side cleanly. */
  ended: boolean;
  /** The read error (a reset, or the socket closed under the reader), if any. */
  failure?: unknown;
}

/** True when `bytes` could still grow into `whole`, or already begins with it. */
function agrees(bytes: Uint8Array, whole: Uint8Array): boolean {
  const length = Math.min(bytes.length, whole.length);
  for (let i = 0; i < length; i++) if (bytes[i] !== whole[i]) return false;
  return true;
}

function lineEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 1 < bytes.length; i++) if (bytes[i] === 0x0d && bytes[i + 1] === 0x0a) return i;
  return -1;
}

/** Whether the bytes already say all they can: nothing that follows would change the verdict. */
function decided(bytes: Uint8Array, receipt: boolean): boolean {
  if (agrees(bytes, ERROR_PREFIX)) return bytes.length >= ERROR_PREFIX.length && lineEnd(bytes) !== -1;
  if (!receipt) return true;
  return !agrees(bytes, OK_LINE) || bytes.length > OK_LINE.length;
}

/** Reads the server's reply in the background from the moment it is made. */
export class ReplyWatcher {
  /** Settles when anything happens: a first byte, the end, or an error. */
  readonly spoke: Promise<void>;
  /** Settles when the reply is complete: the end, an error, the limit, or a decided reply. */
  readonly done: Promise<void>;
  readonly #kept = new Uint8Array(REPLY_LIMIT);
  #length = 0;
  #ended = false;
  #failure: unknown;
  #speak = () => {};

  /** Starts reading `socket`; `receipt` tells whether an `ok` line is due (header extensions). */
  constructor(socket: Socket, receipt: boolean) {
    this.spoke = new Promise((resolve) => this.#speak = resolve);
    this.done = this.#run(socket, receipt);
  }

  async #run(socket: Socket, receipt: boolean): Promise<void> {
    try {
      while (this.#length < REPLY_LIMIT) {
        const n = await socket.read(this.#kept.subarray(this.#length));
        if (n === null) {
          this.#ended = true;
          return;
        }
        this.#length += n;
        this.#speak();
        if (decided(this.#kept.subarray(0, this.#length), receipt)) return;
      }
    } catch (error) {
      this.#failure = error;
    } finally {
      this.#speak();
    }
  }

  /** What has arrived so far. */
  get state(): ReplyState {
    return { bytes: this.#kept.subarray(0, this.#length), ended: this.#ended, failure: this.#failure };
  }
}

/** The reason of an `error <reason>` line (`bytes` from `error ` on), printable and bounded. */
export function reasonOf(bytes: Uint8Array): string {
  const end = lineEnd(bytes);
  const text = new TextDecoder().decode(bytes.subarray(ERROR_PREFIX.length, end === -1 ? undefined : end));
  const escape = (c: string) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`;
  // deno-lint-ignore no-control-regex
  const shown = text.replace(/[\x00-\x1f\x7f]/g, escape);
  return shown.length > REASON_LIMIT ? `${shown.slice(0, REASON_LIMIT)}...` : shown;
}

/** The error for a server's `error <reason>` line: transient or not by its reason. */
export function refusal(reason: string): RefusedError {
  return new RefusedError(reason, { transient: isTransientReason(reason) });
}

/** Where the reply stands when it is judged. */
export interface ReplyContext {
  /** Whether header extensions were sent, so that an `ok` line is due. */
  receipt: boolean;
  /** Whether the whole file was sent and the client half-closed. */
  finished: boolean;
  /** Set when the wait for the reply ran out, to this many ms. */
  timedOutMs?: number;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && agrees(a, b);
}

function judgeBytes({ bytes, ended, failure }: ReplyState, context: ReplyContext): Error | undefined {
  const { receipt, finished, timedOutMs = 0 } = context;
  if (bytes.length >= ERROR_PREFIX.length && agrees(bytes, ERROR_PREFIX)) {
    return refusal(reasonOf(bytes));
  }
  const within = formatSeconds(timedOutMs);
  if (receipt && sameBytes(bytes, OK_LINE)) {
    if (!finished) return new ProtocolError("server sent its receipt before the whole file was sent");
    if (ended) return undefined;
    if (failure !== undefined) return connectionFailure(failure, "after the server's receipt");
    return new TimeoutError(`the server sent its receipt but did not close within ${within}`);
  }
  // Still arriving when the wait ran out: the start of an error line, or of the receipt.
  const partial = agrees(bytes, ERROR_PREFIX) || (receipt && agrees(bytes, OK_LINE));
  if (partial && !ended && failure === undefined) {
    const what = receipt ? "the server's receipt did not arrive" : "the server's reply did not end";
    return new TimeoutError(`${what} within ${within} (received ${showBytes(bytes)})`);
  }
  if (receipt) return new ProtocolError(`server sent ${showBytes(bytes)} instead of a receipt`);
  const when = finished ? "after the upload" : "during the upload";
  return new ProtocolError(
    `server sent unexpected bytes ${showBytes(bytes)} ${when}; it may not have stored the file`,
  );
}

/**
 * Judges a reply: `undefined` for a delivered upload, else the error that
 * says why not. Call it once the reply is {@link ReplyWatcher.done}, or with
 * `timedOutMs` once the wait for it ran out.
 */
export function judgeReply(state: ReplyState, context: ReplyContext): Error | undefined {
  const { bytes, ended, failure } = state;
  const { finished, receipt, timedOutMs = 0 } = context;
  if (bytes.length > 0) return judgeBytes(state, context);
  if (failure !== undefined) {
    return connectionFailure(failure, finished ? "before confirming the upload" : "while sending the file");
  }
  if (ended && !finished) {
    return new ConnectionError("connection closed by the server before the whole file was sent");
  }
  if (ended && receipt) {
    return new ProtocolError(
      "server closed without a receipt; does it accept header extensions (server --headers or --names)?",
    );
  }
  if (ended) return undefined;
  return new TimeoutError(
    `no data for ${formatSeconds(timedOutMs)} while waiting for the server to confirm by closing`,
  );
}
