/**
 * `server --workers N`: N workers in one server process, each a Web Worker
 * running `server_worker.ts` with its own listener on the same port
 * (`reusePort`: the kernel spreads the connections).
 *
 * The main thread ({@link WorkerPool}) owns what there must be one of: the
 * directory's lock, its start-up repair and the numbering's start (it opens
 * the {@link UploadDirectory} once, and the workers attach to it without a
 * second lock); the one writer of `.accio.numbers` (workers ask it through a
 * message); the shared counter of numbers ({@link SharedNumbers}) and of
 * connections in service ({@link SharedSlots}, `--max-connections` for the
 * whole server); the signals (it posts `shutdown` or `close` to every
 * worker); and every log line, outcome and metric (workers post them; the
 * main thread writes them with the same writers as one server).
 *
 * @example
 * ```ts ignore
 * import { WorkerPool } from "./worker_pool.ts";
 * const pool = await WorkerPool.start({
 *   script: new URL("../server.ts", import.meta.url), // calls runServerWorker when run as a worker
 *   count: 4, port: 5000, directory: "/save", values: {}, maxConnections: 1024,
 *   onLog: console.error, onUpload: (outcome) => console.log(outcome.file),
 * });
 * Deno.addSignalListener("SIGQUIT", () => pool.shutdown());
 * await pool.finished;
 * ```
 * @module
 */
import { AccioError, describeError, UsageError } from "./errors.ts";
import { listenAll } from "./listen.ts";
import { metricFamily } from "./metrics.ts";
import { logRepairs, type Refusal } from "./server.ts";
import { SharedNumbers } from "./shared_numbers.ts";
import { SharedSlots } from "./shared_slots.ts";
import { type OpenReport, recordUnusedNumber, UploadDirectory } from "./upload_dir.ts";
import { WorkerThread } from "./worker_thread.ts";
import type { OptionValues, WorkerOutcome } from "./worker_protocol.ts";

/** The most workers `--workers` takes. */
export const MAX_WORKERS = 256;
/** How long the workers may take to start listening, in ms. */
export const WORKER_START_MS = 30_000;

/**
 * Parses `--workers N|auto`: `auto` is the number of CPUs (at most {@link MAX_WORKERS}).
 *
 * @example
 * ```ts
 * import { parseWorkersOption } from "./worker_pool.ts";
 * parseWorkersOption("4"); // 4
 * parseWorkersOption(undefined); // 1
 * ```
 * @throws {UsageError} unless the value is `auto` or a whole number from 1 to {@link MAX_WORKERS}.
 */
export function parseWorkersOption(
  value: string | boolean | undefined,
  cpus: number = navigator.hardwareConcurrency,
): number {
  if (value === undefined) return 1;
  if (value === "auto") return Math.min(Math.max(1, cpus), MAX_WORKERS);
  const count = typeof value === "string" && /^[0-9]+$/.test(value) ? Number(value) : NaN;
  if (!(count >= 1 && count <= MAX_WORKERS)) {
    throw new UsageError(
      `invalid --workers "${value}": expected auto or a whole number from 1 to ${MAX_WORKERS}`,
    );
  }
  return count;
}

/** Settings of {@link WorkerPool.start}. */
export interface WorkerPoolOptions {
  /** The module each worker runs; it calls `runServerWorker` when it runs as a worker. */
  script: URL;
  /** How many workers. */
  count: number;
  /** The port every worker listens on. */
  port: number;
  /** The upload directory. */
  directory: string;
  /** The command line's option values, from which each worker builds its settings. */
  values: OptionValues;
  /** `--max-connections`, for the whole server. */
  maxConnections: number;
  /** Operational messages, the main thread's and every worker's. */
  onLog: (message: string) => void;
  /** Called once per numbered connection of any worker when it ends. */
  onUpload: (outcome: WorkerOutcome) => void;
  /** Called for each connection a worker refused before a number. */
  onRefused?: (refusal: Refusal) => void;
}

/** A running server of several workers. Create it with {@link WorkerPool.start}. */
export class WorkerPool {
  /** The address the workers listen on. */
  readonly addr: Deno.NetAddr;
  /** The upload directory, held (locked) by the main thread. */
  readonly directory: UploadDirectory;
  /** Settles once every worker has stopped and the directory is released. */
  readonly finished: Promise<void>;
  readonly #threads: WorkerThread[];
  readonly #slots: SharedSlots;

  private constructor(threads: WorkerThread[], held: Held, addr: Deno.NetAddr, onLog: (m: string) => void) {
    this.#threads = threads;
    this.#slots = held.slots;
    this.directory = held.directory;
    this.addr = addr;
    this.finished = Promise.all(threads.map((t) => t.finished)).then(() => release(held, onLog));
  }

