/**
 * Retries that never store a file twice, and resume over a link that drops:
 * the real client and server through a relay (lib/flaky_link.ts) that
 * cuts connections with a reset, holds them, or drops the server's receipt.
 */
import assert from "node:assert/strict";
import { fileSha256 } from "../lib/file_hash.ts";
import { bytes, text } from "./support/encoding.ts";
import { listDir, makeFile, sha256, tempDir } from "./support/files.ts";
import { runClient, spawnProgram, startServer } from "./support/process.ts";
import { doubleHandshake } from "./support/raw_upload.ts";
import { delay, waitFor } from "./support/wait.ts";
import { connect, freePort, readToEnd, readWithTimeout, recvExactly, sendAll } from "./support/wire.ts";
import { Relay } from "../lib/flaky_link.ts";

/** The entries of `dir` but the server's own record of numbers without an `N.file` (`.accio.numbers`). */
async function visibleEntries(dir: string): Promise<string[]> {
  return (await listDir(dir)).filter((n) => n !== ".accio.numbers").sort();
}

const MiB = 1024 * 1024;
const RESUME_DIR = ".accio-resume";

/** A small seeded PRNG (mulberry32), so that a failing run can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function kept(dir: string): Promise<string[]> {
  return await listDir(`${dir}/${RESUME_DIR}`).catch(() => []);
}

/** Every numbered file in `dir` holds exactly ERROR; returns how many there are. */
async function numberedAreErrors(dir: string): Promise<number> {
  const numbered = (await listDir(dir)).filter((n) => /^\d+\.file$/.test(n));
  for (const name of numbered) assert.equal(await Deno.readTextFile(`${dir}/${name}`), "ERROR", name);
  return numbered.length;
}

const retryArgs = (retries: number, delay = "0.2") => ["--retries", String(retries), "--retry-delay", delay];

for (const resume of [true, false]) {
  Deno.test(
    `a 200 MiB named, verified upload cut 5 times at random points: --retries 10${
      resume ? " --resume sends at most 1.3x" : ", from zero each time"
    }, stored identical`,
    async () => {
      const size = 200 * MiB;
      const seed = Date.now() % 100_000;
      const random = prng(seed);
      // With resume each connection goes on from where the last one stopped; without, it starts over.
      const span = resume ? 40 * MiB : size;
      const cuts = Array.from({ length: 5 }, () => 64 * 1024 + Math.floor(random() * (span - 64 * 1024)));
      await using server = await startServer("server", { extra: ["--resumable"] });
      const source = await makeFile(await tempDir(), "flaky.bin", size, 5);
      await using relay = await Relay.start(server.port, { cutAfter: cuts });
      const result = await runClient(
        [
          ...(resume ? ["--resume"] : ["--verify"]),
          "--named",
          ...retryArgs(10),
          "127.0.0.1",
          String(relay.port),
          source,
        ],
        240_000,
      );
      const context = `seed ${seed}, cuts ${cuts.join(", ")}\n${result.stderr}`;
      assert.equal(result.code, 0, context);
      assert.equal(relay.cuts, 5, context);
      assert.equal(await fileSha256(`${server.dir}/flaky.bin`), await fileSha256(source), context);
      if (resume) {
        assert.ok(relay.clientBytes <= 1.3 * size, `${relay.clientBytes} bytes sent for ${size}: ${context}`);
        assert.match(
          result.stdout,
          /^stored ".*flaky\.bin" as "flaky\.bin": 209715200 bytes in .*, verified, resumed at byte \d+, \d+ attempts/m,
        );
      } else {
        assert.ok(relay.clientBytes >= size + cuts.reduce((a, b) => a + b, 0) - 1, context);
      }
      // Every cut connection's number holds ERROR, and nothing is kept once the file is stored.
      assert.ok((await numberedAreErrors(server.dir)) >= 5);
      assert.deepEqual((await visibleEntries(server.dir)).filter((n) => !/^\d+\.file$/.test(n)), [
        RESUME_DIR,
        "flaky.bin",
      ]);
      assert.deepEqual(await kept(server.dir), []);
    },
  );
}

