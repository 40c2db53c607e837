/**
 * One upload from the client's side: check the name, open the file, connect,
 * wait for the whole `accio\r\n`, stream the file while watching what the
 * server says, half-close, and take the server's clean close as the receipt.
 *
 * The client half-closes (FIN) only after the whole file was sent. Every
 * failure before that point, and an abort through `signal`, ends the
 * connection with a reset instead, so the server records `ERROR` and never
 * keeps a truncated file. Any byte from the server after the handshake in the
 * default protocol, or a reset at any time, is a failure (see `reply.ts`).
 *
 * A default client (no handshake chosen) whose file begins `confirm-accio\r\n`
 * uses the double handshake without header lines: a server in `auto` mode
 * would otherwise take those bytes for the start of a double handshake. An
 * explicit `single` handshake with such a file is refused before connecting.
 *
 * With `resume` (a named, verified upload) the header carries `resume: yes`;
 * the client then reads the server's `offset <N>` line before it sends any
 * file byte, and sends the file from byte N on. One call is one attempt:
 * retries are `delivery.ts`'s.
 *
 * @example
 * ```ts
 * import { upload } from "./client.ts";
 * const { bytes } = await upload({ hostname: "localhost", port: 5000, path: "data.csv" });
 * ```
 * @module
 */
import { settlesWithin } from "./abortable.ts";
import { type ClientSocket, connectWithin } from "./connect.ts";
import { DEFAULT_TIMEOUT_MS, formatSeconds, withDeadline } from "./deadline.ts";
import {
  ConnectionError,
  describeError,
  FileError,
  InterruptedError,
  RefusedError,
  TimeoutError,
  UsageError,
} from "./errors.ts";
import { clientHandshake, type ClientHandshakeMode, CONFIRM } from "./handshake.ts";
import { formatHeaders, type UploadHeaders } from "./headers.ts";
import { TOKEN_HEADER, UNAUTHORIZED } from "./tokens.ts";
import { judgeReply, ReplyWatcher } from "./reply.ts";
import { readOffsetLine } from "./resume_offset.ts";
import { sendStream } from "./sender.ts";
import { closeQuietly, connectionFailure } from "./socket_io.ts";
import type { TlsClientOptions } from "./tls_client.ts";
import { fileSha256, openSource, type UploadSource } from "./upload_source.ts";
import { checkName } from "./upload_name.ts";

/** Settings of {@link upload}. */
export interface UploadOptions {
  /** Server host name or IP literal. */
  hostname: string;
  /** Server port. */
  port: number;
  /** File to send. */
  path: string;
  /**
   * Handshake to use. Default: `single`, or `double` for a file that begins
   * `confirm-accio\r\n`; `single` with such a file is refused.
   */
  handshake?: ClientHandshakeMode;
  /**
   * Longest wait for each step that needs the server, each as a whole:
   * connecting, each `accio\r\n`, each write into a full send buffer, and the
   * final receipt; in ms. Default 10 000.
   */
  timeoutMs?: number;
  /** Called as bytes go out, with the total sent and the file's size (when known). */
  onProgress?: (sentBytes: number, totalBytes: number | undefined) => void;
  /** Called while `verify` hashes the file, with the bytes hashed and the file's size. */
  onHashProgress?: (hashedBytes: number, totalBytes: number) => void;
  /** Ask the server to store the file at this relative path (header extension; implies double). */
  name?: string;
  /** Send the file's length and SHA-256 and require the server's `ok` (header extension; implies double). */
  verify?: boolean;
  /** The file's SHA-256, already computed (another attempt's): `verify` then does not hash again. */
  sha256?: string;
  /**
   * Ask for the prefix the server kept of an earlier attempt and send only
   * the rest (`resume: yes`; needs `name` and implies `verify`).
   */
  resume?: boolean;
  /**
   * The opened file to send instead of opening `path` (which then only names
   * it in messages); the caller closes it. How standard input is sent again.
   */
  source?: UploadSource;
  /**
   * The client's token (`server --tokens`): sent as the `token` header line
   * (implies double), never shown in any message.
   */
  token?: string;
  /** Called as bytes go out, with the file bytes sent by this attempt (not counting a resumed prefix). */
  onSent?: (sentBytes: number) => void;
  /** Called once the whole file went out and the client half-closed: the server may store it from then on. */
  onAllSent?: () => void;
  /**
   * Speak TLS, and verify the server's certificate so (`client --tls`): a
   * certificate not trusted fails the upload inside the handshake, before
   * any byte of it. Plaintext when absent.
   */
  tls?: TlsClientOptions;
  /**
   * Aborts the upload (with a reset, once connected) when it fires; `upload`
   * then rejects with an {@link InterruptedError} built from the reason: an
   * `InterruptedError` whose message names the signal, e.g. "interrupted by SIGINT".
   */
  signal?: AbortSignal;
}

