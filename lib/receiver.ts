/**
 * The receiving side of an upload: greet, run the handshake, and stream the
 * file bytes into a sink with an idle timeout on every read.
 *
 * Socket reads and sink writes overlap: while one buffer is being written the
 * reads fill the other. Buffers are taken when file data starts, grow while
 * reads fill them and shrink as soon as reads come back small, the large ones
 * borrowed from a shared, bounded pool ({@link ReceiveBuffers}): an idle or
 * trickling connection holds a few KiB, a bulk upload moves large chunks.
 *
 * @example
 * ```ts
 * import { receiveStream } from "./receiver.ts";
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: 5000 });
 * let total = 0;
 * await receiveStream(conn, new Uint8Array(0), {
 *   write: (chunk) => { total += chunk.length; return Promise.resolve(); },
 * }, { timeoutMs: 10_000 });
 * ```
 * @module
 */
import { type BufferPool, ReceiveBuffers, SHARED_POOL } from "./buffer_pool.ts";
import { formatSeconds, IdleWatchdog } from "./deadline.ts";
import { LimitError, TimeoutError } from "./errors.ts";
import { GREETING, serverHandshake, type ServerHandshakeMode } from "./handshake.ts";
import { closeQuietly, connectionFailure, type Socket, writeAll } from "./socket_io.ts";

/** Where received file bytes go. */
export interface ByteSink {
  /** Stores `chunk`; the buffer is reused once the promise settles. */
  write(chunk: Uint8Array): Promise<void>;
}

/** The handshake's read buffer: all an idle connection holds. */
export const HANDSHAKE_BUFFER = 4 * 1024;

/** Options of {@link receiveStream}. */
export interface StreamOptions {
  /** Idle timeout: longest time without any byte, in ms. */
  timeoutMs: number;
  /** Most bytes accepted in all (including `first`); more is a {@link LimitError}. Default: no limit. */
  maxBytes?: number;
  /** Where large buffers are borrowed from. Default: the process's shared pool. */
  pool?: BufferPool;
}

function checkLimit(total: number, maxBytes: number): void {
  if (total > maxBytes) throw new LimitError(`upload larger than the limit of ${maxBytes} bytes`);
}

/**
 * Writes `first` (bytes that arrived with the handshake), then every byte the
 * socket delivers until the peer closes its side.
 *
 * While reads come back large, two buffers: the next read fills one while the
 * other is being written; while they come back small, one, each write settling
 * before the next read. Their size follows the reads ({@link ReceiveBuffers}). (Reading on into the same
 * buffer while a write is in flight, to batch, was tried: no measurable gain
 * here, and twice the peak memory.)
 *
 * @returns the number of bytes written to `sink`.
 * @throws {TimeoutError} {ConnectionError} {LimitError}, or whatever `sink` throws.
 */
export async function receiveStream(
  socket: Socket,
  first: Uint8Array,
  sink: ByteSink,
  { timeoutMs, maxBytes = Infinity, pool = SHARED_POOL }: StreamOptions,
): Promise<number> {
  let total = first.length;
  checkLimit(total, maxBytes);
  let writeError: unknown;
  const startWrite = (chunk: Uint8Array) =>
    sink.write(chunk).catch((error) => {
      writeError ??= error;
    });
  let pendingWrite = first.length > 0 ? startWrite(first) : Promise.resolve();
  const buffers = new ReceiveBuffers(pool);
  let abandoned: Uint8Array | undefined;
  const watchdog = new IdleWatchdog(timeoutMs, () => closeQuietly(socket));
  try {
    for (;;) {
      const buffer = buffers.next();
      let n: number | null;
      try {
        n = await socket.read(buffer);
      } catch (error) {
        abandoned = buffer; // an interrupted read may still land in it: never lend it again
        throw watchdog.expired
          ? new TimeoutError(`no data for ${formatSeconds(timeoutMs)} while waiting for file data`)
          : connectionFailure(error, "while waiting for file data");
      }
      if (n === null) break;
      watchdog.touch();
      total += n;
      checkLimit(total, maxBytes);
      await pendingWrite;
      if (writeError) throw writeError;
      pendingWrite = startWrite(buffer.subarray(0, n));
      buffers.adapt(n);
      if (buffers.single) await pendingWrite; // one buffer: it must be free before the next read
    }
    await pendingWrite;
    if (writeError) throw writeError;
    return total;
  } finally {
    watchdog.stop();
    await pendingWrite;
    buffers.release(abandoned);
  }
}

/** Options of {@link receiveUpload}. */
export interface ReceiveOptions {
  /** Idle timeout: longest wait for any read, in ms. */
  timeoutMs: number;
  /** Which handshakes to accept. */
  handshake: ServerHandshakeMode;
  /** Largest upload accepted, in bytes (after the header). */
  maxBytes: number;
  /** Largest double-handshake header, in bytes. */
  maxHeaderBytes: number;
  /** Whether extension header lines are accepted. */
  allowHeaderLines: boolean;
  /**
   * Called after the handshake, before any file data is stored, with the
   * header lines and the file bytes that came with them; may throw to refuse
   * the upload.
   */
  onHandshake?: (headerLines: Uint8Array[], early: Uint8Array) => Promise<void>;
}

/** What a finished receive learned. */
export interface Received {
  /** File bytes received (header excluded). */
  bytes: number;
  /** The handshake the client used. */
  handshake: "single" | "double";
  /** Extension header lines, raw. */
  headerLines: Uint8Array[];
}

/**
 * Runs one upload's receiving side: sends `accio\r\n`, performs the handshake
 * the client chose, and streams the file into `sink`.
 */
export async function receiveUpload(
  socket: Socket,
  sink: ByteSink,
  options: ReceiveOptions,
): Promise<Received> {
  await writeAll(socket, GREETING, options.timeoutMs, "accio\\r\\n");
  const handshake = await serverHandshake(socket, {
    mode: options.handshake,
    timeoutMs: options.timeoutMs,
    maxHeaderBytes: options.maxHeaderBytes,
    allowHeaderLines: options.allowHeaderLines,
    buffer: new Uint8Array(HANDSHAKE_BUFFER),
  });
  await options.onHandshake?.(handshake.headerLines, handshake.data);
  let bytes: number;
  if (handshake.ended) {
    checkLimit(handshake.data.length, options.maxBytes);
    if (handshake.data.length > 0) await sink.write(handshake.data);
    bytes = handshake.data.length;
  } else {
    bytes = await receiveStream(socket, handshake.data, sink, options);
  }
  return { bytes, handshake: handshake.kind, headerLines: handshake.headerLines };
}
