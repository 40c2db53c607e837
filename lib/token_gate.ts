/**
 * `server --tokens FILE` as a {@link Gate}: only a connection that shows a
 * valid token gets a number, so nobody without one can make the server
 * create a file, not even an `ERROR` one.
 *
 * The greeting and the double handshake therefore run here, before the
 * number: `accio\r\n`, the handshake, and the `token: <t>` header line, which
 * is taken out of the header lines (nothing after this gate ever sees it:
 * not the header parser, the logs, the upload log or the metrics). Then:
 *
 * - a valid token: the identity and the finished handshake go on the
 *   {@link Arrival}; the session goes on from there without greeting again;
 * - no token (a single handshake cannot carry one) or a wrong one: the line
 *   `error unauthorized\r\n`, a short lingering close, and a refusal counted
 *   as `unauthorized`; the failure counts towards the address's lock-out;
 * - a close right after `accio\r\n` (a port probe, or an empty upload
 *   without a token): answered `error unauthorized` too, since an empty
 *   upload's client takes a bare close for its receipt, but neither counted
 *   nor logged, nor a failure towards the lock-out;
 * - a locked-out address ({@link AuthLockout}) is refused at once, before
 *   `accio\r\n` and reading nothing, counted as `backoff`.
 *
 * The whole handshake must arrive within the idle timeout: a client that
 * trickles its header cannot hold its connection slot for longer.
 *
 * @example
 * ```ts
 * import { AuthLockout } from "./auth_lockout.ts";
 * import { tokenGate } from "./token_gate.ts";
 * import { TokenFile } from "./tokens.ts";
 * const tokens = await TokenFile.load("/etc/accio/tokens");
 * const gate = tokenGate({
 *   tokens,
 *   lockout: new AuthLockout(),
 *   timeoutMs: 10_000,
 *   handshake: "auto",
 *   maxHeaderBytes: 8192,
 * });
 * ```
 * @module
 */
import { addressKey } from "./address_limit.ts";
import { peerHost } from "./address_gate.ts";
import type { Admission, AttemptOutcome, AuthLockout } from "./auth_lockout.ts";
import { formatSeconds } from "./deadline.ts";
import {
  AccioError,
  ConnectionError,
  LimitError,
  NotAnUploadError,
  ProtocolError,
  TimeoutError,
} from "./errors.ts";
import type { ServerHandshakeMode, ServerHandshakeResult } from "./handshake.ts";
import { greet } from "./receiver.ts";
import { LINGER_MS, ServerConn } from "./server_conn.ts";
import { isTokenLine, TOKEN_HEADER, UNAUTHORIZED } from "./tokens.ts";
import type { Arrival, Gate } from "./upload_session.ts";

/** Settings of {@link tokenGate}. */
export interface TokenGateOptions {
  /** Where tokens are checked (a {@link TokenFile}: reloaded on SIGHUP, each check sees the tokens in use). */
  tokens: { verify(token: string): string | undefined };
  /** Failures per address, and the locks they lead to. */
  lockout: AuthLockout;
  /** The idle timeout, in ms: also the longest the whole handshake may take. */
  timeoutMs: number;
  /** The handshakes the server accepts (a single one is always unauthorized). */
  handshake: ServerHandshakeMode;
  /** Largest double-handshake header, in bytes. */
  maxHeaderBytes: number;
}

/** A connection closed right after `accio\r\n`, before any byte: a port probe, or an empty upload. */
const EMPTY = Symbol("closed before any byte");

/** IPv6 clients count by their /64: one host may hold all of it. */
const IPV6_PREFIX_BITS = 64;

/**
 * The gate: see the module's description.
 *
 * @example
 * ```ts
 * import { AuthLockout } from "./auth_lockout.ts";
 * import { tokenGate } from "./token_gate.ts";
 * import { TokenTable } from "./tokens.ts";
 * const tokens = TokenTable.parse("", "no tokens");
 * const gates = [tokenGate({ tokens, lockout: new AuthLockout(), timeoutMs: 10_000, handshake: "auto", maxHeaderBytes: 8192 })];
 * ```
 */
export function tokenGate(options: TokenGateOptions): Gate {
  return async (arrival: Arrival) => {
    const host = peerHost(arrival.peer);
    const admission = options.lockout.begin(addressKey(host, IPV6_PREFIX_BITS));
    if (!admission.admitted) throw lockedOut(host, admission.lockedMs);
    let outcome: AttemptOutcome = "other";
    try {
      await checkToken(arrival, options, host, admission);
      outcome = "success";
    } finally {
      admission.finish(outcome); // a failure was finished already, before its lingering close
    }
  };
}

/** The refusal of a locked-out address: before accio, nothing sent or read. */
function lockedOut(host: string, lockedMs: number): AccioError {
  const why = lockedMs > 0
    ? `locked for ${formatSeconds(lockedMs)} more after failed token checks`
    : "a token check of this address after failed ones is still in progress";
  return new AccioError(`${host} ${why}: refused before accio (back-off)`, { refusal: "backoff" });
}

