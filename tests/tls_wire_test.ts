/**
 * TLS wired into the programs, end to end over loopback: `server` and
 * `server-s` with `--tls-cert/--tls-key`, `client --tls` (with `--ca`,
 * `--tls-name`). A good certificate carries every extension unchanged; a
 * client that does not trust it fails inside the handshake, before any byte,
 * and the server uses no number; plaintext and TLS on the wrong ports fail
 * with one clear line each; SIGHUP renews the certificate for new
 * connections while an upload in flight completes; a bad file on reload
 * keeps the old one; usage errors exit 2.
 */
import assert from "node:assert/strict";
import net from "node:net";
import nodeTls from "node:tls";
import { connectTls, loadCaFile } from "../lib/tls_client.ts";
import { acceptTls, TlsContext } from "../lib/tls_server.ts";
import type { TlsStream } from "../lib/tls_stream.ts";
import {
  type CertFiles,
  copyCertFiles,
  makeTestCerts,
  skipWithoutOpenssl,
  type TestCerts,
} from "./support/certs.ts";
import { bytes, text } from "./support/encoding.ts";
import { contentFile, listDir, makeFile, tempDir } from "./support/files.ts";
import {
  runClient,
  runClientInTerminal,
  runClientWithStdin,
  spawnPeer,
  spawnProgram,
  startServer,
} from "./support/process.ts";
import { delay, waitFor } from "./support/wait.ts";
import { connect, freePort, readToEnd, sendAll, withFakeServer } from "./support/wire.ts";

const ignore = await skipWithoutOpenssl("the TLS wiring tests");
let certs: TestCerts | undefined;
const getCerts = async () => certs ??= await makeTestCerts();

/** `--tls-cert/--tls-key` for `files`. */
const tlsArgs = (files: CertFiles) => ["--tls-cert", files.cert, "--tls-key", files.key];

/** The client's options trusting the test CA. */
const trusting = (c: TestCerts) => ["--tls", "--ca", c.ca.cert];

/** The stored uploads' names (the numbering's bookkeeping left out). */
async function stored(dir: string): Promise<string[]> {
  return (await listDir(dir)).filter((name) => !name.startsWith(".")).sort();
}

async function scrape(metricsPort: number): Promise<string> {
  return await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
}

/** A TLS upload by hand: connected, greeted, some bytes sent, the rest left to the test. */
async function openTlsUpload(port: number, c: TestCerts, serverName = "localhost"): Promise<TlsStream> {
  const roots = await loadCaFile(c.ca.cert);
  const stream = await connectTls("127.0.0.1", port, { ca: roots.certificates, serverName }).connected;
  const greeting = new Uint8Array(7);
  for (let n = 0; n < 7;) {
    const got = await stream.read(greeting.subarray(n));
    if (got === null) throw new Error("closed before accio");
    n += got;
  }
  assert.equal(text(greeting), "accio\r\n");
  return stream;
}

/** Runs a program that should refuse its command line; bounded. */
async function refusedRun(program: "server" | "server-s" | "client", args: string[]) {
  const proc = spawnProgram(program, args);
  const status = await proc.wait(20_000);
  return { code: status.code, stderr: proc.stderr };
}

Deno.test({
  name:
    "TLS: uploads over a trusted certificate are stored byte for byte (several files, a 24 MiB one, stdin)",
  ignore,
}, async () => {
  const c = await getCerts();
  await using server = await startServer("server", { extra: tlsArgs(c.server) });
  const dir = await tempDir();
  const small = await contentFile("over TLS\n", "small.txt");
  const big = await makeFile(dir, "big.bin", 24 * 1024 * 1024 + 17);
  const result = await runClient([...trusting(c), "127.0.0.1", String(server.port), small, big], 60_000);
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(await stored(server.dir), ["1.file", "2.file"]);
  assert.equal(await Deno.readTextFile(`${server.dir}/1.file`), "over TLS\n");
  assert.deepEqual(await Deno.readFile(`${server.dir}/2.file`), await Deno.readFile(big));
  // Standard input, to the certificate's DNS name rather than its IP address.
  const piped = await runClientWithStdin(
    [...trusting(c), "localhost", String(server.port), "-"],
    bytes("from stdin"),
  );
  assert.equal(piped.code, 0, piped.stderr);
  assert.equal(await Deno.readTextFile(`${server.dir}/3.file`), "from stdin");
});