/** One cut attempt without retries: leaves a prefix on the server. Returns its path there. */
async function cutOnce(port: number, source: string, after: number, extra: string[] = []): Promise<void> {
  await using relay = await Relay.start(port, { cutAfter: [after] });
  const cut = await runClient(["--resume", "--named", ...extra, "127.0.0.1", String(relay.port), source]);
  assert.equal(cut.code, 1, cut.stderr);
  assert.match(cut.stderr, /^ERROR: connection reset by peer/m);
}

Deno.test("a prefix tampered with on the server's disk: the final check fails, nothing is published, exit 1", async () => {
  await using server = await startServer("server", { extra: ["--resumable"] });
  const source = await makeFile(await tempDir(), "tampered.bin", 8 * MiB, 9);
  await cutOnce(server.port, source, 3 * MiB);
  await waitFor(async () => (await kept(server.dir)).length === 1, 5_000, "the kept prefix");
  const [key] = await kept(server.dir);
  assert.match(key, /^[0-9a-f]{64}$/, "the prefix is named by a hash, not by the client's name");
  const prefix = `${server.dir}/${RESUME_DIR}/${key}`;
  using file = await Deno.open(prefix, { read: true, write: true });
  const byte = new Uint8Array(1);
  await file.seek(1000, Deno.SeekMode.Start);
  await file.read(byte);
  await file.seek(1000, Deno.SeekMode.Start);
  await file.write(new Uint8Array([byte[0] ^ 0xff]));
  const resumed = await runClient([
    "--resume",
    "--named",
    ...retryArgs(3),
    "127.0.0.1",
    String(server.port),
    source,
  ]);
  assert.equal(resumed.code, 1, resumed.stderr);
  assert.match(resumed.stderr, /^ERROR: server refused the upload: SHA-256 of the received bytes differs/m);
  assert.doesNotMatch(resumed.stderr, /trying again/, "a digest mismatch is permanent: no retry");
  assert.ok(!(await listDir(server.dir)).includes("tampered.bin"), "the tampered file was published");
  assert.deepEqual(await kept(server.dir), [], "the bad prefix was kept");
  // The server sends its error line first and then records ERROR: the file may trail the client's exit.
  await waitFor(async () => (await numberedAreErrors(server.dir)) === 2, 5_000, "two ERROR files");
  // The next attempt starts from zero and stores the file.
  const fresh = await runClient(["--resume", "--named", "127.0.0.1", String(server.port), source]);
  assert.equal(fresh.code, 0, fresh.stderr);
  assert.doesNotMatch(fresh.stdout, /resumed/);
  assert.equal(await fileSha256(`${server.dir}/tampered.bin`), await fileSha256(source));
});

