/**
 * Store and forward through the real `server.ts` and the real client, against
 * a real S3 server (OpenStack Swift, tests/support/swift.ts; the tests print
 * SKIPPED and are ignored where it cannot be installed). Every object is read
 * back with GET and compared by SHA-256, independently of the code under test.
 *
 * @module
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { makeFile, tempDir } from "./support/files.ts";
import { Proc, runClient, taskArgs } from "./support/process.ts";
import { canUnshareMounts, inPrivateMounts } from "./support/system.ts";
import { delay, waitFor } from "./support/wait.ts";
import { freePort } from "./support/wire.ts";
import { ensureSwift, SwiftStore } from "./support/swift.ts";

const availability = await ensureSwift();
if (!availability.ok) console.log(`SKIPPED server forwarding tests against Swift: ${availability.why}`);

const MIB = 1024 * 1024;

interface Gateway {
  proc: Proc;
  port: number;
  dir: string;
  logFile: string;
}

function envOf(swift: SwiftStore, secret = swift.secretAccessKey): Record<string, string> {
  return { AWS_ACCESS_KEY_ID: swift.accessKeyId, AWS_SECRET_ACCESS_KEY: secret, AWS_REGION: swift.region };
}

/** Spawns `server.ts --forward s3://BUCKET/site ... PORT DIR` with the store's credentials in its environment. */
function spawnGateway(
  swift: SwiftStore,
  bucket: string,
  dir: string,
  logFile: string,
  { extra = [], wrap = [], secret }: { extra?: string[]; wrap?: string[]; secret?: string } = {},
): Gateway {
  const port = freePort();
  const args = [
    ...taskArgs("server"),
    ...["--forward", `s3://${bucket}/site`, "--s3-endpoint", swift.endpoint, "--instance", "gw1"],
    ...["--names", "--log", logFile, "--verbose", "--min-free", "0"],
    ...extra,
    String(port),
    dir.replace(/\/gw1$/, ""), // --instance gw1 stores in FILE-DIR/gw1: `dir`
  ];
  const command = [...wrap, Deno.execPath(), ...args];
  const proc = new Proc(command[0], command.slice(1), { env: envOf(swift, secret) });
  return { proc, port, dir, logFile };
}

/** A directory `<temp>/gw1`: where a gateway started with `--instance gw1` on `<temp>` stores. */
async function gatewayDir(): Promise<string> {
  const dir = `${await tempDir()}/gw1`;
  await Deno.mkdir(dir);
  return dir;
}

async function startGateway(...args: Parameters<typeof spawnGateway>): Promise<Gateway> {
  const gw = spawnGateway(...args);
  try {
    await waitFor(
      () => gw.proc.stderr.includes("listening on") || gw.proc.exited,
      20_000,
      "server to listen",
    );
    assert.ok(!gw.proc.exited, `server exited at start: ${gw.proc.stderr}`);
  } catch (error) {
    await gw.proc[Symbol.asyncDispose]();
    throw error;
  }
  return gw;
}

async function stopGateway(gw: Gateway, signal: Deno.Signal = "SIGTERM"): Promise<number> {
  if (!gw.proc.exited) gw.proc.child.kill(signal);
  const status = await gw.proc.wait(15_000);
  await gw.proc[Symbol.asyncDispose]();
  return status.code;
}

type LogLine = Record<string, unknown>;

async function logLines(logFile: string): Promise<LogLine[]> {
  const text = await Deno.readTextFile(logFile).catch(() => "");
  return text.split("\n").filter(Boolean).map((line) => JSON.parse(line));
}

/** A log line's `file` relative to FILE-DIR (the log gives the full path). */
const fileIn = (dir: string, line: LogLine) => String(line.file).replace(`${dir}/`, "");

const forwardLines = async (logFile: string) =>
  (await logLines(logFile)).filter((l) => l.event === "forward");

