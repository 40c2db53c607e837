/**
 * Test harness: a real S3 server on loopback. OpenStack Swift (Debian's
 * packages) with its `s3api` and `tempauth` middleware, one replica, in a
 * temporary directory, every process started and stopped by PID.
 *
 * ```ts
 * const availability = await ensureSwift();
 * if (!availability.ok) console.log(`SKIPPED ...: ${availability.why}`);
 * await using swift = await SwiftStore.start();
 * await swift.createBucket("uploads");
 * await swift.stop(); // an outage: the endpoint refuses connections
 * await swift.start(); // back, same port, same data
 * ```
 *
 * Swift's S3 layer answers `If-None-Match: *` with NotImplemented: tests never
 * rely on conditional PUT.
 *
 * @module
 */
import { AwsClient } from "aws4fetch";
import { installPackages } from "./debian.ts";
import { Proc } from "./process.ts";
import { waitFor } from "./wait.ts";
import { freePort } from "./wire.ts";

const PACKAGES = ["swift", "swift-proxy", "swift-object", "swift-container", "swift-account", "memcached"];
const PROGRAMS = [
  "/usr/bin/swift-proxy-server",
  "/usr/bin/swift-object-server",
  "/usr/bin/swift-container-server",
  "/usr/bin/swift-account-server",
  "/usr/bin/swift-ring-builder",
  "/usr/bin/memcached",
];
const SERVERS = ["account", "container", "object"] as const;
type Server = (typeof SERVERS)[number] | "proxy";

/** Whether Swift can run here, and if not, what could not be installed. */
export type Availability = { ok: true } | { ok: false; why: string };

async function run(command: string, args: string[]): Promise<{ ok: boolean; output: string }> {
  try {
    const out = await new Deno.Command(command, { args, stdin: "null" }).output();
    const output = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join(" | ");
    return { ok: out.success, output };
  } catch (error) {
    return { ok: false, output: String(error) };
  }
}

async function installed(): Promise<boolean> {
  const found = await Promise.all(PROGRAMS.map((p) => Deno.stat(p).then(() => true, () => false)));
  return found.every(Boolean);
}

/**
 * Installs Swift and memcached from Debian's packages when they are missing
 * (`apt-get update` first when the plain install fails). Never throws.
 */
export async function ensureSwift(): Promise<Availability> {
  if (!await installed()) {
    const failure = await installPackages(PACKAGES);
    if (failure !== undefined) return { ok: false, why: failure };
    if (!await installed()) {
      return { ok: false, why: `${PACKAGES.join(" ")} installed, but its programs are missing` };
    }
  }
  return await ensureSwiftConf();
}

const SWIFT_CONF =
  "[swift-hash]\nswift_hash_path_suffix = accio-test\nswift_hash_path_prefix = accio-test\n" +
  "[storage-policy:0]\nname = Policy-0\ndefault = yes\n";
const SYSTEM_SWIFT_CONF = "/etc/swift/swift.conf";

/**
 * Every Swift server validates `/etc/swift/swift.conf` at start, whatever its
 * own `swift_dir` says. The package ships one, but a machine may lack it (seen
 * on a clean CI machine): then write the same minimal one the tests use.
 * `createNew` leaves an existing one alone, and a parallel test file's too.
 */
