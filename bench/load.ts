/**
 * An in-process load generator for the benchmark: many uploads from one
 * process, so the figures measure the servers rather than process start-up.
 * `accio` mode speaks the single handshake through the client library; `raw`
 * mode (for `nc -l`) just connects, sends and half-closes.
 *
 * @module
 */
import { upload } from "../lib/client.ts";
import { connectWithin } from "../lib/connect.ts";
import { sendStream } from "../lib/sender.ts";
import { closeQuietly } from "../lib/socket_io.ts";

/** One upload to make. */
export interface Job {
  /** The server's port on 127.0.0.1. */
  port: number;
  /** The file to send. */
  path: string;
}

async function rawUpload({ port, path }: Job): Promise<void> {
  using file = await Deno.open(path);
  const conn = await connectWithin("127.0.0.1", port, 10_000);
  try {
    await sendStream(conn, file, { timeoutMs: 10_000 });
    await conn.closeWrite();
    const sink = new Uint8Array(512);
    while ((await conn.read(sink)) !== null) {
      // wait for the peer's close
    }
  } finally {
    closeQuietly(conn);
  }
}

/** Reads the server's 7-byte greeting; fails if the server closes first. */
async function readGreeting(conn: Deno.TcpConn, scratch: Uint8Array): Promise<void> {
  for (let got = 0; got < 7;) {
    const n = await conn.read(scratch.subarray(got, 7));
    if (n === null) throw new Error("server closed before accio");
    got += n;
  }
}

/**
 * Uploads small in-memory contents as lean as a client can: connect, read the
 * 7-byte greeting, write, half-close, wait for the close. For many small
 * uploads, where the generator's own cost would otherwise dominate the two
 * cores it shares with the server under test. Upload `i` sends
 * `contents[i % contents.length]`.
 */
export async function runSmallLoad(
  port: number,
  contents: Uint8Array[],
  count: number,
  concurrency: number,
): Promise<number> {
  const started = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, async () => {
    const scratch = new Uint8Array(64);
    while (next < count) {
      const content = contents[next++ % contents.length];
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await readGreeting(conn, scratch);
        for (let done = 0; done < content.length;) done += await conn.write(content.subarray(done));
        await conn.closeWrite();
        while ((await conn.read(scratch)) !== null) {
          // until the server's close
        }
      } finally {
        closeQuietly(conn);
      }
    }
  }));
  return performance.now() - started;
}

/**
 * Opens `count` connections one after another, each kept once its greeting
 * has arrived, into `conns` (so that the caller closes them, however this ends).
 */
export async function openIdleConnections(port: number, count: number, conns: Deno.TcpConn[]): Promise<void> {
  const scratch = new Uint8Array(7);
  while (conns.length < count) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conns.push(conn);
    await readGreeting(conn, scratch);
  }
}

/**
 * Runs `jobs` with at most `concurrency` in flight; resolves with the wall
 * time in ms. Throws on the first failed upload.
 */
export async function runLoad(jobs: Job[], concurrency: number, mode: "accio" | "raw"): Promise<number> {
  const started = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(concurrency, jobs.length) }, async () => {
    while (next < jobs.length) {
      const job = jobs[next++];
      if (mode === "accio") await upload({ hostname: "127.0.0.1", port: job.port, path: job.path });
      else await rawUpload(job);
    }
  }));
  return performance.now() - started;
}
