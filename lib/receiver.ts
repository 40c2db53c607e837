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
import {
  GREETING,
  serverHandshake,
  type ServerHandshakeMode,
  type ServerHandshakeResult,
} from "./handshake.ts";
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
 * The write in flight: started without waiting, so the next read can fill
 * another buffer meanwhile; its error is kept for the next {@link settle}.
 */
class PendingWrite {
  #pending: Promise<void> = Promise.resolve();
  #error: unknown;
  readonly #sink: ByteSink;

  constructor(sink: ByteSink) {
    this.#sink = sink;
  }

  start(chunk: Uint8Array): void {
    this.#pending = this.#sink.write(chunk).catch((error) => {
      this.#error ??= error;
    });
  }

  /** Waits for the write in flight; throws the first write error. */
  async settle(): Promise<void> {
    await this.#pending;
    if (this.#error) throw this.#error;
  }

  /** Waits for the write in flight, whatever its outcome. */
  done(): Promise<void> {
    return this.#pending;
  }
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
  const write = new PendingWrite(sink);
  if (first.length > 0) write.start(first);
  const buffers = new ReceiveBuffers(pool);
  let abandoned: Uint8Array | undefined;
  const watchdog = new IdleWatchdog(timeoutMs, () => closeQuietly(socket));
  try {
    for (;;) {
      const buffer = buffers.next();
      abandoned = buffer; // an interrupted read may still land in it: never lend it again
      const n = await readFileData(socket, buffer, watchdog, timeoutMs);
      abandoned = undefined;
      if (n === null) break;
      watchdog.touch();
      checkLimit(total += n, maxBytes);
      await write.settle();
      write.start(buffer.subarray(0, n));
      buffers.adapt(n);
      if (buffers.single) await write.settle(); // one buffer: it must be free before the next read
    }
    await write.settle();
    return total;
  } finally {
    watchdog.stop();
    await write.done();
    buffers.release(abandoned);
  }
}

/** One read of file data; a failure says whether the idle timeout ended it. */
async function readFileData(
  socket: Socket,
  buffer: Uint8Array,
  watchdog: IdleWatchdog,
  timeoutMs: number,
): Promise<number | null> {
  try {
    return await socket.read(buffer);
  } catch (error) {
    throw watchdog.expired
      ? new TimeoutError(`no data for ${formatSeconds(timeoutMs)} while waiting for file data`)
      : connectionFailure(error, "while waiting for file data");
  }
}

/** Options of {@link greet}. */
export interface GreetOptions {
  /** Idle timeout: longest wait for any read, in ms. */
  timeoutMs: number;
  /** Which handshakes to accept. */
  handshake: ServerHandshakeMode;
  /** Largest double-handshake header, in bytes. */
  maxHeaderBytes: number;
  /** Whether extension header lines are accepted. */
  allowHeaderLines: boolean;
}

/**
 * The first step of an upload's receiving side: sends `accio\r\n` and
 * performs the handshake the client chose, with a {@link HANDSHAKE_BUFFER}.
 *
 * @throws {TimeoutError} {ProtocolError} {LimitError} {ConnectionError}
 */
export async function greet(socket: Socket, options: GreetOptions): Promise<ServerHandshakeResult> {
  await writeAll(socket, GREETING, options.timeoutMs, "accio\\r\\n");
  return await serverHandshake(socket, {
    mode: options.handshake,
    timeoutMs: options.timeoutMs,
    maxHeaderBytes: options.maxHeaderBytes,
    allowHeaderLines: options.allowHeaderLines,
    buffer: new Uint8Array(HANDSHAKE_BUFFER),
  });
}

/**
 * Streams the file that follows `handshake` into `sink`: the bytes that came
 * with the handshake, then the rest of the stream (see {@link receiveStream}).
 *
 * @returns the number of file bytes.
 * @throws {TimeoutError} {ConnectionError} {LimitError}, or whatever `sink` throws.
 */
export async function receiveFile(
  socket: Socket,
  handshake: ServerHandshakeResult,
  sink: ByteSink,
  options: StreamOptions,
): Promise<number> {
  if (!handshake.ended) return await receiveStream(socket, handshake.data, sink, options);
  checkLimit(handshake.data.length, options.maxBytes ?? Infinity);
  if (handshake.data.length > 0) await sink.write(handshake.data);
  return handshake.data.length;
}
