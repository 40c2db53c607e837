/**
 * Processes for tests: the real entry points started as subprocesses with
 * exactly the permissions of their `deno task`, the Python peers of
 * tests/peers, and a collector of any process's output. Every wait is
 * bounded; every process is stopped by the test that started it
 * (`await using`).
 *
 * @module
 */
import denoConfig from "../../deno.json" with { type: "json" };
import { text } from "./encoding.ts";
import { tempDir } from "./files.ts";
import { hasCommand } from "./system.ts";
import { waitFor } from "./wait.ts";
import { freePort } from "./wire.ts";

/** The repository's root directory, with a trailing slash. */
export const ROOT = new URL("../..", import.meta.url).pathname;
/** tests/peers/, with a trailing slash. */
export const PEERS = new URL("../peers/", import.meta.url).pathname;

/** An Accio program with a `deno task`. */
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

/** Runs a Python peer from tests/peers. */
export function spawnPeer(script: string, args: string[]): Proc {
  return new Proc("python3", ["-u", `${PEERS}${script}`, ...args]);
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
  return { code: out.code, output: text(out.stdout) };
}

/** Runs the client with `input` on its standard input; bounded. */
export async function runClientWithStdin(args: string[], input: Uint8Array, timeoutMs = 30_000) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [...taskArgs("client"), ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  try {
    const writer = child.stdin.getWriter();
    await writer.write(input).catch(() => {}); // a client that refused before reading closes the pipe
    await writer.close().catch(() => {});
    const out = await child.output();
    return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
  } finally {
    clearTimeout(timer);
  }
}
