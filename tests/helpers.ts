/**
 * Test harness: starts the real entry points as subprocesses, with exactly the
 * permissions of their `deno task`, and talks to them over loopback sockets.
 * Every wait is bounded; every process is stopped by the test that started it
 * (`await using`).
 *
 * @module
 */
import { createHash } from "node:crypto";
import denoConfig from "../deno.json" with { type: "json" };

export const ROOT = new URL("..", import.meta.url).pathname;
export const PEERS = new URL("./peers/", import.meta.url).pathname;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
export const bytes = (text: string): Uint8Array => encoder.encode(text);
export const text = (data: Uint8Array): string => decoder.decode(data);

export type Program = "server" | "client" | "server-s";

/** `deno run` arguments of a program's task in deno.json: the same permissions as users get. */
export function taskArgs(program: Program): string[] {
  const task = denoConfig.tasks[program];
  const words = task.split(/\s+/);
  if (words[0] !== "deno" || words[1] !== "run") {
    throw new Error(`task ${program} is not "deno run ...": ${task}`);
  }
  return [...words.slice(1, -1), `${ROOT}${words.at(-1)}`];
}

/** Sleeps `ms`. */
export const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `predicate` every 20 ms until it holds; fails after `timeoutMs`. */
export async function waitFor(
  predicate: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(20);
  }
}

/** A port that was free a moment ago, on both IPv4 and IPv6. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "::", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

// Every temporary directory of one test module lives under one root, removed when the module unloads.
const TEST_ROOT = Deno.makeTempDirSync({ prefix: "accio-test-" });
globalThis.addEventListener("unload", () => Deno.removeSync(TEST_ROOT, { recursive: true }));

/** A fresh temporary directory, removed with the test module. */
export function tempDir(): Promise<string> {
  return Deno.makeTempDir({ dir: TEST_ROOT });
}

/** A running subprocess whose output is collected as it arrives. */
export class Proc {
  readonly child: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  readonly #pumps: Promise<void>[];
  #status: Deno.CommandStatus | undefined;
  readonly statusPromise: Promise<Deno.CommandStatus>;
  /** Highest VmHWM (peak resident set, KiB) read from /proc while it ran. */
  peakRssKiB = 0;
  #sampler: ReturnType<typeof setInterval> | undefined;

  constructor(command: string, args: string[], options: { env?: Record<string, string>; cwd?: string } = {}) {
    this.child = new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: options.env,
      cwd: options.cwd,
    }).spawn();
    this.#pumps = [
      this.#pump(this.child.stdout, (s) => this.stdout += s),
      this.#pump(this.child.stderr, (s) => this.stderr += s),
    ];
    this.statusPromise = this.child.status.then((status) => {
      this.#status = status;
      return status;
    });
  }

  async #pump(stream: ReadableStream<Uint8Array>, append: (s: string) => void): Promise<void> {
    const textStream = stream.pipeThrough(new TextDecoderStream());
    for await (const chunk of textStream) append(chunk);
  }

  get pid(): number {
    return this.child.pid;
  }

  get exited(): boolean {
    return this.#status !== undefined;
  }

  /** Samples the peak RSS from /proc every `everyMs` until the process ends. */
  trackMemory(everyMs = 25): void {
    const sample = () => {
      try {
        const status = Deno.readTextFileSync(`/proc/${this.pid}/status`);
        const kib = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
        this.peakRssKiB = Math.max(this.peakRssKiB, kib);
      } catch {
        // The process is gone; the last sample stands.
      }
    };
    sample();
    this.#sampler = setInterval(sample, everyMs);
  }

  /** Waits for the exit (at most `timeoutMs`, then SIGKILL and fail); returns the status with all output read. */
  async wait(timeoutMs = 20_000): Promise<Deno.CommandStatus> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<"timeout">((resolve) =>
      timer = setTimeout(() => resolve("timeout"), timeoutMs)
    );
    const result = await Promise.race([this.statusPromise, timedOut]);
    clearTimeout(timer);
    if (result === "timeout") {
      this.#kill("SIGKILL");
      await this.statusPromise;
      await this.#finish();
      throw new Error(`process did not exit within ${timeoutMs} ms; stderr:\n${this.stderr}`);
    }
    await this.#finish();
    return result;
  }

  async #finish(): Promise<void> {
    clearInterval(this.#sampler);
    await Promise.all(this.#pumps);
  }

  #kill(signal: Deno.Signal): void {
    try {
      this.child.kill(signal);
    } catch {
      // Already exited.
    }
  }

  /** Sends `signal` and waits for the exit. */
  async stop(signal: Deno.Signal = "SIGTERM", timeoutMs = 10_000): Promise<Deno.CommandStatus> {
    if (!this.exited) this.#kill(signal);
    return await this.wait(timeoutMs);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.exited) this.#kill("SIGKILL");
    await this.statusPromise;
    await this.#finish();
  }
}

