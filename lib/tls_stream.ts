/**
 * A TLS connection with the surface of Accio's sockets (read, write,
 * half-close, reset, close), for both sides: `node:tls` runs over a
 * {@link Carrier}, a `Duplex` that hands it the bytes of a TCP connection that
 * stays ours: a `node:net` socket (the client) or a `Deno.Conn` (the server).
 *
 * Why the TCP connection stays ours: Deno 2.9.6's `node:tls` reports the end
 * of a connection as a clean end whatever it was (`close_notify`, a bare FIN,
 * a reset), and cannot send a reset. Here the end is read from the TCP
 * connection itself: `null` only after its FIN, an error after a reset, as in
 * plaintext; and an abort is a TCP reset (client) or a close (server).
 *
 * Why the TCP end reaches the TLS layer late: Deno 2.9.6's `node:tls` ends a
 * stream the same way after `close_notify`, after a bare FIN and after a record
 * it could not decrypt (it stops there, silently), so the only sign of a clean
 * end is its order. The carrier holds a FIN back from the TLS layer until
 * that reports its end, or for a grace time: an end
 * it reports while the FIN is held came from `close_notify`; one after the FIN
 * passed is a cut (an attacker dropping the last records, a forged record, a
 * broken peer), and reading it fails instead of ending, so a truncated upload
 * is never taken for a complete one, nor a bare FIN for the server's receipt.
 *
 * Why backpressure holds the carrier and never pauses the TLS socket: after
 * `pause()`/`resume()` Deno 2.9.6's `node:tls` can drop its `'end'`, and an
 * upload read slower than it arrives (over about 256 KiB) then never ends.
 *
 * @example
 * ```ts
 * import { connCarrier, TlsStream } from "./tls_stream.ts";
 * import tls from "node:tls";
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: 5000 });
 * const carrier = connCarrier(conn);
 * const secure = tls.connect({ socket: carrier.stream, servername: "gw.example" });
 * await new Promise((resolve) => secure.once("secureConnect", resolve));
 * const stream = new TlsStream(secure, carrier);
 * await stream.write(new TextEncoder().encode("data"));
 * ```
 * @module
 */
import type net from "node:net";
import { Duplex } from "node:stream";
import type tls from "node:tls";
import type { DuplexSocket, Socket } from "./socket_io.ts";
import { resetSocket } from "./tcp_socket.ts";

/** Received bytes held before the stream stops reading. */
const QUEUE_LIMIT = 256 * 1024;
/** Bytes asked of a `Deno.Conn` per read: fewer, larger reads cost less CPU than many small ones. */
const CONN_READ_BYTES = 256 * 1024;
/** Where the server's carrier reads the bytes it drops (after the TLS end): nothing in it is ever used. */
const DISCARDED = new Uint8Array(CONN_READ_BYTES);
/** Encrypted bytes read ahead of the TLS layer, at most (the rest waits in the kernel). */
const CONN_READ_AHEAD_BYTES = 256 * 1024;
/**
 * Most encrypted bytes handed to the TLS layer without any data coming out of it. A TLS record is
 * at most about 16.6 KiB and the carrier reads ahead at most {@link CONN_READ_AHEAD_BYTES}, so a
 * sound stream stays far below; past a record `node:tls` cannot decrypt it takes every later byte
 * into memory and yields none: the stream is then broken, and failed.
 */
const MAX_SILENT_CIPHERTEXT = 2 * 1024 * 1024;

/**
 * Longest wait, in ms, for the TLS layer to report its end after a FIN (it does at once after a
 * `close_notify`): a cut stream, or a close during the handshake, is seen this much later; a
 * clean end never waits for it.
 */
const FIN_GRACE_MS = 1_000;

/** Node's socket errors as the runtime's classes, where one fits (as `tcp_socket.ts` does). *
 * @example
 * ```ts
 * import { translateSocketError } from "./tls_stream.ts";
 * translateSocketError(Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" })); // Deno.errors.ConnectionReset
 * ```
 */
export function translateSocketError(error: unknown): Error {
  const code = (error as { code?: string }).code;
  const message = error instanceof Error ? error.message : String(error);
  const options = { cause: error };
  if (code === "ECONNRESET") return new Deno.errors.ConnectionReset(message, options);
  if (code === "EPIPE") return new Deno.errors.BrokenPipe(message, options);
  if (code === "ECONNREFUSED") return new Deno.errors.ConnectionRefused(message, options);
  return error instanceof Error ? error : new Error(message);
}