/** A delivered upload. */
export interface UploadResult {
  /** File bytes sent by this attempt. */
  bytes: number;
  /** Where the attempt started: the prefix the server already held (0 unless resumed). */
  offset: number;
  /** The file's SHA-256, when it was sent (`verify`). */
  sha256?: string;
}

/** How far an upload got: what an interruption leaves behind depends on it. */
type Stage = "preparing" | "sending" | "sent";

const AFTERMATH: Record<Stage, string> = {
  preparing: "stopped before connecting; nothing was sent",
  sending: "upload aborted with a reset, so the server records it as ERROR",
  sent: "the whole file was sent but not yet confirmed by the server; it may have been stored",
};

/**
 * Refuses, before anything is opened or sent, what cannot work: a name the
 * server would refuse (control bytes, `..`, absolute paths...), or `resume`
 * without a name.
 *
 * @throws {UsageError}
 */
export function checkUploadOptions(options: Pick<UploadOptions, "name" | "resume">): void {
  if (options.name !== undefined) {
    try {
      checkName(options.name);
    } catch (error) {
      throw new UsageError(`${describeError(error)} (the server would refuse it; nothing was sent)`);
    }
  }
  if (options.resume && options.name === undefined) {
    throw new UsageError("resuming needs a named upload (--name or --named)");
  }
}

/**
 * The server's `error unauthorized`, said plainly: the token was refused, or
 * one is needed. Permanent: the same token gets the same answer.
 */
function explainRefusal(error: unknown, sentToken: boolean): unknown {
  if (!(error instanceof RefusedError) || error.reason !== UNAUTHORIZED) return error;
  const message = sentToken
    ? "the server refused the token (unauthorized): it matches no identity in the server's tokens file, " +
      "or was revoked"
    : "the server requires a token (unauthorized): give one with --token-file FILE or ACCIO_TOKEN";
  return new RefusedError(UNAUTHORIZED, { message, transient: false });
}

/** Why the sender stopped when the server spoke first; replaced by what the server said. */
const SERVER_SPOKE = new ConnectionError("the server spoke while the file was being sent");

function startsWithConfirm(head: Uint8Array): boolean {
  return head.length === CONFIRM.length && head.every((byte, i) => byte === CONFIRM[i]);
}

/** The handshake and header lines for the file of `options`, read from `source`. */
async function planUpload(
  options: UploadOptions,
  source: UploadSource,
): Promise<{ mode: ClientHandshakeMode; headerLines: string[]; sha256?: string }> {
  const { path, name, handshake, resume } = options;
  const headers: UploadHeaders = { name, resume };
  if (options.verify || resume) {
    const size = source.size;
    if (size === undefined) throw new FileError(`cannot verify "${path}": not a regular file`);
    headers.length = size;
    headers.sha256 = options.sha256 ?? await fileSha256(path, {
      onProgress: (hashed) => options.onHashProgress?.(hashed, size),
      signal: options.signal,
    });
  }
  const headerLines = formatHeaders(headers);
  if (options.token !== undefined) {
    if (handshake === "single") {
      throw new UsageError(
        "a token needs the double handshake (it is a header line): drop --handshake single",
      );
    }
    // Never through formatHeaders: its messages quote the value. The token was checked when it was read.
    headerLines.unshift(`${TOKEN_HEADER}: ${options.token}`);
  }
  if (headerLines.length > 0) return { mode: "double", headerLines, sha256: headers.sha256 };
  if (!startsWithConfirm(source.head)) return { mode: handshake ?? "single", headerLines };
  if (handshake === "single") {
    throw new UsageError(
      `cannot send "${path}" with --handshake single: it begins with "confirm-accio\\r\\n", which a server ` +
        `detecting the handshake takes for a double handshake; use --handshake double ` +
        `(or no --handshake: the client then picks double for such a file)`,
    );
  }
  return { mode: "double", headerLines };
}

/**
 * The error a failed send ends with. The server's own words win: after it
 * spoke, and also when the send failed first (its reset can overtake the
 * line it sent just before).
 */
async function sendFailure(
  error: unknown,
  reply: ReplyWatcher,
  { receipt, spoke, timeoutMs }: { receipt: boolean; spoke: boolean; timeoutMs: number },
): Promise<unknown> {
  const waitMs = spoke ? timeoutMs : Math.min(timeoutMs, 1_000);
  const settled = await settlesWithin(reply.done, waitMs);
  const { state } = reply;
  if (!spoke && state.bytes.length === 0) return error;
  const judged = judgeReply(state, { receipt, finished: false, timedOutMs: settled ? undefined : waitMs });
  return judged ?? error;
}

/** One upload in progress. */
class Upload {
  readonly #options: UploadOptions;
  readonly #timeoutMs: number;
  #socket: ClientSocket | undefined;
  #stage: Stage = "preparing";
  #interruptedAt: Stage | undefined;

