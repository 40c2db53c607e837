/**
 * The Accio server: accepts connections concurrently, numbers them from 1 (or
 * after the highest upload already in the directory), and saves each upload
 * as `<N>.file`, complete or `ERROR`.
 *
 * Shaped like Go's `net/http` `Server`: explicit settings with defaults,
 * {@link AccioServer.shutdown} that stops accepting and drains uploads in
 * flight, and {@link AccioServer.close} that stops at once. Nothing global.
 *
 * @example
 * ```ts
 * import { AccioServer } from "./server.ts";
 * const server = await AccioServer.start({ port: 5000, directory: "/save" });
 * Deno.addSignalListener("SIGQUIT", () => server.shutdown());
 * await server.finished;
 * ```
 * @module
 */
import { DEFAULT_TIMEOUT_MS } from "./deadline.ts";
import { createHash } from "node:crypto";
import { AccioError, describeError, ProtocolError } from "./errors.ts";
import { parseHeaders, RECEIPT_OK, type UploadHeaders } from "./headers.ts";
import { DEFAULT_MAX_HEADER_BYTES, type ServerHandshakeMode } from "./handshake.ts";
import { formatAddress, listenAll } from "./listen.ts";
import { type Received, receiveUpload } from "./receiver.ts";
import { closeQuietly, writeAll } from "./socket_io.ts";
import { checkName } from "./upload_name.ts";
import { type OpenReport, UploadDirectory, type UploadFile, uploadFileName } from "./upload_dir.ts";

/** Settings of an {@link AccioServer}. */
export interface ServerOptions {
  /** TCP port, 1-65535. */
  port: number;
  /** Directory the uploads are saved in; must exist and be writable. */
  directory: string;
  /** Address to listen on. Default: every interface, IPv6 and IPv4. */
  hostname?: string;
  /** Abort an upload after this long without a byte, in ms. Default 10 000. */
  idleTimeoutMs?: number;
  /** Handshakes accepted. Default `auto`: single or double, per connection. */
  handshake?: ServerHandshakeMode;
  /** Connections served at once; more wait in the listen backlog. Default 1024. */
  maxConnections?: number;
  /** Largest upload in bytes; a larger one ends as `ERROR`. Default: no limit. */
  maxUploadBytes?: number;
  /** Largest double-handshake header in bytes. Default 8192. */
  maxHeaderBytes?: number;
  /** Accept header extensions (`length`, `sha256`) and answer them with a receipt. Default false. */
  allowHeaders?: boolean;
  /** Also accept `name`: store the upload at that path under the directory. Implies headers. Default false. */
  allowNames?: boolean;
  /** Compute the SHA-256 of every stored upload for {@link UploadOutcome.sha256}. Default false. */
  hashUploads?: boolean;
  /** Called once per connection when it ends. Default: nothing. */
  onUpload?: (outcome: UploadOutcome) => void;
  /** Called with operational messages (accept failures, repairs). Default: nothing. */
  onLog?: (message: string) => void;
}

/** How one connection ended. */
export interface UploadOutcome {
  /** The connection number. */
  id: number;
  /** The client's address, `host:port`. */
  peer: string;
  /** The file the upload was saved as. */
  file: string;
  /** `saved`: complete file; `error`: the file holds `ERROR`. */
  outcome: "saved" | "error";
  /** Why it failed, for `error`. */
  reason?: string;
  /** File bytes received (for `error`, before it failed). */
  bytes: number;
  /** Which handshake the client used, once known. */
  handshake?: "single" | "double";
  /** The name the client asked for, if any. */
  name?: string;
  /** SHA-256 of the stored file, when hashing is on and the upload was saved. */
  sha256?: string;
  /** When the connection was accepted. */
  startedAt: Date;
  /** How long it lasted, in ms. */
  durationMs: number;
}

/** Default for {@link ServerOptions.maxConnections}. */
export const DEFAULT_MAX_CONNECTIONS = 1024;

const ACCEPT_RETRY_MS = 100;

interface Session {
  conn: Deno.Conn;
  abortReason?: string;
}

/** The settings that outlive start-up, defaults applied. */
type Settings = Required<Omit<ServerOptions, "hostname" | "port" | "directory">>;

