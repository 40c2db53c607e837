/**
 * Uploads spoken by hand over a raw socket, for tests that must send what the
 * client never would (half a handshake, bad headers, a cut-off body) or read
 * the server's exact reply.
 *
 * @module
 */
import { bytes, text } from "./encoding.ts";
import { connect, readToEnd, recvExactly, sendAll } from "./wire.ts";

/** The client's side of the double handshake up to (not including) `confirm-accio-again\r\n`. */
export async function doubleHandshake(conn: Deno.Conn): Promise<void> {
  await recvExactly(conn, 7);
  await sendAll(conn, bytes("confirm-accio\r\n"));
  await recvExactly(conn, 7);
}

/**
 * A raw double-handshake upload: the handshake, then `rest` (from
 * `confirm-accio-again\r\n` on), a half-close, and whatever the server sends
 * until it closes (or `"reset"`). Write errors are ignored: a server may cut
 * the peer off part-way, and the reply says how it ended.
 */
export async function rawDoubleUpload(port: number, rest: Uint8Array): Promise<Uint8Array | "reset"> {
  const conn = await connect(port);
  try {
    await doubleHandshake(conn);
    await sendAll(conn, rest).catch(() => {});
    await conn.closeWrite().catch(() => {});
    return await readToEnd(conn, 10_000).catch(() => "reset" as const);
  } finally {
    conn.close();
  }
}

/**
 * A raw single-handshake upload: the greeting, `data`, a half-close, and
 * whatever the server sends until it closes (or `"reset"`). Write errors are
 * ignored, as in {@link rawDoubleUpload}.
 */
export async function rawUploadReply(port: number, data: Uint8Array): Promise<Uint8Array | "reset"> {
  const conn = await connect(port);
  try {
    await recvExactly(conn, 7);
    await sendAll(conn, data).catch(() => {});
    await conn.closeWrite().catch(() => {});
    return await readToEnd(conn, 10_000).catch(() => "reset" as const);
  } finally {
    conn.close();
  }
}

/** The bytes of `reply` as text, or `"reset"`. */
export const replyText = (reply: Uint8Array | "reset"): string => reply === "reset" ? reply : text(reply);

/** Connects, reads the greeting, sends `data`, half-closes, and waits for the server to close. */
export async function rawUpload(port: number, data: Uint8Array, hostname = "127.0.0.1"): Promise<void> {
  const conn = await connect(port, hostname);
  try {
    const greeting = await recvExactly(conn, 7);
    if (text(greeting) !== "accio\r\n") throw new Error(`bad greeting ${JSON.stringify(text(greeting))}`);
    await sendAll(conn, data);
    await conn.closeWrite();
    await readToEnd(conn);
  } finally {
    conn.close();
  }
}