  constructor(options: UploadOptions) {
    this.#options = options;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** Aborts now: resets the connection, if any, at once. */
  interrupt(): void {
    this.#interruptedAt ??= this.#stage;
    this.#socket?.reset();
  }

  /** The error an interruption with `reason` ends the upload with. */
  interruption(reason: unknown): InterruptedError {
    const code = reason instanceof InterruptedError ? reason.exitCode : 130;
    const where = AFTERMATH[this.#interruptedAt ?? this.#stage];
    return new InterruptedError(`${describeError(reason)}: ${where}`, code, { cause: reason });
  }

  async run(): Promise<UploadResult> {
    const options = this.#options;
    checkUploadOptions(options);
    const source = options.source ?? await openSource(options.path, CONFIRM.length);
    try {
      const { mode, headerLines, sha256 } = await planUpload(options, source);
      if (this.#interruptedAt) throw new Error("interrupted");
      const socket = await connectWithin(options.hostname, options.port, this.#timeoutMs, {
        tls: options.tls,
      });
      this.#socket = socket;
      this.#stage = "sending";
      if (this.#interruptedAt) socket.reset();
      try {
        // A TLS port waits in silence for a ClientHello, as a plaintext client waits for accio: say so.
        const silenceHint = options.tls ? undefined : "if the port speaks TLS, add --tls";
        await clientHandshake(socket, { mode, timeoutMs: this.#timeoutMs, headerLines, silenceHint });
        const offset = options.resume ? await this.#resumeAt(socket, source) : 0;
        const reply = new ReplyWatcher(socket, headerLines.length > 0);
        const bytes = await this.#send(socket, source, reply, headerLines.length > 0, offset);
        this.#stage = "sent";
        options.onAllSent?.();
        await this.#confirm(reply, headerLines.length > 0);
        return { bytes, offset, sha256 };
      } catch (error) {
        throw explainRefusal(error, options.token !== undefined);
      } finally {
        closeQuietly(socket); // a reset unless the whole file went out
      }
    } finally {
      if (options.source === undefined) source.close();
    }
  }

  /** Reads the server's offset line and moves the file there. */
  async #resumeAt(socket: ClientSocket, source: UploadSource): Promise<number> {
    const offset = await readOffsetLine(socket, this.#timeoutMs, source.size ?? 0);
    await source.seek(offset);
    return offset;
  }

  /** Streams the file and half-closes; stops at once when the server speaks first. */
  async #send(
    socket: ClientSocket,
    source: UploadSource,
    reply: ReplyWatcher,
    receipt: boolean,
    offset: number,
  ): Promise<number> {
    const { onProgress, onSent } = this.#options;
    const stop = new AbortController();
    reply.spoke.then(() => stop.abort(SERVER_SPOKE));
    onProgress?.(offset, source.size);
    try {
      const bytes = await sendStream(socket, source, {
        timeoutMs: this.#timeoutMs,
        sizeHint: source.size === undefined ? undefined : source.size - offset,
        onProgress: (sent) => {
          onSent?.(sent);
          onProgress?.(offset + sent, source.size);
        },
        signal: stop.signal,
      });
      if (stop.signal.aborted) throw SERVER_SPOKE;
      await withDeadline(
        socket.closeWrite(),
        this.#timeoutMs,
        () => new TimeoutError(`could not finish the upload within ${formatSeconds(this.#timeoutMs)}`),
      ).catch((error) => {
        throw connectionFailure(error, "while finishing the upload");
      });
      return bytes;
    } catch (error) {
      if (error instanceof FileError || this.#interruptedAt) throw error;
      throw await sendFailure(error, reply, {
        receipt,
        spoke: error === SERVER_SPOKE,
        timeoutMs: this.#timeoutMs,
      });
    }
  }

  /** Waits, as a whole within the timeout, for the server's receipt: its clean close, or `ok` and the close. */
  async #confirm(reply: ReplyWatcher, receipt: boolean): Promise<void> {
    const settled = await settlesWithin(reply.done, this.#timeoutMs);
    const failure = judgeReply(reply.state, {
      receipt,
      finished: true,
      timedOutMs: settled ? undefined : this.#timeoutMs,
    });
    if (failure) throw failure;
  }
}

/**
 * Uploads one file and resolves once the server has confirmed it.
 *
 * @throws {FileError} {ConnectionError} {TimeoutError} {ProtocolError} {RefusedError} {UsageError}
 * @throws {InterruptedError} when `signal` aborts.
 */
export async function upload(options: UploadOptions): Promise<UploadResult> {
  const run = new Upload(options);
  const { signal } = options;
  if (signal === undefined) return await run.run();
  if (signal.aborted) throw run.interruption(signal.reason);
  let onAbort = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => {
      run.interrupt(); // the reset goes out now, whatever the upload is waiting on
      reject(run.interruption(signal.reason));
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return await Promise.race([run.run(), aborted]);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}