for (const resume of [false, true]) {
  Deno.test(`idempotent retry${resume ? " --resume" : ""}: the server's ok is lost, the retry gets ok, one file stored`, async () => {
    const log = `${await tempDir()}/log.jsonl`;
    await using server = await startServer("server", { extra: ["--names", "--log", log] });
    const size = 4 * MiB;
    const source = await makeFile(await tempDir(), "once.bin", size, 3);
    await using relay = await Relay.start(server.port, { dropReplyOnce: true });
    const result = await runClient([
      resume ? "--resume" : "--verify",
      "--named",
      ...retryArgs(3, "0.1"),
      "127.0.0.1",
      String(relay.port),
      source,
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(relay.drops, 1);
    assert.match(result.stderr, /attempt 1 failed: connection reset by peer/);
    assert.deepEqual(await visibleEntries(server.dir), ["once.bin"], "a retry stored a second file");
    assert.equal(await fileSha256(`${server.dir}/once.bin`), await fileSha256(source));
    // Resume asks first: the server holds the whole file, so the retry sends no file byte.
    if (resume) assert.ok(relay.clientBytes < size + 4096, `${relay.clientBytes} bytes sent`);
    else assert.ok(relay.clientBytes >= 2 * size);
    await waitFor(
      async () => (await Deno.readTextFile(log)).trim().split("\n").length === 2,
      5_000,
      "2 log lines",
    );
    const entries = (await Deno.readTextFile(log)).trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(entries.map((e) => [e.id, e.outcome, e.name]), [[1, "saved", "once.bin"], [
      2,
      "saved",
      "once.bin",
    ]]);
    assert.equal(entries[0].reason, null);
    assert.match(entries[1].reason, /^already stored/);
    // Neither number has an N.file, and a restart hands out neither again.
    assert.equal((await server.proc.stop("SIGTERM")).code, 0);
    await using again = await startServer("server", { dir: server.dir });
    const next = await runClient(["127.0.0.1", String(again.port), source]);
    assert.equal(next.code, 0, next.stderr);
    assert.deepEqual(await visibleEntries(server.dir), ["3.file", "once.bin"]);
  });
}

Deno.test("a stream ended early on the way (the server got fewer bytes than announced): transient, the retry stores it", async () => {
  await using server = await startServer("server", { extra: ["--names"] });
  const source = await makeFile(await tempDir(), "short.bin", 4 * MiB, 5);
  await using relay = await Relay.start(server.port, { endEarlyOnce: MiB });
  const result = await runClient([
    "--verify",
    "--named",
    ...retryArgs(3, "0.1"),
    "127.0.0.1",
    String(relay.port),
    source,
  ]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(relay.earlyEnds, 1);
  assert.match(
    result.stderr,
    /attempt 1 failed: .*received \d+ bytes, but the client announced 4194304.*trying again/,
  );
  assert.equal(await fileSha256(`${server.dir}/short.bin`), await fileSha256(source));
  // The cut attempt's number holds ERROR; nothing else was stored.
  assert.deepEqual(await visibleEntries(server.dir), ["1.file", "short.bin"]);
  assert.equal(await Deno.readTextFile(`${server.dir}/1.file`), "ERROR");
});

Deno.test("a name holding a different file: error exists, permanent (no retry), nothing overwritten", async () => {
  await using server = await startServer("server", { extra: ["--names"] });
  const source = await makeFile(await tempDir(), "taken.bin", 64 * 1024, 1);
  for (
    const [label, content] of [["same size", new Uint8Array(64 * 1024)], [
      "other size",
      bytes("short"),
    ]] as const
  ) {
    await Deno.writeFile(`${server.dir}/taken.bin`, content);
    const result = await runClient([
      "--verify",
      "--named",
      ...retryArgs(5, "0.1"),
      "127.0.0.1",
      String(server.port),
      source,
    ]);
    assert.equal(result.code, 1, `${label}: ${result.stderr}`);
    assert.match(
      result.stderr,
      /^ERROR: server refused the upload: exists: ".*taken\.bin" already holds a different file/m,
    );
    assert.doesNotMatch(result.stderr, /trying again/, label);
    assert.deepEqual(await Deno.readFile(`${server.dir}/taken.bin`), content, label);
  }
});

/** A raw double-handshake upload's header with `lines`, sent on `conn`. */
async function sendHeader(conn: Deno.Conn, lines: string[]): Promise<void> {
  await doubleHandshake(conn);
  await sendAll(conn, bytes(["confirm-accio-again", ...lines, "", ""].join("\r\n")));
}

function resumeHeader(name: string, data: Uint8Array): string[] {
  return [`name: ${name}`, `length: ${data.length}`, `sha256: ${sha256(data)}`, "resume: yes"];
}

Deno.test("resume exchange on the wire: offset 0, nothing before it; a second connection for the same upload is busy", async () => {
  await using server = await startServer("server", { extra: ["--resumable"] });
  const data = new Uint8Array(100_000).map((_, i) => i % 251);
  const first = await connect(server.port);
  try {
    await sendHeader(first, resumeHeader("wire.bin", data));
    assert.equal(text(await recvExactly(first, 10)), "offset 0\r\n");
    assert.equal(
      await readWithTimeout(first, new Uint8Array(16), 200),
      "timeout",
      "more than the offset line",
    );
    await sendAll(first, data.subarray(0, 40_000));
    // The same upload on a second connection, while the first holds it.
    const second = await connect(server.port);
    try {
      await sendHeader(second, resumeHeader("wire.bin", data));
      const reply = await readToEnd(second);
      assert.notEqual(reply, "reset");
      assert.match(text(reply as Uint8Array), /^error busy: another connection is uploading "wire\.bin"/);
    } finally {
      second.close();
    }
    await sendAll(first, data.subarray(40_000));
    await first.closeWrite();
    assert.equal(text(await readToEnd(first) as Uint8Array), "ok\r\n");
  } finally {
    first.close();
  }
  assert.deepEqual(await Deno.readFile(`${server.dir}/wire.bin`), data);
  // Without name, length and sha256, resume is refused; a server without --resumable answers offset 0.
  const bare = await connect(server.port);
  try {
    await sendHeader(bare, ["resume: yes"]);
    assert.match(
      text(await readToEnd(bare) as Uint8Array),
      /^error resume needs the name, length and sha256 headers/,
    );
  } finally {
    bare.close();
  }
  await using plain = await startServer("server", { extra: ["--names"] });
  const other = await connect(plain.port);
  try {
    await sendHeader(other, resumeHeader("plain.bin", data));
    assert.equal(text(await recvExactly(other, 10)), "offset 0\r\n");
    await sendAll(other, data);
    await other.closeWrite();
    assert.equal(text(await readToEnd(other) as Uint8Array), "ok\r\n");
  } finally {
    other.close();
  }
});

Deno.test("a kept prefix is no upload: its number holds ERROR; it outlives a restart; the offset is what was kept", async () => {
  const dir = await tempDir();
  const source = await makeFile(await tempDir(), "restart.bin", 6 * MiB, 4);
  {
    await using server = await startServer("server", { dir, extra: ["--resumable"] });
    await cutOnce(server.port, source, 2 * MiB);
    await waitFor(async () => (await kept(dir)).length === 1, 5_000, "the kept prefix");
    assert.equal((await server.proc.stop("SIGTERM")).code, 0);
  }
  assert.deepEqual(await visibleEntries(dir), [RESUME_DIR, "1.file"]);
  assert.equal(await Deno.readTextFile(`${dir}/1.file`), "ERROR");
  const [key] = await kept(dir);
  const held = (await Deno.stat(`${dir}/${RESUME_DIR}/${key}`)).size;
  assert.ok(held > 0 && held <= 2 * MiB + 512, `kept ${held} bytes`);
  const metricsPort = freePort();
  await using again = await startServer("server", {
    dir,
    extra: ["--resumable", "--metrics-port", String(metricsPort)],
  });
  assert.doesNotMatch(again.proc.stderr, /accio-resume/, "start-up touched the kept prefixes");
  const resumed = await runClient(["--resume", "--named", "127.0.0.1", String(again.port), source]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stdout, new RegExp(`resumed at byte ${held}$`, "m"));
  assert.equal(await fileSha256(`${dir}/restart.bin`), await fileSha256(source));
  assert.deepEqual(await kept(dir), []);
  // Only what came over this connection was received: the kept prefix is not counted again.
  const scrape = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  assert.match(scrape, new RegExp(`^accio_received_bytes_total ${6 * MiB - held}$`, "m"), scrape);
});

Deno.test("a server stopped mid-upload and started again: the client's retries resume where it stopped", async () => {
  const dir = await tempDir();
  const source = await makeFile(await tempDir(), "stopped.bin", 8 * MiB, 6);
  let server = await startServer("server", { dir, extra: ["--resumable"] });
  const port = server.port;
  try {
    await using relay = await Relay.start(port, { holdAfter: [3 * MiB] });
    const client = spawnProgram("client", [
      "--resume",
      "--named",
      ...retryArgs(20, "0.3"),
      "127.0.0.1",
      String(relay.port),
      source,
    ]);
    try {
      await waitFor(
        async () => {
          const part = (await listDir(dir)).find((n) => n.endsWith(".part"));
          return part !== undefined && (await Deno.stat(`${dir}/${part}`)).size >= 3 * MiB - 512;
        },
        15_000,
        "the held upload's data on the server",
      );
      assert.equal((await server.proc.stop("SIGTERM")).code, 0);
      server = await startServer("server", { dir, port, extra: ["--resumable"] });
      const status = await client.wait(60_000);
      assert.equal(status.code, 0, client.stderr);
      assert.match(client.stderr, /attempt 1 failed: server refused the upload: server shut down/);
      assert.match(client.stdout, /resumed at byte \d+,/);
    } finally {
      await client[Symbol.asyncDispose]();
    }
  } finally {
    await server[Symbol.asyncDispose]();
  }
  assert.equal(await fileSha256(`${dir}/stopped.bin`), await fileSha256(source));
});

Deno.test("kept prefixes are bounded: the window removes them, and so do the count and byte limits", async () => {
  const sources = await tempDir();
  const a = await makeFile(sources, "a.bin", 4 * MiB, 1);
  const b = await makeFile(sources, "b.bin", 4 * MiB, 2);
  {
    await using server = await startServer("server", { extra: ["--resumable", "--resume-window", "1"] });
    await cutOnce(server.port, a, 1 * MiB);
    await waitFor(async () => (await kept(server.dir)).length === 1, 5_000, "the kept prefix");
    await waitFor(async () => (await kept(server.dir)).length === 0, 10_000, "the prefix to expire");
    const fresh = await runClient(["--resume", "--named", "127.0.0.1", String(server.port), a]);
    assert.equal(fresh.code, 0, fresh.stderr);
    assert.doesNotMatch(fresh.stdout, /resumed/, "an expired prefix was used");
  }
  {
    await using server = await startServer("server", { extra: ["--resumable", "--resume-max-count", "1"] });
    await cutOnce(server.port, a, 1 * MiB);
    await waitFor(async () => (await kept(server.dir)).length === 1, 5_000, "a's prefix");
    const [first] = await kept(server.dir);
    await cutOnce(server.port, b, 1 * MiB);
    await waitFor(async () => (await kept(server.dir)).some((k) => k !== first), 5_000, "b's prefix");
    assert.equal((await kept(server.dir)).length, 1, "more prefixes than --resume-max-count");
  }
  {
    await using server = await startServer("server", {
      extra: ["--resumable", "--resume-max-bytes", "512K"],
    });
    await cutOnce(server.port, a, 2 * MiB);
    await waitFor(async () => (await listDir(server.dir)).includes("1.file"), 5_000, "1.file");
    assert.deepEqual(await kept(server.dir), [], "a prefix larger than --resume-max-bytes was kept");
    assert.equal(await Deno.readTextFile(`${server.dir}/1.file`), "ERROR");
  }
});

Deno.test("an attempt that starts over without --resume replaces a kept prefix only if it got further", async () => {
  await using server = await startServer("server", { extra: ["--resumable"] });
  const source = await makeFile(await tempDir(), "longest.bin", 8 * MiB, 8);
  const prefixSize = async () => {
    const [key] = await kept(server.dir);
    return key === undefined ? 0 : (await Deno.stat(`${server.dir}/${RESUME_DIR}/${key}`)).size;
  };
  await cutOnce(server.port, source, 4 * MiB);
  await waitFor(async () => (await prefixSize()) > 0, 5_000, "the first prefix");
  const first = await prefixSize();
  for (const [after, expectBigger] of [[1 * MiB, false], [6 * MiB, true]] as const) {
    await using relay = await Relay.start(server.port, { cutAfter: [after] });
    const cut = await runClient(["--verify", "--named", "127.0.0.1", String(relay.port), source]);
    assert.equal(cut.code, 1, cut.stderr);
    const connections = (await listDir(server.dir)).filter((n) => /^\d+\.file$/.test(n)).length;
    await waitFor(async () => (await numberedAreErrors(server.dir)) === connections, 5_000, "the ERROR file");
    await delay(200); // the keeping, if any, follows the ERROR record
    if (expectBigger) {
      await waitFor(async () => (await prefixSize()) > first, 5_000, "the longer prefix");
    } else assert.equal(await prefixSize(), first, "a shorter attempt replaced the kept prefix");
  }
});
