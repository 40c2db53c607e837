/**
 * Gateway extensions (opt-in): named uploads into subdirectories, verified
 * delivery with receipts, the upload log, metrics, and the client's progress
 * bar. Checked end to end over loopback sockets.
 */
import assert from "node:assert/strict";
import { bytes, text } from "./support/encoding.ts";
import { listDir, sha256, tempDir, waitForFile } from "./support/files.ts";
import { runClient, startServer, taskArgs } from "./support/process.ts";
import { rawDoubleUpload } from "./support/raw_upload.ts";
import { waitFor } from "./support/wait.ts";
import { connect, freePort, readToEnd, recvExactly } from "./support/wire.ts";

/** A double-handshake upload with raw header lines; returns the server's reply (its receipt). */
async function rawHeaderUpload(port: number, headerLines: Uint8Array[], data: Uint8Array): Promise<string> {
  const crlf = bytes("\r\n");
  const parts = [bytes("confirm-accio-again\r\n"), ...headerLines.flatMap((l) => [l, crlf]), crlf, data];
  const reply = await rawDoubleUpload(port, new Uint8Array(parts.flatMap((p) => [...p])));
  return reply === "reset" ? "reset" : text(reply);
}

async function fileWith(content: string): Promise<string> {
  const path = `${await tempDir()}/data.csv`;
  await Deno.writeTextFile(path, content);
  return path;
}

Deno.test("named upload: client --name stores into a subdirectory, --named uses the base name", async () => {
  await using server = await startServer("server", { extra: ["--names"] });
  const path = await fileWith("t,21.5\n");
  const named = await runClient(["--name", "floor2/room7/temp.csv", "127.0.0.1", String(server.port), path]);
  assert.equal(named.code, 0, named.stderr);
  assert.equal(await Deno.readTextFile(`${server.dir}/floor2/room7/temp.csv`), "t,21.5\n");
  const base = await runClient(["--named", "--verify", "127.0.0.1", String(server.port), path]);
  assert.equal(base.code, 0, base.stderr);
  assert.equal(await Deno.readTextFile(`${server.dir}/data.csv`), "t,21.5\n");
  assert.deepEqual(
    await listDir(server.dir),
    // .accio.numbers: the record that keeps named uploads' numbers across a restart (README, Reliability)
    [".accio.numbers", "data.csv", "floor2"],
    "a named upload also left a numbered file",
  );
});

Deno.test("named upload: 21 hostile names are refused, nothing is written outside the directory", async () => {
  const outside = await tempDir();
  const dir = await tempDir();
  await Deno.writeTextFile(`${dir}/existing.txt`, "original");
  await Deno.writeTextFile(`${dir}/plainfile`, "not a directory");
  await Deno.symlink(outside, `${dir}/link`);
  await using server = await startServer("server", { dir, extra: ["--names"] });
  const hostile: (string | Uint8Array)[] = [
    "/etc/passwd",
    `${outside}/abs`,
    "../escape",
    "a/../../escape",
    "..",
    "a/..",
    "./x",
    "a/./b",
    ".hidden",
    ".1.file.part",
    "",
    "a//b",
    "dir/",
    "a\\b",
    new Uint8Array([0x6e, 0x75, 0x6c, 0x00, 0x78]), // NUL
    "tab\tname",
    "\x1b[31mred",
    "x".repeat(256),
    "a/".repeat(600) + "b",
    "7.file",
    "link/inside-symlink",
    "plainfile/sub",
    "existing.txt",
    new Uint8Array([0xff, 0xfe, 0x2f, 0x61]), // not UTF-8
  ];
  const names = hostile.map((n) => typeof n === "string" ? bytes(n) : n);
  assert.ok(names.length >= 21);
  for (const [i, name] of names.entries()) {
    const reply = await rawHeaderUpload(
      server.port,
      [new Uint8Array([...bytes("name: "), ...name])],
      bytes(`evil ${i}`),
    );
    assert.match(reply, /^error /, `name #${i} ${JSON.stringify(text(name))} was not refused: ${reply}`);
  }
  await waitFor(
    async () => (await listDir(dir)).filter((n) => /^\d+\.file$/.test(n)).length === names.length,
    5_000,
    "an ERROR file per connection",
  );
  for (let n = 1; n <= names.length; n++) assert.equal(await Deno.readTextFile(`${dir}/${n}.file`), "ERROR");
  assert.deepEqual(await listDir(outside), [], "something was written outside the upload directory");
  assert.equal(await Deno.readTextFile(`${dir}/existing.txt`), "original");
  const expected = ["existing.txt", "link", "plainfile", ...names.map((_, i) => `${i + 1}.file`)];
  assert.deepEqual(
    (await listDir(dir)).sort(),
    expected.sort(),
    "an unexpected file or directory was created",
  );
});

