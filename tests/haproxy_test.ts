/**
 * Three real Accio servers (`server --proxy-protocol`) behind one real HAProxy
 * on loopback (mode tcp, balance leastconn, send-proxy-v2, check; its timeouts
 * above the servers' idle timeout), driven by the real client:
 *
 * - uploads are spread over the three, and the health checks leave no files;
 * - each server logs the real client's address (127.0.0.1 and the client's
 *   own port, as HAProxy logs it), not HAProxy's;
 * - one server killed (SIGKILL) while clients are still sending to it: HAProxy
 *   marks it DOWN, new uploads land on the other two, its in-flight uploads
 *   end as ERROR (repaired at its restart) and their clients exit non-zero.
 *
 * The in-flight clients upload from a FIFO the test feeds slowly, so they are
 * still sending when the server dies: a client that has already half-closed
 * can see HAProxy turn the gateway's reset into a clean close (see
 * tests/haproxy_smoke_test.ts); only `--verify` closes that gap.
 */
import assert from "node:assert/strict";
import { contentFile, listDir, tempDir } from "./support/files.ts";
import { type Proc, runClient, type RunningServer, spawnProgram, startServer } from "./support/process.ts";
import { waitFor } from "./support/wait.ts";
import { freePort } from "./support/wire.ts";
import { ensureHaproxy, skipWithoutHaproxy, startHaproxy } from "./support/haproxy.ts";

const ignore = skipWithoutHaproxy(await ensureHaproxy(), "tests/haproxy_test.ts");
const IDLE_TIMEOUT_MS = 3_000;

/** A gateway: `server --proxy-protocol --verbose --timeout 3` on its own port and directory. */
function gateway(port: number, dir: string): Promise<RunningServer> {
  return startServer("server", {
    port,
    dir,
    extra: ["--proxy-protocol", "--verbose", "--timeout", String(IDLE_TIMEOUT_MS / 1000)],
  });
}

/** The visible files of a gateway's directory, with their contents. */
async function stored(dir: string): Promise<Map<string, string>> {
  const result = new Map<string, string>();
  for (const name of await listDir(dir)) {
    if (!name.startsWith(".")) result.set(name, await Deno.readTextFile(`${dir}/${name}`));
  }
  return result;
}

/** A client uploading from a FIFO that the test writes one chunk into every 300 ms: it stays sending. */
class SlowClient {
  readonly proc: Proc;
  readonly letter: string;
  written = 0;
  readonly #fifo: Promise<Deno.FsFile>;
  readonly #timer: ReturnType<typeof setInterval>;
  #writing = Promise.resolve();

  constructor(port: number, fifoPath: string, letter: string) {
    this.letter = letter;
    new Deno.Command("mkfifo", { args: [fifoPath] }).outputSync();
    this.proc = spawnProgram("client", ["127.0.0.1", String(port), fifoPath]);
    this.#fifo = Deno.open(fifoPath, { write: true });
    const chunk = new TextEncoder().encode(letter.repeat(4096));
    const feed = () => {
      this.#writing = this.#writing.then(async () => {
        const fifo = await this.#fifo;
        await fifo.write(chunk).then((n) => this.written += n);
      }).catch(() => clearInterval(this.#timer)); // the client is gone: nothing reads the FIFO
    };
    feed();
    this.#timer = setInterval(feed, 300);
  }

