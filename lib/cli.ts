/**
 * The command-line surface shared by `server`, `client` and `server-s`:
 * argument parsing, `--help`, `--version`, and the mapping of errors to an
 * `ERROR:` line and an exit code.
 *
 * A small parser of our own rather than `node:util` `parseArgs`: a port typed
 * as `-1` must reach the port check and be reported as a bad port, where
 * `parseArgs` would call it an unknown option.
 *
 * @example
 * ```ts
 * import { runCommand } from "./cli.ts";
 * await runCommand({
 *   name: "hello",
 *   usage: "hello [--loud] <NAME>",
 *   summary: "Greets NAME.",
 *   positionals: ["NAME"],
 *   options: { loud: { type: "boolean", help: "shout" } },
 * }, Deno.args, ({ positionals, values }) => {
 *   console.log(values.loud ? positionals[0].toUpperCase() : positionals[0]);
 *   return Promise.resolve(0);
 * });
 * ```
 * @module
 */
import denoConfig from "../deno.json" with { type: "json" };
import { AccioError, describeError, EXIT_FAILURE, UsageError } from "./errors.ts";

/** Accio's version, from `deno.json`. */
export const VERSION: string = denoConfig.version;

/** One `--long` option. */
export interface OptionSpec {
  /** `boolean` options take no value; `string` options take the next argument or `=value`. */
  type: "string" | "boolean";
  /** Placeholder shown in help for a value, e.g. `SECONDS`. */
  valueName?: string;
  /** One line for `--help`. */
  help: string;
}

/** What a program accepts, and the text of its `--help`. */
export interface CommandSpec {
  /** Program name as the user types it. */
  name: string;
  /** The usage line, without the leading `usage: `. */
  usage: string;
  /** One paragraph saying what the program does. */
  summary: string;
  /** Names of the required positional arguments, in order. */
  positionals: readonly string[];
  /** The last positional may be repeated (`FILE...`). Default false. */
  variadic?: boolean;
  /** Long options, by name without the dashes. `help` and `version` are added. */
  options: Readonly<Record<string, OptionSpec>>;
}

/** The parsed command line. */
export interface ParsedArgs {
  /** Positional arguments, in order. */
  positionals: string[];
  /** Option values by long name: a string, or `true` for a boolean option given. */
  values: Record<string, string | boolean | undefined>;
}

/** The options every command has. */
const BUILTIN_OPTIONS: Record<string, OptionSpec> = {
  help: { type: "boolean", help: "show this help and exit" },
  version: { type: "boolean", help: "show the version and exit" },
};

/**
 * Parses `args` against `spec`. Arguments that start with `-` followed by a
 * digit are positionals (so `-1` is judged as a port, not an option).
 *
 * @throws {UsageError} for unknown options, missing values, wrong arity.
 */
export function parseArgs(spec: CommandSpec, args: readonly string[]): ParsedArgs {
  const options: Record<string, OptionSpec> = { ...spec.options, ...BUILTIN_OPTIONS };
  const values: ParsedArgs["values"] = {};
  const positionals: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (arg === "-h") {
      values.help = true;
      continue;
    }
    if (!arg.startsWith("-") || arg === "-" || /^-[0-9]/.test(arg)) {
      positionals.push(arg);
      continue;
    }
    if (!arg.startsWith("--")) throw new UsageError(`unknown option "${arg}"`);
    i += takeOption(options, arg, args[i + 1], values);
  }
  if (!values.help && !values.version) checkArity(spec, positionals);
  return { positionals, values };
}

/** Takes the long option `arg` into `values`; returns 1 when it took `next` as its value, else 0. */
function takeOption(
  options: Record<string, OptionSpec>,
  arg: string,
  next: string | undefined,
  values: ParsedArgs["values"],
): number {
  const equals = arg.indexOf("=");
  const name = arg.slice(2, equals === -1 ? undefined : equals);
  const option = options[name];
  if (!option) throw new UsageError(`unknown option "--${name}"`);
  if (option.type === "boolean") {
    if (equals !== -1) throw new UsageError(`option "--${name}" takes no value`);
    values[name] = true;
    return 0;
  }
  if (equals !== -1) {
    values[name] = arg.slice(equals + 1);
    return 0;
  }
  if (next === undefined) throw new UsageError(`option "--${name}" needs a value`);
  values[name] = next;
  return 1;
}

/** Refuses too few positionals, or too many unless the last one repeats. */
function checkArity(spec: CommandSpec, positionals: readonly string[]): void {
  const given = positionals.length;
  const wanted = spec.positionals.length;
  if (given === wanted || (spec.variadic && given > wanted)) return;
  const expected = spec.positionals.map((p) => `<${p}>`).join(" ") + (spec.variadic ? "..." : "");
  throw new UsageError(
    given < wanted ? `missing argument: expected ${expected}` : `too many arguments: expected ${expected}`,
  );
}

