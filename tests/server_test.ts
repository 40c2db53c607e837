/** `server <PORT> <FILE-DIR>` checked from outside over loopback TCP. */
import assert from "node:assert/strict";
import { fileSha256 } from "../lib/file_hash.ts";
import { bytes, text } from "./support/encoding.ts";
import { listDir, makeFile, sha256, tempDir, waitForFile } from "./support/files.ts";
import { spawnPeer, spawnProgram, startServer } from "./support/process.ts";
import { rawDoubleUpload, rawUpload, rawUploadReply, replyText } from "./support/raw_upload.ts";
import { delay, waitFor } from "./support/wait.ts";
import { connect, readToEnd, readWithTimeout, recvExactly, sendAll } from "./support/wire.ts";

const read = (path: string) => Deno.readFile(path);

Deno.test("server saves each connection's bytes as <N>.file, numbered from 1", async () => {
  await using server = await startServer("server");
  await rawUpload(server.port, bytes("first upload"));
  await rawUpload(server.port, bytes("second\r\n\x00\xff upload"));
  assert.deepEqual(text(await read(`${server.dir}/1.file`)), "first upload");
  assert.deepEqual(text(await read(`${server.dir}/2.file`)), "second\r\n\x00\xff upload");
  assert.deepEqual(await listDir(server.dir), ["1.file", "2.file"]);
});

Deno.test("server stores bytes exactly: every byte value, no decoding", async () => {
  await using server = await startServer("server");
  const all = new Uint8Array(256 * 4).map((_, i) => i % 256);
  await rawUpload(server.port, all);
  assert.deepEqual(await read(`${server.dir}/1.file`), all);
});

Deno.test("server writes an empty file for a graceful close with no data", async () => {
  await using server = await startServer("server");
  await rawUpload(server.port, new Uint8Array(0));
  assert.deepEqual((await Deno.stat(`${server.dir}/1.file`)).size, 0);
});

Deno.test("server greets 12 connections opened at once before any of them sends", async () => {
  await using server = await startServer("server");
  const conns = await Promise.all(Array.from({ length: 12 }, () => connect(server.port)));
  try {
    const greetings = await Promise.all(conns.map((c) => recvExactly(c, 7, 5_000)));
    for (const g of greetings) assert.deepEqual(text(g), "accio\r\n");
    await Promise.all(conns.map(async (c, i) => {
      await sendAll(c, bytes(`upload from connection ${i}`));
      await c.closeWrite();
      await readToEnd(c);
    }));
  } finally {
    conns.forEach((c) => c.close());
  }
  const contents = await Promise.all(
    Array.from({ length: 12 }, (_, i) => Deno.readTextFile(`${server.dir}/${i + 1}.file`)),
  );
  assert.deepEqual(
    contents.sort(),
    Array.from({ length: 12 }, (_, i) => `upload from connection ${i}`).sort(),
  );
});

Deno.test("server keeps interleaved uploads apart", async () => {
  await using server = await startServer("server");
  const a = await connect(server.port);
  const b = await connect(server.port);
  try {
    await recvExactly(a, 7);
    await recvExactly(b, 7);
    for (let i = 0; i < 20; i++) {
      await sendAll(a, bytes(`a${i};`));
      await sendAll(b, bytes(`b${i};`));
      await delay(5);
    }
    await a.closeWrite();
    await b.closeWrite();
    await readToEnd(a);
    await readToEnd(b);
  } finally {
    a.close();
    b.close();
  }
  const expected = (p: string) => Array.from({ length: 20 }, (_, i) => `${p}${i};`).join("");
  assert.deepEqual(await Deno.readTextFile(`${server.dir}/1.file`), expected("a"));
  assert.deepEqual(await Deno.readTextFile(`${server.dir}/2.file`), expected("b"));
});

Deno.test("a stalled upload does not delay another connection's greeting or data", async () => {
  await using server = await startServer("server", { extra: ["--timeout", "3"] });
  const stalled = await connect(server.port);
  try {
    await recvExactly(stalled, 7);
    await sendAll(stalled, bytes("partial"));
    const started = Date.now();
    await rawUpload(server.port, bytes("quick"));
    assert(Date.now() - started < 2_000, "the second upload waited for the stalled one");
    assert.deepEqual(await Deno.readTextFile(`${server.dir}/2.file`), "quick");
  } finally {
    stalled.close();
  }
});

