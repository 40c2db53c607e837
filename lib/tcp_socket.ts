/**
 * The client's TCP connection, over `node:net`. Unlike `Deno.Conn` it can end
 * with a reset (`SO_LINGER` 0): that is how the client aborts an upload that
 * did not finish, so that the server records `ERROR` and never keeps a
 * truncated file that looks complete. A close before {@link TcpSocket.closeWrite}
 * is always such a reset.
 *
 * Errors are the runtime's own classes where one fits
 * (`Deno.errors.ConnectionReset`, `BrokenPipe`, `ConnectionRefused`), so the
 * helpers of `socket_io.ts` describe them as they do for `Deno.Conn`.
 *
 * @example
 * ```ts
 * import { TcpSocket } from "./tcp_socket.ts";
 * const socket = await TcpSocket.connect("127.0.0.1", 5000).connected;
 * await socket.write(new TextEncoder().encode("data"));
 * await socket.closeWrite();
 * socket.close();
 * ```
 * @module
 */
import net from "node:net";
import type { Socket } from "./socket_io.ts";

/** Received bytes held before the socket stops reading from the kernel. */
const QUEUE_LIMIT = 64 * 1024;

/** A connection attempt: {@link TcpSocket.connect}. */
export interface Connecting {
  /** Settles with the connected socket, or with the runtime's error. */
  connected: Promise<TcpSocket>;
  /** Abandons the attempt. */
  cancel(): void;
}

/** Node's socket errors as the runtime's classes, where one fits. */
function translate(error: unknown): Error {
  const code = (error as { code?: string }).code;
  const message = error instanceof Error ? error.message : String(error);
  const options = { cause: error };
  // ECANCELED: a write still queued when the socket was destroyed, by a reset whose error is not out yet.
  if (code === "ECONNRESET" || code === "ECANCELED") return new Deno.errors.ConnectionReset(message, options);
  if (code === "EPIPE") return new Deno.errors.BrokenPipe(message, options);
  if (code === "ECONNREFUSED") return new Deno.errors.ConnectionRefused(message, options);
  return error instanceof Error ? error : new Error(message);
}

/**
 * Aborts a `node:net` socket with a TCP reset (`resetAndDestroy`), or at
 * least destroys it where the reset cannot be sent.
 *
 * @example
 * ```ts
 * import net from "node:net";
 * import { resetSocket } from "./tcp_socket.ts";
 * resetSocket(net.connect(5000, "127.0.0.1"));
 * ```
 */
export function resetSocket(socket: net.Socket): void {
  if (socket.destroyed) return;
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

/** A connected TCP socket: reads, writes, half-close, reset. One read at a time. */
export class TcpSocket implements Socket {
  readonly #socket: net.Socket;
  readonly #queue: Uint8Array[] = [];
  #queued = 0;
  #ended = false;
  #failure: Error | undefined;
  #wake: (() => void) | undefined;
  #writeEnded = false;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.on("data", (chunk: Uint8Array) => {
      this.#queue.push(chunk);
      this.#queued += chunk.length;
      if (this.#queued >= QUEUE_LIMIT) socket.pause();
      this.#notify();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on("error", (error) => {
      this.#failure ??= translate(error);
      this.#notify();
    });
    socket.on("close", () => {
      if (!this.#ended) this.#failure ??= new Deno.errors.BadResource("the connection is closed");
      this.#notify();
    });
  }

  /**
   * Starts connecting to `hostname` (a name, or an IP literal without
   * brackets) and `port`.
   */
  static connect(hostname: string, port: number): Connecting {
    const socket = net.connect({ host: hostname, port, allowHalfOpen: true });
    socket.on("error", () => {}); // a late error after cancel() must not go unhandled
    const connected = new Promise<TcpSocket>((resolve, reject) => {
      const onError = (error: Error) => reject(translate(error));
      socket.once("error", onError);
      socket.once("connect", () => {
        socket.off("error", onError);
        resolve(new TcpSocket(socket));
      });
    });
    return { connected, cancel: () => socket.destroy() };
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Reads into `buffer`: bytes already received first, then `null` at the end or the error. */
  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#queue.length === 0) {
      if (this.#failure) throw this.#failure;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    const head = this.#queue[0];
    const n = Math.min(head.length, buffer.length);
    buffer.set(head.subarray(0, n));
    if (n === head.length) this.#queue.shift();
    else this.#queue[0] = head.subarray(n);
    this.#queued -= n;
    if (this.#queued < QUEUE_LIMIT && this.#socket.isPaused()) this.#socket.resume();
    return n;
  }

  /** Writes all of `data`; resolves once the runtime has handed it to the kernel (`data` may then be reused). */
  write(data: Uint8Array): Promise<number> {
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#socket.write(
        data,
        (error) => error ? reject(this.#failure ?? translate(error)) : resolve(data.length),
      );
    });
  }

  /** Half-closes: sends FIN after everything written; reading goes on. */
  closeWrite(): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    this.#writeEnded = true;
    return new Promise((resolve, reject) => {
      const onError = (error: Error) => reject(translate(error));
      this.#socket.once("error", onError);
      this.#socket.end(() => {
        this.#socket.off("error", onError);
        resolve();
      });
    });
  }

  /** Aborts the connection with a reset: the peer sees ECONNRESET, never a clean end. */
  reset(): void {
    resetSocket(this.#socket);
  }

  /**
   * Closes the socket: gracefully once {@link closeWrite} has sent FIN,
   * otherwise with a {@link reset}, so an unfinished upload is never taken
   * for a complete one.
   */
  close(): void {
    if (this.#writeEnded) this.#socket.destroy();
    else this.reset();
  }
}
