/**
 * `server --workers N`: many uploads over several workers on one port, one
 * gap-free numbering, restart, signals with workers busy, the global
 * connection limit, the metrics totals, whole log lines, and bad values.
 */
import assert from "node:assert/strict";
import { SharedNumbers } from "../lib/shared_numbers.ts";
import { SharedSlots } from "../lib/shared_slots.ts";
import { parseWorkersOption } from "../lib/worker_pool.ts";
import { bytes, text } from "./support/encoding.ts";
import { listDir, sha256, tempDir } from "./support/files.ts";
import { spawnProgram, startServer } from "./support/process.ts";
import { rawUpload } from "./support/raw_upload.ts";
import { delay, waitFor } from "./support/wait.ts";
import { connect, freePort, readToEnd, recvExactly, sendAll } from "./support/wire.ts";

/** The bytes of upload `i`: distinct per upload, a few hundred bytes to a few KiB. */
function payload(i: number): Uint8Array {
  return bytes(`upload ${i} `.repeat(1 + (i % 97) * 4));
}

/** Runs `task(i)` for i in 0..count-1, at most `width` at a time. */
async function pool(count: number, width: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < count) await task(next++);
  }));
}

/** The upload log's entries; every line must be one whole JSON object. */
async function logEntries(path: string): Promise<Record<string, unknown>[]> {
  const lines = (await Deno.readTextFile(path)).split("\n");
  assert.deepEqual(lines.pop(), "");
  return lines.map((line) => JSON.parse(line));
}

Deno.test("shared numbers: one counter over copies, given-back numbers first, unused ones listed", () => {
  const numbers = new SharedNumbers();
  numbers.observe(41);
  const copy = SharedNumbers.from(numbers.buffer);
  assert.deepEqual([copy.next(), numbers.next(), copy.next()], [42, 43, 44]);
  assert(numbers.release(43));
  assert.deepEqual(copy.next(), 43);
  copy.release(42);
  copy.release(44);
  assert.deepEqual(numbers.highest, 44);
  assert.deepEqual(numbers.unused(), [42]); // 44 is the top: a restart continues after the highest file
  numbers.observe(10);
  assert.deepEqual(numbers.highest, 44);
});

Deno.test("shared slots: the limit holds over copies, a give frees one", async () => {
  const slots = new SharedSlots(2);
  const copy = SharedSlots.from(slots.buffer, 2);
  assert(slots.take() && copy.take());
  assert(!slots.take());
  assert.deepEqual(copy.inService, 2);
  const freed = slots.freed(5_000);
  copy.give();
  await freed;
  assert(slots.take());
});

Deno.test("--workers: auto, bounds and bad values", async () => {
  assert.deepEqual(parseWorkersOption(undefined), 1);
  assert.deepEqual(parseWorkersOption("auto", 8), 8);
  assert.deepEqual(parseWorkersOption("auto", 1000), 256);
  for (const bad of ["0", "-1", "abc", "257", "1.5"]) {
    const proc = spawnProgram("server", ["--workers", bad, String(freePort()), await tempDir()]);
    const status = await proc.wait(20_000);
    assert(status.code !== 0, bad);
    assert.match(proc.stderr, /^ERROR: invalid --workers/m);
  }
  const proc = spawnProgram("server", ["--workers", "2", "--resumable", String(freePort()), await tempDir()]);
  assert.deepEqual((await proc.wait(20_000)).code, 2);
  assert.match(proc.stderr, /^ERROR: --resumable cannot be used with --workers 2/m);
});

Deno.test("--workers 4: 2000 uploads, every number once, every file exact, several workers, totals", async () => {
  const dir = await tempDir();
  const log = `${await tempDir()}/uploads.jsonl`;
  const metricsPort = freePort();
  await using server = await startServer("server", {
    dir,
    extra: ["--workers", "4", "--verbose", "--log", log, "--metrics-port", String(metricsPort)],
  });
  const count = 2000;
  await pool(count, 50, (i) => rawUpload(server.port, payload(i)));
  await waitFor(async () => (await listDir(dir)).length === count, 15_000, "every file");
  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  assert.deepEqual((await server.proc.stop("SIGTERM")).code, 0);
  assert.deepEqual(await listDir(dir), Array.from({ length: count }, (_, i) => `${i + 1}.file`));
  const expected = new Map(Array.from({ length: count }, (_, i) => [sha256(payload(i)), i]));
  const seen = new Set<number>();
  for (let n = 1; n <= count; n++) {
    const i = expected.get(sha256(await Deno.readFile(`${dir}/${n}.file`)));
    assert(i !== undefined && !seen.has(i), `${n}.file is not one of the uploads, or a second copy`);
    seen.add(i!);
  }
  const entries = await logEntries(log);
  assert.deepEqual(entries.length, count);
  const workers = new Set(entries.map((e) => e.worker));
  assert(workers.size > 1, `served by ${[...workers]}`);
  assert.match(metrics, /^accio_uploads_total\{outcome="saved"\} 2000$/m);
  assert.match(metrics, /^accio_worker_uploads_total\{worker="4"\} \d+$/m);
  // stderr: every line whole (timestamp, "server:", one upload or notice).
  const lines = server.proc.stderr.trimEnd().split("\n");
  for (const line of lines) assert.match(line, /^\d{4}-\d\d-\d\dT[\d:.]+Z server: \S/);
  assert.deepEqual(lines.filter((l) => / saved \d+ bytes$/.test(l)).length, count);
});