Deno.test("100 MiB upload: byte-identical, server and client each under 150 MiB peak RSS", async () => {
  const work = await tempDir();
  const source = await makeFile(work, "big.bin", 100 * 1024 * 1024, 7);
  await using server = await startServer("server");
  server.proc.trackMemory();
  await using client = spawnProgram("client", ["127.0.0.1", String(server.port), source]);
  client.trackMemory(10);
  const status = await client.wait(120_000);
  assert.deepEqual(status.code, 0, client.stderr);
  assert.deepEqual(await fileSha256(`${server.dir}/1.file`), await fileSha256(source));
  await delay(100);
  for (const [who, kib] of [["server", server.proc.peakRssKiB], ["client", client.peakRssKiB]] as const) {
    assert.ok(kib > 0, `no RSS sample was taken of the ${who}`);
    assert.ok(kib < 150 * 1024, `${who} peak RSS ${(kib / 1024).toFixed(1)} MiB`);
  }
});

Deno.test("server: an upload idle for the timeout becomes exactly ERROR, partial data discarded", async () => {
  await using server = await startServer("server", { extra: ["--timeout", "1"] });
  const conn = await connect(server.port);
  try {
    await recvExactly(conn, 7);
    await sendAll(conn, bytes("partial data that must be discarded"));
    const started = Date.now();
    const end = await readToEnd(conn, 5_000);
    const waited = Date.now() - started;
    assert(waited >= 900 && waited < 3_000, `server closed after ${waited} ms`);
    assert.equal(replyText(end), "error no data for 1 s while waiting for file data\r\n");
  } finally {
    conn.close();
  }
  // The ERROR path closes the socket first, then publishes: wait for the final state, bounded.
  await waitFor(
    async () => (await listDir(server.dir)).join() === "1.file",
    5_000,
    "only 1.file in the directory",
  );
  assert.deepEqual(text(await read(`${server.dir}/1.file`)), "ERROR");
});

Deno.test("server: the default idle timeout is 10 seconds", async () => {
  await using server = await startServer("server");
  const conn = await connect(server.port);
  try {
    await recvExactly(conn, 7);
    await sendAll(conn, bytes("x"));
    const started = Date.now();
    await readToEnd(conn, 15_000);
    const waited = Date.now() - started;
    assert(waited >= 9_500 && waited < 12_000, `closed after ${waited} ms, expected ~10 s`);
  } finally {
    conn.close();
  }
  await waitForFile(server.dir, 1);
  assert.deepEqual(text(await read(`${server.dir}/1.file`)), "ERROR");
});

Deno.test("server: an idle connection that never sent a byte also ends as ERROR", async () => {
  await using server = await startServer("server", { extra: ["--timeout", "0.5"] });
  const conn = await connect(server.port);
  try {
    await readToEnd(conn, 5_000);
  } finally {
    conn.close();
  }
  await waitForFile(server.dir, 1);
  assert.deepEqual(text(await read(`${server.dir}/1.file`)), "ERROR");
});

Deno.test("server: a reset mid-upload gives ERROR and the server keeps serving", async () => {
  await using server = await startServer("server");
  const work = await tempDir();
  const source = await makeFile(work, "data.bin", 2 * 1024 * 1024, 3);
  await using peer = spawnPeer("seed_client.py", [
    "127.0.0.1",
    String(server.port),
    source,
    "--reset-after",
    "500000",
  ]);
  assert.deepEqual((await peer.wait()).code, 0, peer.stderr);
  await waitForFile(server.dir, 1);
  assert.deepEqual(text(await read(`${server.dir}/1.file`)), "ERROR");
  await rawUpload(server.port, bytes("still serving"));
  assert.deepEqual(await Deno.readTextFile(`${server.dir}/2.file`), "still serving");
  await waitFor(
    async () => (await listDir(server.dir)).join() === "1.file,2.file",
    5_000,
    "no leftover files",
  );
  await Deno.remove(work, { recursive: true });
});

Deno.test("server: no <N>.file is visible before its upload completes", async () => {
  await using server = await startServer("server");
  const conn = await connect(server.port);
  try {
    await recvExactly(conn, 7);
    await sendAll(conn, bytes("in progress"));
    await delay(200);
    assert.deepEqual((await listDir(server.dir)).filter((n) => !n.startsWith(".")), []);
    await conn.closeWrite();
    await readToEnd(conn);
  } finally {
    conn.close();
  }
  assert.deepEqual(await Deno.readTextFile(`${server.dir}/1.file`), "in progress");
});

