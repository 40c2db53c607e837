/**
 * Workload 7: one big upload over TLS, in the same run as the same upload in
 * plaintext Accio and over the outside anchor, `openssl s_client` into
 * `openssl s_server`; for each, the MiB/s from client start to the verified
 * file, and the CPU seconds per GiB of each side.
 *
 * CPU is read where each program's own cost shows: a server that keeps running
 * (Accio's) by its `/proc/PID/stat` ticks from just before the client starts to
 * just after it ends; a program that exits (every client, `openssl s_server
 * -naccept 1`) by the `times` of the shell that waited for it.
 *
 * @module
 */
import { type BenchCerts, makeBenchCerts } from "./certs.ts";
import { TimeoutError } from "../lib/errors.ts";
import { withDeadline } from "../lib/deadline.ts";
import { freshDir, verifySaved } from "./files.ts";
import { freePorts, untilListening } from "./net.ts";
import { accio, accioArgv, Child } from "./programs.ts";
import { note } from "./report.ts";
import type { Bench } from "./workloads.ts";

const START_MS = 15_000;
/** Linux reports /proc CPU times in USER_HZ ticks, 100 a second on every architecture's ABI. */
const TICKS_PER_SECOND = 100;

/** What one pair of programs took. */
interface PairFigures {
  ms: number;
  clientCpuS: number;
  serverCpuS: number;
}

let certs: Promise<BenchCerts> | undefined;

/** Runs `argv` under `sh`, which prints its children's CPU (`times`) to stderr once the program exits. */
function timed(argv: string[], what: string, redirect = ""): Child {
  const script = `"$@" ${redirect}; status=$?; times >&2; exit $status`;
  return new Child("sh", ["-c", script, "sh", ...argv], what);
}

/** The children's user + system seconds from the last line of a `times` in `stderr`. */
export function childCpuSeconds(stderr: string): number {
  const line = stderr.trim().split("\n").at(-1) ?? "";
  const times = [...line.matchAll(/(\d+)m([\d.]+)s/g)].map(([, m, s]) => Number(m) * 60 + Number(s));
  if (times.length !== 2) throw new Error(`no CPU times in ${JSON.stringify(line)}`);
  return times[0] + times[1];
}

/** User + system seconds `pid` has used so far. */
function processCpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // Fields after the command name, which may hold spaces: state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

function bounded<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  return withDeadline(work, ms, () => new TimeoutError(`${what} did not finish within ${ms} ms`));
}

/** Accio's client into Accio's server, with TLS or without. */
async function accioPair(
  bench: Bench,
  dir: string,
  tls: BenchCerts | undefined,
  ms: number,
): Promise<PairFigures> {
  const [port] = freePorts(1);
  const serverTls = tls ? ["--tls-cert", tls.cert, "--tls-key", tls.key] : [];
  await using server = accio("server", [...serverTls, String(port), dir]);
  await server.untilStderr(/listening on/, START_MS);
  const argv = accioArgv("client", [
    ...(tls ? ["--tls", "--ca", tls.ca] : []),
    "127.0.0.1",
    `${port}`,
    bench.big.path,
  ]);
  const serverBefore = processCpuSeconds(server.pid);
  const started = performance.now();
  await using timedClient = timed(argv, "accio client");
  const status = await timedClient.wait(ms);
  const elapsed = performance.now() - started;
  if (status.code !== 0) throw new Error(`accio client exited with ${status.code}: ${timedClient.stderr}`);
  const serverCpuS = processCpuSeconds(server.pid) - serverBefore;
  const stopped = await server.stop("SIGTERM");
  if (stopped.code !== 0) throw new Error(`accio server exited with ${stopped.code}: ${server.stderr}`);
  return { ms: elapsed, clientCpuS: childCpuSeconds(timedClient.stderr), serverCpuS };
}

/** `openssl s_client` from the file into `openssl s_server -naccept 1` into a file. */
async function opensslPair(bench: Bench, dir: string, tls: BenchCerts, ms: number): Promise<PairFigures> {
  const [port] = freePorts(1);
  // s_server sends what it reads on stdin and stops at its end: a FIFO held open both ways never ends.
  const fifo = `${bench.base}/w7-stdin`;
  await Deno.remove(fifo).catch(() => {});
  await new Child("mkfifo", [fifo]).wait(START_MS);
  const serverArgv = ["openssl", "s_server", "-accept", `127.0.0.1:${port}`, "-naccept", "1", "-quiet"];
  await using server = timed(
    [...serverArgv, "-cert", tls.cert, "-key", tls.key],
    "openssl s_server",
    `3<>"${fifo}" <&3 > "${dir}/1.file"`,
  );
  await untilListening([port], [server], START_MS, "openssl s_server");
  const started = performance.now();
  // -nocommands: a line of the file that begins with Q or R must not be taken for a command.
  const clientArgv = ["openssl", "s_client", "-connect", `127.0.0.1:${port}`, "-CAfile", tls.ca];
  await using client = timed(
    [...clientArgv, "-quiet", "-nocommands", "-no_ign_eof"],
    "openssl s_client",
    `< "${bench.big.path}" > /dev/null`,
  );
  const statuses = await bounded(Promise.all([client.wait(ms), server.wait(ms)]), ms, "openssl pair");
  const elapsed = performance.now() - started;
  if (statuses.some((s) => s.code !== 0)) {
    throw new Error(`openssl pair failed: ${client.stderr} ${server.stderr}`);
  }
  await Deno.remove(fifo).catch(() => {});
  return {
    ms: elapsed,
    clientCpuS: childCpuSeconds(client.stderr),
    serverCpuS: childCpuSeconds(server.stderr),
  };
}

/** Workload 7 for one program (`accio` plaintext, `accio-tls`, `openssl`): the figures of one big upload. */
export async function tlsUpload(bench: Bench, program: string, run: number): Promise<void> {
  const tls = await (certs ??= makeBenchCerts(bench.base));
  const ms = 60_000 + 100 * bench.config.bigMiB;
  const dir = await freshDir(bench.base, "w7");
  const figures = program === "openssl"
    ? await opensslPair(bench, dir, tls, ms)
    : await accioPair(bench, dir, program === "accio-tls" ? tls : undefined, ms);
  await verifySaved(dir, [bench.big.sha256], `${program}: workload 7`);
  const gib = bench.config.bigMiB / 1024;
  note(bench.results, "w7", program, bench.config.bigMiB / (figures.ms / 1000), run);
  note(bench.results, "w7c", program, figures.clientCpuS / gib, run);
  note(bench.results, "w7s", program, figures.serverCpuS / gib, run);
  await Deno.remove(dir, { recursive: true });
}
