/**
 * The bench's figures: collected per workload and program, checked for
 * completeness, summarised (medians, min, max, same-run ratios), rendered as
 * Markdown, JSON and an SVG chart, and written so that a file is either the
 * old one or the complete new one.
 *
 * @module
 */
import type { BenchConfig } from "./options.ts";

/** One figure, from run `run` (0-based). */
export interface Sample {
  /** The figure, in its workload's unit. */
  value: number;
  /** Which run it is from. */
  run: number;
}

/** Figures by workload (`w1` ... `w5`), then by program. */
export type Results = Record<string, Record<string, Sample[]>>;

/** Records one figure. */
export function note(results: Results, workload: string, program: string, value: number, run: number): void {
  ((results[workload] ??= {})[program] ??= []).push({ value, run });
}

/**
 * Checks that every program in `expected` (by workload) has a finite figure
 * from each of `runs` runs, and that nothing derived from them is NaN or
 * infinite: a report is only written from a whole run.
 */
export function checkComplete(results: Results, expected: Record<string, string[]>, runs: number): void {
  const problems: string[] = [];
  for (const [workload, programs] of Object.entries(expected)) {
    for (const program of programs) {
      const samples = results[workload]?.[program] ?? [];
      const good = new Set(samples.filter((s) => Number.isFinite(s.value)).map((s) => s.run));
      if (good.size !== runs || samples.length !== runs) {
        problems.push(`${workload} ${program}: ${good.size} good figures of ${runs}`);
      }
    }
  }
  for (const [workload, programs] of Object.entries(results)) {
    for (const program of Object.keys(programs)) {
      const ratio = pairedRatio(results, workload, program);
      if (ratio !== undefined && !Number.isFinite(ratio)) {
        problems.push(`${workload} ${program}: ratio ${ratio}`);
      }
    }
  }
  if (problems.length > 0) throw new Error(`incomplete results: ${problems.join("; ")}`);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Median, min and max of some figures. */
export function summarize(samples: Sample[]): { median: number; min: number; max: number; runs: number } {
  const values = samples.map((s) => s.value);
  return { median: median(values), min: Math.min(...values), max: Math.max(...values), runs: values.length };
}

/** Median over runs of (program / baseline) in the same run; undefined without a common run. */
export function pairedRatio(
  results: Results,
  workload: string,
  program: string,
  baseline = "nc",
): number | undefined {
  const mine = results[workload]?.[program] ?? [];
  const theirs = results[workload]?.[baseline] ?? [];
  const ratios = mine.flatMap((m) => {
    const t = theirs.find((x) => x.run === m.run);
    return t ? [m.value / t.value] : [];
  });
  return ratios.length ? median(ratios) : undefined;
}

/** Title and unit of each workload's figures. */
export function labels(config: BenchConfig): Record<string, [string, string]> {
  return {
    w1: [`1: one ${config.bigMiB} MiB upload`, "MiB/s"],
    w2: [`2: ${config.parallelCount} simultaneous ${config.parallelMiB} MiB uploads`, "MiB/s aggregate"],
    w3: [`3: ${config.smallCount} x 1 KiB uploads, ${config.smallInFlight} in flight`, "uploads/s"],
    w4: [`4: ${config.idleCount} idle connections`, "KiB of server RSS per connection"],
    w5: [`5: peak RSS during workload 1`, "MiB"],
    w6: [`6: one ${config.flakyMiB} MiB upload over a link cut 5 times`, "MiB sent beyond the file's size"],
    w6t: [`6: one ${config.flakyMiB} MiB upload over a link cut 5 times`, "s, start to stored"],
    w7: [`7: one ${config.bigMiB} MiB upload, TLS (accio: plaintext)`, "MiB/s"],
    w7c: [`7: one ${config.bigMiB} MiB upload, TLS (accio: plaintext)`, "client CPU s per GiB"],
    w7s: [`7: one ${config.bigMiB} MiB upload, TLS (accio: plaintext)`, "server CPU s per GiB"],
  };
}

/** The Markdown report: one row per workload and program, in workload order. */
export function markdown(results: Results, config: BenchConfig, date: string, machine: string): string {
  const where = Deno.env.get("ACCIO_BENCH_TMPFS") ? "a tmpfs" : "the temp directory on disk";
  const label = labels(config);
  const lines = [
    `# Benchmark results`,
    "",
    `${date}; ${machine}; ${config.runs} run(s), programs alternating; files in ${where}.`,
    "",
    "| workload | program | median | min | max | unit | ratio to nc (paired median) |",
    "| --- | --- | ---: | ---: | ---: | --- | ---: |",
  ];
  const f = (x: number) => x.toFixed(x >= 100 ? 0 : 1);
  for (const workload of Object.keys(results).sort()) {
    for (const [program, samples] of Object.entries(results[workload])) {
      const s = summarize(samples);
      const ratio = program === "nc" ? undefined : pairedRatio(results, workload, program);
      const [title, unit] = label[workload];
      lines.push(
        `| ${title} | ${program} | ${f(s.median)} | ${f(s.min)} | ${f(s.max)} | ${unit} | ${
          ratio === undefined ? "" : `${ratio.toFixed(2)}x`
        } |`,
      );
    }
  }
  const ceiling = pairedRatio(results, "w1", "accio", "iperf3");
  if (ceiling) lines.push("", `Workload 1, accio / iperf3 ceiling (paired median): ${ceiling.toFixed(2)}x.`);
  lines.push(...tlsTargets(results));
  return lines.join("\n") + "\n";
}

/** Workload 7's two targets (issue 13), from paired medians: TLS against plaintext, and against openssl. */
function tlsTargets(results: Results): string[] {
  const ofPlain = pairedRatio(results, "w7", "accio-tls", "accio");
  // Time is inverse to throughput: openssl's MiB/s over ours is our time over openssl's.
  const timeOverOpenssl = pairedRatio(results, "w7", "openssl", "accio-tls");
  if (ofPlain === undefined || timeOverOpenssl === undefined) return [];
  const verdict = (ok: boolean) => ok ? "met" : "NOT met";
  return [
    "",
    `Workload 7, accio-tls / plaintext accio throughput (paired median): ${ofPlain.toFixed(2)}x ` +
    `(target at least 0.60x: ${verdict(ofPlain >= 0.6)}).`,
    `Workload 7, accio-tls time / openssl pair time (paired median): ${timeOverOpenssl.toFixed(2)}x ` +
    `(target at most 1.20x: ${verdict(timeOverOpenssl <= 1.2)}).`,
  ];
}

/**
 * Writes every file of `files` (path to text) so that none is ever half
 * written: all go to temporary files beside their targets first, and only
 * when all are written are they renamed into place.
 */
export async function writeAtomically(files: Record<string, string>): Promise<void> {
  const temps = Object.keys(files).map((path) => `${path}.tmp-${Deno.pid}`);
  try {
    await Promise.all(Object.values(files).map((text, i) => Deno.writeTextFile(temps[i], text)));
    for (const [i, path] of Object.keys(files).entries()) await Deno.rename(temps[i], path);
  } finally {
    await Promise.all(temps.map((temp) => Deno.remove(temp).catch(() => {})));
  }
}