/** The TCP connection under a TLS layer: its bytes as a `Duplex`, its end as seen by the kernel. */
export interface Carrier {
  /** What `node:tls` reads and writes. */
  readonly stream: Duplex;
  /** True once the peer's FIN arrived. */
  readonly ended: boolean;
  /** True once that FIN was handed to the TLS layer (after the TLS layer's end, or the grace time; see the module doc). */
  readonly finPassed: boolean;
  /** The TLS layer reported its end (its peer's `close_notify`): a FIN held back may pass. */
  tlsEnded(): void;
  /** The TLS layer gave out data: what it holds is sound (see {@link MAX_SILENT_CIPHERTEXT}). */
  plaintextOut(): void;
  /** Set once the connection failed (a reset, a write error). */
  readonly failure: Error | undefined;
  /** True once the connection is closed, by either side. */
  readonly closed: boolean;
  /** Called after every change of {@link ended}, {@link failure} or {@link closed}. */
  onChange: () => void;
  /** Stops handing encrypted bytes to the TLS layer (the rest waits in the kernel), until {@link resume}. */
  hold(): void;
  /** Hands bytes on again after {@link hold}. */
  resume(): void;
  /** Sends FIN after every byte written so far. */
  end(): Promise<void>;
  /** Aborts: a TCP reset where one can be sent, else a close. */
  abort(): void;
  /** Closes it. */
  close(): void;
}

/** The parts both carriers share: the state and its notifications. */
abstract class CarrierState {
  ended = false;
  finPassed = false;
  failure: Error | undefined;
  closed = false;
  onChange: () => void = () => {};
  /**
   * True once the TLS layer has ended: bytes after its end (after the peer's close_notify) are
   * read and dropped, never handed on: `node:tls` would keep every one of them in memory.
   */
  protected tlsDone = false;
  readonly #tlsEnd = Promise.withResolvers<void>();
  /** Encrypted bytes handed on since data last came out (see {@link MAX_SILENT_CIPHERTEXT}). */
  #silentBytes = 0;

  protected markEnded(): void {
    this.ended = true;
    this.onChange();
  }

