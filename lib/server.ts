/**
 * The Accio server: accepts connections concurrently, numbers them from 1 (or
 * after the highest upload already in the directory), and saves each upload
 * as `<N>.file`, complete or `ERROR`.
 *
 * Shaped like Go's `net/http` `Server`: explicit settings with defaults,
 * {@link AccioServer.shutdown} that stops accepting and drains uploads in
 * flight, and {@link AccioServer.close} that stops at once. Nothing global.
 * Accepting is the shared {@link AcceptLoop}; every failed upload tells its
 * client why with one `error <reason>` line and a lingering close
 * ({@link ServerConn.refuse}), in every handshake mode.
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
import { AcceptLoop, type ConnectionContext } from "./accept_loop.ts";
import { formatAddress, listenAll } from "./listen.ts";
import { type Received, receiveUpload } from "./receiver.ts";
import { LINGER_MS, ServerConn, SHUTDOWN_LINGER_MS } from "./server_conn.ts";
import { closeQuietly, writeAll } from "./socket_io.ts";
import { checkName } from "./upload_name.ts";
import {
  DEFAULT_RESUME_MAX_BYTES,
  DEFAULT_RESUME_MAX_COUNT,
  DEFAULT_RESUME_WINDOW_MS,
  ResumeStore,
} from "./resume_store.ts";
import { RetrySession } from "./retry_session.ts";
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
  /**
   * Keep the received prefix of a broken named, verified upload for a later
   * `resume: yes` (see `resume_store.ts`). Implies names. Default false.
   */
  resumable?: boolean;
  /** How long a kept prefix stays, in ms. Default a day. */
  resumeWindowMs?: number;
  /** Most prefixes kept at once. Default 100. */
  resumeMaxCount?: number;
  /** Most bytes kept in prefixes. Default 8 GiB. */
  resumeMaxBytes?: number;
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
  /** Why it failed, for `error`; for `saved`, set only for a retry found already stored. */
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

const SHUTDOWN_REASON = "server shut down before the upload finished";

/** The log's reason for a retry found already stored (`idempotent.ts`): saved, and nothing written. */
export const ALREADY_STORED =
  "already stored: the name holds exactly this length and SHA-256; nothing written";

function openResumeStore(options: ServerOptions): Promise<ResumeStore> {
  return ResumeStore.open(options.directory, {
    windowMs: options.resumeWindowMs ?? DEFAULT_RESUME_WINDOW_MS,
    maxCount: options.resumeMaxCount ?? DEFAULT_RESUME_MAX_COUNT,
    maxBytes: options.resumeMaxBytes ?? DEFAULT_RESUME_MAX_BYTES,
    onLog: options.onLog,
  });
}

/** One upload in progress. */
interface Session {
  conn: ServerConn;
  upload: UploadFile;
  peer: string;
  startedAt: Date;
  /** Where the upload is stored: `N.file`, or the client's name. */
  file: string;
  headers: UploadHeaders;
  /** The client sent extension headers: it gets `ok` on success. */
  wantsReceipt: boolean;
  received?: Received;
  /** A named, verified upload: what a retry may find (`retry_session.ts`). */
  retry?: RetrySession;
}

/** The settings that outlive start-up, defaults applied. */
type Settings =
  & Required<
    Omit<
      ServerOptions,
      "hostname" | "port" | "directory" | "resumable" | "resumeWindowMs" | "resumeMaxCount" | "resumeMaxBytes"
    >
  >
  & { resumeStore?: ResumeStore };

/** A running Accio server. Create it with {@link AccioServer.start}. */
export class AccioServer {
  /** The address it listens on. */
  readonly addr: Deno.NetAddr;
  /** The upload directory. */
  readonly directory: UploadDirectory;
  /** Settles once the server has stopped and every connection has ended. */
  readonly finished: Promise<void>;

  readonly #loop: AcceptLoop;
  readonly #options: Settings;
  #uploads = 0;

