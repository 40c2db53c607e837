/**
 * The programs the bench runs: subprocesses whose output is kept, with every
 * wait on them bounded; Accio's own programs started with the permissions of
 * their `deno task`; and a look-up of commands on PATH.
 *
 * @module
 */
import denoConfig from "../deno.json" with { type: "json" };
import { TimeoutError } from "../lib/errors.ts";
import { withDeadline } from "../lib/deadline.ts";

/** The repository's root directory, with a trailing slash. */
export const ROOT: string = new URL("..", import.meta.url).pathname;

/** A running subprocess; stdin is closed, stdout and stderr are collected. */
export class Child implements AsyncDisposable {
  readonly #process: Deno.ChildProcess;
  readonly #what: string;
  readonly #status: Promise<Deno.CommandStatus>;
  readonly #stdout: Promise<string>;
  readonly #stderrRead: Promise<void>;
  #stderr = "";
  #exited = false;
  #stderrEnded = false;
  #onStderr = new Set<() => void>();

  /** Starts `command` with `args`; `what` names it in errors. */
  constructor(command: string, args: string[], what = command) {
    this.#what = what;
    this.#process = new Deno.Command(command, { args, stdin: "null", stdout: "piped", stderr: "piped" })
      .spawn();
    this.#status = this.#process.status.then((status) => {
      this.#exited = true;
      return status;
    });
    this.#stdout = new Response(this.#process.stdout).text();
    this.#stderrRead = this.#process.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
      new WritableStream({
        write: (text) => {
          this.#stderr += text;
          this.#onStderr.forEach((wake) => wake());
        },
        close: () => {
          this.#stderrEnded = true;
          this.#onStderr.forEach((wake) => wake());
        },
      }),
    );
  }

  /** The process id, for /proc. */
  get pid(): number {
    return this.#process.pid;
  }

  /** Whether it has exited. */
  get exited(): boolean {
    return this.#exited;
  }

  /** What it wrote to stderr so far. */
  get stderr(): string {
    return this.#stderr;
  }

  /** All it wrote to stdout; settles once it has exited. */
  stdout(): Promise<string> {
    return this.#stdout;
  }

  /** Resolves with the first match of `pattern` in stderr; fails when stderr ends first (it exited) or after `ms`. */
  untilStderr(pattern: RegExp, ms: number): Promise<RegExpExecArray> {
    let wake = () => {};
    const seen = new Promise<RegExpExecArray>((resolve, reject) => {
      wake = () => {
        const match = pattern.exec(this.#stderr);
        if (match) resolve(match);
        else if (this.#stderrEnded) {
          reject(new Error(`${this.#what} exited before ${pattern}: ${this.#stderr}`));
        }
      };
      this.#onStderr.add(wake);
      wake();
    });
    return withDeadline(seen, ms, () => new TimeoutError(`${this.#what}: no ${pattern} within ${ms} ms`))
      .finally(() => this.#onStderr.delete(wake));
  }

  /** Waits at most `ms` for it to exit, with all its output read; past that, kills it and fails. */
  async wait(ms: number): Promise<Deno.CommandStatus> {
    const status = await withDeadline(
      this.#status,
      ms,
      () => new TimeoutError(`${this.#what} did not exit within ${ms} ms: ${this.#stderr}`),
      () => this.#signal("SIGKILL"),
    );
    await Promise.all([this.#stdout, this.#stderrRead]);
    return status;
  }

  /** Sends `signal` and waits (bounded) for the exit. */
  stop(signal: Deno.Signal = "SIGTERM", ms = 10_000): Promise<Deno.CommandStatus> {
    this.#signal(signal);
    return this.wait(ms);
  }

  #signal(signal: Deno.Signal): void {
    if (this.#exited) return;
    try {
      this.#process.kill(signal);
    } catch {
      // It exited in between.
    }
  }

  /** Kills it (if it still runs) and waits for the exit. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.#signal("SIGKILL");
    await this.#status;
    await Promise.all([this.#stdout, this.#stderrRead]).catch(() => {});
  }
}

/** Runs a shell script (the bench's redirections into and out of `nc`). */
export function shell(script: string, what: string): Child {
  return new Child("sh", ["-c", script], what);
}

/** The command line of Accio's `server` or `client` exactly as its `deno task` runs it, with these arguments. */
export function accioArgv(task: "server" | "client", args: string[]): string[] {
  const [deno, run, ...rest] = denoConfig.tasks[task].split(" ");
  if (deno !== "deno" || run !== "run") throw new Error(`deno.json task ${task} is not "deno run ..."`);
  const script = `${ROOT}${rest.pop()}`;
  return [Deno.execPath(), run, ...rest, script, ...args];
}

/** Starts Accio's `server` or `client` exactly as its `deno task` would, with these arguments. */
export function accio(task: "server" | "client", args: string[]): Child {
  const [command, ...rest] = accioArgv(task, args);
  return new Child(command, rest, `accio ${task}`);
}

/** Whether `name` is an executable file in a directory of PATH. */
export async function onPath(name: string): Promise<boolean> {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    const info = await Deno.stat(`${dir || "."}/${name}`).catch(() => undefined);
    if (info?.isFile && ((info.mode ?? 0) & 0o111) !== 0) return true;
  }
  return false;
}