Deno.test("server: the double handshake is detected and its header is not stored", async () => {
  await using server = await startServer("server");
  const conn = await connect(server.port);
  try {
    assert.deepEqual(text(await recvExactly(conn, 7)), "accio\r\n");
    // Split the confirmation across segments: detection must not depend on segmenting.
    await sendAll(conn, bytes("confirm-"));
    await delay(50);
    await sendAll(conn, bytes("accio\r\n"));
    assert.deepEqual(text(await recvExactly(conn, 7)), "accio\r\n");
    await sendAll(conn, bytes("confirm-accio-again\r\n\r\nthe file"));
    await conn.closeWrite();
    await readToEnd(conn);
  } finally {
    conn.close();
  }
  assert.deepEqual(await Deno.readTextFile(`${server.dir}/1.file`), "the file");
});

Deno.test("server: a broken double handshake ends as ERROR, and the client is told why", async () => {
  await using server = await startServer("server");
  const reply = await rawDoubleUpload(server.port, bytes("confirm-something-else\r\n\r\ndata"));
  assert.match(
    replyText(reply),
    /^error expected confirm-accio-again\\r\\n, received "confirm-[^\r\n]*\r\n$/,
  );
  await waitForFile(server.dir, 1);
  assert.deepEqual(await Deno.readTextFile(`${server.dir}/1.file`), "ERROR");
});

Deno.test("server: bytes that only start like confirm-accio are file data", async () => {
  await using server = await startServer("server");
  await rawUpload(server.port, bytes("confirm-acc"));
  await rawUpload(server.port, bytes("confirm-accXdata"));
  assert.deepEqual(await Deno.readTextFile(`${server.dir}/1.file`), "confirm-acc");
  assert.deepEqual(await Deno.readTextFile(`${server.dir}/2.file`), "confirm-accXdata");
});

Deno.test("server --handshake single stores confirm-accio as data", async () => {
  await using server = await startServer("server", { extra: ["--handshake", "single"] });
  await rawUpload(server.port, bytes("confirm-accio\r\nrest"));
  assert.deepEqual(await Deno.readTextFile(`${server.dir}/1.file`), "confirm-accio\r\nrest");
});

Deno.test("server --handshake double refuses a single-handshake client with ERROR", async () => {
  await using server = await startServer("server", { extra: ["--handshake", "double"] });
  await rawUpload(server.port, bytes("plain data"));
  await waitForFile(server.dir, 1);
  assert.deepEqual(await Deno.readTextFile(`${server.dir}/1.file`), "ERROR");
});

Deno.test("server listens on IPv6 ::1 and IPv4 127.0.0.1 alike", async () => {
  await using server = await startServer("server");
  await rawUpload(server.port, bytes("over v6"), "::1");
  await rawUpload(server.port, bytes("over v4"), "127.0.0.1");
  assert.deepEqual(await Deno.readTextFile(`${server.dir}/1.file`), "over v6");
  assert.deepEqual(await Deno.readTextFile(`${server.dir}/2.file`), "over v4");
});