/** Renders `--help` for a command. */
export function helpText(spec: CommandSpec): string {
  const lines = [`usage: ${spec.usage}`, "", spec.summary, "", "options:"];
  const entries = Object.entries({ ...spec.options, ...BUILTIN_OPTIONS });
  const labels = entries.map(([name, o]) => `--${name}${o.valueName ? ` ${o.valueName}` : ""}`);
  const width = Math.max(...labels.map((l) => l.length));
  entries.forEach(([, o], i) => lines.push(`  ${labels[i].padEnd(width)}  ${o.help}`));
  return lines.join("\n");
}

/**
 * Parses a duration option given in seconds (fractions allowed) into milliseconds.
 *
 * @example
 * ```ts
 * import { parseSecondsOption } from "./cli.ts";
 * parseSecondsOption("timeout", "2.5", 10_000); // 2500
 * ```
 * @throws {UsageError} unless the value is a positive number of at most a day.
 */
export function parseSecondsOption(
  name: string,
  value: string | boolean | undefined,
  defaultMs: number,
): number {
  if (value === undefined) return defaultMs;
  const seconds = typeof value === "string" && /^[0-9]*\.?[0-9]+$/.test(value) ? Number(value) : NaN;
  if (!(seconds > 0 && seconds <= 86_400)) {
    throw new UsageError(`invalid --${name} "${value}": expected seconds, more than 0, at most 86400`);
  }
  return Math.round(seconds * 1000);
}

/**
 * Parses a whole-number option such as a count or a size in bytes. Sizes take
 * the suffixes `K`, `M`, `G`, `T` (powers of 1024).
 *
 * @example
 * ```ts
 * import { parseIntegerOption } from "./cli.ts";
 * parseIntegerOption("max-size", "2G", 0, { units: true }); // 2147483648
 * ```
 * @throws {UsageError} unless the value is a whole number from `min` to `max`.
 */
export function parseIntegerOption(
  name: string,
  value: string | boolean | undefined,
  defaultValue: number,
  { min = 1, max = Number.MAX_SAFE_INTEGER, units = false }: { min?: number; max?: number; units?: boolean } =
    {},
): number {
  if (value === undefined) return defaultValue;
  const match = typeof value === "string"
    ? (units ? /^([0-9]+)([KMGT]?)(i?B)?$/i : /^([0-9]+)()$/).exec(value)
    : null;
  const scale = { "": 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };
  const number = match ? Number(match[1]) * scale[match[2].toUpperCase() as keyof typeof scale] : NaN;
  if (!Number.isSafeInteger(number) || number < min || number > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `of at least ${min}` : `from ${min} to ${max}`;
    throw new UsageError(`invalid --${name} "${value}": expected a whole number ${range}`);
  }
  return number;
}

/** Parses an option that takes one of a fixed set of words. */
export function parseChoiceOption<const T extends string>(
  name: string,
  value: string | boolean | undefined,
  choices: readonly T[],
  defaultValue: T,
): T {
  if (value === undefined) return defaultValue;
  if (typeof value === "string" && (choices as readonly string[]).includes(value)) return value as T;
  throw new UsageError(`invalid --${name} "${value}": expected one of ${choices.join(", ")}`);
}

/** `--timeout SECONDS`, the idle timeout option of both servers. */
export const SERVER_TIMEOUT_OPTION: OptionSpec = {
  type: "string",
  valueName: "SECONDS",
  help: "idle timeout per connection (default 10)",
};

/** `--handshake MODE`, as both servers take it. */
export const SERVER_HANDSHAKE_OPTION: OptionSpec = {
  type: "string",
  valueName: "MODE",
  help: "auto (default: single or double, per connection), single, or double",
};

/**
 * Writes one line to stderr, synchronously so it is never lost at exit. Never
 * throws: when stderr's reader is gone (EPIPE) the line is dropped.
 */
export function printError(line: string): void {
  const data = new TextEncoder().encode(line + "\n");
  try {
    for (let done = 0; done < data.length;) done += Deno.stderr.writeSync(data.subarray(done));
  } catch {
    // Nobody is reading stderr any more: there is nowhere left to say it.
  }
}

/**
 * Runs a program: parses `args`, answers `--help` and `--version`, calls
 * `main`, and exits with its code. Any error becomes one `ERROR: ` line on
 * stderr (plus the usage line for usage errors) and the error's exit code.
 */
export async function runCommand(
  spec: CommandSpec,
  args: readonly string[],
  main: (parsed: ParsedArgs) => Promise<number>,
): Promise<never> {
  let code: number;
  try {
    const parsed = parseArgs(spec, args);
    if (parsed.values.help) {
      console.log(helpText(spec));
      code = 0;
    } else if (parsed.values.version) {
      console.log(`${spec.name} ${VERSION}`);
      code = 0;
    } else {
      code = await main(parsed);
    }
  } catch (error) {
    printError(`ERROR: ${describeError(error)}`);
    if (error instanceof UsageError) printError(`usage: ${spec.usage}\n(try --help)`);
    code = error instanceof AccioError ? error.exitCode : EXIT_FAILURE;
  }
  Deno.exit(code);
}
