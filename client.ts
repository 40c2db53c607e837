/**
 * `client <HOSTNAME-OR-IP> <PORT> <FILENAME>`: upload one file to an Accio server.
 *
 * @module
 */
import { parseChoiceOption, parseSecondsOption, runCommand } from "./lib/cli.ts";
import { upload } from "./lib/client.ts";
import { DEFAULT_TIMEOUT_MS } from "./lib/deadline.ts";
import { UsageError } from "./lib/errors.ts";
import { resolvePort } from "./lib/port.ts";
import { ProgressBar } from "./lib/progress.ts";

const basename = (path: string) => path.replace(/\/+$/, "").split("/").at(-1) ?? path;

const spec = {
  name: "client",
  usage: "client [options] <HOSTNAME-OR-IP> <PORT> <FILENAME>",
  summary: "Accio client: connects to the server, waits for its accio\\r\\n, sends FILENAME and " +
    "exits 0 once the server has confirmed it by closing the connection. PORT is a number or a " +
    "service name from /etc/services.",
  positionals: ["HOSTNAME-OR-IP", "PORT", "FILENAME"],
  options: {
    timeout: {
      type: "string",
      valueName: "SECONDS",
      help: "longest wait for the server to connect, greet, take data or confirm (default 10)",
    },
    handshake: { type: "string", valueName: "MODE", help: "single (default) or double" },
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
    quiet: { type: "boolean", help: "no progress bar (it is shown only when stderr is a terminal)" },
  },
} as const;

await runCommand(spec, Deno.args, async ({ positionals: [hostname, portText, path], values }) => {
  const timeoutMs = parseSecondsOption("timeout", values.timeout, DEFAULT_TIMEOUT_MS);
  const handshake = parseChoiceOption("handshake", values.handshake, ["single", "double"], "single");
  const port = await resolvePort(portText);
  if (values.name !== undefined && values.named) {
    throw new UsageError("--name and --named exclude each other");
  }
  const name = typeof values.name === "string" ? values.name : values.named ? basename(path) : undefined;
  const bar = !values.quiet && Deno.stderr.isTerminal()
    ? { current: undefined as ProgressBar | undefined }
    : undefined;
  await upload({
    hostname,
    port,
    path,
    handshake,
    timeoutMs,
    name,
    verify: Boolean(values.verify),
    onProgress: bar && ((sent, total) => (bar.current ??= new ProgressBar(Deno.stderr, total)).update(sent)),
  });
  bar?.current?.finish();
  return 0;
});
