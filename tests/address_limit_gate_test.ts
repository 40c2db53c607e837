/**
 * `server --max-per-address N`: connections at once from one client address,
 * refused before `accio\r\n` (no number, no file) beyond N, freed as they end;
 * behind `--proxy-protocol` the address is the one the header names.
 */
import assert from "node:assert/strict";
import { encodeProxyHeader } from "../lib/proxy_protocol.ts";
import { bytes, text } from "./support/encoding.ts";
import { listDir, tempDir } from "./support/files.ts";
import { spawnProgram, startServer } from "./support/process.ts";
import { rawUpload } from "./support/raw_upload.ts";
import { waitFor } from "./support/wait.ts";
import { connect, freePort, readToEnd, recvExactly, sendAll } from "./support/wire.ts";

/** Opens a connection and waits for the greeting; resolves with the connection. */
async function greeted(port: number, proxyHeader?: Uint8Array): Promise<Deno.TcpConn> {
  const conn = await connect(port);
  if (proxyHeader) await sendAll(conn, proxyHeader);
  assert.equal(text(await recvExactly(conn, 7)), "accio\r\n");
  return conn;
}

/** The connection is closed before any greeting: what it reads is empty (or a reset). */
async function refusedBeforeGreeting(port: number, proxyHeader?: Uint8Array): Promise<void> {
  const conn = await connect(port);
  if (proxyHeader) await sendAll(conn, proxyHeader).catch(() => {});
  const got = await readToEnd(conn, 5_000);
  conn.close();
  if (got !== "reset") assert.equal(got.length, 0, `got ${text(got)}`);
}

Deno.test("--max-per-address 2: a third connection from one address is refused before accio, no number, counted; freed ones count again", async () => {
  const metricsPort = freePort();
  await using server = await startServer("server", {
    extra: ["--max-per-address", "2", "--metrics-port", String(metricsPort)],
  });
  const held = [await greeted(server.port), await greeted(server.port)];
  await refusedBeforeGreeting(server.port);
  await waitFor(
    () =>
      /refused a connection from 127\.0\.0\.1:\d+: 127\.0\.0\.1 already holds 2 connections \(--max-per-address 2\)/
        .test(
          server.proc.stderr,
        ),
    5_000,
    "the refusal's log line",
  );
  const scrape = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  assert.match(scrape, /^accio_refused_total\{reason="address-limit"\} 1$/m);
  for (const conn of held) {
    await sendAll(conn, bytes("held"));
    await conn.closeWrite();
    assert.deepEqual(await readToEnd(conn, 5_000), new Uint8Array(0));
    conn.close();
  }
  await rawUpload(server.port, bytes("after"));
  // The refused connection used no number: 1 and 2 were the held ones, 3 the one after.
  assert.deepEqual((await listDir(server.dir)).filter((n) => n.endsWith(".file")).sort(), [
    "1.file",
    "2.file",
    "3.file",
  ]);
  assert.equal(await Deno.readTextFile(`${server.dir}/3.file`), "after");
});

Deno.test("--max-per-address 1 behind --proxy-protocol: counted by the header's client address, not the balancer's", async () => {
  await using server = await startServer("server", {
    extra: ["--max-per-address", "1", "--proxy-protocol"],
  });
  const from = (hostname: string, port: number) =>
    encodeProxyHeader({
      version: 1,
      command: "proxy",
      family: "inet",
      source: { hostname, port },
      destination: { hostname: "127.0.0.1", port: server.port },
    });
  const a = await greeted(server.port, from("192.0.2.1", 40000));
  const b = await greeted(server.port, from("192.0.2.2", 40000)); // another client: admitted
  await refusedBeforeGreeting(server.port, from("192.0.2.1", 40001));
  for (const conn of [a, b]) conn.close();
});

Deno.test("--max-per-address: bad values exit 2 with ERROR:; above 1 worker it is refused", async () => {
  for (const bad of ["0", "-1", "abc"]) {
    const proc = spawnProgram("server", ["--max-per-address", bad, String(freePort()), await tempDir()]);
    assert.equal((await proc.wait(20_000)).code, 2, bad);
    assert.match(proc.stderr, /^ERROR: .*--max-per-address/m);
  }
  const proc = spawnProgram("server", [
    "--workers",
    "2",
    "--max-per-address",
    "2",
    String(freePort()),
    await tempDir(),
  ]);
  assert.equal((await proc.wait(20_000)).code, 2);
  assert.match(proc.stderr, /^ERROR: --max-per-address cannot be used with --workers 2/m);
});
