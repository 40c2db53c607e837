/**
 * `client <HOSTNAME-OR-IP> <PORT> <FILENAME>`: upload one file to an Accio server.
 *
 * @module
 */
import { parseChoiceOption, parseSecondsOption, printError, runCommand } from "./lib/cli.ts";
import { upload } from "./lib/client.ts";
import { abortOnSignals } from "./lib/client_signals.ts";
import { DEFAULT_TIMEOUT_MS } from "./lib/deadline.ts";
import { UsageError } from "./lib/errors.ts";
import { resolvePort } from "./lib/port.ts";
import { ProgressBar } from "./lib/progress.ts";

const basename = (path: string) => path.replace(/\/+$/, "").split("/").at(-1) ?? path;

/** How long an interrupted upload may take to wind down before the program exits regardless. */
const INTERRUPT_GRACE_MS = 2_000;

const spec = {
  name: "client",
  usage: "client [options] <HOSTNAME-OR-IP> <PORT> <FILENAME>",
  summary: "Accio client: connects to the server, waits for its accio\\r\\n, sends FILENAME and " +
    "exits 0 once the server has confirmed it by closing the connection without a word. PORT is a " +
    "number or a service name from /etc/services. SIGINT, SIGTERM and SIGHUP abort the upload " +
    "with a reset (the server records ERROR) and exit 130, 143 and 129.",
  positionals: ["HOSTNAME-OR-IP", "PORT", "FILENAME"],
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
      help: "store the file at PATH on the server (server --names)",
    },
    named: { type: "boolean", help: "store the file under its own base name (server --names)" },
    verify: {
      type: "boolean",
      help: "send length and SHA-256; exit 0 only on the server's ok (server --headers)",
    },
    quiet: {
      type: "boolean",
      help: "no progress bars (they are shown only when stderr is a terminal)",
    },
  },
} as const;

/** The progress bars of one run, on a terminal: `hashing` (with --verify), then the upload's. */
function progressBars(enabled: boolean) {
  let current: ProgressBar | undefined;
  let label: string | undefined;
  const show = (which: string) =>
    enabled
      ? (done: number, total: number | undefined) => {
        if (label !== which) {
          current?.finish();
          current = new ProgressBar(Deno.stderr, total, which);
          label = which;
        }
        current?.update(done);
      }
      : undefined;
  return { show, finish: () => current?.finish(), end: () => current?.end() };
}

await runCommand(spec, Deno.args, async ({ positionals: [hostname, portText, path], values }) => {
  const timeoutMs = parseSecondsOption("timeout", values.timeout, DEFAULT_TIMEOUT_MS);
  const handshake = values.handshake === undefined
    ? undefined
    : parseChoiceOption("handshake", values.handshake, ["single", "double"], "single");
  const port = await resolvePort(portText);
  if (values.name !== undefined && values.named) {
    throw new UsageError("--name and --named exclude each other");
  }
  const name = typeof values.name === "string" ? values.name : values.named ? basename(path) : undefined;
  const bars = progressBars(!values.quiet && Deno.stderr.isTerminal());
  const stop = new AbortController();
  abortOnSignals(stop, (error) => {
    // The upload's rejection normally ends the program at once; this is the backstop.
    setTimeout(() => {
      bars.end();
      printError(`ERROR: ${error.message}`);
      Deno.exit(error.exitCode);
    }, INTERRUPT_GRACE_MS);
  });
  try {
    await upload({
      hostname,
      port,
      path,
      handshake,
      timeoutMs,
      name,
      verify: Boolean(values.verify),
      onHashProgress: bars.show("hashing"),
      onProgress: bars.show(""),
      signal: stop.signal,
    });
  } catch (error) {
    bars.end(); // the ERROR line that follows starts on a line of its own
    throw error;
  }
  bars.finish();
  return 0;
});
