/**
 * Ports for the bench's servers: free ones to give them, and whether they
 * listen yet. Listening is read from the kernel's socket tables rather than
 * probed: `nc -l` and `iperf3 -s -1` serve exactly one connection, and a probe
 * would be it.
 *
 * @module
 */
import { TimeoutError } from "../lib/errors.ts";
import type { Child } from "./programs.ts";

/** `count` different ports that were free on IPv4 and IPv6 a moment ago: all are held until all are chosen. */
export function freePorts(count: number): number[] {
  const listeners = Array.from({ length: count }, () => Deno.listen({ hostname: "::", port: 0 }));
  const ports = listeners.map((listener) => (listener.addr as Deno.NetAddr).port);
  listeners.forEach((listener) => listener.close());
  return ports;
}

const TCP_LISTEN = "0A";

/** Local ports with a TCP socket in the LISTEN state, from /proc/net/tcp and /proc/net/tcp6. */
export async function listeningPorts(): Promise<Set<number>> {
  const ports = new Set<number>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    const text = await Deno.readTextFile(table).catch(() => "");
    // Each row after the header: "sl local_address rem_address st ...", the address as HEXIP:HEXPORT.
    for (const row of text.split("\n").slice(1)) {
      const [, local, , state] = row.trim().split(/\s+/);
      if (state === TCP_LISTEN) ports.add(parseInt(local.slice(local.lastIndexOf(":") + 1), 16));
    }
  }
  return ports;
}

/**
 * Waits until every one of `ports` listens, polling every 20 ms; fails after
 * `ms`, or as soon as one of `servers` (the processes meant to listen) exits.
 */
export async function untilListening(
  ports: number[],
  servers: Child[],
  ms: number,
  what: string,
): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const listening = await listeningPorts();
    if (ports.every((port) => listening.has(port))) return;
    const gone = servers.find((server) => server.exited);
    if (gone) throw new Error(`${what} exited before listening: ${gone.stderr}`);
    if (Date.now() > end) throw new TimeoutError(`${what} not listening within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