/**
 * Starts a Deno program with its task's permissions. `wrap` is a command
 * prefix that ends by exec-ing its arguments (`prlimit ... --`, `unshare ...`),
 * so the process keeps its PID.
 */
export function spawnProgram(program: Program, args: string[], wrap: string[] = []): Proc {
  const command = [...wrap, Deno.execPath(), ...taskArgs(program), ...args];
  return new Proc(command[0], command.slice(1));
}

/** A started server: the process, its port, and for `server` its directory. */
export interface RunningServer extends AsyncDisposable {
  proc: Proc;
  port: number;
  dir: string;
}

/**
 * Starts `server <port> <dir> ...extra` (or `server-s <port> ...extra`) and
 * waits for its "listening" line.
 */
export async function startServer(
  program: "server" | "server-s",
  { dir, extra = [], port = freePort(), wrap = [] }: {
    dir?: string;
    extra?: string[];
    port?: number;
    wrap?: string[];
  } = {},
): Promise<RunningServer> {
  const directory = program === "server" ? dir ?? await tempDir() : "";
  const args = program === "server" ? [...extra, String(port), directory] : [...extra, String(port)];
  const proc = spawnProgram(program, args, wrap);
  try {
    await waitFor(() => proc.stderr.includes("listening on") || proc.exited, 15_000, `${program} to listen`);
    if (proc.exited) throw new Error(`${program} exited at start: ${proc.stderr}`);
  } catch (error) {
    await proc[Symbol.asyncDispose]();
    throw error;
  }
  return { proc, port, dir: directory, [Symbol.asyncDispose]: () => proc[Symbol.asyncDispose]() };
}

/** Runs the client to completion (bounded). */
export async function runClient(
  args: string[],
  timeoutMs = 30_000,
): Promise<{ code: number; stdout: string; stderr: string; proc: Proc }> {
  const proc = spawnProgram("client", args);
  const status = await proc.wait(timeoutMs);
  return { code: status.code, stdout: proc.stdout, stderr: proc.stderr, proc };
}

/** Connects a raw TCP socket to loopback. */
export function connect(port: number, hostname = "127.0.0.1"): Promise<Deno.TcpConn> {
  return Deno.connect({ hostname, port });
}

/** Reads exactly `n` bytes (bounded by `timeoutMs`). */
export async function readExactly(conn: Deno.Conn, n: number, timeoutMs = 10_000): Promise<Uint8Array> {
  const buffer = new Uint8Array(n);
  let filled = 0;
  const end = Date.now() + timeoutMs;
  while (filled < n) {
    const got = await readWithTimeout(conn, buffer.subarray(filled), end - Date.now());
    if (got === "timeout") throw new Error(`timed out after ${timeoutMs} ms with ${filled} of ${n} bytes`);
    if (got === null) throw new Error(`connection closed after ${filled} of ${n} bytes`);
    filled += got;
  }
  return buffer;
}

// A read that timed out in a test is still pending in the runtime and would swallow the next bytes;
// keep it, per connection, and hand its bytes to the next read instead.
const pendingReads = new WeakMap<Deno.Conn, Promise<Uint8Array | null>>();

function nextChunk(conn: Deno.Conn): Promise<Uint8Array | null> {
  let chunk = pendingReads.get(conn);
  if (!chunk) {
    const buffer = new Uint8Array(64 * 1024);
    chunk = conn.read(buffer).then((n) => n === null ? null : buffer.subarray(0, n));
    pendingReads.set(conn, chunk);
  }
  return chunk;
}

