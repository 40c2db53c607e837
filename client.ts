/**
 * `client <HOSTNAME-OR-IP> <PORT> <FILE>...`: upload files to an Accio server,
 * each over its own connection, with retries and resume on request.
 *
 * @module
 */
import {
  parseChoiceOption,
  parseIntegerOption,
  parseSecondsOption,
  printError,
  runCommand,
} from "./lib/cli.ts";
import { abortOnSignals } from "./lib/client_signals.ts";
import { DEFAULT_TIMEOUT_MS, formatSeconds } from "./lib/deadline.ts";
import { deliver, type DeliveryOutcome } from "./lib/delivery.ts";
import { describeError, RefusedError, UsageError } from "./lib/errors.ts";
import { type ClientToken, readClientToken, UNAUTHORIZED } from "./lib/tokens.ts";
import { resolvePort } from "./lib/port.ts";
import { ProgressBar } from "./lib/progress.ts";
import { batchVerdict, runBatch, shownPath, summaryLine } from "./lib/upload_batch.ts";
import { listUploads, type UploadItem } from "./lib/upload_list.ts";
import { clientTlsOptions, type TlsClientOptions } from "./lib/tls_client.ts";

/** How long an interrupted upload may take to wind down before the program exits regardless. */
const INTERRUPT_GRACE_MS = 2_000;

const spec = {
  name: "client",
  usage: "client [options] <HOSTNAME-OR-IP> <PORT> <FILE>...",
  summary: "Accio client: connects to the server, waits for its accio\\r\\n, sends each FILE (- is " +
    "standard input) over its own connection and exits 0 once the server has confirmed every one (by " +
    "closing without a word, or with ok). PORT is a number or a service name from /etc/services. " +
    "SIGINT, SIGTERM and SIGHUP abort the uploads with a reset (the server records ERROR) and exit " +
    "130, 143 and 129.",
  positionals: ["HOSTNAME-OR-IP", "PORT", "FILE"],
  variadic: true,
  options: {
    timeout: {
      type: "string",
      valueName: "SECONDS",
      help: "longest wait for the server to connect, greet, take data or confirm (default 10)",
    },
    handshake: {
      type: "string",
      valueName: "MODE",
      help: "single (default; double for a file that begins confirm-accio\\r\\n) or double",
    },
    name: {
      type: "string",
      valueName: "PATH",
      help: "store the (one) file at PATH on the server (server --names)",
    },
    named: {
      type: "boolean",
      help:
        "store each file under its base name, a directory's files under their paths in it (server --names)",
    },
    verify: {
      type: "boolean",
      help: "send length and SHA-256; exit 0 only on the server's ok (server --headers)",
    },
    parallel: { type: "string", valueName: "N", help: "uploads at once, 1-64 (default 1)" },
    retries: {
      type: "string",
      valueName: "N",
      help: "try a file again up to N times after a transient failure, 0-1000 (default 0)",
    },
    "retry-delay": {
      type: "string",
      valueName: "SECONDS",
      help: "first wait before a retry; doubles each time, with jitter, up to 60 s (default 1)",
    },
    resume: {
      type: "boolean",
      help:
        "go on from what the server kept of a broken attempt (named; implies --verify; server --resumable)",
    },
    quiet: {
      type: "boolean",
      help: "no progress bars, summary lines or notes; only ERROR lines",
    },
    tls: {
      type: "boolean",
      help: "speak TLS; verify the server's certificate with the system's roots (server --tls-cert)",
    },
    ca: { type: "string", valueName: "FILE", help: "with --tls: trust only the PEM CA certificates in FILE" },
    "tls-name": {
      type: "string",
      valueName: "NAME",
      help: "with --tls: the name the certificate must hold, also sent as SNI (default: HOSTNAME-OR-IP)",
    },
    "token-file": {
      type: "string",
      valueName: "FILE",
      help: "send the token in FILE (server --tokens; not readable by every user); else ACCIO_TOKEN, if set",
    },
    "allow-plaintext-tokens": {
      type: "boolean",
      help: "send a token without TLS, readable by anyone on the network",
    },
  },
} as const;

/** The progress bars of one upload, on a terminal: `hashing` (with --verify), then the upload's. */
function progressBars(enabled: boolean, prefix: string) {
  let current: ProgressBar | undefined;
  let label: string | undefined;
  const show = (which: string) =>
    enabled
      ? (done: number, total: number | undefined) => {
        if (label !== which) {
          current?.finish();
          current = new ProgressBar(Deno.stderr, total, [prefix, which].filter(Boolean).join(" "));
          label = which;
        }
        current?.update(done);
      }
      : undefined;
  return { show, finish: () => current?.finish(), end: () => current?.end() };
}

/** The options that shape every upload of the run. */
function parseSettings(values: Record<string, string | boolean | undefined>) {
  if (values.name !== undefined && values.named) {
    throw new UsageError("--name and --named exclude each other");
  }
  for (const option of ["ca", "tls-name"]) {
    // Never a silent switch of protocol: TLS is asked for in so many words.
    if (values[option] !== undefined && !values.tls) throw new UsageError(`--${option} needs --tls`);
  }
  const resume = Boolean(values.resume);
  if (resume && values.name === undefined && !values.named) {
    throw new UsageError("--resume needs a named upload: add --named or --name PATH");
  }
  return {
    timeoutMs: parseSecondsOption("timeout", values.timeout, DEFAULT_TIMEOUT_MS),
    handshake: values.handshake === undefined
      ? undefined
      : parseChoiceOption("handshake", values.handshake, ["single", "double"], "single"),
    parallel: parseIntegerOption("parallel", values.parallel, 1, { min: 1, max: 64 }),
    retries: parseIntegerOption("retries", values.retries, 0, { min: 0, max: 1000 }),
    retryDelayMs: parseSecondsOption("retry-delay", values["retry-delay"], 1_000),
    resume,
    verify: Boolean(values.verify) || resume,
    quiet: Boolean(values.quiet),
    tls: values.tls
      ? { caFile: stringOption(values.ca), serverName: stringOption(values["tls-name"]) }
      : undefined,
  };
}