  /**
   * Opens the directory (lock, repair, numbering), starts the workers and
   * waits until each listens.
   *
   * @throws {FileError} for an unusable directory; {ConnectionError} when the port is taken; {AccioError} with the worker's reason when one cannot start.
   */
  static async start(options: WorkerPoolOptions): Promise<WorkerPool> {
    const held = await hold(options);
    try {
      // reusePort listeners of one user share a port silently: a plain bind first fails, as one
      // server's would, when another server (with workers or not) already listens there.
      listenAll(options.port).close();
    } catch (error) {
      held.directory.close();
      throw error;
    }
    const threads = Array.from({ length: options.count }, (_, i) =>
      new WorkerThread(options.script, i + 1, {
        onLog: options.onLog,
        onUpload: options.onUpload,
        onRefused: options.onRefused,
        recordGone: (id) => held.directory.recordGone(id),
      }));
    try {
      const addrs = await startAll(threads, options, held);
      return new WorkerPool(threads, held, addrs[0], options.onLog);
    } catch (error) {
      for (const thread of threads) thread.terminate();
      held.directory.close();
      throw error;
    }
  }

  /** Connections in service over every worker. */
  get activeConnections(): number {
    return this.#slots.inService;
  }

  /** Every worker stops accepting and finishes its uploads in flight (SIGQUIT). */
  shutdown(): Promise<void> {
    for (const thread of this.#threads) thread.send({ kind: "shutdown" });
    return this.finished;
  }

  /**
   * Every worker reads the TLS certificate again for its new connections
   * (SIGHUP, once the main thread found the files good); each logs the result.
   */
  reload(): void {
    for (const thread of this.#threads) thread.send({ kind: "reload" });
  }

  /** Every worker stops at once: uploads in flight end as `ERROR` (SIGTERM). */
  close(): Promise<void> {
    for (const thread of this.#threads) thread.send({ kind: "close" });
    return this.finished;
  }

  /** The per-worker metrics, to append to the server's totals. */
  render(): string {
    const name = "accio_worker_uploads_total";
    return metricFamily(
      name,
      "counter",
      "Ended connections by the worker that served them.",
      this.#threads.map((t) => `${name}{worker="${t.index}"} ${t.uploads}`),
    ).join("\n") + "\n";
  }
}

/** What the main thread holds for the workers. */
interface Held {
  directory: UploadDirectory;
  numbers: SharedNumbers;
  slots: SharedSlots;
}

/** The main thread's one opening of the directory, and the shared memory. */
async function hold(options: WorkerPoolOptions): Promise<Held> {
  const numbers = new SharedNumbers();
  const report: OpenReport = { recovered: [] };
  const directory = await UploadDirectory.open(options.directory, report, { numbers });
  logRepairs(report, options.onLog);
  return { directory, numbers, slots: new SharedSlots(options.maxConnections) };
}

/** Starts every worker; resolves with their addresses once all listen, or throws the first failure. */
async function startAll(threads: WorkerThread[], options: WorkerPoolOptions, held: Held) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new AccioError(`the workers did not start within ${WORKER_START_MS / 1000} s`)),
      WORKER_START_MS,
    );
  });
  const started = threads.map((thread) =>
    thread.start({
      port: options.port,
      directory: options.directory,
      values: options.values,
      numbers: held.numbers.buffer,
      slots: held.slots.buffer,
      maxConnections: options.maxConnections,
    })
  );
  try {
    return await Promise.race([Promise.all(started), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Once every worker has stopped: numbers given back below a used one become `ERROR` (no gap), then the lock goes. */
async function release(held: Held, onLog: (message: string) => void): Promise<void> {
  for (const id of held.numbers.unused()) {
    try {
      await recordUnusedNumber(held.directory.path, id);
    } catch (error) {
      onLog(`could not record ERROR for unused number ${id}: ${describeError(error)}`);
    }
  }
  held.directory.close();
}

/** Options that keep state of their own in one thread, and so cannot yet run on several workers. */
const SINGLE_THREAD_OPTIONS: Record<string, string> = {
  forward: "the forward queue and the numbering it seeds live in one thread",
  resumable: "the kept prefixes are locked per upload in one thread",
  "max-per-address": "the connections per address are counted in one thread",
  tokens: "the failures per address (the back-off) are counted, and the tokens reloaded, in one thread",
};

/**
 * Returns `count`, after refusing the options that cannot run on more than one worker.
 *
 * @example
 * ```ts
 * import { checkWorkerOptions } from "./worker_pool.ts";
 * checkWorkerOptions(4, { verbose: true }); // 4
 * ```
 * @throws {UsageError} naming the option and why.
 */
export function checkWorkerOptions(count: number, values: OptionValues): number {
  if (count === 1) return count;
  for (const [name, why] of Object.entries(SINGLE_THREAD_OPTIONS)) {
    if (values[name] !== undefined) {
      throw new UsageError(`--${name} cannot be used with --workers ${count} (above 1) yet: ${why}`);
    }
  }
  return count;
}
