/**
 * The bench's workloads, one program at a time: each starts its server,
 * drives it, stops it, checks every saved file against its source, and only
 * then records a figure. Any failure throws, and the run fails with it.
 *
 * @module
 */
import { TimeoutError } from "../lib/errors.ts";
import { withDeadline } from "../lib/deadline.ts";
import { type Job, openIdleConnections, runLoad, runSmallLoad } from "./load.ts";
import { freshDir, verifySaved } from "./files.ts";
import { statusKiB, watchPeakRss } from "./memory.ts";
import { freePorts, untilListening } from "./net.ts";
import { accio, Child, ROOT, shell } from "./programs.ts";
import type { BenchConfig } from "./options.ts";
import { note, type Results } from "./report.ts";

/** A source file of the bench and the SHA-256 of its bytes. */
export interface Source {
  /** Where it is. */
  path: string;
  /** SHA-256 of its bytes, hex. */
  sha256: string;
}

/** What every workload works with: the sizes, the sources, where to put files, where figures go. */
export interface Bench {
  /** Sizes and counts. */
  config: BenchConfig;
  /** The directory for sources and the servers' directories (a tmpfs where possible). */
  base: string;
  /** Workload 1's file. */
  big: Source;
  /** Workload 2's files. */
  parallel: Source[];
  /** Workload 3's contents, kept in memory, and their SHA-256 in the same order. */
  small: { contents: Uint8Array[]; sha256: string[] };
  /** Where the figures go. */
  results: Results;
}

const MiB = 1024 * 1024;
const PEERS = `${ROOT}tests/peers/`;
const START_MS = 15_000;

/** How long moving `mib` MiB over `connections` connections may take: far more than any healthy run needs. */
const budgetMs = (mib: number, connections = 1) => 60_000 + 100 * mib + 20 * connections;

function bounded<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  return withDeadline(work, ms, () => new TimeoutError(`${what} did not finish within ${ms} ms`));
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A server under test: Accio's (`accio` is `--workers 1`, the default; `accio-w2` and `accio-wauto`
 * are `--workers 2` and `--workers auto`) or the Python seed-style one.
 */
export type ServerProgram = "accio" | "accio-w2" | "accio-wauto" | "python";

/** The Accio server's `--workers` for a bench program. */
const WORKER_ARGS: Record<string, string[]> = {
  "accio-w2": ["--workers", "2"],
  "accio-wauto": ["--workers", "auto"],
};
interface Server {
  child: Child;
  port: number;
}

/** Starts a server on a free port, waits for its "listening on" line, runs `body`, and stops it cleanly. */
async function withServer<T>(
  program: ServerProgram,
  dir: string,
  body: (s: Server) => Promise<T>,
): Promise<T> {
  const [port] = freePorts(1);
  await using child = program.startsWith("accio")
    ? accio("server", [...(WORKER_ARGS[program] ?? []), String(port), dir])
    : new Child("python3", ["-u", `${PEERS}seed_server.py`, String(port), dir], "python server");
  await child.untilStderr(/listening on/, START_MS);
  const result = await body({ child, port });
  const status = await child.stop("SIGTERM");
  if (status.code !== 0) throw new Error(`${program} server exited with ${status.code}: ${child.stderr}`);
  return result;
}

/** Waits for `children` to exit, at most `ms`; fails unless every one exits 0. */
async function allSucceed(children: Child[], ms: number, what: string): Promise<void> {
  const statuses = await Promise.all(children.map((child) => child.wait(ms)));
  const failed = statuses.findIndex((status) => status.code !== 0);
  if (failed !== -1) {
    throw new Error(`${what} exited with ${statuses[failed].code}: ${children[failed].stderr}`);
  }
}

// ---- workload 1 (and 5): one big upload --------------------------------------------------------

/** The memory-to-memory ceiling: MiB/s that iperf3 moves over loopback. */
async function iperf3MiBs(bench: Bench): Promise<number> {
  const bytes = bench.config.bigMiB * MiB;
  const [port] = freePorts(1);
  await using server = new Child("iperf3", ["-s", "-1", "-p", String(port)], "iperf3 -s");
  await untilListening([port], [server], START_MS, "iperf3 -s");
  await using client = new Child("iperf3", ["-c", "127.0.0.1", "-p", `${port}`, "-n", `${bytes}`, "-J"]);
  await allSucceed([client, server], budgetMs(bench.config.bigMiB), "iperf3");
  const end = JSON.parse(await client.stdout())?.end;
  // The receiver's sum can miss the last bytes still in flight when the client reports; -n counts what was sent.
  const sent = end?.sum_sent;
  if (!(sent?.bytes >= bytes)) throw new Error(`iperf3 sent ${sent?.bytes} of ${bytes} bytes`);
  return (end.sum_received?.bits_per_second ?? sent.bits_per_second) / 8 / MiB;
}

/** Accio's client into Accio's server, their peak memory noted as workload 5; resolves with the ms taken. */
function bigAccio(bench: Bench, dir: string, run: number): Promise<number> {
  return withServer("accio", dir, async (server) => {
    const serverPeak = watchPeakRss(server.child.pid);
    const started = performance.now();
    await using client = accio("client", ["127.0.0.1", String(server.port), bench.big.path]);
    const clientPeak = watchPeakRss(client.pid);
    await allSucceed([client], budgetMs(bench.config.bigMiB), "accio client");
    const ms = performance.now() - started;
    note(bench.results, "w5", "server peak RSS MiB", serverPeak() / 1024, run);
    note(bench.results, "w5", "client peak RSS MiB", clientPeak() / 1024, run);
    return ms;
  });
}

