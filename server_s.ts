/**
 * `server-s <PORT>`: the simplified Accio server. Serves one connection at a
 * time and prints each upload's byte count (or `ERROR`) on stdout.
 *
 * @module
 */
import {
  parseChoiceOption,
  parseSecondsOption,
  runCommand,
  SERVER_HANDSHAKE_OPTION,
  SERVER_TIMEOUT_OPTION,
} from "./lib/cli.ts";
import { CountingServer } from "./lib/counting_server.ts";
import { DEFAULT_TIMEOUT_MS } from "./lib/deadline.ts";
import { formatAddress } from "./lib/listen.ts";
import { LineWriter } from "./lib/log.ts";
import { parsePort } from "./lib/port.ts";
import { onStopSignals, surviveUncaughtErrors } from "./lib/signals.ts";
import { onReloadSignal } from "./lib/reload.ts";
import { parseTlsFiles, serverTls, TLS_OPTIONS } from "./lib/tls_options.ts";

const spec = {
  name: "server-s",
  usage: "server-s [options] <PORT>",
  summary: "Simplified Accio server: serves one connection at a time (others wait, none refused) " +
    "and prints the number of file bytes each one sent, or ERROR after a stall.",
  positionals: ["PORT"],
  options: {
    timeout: SERVER_TIMEOUT_OPTION,
    handshake: SERVER_HANDSHAKE_OPTION,
    ...TLS_OPTIONS,
    quiet: { type: "boolean", help: "log nothing on stderr but fatal errors" },
  },
} as const;

// Neither the counts on stdout nor the log on stderr can throw or block (see lib/log.ts).
const stdout = new LineWriter(Deno.stdout);
const stderr = new LineWriter(Deno.stderr, { timestamps: true });

await runCommand(spec, Deno.args, async ({ positionals: [portText], values }) => {
  try {
    const port = parsePort(portText);
    const idleTimeoutMs = parseSecondsOption("timeout", values.timeout, DEFAULT_TIMEOUT_MS);
    const handshake = parseChoiceOption("handshake", values.handshake, ["auto", "single", "double"], "auto");
    const tlsFiles = parseTlsFiles(values);
    const log = values.quiet ? () => {} : (line: string) => stderr.write(`server-s: ${line}`);
    surviveUncaughtErrors(log);
    const tls = tlsFiles && await serverTls(tlsFiles, { timeoutMs: idleTimeoutMs, log });
    // SIGHUP reads the certificate again (without TLS it keeps its default meaning: stop).
    if (tls) onReloadSignal([tls.reloadable], log);
    const server = CountingServer.start({
      port,
      idleTimeoutMs,
      handshake,
      gates: tls ? [tls.gate] : [],
      onResult: (line) => stdout.write(line),
      onLog: log,
    });
    log(`listening on ${formatAddress(server.addr)}`);
    onStopSignals({ graceful: () => server.shutdown(), immediate: () => server.close() });
    await server.finished;
    return 0;
  } finally {
    await Promise.all([stdout.flush(1_000), stderr.flush(1_000)]);
  }
});