  /** The TCP FIN arrived: hands it to the TLS layer, once that reported its end or the grace time passed. */
  protected async passFin(stream: Duplex): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise<void>((resolve) => timer = setTimeout(resolve, FIN_GRACE_MS));
    await Promise.race([this.#tlsEnd.promise, grace]);
    clearTimeout(timer);
    this.finPassed = true;
    stream.push(null);
  }

  tlsEnded(): void {
    this.tlsDone = true;
    this.#tlsEnd.resolve();
    this.readOn();
  }

  /** Reading stopped for the TLS layer's backpressure goes on: the TCP end must still be seen. */
  protected abstract readOn(): void;

  plaintextOut(): void {
    this.#silentBytes = 0;
  }

  /**
   * Counts `n` encrypted bytes about to go to the TLS layer; false (and the carrier failed) once too
   * many went without data coming out: a broken stream, whose later bytes must not pile up.
   */
  protected admit(n: number): boolean {
    this.#silentBytes += n;
    if (this.#silentBytes <= MAX_SILENT_CIPHERTEXT) return true;
    const mib = MAX_SILENT_CIPHERTEXT / (1024 * 1024);
    this.markFailed(
      new Deno.errors.InvalidData(`the TLS stream is broken: ${mib} MiB came in without any data out`),
    );
    return false;
  }

  protected markFailed(error: unknown): void {
    if (!this.closed) this.failure ??= translateSocketError(error);
    this.onChange();
  }

  protected markClosed(): void {
    this.closed = true;
    this.onChange();
  }
}

class NetCarrier extends CarrierState implements Carrier {
  readonly stream: Duplex;
  readonly #socket: net.Socket;
  #held = false;

  constructor(socket: net.Socket) {
    super();
    this.#socket = socket;
    this.stream = new Duplex({
      allowHalfOpen: true,
      read: () => void (this.#held || socket.resume()),
      write: (chunk, _encoding, done) => void socket.write(chunk, done),
      // The TLS layer's own teardown must not hide the TCP end (FIN or reset) still to come.
      destroy: (error, done) => {
        this.#held = false;
        socket.resume();
        done(error);
      },
    });
    socket.on("data", (chunk) => {
      if (this.tlsDone || this.failure) return; // after the TLS end: dropped (see CarrierState.tlsDone)
      if (!this.admit(chunk.length)) return void socket.pause();
      if (!this.stream.destroyed && !this.stream.push(chunk)) socket.pause();
    });
    socket.on("end", () => {
      this.markEnded();
      void this.passFin(this.stream);
    });
    socket.on("error", (error) => this.markFailed(error));
    socket.on("close", () => this.markClosed());
  }

  hold(): void {
    this.#held = true;
    this.#socket.pause();
  }

  protected readOn(): void {
    if (!this.#held) this.#socket.resume();
  }

  resume(): void {
    if (!this.#held) return; // else it would undo the pause of the stream's own backpressure
    this.#held = false;
    this.#socket.resume();
  }

  end(): Promise<void> {
    return new Promise((resolve) => this.#socket.end(resolve));
  }

  abort(): void {
    resetSocket(this.#socket);
  }

  close(): void {
    this.#socket.destroy();
  }
}

class ConnCarrier extends CarrierState implements Carrier {
  readonly stream: Duplex;
  readonly #conn: DuplexSocket;
  #reading = false;
  #held = false;

  constructor(conn: DuplexSocket) {
    super();
    this.#conn = conn;
    this.stream = new Duplex({
      allowHalfOpen: true,
      // Room for a few reads ahead of the TLS layer, so reading and decrypting overlap.
      readableHighWaterMark: CONN_READ_AHEAD_BYTES,
      read: () => void this.#pump(),
      write: (chunk, _encoding, done) => void this.#writeAll(chunk).then(() => done(), done),
      // After the TLS layer is gone, reading goes on (discarding) to see the TCP end still to come.
      destroy: (error, done) => {
        done(error);
        this.#held = false;
        void this.#pump();
      },
    });
  }

  /** Reads until the TLS layer has enough (backpressure leaves the rest in the kernel), or the end. */
  async #pump(): Promise<void> {
    if (this.#reading || this.closed) return;
    this.#reading = true;
    try {
      while (!this.#held) {
        // Bytes after the TLS end are dropped: one shared buffer, not a new one per read.
        const buffer = this.tlsDone ? DISCARDED : new Uint8Array(CONN_READ_BYTES);
        const n = await this.#conn.read(buffer);
        if (n === null) {
          this.markEnded();
          return void this.passFin(this.stream);
        }
        if (this.tlsDone) continue; // after the TLS end: dropped (see CarrierState.tlsDone)
        if (!this.admit(n)) return;
        if (!this.stream.destroyed && !this.stream.push(buffer.subarray(0, n))) return;
      }
    } catch (error) {
      this.markFailed(error);
    } finally {
      this.#reading = false;
    }
  }

  hold(): void {
    this.#held = true;
  }

  protected readOn(): void {
    void this.#pump();
  }

  resume(): void {
    if (!this.#held) return; // else every call would read once more past the stream's own backpressure
    this.#held = false;
    void this.#pump();
  }

  async #writeAll(chunk: Uint8Array): Promise<void> {
    try {
      for (let written = 0; written < chunk.length;) {
        written += await this.#conn.write(chunk.subarray(written));
      }
    } catch (error) {
      this.markFailed(error);
      throw error;
    }
  }

  async end(): Promise<void> {
    await this.#conn.closeWrite();
  }

  abort(): void {
    this.close(); // a Deno.Conn cannot send a reset; unread data in the kernel makes its close one
  }

  close(): void {
    if (this.closed) return;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
    this.markClosed();
  }
}

/** A carrier over a `node:net` socket (the client's: it can send a reset). *
 * @example
 * ```ts
 * import net from "node:net";
 * import tls from "node:tls";
 * import { netCarrier } from "./tls_stream.ts";
 * const carrier = netCarrier(net.connect({ host: "127.0.0.1", port: 5000, allowHalfOpen: true }));
 * tls.connect({ socket: carrier.stream as net.Socket, servername: "gw.example" });
 * ```
 */
export function netCarrier(socket: net.Socket): Carrier {
  return new NetCarrier(socket);
}

/** A carrier over a `Deno.Conn` or any {@link DuplexSocket} (the server's: the accept loop's connection, PROXY header already read). *
 * @example
 * ```ts
 * import tls from "node:tls";
 * import { connCarrier } from "./tls_stream.ts";
 * const conn = await Deno.listen({ port: 5000 }).accept();
 * const carrier = connCarrier(conn);
 * new tls.TLSSocket(carrier.stream as never, { isServer: true } as never);
 * ```
 */
export function connCarrier(conn: DuplexSocket): Carrier {
  return new ConnCarrier(conn);
}

/** A TLS connection whose handshake is done. One read at a time. *
 * @example
 * ```ts
 * import { connectTls } from "./tls_client.ts";
 * const stream = await connectTls("127.0.0.1", 5000).connected; // a TlsStream
 * await stream.closeWrite();
 * console.log(await stream.read(new Uint8Array(64)));
 * ```
 */
export class TlsStream implements Socket {
  readonly #tls: tls.TLSSocket;
  readonly #carrier: Carrier;
  readonly #queue: Uint8Array[] = [];
  #queued = 0;
  #tlsEnded = false;
  /** The TLS layer ended before the TCP FIN was handed to it: the peer's close_notify (see the module doc). */
  #closeNotify = false;
  #tlsClosed = false;
  #failure: Error | undefined;
  #wake: (() => void) | undefined;
  #writeEnded = false;

  /** Takes over `secure` (handshake complete) and the carrier it runs over. */
  constructor(secure: tls.TLSSocket, carrier: Carrier) {
    this.#tls = secure;
    this.#carrier = carrier;
    secure.on("data", (chunk: Uint8Array) => {
      carrier.plaintextOut();
      this.#queue.push(chunk);
      this.#queued += chunk.length;
      // Backpressure at the carrier: the TLS layer itself is never paused, as Deno 2.9.6's node:tls
      // loses its 'end' after pause()/resume(), and an upload then never ends.
      if (this.#queued >= QUEUE_LIMIT) carrier.hold();
      this.#notify();
    });
    secure.on("error", (error) => {
      this.#failure ??= translateSocketError(error);
      this.#notify();
    });
    secure.on("end", () => {
      this.#tlsEnded = true;
      this.#closeNotify = !carrier.finPassed;
      carrier.tlsEnded();
      this.#notify();
    });
    secure.on("close", () => {
      this.#tlsClosed = true;
      this.#notify();
    });
    carrier.onChange = () => this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** The failure that ends reading, if any: the TCP connection has the last word. */
  #readFailure(): Error | undefined {
    const failure = this.#carrier.failure ?? this.#failure;
    if (failure) return failure;
    if (this.#carrier.closed && !this.#carrier.ended) {
      return new Deno.errors.BadResource("the connection is closed");
    }
    if (this.#tlsClosed && !this.#tlsEnded) return new Deno.errors.BadResource("the connection is closed");
    return undefined;
  }

  /** Reads into `buffer`: bytes received first, then `null` after the peer's TLS end and FIN, or the error. */
  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#queue.length === 0) {
      const failure = this.#readFailure();
      if (failure) throw failure;
      if (this.#tlsEnded && this.#carrier.ended) {
        if (this.#closeNotify) return null;
        throw new Deno.errors.UnexpectedEof(
          "the TLS stream was cut off: the TCP connection ended without TLS close_notify",
        );
      }
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    // As many queued records as fit: TLS delivers at most 16 KiB at a time, a caller may ask for 1 MiB.
    let n = 0;
    while (n < buffer.length && this.#queue.length > 0) {
      const head = this.#queue[0];
      const take = Math.min(head.length, buffer.length - n);
      buffer.set(head.subarray(0, take), n);
      if (take === head.length) this.#queue.shift();
      else this.#queue[0] = head.subarray(take);
      n += take;
    }
    this.#queued -= n;
    if (this.#queued < QUEUE_LIMIT) this.#carrier.resume();
    return n;
  }

  /** Writes all of `data`; resolves once it is encrypted and handed on (`data` may then be reused). */
  write(data: Uint8Array): Promise<number> {
    const failure = this.#carrier.failure ?? this.#failure;
    if (failure) return Promise.reject(failure);
    return new Promise((resolve, reject) => {
      this.#tls.write(data, (error) => error ? reject(translateSocketError(error)) : resolve(data.length));
    });
  }

  /** Half-closes: TLS `close_notify`, then FIN, after everything written; reading goes on. */
  closeWrite(): Promise<void> {
    const failure = this.#carrier.failure ?? this.#failure;
    if (failure) return Promise.reject(failure);
    this.#writeEnded = true;
    return new Promise((resolve, reject) => {
      const onError = (error: Error) => reject(translateSocketError(error));
      this.#tls.once("error", onError);
      // Deno's node:tls sends close_notify but does not end the stream under it: the FIN is sent here.
      this.#tls.end(() => {
        this.#carrier.end().then(resolve, (error) => reject(translateSocketError(error)))
          .finally(() => this.#tls.off("error", onError));
      });
    });
  }

  /** Aborts without `close_notify`: a TCP reset from the client, a close from the server. */
  reset(): void {
    this.#carrier.abort();
    this.#tls.destroy();
  }

  /** Closes: gracefully once {@link closeWrite} has run, otherwise as {@link reset}. */
  close(): void {
    if (!this.#writeEnded) return this.reset();
    this.#tls.destroy();
    this.#carrier.close();
  }
}
