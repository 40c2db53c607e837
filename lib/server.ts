/**
 * The Accio server: accepts connections concurrently, numbers them from 1 (or
 * after the highest upload already in the directory), and saves each upload
 * as `<N>.file`, complete or `ERROR`.
 *
 * Shaped like Go's `net/http` `Server`: explicit settings with defaults,
 * {@link AccioServer.shutdown} that stops accepting and drains uploads in
 * flight, and {@link AccioServer.close} that stops at once. Nothing global.
 * It is configuration and wiring only: accepting is the shared
 * {@link AcceptLoop}, each connection an upload session ({@link runSession})
 * writing through the directory as its {@link Store} ({@link UploadDirectory}).
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
import { AcceptLoop, type ConnectionContext, type SharedLimit } from "./accept_loop.ts";
import { describeError } from "./errors.ts";
import { listenAll } from "./listen.ts";
import {
  DEFAULT_RESUME_MAX_BYTES,
  DEFAULT_RESUME_MAX_COUNT,
  DEFAULT_RESUME_WINDOW_MS,
  ResumeStore,
} from "./resume_store.ts";
import type { NumberSource } from "./store.ts";
import { type OpenReport, UploadDirectory, uploadFileName } from "./upload_dir.ts";
import { runSession, type SessionOptions, type SessionSettings, sessionSettings } from "./upload_session.ts";
import type { UploadOutcome } from "./upload_session.ts";

export type { UploadOutcome } from "./upload_session.ts";

/** Settings of an {@link AccioServer}: where it listens and stores, and how each session runs. */
export interface ServerOptions extends SessionOptions {
  /** TCP port, 1-65535. */
  port: number;
  /** Directory the uploads are saved in; must exist and be writable. */
  directory: string;
  /** Address to listen on. Default: every interface, IPv6 and IPv4. */
  hostname?: string;
  /**
   * Connections served at once; more wait in the listen backlog.
   *
   * @default {1024}
   */
  maxConnections?: number;
  /** Where upload numbers come from. Default: a counter of this process, after the directory's highest. */
  numbers?: NumberSource;
  /**
   * Keep the received prefix of a broken named, verified upload for a later
   * `resume: yes` (see `resume_store.ts`). Implies names.
   *
   * @default {false}
   */
  resumable?: boolean;
  /** How long a kept prefix stays, in ms. Default a day. */
  resumeWindowMs?: number;
  /** Most prefixes kept at once. Default 100. */
  resumeMaxCount?: number;
  /** Most bytes kept in prefixes. Default 8 GiB. */
  resumeMaxBytes?: number;
  /** Called once per numbered connection when it ends: the place for what follows a commit. */
  onUpload?: (outcome: UploadOutcome) => void;
  /** Called for each connection refused before it got a number (a health check excepted), after its log line. */
  onRefused?: (refusal: Refusal) => void;
  /** Called with operational messages (accept failures, refusals, repairs). */
  onLog?: (message: string) => void;
  /**
   * This server is one worker of several in one process (`worker_pool.ts`): it
   * listens with `reusePort`, takes its connection slots from the whole
   * server's, and uses the directory that the main thread holds.
   *
   * @default {undefined}
   */
  worker?: WorkerShare;
}

/** What a worker shares with the rest of its server (see {@link ServerOptions.worker}). */
export interface WorkerShare {
  /** The whole server's connection slots. */
  slots: SharedLimit;
  /** Records a number no `N.file` will show, through the main thread's one writer of `.accio.numbers`. */
  recordGone(id: number): Promise<void>;
}

/** A connection refused before it got a number: who, why, and the label metrics count it under. */
export interface Refusal {
  /** The client's address, `host:port` (the PROXY header's, behind a balancer). */
  peer: string;
  /** Why, as logged. */
  reason: string;
  /** The label: `address-limit`, `disk-full`, `shortage`, `timeout`, `protocol`, ... */
  kind: string;
}

/** Default for {@link ServerOptions.maxConnections}. */
export const DEFAULT_MAX_CONNECTIONS = 1024;

