/**
 * The simplified Accio server: one connection at a time, in order; for each,
 * the handshake, then the file's bytes counted as they arrive (never stored).
 * Clients that arrive meanwhile wait in the listen backlog, none refused.
 *
 * @example
 * ```ts
 * import { CountingServer } from "./counting_server.ts";
 * const server = CountingServer.start({ port: 5000, onResult: (line) => console.log(line) });
 * await server.finished;
 * ```
 * @module
 */
import { DEFAULT_TIMEOUT_MS } from "./deadline.ts";
import { describeError } from "./errors.ts";
import { DEFAULT_MAX_HEADER_BYTES, type ServerHandshakeMode } from "./handshake.ts";
import { listenAll } from "./listen.ts";
import { receiveUpload } from "./receiver.ts";
import { closeQuietly } from "./socket_io.ts";

/** Settings of a {@link CountingServer}. */
export interface CountingServerOptions {
  /** TCP port, 1-65535. */
  port: number;
  /** Address to listen on. Default: every interface. */
  hostname?: string;
  /** Give up on a connection after this long without a byte, in ms. Default 10 000. */
  idleTimeoutMs?: number;
  /** Handshakes accepted. Default `auto`. */
  handshake?: ServerHandshakeMode;
  /** Receives one line per connection: the byte count, or `ERROR`. */
  onResult: (line: string) => void;
  /** Receives why a connection ended as `ERROR`. Default: nothing. */
  onLog?: (message: string) => void;
}

/** A running simplified server. */
export class CountingServer {
  /** The address it listens on. */
  readonly addr: Deno.NetAddr;
  /** Settles once the server has stopped. */
  readonly finished: Promise<void>;
  readonly #listener: Deno.TcpListener;
  #current: Deno.Conn | undefined;
  #stopping = false;
  #aborted = false;

  private constructor(listener: Deno.TcpListener, options: CountingServerOptions) {
    this.#listener = listener;
    this.addr = listener.addr;
    this.finished = this.#serve(options);
  }

  /**
   * Binds the port and starts serving.
   *
   * @throws {ConnectionError} when the port cannot be bound.
   */
  static start(options: CountingServerOptions): CountingServer {
    return new CountingServer(listenAll(options.port, options.hostname), options);
  }

  /** Stops accepting; the connection in progress finishes first. */
  shutdown(): Promise<void> {
    this.#stopping = true;
    closeQuietly(this.#listener);
    return this.finished;
  }

  /** Stops at once; the connection in progress ends as `ERROR`. */
  close(): Promise<void> {
    this.#aborted = true;
    if (this.#current) closeQuietly(this.#current);
    return this.shutdown();
  }

  async #serve(options: CountingServerOptions): Promise<void> {
    const log = options.onLog ?? (() => {});
    const timeoutMs = options.idleTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    const counter = { write: () => Promise.resolve() };
    while (!this.#stopping) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#stopping) break;
        log(`accept failed, retrying: ${describeError(error)}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      this.#current = conn;
      try {
        const { bytes } = await receiveUpload(conn, counter, {
          timeoutMs,
          handshake: options.handshake ?? "auto",
          maxBytes: Infinity,
          maxHeaderBytes: DEFAULT_MAX_HEADER_BYTES,
          allowHeaderLines: false,
        });
        if (this.#aborted) throw new Error("server shut down before the upload finished");
        options.onResult(String(bytes));
      } catch (error) {
        options.onResult("ERROR");
        log(`connection ended in error: ${this.#aborted ? "server shut down" : describeError(error)}`);
      } finally {
        this.#current = undefined;
        closeQuietly(conn);
      }
    }
  }
}