async function waitForwards(gw: Gateway, count: number): Promise<LogLine[]> {
  let lines: LogLine[] = [];
  await waitFor(
    async () => (lines = await forwardLines(gw.logFile)).length >= count,
    30_000,
    `${count} forwards`,
  );
  return lines;
}

async function storedSha256(swift: SwiftStore, bucket: string, key: string): Promise<string | undefined> {
  const response = await swift.client().fetch(`${swift.endpoint}/${bucket}/${key}`);
  if (response.status === 404) {
    await response.body?.cancel();
    return undefined;
  }
  assert.equal(response.status, 200, `GET ${key}`);
  const hash = createHash("sha256");
  for await (const chunk of response.body!) hash.update(chunk);
  return hash.digest("hex");
}

const sha256Of = async (path: string) => createHash("sha256").update(await Deno.readFile(path)).digest("hex");

async function upload(gw: Gateway, path: string, options: string[] = []): Promise<number> {
  const result = await runClient([...options, "127.0.0.1", String(gw.port), path]);
  return result.code;
}

async function forwardedAndErrorsKept(swift: SwiftStore): Promise<void> {
  await swift.createBucket("fw1");
  const dir = await gatewayDir();
  const src = await tempDir();
  const logFile = `${src}/uploads.log`;
  const files = [await makeFile(src, "a.bin", 1000, 1), await makeFile(src, "b.bin", 9 * MIB, 2)];
  const named = await makeFile(src, "named.bin", 5000, 3);
  const tooBig = await makeFile(src, "big.bin", 2 * MIB, 4);
  let gw = await startGateway(swift, "fw1", dir, logFile, { extra: ["--max-size", "10M"] });
  try {
    for (const file of files) assert.equal(await upload(gw, file), 0);
    assert.equal(await upload(gw, named, ["--named"]), 0);
    await waitForwards(gw, 3);
  } finally {
    await stopGateway(gw);
  }
  // The restart finds 1.file, 2.file and named.bin (number 3) done; an ERROR upload (over --max-size) is not forwarded.
  const metricsPort = freePort();
  gw = await startGateway(swift, "fw1", dir, logFile, {
    extra: ["--max-size", "1M", "--metrics-port", String(metricsPort)],
  });
  try {
    assert.doesNotMatch(gw.proc.stderr, /\.accio-forward/, "the forwarding state is not scratch");
    assert.notEqual(await upload(gw, tooBig), 0);
    await waitFor(() => Deno.stat(`${dir}/4.file`).then(() => true, () => false), 5_000, "4.file");
    assert.equal(await Deno.readTextFile(`${dir}/4.file`), "ERROR");
    assert.equal(await upload(gw, files[0]), 0); // 5.file (3 was the named upload: numbers survive the restart)
    const lines = await waitForwards(gw, 4);
    await delay(1_500); // a second forward would show up meanwhile
    const all = await forwardLines(logFile);
    assert.deepEqual(
      all.map((l) => fileIn(dir, l)).sort(),
      ["1.file", "2.file", "5.file", "named.bin"],
      "nothing twice",
    );
    assert.ok(lines.every((l) => l.outcome === "forwarded"), JSON.stringify(lines));
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(metrics, /^accio_uploads_total\{outcome="saved"\} 1$/m);
    assert.match(metrics, /^accio_forwards_total\{outcome="forwarded"\} 1$/m);
    assert.match(metrics, /^accio_forwards_total\{outcome="skipped"\} 1$/m);
    assert.match(metrics, /^accio_forward_bytes_total 1000$/m);
    assert.match(metrics, /^accio_forward_queue_depth 0$/m);
  } finally {
    assert.equal(await stopGateway(gw), 0);
  }
  const expected: [string, string][] = [
    ["1.file", files[0]],
    ["2.file", files[1]],
    ["5.file", files[0]],
    ["named.bin", named],
  ];
  for (const [name, local] of expected) {
    assert.equal(await storedSha256(swift, "fw1", `site/gw1/${name}`), await sha256Of(local), name);
  }
  assert.equal(await storedSha256(swift, "fw1", "site/gw1/3.file"), undefined, "ERROR not forwarded");
}

