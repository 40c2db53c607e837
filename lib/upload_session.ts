/**
 * One upload connection's life, from the accepted socket to the stored file
 * and the answer, as a sequence of small named steps:
 *
 * ```
 * admit    the gates, before any number (PROXY header, TLS, disk mark, ...)
 * number   Store.createNext: from here the connection ends as exactly one file
 * greet    accio\r\n and the handshake the client chose
 * headers  the extension headers, the name they ask for; for a named,
 *          verified upload what a retry finds (`retry_session.ts`)
 * receive  the file bytes into the store (hashed when asked to)
 * verify   shutdown, the announced length and SHA-256
 * commit   the store makes it durable and visible (for a retry: or finds it stored), or
 * fail     the store records ERROR, and the client gets `error <reason>`
 * answer   `ok` where the client asked for a receipt, then the close
 * ```
 *
 * It knows nothing of listening or of files: it writes through a
 * {@link Store} and returns how the upload ended, so a session runs over any
 * connected socket and any store (the tests use an in-memory one).
 *
 * @example
 * ```ts
 * import { runSession, sessionSettings } from "./upload_session.ts";
 * import { UploadDirectory } from "./upload_dir.ts";
 * const store = await UploadDirectory.open("/save");
 * const listener = Deno.listen({ port: 5000 });
 * const end = await runSession(await listener.accept(), store, sessionSettings({}), {
 *   signal: new AbortController().signal,
 * });
 * if (end.numbered) {
 *   console.log(end.outcome.file, end.outcome.outcome);
 *   await end.closed;
 * }
 * ```
 * @module
 */
import { createHash, type Hash } from "node:crypto";
import { DEFAULT_TIMEOUT_MS } from "./deadline.ts";
import { AccioError, describeError, NotAnUploadError, ProtocolError, refusalKind } from "./errors.ts";
import {
  DEFAULT_MAX_HEADER_BYTES,
  type ServerHandshakeMode,
  type ServerHandshakeResult,
} from "./handshake.ts";
import { parseHeaders, RECEIPT_OK, type UploadHeaders } from "./headers.ts";
import { formatAddress } from "./listen.ts";
import { type ByteSink, greet, receiveFile } from "./receiver.ts";
import { LINGER_MS, ServerConn, SHUTDOWN_LINGER_MS } from "./server_conn.ts";
import { closeQuietly, type DuplexSocket, writeAll } from "./socket_io.ts";
import type { Store, StoredUpload } from "./store.ts";
import { checkName } from "./upload_name.ts";
import { identityPath } from "./tokens.ts";
import type { ResumeStore } from "./resume_store.ts";
import { ALREADY_STORED, RetrySession } from "./retry_session.ts";

/** A new connection, before it has a number. */
export interface Arrival {
  /** The connection. A gate may replace it (a TLS gate, with the decrypted one). */
  conn: DuplexSocket;
  /** The accepted TCP connection's remote address (the balancer's, behind one). */
  readonly remoteAddr: Deno.Addr;
  /** The client's address, `host:port`, as logged. A gate may replace it (the PROXY protocol's source). */
  peer: string;
  /** When the connection was accepted. */
  readonly startedAt: Date;
  /** Aborted when the server stops at once: the connection is then closed under the gate. */
  readonly signal: AbortSignal;
  /** Run once the connection's session has ended, however: where a gate gives back what it took. */
  readonly atEnd: (() => void)[];
  /** Who the client proved to be (`server --tokens`): its named uploads go under `<identity>/`. */
  identity?: string;
  /**
   * The handshake, when a gate already ran it (the token gate must, to read
   * the token before a number): the session then does not greet again. Its
   * header lines are the extension headers left for the session.
   */
  handshake?: ServerHandshakeResult;
}

/**
 * A step run on every new connection before it gets a number: the place of
 * the PROXY protocol, a TLS handshake, the disk high-water mark, limits per
 * address, token checks. Throwing refuses the connection: it is closed before
 * `accio\r\n`, gets no number and leaves no file, and the reason is logged.
 */
export type Gate = (arrival: Arrival) => Promise<void>;