/** A running Accio server. Create it with {@link AccioServer.start}. */
export class AccioServer {
  /** The address it listens on. */
  readonly addr: Deno.NetAddr;
  /** The upload directory. */
  readonly directory: UploadDirectory;
  /** Settles once the server has stopped and every connection has ended. */
  readonly finished: Promise<void>;

  readonly #listener: Deno.TcpListener;
  readonly #options: Settings;
  readonly #sessions = new Set<Session>();
  #stopping = false;
  #wake: (() => void) | undefined;
  #lastThrottledLog = 0;
  #backoffUntil = 0;
  #suppressed = 0;

  private constructor(
    listener: Deno.TcpListener,
    directory: UploadDirectory,
    options: Settings,
  ) {
    this.#listener = listener;
    this.addr = listener.addr;
    this.directory = directory;
    this.#options = options;
    this.finished = this.#acceptLoop().finally(() => directory.close());
  }

  /**
   * Checks the directory, binds the port and starts accepting.
   *
   * @throws {FileError} for an unusable directory; {ConnectionError} when the port cannot be bound.
   */
  static async start(options: ServerOptions): Promise<AccioServer> {
    const report: OpenReport = { recovered: [] };
    const directory = await UploadDirectory.open(options.directory, report, { names: options.allowNames });
    let listener: Deno.TcpListener;
    try {
      listener = listenAll(options.port, options.hostname);
    } catch (error) {
      directory.close();
      throw error;
    }
    const settings = {
      idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_TIMEOUT_MS,
      handshake: options.handshake ?? "auto",
      maxConnections: options.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
      maxUploadBytes: options.maxUploadBytes ?? Infinity,
      maxHeaderBytes: options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES,
      allowHeaders: options.allowHeaders ?? false,
      allowNames: options.allowNames ?? false,
      hashUploads: options.hashUploads ?? false,
      onUpload: options.onUpload ?? (() => {}),
      onLog: options.onLog ?? (() => {}),
    };
    for (const note of report.notes ?? []) settings.onLog(note);
    if (report.recovered.length > 0) {
      settings.onLog(
        `recorded ERROR for uploads cut off by an earlier run: ${
          report.recovered.map(uploadFileName).join(", ")
        }`,
      );
    }
    return new AccioServer(listener, directory, settings);
  }

  /** Connections in progress. */
  get activeConnections(): number {
    return this.#sessions.size;
  }

  /**
   * Stops accepting and waits for the uploads in flight to end (each still
   * bounded by the idle timeout). Like nginx's SIGQUIT.
   */
  shutdown(): Promise<void> {
    this.#stopAccepting();
    return this.finished;
  }

  /**
   * Stops accepting and aborts every upload in flight: each ends as `ERROR`.
   * Like nginx's SIGTERM.
   */
  close(): Promise<void> {
    this.#stopAccepting();
    for (const session of this.#sessions) {
      session.abortReason ??= "server shut down before the upload finished";
      closeQuietly(session.conn);
    }
    return this.finished;
  }