async function deleteKeepsNumbering(swift: SwiftStore): Promise<void> {
  await swift.createBucket("fw2");
  const dir = await gatewayDir();
  const src = await tempDir();
  const logFile = `${src}/uploads.log`;
  const files = [1, 2, 3].map((seed) => makeFile(src, `f${seed}.bin`, 3000 * seed, seed));
  let gw = await startGateway(swift, "fw2", dir, logFile, { extra: ["--forward-delete"] });
  try {
    for (const file of files) assert.equal(await upload(gw, await file), 0);
    await waitForwards(gw, 3);
    await waitFor(async () => (await listVisible(dir)).length === 0, 10_000, "local copies removed");
  } finally {
    assert.equal(await stopGateway(gw, "SIGQUIT"), 0, "SIGQUIT drains, stops the forwarder, exits 0");
  }
  // Every local copy is gone; the restart must still continue after 3.
  gw = await startGateway(swift, "fw2", dir, logFile, { extra: ["--forward-delete"] });
  try {
    assert.match(gw.proc.stderr, /from 4\.file/);
    assert.equal(await upload(gw, await files[0]), 0);
    const lines = await waitForwards(gw, 4);
    assert.deepEqual(lines.map((l) => [fileIn(dir, l), l.outcome]), [
      ["1.file", "forwarded"],
      ["2.file", "forwarded"],
      ["3.file", "forwarded"],
      ["4.file", "forwarded"],
    ]);
  } finally {
    await stopGateway(gw);
  }
  for (const [n, file] of [[1, files[0]], [2, files[1]], [3, files[2]], [4, files[0]]] as const) {
    assert.equal(await storedSha256(swift, "fw2", `site/gw1/${n}.file`), await sha256Of(await file));
  }
}

async function listVisible(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) if (!entry.name.startsWith(".")) names.push(entry.name);
  return names;
}

async function wrongCredentials(swift: SwiftStore): Promise<void> {
  await swift.createBucket("fw3");
  const dir = await gatewayDir();
  await Deno.writeTextFile(`${dir}/1.file`, "kept");
  const gw = spawnGateway(swift, "fw3", dir, `${dir}/../fw3.log`, {
    extra: ["--forward-delete"],
    secret: "wrong-secret",
  });
  const status = await gw.proc.wait(20_000);
  await gw.proc[Symbol.asyncDispose]();
  assert.equal(status.code, 1, gw.proc.stderr);
  assert.match(gw.proc.stderr, /ERROR: .*(SignatureDoesNotMatch|InvalidAccessKeyId|AccessDenied)/);
  assert.equal(await Deno.readTextFile(`${dir}/1.file`), "kept", "nothing deleted");
}

async function highWaterMark(swift: SwiftStore): Promise<void> {
  await swift.createBucket("fw4");
  const dir = await gatewayDir();
  const src = await tempDir();
  const logFile = `${src}/uploads.log`;
  const fill = await makeFile(src, "fill.bin", 5 * MIB, 5);
  // An 8 MiB tmpfs only the server sees, refusing below 4 MiB free: the first 5 MiB upload crosses the mark.
  const wrap = inPrivateMounts(`mount -t tmpfs -o size=8m accio-hwm '${dir}'`);
  const gw = await startGateway(swift, "fw4", dir, logFile, { wrap, extra: ["--min-free", "4M"] });
  try {
    assert.equal(await upload(gw, fill), 0);
    await waitForwards(gw, 1); // forwarded, but kept: the disk stays nearly full
    await delay(1_200); // the free space is read at most once a second
    const refused = await runClient(["127.0.0.1", String(gw.port), fill]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /ERROR:/);
    await waitFor(() => gw.proc.stderr.includes("disk nearly full"), 5_000, "the refusal logged");
    const uploads = (await logLines(logFile)).filter((l) => l.event === undefined);
    assert.deepEqual(uploads.map((l) => fileIn(dir, l)), ["1.file"], "the refused client got no number");
  } finally {
    await stopGateway(gw);
  }
}

