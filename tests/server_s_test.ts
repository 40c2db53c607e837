/** `server-s <PORT>`, the simplified server, checked from outside over loopback TCP. */
import assert from "node:assert/strict";
import { bytes, text } from "./support/encoding.ts";
import { makeFile, tempDir } from "./support/files.ts";
import { runClient, spawnProgram, startServer, taskArgs } from "./support/process.ts";
import { rawDoubleUpload, rawUpload, rawUploadReply, replyText } from "./support/raw_upload.ts";
import { delay, waitFor } from "./support/wait.ts";
import { connect, freePort, readToEnd, readWithTimeout, recvExactly, sendAll } from "./support/wire.ts";

const lines = (output: string) => output.split("\n").filter((l) => l !== "");

Deno.test("server-s serves 12 waiting clients one at a time, in order, none refused", async () => {
  await using server = await startServer("server-s");
  const conns = [];
  for (let i = 0; i < 12; i++) conns.push(await connect(server.port));
  try {
    for (let i = 0; i < conns.length; i++) {
      assert.equal(text(await recvExactly(conns[i], 7, 5_000)), "accio\r\n", `client ${i} greeted`);
      if (i + 1 < conns.length) {
        const early = await readWithTimeout(conns[i + 1], new Uint8Array(7), 100);
        assert.equal(early, "timeout", `client ${i + 1} was greeted while client ${i} was served`);
      }
      await sendAll(conns[i], new Uint8Array(i * 1000 + 1));
      await conns[i].closeWrite();
      await readToEnd(conns[i]);
    }
  } finally {
    conns.forEach((c) => c.close());
  }
  await waitFor(() => lines(server.proc.stdout).length === 12, 5_000, "12 counts");
  assert.deepEqual(lines(server.proc.stdout), Array.from({ length: 12 }, (_, i) => String(i * 1000 + 1)));
});

Deno.test("server-s prints 0 for an empty upload and excludes the double-handshake header", async () => {
  await using server = await startServer("server-s");
  await rawUpload(server.port, new Uint8Array(0));
  await rawDoubleUpload(server.port, bytes("confirm-accio-again\r\n\r\n12345"));
  await waitFor(() => lines(server.proc.stdout).length === 2, 5_000, "2 counts");
  assert.deepEqual(lines(server.proc.stdout), ["0", "5"]);
});

Deno.test("server-s prints ERROR after the idle timeout, then serves the next client", async () => {
  await using server = await startServer("server-s", { extra: ["--timeout", "1"] });
  const stalled = await connect(server.port);
  try {
    await recvExactly(stalled, 7);
    await sendAll(stalled, bytes("some"));
    assert.equal(
      replyText(await readToEnd(stalled, 5_000)),
      "error no data for 1 s while waiting for file data\r\n",
    );
    await waitFor(() => lines(server.proc.stdout).length === 1, 5_000, "ERROR");
  } finally {
    stalled.close();
  }
  await rawUpload(server.port, bytes("next"));
  await waitFor(() => lines(server.proc.stdout).length === 2, 5_000, "the next count");
  assert.deepEqual(lines(server.proc.stdout), ["ERROR", "4"]);
});

Deno.test("server-s: the default idle timeout is 10 seconds", async () => {
  await using server = await startServer("server-s");
  const conn = await connect(server.port);
  const started = Date.now();
  try {
    await recvExactly(conn, 7);
    await readToEnd(conn, 15_000);
  } finally {
    conn.close();
  }
  const waited = Date.now() - started;
  assert.ok(waited >= 9_500 && waited < 12_000, `dropped after ${waited} ms`);
  await waitFor(() => lines(server.proc.stdout).length === 1, 5_000, "ERROR");
  assert.deepEqual(lines(server.proc.stdout), ["ERROR"]);
});

Deno.test("server-s counts a 100 MiB upload as it arrives, RSS under 150 MiB", async () => {
  const work = await tempDir();
  const size = 100 * 1024 * 1024;
  const path = await makeFile(work, "big.bin", size);
  await using server = await startServer("server-s");
  server.proc.trackMemory();
  const result = await runClient(["127.0.0.1", String(server.port), path], 120_000);
  assert.equal(result.code, 0, result.stderr);
  await waitFor(() => lines(server.proc.stdout).length === 1, 5_000, "the count");
  assert.deepEqual(lines(server.proc.stdout), [String(size)]);
  assert.ok(
    server.proc.peakRssKiB > 0 && server.proc.peakRssKiB < 150 * 1024,
    `${server.proc.peakRssKiB} KiB`,
  );
  await Deno.remove(work, { recursive: true });
});

for (const signal of ["SIGTERM", "SIGINT", "SIGQUIT"] as const) {
  Deno.test(`server-s exits 0 on ${signal}`, async () => {
    await using server = await startServer("server-s");
    await rawUpload(server.port, bytes("x"));
    await waitFor(() => lines(server.proc.stdout).length === 1, 5_000, "the count");
    const status = await server.proc.stop(signal, 5_000);
    assert.equal(status.code, 0, server.proc.stderr);
  });
}

