/**
 * One worker of a server started with `--workers N`: an {@link AccioServer}
 * on its own `reusePort` listener, drawing numbers and connection slots from
 * the memory the main thread shares, writing into the directory the main
 * thread holds. It logs and reports nothing itself: every line and outcome
 * is posted to the main thread, the one writer of stderr, the upload log and
 * the metrics, so lines never interleave. It installs no signal handlers:
 * the main thread receives the signals and posts `shutdown` or `close`.
 *
 * @example
 * ```ts ignore
 * // At the top of the module that `WorkerPool` runs in each worker (server.ts):
 * import { runServerWorker } from "./lib/server_worker.ts";
 * runServerWorker((values) => ({ idleTimeoutMs: 10_000 }));
 * ```
 * @module
 */
import { describeError, FileError } from "./errors.ts";
import { AccioServer, type ServerOptions } from "./server.ts";
import { SharedNumbers } from "./shared_numbers.ts";
import { SharedSlots } from "./shared_slots.ts";
import { surviveUncaughtErrors } from "./signals.ts";
import { type Reloadable, reloadAll } from "./reload.ts";
import type { FromWorker, OptionValues, ToWorker, WorkerStart } from "./worker_protocol.ts";

/** A worker's server settings, and what it reads again when the main thread posts `reload` (SIGHUP). */
export type WorkerSettings = Partial<ServerOptions> & { reloadables?: readonly Reloadable[] };

/**
 * The per-connection settings a worker builds from the command line's values, as the main thread does;
 * asynchronous, as loading a TLS certificate is.
 */
export type BuildSettings = (values: OptionValues) => WorkerSettings | Promise<WorkerSettings>;

/** The numbers recorded by the main thread on this worker's behalf: one request per number, answered in turn. */
class GoneRequests {
  readonly #waiting = new Map<number, PromiseWithResolvers<void>>();
  #seq = 0;

  /** Asks the main thread to record `id` in `.accio.numbers`; resolves once it is on disk. */
  request(id: number): Promise<void> {
    const seq = ++this.#seq;
    const answer = Promise.withResolvers<void>();
    this.#waiting.set(seq, answer);
    post({ kind: "gone", seq, id });
    return answer.promise;
  }

  /** The main thread's answer to request `seq`. */
  settle(seq: number, error: string | undefined): void {
    const answer = this.#waiting.get(seq);
    this.#waiting.delete(seq);
    if (error === undefined) answer?.resolve();
    else answer?.reject(new FileError(error));
  }
}

/** The worker's global scope: the main program's types describe a window, which has neither. */
const scope = globalThis as unknown as {
  postMessage(message: FromWorker): void;
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
};

function post(message: FromWorker): void {
  scope.postMessage(message);
}

/**
 * Serves as a worker: waits for the main thread's start message, then runs
 * a server until told to stop. Call it at the top of the worker's module.
 */
export function runServerWorker(build: BuildSettings): void {
  const log = (line: string) => post({ kind: "log", line });
  surviveUncaughtErrors(log);
  const gone = new GoneRequests();
  let server: Promise<AccioServer | undefined> = Promise.resolve(undefined);
  const reloadables: Reloadable[] = [];
  let reloading: Promise<void> = Promise.resolve();
  scope.onmessage = (event) => {
    const message = event.data;
    if (message.kind === "start") server = start(message, build, { gone, log, reloadables });
    else if (message.kind === "reload") {
      // One reload at a time, and only once the server (and its certificate) is there.
      reloading = reloading.then(() => server).then(() => reloadAll(reloadables, log));
    } else if (message.kind === "gone-done") gone.settle(message.seq, message.error);
    else if (message.kind === "shutdown") void server.then((s) => s?.shutdown());
    else if (message.kind === "close") void server.then((s) => s?.close());
  };
}

/** Starts this worker's server; posts `ready` (then `finished` once it has stopped) or `failed`. */
async function start(
  message: WorkerStart,
  build: BuildSettings,
  { gone, log, reloadables }: { gone: GoneRequests; log: (line: string) => void; reloadables: Reloadable[] },
): Promise<AccioServer | undefined> {
  try {
    const { reloadables: own = [], ...settings } = await build(message.values);
    // Each worker's reload is logged: say whose.
    reloadables.push(...own.map((r) => ({ what: `${r.what} in worker ${message.index}`, reload: r.reload })));
    const server = await AccioServer.start({
      ...settings,
      port: message.port,
      directory: message.directory,
      maxConnections: message.maxConnections,
      numbers: SharedNumbers.from(message.numbers),
      worker: {
        slots: SharedSlots.from(message.slots, message.maxConnections),
        recordGone: (id) => gone.request(id),
      },
      onLog: log,
      onUpload: (outcome) => post({ kind: "upload", outcome: { ...outcome, worker: message.index } }),
      onRefused: (refusal) => post({ kind: "refused", refusal }),
    });
    post({ kind: "ready", addr: server.addr });
    server.finished.then(() => post({ kind: "finished" }));
    return server;
  } catch (error) {
    post({ kind: "failed", message: describeError(error) });
    return undefined;
  }
}