  /** Logs at most one line per second, so a burst of identical failures cannot flood the log. */
  #logThrottled(message: string): void {
    const now = Date.now();
    if (now - this.#lastThrottledLog < 1000) {
      this.#suppressed++;
      return;
    }
    const suppressed = this.#suppressed ? ` (${this.#suppressed} similar messages suppressed)` : "";
    this.#options.onLog(message + suppressed);
    this.#lastThrottledLog = now;
    this.#suppressed = 0;
  }

  #stopAccepting(): void {
    if (this.#stopping) return;
    this.#stopping = true;
    closeQuietly(this.#listener);
    this.#wake?.();
  }

  /** Waits until {@link #wake} is called (a slot freed, or stopping), or `ms` pass. */
  #pause(ms?: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(() => done(), ms);
      const done = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      this.#wake = done;
    });
  }

  async #acceptLoop(): Promise<void> {
    const inFlight = new Set<Promise<void>>();
    while (!this.#stopping) {
      if (this.#sessions.size >= this.#options.maxConnections) {
        await this.#pause(); // excess clients wait in the kernel's backlog
        continue;
      }
      if (Date.now() < this.#backoffUntil) {
        await this.#pause(this.#backoffUntil - Date.now()); // out of descriptors or disk: let some free up
        continue;
      }
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#stopping) break;
        // EMFILE and friends: keep serving; descriptors come back as uploads end.
        this.#logThrottled(`accept failed, retrying: ${describeError(error)}`);
        this.#backoffUntil = Date.now() + ACCEPT_RETRY_MS;
        continue;
      }
      const session: Session = { conn };
      this.#sessions.add(session);
      const handled = this.#serve(session).finally(() => {
        this.#sessions.delete(session);
        inFlight.delete(handled);
        this.#wake?.();
      });
      inFlight.add(handled);
    }
    await Promise.all(inFlight);
  }

  async #serve(session: Session): Promise<void> {
    const { conn } = session;
    const startedAt = new Date();
    const peer = formatAddress(conn.remoteAddr);
    let upload: UploadFile;
    try {
      upload = await this.directory.createNext();
    } catch (error) {
      // No number was used: the client sees the connection close before accio\r\n and reports an error.
      closeQuietly(conn);
      this.#logThrottled(`refused a connection from ${peer}: ${describeError(error)}`);
      this.#backoffUntil = Date.now() + ACCEPT_RETRY_MS;
      return;
    }
    const { id } = upload;
    let file = upload.finalPath;
    const report = (outcome: "saved" | "error", bytes: number, extra: Partial<UploadOutcome>) =>
      this.#options.onUpload({
        id,
        peer,
        file,
        outcome,
        bytes,
        startedAt,
        durationMs: Date.now() - startedAt.getTime(),
        ...extra,
      });
    const { allowHeaders, allowNames, idleTimeoutMs } = this.#options;
    if (this.#options.hashUploads) upload.hash = createHash("sha256");
    let headers: UploadHeaders = {};
    let wantsReceipt = false;
    let received: Received | undefined;
    try {
      received = await receiveUpload(conn, upload, {
        timeoutMs: idleTimeoutMs,
        handshake: this.#options.handshake,
        maxBytes: this.#options.maxUploadBytes,
        maxHeaderBytes: this.#options.maxHeaderBytes,
        allowHeaderLines: allowHeaders || allowNames,
        onHandshake: async (lines) => {
          wantsReceipt = lines.length > 0;
          headers = parseHeaders(lines);
          if (headers.name !== undefined) {
            if (!allowNames) throw new ProtocolError("named uploads are not enabled on this server");
            file = await upload.useName(checkName(headers.name));
          }
          if (headers.sha256 !== undefined) upload.hash ??= createHash("sha256");
        },
      });
      if (session.abortReason) throw new AccioError(session.abortReason);
      const sha256 = upload.hash?.digest("hex");
      if (headers.length !== undefined && headers.length !== received.bytes) {
        throw new ProtocolError(
          `received ${received.bytes} bytes, but the client announced ${headers.length}`,
        );
      }
      if (headers.sha256 !== undefined && headers.sha256 !== sha256) {
        throw new ProtocolError("SHA-256 of the received bytes differs from the one the client announced");
      }
      await upload.commit();
      if (wantsReceipt) await this.#sendReceipt(conn, RECEIPT_OK);
      closeQuietly(conn);
      report("saved", received.bytes, { handshake: received.handshake, name: headers.name, sha256 });
    } catch (error) {
      const reason = session.abortReason ?? describeError(error);
      if (wantsReceipt) await this.#sendReceipt(conn, `error ${reason}`);
      closeQuietly(conn);
      file = upload.finalPath;
      const failure = await upload.fail();
      report("error", upload.bytes, {
        reason: failure ? `${reason}; ${failure}` : reason,
        handshake: received?.handshake,
        name: headers.name,
      });
    }
  }

  /** Best effort: the receipt of a client that sent header extensions. */
  async #sendReceipt(conn: Deno.Conn, line: string): Promise<void> {
    const safe = line.replace(/[\r\n]+/g, " ").slice(0, 512);
    await writeAll(conn, new TextEncoder().encode(`${safe}\r\n`), 1_000, "the receipt").catch(() => {});
  }
}