/** How a session serves its upload. */
export interface SessionOptions {
  /**
   * Abort an upload after this long without a byte, in ms.
   *
   * @default {10_000}
   */
  idleTimeoutMs?: number;
  /**
   * Handshakes accepted: `auto` detects single or double per connection.
   *
   * @default {"auto"}
   */
  handshake?: ServerHandshakeMode;
  /**
   * Largest upload in bytes; a larger one ends as `ERROR`.
   *
   * @default {Infinity}
   */
  maxUploadBytes?: number;
  /**
   * Largest double-handshake header in bytes.
   *
   * @default {8192}
   */
  maxHeaderBytes?: number;
  /**
   * Accept header extensions (`length`, `sha256`) and answer them with a receipt.
   *
   * @default {false}
   */
  allowHeaders?: boolean;
  /**
   * Also accept `name`: store the upload at that path in the store. Implies headers.
   *
   * @default {false}
   */
  allowNames?: boolean;
  /**
   * Compute the SHA-256 of every stored upload for {@link UploadOutcome.sha256}.
   *
   * @default {false}
   */
  hashUploads?: boolean;
  /**
   * Run on each connection, in order, before it gets a number (see {@link Gate}).
   *
   * @default {[]}
   */
  gates?: readonly Gate[];
  /**
   * Where broken named, verified uploads are kept for `resume: yes`
   * (`server --resumable`); `null` keeps none.
   *
   * @default {null}
   */
  resumeStore?: ResumeStore | null;
}

/** {@link SessionOptions} with every default applied. */
export type SessionSettings = Required<SessionOptions>;

/**
 * Applies the defaults.
 *
 * @example
 * ```ts
 * import { sessionSettings } from "./upload_session.ts";
 * sessionSettings({ allowNames: true }).idleTimeoutMs; // 10000
 * ```
 */
export function sessionSettings(options: SessionOptions): SessionSettings {
  return {
    idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_TIMEOUT_MS,
    handshake: options.handshake ?? "auto",
    maxUploadBytes: options.maxUploadBytes ?? Infinity,
    maxHeaderBytes: options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES,
    allowHeaders: options.allowHeaders ?? false,
    allowNames: options.allowNames ?? false,
    hashUploads: options.hashUploads ?? false,
    gates: options.gates ?? [],
    resumeStore: options.resumeStore ?? null,
  };
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
  /** File bytes received (for `error`, those stored before it failed). */
  bytes: number;
  /** Of `bytes`, those that came over this connection: a resumed upload's kept prefix is not among them. */
  received: number;
  /** Which handshake the client used, once known. */
  handshake?: "single" | "double";
  /** The name the client asked for, if any (with an identity, stored under `<identity>/`). */
  name?: string;
  /** The identity the client's token belongs to (`server --tokens`). */
  identity?: string;
  /** SHA-256 of the stored file, when hashing is on and the upload was saved. */
  sha256?: string;
  /** When the connection was accepted. */
  startedAt: Date;
  /** How long it lasted, in ms. */
  durationMs: number;
}

/** How a session ended: with a number (and so one file), or refused before it got one. */
export type SessionEnd =
  | {
    numbered: true;
    /** How the upload ended; it is recorded in the store. */
    outcome: UploadOutcome;
    /** Settles once the connection is closed (a failed one lingers, see {@link ServerConn.refuse}). */
    closed: Promise<void>;
  }
  | {
    numbered: false;
    /** The client's address. */
    peer: string;
    /** Why it was refused. */
    reason: string;
    /** What it is counted as: the error's `refusal` label, or its class's (`errors.ts`'s `refusalKind`). */
    kind: string;
    /** The store could not create the upload (descriptors or disk exhausted): accepting should pause. */
    shortage: boolean;
    /** It was no upload ({@link NotAnUploadError}: a health check, a probe): not worth a log line. */
    quiet: boolean;
  };

/** What a session gets from the server besides the connection. */
export interface SessionContext {
  /** Aborted when the server stops at once: the upload ends as `ERROR`. */
  signal: AbortSignal;
  /** Called once the connection has its number; it counts as an upload in progress from then on. */
  onNumbered?: (id: number) => void;
}

const SHUTDOWN_REASON = "server shut down before the upload finished";

/** One numbered upload in progress. */
interface Session {
  conn: ServerConn;
  upload: StoredUpload;
  /** Where file bytes go: the upload, through a hash when one is kept. */
  sink: ByteSink;
  hash?: Hash;
  sha256?: string;
  peer: string;
  startedAt: Date;
  /** Where the upload is stored: `N.file`, or the client's name. */
  file: string;
  headers: UploadHeaders;
  /** The client sent extension headers: it gets `ok` on success. */
  wantsReceipt: boolean;
  handshake?: "single" | "double";
  received: number;
  /** All the file's bytes arrived (a failure after that keeps no prefix). */
  arrived: boolean;
  /** A named, verified upload: what a retry may find (`retry_session.ts`). */
  retry?: RetrySession;
  /** The file's length, the bytes a resumed upload's server held included. */
  bytes: number;
  /** The client's identity (`server --tokens`). */
  identity?: string;
  /** The handshake a gate already ran, if any. */
  greeted?: ServerHandshakeResult;
}

/**
 * Serves one accepted connection: every step from the gates to the answer.
 * Never throws for anything a peer, the store or a shutdown does.
 */