async function ensureSwiftConf(): Promise<Availability> {
  try {
    await Deno.mkdir("/etc/swift", { recursive: true });
    await Deno.writeTextFile(SYSTEM_SWIFT_CONF, SWIFT_CONF, { createNew: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) {
      return { ok: false, why: `${SYSTEM_SWIFT_CONF} is missing and cannot be written: ${error}` };
    }
  }
  return { ok: true };
}

interface Ports {
  proxy: number;
  account: number;
  container: number;
  object: number;
  memcached: number;
}

function serverConf(dir: string, kind: (typeof SERVERS)[number], port: number): string {
  return `[DEFAULT]
bind_ip = 127.0.0.1
bind_port = ${port}
devices = ${dir}/devices
mount_check = false
swift_dir = ${dir}
workers = 0
log_level = WARNING
log_udp_host = 127.0.0.1
[pipeline:main]
pipeline = ${kind}-server
[app:${kind}-server]
use = egg:swift#${kind}
[${kind}-replicator]
[${kind}-updater]
[${kind}-auditor]
`;
}

function proxyConf(dir: string, ports: Ports): string {
  // Section name -> egg entry point: the pipeline's names are not all the eggs' names.
  const filters = Object.entries({
    catch_errors: "catch_errors",
    gatekeeper: "gatekeeper",
    healthcheck: "healthcheck",
    "proxy-logging": "proxy_logging",
    listing_formats: "listing_formats",
    copy: "copy",
    slo: "slo",
    dlo: "dlo",
  }).map(([section, egg]) => `[filter:${section}]\nuse = egg:swift#${egg}\n`).join("");
  return `[DEFAULT]
bind_ip = 127.0.0.1
bind_port = ${ports.proxy}
swift_dir = ${dir}
workers = 0
log_level = WARNING
log_udp_host = 127.0.0.1
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server
[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:${ports.memcached}
[filter:s3api]
use = egg:swift#s3api
location = us-east-1
[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin
${filters}`;
}

async function buildRing(dir: string, kind: string, port: number): Promise<void> {
  const builder = `${dir}/${kind}.builder`;
  for (
    const args of [
      [builder, "create", "10", "1", "1"],
      [builder, "add", `r1z1-127.0.0.1:${port}/d1`, "1"],
      [builder, "rebalance"],
    ]
  ) {
    const result = await run("swift-ring-builder", args);
    if (!result.ok) throw new Error(`swift-ring-builder ${args.slice(1).join(" ")}: ${result.output}`);
  }
}

async function configure(dir: string, ports: Ports): Promise<void> {
  await Deno.mkdir(`${dir}/devices/d1`, { recursive: true });
  await Deno.writeTextFile(`${dir}/swift.conf`, SWIFT_CONF);
  await Promise.all(SERVERS.map(async (kind) => {
    await Deno.writeTextFile(`${dir}/${kind}-server.conf`, serverConf(dir, kind, ports[kind]));
    await buildRing(dir, kind, ports[kind]);
  }));
  await Deno.writeTextFile(`${dir}/proxy-server.conf`, proxyConf(dir, ports));
}

/** A running single-replica Swift with the S3 API, on 127.0.0.1. */
export class SwiftStore implements AsyncDisposable {
  /** The S3 endpoint (path-style). */
  readonly endpoint: string;
  /** The S3 access key: tempauth's `account:user`. */
  readonly accessKeyId = "test:tester";
  /** The S3 secret: tempauth's key. */
  readonly secretAccessKey = "testing";
  /** The region s3api signs for. */
  readonly region = "us-east-1";
  readonly #dir: string;
  readonly #ports: Ports;
  readonly #memcached: Proc;
  #servers = new Map<Server, Proc>();

  private constructor(dir: string, ports: Ports, memcached: Proc) {
    this.#dir = dir;
    this.#ports = ports;
    this.#memcached = memcached;
    this.endpoint = `http://127.0.0.1:${ports.proxy}`;
  }

  /** Configures a fresh store in a temporary directory and starts it (healthy within 120 s). */
  static async start(): Promise<SwiftStore> {
    const dir = await Deno.makeTempDir({ prefix: "accio-swift-" });
    const ports: Ports = {
      proxy: freePort(),
      account: freePort(),
      container: freePort(),
      object: freePort(),
      memcached: freePort(),
    };
    const memcached = new Proc(
      "memcached",
      ["-l", "127.0.0.1", "-p", `${ports.memcached}`, "-U", "0", "-m", "64"]
        .concat(Deno.uid() === 0 ? ["-u", "root"] : []),
    );
    const store = new SwiftStore(dir, ports, memcached);
    try {
      await configure(dir, ports);
      await store.start();
    } catch (error) {
      await store[Symbol.asyncDispose]();
      throw error;
    }
    return store;
  }

  /** An S3 client (aws4fetch, no retries) with these credentials, or `secret` instead. */
  client(secret = this.secretAccessKey): AwsClient {
    return new AwsClient({
      accessKeyId: this.accessKeyId,
      secretAccessKey: secret,
      region: this.region,
      service: "s3",
      retries: 0,
    });
  }

  /** Whether the Swift servers are running (not in an outage). */
  get running(): boolean {
    return this.#servers.size > 0;
  }

  /** Starts the Swift servers (again, after {@link stop}) and waits until S3 requests succeed. */
  async start(): Promise<void> {
    if (this.running) return;
    for (const kind of [...SERVERS, "proxy"] as const) {
      this.#servers.set(kind, new Proc(`swift-${kind}-server`, [`${this.#dir}/${kind}-server.conf`]));
    }
    await this.#waitHealthy();
  }

  async #waitHealthy(): Promise<void> {
    // The proxy answers its healthcheck before the backends listen: wait for a real S3 answer.
    const client = this.client();
    await waitFor(
      async () => {
        for (const [kind, proc] of this.#servers) {
          if (proc.exited) {
            throw new Error(`swift-${kind}-server exited at start: ${proc.stderr.slice(-2000)}`);
          }
        }
        try {
          const response = await client.fetch(`${this.endpoint}/`, { signal: AbortSignal.timeout(5_000) });
          await response.body?.cancel();
          return response.status === 200;
        } catch {
          return false;
        }
      },
      // Seen taking over a minute when the whole suite runs in parallel on two cores.
      180_000,
      "Swift to answer S3 requests",
    );
  }

  /** Creates a bucket (S3 PUT bucket), retrying while a backend still starts (503), for 90 s at most. */
  async createBucket(name: string): Promise<void> {
    let last = "";
    await waitFor(
      async () => {
        const response = await this.client().fetch(`${this.endpoint}/${name}`, { method: "PUT" });
        last = `${response.status} ${await response.text()}`;
        if (response.ok) return true;
        if (response.status !== 503) throw new Error(`cannot create bucket ${name}: ${last}`);
        return false;
      },
      90_000,
      `bucket ${name} to be created (last answer: ${last})`,
    );
  }

  /** Stops the Swift servers by PID (an outage: connections to the endpoint are refused). */
  async stop(): Promise<void> {
    const servers = [...this.#servers.values()];
    this.#servers = new Map();
    await Promise.all(servers.map((proc) => stopProc(proc)));
  }

  /** Peak resident memory (KiB) of the Swift servers now running, summed. */
  rssKiB(): number {
    let total = 0;
    for (const proc of this.#servers.values()) {
      try {
        total += Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${proc.pid}/status`))?.[1] ?? 0);
      } catch {
        // Gone already.
      }
    }
    return total;
  }

  /** Stops every process by PID and removes the temporary directory. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
    await stopProc(this.#memcached);
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}

/** SIGTERM, then SIGKILL after 5 s; resolves once the process is gone. */
async function stopProc(proc: Proc): Promise<void> {
  if (proc.exited) return await proc[Symbol.asyncDispose]();
  try {
    proc.child.kill("SIGTERM");
  } catch {
    // Exited meanwhile.
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const ended = await Promise.race([
    proc.statusPromise.then(() => true),
    new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), 5_000)),
  ]);
  clearTimeout(timer);
  if (!ended) console.log(`swift harness: pid ${proc.pid} ignored SIGTERM for 5 s; killing it`);
  await proc[Symbol.asyncDispose]();
}
