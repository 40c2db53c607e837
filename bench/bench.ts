/**
 * `deno task bench [--quick] [--runs N] [--size-mib N] [--only w1,...]`: Accio against iperf3
 * (the loopback ceiling), OpenBSD netcat, the Python seed-style peers and (TLS) openssl, in
 * the same run, on files in a tmpfs. Programs alternate within every run;
 * medians with min and max are reported, and each ratio to nc pair by pair.
 * After a complete run with every file verified, writes
 * bench/results/latest.{json,md} and bench/results/throughput.svg (or
 * bench/results/quick.{json,md} for `--quick` and `--only`); otherwise nothing.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { printError } from "../lib/cli.ts";
import { describeError, EXIT_FAILURE, UsageError } from "../lib/errors.ts";
import { chart } from "./chart.ts";
import { writeRandomFile } from "./files.ts";
import { type BenchConfig, benchConfig, type BenchOptions, HELP, parseBenchArgs, USAGE } from "./options.ts";
import { ensureRsync, flakyUpload } from "./flaky.ts";
import { ensurePeers } from "./peers.ts";
import { tlsUpload } from "./tls.ts";
import { onPath, ROOT } from "./programs.ts";
import { checkComplete, markdown, type Results, writeAtomically } from "./report.ts";
import {
  type Bench,
  bigUpload,
  idleConnections,
  parallelUploads,
  type ServerProgram,
  smallUploads,
} from "./workloads.ts";

const MiB = 1024 * 1024;

// Files live in a tmpfs so the disk does not hide the data path. /dev/shm is out of reach: Deno's permission
// model wants --allow-all for anything under /dev. As root, re-run inside a private mount namespace with a
// tmpfs of our own (gone when the bench ends); otherwise fall back to the temp directory, and say so.
const TMPFS = "/tmp/accio-bench-tmpfs";

async function inOwnTmpfs(args: string[]): Promise<number> {
  await Deno.mkdir(TMPFS, { recursive: true });
  const self = [Deno.execPath(), "run", "--allow-all", new URL(import.meta.url).pathname, ...args];
  const status = await new Deno.Command("unshare", {
    args: [
      "-m",
      "--propagation",
      "private",
      "sh",
      "-c",
      `mount -t tmpfs -o size=12g tmpfs ${TMPFS} && exec "$@"`,
      "sh",
      ...self,
    ],
    env: { ACCIO_BENCH_TMPFS: TMPFS },
  }).spawn().status;
  return status.code;
}

/** The bench's sources, written into `base`: the big file, the parallel files, the small contents. */
async function makeSources(config: BenchConfig, base: string, results: Results): Promise<Bench> {
  const source = async (name: string, bytes: number) => {
    const path = `${base}/${name}`;
    return { path, sha256: await writeRandomFile(path, bytes) };
  };
  const contents = Array.from({ length: 100 }, () => crypto.getRandomValues(new Uint8Array(1024)));
  return {
    config,
    base,
    results,
    big: await source("big.bin", config.bigMiB * MiB),
    parallel: await Promise.all(
      Array.from({ length: config.parallelCount }, (_, i) => source(`p${i}.bin`, config.parallelMiB * MiB)),
    ),
    small: { contents, sha256: contents.map((c) => createHash("sha256").update(c).digest("hex")) },
  };
}

/** Which programs take part in which workload, by what is installed and what `--only` picked. */
function lineUp(
  options: BenchOptions,
  peers: { nc: boolean; iperf3: boolean; rsync: boolean; openssl: boolean },
): Record<string, string[]> {
  const nc = peers.nc ? ["nc"] : [];
  const all: Record<string, string[]> = {
    w1: ["accio", ...nc, "python", ...(peers.iperf3 ? ["iperf3"] : [])],
    // With workers: --workers 2 and auto beside the default 1, in the same run (issue 11).
    w2: ["accio", "accio-w2", "accio-wauto", ...nc, "python"],
    w3: ["accio", "accio-w2", "accio-wauto", "python"],
    w4: ["accio", "python"],
    w6: ["accio", ...(peers.rsync ? ["rsync"] : [])],
    // TLS against plaintext Accio and the openssl pair (issue 13); without openssl, no certificates either.
    w7: peers.openssl ? ["accio", "accio-tls", "openssl"] : [],
  };
  // Workload 6 only when named: it is not one of the throughput targets, and it needs rsync.
  const picked = (w: string) =>
    options.only === undefined ? w !== "w6" : (options.only as string[]).includes(w);
  if (picked("w7") && !peers.openssl) {
    console.error("bench: SKIPPED: workload 7 (TLS): openssl is not installed");
  }
  return Object.fromEntries(Object.entries(all).filter(([w, lineup]) => picked(w) && lineup.length > 0));
}

