/**
 * One upload from the client's side: open the file, connect, wait for the
 * whole `accio\r\n`, stream the file, half-close, and take the server's close
 * as the receipt.
 *
 * @example
 * ```ts
 * import { upload } from "./client.ts";
 * const { bytes } = await upload({ hostname: "localhost", port: 5000, path: "data.csv" });
 * ```
 * @module
 */
import { connectWithin } from "./connect.ts";
import { DEFAULT_TIMEOUT_MS } from "./deadline.ts";
import { createHash } from "node:crypto";
import { describeError, FileError, ProtocolError, RefusedError } from "./errors.ts";
import { clientHandshake, type ClientHandshakeMode, showBytes } from "./handshake.ts";
import { formatHeaders, RECEIPT_OK, type UploadHeaders } from "./headers.ts";
import { sendStream } from "./sender.ts";
import { closeQuietly, connectionFailure, readWithin } from "./socket_io.ts";

/** Settings of {@link upload}. */
export interface UploadOptions {
  /** Server host name or IP literal. */
  hostname: string;
  /** Server port. */
  port: number;
  /** File to send. */
  path: string;
  /** Handshake to use. Default `single`. */
  handshake?: ClientHandshakeMode;
  /**
   * Longest wait for each step that needs the server: connecting, each
   * `accio\r\n`, each write into a full send buffer, and the final close; in ms.
   * Default 10 000.
   */
  timeoutMs?: number;
  /** Called as bytes go out, with the total sent and the file's size (when known). */
  onProgress?: (sentBytes: number, totalBytes: number | undefined) => void;
  /** Ask the server to store the file at this relative path (header extension; implies double). */
  name?: string;
  /** Send the file's length and SHA-256 and require the server's `ok` (header extension; implies double). */
  verify?: boolean;
}

/** A delivered upload. */
export interface UploadResult {
  /** File bytes sent. */
  bytes: number;
}

async function openFile(path: string): Promise<{ file: Deno.FsFile; size: number | undefined }> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound ? "no such file" : describeError(error);
    throw new FileError(`cannot open "${path}": ${reason}`, { cause: error });
  }
  const info = await file.stat();
  if (info.isDirectory) {
    file.close();
    throw new FileError(`cannot send "${path}": it is a directory`);
  }
  return { file, size: info.isFile ? info.size : undefined };
}

/**
 * Waits for the server to close the connection after our half-close: its
 * close is the receipt. A server answering header extensions sends one line
 * first, `ok` or `error <reason>`.
 */
async function awaitReceipt(conn: Deno.TcpConn, timeoutMs: number, expectLine: boolean): Promise<void> {
  const received = await readReply(conn, timeoutMs);
  if (!expectLine) return; // the default protocol has the server send nothing: any bytes are ignored
  const line = new TextDecoder().decode(received).split("\r\n")[0];
  if (line === RECEIPT_OK) return;
  if (line.startsWith("error ")) throw new RefusedError(`server refused the upload: ${line.slice(6)}`);
  throw new ProtocolError(
    line === ""
      ? "server closed without a receipt; does it accept header extensions (server --headers or --names)?"
      : `server sent ${showBytes(received)} instead of a receipt`,
  );
}

/** Reads what the server sends until it closes; keeps the first 4 KiB. */
async function readReply(conn: Deno.TcpConn, timeoutMs: number): Promise<Uint8Array> {
  const kept = new Uint8Array(4096);
  const discard = new Uint8Array(4096);
  let length = 0;
  try {
    for (;;) {
      const target = length < kept.length ? kept.subarray(length) : discard;
      const n = await readWithin(conn, target, timeoutMs, "the server to confirm by closing");
      if (n === null) return kept.slice(0, length);
      if (target !== discard) length += n;
    }
  } catch (error) {
    throw connectionFailure(error, "before confirming the upload");
  }
}

/** SHA-256 of a file, streamed. */
async function fileSha256(path: string): Promise<string> {
  const hash = createHash("sha256");
  try {
    using file = await Deno.open(path);
    for await (const chunk of file.readable) hash.update(chunk);
  } catch (error) {
    throw new FileError(`cannot read "${path}": ${describeError(error)}`, { cause: error });
  }
  return hash.digest("hex");
}

/**
 * Uploads one file and resolves once the server has confirmed it by closing
 * the connection.
 *
 * @throws {FileError} {ConnectionError} {TimeoutError} {ProtocolError} {RefusedError}
 */
export async function upload(options: UploadOptions): Promise<UploadResult> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const { file, size } = await openFile(options.path);
  try {
    const headers: UploadHeaders = { name: options.name };
    if (options.verify) {
      if (size === undefined) throw new FileError(`cannot verify "${options.path}": not a regular file`);
      headers.length = size;
      headers.sha256 = await fileSha256(options.path);
    }
    const headerLines = formatHeaders(headers);
    const mode = headerLines.length > 0 ? "double" : options.handshake ?? "single";
    const conn = await connectWithin(options.hostname, options.port, timeoutMs);
    try {
      await clientHandshake(conn, { mode, timeoutMs, headerLines });
      options.onProgress?.(0, size);
      let bytes: number;
      try {
        bytes = await sendStream(conn, file, {
          timeoutMs,
          sizeHint: size,
          onProgress: (sent) => options.onProgress?.(sent, size),
        });
        await conn.closeWrite().catch((error) => {
          throw connectionFailure(error, "while finishing the upload");
        });
      } catch (error) {
        // A server that refuses a named or verified upload says why before it closes.
        if (headerLines.length > 0 && !(error instanceof FileError)) {
          const refusal = await awaitReceipt(conn, 1_000, true).then(() => undefined, (e) => e);
          if (refusal instanceof RefusedError) throw refusal;
        }
        throw error;
      }
      await awaitReceipt(conn, timeoutMs, headerLines.length > 0);
      return { bytes };
    } finally {
      closeQuietly(conn);
    }
  } finally {
    file.close();
  }
}
