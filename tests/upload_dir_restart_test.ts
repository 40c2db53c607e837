/**
 * The upload directory across kills and restarts (issue 9 review): a kill -9
 * at any instant of the start-up repair loses no number, a stop signal during
 * the repair exits 0, and numbers used by named uploads are never handed out
 * again after a restart.
 */
import assert from "node:assert/strict";
import { bytes } from "./support/encoding.ts";
import { contentFile, listDir, tempDir } from "./support/files.ts";
import { runClient, spawnProgram, startServer } from "./support/process.ts";
import { rawUpload } from "./support/raw_upload.ts";
import { delay, waitFor } from "./support/wait.ts";
import { freePort } from "./support/wire.ts";

const PARTS = 3000;

/** `count` leftover temporary files, as a killed server leaves them. */
async function leaveParts(dir: string, count: number): Promise<void> {
  for (let n = 1; n <= count; n++) await Deno.writeTextFile(`${dir}/.${n}.file.part`, "partial");
}

/** The numbers 1..count that have neither N.file nor .N.file.part. */
async function lostNumbers(dir: string, count: number): Promise<number[]> {
  const names = new Set(await listDir(dir));
  const lost = [];
  for (let n = 1; n <= count; n++) if (!names.has(`${n}.file`) && !names.has(`.${n}.file.part`)) lost.push(n);
  return lost;
}

/** Starts a server on `dir` and waits until its repair has begun (a .part is gone). */
async function startRepairing(dir: string, remaining: number) {
  const proc = spawnProgram("server", [String(freePort()), dir]);
  await waitFor(
    async () => proc.exited || (await listDir(dir)).filter((n) => n.endsWith(".part")).length < remaining,
    15_000,
    "the repair to begin",
  );
  return proc;
}

Deno.test("repair: kill -9 at random moments of the repair loses no number; the next start repairs the rest", async () => {
  const dir = await tempDir();
  await leaveParts(dir, PARTS);
  for (let round = 0; round < 6; round++) {
    const remaining = (await listDir(dir)).filter((n) => n.endsWith(".part")).length;
    if (remaining === 0) break;
    const proc = await startRepairing(dir, remaining);
    await delay(Math.random() * 150);
    await proc.stop("SIGKILL");
    assert.deepEqual(await lostNumbers(dir, PARTS), [], `round ${round}: numbers with no file and no .part`);
  }
  {
    await using server = await startServer("server", { dir });
    await rawUpload(server.port, bytes("after"));
  }
  const names = await listDir(dir);
  for (let n = 1; n <= PARTS; n++) assert.ok(names.includes(`${n}.file`), `${n}.file missing`);
  assert.equal(names.length, PARTS + 1, `leftovers: ${names.filter((n) => !/^\d+\.file$/.test(n))}`);
  assert.equal(await Deno.readTextFile(`${dir}/1.file`), "ERROR");
  assert.equal(await Deno.readTextFile(`${dir}/${PARTS + 1}.file`), "after");
});

for (const signal of ["SIGTERM", "SIGINT", "SIGQUIT"] as const) {
  Deno.test(`repair: ${signal} during the start-up repair exits 0, and no number is lost`, async () => {
    const dir = await tempDir();
    await leaveParts(dir, PARTS);
    const proc = await startRepairing(dir, PARTS);
    const status = await proc.stop(signal);
    assert.equal(status.code, 0, `exit ${status.code}; stderr:\n${proc.stderr}`);
    assert.deepEqual(await lostNumbers(dir, PARTS), []);
  });
}

Deno.test("numbering: a named upload's number is not handed out again after a restart", async () => {
  const dir = await tempDir();
  const source = await contentFile("named");
  {
    await using server = await startServer("server", { dir, extra: ["--names"] });
    const named = await runClient(["--name", "a/one.txt", "127.0.0.1", String(server.port), source]);
    assert.equal(named.code, 0, named.stderr);
  }
  {
    await using server = await startServer("server", { dir, extra: ["--names"] });
    await rawUpload(server.port, bytes("plain"));
    await waitFor(async () => (await listDir(dir)).includes("2.file"), 5_000, "2.file");
  }
  assert.equal(await Deno.readTextFile(`${dir}/a/one.txt`), "named");
  assert.equal(await Deno.readTextFile(`${dir}/2.file`), "plain");
  assert.ok(!(await listDir(dir)).includes("1.file"), "number 1 was handed out twice");
});

Deno.test("numbering: an unreadable record of used numbers stops the start with one ERROR: line", async () => {
  const dir = await tempDir();
  await Deno.writeTextFile(`${dir}/.accio.numbers`, "not a number\n");
  const proc = spawnProgram("server", [String(freePort()), dir]);
  const status = await proc.wait(15_000);
  assert.equal(status.code, 1, proc.stderr);
  assert.match(proc.stderr, /ERROR: .*\.accio\.numbers/);
  assert.equal(await Deno.readTextFile(`${dir}/.accio.numbers`), "not a number\n", "the record was changed");
});
