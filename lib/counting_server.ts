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
import { FileError } from "./errors.ts";
import type { ServerHandshakeMode } from "./handshake.ts";
import { listenAll } from "./listen.ts";
import type { Store, StoredUpload } from "./store.ts";
import { type Gate, runSession, type SessionSettings, sessionSettings } from "./upload_session.ts";

/** Settings of a {@link CountingServer}. */
export interface CountingServerOptions {
  /** TCP port, 1-65535. */
  port: number;
  /** Address to listen on. Default: every interface. */
  hostname?: string;
  /**
   * Give up on a connection after this long without a byte, in ms.
   *
   * @default {10_000}
   */
  idleTimeoutMs?: number;
  /**
   * Handshakes accepted.
   *
   * @default {"auto"}
   */
  handshake?: ServerHandshakeMode;
  /**
   * Run on each connection before its upload (the TLS handshake); one that
   * throws refuses it: no line on stdout, the reason logged.
   *
   * @default {[]}
   */
  gates?: readonly Gate[];
  /** Receives one line per connection: the byte count, or `ERROR`. */
  onResult: (line: string) => void;
  /** Receives why a connection ended as `ERROR`. */
  onLog?: (message: string) => void;
}

/** The store of `server-s`: it keeps nothing, and only counts each upload's bytes. */
const COUNTING_STORE: Store = {
  createNext(): Promise<StoredUpload> {
    let bytes = 0;
    return Promise.resolve({
      id: 0,
      finalPath: "",
      get bytes() {
        return bytes;
      },
      useName: () => Promise.reject(new FileError("the counting server stores no names")),
      write(chunk: Uint8Array) {
        bytes += chunk.length;
        return Promise.resolve();
      },
      commit: () => Promise.resolve(),
      fail: () => Promise.resolve(undefined),
    });
  },
};

/** A running simplified server. */
export class CountingServer {
  /** The address it listens on. */
  readonly addr: Deno.NetAddr;
  /** Settles once the server has stopped. */
  readonly finished: Promise<void>;
  readonly #loop: AcceptLoop;
  readonly #options: CountingServerOptions;
  readonly #session: SessionSettings;

  private constructor(listener: Deno.TcpListener, options: CountingServerOptions) {
    this.addr = listener.addr;
    this.#options = options;
    this.#session = sessionSettings({
      idleTimeoutMs: options.idleTimeoutMs,
      handshake: options.handshake,
      gates: options.gates,
    });
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

  async #serve(conn: Deno.Conn, { signal, release }: ConnectionContext): Promise<void> {
    const end = await runSession(conn, COUNTING_STORE, this.#session, { signal });
    if (!end.numbered) {
      // A gate refused it (a failed TLS handshake): no upload took place, so no count.
      if (!end.quiet) this.#options.onLog?.(`refused a connection from ${end.peer}: ${end.reason}`);
      return;
    }
    const { outcome, reason, bytes } = end.outcome;
    if (outcome === "saved") {
      this.#options.onResult(String(bytes));
    } else {
      this.#options.onResult("ERROR");
      this.#options.onLog?.(`connection ended in error: ${reason}`);
    }
    release(); // the next client need not wait for the lingering close
    await end.closed;
  }
}
