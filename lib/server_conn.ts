/**
 * The server's end of one upload connection, and how it ends.
 *
 * On success it half-closes and closes at once: the seed protocol's receipt
 * (over TLS, `close_notify` first: see {@link ServerConn.finish}). On failure the
 * client must learn it, in every handshake mode: the server sends one line
 * `error <reason>\r\n`, half-closes, and then *lingers*: it reads and
 * discards whatever the client still sends, until the client's EOF or a
 * bounded time, and only then closes. Closing a socket with unread input
 * makes the kernel send a reset, which can destroy the line before the client
 * reads it; the linger keeps that from happening. (A seed-style client reads
 * nothing after its half-close but the close, so it is not disturbed.)
 *
 * To send that line after a deadline passed, a deadline must stop the reads
 * without closing the socket: here {@link ServerConn.close}, which the shared
 * read and deadline helpers call, only interrupts reads.
 *
 * @example
 * ```ts
 * import { ServerConn } from "./server_conn.ts";
 * const listener = Deno.listen({ port: 5000 });
 * const conn = new ServerConn(await listener.accept());
 * await conn.refuse("upload larger than the limit", 2_000);
 * ```
 * @module
 */
import { closeQuietly, type DuplexSocket, type Socket, writeAll } from "./socket_io.ts";

/** Longest lingering close after an error line, in ms (also never longer than the idle timeout). */
export const LINGER_MS = 2_000;
/** Longest lingering close once the server is shutting down at once (SIGTERM), in ms. */
export const SHUTDOWN_LINGER_MS = 250;
/** Longest wait, in ms, for the end of stream of a successful upload to be sent. */
export const FINISH_MS = 1_000;
/** Longest error line, reason included, before `\r\n`. */
export const MAX_ERROR_LINE = 512;

// Lingering reads only discard, so every connection can share one buffer.
const DISCARD = new Uint8Array(64 * 1024);

/** Formats `error <reason>` as one line: no CR or LF inside, at most {@link MAX_ERROR_LINE} bytes. */
export function errorLine(reason: string): Uint8Array {
  const encoded = new TextEncoder().encode(`error ${reason.replace(/[\r\n]+/g, " ")}`);
  let end = Math.min(encoded.length, MAX_ERROR_LINE);
  while (end < encoded.length && (encoded[end] & 0xc0) === 0x80) end--; // never cut a UTF-8 sequence
  const line = new Uint8Array(end + 2);
  line.set(encoded.subarray(0, end));
  line.set([0x0d, 0x0a], end);
  return line;
}

/** A server-side connection whose reads can be interrupted without closing it. */
export class ServerConn implements Socket {
  /** The underlying connection. */
  readonly conn: DuplexSocket;
  /** A read the runtime still holds (it fills its buffer when data comes, even after an interrupt). */
  #outstanding: Promise<number | null> | undefined;
  #cancel: ((error: Error) => void) | undefined;
  #interrupted: Error | undefined;
  #writing = 0;

  /** Wraps `conn`. */
  constructor(conn: DuplexSocket) {
    this.conn = conn;
  }

  /** True once reads were interrupted. */
  get interrupted(): boolean {
    return this.#interrupted !== undefined;
  }

  /** Reads into `buffer`; rejects at once when interrupted. */
  read(buffer: Uint8Array): Promise<number | null> {
    if (this.#interrupted) return Promise.reject(this.#interrupted);
    return new Promise((resolve, reject) => {
      const read = this.conn.read(buffer);
      this.#outstanding = read;
      this.#cancel = reject;
      const settle = () => {
        if (this.#outstanding !== read) return; // a later read already took over
        this.#outstanding = undefined;
        this.#cancel = undefined;
      };
      read.then((n) => {
        settle();
        resolve(n);
      }, (error) => {
        settle();
        reject(error);
      });
    });
  }

  /** Writes some of `data`. */
  async write(data: Uint8Array): Promise<number> {
    this.#writing++;
    try {
      return await this.conn.write(data);
    } finally {
      this.#writing--;
    }
  }

  /**
   * What deadlines call: interrupts reads, but keeps the connection open for
   * the error line. A write in progress cannot be interrupted: then it closes.
   */
  close(): void {
    this.interrupt();
    if (this.#writing > 0) closeQuietly(this.conn);
  }

  /** Makes the pending read (if any) and every later one reject with `error`. */
  interrupt(error: Error = new Deno.errors.Interrupted("reading was interrupted")): void {
    this.#interrupted ??= error;
    const cancel = this.#cancel;
    this.#cancel = undefined;
    // After the current task: a deadline that interrupts and then rejects with its own error wins the race.
    if (cancel) setTimeout(() => cancel(error), 0);
  }

  /**
   * The success path: end of stream, then the close. Over TLS the end is
   * `close_notify` and FIN, which the client takes as the receipt (a bare FIN
   * it takes for a cut); a client that takes neither within
   * {@link FINISH_MS} is closed on.
   */
  async finish(): Promise<void> {
    const timer = setTimeout(() => closeQuietly(this.conn), FINISH_MS);
    try {
      await this.conn.closeWrite();
    } catch {
      // The client is gone: it cannot be told any more.
    } finally {
      clearTimeout(timer);
      closeQuietly(this.conn);
    }
  }

  /**
   * The failure path: sends `error <reason>\r\n`, half-closes, lingers for at
   * most `lingerMs` (cut to {@link SHUTDOWN_LINGER_MS} once `signal` aborts),
   * then closes. Never throws.
   */
  async refuse(reason: string, lingerMs: number, signal?: AbortSignal): Promise<void> {
    this.interrupt();
    try {
      await writeAll(this.conn, errorLine(reason), Math.min(lingerMs, 1_000), "the error line");
      await this.conn.closeWrite();
      await this.#linger(signal?.aborted ? Math.min(lingerMs, SHUTDOWN_LINGER_MS) : lingerMs, signal);
    } catch {
      // Reset, or closed by a deadline: the client cannot be told any more.
    } finally {
      closeQuietly(this.conn);
    }
  }

  async #linger(ms: number, signal?: AbortSignal): Promise<void> {
    let timer = setTimeout(() => closeQuietly(this.conn), ms);
    const hurry = () => {
      clearTimeout(timer);
      timer = setTimeout(() => closeQuietly(this.conn), Math.min(ms, SHUTDOWN_LINGER_MS));
    };
    signal?.addEventListener("abort", hurry, { once: true });
    try {
      // The interrupted read is still the socket's: its result comes first.
      if (this.#outstanding && (await this.#outstanding) === null) return;
      while ((await this.conn.read(DISCARD)) !== null) {
        // Discarded: the upload already failed.
      }
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", hurry);
    }
  }
}