export async function runSession(
  raw: Deno.Conn,
  store: Store,
  settings: SessionSettings,
  context: SessionContext,
): Promise<SessionEnd> {
  const arrival: Arrival = {
    conn: raw,
    remoteAddr: raw.remoteAddr,
    peer: formatAddress(raw.remoteAddr),
    startedAt: new Date(),
    signal: context.signal,
    atEnd: [],
  };
  try {
    return await admitAndServe(arrival, store, settings, context);
  } finally {
    for (const release of arrival.atEnd) release();
  }
}

/** The gates, then a number, then the upload. */
async function admitAndServe(
  arrival: Arrival,
  store: Store,
  settings: SessionSettings,
  context: SessionContext,
): Promise<SessionEnd> {
  try {
    await admit(arrival, settings.gates);
  } catch (error) {
    return refuse(arrival, error, false);
  }
  let upload: StoredUpload;
  try {
    upload = await store.createNext();
  } catch (error) {
    return refuse(arrival, error, true);
  }
  context.onNumbered?.(upload.id);
  return await serveUpload(numbered(arrival, upload), settings, context.signal);
}

/** Runs the gates; a stop at once meanwhile closes the connection (there is nothing to tell it yet). */
async function admit(arrival: Arrival, gates: readonly Gate[]): Promise<void> {
  if (gates.length === 0) return;
  const close = () => closeQuietly(arrival.conn);
  arrival.signal.addEventListener("abort", close, { once: true });
  try {
    for (const gate of gates) {
      arrival.signal.throwIfAborted();
      await gate(arrival);
    }
  } finally {
    arrival.signal.removeEventListener("abort", close);
  }
}

/** No number was used: the client sees the connection close before `accio\r\n` and reports an error. */
function refuse(arrival: Arrival, error: unknown, shortage: boolean): SessionEnd {
  closeQuietly(arrival.conn);
  const quiet = error instanceof NotAnUploadError;
  const kind = shortage ? "shortage" : refusalKind(error);
  return { numbered: false, peer: arrival.peer, reason: describeError(error), kind, shortage, quiet };
}

function numbered(arrival: Arrival, upload: StoredUpload): Session {
  return {
    conn: new ServerConn(arrival.conn),
    upload,
    sink: upload,
    peer: arrival.peer,
    startedAt: arrival.startedAt,
    file: upload.finalPath,
    headers: {},
    wantsReceipt: false,
    received: 0,
    arrived: false,
    bytes: 0,
    identity: arrival.identity,
    greeted: arrival.handshake,
  };
}

async function serveUpload(
  session: Session,
  settings: SessionSettings,
  stop: AbortSignal,
): Promise<SessionEnd> {
  const abort = () => session.conn.interrupt();
  if (stop.aborted) abort();
  stop.addEventListener("abort", abort, { once: true });
  try {
    await receive(session, settings);
    verify(session, stop);
    const published = session.retry
      ? await session.retry.publish()
      : (await session.upload.commit(), "stored");
    session.retry?.release();
    await answer(session);
    const closed = session.conn.finish();
    const reason = published === "already-stored" ? ALREADY_STORED : undefined;
    const outcome = outcomeOf(session, "saved", session.bytes, { sha256: session.sha256, reason });
    return { numbered: true, outcome, closed };
  } catch (error) {
    return await fail(session, error, settings, stop);
  } finally {
    session.retry?.release();
    stop.removeEventListener("abort", abort);
  }
}

/** Greets (unless a gate did), runs the handshake, reads the headers, and streams the file into the store. */
async function receive(session: Session, settings: SessionSettings): Promise<void> {
  const { idleTimeoutMs: timeoutMs, allowHeaders, allowNames } = settings;
  const handshake = session.greeted ?? await greet(session.conn, {
    timeoutMs,
    handshake: settings.handshake,
    maxHeaderBytes: settings.maxHeaderBytes,
    allowHeaderLines: allowHeaders || allowNames,
  });
  // The token gate accepted header lines to find the token; the others need the server's consent as ever.
  if (handshake.headerLines.length > 0 && !(allowHeaders || allowNames)) {
    throw new ProtocolError(
      "header lines besides the token sent, but this server accepts no header extensions",
    );
  }
  session.handshake = handshake.kind;
  await readHeaders(session, handshake.headerLines, settings, handshake.data.length);
  session.received = await receiveFile(session.conn, handshake, session.sink, {
    timeoutMs,
    maxBytes: settings.maxUploadBytes,
  });
  session.arrived = true;
}

/**
 * Takes the extension headers, before any file byte is stored: the name,
 * what a retry finds (a stored file, a kept prefix: `early` file bytes must
 * not come before a resume offset), and whether to hash.
 */