Deno.test({
  name: "server --forward against Swift: forwarded by the real server and read back",
  ignore: !availability.ok,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using swift = await SwiftStore.start();
    await t.step(
      "uploads forwarded and named, ERROR kept back, restart forwards nothing twice",
      () => forwardedAndErrorsKept(swift),
    );
    await t.step(
      "--forward-delete removes copies once verified; a restart reuses no number",
      () => deleteKeepsNumbering(swift),
    );
    await t.step("wrong credentials: exit 1 with ERROR:, nothing deleted", () => wrongCredentials(swift));
    await t.step({
      name: "disk high-water mark: a new client is refused before accio, with no number",
      ignore: !(await canUnshareMounts()),
      fn: () => highWaterMark(swift),
    });
  },
});

Deno.test("server: bad forwarding flags exit 2 with one ERROR: line", async () => {
  const cases: [string[], RegExp][] = [
    [["--forward", "s3://bkt/p"], /--s3-endpoint/],
    [["--forward", "http://bkt/p", "--s3-endpoint", "http://127.0.0.1:9"], /ERROR:/],
    [["--forward-delete"], /needs --forward/],
    [["--forward", "s3://bkt/p", "--s3-endpoint", "ftp://x"], /ERROR:/],
  ];
  const dir = await gatewayDir();
  for (const [flags, message] of cases) {
    const proc = new Proc(Deno.execPath(), [...taskArgs("server"), ...flags, String(freePort()), dir], {
      env: { AWS_ACCESS_KEY_ID: "k", AWS_SECRET_ACCESS_KEY: "s" },
    });
    const status = await proc.wait(15_000);
    await proc[Symbol.asyncDispose]();
    assert.equal(status.code, 2, `${flags.join(" ")}: ${proc.stderr}`);
    assert.match(proc.stderr, message);
  }
  const proc = new Proc(Deno.execPath(), [
    ...taskArgs("server"),
    ...["--forward", "s3://bkt/p", "--s3-endpoint", "http://127.0.0.1:9", String(freePort()), dir],
  ], { env: { AWS_ACCESS_KEY_ID: "", AWS_SECRET_ACCESS_KEY: "" } });
  const status = await proc.wait(15_000);
  await proc[Symbol.asyncDispose]();
  assert.equal(status.code, 2, proc.stderr);
  assert.match(proc.stderr, /ERROR: .*AWS_ACCESS_KEY_ID/);
});

Deno.test("server --forward: an unreachable store at start only waits; uploads are kept; SIGTERM exits 0 at once", async () => {
  const dir = await gatewayDir();
  const src = await tempDir();
  const port = freePort();
  const proc = new Proc(Deno.execPath(), [
    ...taskArgs("server"),
    ...["--forward", "s3://bkt/p", "--s3-endpoint", `http://127.0.0.1:${freePort()}`, "--instance", "gw1"],
    ...["--min-free", "0", String(port), dir.replace(/\/gw1$/, "")],
  ], { env: { AWS_ACCESS_KEY_ID: "k", AWS_SECRET_ACCESS_KEY: "s" } });
  try {
    await waitFor(() => proc.stderr.includes("listening on") || proc.exited, 20_000, "server to listen");
    const result = await runClient(["127.0.0.1", String(port), await makeFile(src, "a.bin", 4096, 7)]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal((await Deno.stat(`${dir}/1.file`)).size, 4096);
    await waitFor(() => proc.stderr.includes("uploads stay queued"), 10_000, "the store-down notice");
    assert.ok(!proc.exited, proc.stderr);
    const started = Date.now();
    proc.child.kill("SIGTERM");
    const status = await proc.wait(10_000);
    assert.equal(status.code, 0, proc.stderr);
    assert.ok(Date.now() - started < 7_000, "the stop is bounded");
    assert.equal((await Deno.stat(`${dir}/1.file`)).size, 4096, "kept for the next start");
  } finally {
    await proc[Symbol.asyncDispose]();
  }
});