/** A running Accio server. Create it with {@link AccioServer.start}. */
export class AccioServer {
  /** The address it listens on. */
  readonly addr: Deno.NetAddr;
  /** The upload directory. */
  readonly directory: UploadDirectory;
  /** Settles once the server has stopped and every connection has ended. */
  readonly finished: Promise<void>;

  readonly #loop: AcceptLoop;
  readonly #session: SessionSettings;
  readonly #onUpload: (outcome: UploadOutcome) => void;
  readonly #onLog: (message: string) => void;
  readonly #onRefused: (refusal: Refusal) => void;
  #uploads = 0;

  private constructor(listener: Deno.TcpListener, directory: UploadDirectory, options: ServerOptions) {
    this.addr = listener.addr;
    this.directory = directory;
    this.#session = sessionSettings(options);
    const { resumeStore } = this.#session;
    this.#onUpload = options.onUpload ?? (() => {});
    this.#onRefused = options.onRefused ?? (() => {});
    this.#onLog = options.onLog ?? (() => {});
    this.#loop = new AcceptLoop(listener, {
      limit: options.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
      handle: (conn, context) => this.#serve(conn, context),
      onLog: options.onLog,
      shared: options.worker?.slots,
    });
    this.finished = this.#loop.finished.finally(() => {
      resumeStore?.close();
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
    const directory = await UploadDirectory.open(options.directory, report, {
      names: allowNames,
      numbers: options.numbers,
      attach: options.worker,
    });
    let listener: Deno.TcpListener;
    let resumeStore: ResumeStore | undefined;
    try {
      resumeStore = options.resumable ? await openResumeStore(options) : undefined;
      listener = listenAll(options.port, options.hostname, { reusePort: options.worker !== undefined });
    } catch (error) {
      resumeStore?.close();
      directory.close();
      throw error;
    }
    logRepairs(report, options.onLog ?? (() => {}));
    return new AccioServer(listener, directory, { ...options, allowNames, resumeStore });
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

  /** One connection: its session, then the report; the slot is freed before a failed one's linger. */
  async #serve(conn: Deno.Conn, context: ConnectionContext): Promise<void> {
    const end = await runSession(conn, this.directory, this.#session, {
      signal: context.signal,
      onNumbered: () => this.#uploads++,
    });
    if (!end.numbered) {
      if (end.quiet) return;
      this.#loop.logThrottled(`refused a connection from ${end.peer}: ${end.reason}`);
      this.#onRefused({ peer: end.peer, reason: end.reason, kind: end.kind });
      if (end.shortage) this.#loop.backOff();
      return;
    }
    this.#uploads--;
    try {
      this.#onUpload(end.outcome);
    } catch (error) {
      this.#onLog(`reporting upload ${end.outcome.id} failed: ${describeError(error)}`);
    }
    context.release();
    await end.closed;
  }
}

/** The kept prefixes of `--resumable`, inside the upload directory. */
function openResumeStore(options: ServerOptions): Promise<ResumeStore> {
  return ResumeStore.open(options.directory, {
    windowMs: options.resumeWindowMs ?? DEFAULT_RESUME_WINDOW_MS,
    maxCount: options.resumeMaxCount ?? DEFAULT_RESUME_MAX_COUNT,
    maxBytes: options.resumeMaxBytes ?? DEFAULT_RESUME_MAX_BYTES,
    onLog: options.onLog,
  });
}

/**
 * Says what the start-up repair of the directory found.
 *
 * @example
 * ```ts
 * import { logRepairs } from "./server.ts";
 * logRepairs({ recovered: [7] }, console.error); // recorded ERROR for uploads cut off by an earlier run: 7.file
 * ```
 */
export function logRepairs(report: OpenReport, log: (message: string) => void): void {
  for (const note of report.notes ?? []) log(note);
  if (report.recovered.length > 0) {
    log(
      `recorded ERROR for uploads cut off by an earlier run: ${
        report.recovered.map(uploadFileName).join(", ")
      }`,
    );
  }
}