/** One read, or `"timeout"` after `ms` (the bytes then go to the next read). */
export async function readWithTimeout(
  conn: Deno.Conn,
  buffer: Uint8Array,
  ms: number,
): Promise<number | null | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) =>
    timer = setTimeout(() => resolve("timeout"), Math.max(ms, 0))
  );
  let chunk;
  try {
    chunk = await Promise.race([nextChunk(conn), timeout]);
  } catch (error) {
    pendingReads.delete(conn);
    throw error;
  } finally {
    clearTimeout(timer);
  }
  if (chunk === "timeout") return chunk;
  pendingReads.delete(conn);
  if (chunk === null) return null;
  const n = Math.min(chunk.length, buffer.length);
  buffer.set(chunk.subarray(0, n));
  if (n < chunk.length) pendingReads.set(conn, Promise.resolve(chunk.subarray(n)));
  return n;
}

/**
 * Reads until the peer closes; returns what arrived, or "reset" if the peer
 * reset the connection. Fails after `timeoutMs`.
 */
export async function readToEnd(conn: Deno.Conn, timeoutMs = 15_000): Promise<Uint8Array | "reset"> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(64 * 1024);
  const end = Date.now() + timeoutMs;
  for (;;) {
    let n;
    try {
      n = await readWithTimeout(conn, buffer, end - Date.now());
    } catch (error) {
      if (error instanceof Deno.errors.ConnectionReset) return "reset";
      throw error;
    }
    if (n === "timeout") throw new Error(`peer did not close within ${timeoutMs} ms`);
    if (n === null) break;
    chunks.push(buffer.slice(0, n));
  }
  const all = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    all.set(chunk, offset);
    offset += chunk.length;
  }
  return all;
}

/** Writes all of `data`. */
export async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let done = 0; done < data.length;) done += await conn.write(data.subarray(done));
}

/** The client's side of the double handshake up to (not including) `confirm-accio-again\r\n`. */
export async function doubleHandshake(conn: Deno.Conn): Promise<void> {
  await readExactly(conn, 7);
  await writeAll(conn, bytes("confirm-accio\r\n"));
  await readExactly(conn, 7);
}

/**
 * A raw double-handshake upload: the handshake, then `rest` (from
 * `confirm-accio-again\r\n` on), a half-close, and whatever the server sends
 * until it closes (or `"reset"`). Write errors are ignored: a server may cut
 * the peer off part-way, and the reply says how it ended.
 */
export async function rawDoubleUpload(port: number, rest: Uint8Array): Promise<Uint8Array | "reset"> {
  const conn = await connect(port);
  try {
    await doubleHandshake(conn);
    await writeAll(conn, rest).catch(() => {});
    await conn.closeWrite().catch(() => {});
    return await readToEnd(conn, 10_000).catch(() => "reset" as const);
  } finally {
    conn.close();
  }
}

/**
 * A raw single-handshake upload: the greeting, `data`, a half-close, and
 * whatever the server sends until it closes (or `"reset"`). Write errors are
 * ignored, as in {@link rawDoubleUpload}.
 */
export async function rawUploadReply(port: number, data: Uint8Array): Promise<Uint8Array | "reset"> {
  const conn = await connect(port);
  try {
    await readExactly(conn, 7);
    await writeAll(conn, data).catch(() => {});
    await conn.closeWrite().catch(() => {});
    return await readToEnd(conn, 10_000).catch(() => "reset" as const);
  } finally {
    conn.close();
  }
}

/** The bytes of `reply` as text, or `"reset"`. */
export const replyText = (reply: Uint8Array | "reset"): string => reply === "reset" ? reply : text(reply);

/** Connects, reads the greeting, sends `data`, half-closes, and waits for the server to close. */
export async function rawUpload(port: number, data: Uint8Array, hostname = "127.0.0.1"): Promise<void> {
  const conn = await connect(port, hostname);
  try {
    const greeting = await readExactly(conn, 7);
    if (text(greeting) !== "accio\r\n") throw new Error(`bad greeting ${JSON.stringify(text(greeting))}`);
    await writeAll(conn, data);
    await conn.closeWrite();
    await readToEnd(conn);
  } finally {
    conn.close();
  }
}

