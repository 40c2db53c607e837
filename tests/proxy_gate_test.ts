/**
 * `server --proxy-protocol` over raw loopback sockets: the PROXY header's
 * client is the logged peer (stderr and the upload log); a v2 LOCAL header, a
 * close at once, garbage and a header slower than the idle timeout get no
 * number and leave no file, and only the bad ones are logged, with the
 * balancer's (the socket's) address, before `accio\r\n` was sent.
 */
import assert from "node:assert/strict";
import { encodeProxyHeader, type ProxyHeaderFields } from "../lib/proxy_protocol.ts";
import { bytes, concat, text } from "./support/encoding.ts";
import { listDir, tempDir, waitForFile } from "./support/files.ts";
import { type RunningServer, startServer } from "./support/process.ts";
import { delay, waitFor } from "./support/wait.ts";
import { connect, readToEnd, recvExactly, sendAll } from "./support/wire.ts";

const V1: ProxyHeaderFields = {
  version: 1,
  command: "proxy",
  family: "inet",
  source: { hostname: "192.0.2.7", port: 40000 },
  destination: { hostname: "192.0.2.1", port: 5000 },
};
const V2_INET6: ProxyHeaderFields = {
  version: 2,
  command: "proxy",
  family: "inet6",
  source: { hostname: "2001:db8::7", port: 40001 },
  destination: { hostname: "2001:db8::1", port: 5000 },
};
const V2_LOCAL: ProxyHeaderFields = { version: 2, command: "local", family: "unspec" };

/** A `server --proxy-protocol --verbose --log` with a 1 s idle timeout, and its upload log's path. */
async function proxyServer(): Promise<RunningServer & { logFile: string }> {
  const logFile = `${await tempDir()}/uploads.jsonl`;
  const server = await startServer("server", {
    extra: ["--proxy-protocol", "--verbose", "--timeout", "1", "--log", logFile],
  });
  return { ...server, logFile };
}

/** Sends `header`, expects the greeting, uploads `data`, half-closes and waits for the close. */
async function uploadThrough(port: number, header: Uint8Array, data: Uint8Array): Promise<void> {
  const conn = await connect(port);
  try {
    await sendAll(conn, header);
    assert.equal(text(await recvExactly(conn, 7)), "accio\r\n");
    await sendAll(conn, data);
    await conn.closeWrite();
    await readToEnd(conn);
  } finally {
    conn.close();
  }
}

/** Sends `data` (nothing when empty) and returns what the server sent before closing. */
async function refusedReply(port: number, data: Uint8Array, wait = 0): Promise<string> {
  const conn = await connect(port);
  try {
    if (data.length > 0) await sendAll(conn, data);
    if (wait > 0) await delay(wait);
    const reply = await readToEnd(conn, 10_000);
    return reply === "reset" ? "" : text(reply);
  } finally {
    conn.close();
  }
}

/** The visible files of `dir` (the lock and in-progress files are hidden). */
async function files(dir: string): Promise<string[]> {
  return (await listDir(dir)).filter((name) => !name.startsWith("."));
}

async function uploadLog(path: string): Promise<{ id: number; peer: string; outcome: string }[]> {
  return (await Deno.readTextFile(path)).trim().split("\n").map((line) => JSON.parse(line));
}

Deno.test("--proxy-protocol: v1 and v2 headers' clients are the logged peers", async () => {
  await using server = await proxyServer();
  await uploadThrough(server.port, encodeProxyHeader(V1), bytes("via v1"));
  await waitForFile(server.dir, 1);
  await uploadThrough(server.port, encodeProxyHeader(V2_INET6), bytes("via v2"));
  await waitForFile(server.dir, 2);
  assert.equal(await Deno.readTextFile(`${server.dir}/1.file`), "via v1");
  assert.equal(await Deno.readTextFile(`${server.dir}/2.file`), "via v2");
  await waitFor(() => server.proc.stderr.includes("2.file from"), 5_000, "the second log line");
  assert.match(server.proc.stderr, /1\.file from 192\.0\.2\.7:40000: saved 6 bytes/);
  assert.match(server.proc.stderr, /2\.file from \[2001:db8::7\]:40001: saved 6 bytes/);
  await waitFor(
    async () => (await uploadLog(server.logFile).catch(() => [])).length === 2,
    5_000,
    "2 log lines",
  );
  assert.deepEqual((await uploadLog(server.logFile)).map((u) => [u.id, u.peer, u.outcome]), [
    [1, "192.0.2.7:40000", "saved"],
    [2, "[2001:db8::7]:40001", "saved"],
  ]);
});

Deno.test("--proxy-protocol: a v2 LOCAL header and a close at once use no number, leave no file, log nothing", async () => {
  await using server = await proxyServer();
  assert.equal(await refusedReply(server.port, encodeProxyHeader(V2_LOCAL)), "", "no greeting for a check");
  (await connect(server.port)).close(); // a port probe: closes before sending a byte
  await uploadThrough(server.port, encodeProxyHeader(V1), bytes("after the checks"));
  await waitForFile(server.dir, 1);
  assert.deepEqual(await files(server.dir), ["1.file"], "the checks used no number");
  await delay(200); // the probe's handler, if it were to log, has run by now
  assert.doesNotMatch(server.proc.stderr, /refused|ERROR/);
});

Deno.test("--proxy-protocol: garbage or no header is refused before accio, with no number, logged with the balancer's address", async () => {
  await using server = await proxyServer();
  assert.equal(await refusedReply(server.port, bytes("GET / HTTP/1.0\r\n\r\n")), "");
  assert.equal(await refusedReply(server.port, concat(bytes("PROXY TCP4 nonsense\r\n"), bytes("data"))), "");
  await waitFor(
    () => (server.proc.stderr.match(/refused a connection/g) ?? []).length >= 1,
    5_000,
    "a log line",
  );
  assert.match(server.proc.stderr, /refused a connection from 127\.0\.0\.1:\d+: .*PROXY protocol/);
  await uploadThrough(server.port, encodeProxyHeader(V1), bytes("ok"));
  await waitForFile(server.dir, 1);
  assert.deepEqual(await files(server.dir), ["1.file"], "the refused ones used no number");
});

Deno.test("--proxy-protocol: a header slower than the idle timeout is refused, with no number", async () => {
  await using server = await proxyServer();
  const conn = await connect(server.port);
  try {
    await sendAll(conn, bytes("PROXY TCP4 192.0.2.7 "));
    const reply = await readToEnd(conn, 10_000); // the server's 1 s timeout closes it
    assert.equal(reply === "reset" ? "" : text(reply), "");
  } finally {
    conn.close();
  }
  await waitFor(() => server.proc.stderr.includes("refused a connection"), 5_000, "the refusal's log line");
  assert.match(
    server.proc.stderr,
    /refused a connection from 127\.0\.0\.1:\d+: no complete PROXY protocol header/,
  );
  assert.deepEqual(await files(server.dir), []);
});
