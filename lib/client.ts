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
import { describeError, FileError } from "./errors.ts";
import { clientHandshake, type ClientHandshakeMode } from "./handshake.ts";
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
 * close is the receipt. Bytes it sends meanwhile are not part of the default
 * protocol and are ignored.
 */
async function awaitReceipt(conn: Deno.TcpConn, timeoutMs: number): Promise<void> {
  const buffer = new Uint8Array(512);
  try {
    while ((await readWithin(conn, buffer, timeoutMs, "the server to confirm by closing")) !== null) {
      // Not part of the default protocol: ignored.
    }
  } catch (error) {
    throw connectionFailure(error, "before confirming the upload");
  }
}

/**
 * Uploads one file and resolves once the server has confirmed it by closing
 * the connection.
 *
 * @throws {FileError} {ConnectionError} {TimeoutError} {ProtocolError}
 */
export async function upload(options: UploadOptions): Promise<UploadResult> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const { file, size } = await openFile(options.path);
  try {
    const conn = await connectWithin(options.hostname, options.port, timeoutMs);
    try {
      await clientHandshake(conn, { mode: options.handshake ?? "single", timeoutMs });
      options.onProgress?.(0, size);
      const bytes = await sendStream(conn, file, {
        timeoutMs,
        onProgress: (sent) => options.onProgress?.(sent, size),
      });
      try {
        await conn.closeWrite();
      } catch (error) {
        throw connectionFailure(error, "while finishing the upload");
      }
      await awaitReceipt(conn, timeoutMs);
      return { bytes };
    } finally {
      closeQuietly(conn);
    }
  } finally {
    file.close();
  }
}