Deno.test("--workers 2: a restart continues after the highest number", async () => {
  const dir = await tempDir();
  for (const round of [0, 1]) {
    await using server = await startServer("server", { dir, extra: ["--workers", "2"] });
    await pool(20, 5, (i) => rawUpload(server.port, payload(round * 100 + i)));
    assert.deepEqual((await server.proc.stop("SIGTERM")).code, 0);
  }
  assert.deepEqual(await listDir(dir), Array.from({ length: 40 }, (_, i) => `${i + 1}.file`));
  // Five at a time over two workers: which upload got which number within a round is a race, the rounds are not.
  const round = async (first: number) =>
    (await Promise.all(Array.from({ length: 20 }, (_, i) => Deno.readTextFile(`${dir}/${first + i}.file`))))
      .sort();
  const sent = (base: number) => Array.from({ length: 20 }, (_, i) => text(payload(base + i))).sort();
  assert.deepEqual(await round(1), sent(0));
  assert.deepEqual(await round(21), sent(100));
});

Deno.test("--workers 2: a second server on the same port is refused, as without workers (no silent sharing)", async () => {
  await using first = await startServer("server", { extra: ["--workers", "2"] });
  for (const workers of ["2", "1"]) {
    const second = spawnProgram("server", ["--workers", workers, String(first.port), await tempDir()]);
    const status = await second.wait(20_000);
    assert.deepEqual(status.code, 1, `--workers ${workers}: the second server started`);
    assert.match(second.stderr, /^ERROR: cannot listen on port \d+: the port is already in use/m);
  }
  // The first one still holds every connection.
  await pool(10, 5, (i) => rawUpload(first.port, payload(i)));
  assert.deepEqual((await listDir(first.dir)).length, 10);
});

/** Starts `count` uploads that send their first bytes and then wait; returns their connections. */
async function busyUploads(port: number, count: number): Promise<Deno.TcpConn[]> {
  return await Promise.all(Array.from({ length: count }, async () => {
    const conn = await connect(port);
    assert.deepEqual(text(await recvExactly(conn, 7)), "accio\r\n");
    await sendAll(conn, bytes("first half "));
    return conn;
  }));
}

Deno.test("--workers 3: SIGQUIT drains busy workers (uploads complete), SIGTERM ends them as ERROR", async () => {
  for (const signal of ["SIGQUIT", "SIGTERM"] as const) {
    await using server = await startServer("server", { extra: ["--workers", "3"] });
    const conns = await busyUploads(server.port, 6);
    await waitFor(async () => (await listDir(server.dir)).length === 6, 10_000, "six uploads in flight");
    Deno.kill(server.proc.pid, signal);
    await delay(300);
    if (signal === "SIGQUIT") {
      const refused = await Deno.connect({ port: server.port }).then((c) => (c.close(), false), () => true);
      assert(refused, "no new connection after SIGQUIT");
    }
    await Promise.all(conns.map(async (conn) => {
      await sendAll(conn, bytes("second half")).catch(() => {});
      await conn.closeWrite().catch(() => {});
      await readToEnd(conn).catch(() => {});
      conn.close();
    }));
    assert.deepEqual((await server.proc.wait(15_000)).code, 0);
    const files = (await listDir(server.dir)).filter((n) => n.endsWith(".file"));
    assert.deepEqual(files.length, 6);
    for (const name of files) {
      const content = text(await Deno.readFile(`${server.dir}/${name}`));
      assert.deepEqual(content, signal === "SIGQUIT" ? "first half second half" : "ERROR", name);
    }
  }
});

Deno.test("--workers 4 --max-connections 2: the limit is for the whole server", async () => {
  await using server = await startServer("server", { extra: ["--workers", "4", "--max-connections", "2"] });
  const held = await busyUploads(server.port, 2);
  // A third connection is accepted by the kernel but gets no greeting while two are served.
  const third = await connect(server.port);
  const early = await Promise.race([recvExactly(third, 7).then(() => true, () => true), delay(1_000)]);
  assert.deepEqual(early, undefined, "a third upload was served beyond --max-connections 2");
  held[0].close(); // a reset: that upload ends as ERROR and frees its slot
  assert.deepEqual(text(await recvExactly(third, 7)), "accio\r\n");
  third.close();
  held[1].close();
  assert.deepEqual((await server.proc.stop("SIGTERM")).code, 0);
});