function stringOption(value: string | boolean | undefined): string | undefined {
  return typeof value === "string" ? value : undefined;
}

/** One summary line on stdout; a closed stdout (`| head -1`) loses the line, never the run. */
function print(line: string): void {
  const bytes = new TextEncoder().encode(line + "\n");
  try {
    for (let done = 0; done < bytes.length;) done += Deno.stdout.writeSync(bytes.subarray(done));
  } catch {
    // Nobody reads the summaries any more; the exit code still tells.
  }
}

type Settings = ReturnType<typeof parseSettings>;

/** Where the uploads go, and what the run prints. */
interface Run {
  hostname: string;
  port: number;
  settings: Settings;
  /** Progress bars are drawn (a terminal, one upload at a time, not quiet). */
  bars: boolean;
  /** Several files: each bar is labelled with its file. */
  several: boolean;
  note: (line: string) => void;
  signal: AbortSignal;
  /** How to verify the server, when speaking TLS. */
  tls?: TlsClientOptions;
  /** The token to send, if any. */
  token?: string;
  /** Set once the server refused the token: the files not yet sent would only add failures to its back-off. */
  unauthorized?: RefusedError;
}

/** Delivers one item, with its progress bars and its retry notes. */
async function deliverItem(run: Run, item: UploadItem): Promise<DeliveryOutcome> {
  const { settings } = run;
  if (run.unauthorized) {
    const error = new RefusedError(UNAUTHORIZED, { message: "not sent: the server refused the token" });
    return { ok: false, error, attempts: 0, sentBytes: 0, durationMs: 0 };
  }
  const progress = progressBars(run.bars, run.several ? item.path : "");
  const outcome = await deliver({
    token: run.token,
    hostname: run.hostname,
    port: run.port,
    path: item.path,
    name: item.name,
    handshake: settings.handshake,
    timeoutMs: settings.timeoutMs,
    verify: settings.verify,
    resume: settings.resume,
    retries: settings.retries,
    retryDelayMs: settings.retryDelayMs,
    tls: run.tls,
    onHashProgress: progress.show("hashing"),
    onProgress: progress.show(""),
    signal: run.signal,
    onRetry: (retry, error, waitMs) => {
      progress.end();
      run.note(
        `${shownPath(item.path)}: attempt ${retry} failed: ${describeError(error)}; trying again in ${
          formatSeconds(waitMs)
        } (retry ${retry} of ${settings.retries})`,
      );
    },
  });
  if (outcome.ok) progress.finish();
  else progress.end(); // the line that follows starts on a line of its own
  if (!outcome.ok && outcome.error instanceof RefusedError && outcome.error.reason === UNAUTHORIZED) {
    run.unauthorized = outcome.error;
  }
  return outcome;
}

/** SIGINT, SIGTERM, SIGHUP abort every upload; the exit follows, or this backstop forces it. */
function stopOnSignals(): AbortSignal {
  const stop = new AbortController();
  abortOnSignals(stop, (error) => {
    setTimeout(() => {
      printError(`ERROR: ${error.message}`);
      Deno.exit(error.exitCode);
    }, INTERRUPT_GRACE_MS);
  });
  return stop.signal;
}

/**
 * The token, from `--token-file` or `ACCIO_TOKEN` (never the command line: `ps` shows it to every user);
 * refused without TLS unless `--allow-plaintext-tokens`.
 */
async function clientToken(
  values: Record<string, string | boolean | undefined>,
): Promise<ClientToken | undefined> {
  const found = await readClientToken(stringOption(values["token-file"]));
  if (found && !values.tls && !values["allow-plaintext-tokens"]) {
    throw new UsageError(
      `a token (from ${found.source}) without --tls would cross the network readable by anyone on the way: ` +
        "add --tls, or --allow-plaintext-tokens (a private network)",
    );
  }
  return found;
}

await runCommand(spec, Deno.args, async ({ positionals: [hostname, portText, ...paths], values }) => {
  const settings = parseSettings(values);
  const token = await clientToken(values);
  const port = await resolvePort(portText);
  const tls = settings.tls && await clientTlsOptions(settings.tls); // a bad --ca stops the run before any file
  const name = stringOption(values.name);
  const { uploads, skipped } = await listUploads(paths, {
    named: Boolean(values.named),
    name,
    verify: settings.verify,
  });
  const note = settings.quiet ? () => {} : (line: string) => printError(`client: ${line}`);
  for (const line of skipped) note(`skipped ${line}`);
  const bars = settings.parallel === 1 && !settings.quiet && Deno.stderr.isTerminal();
  const signal = stopOnSignals();
  const run: Run = {
    hostname,
    port,
    settings,
    bars,
    several: uploads.length > 1,
    note,
    signal,
    tls,
    token: token?.token,
  };
  const outcomes = await runBatch(uploads, settings.parallel, (item) => deliverItem(run, item), {
    signal,
    onDone: (item, outcome) => settings.quiet || print(summaryLine(item, outcome)),
  });
  // One refused token says it all: the same line for one file or many.
  const failure = run.unauthorized ?? batchVerdict(uploads, outcomes);
  if (failure) throw failure;
  return 0;
});