/** `nc -N` from the file into `nc -d -l` into a file; resolves with the ms taken. */
async function bigNc(bench: Bench, dir: string): Promise<number> {
  const [port] = freePorts(1);
  await using server = shell(`exec nc -d -l 127.0.0.1 ${port} > "${dir}/1.file"`, "nc -l");
  await untilListening([port], [server], START_MS, "nc -l");
  const started = performance.now();
  await using client = shell(`exec nc -N 127.0.0.1 ${port} < "${bench.big.path}"`, "nc -N");
  await allSucceed([client, server], budgetMs(bench.config.bigMiB), "nc");
  return performance.now() - started;
}

/** The Python seed-style client into the Python server; resolves with the ms taken. */
function bigPython(bench: Bench, dir: string): Promise<number> {
  return withServer("python", dir, async (server) => {
    const started = performance.now();
    await using client = new Child(
      "python3",
      [`${PEERS}seed_client.py`, "127.0.0.1", String(server.port), bench.big.path],
      "python client",
    );
    await allSucceed([client], budgetMs(bench.config.bigMiB), "python client");
    return performance.now() - started;
  });
}

/** Workload 1 for one program: one big file, from client start to the confirmed, verified file. */
export async function bigUpload(bench: Bench, program: string, run: number): Promise<void> {
  if (program === "iperf3") return note(bench.results, "w1", program, await iperf3MiBs(bench), run);
  const dir = await freshDir(bench.base, "w1");
  const ms = program === "accio"
    ? await bigAccio(bench, dir, run)
    : program === "nc"
    ? await bigNc(bench, dir)
    : await bigPython(bench, dir);
  await verifySaved(dir, [bench.big.sha256], `${program}: workload 1`);
  note(bench.results, "w1", program, bench.config.bigMiB / (ms / 1000), run);
  await Deno.remove(dir, { recursive: true });
}

// ---- workload 2: many simultaneous uploads -----------------------------------------------------

/** One `nc -d -l` per file, all fed at once by the raw generator; resolves with the ms taken. */
async function parallelNc(bench: Bench, dir: string, ms: number): Promise<number> {
  const ports = freePorts(bench.parallel.length);
  const servers = ports.map((port, i) =>
    shell(`exec nc -d -l 127.0.0.1 ${port} > "${dir}/${i + 1}.file"`, "nc -l")
  );
  try {
    await untilListening(ports, servers, 2 * START_MS, "nc listeners");
    const jobs: Job[] = bench.parallel.map(({ path }, i) => ({ port: ports[i], path }));
    const started = performance.now();
    await bounded(runLoad(jobs, jobs.length, "raw"), ms, "workload 2 uploads to nc");
    await allSucceed(servers, ms, "nc -l");
    return performance.now() - started;
  } finally {
    await Promise.all(servers.map((server) => server[Symbol.asyncDispose]()));
  }
}

/** Workload 2 for one program: every parallel file at once, then every saved file checked. */
export async function parallelUploads(bench: Bench, program: string, run: number): Promise<void> {
  const { parallelCount, parallelMiB } = bench.config;
  const limit = budgetMs(parallelCount * parallelMiB, parallelCount);
  const dir = await freshDir(bench.base, "w2");
  const ms = program === "nc" ? await parallelNc(bench, dir, limit) : await withServer(
    program as ServerProgram,
    dir,
    (server) => {
      const jobs: Job[] = bench.parallel.map(({ path }) => ({ port: server.port, path }));
      return bounded(runLoad(jobs, jobs.length, "accio"), limit, `workload 2 uploads to ${program}`);
    },
  );
  await verifySaved(dir, bench.parallel.map((source) => source.sha256), `${program}: workload 2`);
  note(bench.results, "w2", program, (parallelCount * parallelMiB) / (ms / 1000), run);
  await Deno.remove(dir, { recursive: true });
}

// ---- workload 3: many small uploads ------------------------------------------------------------

/** Workload 3 for one program: many small uploads, a few in flight, then every saved file checked. */
export async function smallUploads(bench: Bench, program: ServerProgram, run: number): Promise<void> {
  const { smallCount, smallInFlight } = bench.config;
  const { contents, sha256 } = bench.small;
  const dir = await freshDir(bench.base, "w3");
  const ms = await withServer(program, dir, (server) =>
    bounded(
      runSmallLoad(server.port, contents, smallCount, smallInFlight),
      budgetMs(smallCount / 1024, smallCount),
      `workload 3 uploads to ${program}`,
    ));
  // The generator sends contents[i % contents.length] as upload i.
  const expected = Array.from({ length: smallCount }, (_, i) => sha256[i % sha256.length]);
  await verifySaved(dir, expected, `${program}: workload 3`);
  note(bench.results, "w3", program, smallCount / (ms / 1000), run);
  await Deno.remove(dir, { recursive: true });
}

// ---- workload 4: idle connections --------------------------------------------------------------

function rssKiB(server: Server): number {
  const kib = statusKiB(server.child.pid, "VmRSS");
  if (kib === undefined) throw new Error(`server exited: ${server.child.stderr}`);
  return kib;
}

/** Workload 4 for one program: the server's resident memory per connection held open and idle. */
export async function idleConnections(bench: Bench, program: ServerProgram, run: number): Promise<void> {
  const count = bench.config.idleCount;
  const dir = await freshDir(bench.base, "w4");
  await withServer(program, dir, async (server) => {
    const conns: Deno.TcpConn[] = [];
    try {
      await delay(300);
      const before = rssKiB(server);
      await bounded(openIdleConnections(server.port, count, conns), budgetMs(0, count), "idle connections");
      await delay(500);
      note(bench.results, "w4", program, (rssKiB(server) - before) / count, run);
    } finally {
      conns.forEach((conn) => conn.close());
    }
  });
  await Deno.remove(dir, { recursive: true });
}