Deno.test("server-s on SIGTERM mid-upload prints ERROR and exits 0 at once", async () => {
  await using server = await startServer("server-s");
  const conn = await connect(server.port);
  try {
    await recvExactly(conn, 7);
    await sendAll(conn, bytes("partial"));
    await new Promise((r) => setTimeout(r, 100));
    const status = await server.proc.stop("SIGTERM", 3_000);
    assert.equal(status.code, 0);
    assert.equal(
      replyText(await readToEnd(conn, 5_000)),
      "error server shut down before the upload finished\r\n",
    );
  } finally {
    conn.close();
  }
  assert.deepEqual(lines(server.proc.stdout), ["ERROR"]);
});

Deno.test("server-s: bad ports give ERROR: and a non-zero exit", async () => {
  for (const port of ["abc", "0", "65536", "-1", "", "80x"]) {
    const proc = spawnProgram("server-s", [port]);
    const status = await proc.wait(10_000);
    assert.notEqual(status.code, 0, `server-s ${port}`);
    assert.match(proc.stderr, /^ERROR: invalid port/m);
  }
  const proc = spawnProgram("server-s", []);
  assert.notEqual((await proc.wait(10_000)).code, 0);
  assert.match(proc.stderr, /^ERROR: missing argument/m);
});

Deno.test("server-s on SIGQUIT finishes the upload in progress, prints its count, exits 0", async () => {
  await using server = await startServer("server-s");
  const conn = await connect(server.port);
  try {
    await recvExactly(conn, 7);
    await sendAll(conn, bytes("first part "));
    server.proc.child.kill("SIGQUIT");
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(!server.proc.exited, "server-s exited before the upload in progress finished");
    await sendAll(conn, bytes("second part"));
    await conn.closeWrite();
    await readToEnd(conn);
  } finally {
    conn.close();
  }
  const status = await server.proc.wait(5_000);
  assert.equal(status.code, 0);
  assert.deepEqual(lines(server.proc.stdout), ["22"]);
});

Deno.test("server-s: a broken double handshake prints ERROR and the client reads why", async () => {
  await using server = await startServer("server-s");
  const reply = await rawDoubleUpload(server.port, bytes("confirm-accio-again\r\nname: x\r\n\r\ndata"));
  assert.equal(
    replyText(reply),
    'error header line "name: x" sent, but this server accepts no header extensions\r\n',
  );
  await waitFor(() => lines(server.proc.stdout).length === 1, 5_000, "ERROR");
  assert.deepEqual(lines(server.proc.stdout), ["ERROR"]);
});

Deno.test("server-s: the client after a failed one is served at once, not after the lingering close", async () => {
  await using server = await startServer("server-s", { extra: ["--timeout", "5"] });
  const refused = await connect(server.port);
  const next = await connect(server.port);
  try {
    await recvExactly(refused, 7);
    // A broken double handshake, and the peer keeps its side open: the server lingers on it.
    await sendAll(refused, bytes("confirm-accio\r\n"));
    await recvExactly(refused, 7);
    await sendAll(refused, bytes("not-confirm-accio-again\r\n"));
    const started = Date.now();
    assert.equal(text(await recvExactly(next, 7, 5_000)), "accio\r\n");
    assert.ok(Date.now() - started < 1_500, `the next client waited ${Date.now() - started} ms`);
    await sendAll(next, bytes("abc"));
    await next.closeWrite();
    await readToEnd(next);
  } finally {
    refused.close();
    next.close();
  }
  await waitFor(() => lines(server.proc.stdout).length === 2, 5_000, "two results");
  assert.deepEqual(lines(server.proc.stdout), ["ERROR", "3"]);
});

Deno.test("server-s keeps serving when its stdout's reader is gone (EPIPE)", async () => {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [...taskArgs("server-s"), String(port)],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  try {
    let seen = "";
    while (!seen.includes("listening on")) seen += (await stderr.read()).value ?? "";
    await child.stdout.cancel(); // the reader of stdout exits: the next count meets a broken pipe
    for (let i = 0; i < 3; i++) await rawUpload(port, bytes(`upload ${i}`));
    const reply = await rawUploadReply(port, bytes("still counted"));
    assert.deepEqual(reply, new Uint8Array(0));
    const status = await Promise.race([child.status, delay(300).then(() => "running" as const)]);
    assert.equal(status, "running", "server-s ended after a write to a closed stdout");
  } finally {
    child.kill("SIGKILL");
    await child.status;
    await stderr.cancel();
  }
});

Deno.test("server-s log lines start with an ISO 8601 timestamp, then server-s:", async () => {
  await using server = await startServer("server-s", { extra: ["--timeout", "0.5"] });
  const idle = await connect(server.port);
  try {
    await readToEnd(idle, 5_000);
  } finally {
    idle.close();
  }
  await waitFor(() => server.proc.stderr.includes("ended in error"), 5_000, "the error's log line");
  const logged = server.proc.stderr.split("\n").filter((l) => l !== "");
  assert.ok(logged.length >= 2, server.proc.stderr);
  for (const line of logged) {
    assert.match(line, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z server-s: /, line);
  }
});