/** The refusal of a connection whose address was locked during its handshake: told, its token unchecked. */
function lockedMeanwhile(host: string): AccioError {
  return new AccioError(
    `${host} locked meanwhile by the failed token checks of its other connections: its token was not checked (back-off)`,
    { refusal: "backoff" },
  );
}

/** What a connection whose address was locked after its greeting is told: its token was not checked. */
const LOCKED_REASON = "too many failed token checks from this address: try again later";

/** An attempt {@link AuthLockout.begin} admitted. */
type AdmittedAttempt = Extract<Admission, { admitted: true }>;

/**
 * Greets, runs the handshake and checks its token: records the identity and
 * the handshake on `arrival`, or answers `error unauthorized` and throws.
 *
 * @throws {AccioError} refused as `unauthorized` (answered already) without a valid token; timeouts and
 * broken connections as such, unanswered.
 */
async function checkToken(
  arrival: Arrival,
  options: TokenGateOptions,
  host: string,
  admission: AdmittedAttempt,
): Promise<void> {
  const conn = new ServerConn(arrival.conn);
  const linger = Math.min(LINGER_MS, options.timeoutMs);
  const handshake = await greetWithin(conn, options);
  if (handshake === EMPTY) {
    // A port probe, or an empty upload without a token: that client waits for the close as its receipt.
    await conn.refuse(UNAUTHORIZED, linger, arrival.signal);
    throw new NotAnUploadError("closed before sending a byte (tokens on: no number)");
  }
  if (!admission.mayCheck()) {
    await conn.refuse(LOCKED_REASON, linger, arrival.signal);
    throw lockedMeanwhile(host);
  }
  const taken = typeof handshake === "string" ? { problem: handshake, rest: [] } : takeToken(handshake);
  const identity = taken.token === undefined ? undefined : options.tokens.verify(taken.token);
  if (identity === undefined || typeof handshake === "string") {
    admission.finish("failure"); // now: the address's other connections must see it, not after the linger
    await conn.refuse(UNAUTHORIZED, linger, arrival.signal);
    const why = taken.problem ?? "the token matches no identity";
    throw new AccioError(`${UNAUTHORIZED}: ${why}`, { refusal: UNAUTHORIZED });
  }
  arrival.identity = identity;
  arrival.handshake = { ...handshake, headerLines: taken.rest };
}

/**
 * Greets and runs the handshake, all of it within the idle timeout.
 *
 * @returns the handshake; {@link EMPTY} for a close before any byte; or why it cannot carry a token.
 * @throws {TimeoutError} {ConnectionError}: nobody left to answer.
 */
async function greetWithin(
  conn: ServerConn,
  options: TokenGateOptions,
): Promise<ServerHandshakeResult | typeof EMPTY | string> {
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    conn.close(); // interrupts the read in progress; the socket stays open for nothing more
  }, options.timeoutMs);
  try {
    const handshake = await greet(conn, { ...options, allowHeaderLines: true });
    if (handshake.kind === "single" && handshake.ended && handshake.data.length === 0) return EMPTY;
    return handshake;
  } catch (error) {
    if (expired) throw new TimeoutError(`no complete handshake within ${formatSeconds(options.timeoutMs)}`);
    // Never the handshake's own message: it may quote header bytes, and so a token.
    if (error instanceof ProtocolError) return "the double handshake was broken";
    if (error instanceof LimitError) return "the double handshake's header was too long";
    if (error instanceof AccioError) throw error;
    throw new ConnectionError("the connection failed during the handshake", { cause: error });
  } finally {
    clearTimeout(timer);
  }
}

/** The handshake's token and its other header lines; or why it carries no usable token. */
interface TakenToken {
  token?: string;
  rest: Uint8Array[];
  problem?: string;
}

const TOKEN_LINE = new RegExp(`^${TOKEN_HEADER}: (.+)$`);

/** Takes every token-like line (any case, any spacing) out of the header lines; exactly one `token: <t>` counts. */
function takeToken(handshake: ServerHandshakeResult): TakenToken {
  if (handshake.kind === "single") return { rest: [], problem: "no token (a single handshake carries none)" };
  const rest: Uint8Array[] = [];
  const found: string[] = [];
  for (const line of handshake.headerLines) {
    if (isTokenLine(line)) found.push(new TextDecoder().decode(line));
    else rest.push(line);
  }
  if (found.length === 0) return { rest, problem: "no token header" };
  if (found.length > 1) return { rest, problem: "more than one token header" };
  const match = TOKEN_LINE.exec(found[0]);
  if (!match) return { rest, problem: `malformed token header (expected "${TOKEN_HEADER}: <token>")` };
  return { rest, token: match[1] };
}
