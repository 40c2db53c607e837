/**
 * The messages between a server's main thread (`worker_pool.ts`) and its
 * workers (`server_worker.ts`), and how a module knows it runs as a worker.
 * Only plain data crosses: the command line's values (each worker builds its
 * own settings from them, as the main thread does), the shared memory of the
 * numbering and of the connection slots, log lines and upload outcomes.
 *
 * @example
 * ```ts
 * import { isServerWorker } from "./worker_protocol.ts";
 * if (isServerWorker()) console.log("serving as a worker");
 * ```
 * @module
 */
import type { Refusal } from "./server.ts";
import type { UploadOutcome } from "./upload_session.ts";

/** Every server worker's name starts so (`new Worker(url, { name })`). */
export const WORKER_NAME_PREFIX = "accio-worker-";

/** Whether this module runs in a server worker, not as the main program. */
export function isServerWorker(): boolean {
  const name = (globalThis as { name?: unknown }).name;
  return typeof name === "string" && name.startsWith(WORKER_NAME_PREFIX);
}

/** The command line's option values, as parsed by `cli.ts`. */
export type OptionValues = Record<string, string | boolean | undefined>;

/** The first message to a worker: what it serves, and the memory it shares. */
export interface WorkerStart {
  /** The message's kind. */
  kind: "start";
  /** The worker's number, from 1: in its outcomes, the upload log and the metrics. */
  index: number;
  /** The port every worker listens on (with `reusePort`). */
  port: number;
  /** The upload directory, held by the main thread. */
  directory: string;
  /** The option values, for the worker's own settings. */
  values: OptionValues;
  /** The numbering's memory (`SharedNumbers`). */
  numbers: SharedArrayBuffer;
  /** The connection slots' memory (`SharedSlots`). */
  slots: SharedArrayBuffer;
  /** `--max-connections`, for the whole server. */
  maxConnections: number;
}

/** From the main thread to a worker. */
export type ToWorker =
  | WorkerStart
  | { kind: "shutdown" }
  | { kind: "close" }
  // SIGHUP: read the TLS certificate again (the main thread read it first, and found it good).
  | { kind: "reload" }
  | { kind: "gone-done"; seq: number; error?: string };

/** An upload outcome with the worker that served it. */
export type WorkerOutcome = UploadOutcome & { worker?: number };

/** From a worker to the main thread. */
export type FromWorker =
  | { kind: "ready"; addr: Deno.NetAddr }
  | { kind: "failed"; message: string }
  | { kind: "log"; line: string }
  | { kind: "upload"; outcome: WorkerOutcome }
  | { kind: "refused"; refusal: Refusal }
  | { kind: "gone"; seq: number; id: number }
  | { kind: "finished" };
