/**
 * Raw loopback sockets for tests: a free port, connecting, reading with
 * bounded waits, sending everything, and a scripted one-connection fake
 * server. The names differ from lib/socket_io.ts's on purpose (`recvExactly`,
 * `sendAll`): these take a test's timeouts and fail loudly, lib's serve the
 * programs.
 *
 * @module
 */
import net from "node:net";
import { concat } from "./encoding.ts";

/** A port that was free a moment ago, on both IPv4 and IPv6. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "::", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Connects a raw TCP socket to loopback. */
export function connect(port: number, hostname = "127.0.0.1"): Promise<Deno.TcpConn> {
  return Deno.connect({ hostname, port });
}

// A read that timed out in a test is still pending in the runtime and would swallow the next bytes;
// keep it, per connection, and hand its bytes to the next read instead.
const pendingReads = new WeakMap<Deno.Conn, Promise<Uint8Array | null>>();

function nextChunk(conn: Deno.Conn): Promise<Uint8Array | null> {
  let chunk = pendingReads.get(conn);
  if (!chunk) {
    const buffer = new Uint8Array(64 * 1024);
    chunk = conn.read(buffer).then((n) => n === null ? null : buffer.subarray(0, n));
    pendingReads.set(conn, chunk);
  }
  return chunk;
}

/** One read, or `"timeout"` after `ms` (the bytes then go to the next read). */
export async function readWithTimeout(
  conn: Deno.Conn,
  buffer: Uint8Array,
  ms: number,
): Promise<number | null | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) =>
    timer = setTimeout(() => resolve("timeout"), Math.max(ms, 0))
  );
  let chunk;
  try {
    chunk = await Promise.race([nextChunk(conn), timeout]);
  } catch (error) {
    pendingReads.delete(conn);
    throw error;
  } finally {
    clearTimeout(timer);
  }
  if (chunk === "timeout") return chunk;
  pendingReads.delete(conn);
  if (chunk === null) return null;
  const n = Math.min(chunk.length, buffer.length);
  buffer.set(chunk.subarray(0, n));
  if (n < chunk.length) pendingReads.set(conn, Promise.resolve(chunk.subarray(n)));
  return n;
}

/** Reads exactly `n` bytes (bounded by `timeoutMs`); fails on a timeout or an early close. */
export async function recvExactly(conn: Deno.Conn, n: number, timeoutMs = 10_000): Promise<Uint8Array> {
  const buffer = new Uint8Array(n);
  let filled = 0;
  const end = Date.now() + timeoutMs;
  while (filled < n) {
    const got = await readWithTimeout(conn, buffer.subarray(filled), end - Date.now());
    if (got === "timeout") throw new Error(`timed out after ${timeoutMs} ms with ${filled} of ${n} bytes`);
    if (got === null) throw new Error(`connection closed after ${filled} of ${n} bytes`);
    filled += got;
  }
  return buffer;
}

/**
 * Reads until the peer closes; returns what arrived, or "reset" if the peer
 * reset the connection. Fails after `timeoutMs`.
 */
export async function readToEnd(conn: Deno.Conn, timeoutMs = 15_000): Promise<Uint8Array | "reset"> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(64 * 1024);
  const end = Date.now() + timeoutMs;
  for (;;) {
    let n;
    try {
      n = await readWithTimeout(conn, buffer, end - Date.now());
    } catch (error) {
      if (error instanceof Deno.errors.ConnectionReset) return "reset";
      throw error;
    }
    if (n === "timeout") throw new Error(`peer did not close within ${timeoutMs} ms`);
    if (n === null) break;
    chunks.push(buffer.slice(0, n));
  }
  return concat(...chunks);
}

/** Writes all of `data`. */
export async function sendAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let done = 0; done < data.length;) done += await conn.write(data.subarray(done));
}

/**
 * A one-connection fake server on loopback, scripted by `script`; `run` gets
 * its port. Resolves with what `script` returned.
 */
export async function withFakeServer<T>(
  script: (conn: Deno.TcpConn) => Promise<T>,
  run: (port: number) => Promise<void>,
): Promise<T> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const served = (async () => {
    const conn = await listener.accept();
    try {
      return await script(conn);
    } finally {
      try {
        conn.close();
      } catch {
        // closed by the script
      }
    }
  })();
  try {
    await run(port);
    return await served;
  } finally {
    listener.close();
  }
}

/** Connects and resets at once (SO_LINGER 0 through node:net), bounded to 5 s. */
export function connectAndReset(port: number): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port }, () => {
      socket.resetAndDestroy();
      resolve();
    });
    socket.on("error", () => resolve());
    setTimeout(() => {
      socket.destroy();
      resolve();
    }, 5_000);
  });
}