/** SHA-256 of a file, streamed. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  using file = await Deno.open(path);
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest("hex");
}

/** SHA-256 of bytes. */
export function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Writes `size` pseudo-random bytes to a new file in `dir` (deterministic per seed), streamed. */
export async function makeFile(dir: string, name: string, size: number, seed = 1): Promise<string> {
  const path = `${dir}/${name}`;
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const chunk = new Uint8Array(Math.min(size, 1 << 20));
  let state = seed >>> 0 || 1;
  for (let written = 0; written < size;) {
    const n = Math.min(chunk.length, size - written);
    for (let i = 0; i < n; i += 4) {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      chunk[i] = state;
      chunk[i + 1] = state >>> 8;
      chunk[i + 2] = state >>> 16;
      chunk[i + 3] = state >>> 24;
    }
    for (let done = 0; done < n;) done += await file.write(chunk.subarray(done, n));
    written += n;
  }
  return path;
}

/** Files in `dir` (names), sorted, hidden ones included. */
export async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
}

/** Waits until `<dir>/<n>.file` exists, bounded. */
export function waitForFile(dir: string, n: number, timeoutMs = 15_000): Promise<void> {
  return waitFor(
    async () => {
      try {
        await Deno.lstat(`${dir}/${n}.file`);
        return true;
      } catch {
        return false;
      }
    },
    timeoutMs,
    `${dir}/${n}.file`,
  );
}

/** Whether an executable is on PATH. */
export async function hasCommand(name: string): Promise<boolean> {
  try {
    const { success } = await new Deno.Command("sh", { args: ["-c", `command -v ${name}`], stdout: "null" })
      .output();
    return success;
  } catch {
    return false;
  }
}

/** Runs a Python peer from tests/peers. */
export function spawnPeer(script: string, args: string[]): Proc {
  return new Proc("python3", ["-u", `${PEERS}${script}`, ...args]);
}

/** Whether this process may make private mount namespaces (root with a working `unshare -m`). */
export async function canUnshareMounts(): Promise<boolean> {
  if (Deno.uid() !== 0) return false;
  return await new Deno.Command("unshare", { args: ["-m", "true"], stderr: "null" }).output()
    .then((o) => o.success, () => false);
}

/**
 * A `wrap` prefix for {@link spawnProgram}: runs `setup` (shell) in a private
 * mount namespace, then execs the program there (behind `execPrefix`, e.g.
 * `prlimit ... --`), keeping its PID.
 */
export function inPrivateMounts(setup: string, execPrefix = ""): string[] {
  return [
    "unshare",
    "-m",
    "--propagation",
    "private",
    "sh",
    "-c",
    `${setup} && exec ${execPrefix} "$0" "$@"`,
  ];
}

/**
 * A one-connection fake server on loopback, scripted by `script`; `run` gets
 * its port. Resolves with what `script` returned.
 */
export async function withFakeServer<T>(
  script: (conn: Deno.TcpConn) => Promise<T>,
  run: (port: number) => Promise<void>,
): Promise<T> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const served = (async () => {
    const conn = await listener.accept();
    try {
      return await script(conn);
    } finally {
      try {
        conn.close();
      } catch {
        // closed by the script
      }
    }
  })();
  try {
    await run(port);
    return await served;
  } finally {
    listener.close();
  }
}

/** A new file `upload.bin` in a fresh temporary directory holding `content`. */
export async function contentFile(content: string | Uint8Array, name = "upload.bin"): Promise<string> {
  const dir = await tempDir();
  const path = `${dir}/${name}`;
  await Deno.writeFile(path, typeof content === "string" ? bytes(content) : content);
  return path;
}

/**
 * Runs the client with a terminal as stdin/stdout/stderr (util-linux `script`)
 * and returns everything it drew; `undefined` where `script` is not installed.
 */
export async function runClientInTerminal(
  args: string[],
): Promise<{ code: number; output: string } | undefined> {
  if (!(await hasCommand("script"))) return undefined;
  const quote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
  const command = [Deno.execPath(), ...taskArgs("client"), ...args].map(quote).join(" ");
  const out = await new Deno.Command("script", {
    args: ["-qec", command, "/dev/null"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, output: decoder.decode(out.stdout) };
}