Deno.test("named upload: a top-level segment that is a numbered name is refused at any depth", async () => {
  const dir = await tempDir();
  await using server = await startServer("server", { dir, extra: ["--names"] });
  const squatters = ["3.file/x", "4.file/deep/y", "05.file/z", "6.file", "0.file/w"];
  for (const name of squatters) {
    const reply = await rawHeaderUpload(server.port, [bytes(`name: ${name}`)], bytes(`squat ${name}`));
    assert.match(reply, /^error refused name .*numbered names are the server's/, `${name}: ${reply}`);
  }
  // Connections 6-8 are plain numbered uploads: none may be lost to a squatted name.
  for (let n = 6; n <= 8; n++) {
    assert.equal(await rawHeaderUpload(server.port, [bytes("length: 6")], bytes(`conn ${n}`)), "ok\r\n");
  }
  assert.equal(await rawHeaderUpload(server.port, [bytes("name: sub/3.file")], bytes("deeper")), "ok\r\n");
  await waitForFile(dir, 8);
  for (let n = 1; n <= 5; n++) assert.equal(await Deno.readTextFile(`${dir}/${n}.file`), "ERROR");
  for (let n = 6; n <= 8; n++) assert.equal(await Deno.readTextFile(`${dir}/${n}.file`), `conn ${n}`);
  assert.equal(await Deno.readTextFile(`${dir}/sub/3.file`), "deeper");
  for (const entry of await listDir(dir)) {
    if (/^[0-9]+\.file$/.test(entry)) {
      assert.ok((await Deno.lstat(`${dir}/${entry}`)).isFile, `${entry} is not a file`);
    }
  }
});

Deno.test("named upload: a server without --names refuses the name header", async () => {
  await using server = await startServer("server", { extra: ["--headers"] });
  const path = await fileWith("x");
  const result = await runClient(["--name", "x.csv", "127.0.0.1", String(server.port), path]);
  assert.notEqual(result.code, 0);
  assert.match(result.stderr, /^ERROR: server refused the upload: named uploads are not enabled/m);
  await waitForFile(server.dir, 1);
  assert.equal(await Deno.readTextFile(`${server.dir}/1.file`), "ERROR");
});

Deno.test("verified delivery: --verify succeeds with the server's ok", async () => {
  await using server = await startServer("server", { extra: ["--headers"] });
  const path = await fileWith("verified content");
  const result = await runClient(["--verify", "127.0.0.1", String(server.port), path]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(await Deno.readTextFile(`${server.dir}/1.file`), "verified content");
});

Deno.test("verified delivery: a corrupted or truncated upload is rejected and stored as ERROR", async () => {
  await using server = await startServer("server", { extra: ["--headers"] });
  const data = bytes("the real content");
  const corrupted = await rawHeaderUpload(
    server.port,
    [bytes(`sha256: ${sha256(bytes("other content"))}`)],
    data,
  );
  assert.match(corrupted, /^error SHA-256 of the received bytes differs/);
  // A clean close after half the bytes: without verification this would be a short file.
  const truncated = await rawHeaderUpload(
    server.port,
    [bytes(`length: ${data.length}`)],
    data.subarray(0, 8),
  );
  assert.match(truncated, /^error received 8 bytes, but the client announced 16/);
  const good = await rawHeaderUpload(
    server.port,
    [bytes(`length: ${data.length}`), bytes(`sha256: ${sha256(data)}`)],
    data,
  );
  assert.equal(good, "ok\r\n");
  await waitForFile(server.dir, 3);
  assert.equal(await Deno.readTextFile(`${server.dir}/1.file`), "ERROR");
  assert.equal(await Deno.readTextFile(`${server.dir}/2.file`), "ERROR");
  assert.equal(await Deno.readTextFile(`${server.dir}/3.file`), "the real content");
});

Deno.test("verified delivery: --verify against a server without extensions fails clearly", async () => {
  await using server = await startServer("server");
  const path = await fileWith("x");
  const result = await runClient(["--verify", "127.0.0.1", String(server.port), path]);
  assert.notEqual(result.code, 0);
  assert.match(result.stderr, /^ERROR: /m);
});

Deno.test("header extensions: malformed, unknown and repeated headers are refused", async () => {
  await using server = await startServer("server", { extra: ["--names"] });
  for (const line of ["no-colon", "Name: upper", "color: blue", "length: -1", "length: 12x", "sha256: abc"]) {
    assert.match(await rawHeaderUpload(server.port, [bytes(line)], bytes("d")), /^error /, line);
  }
  assert.match(
    await rawHeaderUpload(server.port, [bytes("length: 1"), bytes("length: 1")], bytes("d")),
    /^error /,
  );
});

Deno.test("upload log: one JSON line per connection, matching the files", async () => {
  const logDir = await tempDir();
  const logPath = `${logDir}/uploads.jsonl`;
  await using server = await startServer("server", {
    extra: ["--names", "--timeout", "1", "--log", logPath],
  });
  const path = await fileWith("logged data");
  assert.equal((await runClient(["127.0.0.1", String(server.port), path])).code, 0);
  assert.equal((await runClient(["--name", "sub/n.csv", "127.0.0.1", String(server.port), path])).code, 0);
  const idle = await connect(server.port);
  await readToEnd(idle, 5_000).catch(() => {});
  idle.close();
  await Promise.all(Array.from({ length: 8 }, () => runClient(["127.0.0.1", String(server.port), path])));
  await waitFor(
    async () => (await Deno.readTextFile(logPath).catch(() => "")).split("\n").length > 11,
    5_000,
    "11 log lines",
  );
  const entries = (await Deno.readTextFile(logPath)).trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(entries.length, 11);
  assert.deepEqual(
    entries.map((e) => e.id).sort((a, b) => a - b),
    Array.from({ length: 11 }, (_, i) => i + 1),
  );
  for (const entry of entries) {
    assert.match(entry.peer, /^127\.0\.0\.1:\d+$/);
    assert.ok(!Number.isNaN(Date.parse(entry.start)) && entry.durationMs >= 0);
    const stored = await Deno.readFile(entry.file);
    if (entry.outcome === "saved") {
      assert.equal(entry.sha256, sha256(stored), `log sha256 of ${entry.file}`);
      assert.equal(entry.bytes, stored.length);
      assert.equal(entry.reason, null);
    } else {
      assert.equal(text(stored), "ERROR");
      assert.match(entry.reason, /no data for 1 s/);
    }
  }
  assert.equal(entries.find((e) => e.id === 2).name, "sub/n.csv");
  assert.equal(entries.find((e) => e.id === 2).file, `${server.dir}/sub/n.csv`);
  assert.equal(entries.filter((e) => e.outcome === "error").length, 1);
});

Deno.test("metrics: a scrape after a known workload shows the right counts", async () => {
  const metricsPort = freePort();
  await using server = await startServer("server", {
    extra: ["--timeout", "1", "--metrics-port", String(metricsPort)],
  });
  const sizes = [10, 200, 3000];
  for (const size of sizes) {
    const path = await fileWith("m".repeat(size));
    assert.equal((await runClient(["127.0.0.1", String(server.port), path])).code, 0);
  }
  const idle = await connect(server.port);
  await readToEnd(idle, 5_000).catch(() => {});
  idle.close();
  const open = await connect(server.port);
  try {
    await recvExactly(open, 7);
    let body = "";
    await waitFor(
      async () => {
        body = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
        return body.includes('accio_uploads_total{outcome="error"} 1');
      },
      5_000,
      "the error to be counted",
    );
    const value = (name: string) =>
      Number(new RegExp(`^${name.replace(/[{}"+]/g, "\\$&")} (\\S+)$`, "m").exec(body)?.[1]);
    assert.equal(value('accio_uploads_total{outcome="saved"}'), 3);
    assert.equal(value('accio_uploads_total{outcome="error"}'), 1);
    assert.equal(value("accio_received_bytes_total"), 10 + 200 + 3000);
    assert.equal(value("accio_connections_active"), 1);
    assert.equal(value("accio_connections_total"), 5);
    assert.equal(value("accio_upload_duration_seconds_count"), 4);
    assert.equal(value('accio_upload_duration_seconds_bucket{le="+Inf"}'), 4);
    const notFound = await fetch(`http://127.0.0.1:${metricsPort}/other`);
    assert.equal(notFound.status, 404);
    await notFound.body?.cancel();
  } finally {
    open.close();
  }
});

Deno.test("client progress bar: shown in a terminal, absent when piped or --quiet", async (t) => {
  const hasScript = await new Deno.Command("sh", { args: ["-c", "command -v script"], stdout: "null" })
    .output()
    .then((o) => o.success);
  await using server = await startServer("server");
  const path = `${await tempDir()}/big.bin`;
  await Deno.writeFile(path, new Uint8Array(8 * 1024 * 1024));
  const piped = await runClient(["127.0.0.1", String(server.port), path]);
  assert.equal(piped.code, 0);
  assert.equal(piped.stderr, "", "progress written to a pipe");
  if (!hasScript) {
    await t.step({
      name: "SKIPPED terminal check: util-linux script(1) is not installed",
      ignore: true,
      fn() {},
    });
    return;
  }
  const quote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
  const command = [Deno.execPath(), ...taskArgs("client")].map(quote).join(" ");
  const inTerminal = async (extra: string) => {
    const out = await new Deno.Command("script", {
      args: ["-qec", `${command} ${extra} 127.0.0.1 ${server.port} ${quote(path)}`, "/dev/null"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    return { code: out.code, output: new TextDecoder().decode(out.stdout) };
  };
  const shown = await inTerminal("");
  assert.equal(shown.code, 0, shown.output);
  assert.match(shown.output, /\[#+\] 100% 8\.0 MiB \/ 8\.0 MiB .*\/s {2}ETA \d+:\d\d/);
  const quiet = await inTerminal("--quiet");
  assert.equal(quiet.code, 0, quiet.output);
  assert.doesNotMatch(quiet.output, /ETA|%/);
});

/** Sends `request` raw to the metrics port; returns the whole response, or "reset". */
async function rawHttp(port: number, request: Uint8Array): Promise<string> {
  const conn = await connect(port);
  try {
    await conn.write(request);
    const reply = await readToEnd(conn, 10_000).catch(() => "reset" as const);
    return reply === "reset" ? reply : text(reply);
  } finally {
    conn.close();
  }
}

Deno.test("metrics: only GET /metrics and / answer; other methods, paths and garbage get 405/404/400", async () => {
  const metricsPort = freePort();
  await using _server = await startServer("server", { extra: ["--metrics-port", String(metricsPort)] });
  const status = (response: string) => response.split("\r\n")[0];
  const ok = await rawHttp(metricsPort, bytes("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
  assert.equal(status(ok), "HTTP/1.1 200 OK");
  assert.match(ok, /\r\n\r\n# HELP accio_connections_total /);
  const length = Number(/\r\ncontent-length: (\d+)\r\n/i.exec(ok)?.[1]);
  assert.equal(length, bytes(ok.slice(ok.indexOf("\r\n\r\n") + 4)).length, "Content-Length matches the body");
  assert.equal(status(await rawHttp(metricsPort, bytes("GET /?x=1 HTTP/1.0\r\n\r\n"))), "HTTP/1.1 200 OK");
  assert.equal(
    status(await rawHttp(metricsPort, bytes("GET /other HTTP/1.1\r\n\r\n"))),
    "HTTP/1.1 404 Not Found",
  );
  assert.equal(
    status(await rawHttp(metricsPort, bytes("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"))),
    "HTTP/1.1 405 Method Not Allowed",
  );
  assert.equal(
    status(await rawHttp(metricsPort, bytes("\x00\x01 nonsense\r\n\r\n"))),
    "HTTP/1.1 400 Bad Request",
  );
  const huge = bytes(`GET /metrics HTTP/1.1\r\nX-Big: ${"a".repeat(64 * 1024)}\r\n\r\n`);
  assert.match(await rawHttp(metricsPort, huge), /^(HTTP\/1\.1 400 Bad Request|reset)/);
  const fetched = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  assert.equal(fetched.status, 200);
  assert.match(await fetched.text(), /accio_connections_active 0/);
});

Deno.test("metrics: an idle or half-sent request is closed within 5 s", async () => {
  const metricsPort = freePort();
  await using _server = await startServer("server", { extra: ["--metrics-port", String(metricsPort)] });
  const idle = await connect(metricsPort);
  const half = await connect(metricsPort);
  try {
    await half.write(bytes("GET /metrics HTTP/1.1\r\nHost: x\r\n"));
    const started = Date.now();
    await Promise.all([idle, half].map((conn) =>
      readToEnd(conn, 8_000).catch((e) => {
        if (/did not close/.test(String(e))) throw e;
      })
    ));
    const waited = Date.now() - started;
    assert.ok(waited < 7_000, `held for ${waited} ms`);
  } finally {
    idle.close();
    half.close();
  }
});

Deno.test("upload log: a FIFO or a directory as --log is refused at start, never waited on", async () => {
  const dir = await tempDir();
  const fifo = `${dir}/log.fifo`;
  assert.ok((await new Deno.Command("mkfifo", { args: [fifo] }).output()).success);
  await Deno.mkdir(`${dir}/logdir`);
  const files = await tempDir();
  for (const log of [fifo, `${dir}/logdir`]) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [...taskArgs("server"), "--log", log, String(freePort()), files],
      stdout: "null",
      stderr: "piped",
      signal: AbortSignal.timeout(15_000), // the old server blocked here for good on a FIFO without reader
    }).output();
    const stderr = text(out.stderr);
    assert.equal(out.code, 1, stderr);
    assert.match(stderr, /^ERROR: cannot open upload log ".*": not a regular file/m, stderr);
  }
  assert.deepEqual(await listDir(files), []);
});