  /** Stops feeding and closes the FIFO: the client sees the end of its file. */
  async finish(): Promise<number> {
    clearInterval(this.#timer);
    await this.#writing;
    (await this.#fifo).close();
    return (await this.proc.wait(15_000)).code;
  }
}

Deno.test({
  name: "three gateways behind HAProxy: spread, silent checks, client addresses, one killed mid-upload",
  ignore,
  fn: async () => {
    const ports = [freePort(), freePort(), freePort()];
    const dirs = [await tempDir(), await tempDir(), await tempDir()];
    const gateways = await Promise.all(ports.map((port, i) => gateway(port, dirs[i])));
    const extra: RunningServer[] = [];
    try {
      await using haproxy = await startHaproxy({
        backends: ports,
        idleTimeoutMs: IDLE_TIMEOUT_MS,
        checkIntervalMs: 250,
      });
      await haproxy.waitForServers("UP");
      await spreadAndAddresses(haproxy.port, haproxy.log, gateways, dirs);
      extra.push(...await killOne(haproxy, gateways, dirs, ports));
    } finally {
      for (const server of [...gateways, ...extra]) await server[Symbol.asyncDispose]();
    }
  },
});

/** Nine concurrent uploads: each gateway gets some, each logs its clients' own addresses, checks leave nothing. */
async function spreadAndAddresses(
  port: number,
  haproxyLog: () => string,
  gateways: RunningServer[],
  dirs: string[],
): Promise<void> {
  const contents = Array.from({ length: 9 }, (_, i) => `upload ${i} through the balancer\n`);
  const files = await Promise.all(contents.map((c, i) => contentFile(c, `u${i}.txt`)));
  const results = await Promise.all(files.map((f) => runClient(["127.0.0.1", String(port), f])));
  assert.deepEqual(results.map((r) => r.code), contents.map(() => 0), results.map((r) => r.stderr).join(""));
  await new Promise((resolve) => setTimeout(resolve, 1_000)); // several health checks per gateway meanwhile
  const all = await Promise.all(dirs.map(stored));
  for (const [i, files] of all.entries()) {
    assert.ok(files.size >= 1, `gateway ${i + 1} got an upload: ${[...files.keys()]}`);
    const names = [...files.keys()].sort((a, b) => parseInt(a) - parseInt(b));
    assert.deepEqual(names, names.map((_, n) => `${n + 1}.file`), "numbered 1..k: the checks used no number");
  }
  assert.deepEqual(all.flatMap((files) => [...files.values()]).sort(), [...contents].sort());
  for (const [i, server] of gateways.entries()) {
    assert.doesNotMatch(
      server.proc.stderr,
      /refused|accept failed|ERROR/,
      `gateway ${i + 1}: checks are not logged`,
    );
    const peers = [...server.proc.stderr.matchAll(/\d+\.file from (127\.0\.0\.1:\d+): saved/g)].map((m) =>
      m[1]
    );
    assert.equal(peers.length, all[i].size);
    // HAProxy's tcplog line for each: the client's own address, and this gateway as the server.
    for (const peer of peers) {
      assert.match(haproxyLog(), new RegExp(`${peer} \\[.*accio_gateways/g${i + 1} `));
    }
  }
}

/** Six slow clients, gateway 2 killed under its two, six new uploads; returns gateway 2 restarted. */
async function killOne(
  haproxy: Awaited<ReturnType<typeof startHaproxy>>,
  gateways: RunningServer[],
  dirs: string[],
  ports: number[],
): Promise<RunningServer[]> {
  const fifos = await tempDir();
  const slow = "ABCDEF".split("").map((letter) => new SlowClient(haproxy.port, `${fifos}/${letter}`, letter));
  const partsIn = async (dir: string) => (await listDir(dir)).filter((n) => n.endsWith(".part")).length;
  // All six numbered (leastconn: two on each), so what gateway 2 has in flight is known before the kill.
  const parts = async () => (await Promise.all(dirs.map(partsIn))).reduce((a, b) => a + b);
  await waitFor(async () => (await parts()) === slow.length, 15_000, "the six slow uploads to be numbered");
  const inFlight = await partsIn(dirs[1]);
  assert.ok(inFlight >= 1, "gateway 2 has uploads in flight");
  await gateways[1].proc.stop("SIGKILL");
  await haproxy.waitForServers("DOWN", ["g2"]);
  const after = Array.from({ length: 6 }, (_, i) => `after the kill ${i}\n`);
  const files = await Promise.all(after.map((c, i) => contentFile(c, `a${i}.txt`)));
  const results = await Promise.all(files.map((f) => runClient(["127.0.0.1", String(haproxy.port), f])));
  assert.deepEqual(results.map((r) => r.code), after.map(() => 0), results.map((r) => r.stderr).join(""));
  const codes = await Promise.all(slow.map((c) => c.finish()));
  const restarted = await gateway(ports[1], dirs[1]);
  assert.match(restarted.proc.stderr, /recorded ERROR for uploads cut off by an earlier run/);
  const [one, two, three] = await Promise.all(dirs.map(stored));
  const errors = [...two.values()].filter((c) => c === "ERROR").length;
  assert.equal(errors, inFlight, "each upload in flight on the killed gateway is an ERROR file there");
  assert.equal(codes.filter((c) => c !== 0).length, inFlight, `those clients exit non-zero: ${codes}`);
  for (const content of after) {
    assert.ok(
      [...one.values(), ...three.values()].includes(content),
      `"${content.trim()}" on gateway 1 or 3`,
    );
  }
  for (const [i, client] of slow.entries()) {
    if (codes[i] !== 0) continue;
    const whole = client.letter.repeat(client.written);
    assert.ok(
      [...one.values(), ...three.values()].includes(whole),
      `slow upload ${client.letter} is complete`,
    );
  }
  return [restarted];
}
