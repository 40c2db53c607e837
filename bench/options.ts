/**
 * The bench's command line: `node:util` `parseArgs` in strict mode, then every
 * value checked, so a typo stops the bench before it starts anything.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { UsageError } from "../lib/errors.ts";

/**
 * The workloads `--only` can pick; workload 5 is measured during workload 1.
 * Workload 6 (a link that drops, against rsync) runs only when `--only` names it.
 */
export const WORKLOADS = ["w1", "w2", "w3", "w4", "w6", "w7"] as const;
/** One of {@link WORKLOADS}. */
export type Workload = typeof WORKLOADS[number];

// Bounds of the numeric options: enough for any real use, small enough to catch a slip.
/** The most `--runs` takes. */
export const MAX_RUNS = 100;
/** The most `--size-mib` takes: source and saved copy must fit the bench's 12 GiB tmpfs. */
export const MAX_SIZE_MIB = 4096;

/** The usage line, without `usage: `. */
export const USAGE =
  "deno task bench [--quick] [--runs N] [--size-mib N] [--only w1,w2,w3,w4,w6,w7] [--help]";

/** The text of `--help`. */
export const HELP = `usage: ${USAGE}

Accio against iperf3, OpenBSD netcat and the Python seed-style peers, in the same run.

options:
  --quick         small sizes and 1 run (the CI smoke run); results go to bench/results/quick.*
  --runs N        runs, 1 to ${MAX_RUNS} (default 5, or 1 with --quick)
  --size-mib N    size of the workload-1 file in MiB, 1 to ${MAX_SIZE_MIB} (default 1024, or 16 with --quick)
  --only LIST     comma-separated workloads to run, of ${
  WORKLOADS.join(", ")
}; results go to bench/results/quick.*
                  (w6, a 200 MiB upload over a link cut 5 times, Accio --resume against rsync
                  --partial, runs only when named here; w7, one upload of the workload-1 size
                  over TLS against plaintext Accio and openssl s_client/s_server)
  -h, --help      show this help and exit`;

/** What the command line asked for. */
export interface BenchOptions {
  /** `--help`: print the help and run nothing. */
  help: boolean;
  /** `--quick`: small sizes and one run by default. */
  quick: boolean;
  /** `--runs`. */
  runs: number;
  /** `--size-mib`: the workload-1 file's size. */
  bigMiB: number;
  /** The workloads to run; all of them when `--only` is not given. */
  only?: Workload[];
}

/** Sizes and counts of one bench run. */
export interface BenchConfig {
  /** How many times every workload runs, for every program. */
  runs: number;
  /** Workload 1: the size of the one file, in MiB. */
  bigMiB: number;
  /** Workload 2: how many files at once ... */
  parallelCount: number;
  /** ... of this many MiB each. */
  parallelMiB: number;
  /** Workload 3: how many 1 KiB uploads ... */
  smallCount: number;
  /** ... with this many in flight. */
  smallInFlight: number;
  /** Workload 4: how many idle connections. */
  idleCount: number;
  /** Workload 6: the size of the file sent over a link that drops, in MiB. */
  flakyMiB: number;
}

function wholeNumber(name: string, value: string | undefined, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  const number = /^[0-9]+$/.test(value) ? Number(value) : NaN;
  if (!(number >= 1 && number <= max)) {
    throw new UsageError(`invalid --${name} "${value}": expected a whole number from 1 to ${max}`);
  }
  return number;
}

function workloadList(value: string | undefined): Workload[] | undefined {
  if (value === undefined) return undefined;
  const names = value.split(",");
  const unknown = names.filter((name) => !(WORKLOADS as readonly string[]).includes(name));
  if (unknown.length > 0) {
    throw new UsageError(
      `invalid --only "${value}": expected a comma-separated list of ${WORKLOADS.join(", ")}`,
    );
  }
  return [...new Set(names as Workload[])];
}

/** `parseArgs` says what went wrong in several lines, with advice that does not fit here; one line instead. */
function usageError(error: unknown, args: string[]): UsageError {
  const { code, message = String(error) } = error as { code?: string; message?: string };
  const quoted = /'([^']*)'/.exec(message)?.[1] ?? "";
  const option = quoted.split(" ")[0];
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") return new UsageError(`unknown option "${option}"`);
  if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") {
    return new UsageError(`unexpected argument "${quoted}"`);
  }
  if (code !== "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") return new UsageError(message.split("\n")[0]);
  if (/does not take/.test(message)) return new UsageError(`option "${option}" takes no value`);
  // "ambiguous": the next argument starts with a dash, another option or a negative number.
  const next = args[args.indexOf(option) + 1];
  return new UsageError(
    `option "${option}" needs a value${/ambiguous/.test(message) ? `, not "${next}"` : ""}`,
  );
}

/**
 * Parses and checks the bench's arguments.
 *
 * @throws {UsageError} for an unknown option, a missing value, a stray argument, or a value out of range.
 */
export function parseBenchArgs(args: string[]): BenchOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        help: { type: "boolean", short: "h" },
        quick: { type: "boolean" },
        runs: { type: "string" },
        "size-mib": { type: "string" },
        only: { type: "string" },
      },
    }));
  } catch (error) {
    throw usageError(error, args);
  }
  const quick = values.quick === true;
  return {
    help: values.help === true,
    quick,
    runs: wholeNumber("runs", values.runs, quick ? 1 : 5, MAX_RUNS),
    bigMiB: wholeNumber("size-mib", values["size-mib"], quick ? 16 : 1024, MAX_SIZE_MIB),
    only: workloadList(values.only),
  };
}

/** The sizes and counts for `options`: full, or small with `--quick`. */
export function benchConfig({ quick, runs, bigMiB }: BenchOptions): BenchConfig {
  return {
    runs,
    bigMiB,
    parallelCount: quick ? 10 : 200,
    parallelMiB: quick ? 1 : 8,
    smallCount: quick ? 200 : 5000,
    smallInFlight: 50,
    idleCount: quick ? 100 : 1000,
    flakyMiB: quick ? 16 : 200,
  };
}