  private constructor(
    listener: Deno.TcpListener,
    directory: UploadDirectory,
    options: Settings,
  ) {
    this.addr = listener.addr;
    this.directory = directory;
    this.#options = options;
    this.#loop = new AcceptLoop(listener, {
      limit: options.maxConnections,
      handle: (conn, context) => this.#serve(conn, context),
      onLog: options.onLog,
    });
    this.finished = this.#loop.finished.finally(() => {
      options.resumeStore?.close();
      directory.close();
    });
  }

  /**
   * Checks the directory, binds the port and starts accepting.
   *
   * @throws {FileError} for an unusable directory; {ConnectionError} when the port cannot be bound.
   */
  static async start(options: ServerOptions): Promise<AccioServer> {
    const report: OpenReport = { recovered: [] };
    const allowNames = Boolean(options.allowNames || options.resumable);
    const directory = await UploadDirectory.open(options.directory, report, { names: allowNames });
    let listener: Deno.TcpListener;
    let resumeStore: ResumeStore | undefined;
    try {
      resumeStore = options.resumable ? await openResumeStore(options) : undefined;
      listener = listenAll(options.port, options.hostname);
    } catch (error) {
      resumeStore?.close();
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
      allowNames,
      resumeStore,
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

  /** Uploads in progress (a connection whose upload has ended, lingering on its close, is not one). */
  get activeConnections(): number {
    return this.#uploads;
  }

  /**
   * Stops accepting and waits for the uploads in flight to end (each still
   * bounded by the idle timeout). Like nginx's SIGQUIT.
   */
  shutdown(): Promise<void> {
    return this.#loop.shutdown();
  }

  /**
   * Stops accepting and aborts every upload in flight: each ends as `ERROR`,
   * and its client gets the error line. Like nginx's SIGTERM.
   */
  close(): Promise<void> {
    return this.#loop.close();
  }

  async #serve(raw: Deno.Conn, context: ConnectionContext): Promise<void> {
    const startedAt = new Date();
    const peer = formatAddress(raw.remoteAddr);
    let upload: UploadFile;
    try {
      upload = await this.directory.createNext();
    } catch (error) {
      // No number was used: the client sees the connection close before accio\r\n and reports an error.
      closeQuietly(raw);
      this.#loop.logThrottled(`refused a connection from ${peer}: ${describeError(error)}`);
      this.#loop.backOff();
      return;
    }
    if (this.#options.hashUploads) upload.hash = createHash("sha256");
    const conn = new ServerConn(raw);
    const session: Session = {
      conn,
      upload,
      peer,
      startedAt,
      file: upload.finalPath,
      headers: {},
      wantsReceipt: false,
    };
    const abort = () => conn.interrupt();
    if (context.signal.aborted) abort();
    context.signal.addEventListener("abort", abort, { once: true });
    this.#uploads++;
    try {
      await this.#receive(session);
      await this.#save(session, context.signal);
    } catch (error) {
      await this.#fail(session, error, context);
    } finally {
      context.signal.removeEventListener("abort", abort);
    }
  }

  /** Runs the handshake and streams the file into the temporary file. */
  async #receive(session: Session): Promise<void> {
    const { allowHeaders, allowNames, idleTimeoutMs } = this.#options;
    const { upload } = session;
    session.received = await receiveUpload(session.conn, upload, {
      timeoutMs: idleTimeoutMs,
      handshake: this.#options.handshake,
      maxBytes: this.#options.maxUploadBytes,
      maxHeaderBytes: this.#options.maxHeaderBytes,
      allowHeaderLines: allowHeaders || allowNames,
      onHandshake: async (lines, early) => {
        session.wantsReceipt = lines.length > 0;
        session.headers = parseHeaders(lines);
        const { name, sha256 } = session.headers;
        const retry = session.retry = RetrySession.for(session.headers, this.#options.resumeStore);
        if (name !== undefined) {
          if (!allowNames) throw new ProtocolError("named uploads are not enabled on this server");
          session.file = await upload.useName(checkName(name), { allowExisting: retry !== undefined });
        }
        if (sha256 !== undefined) upload.hash ??= createHash("sha256");
        const { maxUploadBytes: maxBytes } = this.#options;
        await retry?.begin(upload, session.conn.conn, {
          earlyBytes: early.length,
          timeoutMs: idleTimeoutMs,
          maxBytes,
        });
      },
    });
  }

  /** Checks what the client announced, publishes the file, and confirms. */
  async #save(session: Session, stop: AbortSignal): Promise<void> {
    const { upload, headers, conn } = session;
    const received = session.received!;
    // A shutdown that came as the last bytes did: the upload is cut off like the others.
    if (stop.aborted) throw new AccioError(SHUTDOWN_REASON);
    const { retry } = session;
    let sha256 = upload.hash?.digest("hex");
    // A resumed upload counts the prefix the server held; its hash covers the prefix as read from disk.
    const bytes = (retry?.offset ?? 0) + received.bytes;
    if (headers.length !== undefined && headers.length !== bytes) {
      throw new ProtocolError(`received ${bytes} bytes, but the client announced ${headers.length}`);
    }
    if (retry?.checksReceivedBytes === false) sha256 = headers.sha256; // publish() compares the stored file
    else if (headers.sha256 !== undefined && headers.sha256 !== sha256) {
      throw new ProtocolError("SHA-256 of the received bytes differs from the one the client announced");
    }
    const published = retry ? await retry.publish() : (await upload.commit(), "stored");
    retry?.release();
    if (session.wantsReceipt) {
      await writeAll(conn.conn, new TextEncoder().encode(`${RECEIPT_OK}\r\n`), 1_000, "the receipt")
        .catch(() => {});
    }
    conn.finish();
    const reason = published === "already-stored" ? ALREADY_STORED : undefined;
    this.#report(session, "saved", bytes, { sha256, reason });
  }

  /**
   * Tells the client why (error line, lingering close) while recording
   * `ERROR`; the slot is freed once the upload is recorded, not after the linger.
   */
  async #fail(session: Session, error: unknown, context: ConnectionContext): Promise<void> {
    const reason = context.signal.aborted ? SHUTDOWN_REASON : describeError(error);
    const lingerMs = Math.min(
      context.signal.aborted ? SHUTDOWN_LINGER_MS : LINGER_MS,
      this.#options.idleTimeoutMs,
    );
    const refused = session.conn.refuse(reason, lingerMs, context.signal);
    session.file = session.upload.finalPath;
    const { retry } = session;
    // Cut off while its data arrived (not refused, not found wrong): a resumable prefix.
    const failure = retry ? await retry.fail(session.received === undefined) : await session.upload.fail();
    retry?.release();
    this.#report(session, "error", session.upload.bytes, {
      reason: failure ? `${reason}; ${failure}` : reason,
    });
    context.release();
    await refused;
  }

  /** Ends the upload's count and tells `onUpload`; exactly once per upload, and never throws. */
  #report(session: Session, outcome: "saved" | "error", bytes: number, extra: Partial<UploadOutcome>): void {
    this.#uploads--;
    const outcomeOf = {
      id: session.upload.id,
      peer: session.peer,
      file: session.file,
      outcome,
      bytes,
      startedAt: session.startedAt,
      durationMs: Date.now() - session.startedAt.getTime(),
      handshake: session.received?.handshake,
      name: session.headers.name,
      ...extra,
    };
    try {
      this.#options.onUpload(outcomeOf);
    } catch (error) {
      this.#options.onLog(`reporting upload ${session.upload.id} failed: ${describeError(error)}`);
    }
  }
}
