/**
 * A real HAProxy for the tests: installed from Debian's packages when missing
 * (root with apt-get only), configured in a temporary directory as the
 * load balancer in front of Accio gateways on loopback (mode tcp, balance
 * leastconn, send-proxy-v2, health checks), run in the foreground and stopped
 * by its PID.
 *
 * A test module asks {@link ensureHaproxy} once; where HAProxy cannot be had,
 * {@link skipWithoutHaproxy} prints a loud `SKIPPED:` line naming what could
 * not be installed, and the module marks its tests ignored.
 *
 * @example
 * ```ts
 * import { ensureHaproxy, skipWithoutHaproxy, startHaproxy } from "./support/haproxy.ts";
 * const ignore = skipWithoutHaproxy(await ensureHaproxy(), "the HAProxy smoke test");
 * Deno.test({ name: "behind HAProxy", ignore }, async () => {
 *   await using haproxy = await startHaproxy({ backends: [5001, 5002, 5003] });
 *   await haproxy.waitForServers("UP");
 *   // connect to 127.0.0.1:haproxy.port
 * });
 * ```
 * @module
 */
import { installPackages } from "./debian.ts";
import { tempDir } from "./files.ts";
import { Proc } from "./process.ts";
import { waitFor } from "./wait.ts";
import { freePort } from "./wire.ts";

/** Whether HAProxy can be run here: its version line, or why not. */
export type HaproxyAvailability =
  | { available: true; version: string }
  | { available: false; reason: string };

/** How {@link startHaproxy} configures the balancer. */
export interface HaproxyOptions {
  /**
   * The gateways, as servers `g1`, `g2`, ... in that order: a port on
   * 127.0.0.1, or the path of a Unix socket (where a test must see every
   * health check: on TCP, most of them reset before Deno's accept returns).
   */
  backends: (number | string)[];
  /** The gateways' idle timeout; HAProxy's client and server timeouts are set above it. Default 10 s. */
  idleTimeoutMs?: number;
  /** Interval of the health checks. Default 250 ms. */
  checkIntervalMs?: number;
  /** Which PROXY protocol header HAProxy sends. Default `v2`. */
  sendProxy?: "v1" | "v2";
  /** Also listen on `[::1]:port`, so that a test can show an IPv6 client. Default false. */
  ipv6?: boolean;
  /** The frontend's port on 127.0.0.1. Default: a free one. */
  port?: number;
}

/** A running HAProxy, stopped (by PID) when disposed. */
export interface RunningHaproxy extends AsyncDisposable {
  /** The frontend's port on 127.0.0.1 (and on ::1 with `ipv6`). */
  readonly port: number;
  /** The HAProxy process's PID. */
  readonly pid: number;
  /** The temporary directory holding the configuration and the stats socket. */
  readonly dir: string;
  /** The configuration it runs with. */
  readonly config: string;
  /** Its log so far (HAProxy logs to stderr here, one `option tcplog` line per connection). */
  log(): string;
  /** Each server's status from the stats socket, by name (`g1` ...): `UP`, `DOWN`, `no check`, ... */
  servers(): Promise<Map<string, string>>;
  /** Waits (bounded) until the named servers (default: all) report `status`. */
  waitForServers(status: "UP" | "DOWN", names?: string[], timeoutMs?: number): Promise<void>;
  /** Stops HAProxy (SIGTERM to its PID, SIGKILL if it lingers) and waits for its exit. */
  stop(): Promise<void>;
}

const BACKEND = "accio_gateways";
let availability: Promise<HaproxyAvailability> | undefined;

/**
 * Finds HAProxy, installing it when missing if this process is root and has
 * apt-get (`apt-get install -y --no-install-recommends haproxy`, with an
 * `apt-get update` first when that fails). The answer is computed once.
 *
 * @example
 * ```ts
 * import { ensureHaproxy } from "./support/haproxy.ts";
 * const found = await ensureHaproxy();
 * if (found.available) console.log(found.version);
 * ```
 */
export function ensureHaproxy(): Promise<HaproxyAvailability> {
  availability ??= (async () => {
    const before = await haproxyVersion();
    if (before) return { available: true, version: before };
    const failure = await installPackages(["haproxy"]);
    const after = await haproxyVersion();
    if (after) return { available: true, version: after };
    return { available: false, reason: failure ?? "haproxy is still not on PATH after installing it" };
  })();
  return availability;
}

/**
 * Prints the loud `SKIPPED:` line when HAProxy is not available, and returns
 * the `ignore` flag for the tests that need it.
 *
 * @example
 * ```ts
 * import { ensureHaproxy, skipWithoutHaproxy } from "./support/haproxy.ts";
 * const ignore = skipWithoutHaproxy(await ensureHaproxy(), "the three-gateway test");
 * ```
 */
export function skipWithoutHaproxy(found: HaproxyAvailability, what: string): boolean {
  if (found.available) return false;
  console.log(
    `SKIPPED: ${what}: could not install HAProxy (the Debian package "haproxy"): ${found.reason}`,
  );
  return true;
}

async function haproxyVersion(): Promise<string | undefined> {
  try {
    const { success, stdout } = await new Deno.Command("haproxy", {
      args: ["-v"],
      stdout: "piped",
      stderr: "null",
    })
      .output();
    return success ? new TextDecoder().decode(stdout).split("\n")[0].trim() : undefined;
  } catch {
    return undefined; // not on PATH
  }
}