Deno.test({
  name: "TLS: --verify --name, the double handshake, --resume and the error line all work inside TLS",
  ignore,
}, async () => {
  const c = await getCerts();
  await using server = await startServer("server", {
    extra: [...tlsArgs(c.server), "--resumable", "--max-size", "100"],
  });
  const file = await contentFile("verified over TLS\n", "v.txt");
  const port = String(server.port);
  const verified = await runClient([
    ...trusting(c),
    "--verify",
    "--name",
    "a/b.txt",
    "127.0.0.1",
    port,
    file,
  ]);
  assert.equal(verified.code, 0, verified.stderr);
  assert.match(verified.stdout, /verified/);
  assert.equal(await Deno.readTextFile(`${server.dir}/a/b.txt`), "verified over TLS\n");
  const resumed = await runClient([...trusting(c), "--resume", "--name", "c.txt", "127.0.0.1", port, file]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.equal(await Deno.readTextFile(`${server.dir}/c.txt`), "verified over TLS\n");
  // Too large: the server's error line arrives through TLS, and the file is ERROR.
  const large = await contentFile("x".repeat(1000), "large.txt");
  const refused = await runClient([...trusting(c), "--verify", "127.0.0.1", port, large]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /^ERROR: server refused the upload: .*100/m);
  // The ERROR file may trail the error line its client read.
  const numbered = async () => (await stored(server.dir)).filter((name) => name.endsWith(".file"));
  await waitFor(async () => (await numbered()).length > 0, 5_000, "the ERROR file");
  assert.equal(await Deno.readTextFile(`${server.dir}/${(await numbered()).at(-1)}`), "ERROR");
});

Deno.test({
  name: "TLS: a client that does not trust the certificate fails in the handshake, nothing stored, no number",
  ignore,
}, async () => {
  const c = await getCerts();
  const metricsPort = freePort();
  await using server = await startServer("server", {
    extra: [...tlsArgs(c.server), "--metrics-port", String(metricsPort)],
  });
  const file = await contentFile("never sent", "n.txt");
  const port = String(server.port);
  // --retries: a certificate that is not trusted stays so, and is not tried again.
  const other = await runClient(["--tls", "--ca", c.otherCa.cert, "--retries", "3", "127.0.0.1", port, file]);
  assert.equal(other.code, 1);
  const errors = other.stderr.split("\n").filter((line) => line.startsWith("ERROR:"));
  assert.equal(errors.length, 1, other.stderr);
  assert.match(errors[0], /^ERROR: TLS handshake failed: the server's certificate is not trusted/);
  assert.doesNotMatch(other.stderr, /trying again/);
  const system = await runClient(["--tls", "127.0.0.1", port, file]);
  assert.equal(system.code, 1);
  assert.match(system.stderr, /^ERROR: TLS handshake failed: the server's certificate is not trusted/m);
  const wrongName = await runClient([...trusting(c), "--tls-name", "other.example", "127.0.0.1", port, file]);
  assert.equal(wrongName.code, 1);
  assert.match(wrongName.stderr, /not valid for "other\.example"/);
  await waitFor(
    () => (server.proc.stderr.match(/refused a connection/g) ?? []).length >= 1,
    5_000,
    "refusals",
  );
  assert.deepEqual(await stored(server.dir), []);
  const good = await runClient([...trusting(c), "127.0.0.1", port, file]);
  assert.equal(good.code, 0, good.stderr);
  assert.deepEqual(await stored(server.dir), ["1.file"]);
  assert.match(await scrape(metricsPort), /^accio_refused_total\{reason="tls-[a-z-]+"\} [1-9]/m);
});

Deno.test({ name: "TLS: an expired certificate is refused by the client", ignore }, async () => {
  const c = await getCerts();
  await using server = await startServer("server", { extra: tlsArgs(c.expired) });
  assert.match(server.proc.stderr, /TLS warning: .*expired/i);
  const file = await contentFile("never sent", "n.txt");
  const result = await runClient([...trusting(c), "127.0.0.1", String(server.port), file]);
  assert.equal(result.code, 1);
  assert.match(
    result.stderr,
    /^ERROR: TLS handshake failed: the server's certificate is not trusted.*expired/m,
  );
  assert.deepEqual(await stored(server.dir), []);
});

Deno.test({
  name:
    "TLS: a plaintext client on the TLS port ends with one ERROR line hinting at --tls; no number, counted",
  ignore,
}, async () => {
  const c = await getCerts();
  const metricsPort = freePort();
  await using server = await startServer("server", {
    extra: [...tlsArgs(c.server), "--timeout", "1", "--metrics-port", String(metricsPort)],
  });
  const file = await contentFile("plaintext", "p.txt");
  const port = String(server.port);
  // The server's handshake deadline (1 s) comes first: it closes before accio.
  const closed = await runClient(["--timeout", "5", "127.0.0.1", port, file]);
  assert.equal(closed.code, 1);
  assert.match(closed.stderr, /^ERROR: .*accio.*\(if the port speaks TLS, add --tls\)$/m);
  // The client's own deadline first: the same hint.
  const waited = await runClient(["--timeout", "0.3", "127.0.0.1", port, file]);
  assert.equal(waited.code, 1);
  assert.match(waited.stderr, /^ERROR: no data for .* accio.*\(if the port speaks TLS, add --tls\)$/m);
  // A client that sends plaintext first (a double handshake, an HTTP probe) is no TLS handshake at all.
  const probe = await connect(server.port);
  await sendAll(probe, bytes("GET / HTTP/1.0\r\n\r\n"));
  assert.notEqual(await readToEnd(probe, 5_000), "accio\r\n");
  probe.close();
  // Similar refusal lines are throttled in the log: the metrics count each one.
  let metrics = "";
  await waitFor(
    async () => /tls-not-tls/.test(metrics = await scrape(metricsPort)),
    5_000,
    "the not-tls count",
  );
  assert.match(metrics, /^accio_refused_total\{reason="tls-not-tls"\} 1$/m);
  assert.match(metrics, /^accio_refused_total\{reason="tls-timeout"\} [1-9]/m);
  assert.deepEqual(await stored(server.dir), []);
  const good = await runClient([...trusting(c), "127.0.0.1", port, file]);
  assert.equal(good.code, 0, good.stderr);
  assert.deepEqual(await stored(server.dir), ["1.file"]);
});

Deno.test({
  name:
    "TLS: a TLS client on a plaintext port ends with one ERROR line; the server records ERROR, not the hello",
  ignore,
}, async () => {
  const c = await getCerts();
  await using server = await startServer("server");
  const file = await contentFile("never sent", "n.txt");
  const result = await runClient([...trusting(c), "127.0.0.1", String(server.port), file]);
  assert.equal(result.code, 1);
  const errors = result.stderr.split("\n").filter((line) => line.startsWith("ERROR:"));
  assert.deepEqual(errors, [
    "ERROR: TLS handshake failed: the server does not speak TLS (a plaintext Accio server? then leave out --tls)",
  ]);
  await waitFor(
    async () => (await stored(server.dir)).length === 1 && /ERROR/.test(server.proc.stderr),
    10_000,
    "1.file",
  );
  assert.equal(await Deno.readTextFile(`${server.dir}/1.file`), "ERROR");
});

Deno.test({
  name:
    "TLS: SIGHUP renews the certificate for new connections while an upload in flight completes; a bad file keeps the old",
  ignore,
}, async () => {
  const c = await getCerts();
  const files = await copyCertFiles(c.server);
  await using server = await startServer("server", { extra: tlsArgs(files) });
  const port = String(server.port);
  const file = await contentFile("after the reload", "r.txt");
  const renamed = ["--tls-name", "other.example"];
  const before = await runClient([...trusting(c), ...renamed, "127.0.0.1", port, file]);
  assert.equal(before.code, 1, "the first certificate does not name other.example");
  const inFlight = await openTlsUpload(server.port, c);
  await inFlight.write(bytes("begun with the old certificate, "));
  await Deno.copyFile(c.otherName.cert, files.cert);
  await Deno.copyFile(c.otherName.key, files.key);
  server.proc.child.kill("SIGHUP");
  await waitFor(
    () => /reloaded TLS certificate: .*other\.example/.test(server.proc.stderr),
    10_000,
    "the reload",
  );
  const after = await runClient([...trusting(c), ...renamed, "127.0.0.1", port, file]);
  assert.equal(after.code, 0, after.stderr);
  const oldName = await runClient([...trusting(c), "127.0.0.1", port, file]);
  assert.equal(oldName.code, 1, "the new certificate no longer names 127.0.0.1");
  await inFlight.write(bytes("ended after it"));
  await inFlight.closeWrite();
  assert.equal(await inFlight.read(new Uint8Array(16)), null);
  inFlight.close();
  // A bad file: logged, and the certificate in use stays.
  await Deno.writeTextFile(files.cert, "not a certificate\n");
  server.proc.child.kill("SIGHUP");
  await waitFor(
    () => /kept the TLS certificate in use: reloading failed/.test(server.proc.stderr),
    10_000,
    "the log",
  );
  const kept = await runClient([...trusting(c), ...renamed, "127.0.0.1", port, file]);
  assert.equal(kept.code, 0, kept.stderr);
  assert.equal(server.proc.exited, false);
  // The upload in flight took its number when it was greeted, before the reload.
  const first = await Deno.readTextFile(`${server.dir}/1.file`);
  assert.equal(first, "begun with the old certificate, ended after it");
  assert.equal(await Deno.readTextFile(`${server.dir}/2.file`), "after the reload");
  assert.equal(await Deno.readTextFile(`${server.dir}/3.file`), "after the reload");
});

Deno.test(
  { name: "TLS: server-s counts an upload over TLS and refuses a plaintext client", ignore },
  async () => {
    const c = await getCerts();
    await using server = await startServer("server-s", { extra: [...tlsArgs(c.server), "--timeout", "1"] });
    const file = await contentFile("12345678", "s.txt");
    const result = await runClient([...trusting(c), "127.0.0.1", String(server.port), file]);
    assert.equal(result.code, 0, result.stderr);
    const plain = await runClient(["--timeout", "5", "127.0.0.1", String(server.port), file]);
    assert.equal(plain.code, 1);
    assert.match(plain.stderr, /add --tls/);
    await waitFor(
      () => /refused a connection .*no TLS handshake/.test(server.proc.stderr),
      5_000,
      "the refusal",
    );
    await waitFor(() => server.proc.stdout.includes("8\n"), 5_000, "the count");
    assert.equal(server.proc.stdout, "8\n");
  },
);

Deno.test({ name: "TLS: usage errors exit 2, bad certificate files exit 1", ignore }, async () => {
  const c = await getCerts();
  const dir = await tempDir();
  const port = String(freePort());
  const usage = [
    ["server", ["--tls-cert", c.server.cert, port, dir]],
    ["server", ["--tls-key", c.server.key, port, dir]],
    ["server-s", ["--tls-cert", c.server.cert, port]],
    ["client", ["--ca", c.ca.cert, "127.0.0.1", port, "x"]],
    ["client", ["--tls-name", "localhost", "127.0.0.1", port, "x"]],
  ] as const;
  for (const [program, args] of usage) {
    const { code, stderr } = await refusedRun(program, [...args]);
    assert.equal(code, 2, `${program} ${args.join(" ")}: ${stderr}`);
    assert.match(stderr, /^ERROR: /m);
  }
  const missing = await refusedRun("server", [
    "--tls-cert",
    `${dir}/none.pem`,
    "--tls-key",
    c.server.key,
    port,
    dir,
  ]);
  assert.equal(missing.code, 1, missing.stderr);
  assert.match(missing.stderr, /^ERROR: .*none\.pem/m);
  const mismatched = await refusedRun("server", [
    "--tls-cert",
    c.server.cert,
    "--tls-key",
    c.otherName.key,
    port,
    dir,
  ]);
  assert.equal(mismatched.code, 1, mismatched.stderr);
  assert.match(mismatched.stderr, /^ERROR: /m);
  const badCa = await refusedRun("client", [
    "--tls",
    "--ca",
    `${dir}/none.pem`,
    "127.0.0.1",
    port,
    c.ca.cert,
  ]);
  assert.equal(badCa.code, 1, badCa.stderr);
  assert.match(badCa.stderr, /^ERROR: cannot read CA file/m);
});

Deno.test({
  name: "TLS: --workers 2 serves TLS in every worker, SIGHUP reaches them, their refusals are counted",
  ignore,
}, async () => {
  const c = await getCerts();
  const files = await copyCertFiles(c.server);
  const metricsPort = freePort();
  await using server = await startServer("server", {
    extra: [...tlsArgs(files), "--workers", "2", "--timeout", "1", "--metrics-port", String(metricsPort)],
  });
  const port = String(server.port);
  const file = await contentFile("to a worker", "w.txt");
  for (let i = 0; i < 4; i++) {
    const result = await runClient([...trusting(c), "127.0.0.1", port, file]);
    assert.equal(result.code, 0, result.stderr);
  }
  assert.deepEqual(await stored(server.dir), ["1.file", "2.file", "3.file", "4.file"]);
  await Deno.copyFile(c.otherName.cert, files.cert);
  await Deno.copyFile(c.otherName.key, files.key);
  server.proc.child.kill("SIGHUP");
  const bothReloaded = () =>
    /reloaded TLS certificate in worker 1: .*other\.example/.test(server.proc.stderr) &&
    /reloaded TLS certificate in worker 2: .*other\.example/.test(server.proc.stderr);
  await waitFor(bothReloaded, 10_000, "both workers' reloads");
  for (let i = 0; i < 4; i++) {
    const renamed = await runClient([...trusting(c), "--tls-name", "other.example", "127.0.0.1", port, file]);
    assert.equal(renamed.code, 0, renamed.stderr);
  }
  const plain = await runClient(["--timeout", "5", "127.0.0.1", port, file]);
  assert.equal(plain.code, 1);
  let metrics = "";
  await waitFor(async () => /tls-timeout/.test(metrics = await scrape(metricsPort)), 5_000, "the count");
  assert.match(metrics, /^accio_refused_total\{reason="tls-timeout"\} 1$/m);
  assert.equal((await stored(server.dir)).length, 8);
});

Deno.test({
  name:
    "TLS: behind --proxy-protocol the header comes first in plaintext, then TLS; the header's client is logged",
  ignore,
}, async () => {
  const c = await getCerts();
  await using server = await startServer("server", {
    extra: [...tlsArgs(c.server), "--proxy-protocol", "--verbose"],
  });
  const raw = net.connect({ host: "127.0.0.1", port: server.port });
  const secure = await new Promise<nodeTls.TLSSocket>((resolve, reject) => {
    raw.once("error", reject);
    raw.once("connect", () => {
      raw.write(`PROXY TCP4 192.0.2.7 127.0.0.1 40000 ${server.port}\r\n`);
      const s = nodeTls.connect({ socket: raw, ca: [c.caPem], servername: "localhost" });
      s.once("secureConnect", () => resolve(s));
      s.once("error", reject);
    });
  });
  let received = "";
  secure.on("data", (chunk) => {
    received += chunk;
    if (received === "accio\r\n") secure.end("proxied, then TLS");
  });
  await waitFor(
    () => /1\.file from 192\.0\.2\.7:40000: saved 17 bytes/.test(server.proc.stderr),
    10_000,
    "the log",
  );
  secure.destroy();
  assert.equal(await Deno.readTextFile(`${server.dir}/1.file`), "proxied, then TLS");
});

Deno.test({ name: "TLS: the progress bar is drawn over TLS on a terminal", ignore }, async (t) => {
  const c = await getCerts();
  await using server = await startServer("server", { extra: [...tlsArgs(c.server), "--headers"] });
  const path = await makeFile(await tempDir(), "p.bin", 8 * 1024 * 1024);
  const shown = await runClientInTerminal([
    ...trusting(c),
    "--verify",
    "127.0.0.1",
    String(server.port),
    path,
  ]);
  if (shown === undefined) {
    await t.step({ name: "SKIPPED: util-linux script(1) is not installed", ignore: true, fn() {} });
    return;
  }
  assert.equal(shown.code, 0, shown.output);
  const drawn = shown.output.split("\n");
  assert.ok(
    drawn.some((l) => !l.includes("hashing") && /\[#+\] 100% 8\.0 MiB \/ 8\.0 MiB/.test(l)),
    shown.output,
  );
  assert.deepEqual(await Deno.readFile(`${server.dir}/1.file`), await Deno.readFile(path));
});

/**
 * A TLS client by hand over node:net: greeted, `data` sent, then the TCP FIN without TLS
 * close_notify; resolves with what closes it.
 */
async function uploadThenBareFin(port: number, c: TestCerts, data: Uint8Array): Promise<() => void> {
  const raw = net.connect({ host: "127.0.0.1", port, allowHalfOpen: true });
  const secure = nodeTls.connect({ socket: raw, ca: c.caPem, servername: "localhost" });
  secure.on("error", () => {});
  let received = "";
  secure.on("data", (chunk: Uint8Array) => received += text(chunk));
  await waitFor(() => received === "accio\r\n", 5_000, "accio over TLS");
  await new Promise<void>((resolve) => secure.write(data, () => resolve()));
  await delay(200);
  raw.end(); // what an attacker on the path does by dropping the last records and close_notify
  return () => {
    secure.destroy();
    raw.destroy();
  };
}

Deno.test({
  name: "TLS: an upload whose stream ends with a bare FIN (no close_notify) is ERROR, never a truncated file",
  ignore,
}, async () => {
  const c = await getCerts();
  await using server = await startServer("server", { extra: [...tlsArgs(c.server), "--timeout", "3"] });
  const close = await uploadThenBareFin(server.port, c, new Uint8Array(100_000).fill(7));
  await waitFor(async () => (await stored(server.dir)).includes("1.file"), 5_000, "1.file").finally(close);
  const saved = await Deno.readFile(`${server.dir}/1.file`);
  assert.equal(saved.length === 5 ? text(saved) : `${saved.length} bytes`, "ERROR");
  assert.match(server.proc.stderr, /1\.file .*ERROR: .*close_notify/);
});

Deno.test({
  name:
    "TLS: the client takes only close_notify and FIN as the receipt: a bare FIN from the server is a failure",
  ignore,
}, async () => {
  const c = await getCerts();
  const file = await makeFile(await tempDir(), "data.bin", 50_000);
  const context = await TlsContext.load(c.server);
  // A server that runs the TLS handshake, greets, reads the whole upload, and then only closes TCP.
  const fakeServer = async (conn: Deno.TcpConn) => {
    const stream = await acceptTls(conn, context, 5_000);
    await stream.write(bytes("accio\r\n"));
    const buffer = new Uint8Array(64 * 1024);
    while ((await stream.read(buffer)) !== null);
    conn.close(); // TCP FIN, no close_notify
  };
  await withFakeServer(fakeServer, async (port) => {
    const result = await runClient([...trusting(c), "127.0.0.1", String(port), file]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /^ERROR: .*close_notify/m);
  });
});

Deno.test({
  name: "TLS: 60 uploads at once (--parallel 30, two clients) all end cleanly: no clean end misread as a cut",
  ignore,
}, async () => {
  const c = await getCerts();
  await using server = await startServer("server", { extra: tlsArgs(c.server) });
  const dir = await tempDir();
  const files = await Promise.all(
    Array.from({ length: 30 }, (_, i) => makeFile(dir, `f${i}.bin`, 300_000 + i, i + 1)),
  );
  const run = () =>
    runClient(
      [...trusting(c), "--parallel", "30", "--quiet", "127.0.0.1", String(server.port), ...files],
      60_000,
    );
  const results = await Promise.all([run(), run()]);
  for (const result of results) assert.equal(result.code, 0, result.stderr);
  const saved = (await stored(server.dir)).filter((name) => name.endsWith(".file"));
  assert.equal(saved.length, 60);
  // Each source has its own size: every stored file must be byte for byte the source of its size, twice each.
  const seen = new Map<number, number>();
  for (const name of saved) {
    const got = await Deno.readFile(`${server.dir}/${name}`);
    const index = got.length - 300_000;
    assert.ok(index >= 0 && index < 30, `${name}: ${got.length} bytes`);
    assert.ok(equalBytes(got, await Deno.readFile(files[index])), `${name} differs from f${index}.bin`);
    seen.set(index, (seen.get(index) ?? 0) + 1);
  }
  assert.ok([...seen.values()].every((n) => n === 2) && seen.size === 30);
});

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/** The resident memory of `pid`, in MiB. */
function rssMiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))?.[1] ?? 0) / 1024;
}

Deno.test({
  name:
    "TLS: bytes after a close_notify or after a forged record are not held: the server's memory stays flat",
  ignore,
}, async () => {
  const c = await getCerts();
  await using server = await startServer("server", { extra: [...tlsArgs(c.server), "--timeout", "2"] });
  await delay(500);
  for (const [i, mode] of ["close", "bad-record"].entries()) {
    const before = rssMiB(server.proc.pid);
    const peer = spawnPeer("tls_junk_after_close.py", [String(server.port), "3", c.ca.cert, mode]);
    let peak = before;
    const sampling = setInterval(() => peak = Math.max(peak, rssMiB(server.proc.pid)), 100);
    try {
      await peer.wait(20_000);
    } finally {
      clearInterval(sampling);
    }
    assert.match(peer.stdout, /sent \d+ MiB/, peer.stderr);
    assert.ok(
      peak - before < 100,
      `${mode}: the server grew by ${(peak - before).toFixed(0)} MiB (${peer.stdout})`,
    );
    // Nothing sound ends either upload: ERROR (no FIN comes: at the idle timeout; a broken stream: at once).
    await waitFor(async () => (await stored(server.dir)).includes(`${i + 1}.file`), 20_000, `${i + 1}.file`);
    assert.equal(await Deno.readTextFile(`${server.dir}/${i + 1}.file`), "ERROR");
  }
  const after = await runClient([
    ...trusting(c),
    "127.0.0.1",
    String(server.port),
    await contentFile("after"),
  ]);
  assert.equal(after.code, 0, after.stderr);
  assert.match(
    server.proc.stderr,
    /2\.file .*ERROR: .*the TLS stream is broken: 2 MiB came in without any data out/,
  );
});
