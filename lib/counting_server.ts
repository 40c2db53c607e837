/**
 * The simplified Accio server: one connection at a time, in order; for each,
 * the handshake, then the file's bytes counted as they arrive (never stored).
 * Clients that arrive meanwhile wait in the listen backlog, none refused: it
 * is the shared {@link AcceptLoop} with a limit of 1. A connection that ends
 * as `ERROR` gets the same `error <reason>` line and lingering close as the
 * upload server's; the next client is served while it lingers.
 *
 * @example
 * ```ts
 * import { CountingServer } from "./counting_server.ts";
 * const server = CountingServer.start({ port: 5000, onResult: (line) => console.log(line) });
 * await server.finished;
 * ```
 * @module
 */
import { AcceptLoop, type ConnectionContext } from "./accept_loop.ts";
import { DEFAULT_TIMEOUT_MS } from "./deadline.ts";
import { describeError } from "./errors.ts";
import { DEFAULT_MAX_HEADER_BYTES, type ServerHandshakeMode } from "./handshake.ts";
import { listenAll } from "./listen.ts";
import { receiveUpload } from "./receiver.ts";
import { LINGER_MS, ServerConn, SHUTDOWN_LINGER_MS } from "./server_conn.ts";

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

const SHUTDOWN_REASON = "server shut down before the upload finished";

/** A running simplified server. */
export class CountingServer {
  /** The address it listens on. */
  readonly addr: Deno.NetAddr;
  /** Settles once the server has stopped. */
  readonly finished: Promise<void>;
  readonly #loop: AcceptLoop;
  readonly #options: CountingServerOptions;

  private constructor(listener: Deno.TcpListener, options: CountingServerOptions) {
    this.addr = listener.addr;
    this.#options = options;
    this.#loop = new AcceptLoop(listener, {
      limit: 1,
      handle: (conn, context) => this.#serve(conn, context),
      onLog: options.onLog,
    });
    this.finished = this.#loop.finished;
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
    return this.#loop.shutdown();
  }

  /** Stops at once; the connection in progress ends as `ERROR`. */
  close(): Promise<void> {
    return this.#loop.close();
  }

  async #serve(raw: Deno.Conn, { signal, release }: ConnectionContext): Promise<void> {
    const conn = new ServerConn(raw);
    const abort = () => conn.interrupt();
    if (signal.aborted) abort();
    signal.addEventListener("abort", abort, { once: true });
    const timeoutMs = this.#options.idleTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    try {
      const { bytes } = await receiveUpload(conn, { write: () => Promise.resolve() }, {
        timeoutMs,
        handshake: this.#options.handshake ?? "auto",
        maxBytes: Infinity,
        maxHeaderBytes: DEFAULT_MAX_HEADER_BYTES,
        allowHeaderLines: false,
      });
      if (signal.aborted) throw new Error(SHUTDOWN_REASON);
      conn.finish();
      this.#options.onResult(String(bytes));
    } catch (error) {
      const reason = signal.aborted ? SHUTDOWN_REASON : describeError(error);
      const lingerMs = Math.min(signal.aborted ? SHUTDOWN_LINGER_MS : LINGER_MS, timeoutMs);
      const refused = conn.refuse(reason, lingerMs, signal);
      this.#options.onResult("ERROR");
      this.#options.onLog?.(`connection ended in error: ${reason}`);
      release(); // the next client need not wait for the lingering close
      await refused;
    } finally {
      signal.removeEventListener("abort", abort);
    }
  }
}