/**
 * The configuration text for `options`: one frontend on 127.0.0.1, one
 * backend of the gateways with leastconn, the PROXY protocol and checks.
 *
 * @example
 * ```ts
 * import { haproxyConfig } from "./support/haproxy.ts";
 * const text = haproxyConfig({ backends: [5001] }, 5000, "/tmp/x");
 * ```
 */
export function haproxyConfig(options: HaproxyOptions, port: number, dir: string): string {
  const idle = options.idleTimeoutMs ?? 10_000;
  const inter = options.checkIntervalMs ?? 250;
  const send = options.sendProxy === "v1" ? "send-proxy" : "send-proxy-v2";
  const servers = options.backends.map((backend, i) =>
    `    server g${i + 1} ${
      typeof backend === "number" ? `127.0.0.1:${backend}` : `unix@${backend}`
    } ${send} ` +
    `check inter ${inter}ms fall 2 rise 1`
  );
  return [
    "global",
    "    log stderr format raw local0 info",
    `    stats socket ${dir}/admin.sock mode 600 level admin`,
    "    maxconn 4096",
    "defaults",
    "    mode tcp",
    "    log global",
    "    option tcplog",
    "    retries 3",
    "    option redispatch 1", // a refused connect is retried on another gateway, not failed
    "    timeout connect 2s",
    // Above the gateways' idle timeout: the gateway, not the balancer, decides that an upload stalled.
    `    timeout client ${idle + 5_000}ms`,
    `    timeout server ${idle + 5_000}ms`,
    `    timeout check ${Math.max(2_000, inter)}ms`,
    "frontend accio",
    `    bind 127.0.0.1:${port}`,
    ...(options.ipv6 ? [`    bind [::1]:${port}`] : []),
    `    default_backend ${BACKEND}`,
    `backend ${BACKEND}`,
    "    balance leastconn",
    ...servers,
    "",
  ].join("\n");
}

/**
 * Writes the configuration, checks it with `haproxy -c`, starts HAProxy in
 * the foreground (`-db`) and waits (bounded) until its stats socket answers and
 * shows the frontend open: its listener is bound by then.
 *
 * @throws Error when the configuration is refused or HAProxy does not come up within 10 s.
 *
 * @example
 * ```ts
 * import { startHaproxy } from "./support/haproxy.ts";
 * await using haproxy = await startHaproxy({ backends: [5001, 5002] });
 * ```
 */
export async function startHaproxy(options: HaproxyOptions): Promise<RunningHaproxy> {
  const dir = await tempDir();
  const port = options.port ?? freePort();
  const config = haproxyConfig(options, port, dir);
  const path = `${dir}/haproxy.cfg`;
  await Deno.writeTextFile(path, config);
  const check = await new Deno.Command("haproxy", { args: ["-c", "-q", "-f", path], stderr: "piped" })
    .output();
  if (!check.success) {
    throw new Error(`haproxy -c refused the config: ${new TextDecoder().decode(check.stderr)}`);
  }
  const proc = new Proc("haproxy", ["-db", "-f", path]);
  const running = runningHaproxy(proc, port, dir, config);
  try {
    await waitFor(
      async () => proc.exited || /^accio,FRONTEND,.*,OPEN,/m.test(await stats(dir).catch(() => "")),
      10_000,
      "HAProxy's frontend to open",
    );
    if (proc.exited) throw new Error(`haproxy exited at start: ${proc.stderr}`);
  } catch (error) {
    await running.stop();
    throw error;
  }
  return running;
}

function runningHaproxy(proc: Proc, port: number, dir: string, config: string): RunningHaproxy {
  const stop = async () => {
    await proc.stop("SIGTERM", 5_000).catch(() => proc[Symbol.asyncDispose]());
  };
  const servers = async () => parseServers(await stats(dir));
  return {
    port,
    pid: proc.pid,
    dir,
    config,
    log: () => proc.stderr,
    servers,
    waitForServers: async (status, names, timeoutMs = 10_000) => {
      await waitFor(
        async () => {
          const all = await servers().catch(() => new Map<string, string>());
          const wanted = names ?? [...all.keys()];
          return wanted.length > 0 && wanted.every((name) => all.get(name)?.startsWith(status));
        },
        timeoutMs,
        `HAProxy servers ${names?.join(", ") ?? "(all)"} to be ${status}`,
      );
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/** Server name to status, from `show stat` CSV rows of the gateways' backend. */
function parseServers(csv: string): Map<string, string> {
  const lines = csv.split("\n");
  const columns = (lines[0] ?? "").replace(/^# /, "").split(",");
  const status = columns.indexOf("status");
  const result = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const fields = line.split(",");
    if (fields[0] !== BACKEND || fields[1] === "BACKEND") continue;
    result.set(fields[1], fields[status]);
  }
  return result;
}

/** One `show stat` over the stats socket, bounded to 2 s. */
async function stats(dir: string): Promise<string> {
  const conn = await Deno.connect({ transport: "unix", path: `${dir}/admin.sock` });
  const timer = setTimeout(() => conn.close(), 2_000);
  try {
    await conn.write(new TextEncoder().encode("show stat\n"));
    const chunks: string[] = [];
    const decoder = new TextDecoder();
    const buffer = new Uint8Array(16_384);
    for (let n; (n = await conn.read(buffer)) !== null;) chunks.push(decoder.decode(buffer.subarray(0, n)));
    return chunks.join("");
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
}
