/**
 * The sending side of an upload: stream a file into a socket in chunks, with
 * the file read of the next chunk overlapping the socket write of this one,
 * and a stall timeout on every socket write.
 *
 * @example
 * ```ts
 * import { sendStream } from "./sender.ts";
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: 5000 });
 * using file = await Deno.open("data.csv");
 * const sent = await sendStream(conn, file, { timeoutMs: 10_000 });
 * ```
 * @module
 */
import { abortable } from "./abortable.ts";
import { describeError, FileError } from "./errors.ts";
import { type Socket, writeAll } from "./socket_io.ts";

/** Default chunk size of {@link sendStream}, in bytes. */
export const SEND_CHUNK = 256 * 1024;

/** Something the sender reads the file from; `Deno.FsFile` is one. */
export interface ByteSource {
  /** Reads into `buffer`; resolves with the byte count, or `null` at the end. */
  read(buffer: Uint8Array): Promise<number | null>;
}

/** Options of {@link sendStream}. */
export interface SendOptions {
  /** Longest time the socket may accept no data, in ms. */
  timeoutMs: number;
  /**
   * Bytes per chunk.
   *
   * @default {SEND_CHUNK}
   */
  chunkSize?: number;
  /** The source's size, when known: no buffer is made larger than it. */
  sizeHint?: number;
  /** Called after each chunk is handed to the socket with the running total. */
  onProgress?: (sentBytes: number) => void;
  /** Stops sending at once when it aborts (the write in flight is left to the caller's close). */
  signal?: AbortSignal;
}

async function readChunk(source: ByteSource, buffer: Uint8Array): Promise<number | null> {
  try {
    return await source.read(buffer);
  } catch (error) {
    throw new FileError(`cannot read the file: ${describeError(error)}`, { cause: error });
  }
}

/**
 * Sends everything `source` yields, until its end.
 *
 * @returns the number of bytes sent.
 * @throws {TimeoutError} {ConnectionError} {FileError}, or `signal.reason` once `signal` aborts.
 */
export async function sendStream(socket: Socket, source: ByteSource, options: SendOptions): Promise<number> {
  const { timeoutMs, chunkSize = SEND_CHUNK, sizeHint, onProgress, signal } = options;
  // A small file needs no 256 KiB buffers (zero-filled on every upload).
  const size = sizeHint === undefined ? chunkSize : Math.max(1, Math.min(chunkSize, sizeHint));
  const buffers = [new Uint8Array(size), new Uint8Array(size)];
  let sent = 0;
  let next = 0;
  let n = await abortable(readChunk(source, buffers[next]), signal);
  while (n !== null) {
    const chunk = buffers[next].subarray(0, n);
    next ^= 1;
    // Read ahead from the file while the socket takes this chunk.
    const [, following] = await abortable(
      Promise.all([writeAll(socket, chunk, timeoutMs, "the file"), readChunk(source, buffers[next])]),
      signal,
    );
    sent += chunk.length;
    onProgress?.(sent);
    n = following;
  }
  return sent;
}