Deno.test("server restarted on a used directory continues after the highest number", async () => {
  const dir = await tempDir();
  await Deno.writeTextFile(`${dir}/1.file`, "old one");
  await Deno.writeTextFile(`${dir}/7.file`, "old seven");
  await Deno.writeTextFile(`${dir}/notes.txt`, "not an upload");
  {
    await using server = await startServer("server", { dir });
    await rawUpload(server.port, bytes("new"));
  }
  assert.deepEqual(await Deno.readTextFile(`${dir}/8.file`), "new");
  assert.deepEqual(await Deno.readTextFile(`${dir}/1.file`), "old one");
  assert.deepEqual(await Deno.readTextFile(`${dir}/7.file`), "old seven");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("server turns a leftover temporary file from a killed run into ERROR and skips its number", async () => {
  const dir = await tempDir();
  await Deno.writeTextFile(`${dir}/1.file`, "done");
  await Deno.writeTextFile(`${dir}/.2.file.part`, "cut off by kill -9");
  {
    await using server = await startServer("server", { dir });
    await rawUpload(server.port, bytes("after restart"));
  }
  assert.deepEqual(await listDir(dir), ["1.file", "2.file", "3.file"]);
  assert.deepEqual(await Deno.readTextFile(`${dir}/2.file`), "ERROR");
  assert.deepEqual(await Deno.readTextFile(`${dir}/3.file`), "after restart");
  await Deno.remove(dir, { recursive: true });
});

for (const signal of ["SIGTERM", "SIGINT", "SIGQUIT"] as const) {
  Deno.test(`server exits 0 on ${signal}`, async () => {
    await using server = await startServer("server");
    await rawUpload(server.port, bytes("before the signal"));
    const status = await server.proc.stop(signal, 5_000);
    assert.deepEqual(status.code, 0, server.proc.stderr);
    assert.deepEqual(status.signal, null);
  });
}

Deno.test("server on SIGTERM aborts uploads in flight: ERROR, no temporary file, exit 0", async () => {
  await using server = await startServer("server");
  const conn = await connect(server.port);
  try {
    await recvExactly(conn, 7);
    await sendAll(conn, bytes("half an upload"));
    await delay(100);
    const status = await server.proc.stop("SIGTERM", 5_000);
    assert.deepEqual(status.code, 0);
    assert.equal(
      replyText(await readToEnd(conn, 5_000)),
      "error server shut down before the upload finished\r\n",
    );
  } finally {
    conn.close();
  }
  assert.deepEqual(await listDir(server.dir), ["1.file"]);
  assert.deepEqual(await Deno.readTextFile(`${server.dir}/1.file`), "ERROR");
});

Deno.test("server on SIGQUIT stops accepting but lets an upload in flight finish", async () => {
  await using server = await startServer("server");
  const conn = await connect(server.port);
  try {
    await recvExactly(conn, 7);
    await sendAll(conn, bytes("first half, "));
    server.proc.child.kill("SIGQUIT");
    await waitFor(() => server.proc.stderr.includes("stopping"), 5_000, "the drain message");
    // New connections are refused now.
    let refused = false;
    try {
      (await connect(server.port)).close();
    } catch (error) {
      refused = error instanceof Deno.errors.ConnectionRefused;
    }
    assert(refused, "a new connection was accepted after SIGQUIT");
    assert(!server.proc.exited, "server exited before the upload finished");
    await sendAll(conn, bytes("second half"));
    await conn.closeWrite();
    await readToEnd(conn);
  } finally {
    conn.close();
  }
  const status = await server.proc.wait(5_000);
  assert.deepEqual(status.code, 0);
  assert.deepEqual(await Deno.readTextFile(`${server.dir}/1.file`), "first half, second half");
});

Deno.test("server: bad ports and directories give ERROR: and a non-zero exit", async () => {
  const dir = await tempDir();
  const file = `${dir}/plain-file`;
  await Deno.writeTextFile(file, "");
  const cases: [string[], RegExp][] = [
    [["abc", dir], /port/],
    [["0", dir], /port/],
    [["65536", dir], /port/],
    [["-1", dir], /port/],
    [["5000.5", dir], /port/],
    [["", dir], /port/],
    [["5000", `${dir}/missing`], /does not exist/],
    [["5000", file], /not a directory/],
    [["5000"], /missing argument/],
    [["5000", dir, "extra"], /too many arguments/],
    [["--bogus", "5000", dir], /unknown option/],
    [["--timeout", "0", "5000", dir], /--timeout/],
  ];
  for (const [args, message] of cases) {
    const proc = spawnProgram("server", args);
    const status = await proc.wait(10_000);
    assert.notEqual(status.code, 0, `server ${args.join(" ")} exited 0`);
    assert.match(proc.stderr, /^ERROR: /m, `server ${args.join(" ")}`);
    assert.match(proc.stderr, message);
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("server: a port already in use gives ERROR: and a non-zero exit", async () => {
  const listener = Deno.listen({ hostname: "::", port: 0 });
  try {
    const dir = await tempDir();
    const proc = spawnProgram("server", [String((listener.addr as Deno.NetAddr).port), dir]);
    const status = await proc.wait(10_000);
    assert.notEqual(status.code, 0);
    assert.match(proc.stderr, /^ERROR: cannot listen on port \d+: the port is already in use/m);
    await Deno.remove(dir, { recursive: true });
  } finally {
    listener.close();
  }
});

Deno.test("server: an unwritable directory gives ERROR: and a non-zero exit", async (t) => {
  // Tests may run as root, which ignores file modes; an immutable directory stops root too.
  const dir = await tempDir();
  const immutable = await new Deno.Command("chattr", { args: ["+i", dir], stderr: "null" }).output()
    .then((o) => o.success, () => false);
  try {
    if (!immutable && Deno.uid() === 0) {
      await t.step({
        name: "SKIPPED: chattr +i unavailable here and root can write anywhere",
        ignore: true,
        fn() {},
      });
      return;
    }
    if (!immutable) await Deno.chmod(dir, 0o500);
    const proc = spawnProgram("server", ["5000", dir]);
    const status = await proc.wait(10_000);
    assert.notEqual(status.code, 0);
    assert.match(proc.stderr, /^ERROR: cannot use directory ".*": it is not writable/m);
  } finally {
    if (immutable) await new Deno.Command("chattr", { args: ["-i", dir] }).output();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("server does not read past what a slow client sends: greeting first, nothing else", async () => {
  await using server = await startServer("server");
  const conn = await connect(server.port);
  try {
    assert.deepEqual(text(await recvExactly(conn, 7)), "accio\r\n");
    const extra = await readWithTimeout(conn, new Uint8Array(16), 300);
    assert.deepEqual(extra, "timeout", "the server sent more than accio\\r\\n");
    await conn.closeWrite();
    await readToEnd(conn);
  } finally {
    conn.close();
  }
  assert.deepEqual(sha256(await read(`${server.dir}/1.file`)), sha256(new Uint8Array(0)));
});

Deno.test("server --max-connections 2: a third client waits in the backlog, then is served", async () => {
  await using server = await startServer("server", { extra: ["--max-connections", "2"] });
  const first = await connect(server.port);
  const second = await connect(server.port);
  const third = await connect(server.port);
  try {
    await recvExactly(first, 7);
    await recvExactly(second, 7);
    assert.equal(
      await readWithTimeout(third, new Uint8Array(7), 300),
      "timeout",
      "a third connection was served",
    );
    await sendAll(first, bytes("one"));
    await first.closeWrite();
    await readToEnd(first);
    assert.equal(text(await recvExactly(third, 7, 5_000)), "accio\r\n");
    for (const [conn, data] of [[second, "two"], [third, "three"]] as const) {
      await sendAll(conn, bytes(data));
      await conn.closeWrite();
      await readToEnd(conn);
    }
  } finally {
    [first, second, third].forEach((c) => c.close());
  }
  assert.equal(await Deno.readTextFile(`${server.dir}/1.file`), "one");
  assert.deepEqual(
    [await Deno.readTextFile(`${server.dir}/2.file`), await Deno.readTextFile(`${server.dir}/3.file`)].sort(),
    ["three", "two"],
  );
});

Deno.test("server --max-size: a larger upload ends as ERROR, one at the limit is saved", async () => {
  await using server = await startServer("server", { extra: ["--max-size", "1K"] });
  await rawUpload(server.port, new Uint8Array(1024).fill(65));
  const conn = await connect(server.port);
  try {
    await recvExactly(conn, 7);
    await sendAll(conn, new Uint8Array(4096)).catch(() => {}); // cut off part-way
    await conn.closeWrite().catch(() => {});
    await readToEnd(conn).catch(() => {});
  } finally {
    conn.close();
  }
  await waitForFile(server.dir, 2);
  assert.equal((await Deno.stat(`${server.dir}/1.file`)).size, 1024);
  assert.equal(await Deno.readTextFile(`${server.dir}/2.file`), "ERROR");
  // The log line may trail the file (stderr is read as it arrives).
  await waitFor(
    () => /2\.file from .*: ERROR: upload larger/.test(server.proc.stderr),
    5_000,
    "the log line",
  );
  assert.match(server.proc.stderr, /2\.file from .*: ERROR: upload larger than the limit of 1024 bytes/);
});

Deno.test("server --max-size 10, a 20-byte upload: the client gets one error line, then EOF", async () => {
  await using server = await startServer("server", { extra: ["--max-size", "10"] });
  const reply = await rawUploadReply(server.port, bytes("twenty bytes of data"));
  assert.equal(replyText(reply), "error upload larger than the limit of 10 bytes\r\n");
  await waitForFile(server.dir, 1);
  assert.equal(await Deno.readTextFile(`${server.dir}/1.file`), "ERROR");
});

Deno.test("server without --headers: a client sending header lines and a big file reads why", async () => {
  await using server = await startServer("server");
  const header = bytes("confirm-accio-again\r\nlength: 16777216\r\n\r\n");
  const upload = new Uint8Array(header.length + 16 * 1024 * 1024);
  upload.set(header);
  // The server refuses at the header, while the 16 MiB are still coming: its lingering close lets
  // the line arrive instead of a reset.
  const reply = await rawDoubleUpload(server.port, upload);
  assert.equal(
    replyText(reply),
    'error header line "length: 16777216" sent, but this server accepts no header extensions\r\n',
  );
  await waitForFile(server.dir, 1);
  assert.equal(await Deno.readTextFile(`${server.dir}/1.file`), "ERROR");
});

Deno.test("server: a failure at commit (directory made immutable after the data) reaches the client", async (t) => {
  await using server = await startServer("server");
  const chattr = (flag: string) =>
    new Deno.Command("chattr", { args: [flag, server.dir], stderr: "null" }).output().then(
      (o) => o.success,
      () => false,
    );
  const conn = await connect(server.port);
  try {
    await recvExactly(conn, 7);
    await sendAll(conn, bytes("data that arrives whole but cannot be published"));
    await delay(100);
    if (!(await chattr("+i"))) {
      await t.step({ name: "SKIPPED: chattr +i is not available here", ignore: true, fn() {} });
      return;
    }
    await conn.closeWrite();
    const reply = replyText(await readToEnd(conn, 5_000));
    assert.match(reply, /^error [^\r\n]+\r\n$/, `the client was not told: ${JSON.stringify(reply)}`);
  } finally {
    conn.close();
    await chattr("-i");
  }
  await rawUpload(server.port, bytes("still serving"));
  assert.ok(!server.proc.exited, "server exited");
});

Deno.test("server: on success the wire is the seed protocol: nothing after accio, then EOF", async () => {
  await using server = await startServer("server");
  assert.deepEqual(await rawUploadReply(server.port, bytes("single")), new Uint8Array(0));
  assert.deepEqual(await rawUploadReply(server.port, new Uint8Array(0)), new Uint8Array(0));
  const double = await rawDoubleUpload(server.port, bytes("confirm-accio-again\r\n\r\ndouble"));
  assert.deepEqual(double, new Uint8Array(0));
  assert.equal(await Deno.readTextFile(`${server.dir}/1.file`), "single");
  assert.equal(await Deno.readTextFile(`${server.dir}/3.file`), "double");
});

Deno.test("server: the seed client succeeds as before and is not broken by an error line", async () => {
  const work = await tempDir();
  const source = await makeFile(work, "data.bin", 32 * 1024 * 1024, 21);
  await using server = await startServer("server", { extra: ["--max-size", "1M"] });
  const small = await makeFile(work, "small.bin", 1000, 22);
  await using ok = spawnPeer("seed_client.py", ["127.0.0.1", String(server.port), small]);
  assert.equal((await ok.wait()).code, 0, ok.stderr);
  assert.equal(await fileSha256(`${server.dir}/1.file`), await fileSha256(small));
  // Cut off at 1 MiB: the seed client ignores what the server sends after its half-close, and the
  // lingering close lets it finish sending instead of hitting a reset.
  await using cut = spawnPeer("seed_client.py", ["127.0.0.1", String(server.port), source]);
  assert.equal((await cut.wait()).code, 0, cut.stderr);
  await waitForFile(server.dir, 2);
  assert.equal(await Deno.readTextFile(`${server.dir}/2.file`), "ERROR");
});

Deno.test("server log lines start with an ISO 8601 timestamp, then server:", async () => {
  await using server = await startServer("server", { extra: ["--verbose"] });
  await rawUpload(server.port, bytes("logged"));
  await waitFor(() => server.proc.stderr.includes("1.file from"), 5_000, "the upload's log line");
  const lines = server.proc.stderr.split("\n").filter((l) => l !== "");
  assert.ok(lines.length >= 2, server.proc.stderr);
  for (const line of lines) {
    assert.match(line, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z server: /, line);
  }
});
