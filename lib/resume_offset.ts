/**
 * The one line of the resume exchange. A client that sent `resume: yes`
 * sends no file byte until it has read the server's answer, which comes
 * right after the header's empty line: `offset <N>\r\n` (the server holds the
 * file's first N bytes: send from byte N on) or `error <reason>\r\n`.
 *
 * @example
 * ```ts
 * import { formatOffsetLine, readOffsetLine } from "./resume_offset.ts";
 * formatOffsetLine(1048576); // "offset 1048576\r\n" as bytes
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: 5000 });
 * const offset = await readOffsetLine(conn, 10_000, 20480); // 0..20480
 * ```
 * @module
 */
import { formatSeconds, withDeadline } from "./deadline.ts";
import { ConnectionError, ProtocolError, TimeoutError } from "./errors.ts";
import { showBytes } from "./handshake.ts";
import { reasonOf, refusal } from "./reply.ts";
import { closeQuietly, connectionFailure, type Socket } from "./socket_io.ts";

const encoder = new TextEncoder();
const OFFSET_LINE = /^offset (0|[1-9][0-9]{0,15})$/;
/** The longest answer read: an `error` line with its longest reason, and some. */
const LINE_LIMIT = 600;

/** The server's answer to `resume: yes`: it holds the first `offset` bytes. */
export function formatOffsetLine(offset: number): Uint8Array {
  return encoder.encode(`offset ${offset}\r\n`);
}

/** Reads up to and including the first CRLF, one byte at a time: never a byte past the line. */
async function readLine(socket: Socket): Promise<Uint8Array> {
  const line = new Uint8Array(LINE_LIMIT);
  let length = 0;
  while (length < LINE_LIMIT) {
    const n = await socket.read(line.subarray(length, length + 1));
    if (n === null) {
      throw new ConnectionError(
        `connection closed by the server before it answered the resume request (after ${
          showBytes(line.subarray(0, length))
        })`,
      );
    }
    length += n;
    if (length >= 2 && line[length - 2] === 0x0d && line[length - 1] === 0x0a) return line.slice(0, length);
  }
  throw new ProtocolError(`server sent ${showBytes(line)} instead of an offset line`);
}

/**
 * Reads the server's answer to `resume: yes`, all of it within `timeoutMs`,
 * and returns the offset to send from (at most `size`).
 *
 * @throws {RefusedError} for an `error <reason>` line (transient or not by its reason).
 * @throws {ProtocolError} for anything else, or an offset beyond `size`.
 * @throws {TimeoutError} {ConnectionError} when the line does not arrive.
 */
export async function readOffsetLine(socket: Socket, timeoutMs: number, size: number): Promise<number> {
  let line: Uint8Array;
  try {
    line = await withDeadline(
      readLine(socket),
      timeoutMs,
      () =>
        new TimeoutError(`the server did not answer the resume request within ${formatSeconds(timeoutMs)}`),
      () => closeQuietly(socket),
    );
  } catch (error) {
    if (error instanceof ProtocolError) throw error;
    throw connectionFailure(error, "while waiting for the resume offset");
  }
  const text = new TextDecoder().decode(line.subarray(0, line.length - 2));
  if (text.startsWith("error ")) throw refusal(reasonOf(line));
  const match = OFFSET_LINE.exec(text);
  if (!match) throw new ProtocolError(`server sent ${showBytes(line)} instead of "offset <N>\\r\\n"`);
  const offset = Number(match[1]);
  if (offset > size) {
    throw new ProtocolError(`server offered to resume at byte ${offset} of a ${size}-byte file`);
  }
  return offset;
}