async function readHeaders(
  session: Session,
  lines: Uint8Array[],
  settings: SessionSettings,
  early: number,
): Promise<void> {
  const { identity } = session;
  // A token is an extension header line too: its client waits for the receipt.
  session.wantsReceipt = lines.length > 0 || identity !== undefined;
  session.headers = parseHeaders(lines);
  const { name, sha256 } = session.headers;
  // With an identity, a retry's kept prefix is found by the name inside the identity's folder only.
  const scoped = identity !== undefined && name !== undefined ? `${identity}/${name}` : name;
  const retry = session.retry = RetrySession.for(
    { ...session.headers, name: scoped },
    settings.resumeStore ?? undefined,
  );
  if (name !== undefined) {
    if (!settings.allowNames) throw new ProtocolError("named uploads are not enabled on this server");
    const segments = identity === undefined ? checkName(name) : identityPath(identity, name);
    session.file = await session.upload.useName(segments, { allowExisting: retry !== undefined });
  }
  const context = { earlyBytes: early, timeoutMs: settings.idleTimeoutMs, maxBytes: settings.maxUploadBytes };
  const prefix = await retry?.begin(session.upload, session.conn.conn, context);
  if (settings.hashUploads || sha256 !== undefined) hashAsReceived(session, prefix);
}

/** Hashes the file bytes on their way to the store, after `prefix` (the part a resumed upload's server held). */
function hashAsReceived(session: Session, prefix?: Hash): void {
  const hash = prefix ?? createHash("sha256");
  const { upload } = session;
  session.hash = hash;
  session.sink = {
    write: (chunk) => {
      hash.update(chunk);
      return upload.write(chunk);
    },
  };
}

/** Checks what the client announced against what arrived. */
function verify(session: Session, stop: AbortSignal): void {
  // A shutdown that came as the last bytes did: the upload is cut off like the others.
  if (stop.aborted) throw new AccioError(SHUTDOWN_REASON);
  const { headers, retry } = session;
  // A resumed upload counts, and its hash covers, the prefix its server held (read back from disk).
  const bytes = session.bytes = (retry?.offset ?? 0) + session.received;
  session.sha256 = session.hash?.digest("hex");
  if (headers.length !== undefined && headers.length !== bytes) {
    throw new ProtocolError(`received ${bytes} bytes, but the client announced ${headers.length}`);
  }
  // The name already held the whole file, and no byte came: the retry checks the stored one.
  if (retry?.checksReceivedBytes === false) session.sha256 = headers.sha256;
  else if (headers.sha256 !== undefined && headers.sha256 !== session.sha256) {
    throw new ProtocolError("SHA-256 of the received bytes differs from the one the client announced");
  }
}

/** The success path: the receipt where the client asked for one; the close follows ({@link ServerConn.finish}). */
async function answer(session: Session): Promise<void> {
  if (session.wantsReceipt) {
    await writeAll(session.conn.conn, new TextEncoder().encode(`${RECEIPT_OK}\r\n`), 1_000, "the receipt")
      .catch(() => {});
  }
}

/**
 * Tells the client why (error line, lingering close) while the store records
 * `ERROR`; returns once it is recorded, not after the linger.
 */
async function fail(
  session: Session,
  error: unknown,
  settings: SessionSettings,
  stop: AbortSignal,
): Promise<SessionEnd> {
  const reason = stop.aborted ? SHUTDOWN_REASON : describeError(error);
  const lingerMs = Math.min(stop.aborted ? SHUTDOWN_LINGER_MS : LINGER_MS, settings.idleTimeoutMs);
  const closed = session.conn.refuse(reason, lingerMs, stop);
  session.file = session.upload.finalPath;
  // Cut off while its data arrived (not refused, not found wrong): the prefix of a retry may be kept.
  const failure = session.retry ? await session.retry.fail(!session.arrived) : await session.upload.fail();
  const outcome = outcomeOf(session, "error", session.upload.bytes, {
    reason: failure ? `${reason}; ${failure}` : reason,
  });
  return { numbered: true, outcome, closed };
}

function outcomeOf(
  session: Session,
  outcome: UploadOutcome["outcome"],
  bytes: number,
  extra: Partial<UploadOutcome>,
): UploadOutcome {
  return {
    id: session.upload.id,
    peer: session.peer,
    file: session.file,
    outcome,
    bytes,
    // What a resumed upload's server held came over an earlier connection.
    received: Math.max(0, bytes - (session.retry?.offset ?? 0)),
    startedAt: session.startedAt,
    durationMs: Date.now() - session.startedAt.getTime(),
    handshake: session.handshake,
    name: session.headers.name,
    identity: session.identity,
    ...extra,
  };
}
