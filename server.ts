/**
 * `server <PORT> <FILE-DIR>`: receive uploads concurrently and save each as
 * `<FILE-DIR>/<N>.file`.
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
import { DEFAULT_TIMEOUT_MS } from "./lib/deadline.ts";
import { formatAddress } from "./lib/listen.ts";
import { parsePort } from "./lib/port.ts";
import { AccioServer, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HEADER_BYTES } from "./lib/server.ts";
import { onStopSignals, surviveFileSizeLimit } from "./lib/signals.ts";

const spec = {
  name: "server",
  usage: "server [options] <PORT> <FILE-DIR>",
  summary: "Accio server: listens on PORT on every interface and saves the upload of the N-th " +
    "connection as FILE-DIR/N.file (after the highest N already there). An upload that stalls, " +
    "breaks or is cut off is saved as the 5 bytes ERROR.",
  positionals: ["PORT", "FILE-DIR"],
  options: {
    timeout: { type: "string", valueName: "SECONDS", help: "idle timeout per connection (default 10)" },
    handshake: {
      type: "string",
      valueName: "MODE",
      help: "auto (default: single or double, per connection), single, or double",
    },
    "max-connections": {
      type: "string",
      valueName: "N",
      help: `uploads served at once; more wait in the backlog (default ${DEFAULT_MAX_CONNECTIONS})`,
    },
    "max-size": { type: "string", valueName: "BYTES", help: "largest upload, e.g. 4G (default: no limit)" },
    "max-header": {
      type: "string",
      valueName: "BYTES",
      help: `largest double-handshake header (default ${DEFAULT_MAX_HEADER_BYTES})`,
    },
    quiet: { type: "boolean", help: "log nothing but fatal errors" },
    verbose: { type: "boolean", help: "log every upload, not only failed ones" },
  },
} as const;

await runCommand(spec, Deno.args, async ({ positionals: [portText, directory], values }) => {
  const port = parsePort(portText);
  const log = values.quiet ? () => {} : (line: string) => printError(`server: ${line}`);
  const server = await AccioServer.start({
    port,
    directory,
    idleTimeoutMs: parseSecondsOption("timeout", values.timeout, DEFAULT_TIMEOUT_MS),
    handshake: parseChoiceOption("handshake", values.handshake, ["auto", "single", "double"], "auto"),
    maxConnections: parseIntegerOption("max-connections", values["max-connections"], DEFAULT_MAX_CONNECTIONS),
    maxUploadBytes: parseIntegerOption("max-size", values["max-size"], Infinity, { min: 0, units: true }),
    maxHeaderBytes: parseIntegerOption("max-header", values["max-header"], DEFAULT_MAX_HEADER_BYTES, {
      min: 64,
      units: true,
    }),
    onLog: log,
    onUpload: (u) => {
      if (u.outcome === "error") log(`${u.file} from ${u.peer}: ERROR: ${u.reason}`);
      else if (values.verbose) log(`${u.file} from ${u.peer}: saved ${u.bytes} bytes`);
    },
  });
  log(
    `listening on ${formatAddress(server.addr)}, saving to ${directory} from ${
      server.directory.lastId + 1
    }.file`,
  );
  surviveFileSizeLimit();
  onStopSignals({
    graceful: () => {
      log(`stopping: no new connections, finishing ${server.activeConnections} in flight`);
      server.shutdown();
    },
    immediate: () => server.close(),
  });
  await server.finished;
  return 0;
});
