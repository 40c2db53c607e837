/**
 * Workload 6 (only with `--only w6`): one file over a link that drops. A
 * relay on loopback (lib/flaky_link.ts) resets the connection five times
 * at random byte counts (the same five in a run for every program); Accio's
 * client (`--resume --named --retries 10`) against `server --resumable`, and
 * rsync `--partial` against an rsync daemon (Debian's package), retried
 * after each cut with the same back-off. Figures: the bytes the client sent
 * through the relay beyond the file's own (what the cuts cost: resent data,
 * rsync's block checksums), and the time from start to the file stored; the
 * stored file is checked by SHA-256.
 *
 * @module
 */
import { backoffMs } from "../lib/retry.ts";
import { Relay } from "../lib/flaky_link.ts";
import { fileSha256 } from "../lib/file_hash.ts";
import { freshDir, writeRandomFile } from "./files.ts";
import { freePorts, untilListening } from "./net.ts";
import { accio, Child, onPath, shell } from "./programs.ts";
import { note } from "./report.ts";
import type { Bench } from "./workloads.ts";

const MiB = 1024 * 1024;
const CUTS = 5;
const RETRIES = 10;
const RETRY_DELAY_MS = 50;
const START_MS = 15_000;

let source: { path: string; sha256: string } | undefined;

async function flakySource(bench: Bench): Promise<{ path: string; sha256: string }> {
  if (source?.path.startsWith(bench.base)) return source;
  const path = `${bench.base}/flaky.bin`;
  source = { path, sha256: await writeRandomFile(path, bench.config.flakyMiB * MiB) };
  return source;
}

/** Five cut points for run `run`, the same for every program: a seeded PRNG (mulberry32). */
function cutsFor(run: number, bytes: number): number[] {
  let a = (run + 1) * 0x9e3779b9 >>> 0;
  const random = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  // Each connection is cut within the next fifth of the file: the transfer makes progress every time.
  const span = Math.floor(bytes / CUTS);
  return Array.from({ length: CUTS }, () => 64 * 1024 + Math.floor(random() * (span - 64 * 1024)));
}

/** Installs rsync from Debian's packages where it is missing and we can; whether it is there. */
export async function ensureRsync(): Promise<boolean> {
  if (!(await onPath("rsync")) && Deno.uid() === 0 && await onPath("apt-get")) {
    console.error("bench: installing rsync (Debian package) ...");
    const install = "timeout 300 apt-get install -y -qq rsync";
    await shell(
      `export DEBIAN_FRONTEND=noninteractive; ${install} || (timeout 300 apt-get update -qq && ${install})`,
      "apt-get",
    ).wait(660_000).catch(() => {});
  }
  const there = await onPath("rsync");
  if (!there) console.error("bench: rsync missing: install rsync; its workload-6 figures skipped");
  return there;
}

/** Runs workload 6 for `program` (`accio` or `rsync`) in run `run`, and notes its two figures. */
export async function flakyUpload(bench: Bench, program: string, run: number): Promise<void> {
  const file = await flakySource(bench);
  const bytes = bench.config.flakyMiB * MiB;
  const dir = await freshDir(bench.base, `w6-${program}`);
  const cuts = cutsFor(run, bytes);
  const { ms, sent, stored } = program === "accio"
    ? await viaAccio(file.path, dir, cuts)
    : await viaRsync(file.path, dir, cuts);
  if ((await fileSha256(stored)) !== file.sha256) throw new Error(`w6 ${program}: the stored file differs`);
  note(bench.results, "w6", program, (sent - bytes) / MiB, run); // what the cuts cost: bytes sent again
  note(bench.results, "w6t", program, ms / 1000, run);
}

interface Transfer {
  ms: number;
  sent: number;
  stored: string;
}

async function viaAccio(path: string, dir: string, cuts: number[]): Promise<Transfer> {
  const [port] = freePorts(1);
  await using server = accio("server", ["--resumable", String(port), dir]);
  await server.untilStderr(/listening on/, START_MS);
  await using relay = await Relay.start(port, { cutAfter: cuts });
  const args = [
    "--resume",
    "--named",
    "--retries",
    String(RETRIES),
    "--retry-delay",
    String(RETRY_DELAY_MS / 1000),
  ];
  const started = performance.now();
  await using client = accio("client", [...args, "127.0.0.1", String(relay.port), path]);
  const status = await client.wait(600_000);
  const ms = performance.now() - started;
  if (status.code !== 0) throw new Error(`w6 accio client exited with ${status.code}: ${client.stderr}`);
  if (relay.cuts !== CUTS) throw new Error(`w6 accio: ${relay.cuts} cuts instead of ${CUTS}`);
  await server.stop("SIGTERM");
  return { ms, sent: relay.clientBytes, stored: `${dir}/${path.split("/").at(-1)}` };
}

async function viaRsync(path: string, dir: string, cuts: number[]): Promise<Transfer> {
  const [port] = freePorts(1);
  const conf = `${dir}/../w6-rsyncd.conf`;
  await Deno.mkdir(`${dir}/up`);
  // uid/gid: as root the daemon would otherwise write as nobody, and fail.
  await Deno.writeTextFile(
    conf,
    `use chroot = no\nuid = ${Deno.uid()}\ngid = ${Deno.gid()}\n[up]\n  path = ${dir}/up\n  read only = no\n`,
  );
  const daemon = ["--daemon", "--no-detach", `--config=${conf}`, `--port=${port}`, "--address=127.0.0.1"];
  await using server = new Child("rsync", daemon, "rsync --daemon");
  await untilListening([port], [server], START_MS, "rsync --daemon");
  await using relay = await Relay.start(port, { cutAfter: cuts });
  const target = `rsync://127.0.0.1:${relay.port}/up/`;
  const started = performance.now();
  for (let attempt = 0;; attempt++) {
    await using client = new Child("rsync", ["--partial", "--timeout=10", path, target], "rsync");
    const status = await client.wait(600_000);
    if (status.code === 0) break;
    if (attempt >= RETRIES) throw new Error(`w6 rsync failed ${attempt + 1} times: ${client.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, backoffMs(attempt + 1, RETRY_DELAY_MS)));
  }
  const ms = performance.now() - started;
  if (relay.cuts !== CUTS) throw new Error(`w6 rsync: ${relay.cuts} cuts instead of ${CUTS}`);
  return { ms, sent: relay.clientBytes, stored: `${dir}/up/${path.split("/").at(-1)}` };
}
