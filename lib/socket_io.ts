/**
 * Reads and writes on a socket, each bounded by a deadline that closes the
 * socket when it passes. Reads never take more bytes than asked for, so a
 * handshake never swallows the file data behind it.
 *
 * @example
 * ```ts
 * import { readExactly, writeAll } from "./socket_io.ts";
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: 5000 });
 * const greeting = await readExactly(conn, 7, 10_000, "accio\\r\\n");
 * await writeAll(conn, new Uint8Array([1, 2, 3]), 10_000);
 * ```
 * @module
 */
import { formatSeconds, withDeadline } from "./deadline.ts";
import { ConnectionError, TimeoutError } from "./errors.ts";

/** The socket operations Accio needs: `Deno.Conn` and the client's `TcpSocket` have them all. */
export interface Socket {
  /** Reads into `buffer`; resolves with the byte count, or `null` at end of stream. */
  read(buffer: Uint8Array): Promise<number | null>;
  /** Writes some of `data`; resolves with how much was taken. */
  write(data: Uint8Array): Promise<number>;
  /** Closes the socket; pending operations fail. */
  close(): void;
}

/** A socket that can also half-close: `Deno.Conn`, the client's `TcpSocket`, a `TlsStream`. */
export interface DuplexSocket extends Socket {
  /** Sends end of stream after everything written; reading goes on. */
  closeWrite(): Promise<void>;
}

/** Closes a socket that may already be closed. */
export function closeQuietly(socket: { close(): void }): void {
  try {
    socket.close();
  } catch {
    // Already closed: nothing left to release.
  }
}

/** Turns the runtime's socket errors into {@link ConnectionError}s that say what happened. */
export function connectionFailure(error: unknown, during: string): Error {
  if (error instanceof TimeoutError || error instanceof ConnectionError) return error;
  if (error instanceof Deno.errors.ConnectionReset) {
    return new ConnectionError(`connection reset by peer ${during}`, { cause: error });
  }
  if (error instanceof Deno.errors.BrokenPipe) {
    return new ConnectionError(`connection closed by peer ${during}`, { cause: error });
  }
  const reason = error instanceof Error ? error.message : String(error);
  return new ConnectionError(`connection failed ${during}: ${reason}`, { cause: error });
}

/**
 * `operation()`, unless `timeoutMs` pass first: then the socket is closed and
 * the deadline's error is the one thrown, even where closing the socket makes
 * the operation itself fail first. Any other failure is said as a
 * {@link ConnectionError} `during` what it happened.
 */
async function closingAfter<T>(
  operation: () => Promise<T>,
  socket: Socket,
  deadline: { timeoutMs: number; makeError: () => Error; during: string },
): Promise<T> {
  let expired: Error | undefined;
  try {
    return await withDeadline(operation(), deadline.timeoutMs, () => expired ?? deadline.makeError(), () => {
      expired = deadline.makeError();
      closeQuietly(socket);
    });
  } catch (error) {
    throw connectionFailure(expired ?? error, deadline.during);
  }
}

/**
 * Reads once into `buffer`, waiting at most `timeoutMs` for data.
 *
 * @returns the byte count, or `null` at end of stream.
 * @throws {TimeoutError} (and closes the socket) when nothing arrives in time.
 */
export function readWithin(
  socket: Socket,
  buffer: Uint8Array,
  timeoutMs: number,
  waitingFor: string,
): Promise<number | null> {
  return closingAfter(() => socket.read(buffer), socket, {
    timeoutMs,
    makeError: () =>
      new TimeoutError(`no data for ${formatSeconds(timeoutMs)} while waiting for ${waitingFor}`),
    during: `while waiting for ${waitingFor}`,
  });
}

/**
 * Reads exactly `length` bytes, however they are split into segments, within
 * `timeoutMs` for the whole of them: a peer trickling one byte at a time
 * cannot stretch the wait.
 *
 * @throws {TimeoutError} (and closes the socket) when the bytes are not all there in time.
 * @throws {ConnectionError} when the stream ends first.
 */
export function readExactly(
  socket: Socket,
  length: number,
  timeoutMs: number,
  waitingFor: string,
): Promise<Uint8Array> {
  const buffer = new Uint8Array(length);
  let filled = 0;
  const fill = async () => {
    while (filled < length) {
      const n = await socket.read(buffer.subarray(filled));
      if (n === null) {
        throw new ConnectionError(
          `connection closed by peer after ${filled} of the ${length} bytes of ${waitingFor}`,
        );
      }
      filled += n;
    }
    return buffer;
  };
  const within = formatSeconds(timeoutMs);
  return closingAfter(fill, socket, {
    timeoutMs,
    makeError: () =>
      new TimeoutError(
        filled === 0
          ? `no data for ${within} while waiting for ${waitingFor}`
          : `only ${filled} of the ${length} bytes of ${waitingFor} arrived within ${within}`,
      ),
    during: `while waiting for ${waitingFor}`,
  });
}

/**
 * Writes all of `data`. Each write may take at most `timeoutMs` to make
 * progress: a peer that stops reading is detected even mid-buffer.
 *
 * @throws {TimeoutError} (and closes the socket) when the send buffer stays full.
 */
export async function writeAll(
  socket: Socket,
  data: Uint8Array,
  timeoutMs: number,
  sending = "data",
): Promise<void> {
  const deadline = {
    timeoutMs,
    makeError: () =>
      new TimeoutError(`peer accepted no data for ${formatSeconds(timeoutMs)} while sending ${sending}`),
    during: `while sending ${sending}`,
  };
  let written = 0;
  while (written < data.length) {
    written += await closingAfter(() => socket.write(data.subarray(written)), socket, deadline);
  }
}
