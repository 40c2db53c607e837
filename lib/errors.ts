/**
 * Typed errors shared by the three programs, each carrying the exit code that
 * the entry points map it to.
 *
 * @example
 * ```ts
 * import { UsageError } from "./errors.ts";
 * throw new UsageError('invalid port "abc"');
 * ```
 * @module
 */

/** Exit code for a failure at run time: network, timeout, file, protocol. */
export const EXIT_FAILURE = 1;
/** Exit code for a command line that cannot be run as written. */
export const EXIT_USAGE = 2;

/** Options of an {@link AccioError}: the cause, and whether trying again may succeed. */
export interface AccioErrorOptions extends ErrorOptions {
  /** Overrides the class's {@link AccioError.transient} for this one error. */
  transient?: boolean;
  /** Refused before a number: what metrics count it as (`accio_refused_total{reason}`); see {@link refusalKind}. */
  refusal?: string;
}

/** Base of every error Accio reports to the user; `message` is shown after `ERROR: `. */
export class AccioError extends Error {
  /** The process exit code this error maps to. */
  readonly exitCode: number = EXIT_FAILURE;
  /**
   * Whether the same attempt may succeed later (a flaky link, a busy or
   * restarting server): the client's `--retries` retry only these. Timeouts
   * and connection failures are, by default; everything else is not.
   */
  readonly transient: boolean;
  /** For a connection refused before a number: the label it is counted under, when given. */
  readonly refusal?: string;
  /** `message` is what follows `ERROR: `; `options.cause` keeps the underlying error. */
  constructor(message: string, options?: AccioErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.transient = options?.transient ?? new.target.transientByDefault;
    if (options?.refusal !== undefined) this.refusal = options.refusal;
  }

  /** The default of {@link AccioError.transient} for errors of this class. */
  static readonly transientByDefault: boolean = false;
}

/** The command line is wrong: unknown option, missing argument, bad port. */
export class UsageError extends AccioError {
  /** Usage errors exit with {@link EXIT_USAGE}. */
  override readonly exitCode: number = EXIT_USAGE;
}

/** A peer did not answer, accept data or send data within a deadline. Transient. */
export class TimeoutError extends AccioError {
  /** A timeout may pass: transient. */
  static override readonly transientByDefault: boolean = true;
}

/** The peer sent bytes the protocol does not allow at that point. */
export class ProtocolError extends AccioError {}

/** The connection failed: refused, reset, closed early, unreachable. Transient unless said otherwise. */
export class ConnectionError extends AccioError {
  /** A link that broke may work again: transient. */
  static override readonly transientByDefault: boolean = true;
}

/**
 * The server answered an upload with `error <reason>`; `transient` tells
 * whether the reason is one that may pass (see `headers.ts`).
 */
export class RefusedError extends AccioError {
  /** The server's reason, as shown (printable, bounded). */
  readonly reason: string;
  /** `reason` is the server's; the message is `server refused the upload: <reason>` unless given. */
  constructor(reason: string, options?: AccioErrorOptions & { message?: string }) {
    super(options?.message ?? `server refused the upload: ${reason}`, options);
    this.reason = reason;
  }
}

/** A limit set by the operator was exceeded (size, header length). */
export class LimitError extends AccioError {}

/** Reading or writing a local file or directory failed. */
export class FileError extends AccioError {}

/** The program was stopped by a signal; exits 128 + the signal's number (SIGINT 130, SIGTERM 143, SIGHUP 129). */
export class InterruptedError extends AccioError {
  /** 128 + the signal's number, the shell's convention. */
  override readonly exitCode: number;
  /** `message` says which signal and what became of the work; `exitCode` is the code to exit with. */
  constructor(message: string, exitCode: number, options?: ErrorOptions) {
    super(message, options);
    this.exitCode = exitCode;
  }
}

/**
 * Renders any thrown value as the one-line reason shown after `ERROR: `.
 *
 * @example
 * ```ts
 * import { describeError } from "./errors.ts";
 * describeError(new Error("boom")); // "boom"
 * ```
 */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message.replace(/\s+/g, " ").trim();
  return String(error);
}

/**
 * The connection was no upload (a balancer's health check, a port probe that
 * closed at once): refused before it got a number, and not logged.
 */
export class NotAnUploadError extends AccioError {}

/**
 * The label a connection refused before it got a number is counted under:
 * the error's own {@link AccioError.refusal}, else one by its class.
 *
 * @example
 * ```ts
 * import { LimitError, refusalKind } from "./errors.ts";
 * refusalKind(new LimitError("too many", { refusal: "address-limit" })); // "address-limit"
 * refusalKind(new Error("boom")); // "other"
 * ```
 */
export function refusalKind(error: unknown): string {
  if (error instanceof AccioError && error.refusal !== undefined) return error.refusal;
  if (error instanceof TimeoutError) return "timeout";
  if (error instanceof ProtocolError) return "protocol";
  if (error instanceof LimitError) return "limit";
  if (error instanceof ConnectionError) return "connection";
  if (error instanceof FileError) return "file";
  return "other";
}
