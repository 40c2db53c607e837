/**
 * `client <HOSTNAME-OR-IP> <PORT> <FILENAME>`: upload one file to an Accio server.
 *
 * @module
 */
import { parseChoiceOption, parseSecondsOption, runCommand } from "./lib/cli.ts";
import { upload } from "./lib/client.ts";
import { DEFAULT_TIMEOUT_MS } from "./lib/deadline.ts";
import { resolvePort } from "./lib/port.ts";

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
  },
} as const;

await runCommand(spec, Deno.args, async ({ positionals: [hostname, portText, path], values }) => {
  const timeoutMs = parseSecondsOption("timeout", values.timeout, DEFAULT_TIMEOUT_MS);
  const handshake = parseChoiceOption("handshake", values.handshake, ["single", "double"], "single");
  const port = await resolvePort(portText);
  await upload({ hostname, port, path, handshake, timeoutMs });
  return 0;
});