const WORKLOAD: Record<string, (bench: Bench, program: string, run: number) => Promise<void>> = {
  w1: bigUpload,
  w2: parallelUploads,
  w3: (bench, program, run) => smallUploads(bench, program as ServerProgram, run),
  w4: (bench, program, run) => idleConnections(bench, program as ServerProgram, run),
  w6: flakyUpload,
  w7: tlsUpload,
};

/** Every run: each workload in turn, its programs in an order that rotates from run to run. */
async function runAll(bench: Bench, programs: Record<string, string[]>): Promise<void> {
  const rotate = <T>(xs: T[], by: number) => xs.map((_, i) => xs[(i + by) % xs.length]);
  const { runs } = bench.config;
  for (let run = 0; run < runs; run++) {
    for (const [workload, lineup] of Object.entries(programs)) {
      for (const program of rotate(lineup, run)) {
        console.error(`bench: run ${run + 1}/${runs} workload ${workload.slice(1)} ${program}`);
        await WORKLOAD[workload](bench, program, run);
      }
    }
  }
}

async function machine(): Promise<string> {
  const cpu = /model name\s*:\s*(.*)/.exec(await Deno.readTextFile("/proc/cpuinfo"))?.[1] ?? "unknown CPU";
  const gib = Math.round(Deno.systemMemoryInfo().total / 2 ** 30);
  return `${navigator.hardwareConcurrency} cores (${cpu}), ${gib} GiB, Linux ${Deno.osRelease()}, Deno ${Deno.version.deno}`;
}

/** Runs every workload of every run; resolves with the figures once all are in and every file checked. */
async function measure(options: BenchOptions, config: BenchConfig): Promise<Results> {
  const tmpfs = Deno.env.get("ACCIO_BENCH_TMPFS");
  if (!tmpfs) console.error("bench: not root: files go to the temp directory on disk, not a tmpfs");
  const rsync = options.only?.includes("w6") ? await ensureRsync() : false;
  const programs = lineUp(options, { ...await ensurePeers(), rsync, openssl: await onPath("openssl") });
  const results: Results = {};
  const base = await Deno.makeTempDir({
    dir: tmpfs ?? Deno.env.get("TMPDIR") ?? "/tmp",
    prefix: "accio-bench-",
  });
  try {
    console.error(`bench: ${JSON.stringify(config)} in ${base}`);
    await runAll(await makeSources(config, base, results), programs);
  } finally {
    await Deno.remove(base, { recursive: true });
  }
  // Workload 5 is the memory of Accio's programs during workload 1.
  const w5: Record<string, string[]> = programs.w1
    ? { w5: ["server peak RSS MiB", "client peak RSS MiB"] }
    : {};
  // Workload 6 notes two figures for each program: the bytes sent (w6) and the time (w6t).
  const w6t: Record<string, string[]> = programs.w6 ? { w6t: programs.w6 } : {};
  // Workload 7 notes the CPU of each side too (w7c, w7s).
  const w7cpu: Record<string, string[]> = programs.w7 ? { w7c: programs.w7, w7s: programs.w7 } : {};
  checkComplete(results, { ...programs, ...w5, ...w6t, ...w7cpu }, config.runs);
  return results;
}

/** Writes the report of a full run to latest.* and the chart, of any other run to quick.*; prints it. */
async function save(results: Results, config: BenchConfig, full: boolean): Promise<void> {
  const date = new Date().toISOString();
  const host = await machine();
  const report = markdown(results, config, date, host);
  const out = `${ROOT}bench/results/${full ? "latest" : "quick"}`;
  await writeAtomically({
    [`${out}.json`]: JSON.stringify({ date, machine: host, config, results }, null, 2) + "\n",
    [`${out}.md`]: report,
    ...(full ? { [`${ROOT}bench/results/throughput.svg`]: chart(results, config) } : {}),
  });
  console.log(report);
}

async function main(args: string[]): Promise<number> {
  let options: BenchOptions;
  try {
    options = parseBenchArgs(args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    printError(`ERROR: ${error.message}`);
    printError(`usage: ${USAGE}\n(try --help)`);
    return error.exitCode;
  }
  if (options.help) {
    console.log(HELP);
    return 0;
  }
  if (Deno.env.get("ACCIO_BENCH_TMPFS") === undefined && Deno.uid() === 0 && await onPath("unshare")) {
    return await inOwnTmpfs(args);
  }
  const config = benchConfig(options);
  let results: Results;
  try {
    results = await measure(options, config);
  } catch (error) {
    printError(`ERROR: ${describeError(error)} (no results written)`);
    return EXIT_FAILURE;
  }
  try {
    await save(results, config, !options.quick && options.only === undefined);
  } catch (error) {
    printError(`ERROR: cannot write the results: ${describeError(error)}`);
    return EXIT_FAILURE;
  }
  return 0;
}

Deno.exit(await main(Deno.args));
