/**
 * One server worker seen from the main thread: the Web Worker, its start,
 * the lines and outcomes it posts, its requests to record a number in
 * `.accio.numbers`, and its end. Used by `worker_pool.ts`.
 *
 * @example
 * ```ts ignore
 * import { WorkerThread } from "./worker_thread.ts";
 * const thread = new WorkerThread(new URL("../server.ts", import.meta.url), 1, {
 *   onLog: console.error,
 *   onUpload: (outcome) => console.log(outcome.file),
 *   recordGone: () => Promise.resolve(),
 * });
 * ```
 * @module
 */
import { AccioError, describeError } from "./errors.ts";
import {
  type FromWorker,
  type ToWorker,
  WORKER_NAME_PREFIX,
  type WorkerOutcome,
  type WorkerStart,
} from "./worker_protocol.ts";
import type { Refusal } from "./server.ts";

/** What a {@link WorkerThread} reports to, and asks of, the main thread. */
export interface WorkerHooks {
  /** An operational line of the worker. */
  onLog: (message: string) => void;
  /** One of its uploads ended. */
  onUpload: (outcome: WorkerOutcome) => void;
  /** A connection it refused before a number (for `accio_refused_total`). */
  onRefused?: (refusal: Refusal) => void;
  /** Records a number no `N.file` will show (the main thread's `.accio.numbers`). */
  recordGone: (id: number) => Promise<void>;
}

/** A started worker. */
export class WorkerThread {
  /** Its number, from 1. */
  readonly index: number;
  /** Settles once it has stopped (or died) and is terminated. */
  readonly finished: Promise<void>;
  /** Its uploads that have ended. */
  uploads = 0;
  readonly #worker: Worker;
  readonly #hooks: WorkerHooks;
  readonly #ended = Promise.withResolvers<void>();
  readonly #ready = Promise.withResolvers<Deno.NetAddr>();

  /** Spawns the worker running `script`. */
  constructor(script: URL, index: number, hooks: WorkerHooks) {
    this.index = index;
    this.#hooks = hooks;
    this.#ready.promise.catch(() => {}); // awaited by start(); a later death only ends it
    this.#worker = new Worker(script, { type: "module", name: `${WORKER_NAME_PREFIX}${index}` });
    this.#worker.onmessage = (event: MessageEvent<FromWorker>) => this.#receive(event.data);
    this.#worker.onerror = (event) => {
      // A worker that died cannot serve; the process keeps going, and the others with it.
      event.preventDefault();
      this.#hooks.onLog(`worker ${index} failed: ${event.message}`);
      this.#ready.reject(new AccioError(`worker ${index} failed: ${event.message}`));
      this.#end();
    };
    this.finished = this.#ended.promise;
  }

  /** Sends the start message; resolves with the address once it listens. */
  start(settings: Omit<WorkerStart, "kind" | "index">): Promise<Deno.NetAddr> {
    this.send({ kind: "start", index: this.index, ...settings });
    return this.#ready.promise;
  }

  /** Posts `message` to the worker. */
  send(message: ToWorker): void {
    this.#worker.postMessage(message);
  }

  /** Ends it now (a failed start). */
  terminate(): void {
    this.#end();
  }

  #end(): void {
    this.#worker.terminate();
    this.#ended.resolve();
  }

  #receive(message: FromWorker): void {
    switch (message.kind) {
      case "ready":
        return this.#ready.resolve(message.addr);
      case "failed":
        return this.#ready.reject(new AccioError(message.message));
      case "log":
        return this.#hooks.onLog(message.line);
      case "upload":
        this.uploads++;
        return this.#hooks.onUpload(message.outcome);
      case "refused":
        return this.#hooks.onRefused?.(message.refusal);
      case "gone":
        return void this.#recordGone(message.seq, message.id);
      case "finished":
        return this.#end();
    }
  }

  async #recordGone(seq: number, id: number): Promise<void> {
    try {
      await this.#hooks.recordGone(id);
      this.send({ kind: "gone-done", seq });
    } catch (error) {
      this.send({ kind: "gone-done", seq, error: describeError(error) });
    }
  }
}
