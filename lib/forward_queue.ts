/**
 * Store and forward: every saved upload is copied to an S3 bucket at
 * `PREFIX/<instance>/<path in FILE-DIR>`, after it is safe on the local disk,
 * with retries, and verified before it counts as forwarded. The upload
 * directory is the durable queue: a saved upload without a `done` record in
 * `.accio-forward/` is pending, so a restart, an outage of any length or a
 * crash loses nothing.
 *
 * - Start: the bucket and credentials are checked ({@link ForwardQueue.start}
 *   throws on wrong credentials or a missing bucket; an unreachable store only
 *   delays). Then, in the background: multipart uploads left open by a crash
 *   are aborted (those recorded, and every one listed under
 *   `PREFIX/<instance>/`), and the directory is rescanned for uploads not yet
 *   done (with `--forward-delete`, a done upload whose local copy survived a
 *   crash is removed now).
 * - Each forward: a HEAD first, so an object an earlier run already stored
 *   (same size and ETag) is recognised and not sent again, and a key holding
 *   different content is never overwritten (the forward gives up). Then the
 *   write, verified ({@link writeObject}), then the `done` record, then (with
 *   `deleteAfter`) the local copy is removed.
 * - Requests failing for a retryable reason are retried without limit with
 *   back-off and jitter; other failures give the upload up (a `failed` record,
 *   a log line, the local copy kept); the next start tries it again.
 * - At most `concurrency` forwards run at once, sharing `buffers` part
 *   buffers: memory is bounded by `buffers x partSize` whatever the files.
 *
 * One forward is `lib/forward_job.ts`; the recovery at start is
 * `lib/forward_recovery.ts`; this module is the queue between them.
 *
 * @example
 * ```ts
 * import { S3Client } from "./s3_client.ts";
 * import { ForwardQueue } from "./forward_queue.ts";
 * const s3 = new S3Client({
 *   endpoint: "http://127.0.0.1:8080",
 *   bucket: "uploads",
 *   region: "us-east-1",
 *   credentials: { accessKeyId: "test:tester", secretAccessKey: "testing" },
 * });
 * const queue = await ForwardQueue.open({ fileDir: "/save", s3, prefix: "site", instance: "gw1" });
 * await queue.start();
 * queue.enqueue("/save/1.file"); // after the upload is committed
 * await queue.stop();
 * ```
 * @module
 */
import { isAbsolute, relative, resolve } from "node:path";
import { describeError, UsageError } from "./errors.ts";
import { parseInstance } from "./forward_config.ts";
import { type ForwardContext, type ForwardLogEntry, forwardUpload } from "./forward_job.ts";
import { ForwardMetrics, type QueueView } from "./forward_metrics.ts";
import { recoverForwards, type RecoveryContext } from "./forward_recovery.ts";
import { DEFAULT_RETRY, Retrier, type RetryPolicy } from "./forward_retry.ts";
import { ForwardState } from "./forward_state.ts";
import type { S3Client } from "./s3_client.ts";
import { S3Error, S3UnavailableError } from "./s3_errors.ts";
import { DEFAULT_PART_SIZE } from "./s3_object_writer.ts";
import { PartPool } from "./s3_part_pool.ts";

export type { ForwardLogEntry } from "./forward_job.ts";

/** Settings of a {@link ForwardQueue}. */
export interface ForwardQueueOptions {
  /** The upload directory (the server's FILE-DIR). */
  fileDir: string;
  /** The store. */
  s3: S3Client;
  /** The key prefix (from `s3://BUCKET/PREFIX`; may be empty). */
  prefix: string;
  /** This gateway's name, the key segment after the prefix. */
  instance: string;
  /**
   * Remove the local copy once the object is verified (`--forward-delete`).
   *
   * @default {false}
   */
  deleteAfter?: boolean;
  /**
   * Forward `ERROR` uploads too.
   *
   * @default {false}
   */
  forwardErrors?: boolean;
  /**
   * Forwards at once.
   *
   * @default {4}
   */
  concurrency?: number;
  /**
   * Part size, at least 5 MiB.
   *
   * @default {DEFAULT_PART_SIZE}
   */
  partSize?: number;
  /**
   * Parts in flight per forward.
   *
   * @default {2}
   */
  partsInFlight?: number;
  /**
   * Part buffers shared by all forwards.
   *
   * @default {4}
   */
  buffers?: number;
  /**
   * Back-off between retries: 200 ms doubling to 30 s.
   *
   * @default {DEFAULT_RETRY}
   */
  retry?: RetryPolicy;
  /** Receives one entry when a forward completes or gives up (for the upload log). */
  onLog?: (entry: ForwardLogEntry) => void;
  /** Receives operational messages (store unreachable, reachable again, recovery). */
  onNotice?: (message: string) => void;
}

/** What {@link ForwardQueue.enqueue} may be told. */
export interface EnqueueOptions {
  /** The server recorded this upload as `ERROR` (else its content decides). */
  error?: boolean;
  /** When it was saved (ms since the epoch). Default: now. */
  savedMs?: number;
}

interface Item {
  savedMs: number;
  error?: boolean;
}

const MIN_PART = 5 * 1024 * 1024;

type Settings =
  & ForwardQueueOptions
  & Required<
    Pick<
      ForwardQueueOptions,
      "deleteAfter" | "forwardErrors" | "concurrency" | "partSize" | "partsInFlight" | "buffers" | "retry"
    >
  >;

function positive(name: string, value: number | undefined, fallback: number): number {
  const n = value ?? fallback;
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`invalid forward setting ${name}: ${value}`);
  return n;
}

/** Checks the settings and applies the defaults. */
function settingsOf(options: ForwardQueueOptions): Settings {
  const partSize = options.partSize ?? DEFAULT_PART_SIZE;
  parseInstance(options.instance);
  if (!Number.isInteger(partSize) || partSize < MIN_PART) {
    throw new UsageError(`invalid forward part size ${partSize}: at least 5 MiB`);
  }
  return {
    deleteAfter: false,
    forwardErrors: false,
    retry: DEFAULT_RETRY,
    ...options,
    prefix: options.prefix.replace(/^\/+|\/+$/g, ""),
    partSize,
    concurrency: positive("concurrency", options.concurrency, 4),
    partsInFlight: positive("partsInFlight", options.partsInFlight, 2),
    buffers: positive("buffers", options.buffers, 4),
  };
}

/** `path` relative to `fileDir` when it names an upload in it (no hidden segment, nothing outside). */
function uploadPath(fileDir: string, path: string): string | undefined {
  const rel = isAbsolute(path) ? relative(resolve(fileDir), resolve(path)) : path;
  const segments = rel.split("/");
  if (!rel || segments.some((s) => s === "" || s === ".." || s.startsWith("."))) return undefined;
  return rel;
}

/** The uploads waiting and in flight, by path relative to FILE-DIR. */
class Backlog {
  readonly #pending = new Map<string, Item>();
  readonly #inFlight = new Map<string, Item>();

  has(path: string): boolean {
    return this.#pending.has(path) || this.#inFlight.has(path);
  }

  add(path: string, item: Item): void {
    this.#pending.set(path, item);
  }

  /** Moves the oldest waiting upload in flight, if fewer than `limit` are. */
  take(limit: number): [string, Item] | undefined {
    if (this.#inFlight.size >= limit || this.#pending.size === 0) return undefined;
    const [path, item] = this.#pending.entries().next().value!;
    this.#pending.delete(path);
    this.#inFlight.set(path, item);
    return [path, item];
  }

  finish(path: string): void {
    this.#inFlight.delete(path);
  }

  get empty(): boolean {
    return this.#pending.size === 0 && this.#inFlight.size === 0;
  }

  view(): QueueView {
    let oldestMs: number | undefined;
    for (const item of [...this.#pending.values(), ...this.#inFlight.values()]) {
      if (oldestMs === undefined || item.savedMs < oldestMs) oldestMs = item.savedMs;
    }
    return { depth: this.#pending.size + this.#inFlight.size, oldestMs };
  }
}

/** Checks the bucket and credentials; a store that does not answer is only said, not an error. */
async function checkStore(s3: S3Client, prefix: string, signal: AbortSignal, notice: (m: string) => void) {
  try {
    await s3.checkBucket(prefix, signal);
  } catch (error) {
    if (!(error instanceof S3UnavailableError)) throw error;
    notice(`forward: ${error.message}; uploads stay queued until the store answers`);
  }
}

/** What the queue's forwards and recovery get: its settings and retries, and what it owns. */
function contextOf(
  o: Settings,
  retrier: Retrier,
  own: Pick<
    ForwardContext & RecoveryContext,
    "state" | "metrics" | "signal" | "notice" | "keyFor" | "enqueue"
  >,
): ForwardContext & RecoveryContext {
  return {
    ...own,
    fileDir: o.fileDir,
    s3: o.s3,
    partSize: o.partSize,
    partsInFlight: o.partsInFlight,
    deleteAfter: o.deleteAfter,
    forwardErrors: o.forwardErrors,
    onLog: o.onLog,
    pool: new PartPool(o.buffers, o.partSize),
    retry: (operation, attempt) => retrier.run(operation, attempt),
    answered: () => retrier.answered(),
  };
}

/** The forwarder of one upload directory. */
export class ForwardQueue {
  /** Forwards by outcome, bytes, retries, queue depth and oldest age. */
  readonly metrics: ForwardMetrics;
  readonly #o: Settings;
  readonly #context: ForwardContext & RecoveryContext;
  readonly #backlog = new Backlog();
  readonly #running = new Set<Promise<void>>();
  readonly #idle: (() => void)[] = [];
  readonly #stop = new AbortController();
  #recovered = false;
  #recovery: Promise<void> | undefined;

  private constructor(options: Settings, state: ForwardState) {
    this.#o = options;
    this.metrics = new ForwardMetrics(() => this.#backlog.view());
    const notice = (message: string) => this.#notice(message);
    const signal = this.#stop.signal;
    const retrier = new Retrier(options.retry, { signal, onRetry: () => this.metrics.retry(), notice });
    this.#context = contextOf(options, retrier, {
      state,
      metrics: this.metrics,
      signal,
      notice,
      keyFor: (path) => this.keyFor(path),
      enqueue: (path, enqueued) => this.enqueue(path, enqueued),
    });
  }

  /**
   * Checks the settings and opens the state directory. Makes no request.
   *
   * @throws {UsageError} for a bad setting (instance name, part size, counts); {@link FileError} when the
   * state directory is unusable.
   */
  static async open(options: ForwardQueueOptions): Promise<ForwardQueue> {
    const settings = settingsOf(options);
    return new ForwardQueue(settings, await ForwardState.open(options.fileDir));
  }

  /** The key of the upload at `path` (relative to FILE-DIR): `PREFIX/<instance>/<path>`. */
  keyFor(path: string): string {
    return [this.#o.prefix, this.#o.instance, path].filter(Boolean).join("/");
  }

  /**
   * Checks the bucket and credentials, then recovers and forwards in the
   * background. An unreachable store is not an error here: forwarding waits
   * for it.
   *
   * @throws {S3Error} ({@link S3AuthError}, {@link S3NoSuchBucketError}) when the store refuses.
   */
  async start(): Promise<void> {
    if (this.#recovery) return;
    await checkStore(this.#o.s3, this.keyFor("") + "/", this.#stop.signal, (m) => this.#notice(m));
    this.#recovery = recoverForwards(this.#context).then(() => this.#recoveryOver(), (error) => {
      if (this.#stop.signal.aborted) return;
      // Forward what is queued all the same: a failed rescan must not stall every later upload.
      this.#notice(`forward: recovery stopped early: ${describeError(error)}`);
      this.#recoveryOver();
    });
  }

  #recoveryOver(): void {
    this.#recovered = true;
    this.#pump();
  }

  /**
   * Queues the saved upload at `path` (absolute inside FILE-DIR, or relative
   * to it). Uploads already queued or done are ignored; so are hidden paths.
   * Needs no write: the file itself is the durable queue entry.
   */
  enqueue(path: string, options: EnqueueOptions = {}): void {
    const rel = uploadPath(this.#o.fileDir, path);
    if (rel === undefined) {
      return this.#notice(`forward: ${path} is not an upload in ${this.#o.fileDir}; ignored`);
    }
    if (this.#backlog.has(rel)) return;
    this.#backlog.add(rel, { savedMs: options.savedMs ?? Date.now(), error: options.error });
    this.#pump();
  }

  /** Resolves once recovery is over and nothing is queued or in flight. */
  drained(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /**
   * Stops at once: waits and requests are cut off, and forwards in flight
   * stay recorded for the next start (which aborts their multipart uploads).
   */
  async stop(): Promise<void> {
    this.#stop.abort(new S3Error("forwarding stopped"));
    await this.#recovery;
    await Promise.allSettled([...this.#running]);
    this.#o.s3.close();
  }

  #isIdle(): boolean {
    return this.#recovered && this.#backlog.empty;
  }

  #notice(message: string): void {
    this.#o.onNotice?.(message);
  }

  #pump(): void {
    if (!this.#recovered || this.#stop.signal.aborted) return;
    for (let next; (next = this.#backlog.take(this.#o.concurrency));) {
      const [path, item] = next;
      const run: Promise<void> = forwardUpload(this.#context, path, item)
        .catch((error) => this.#notice(`forward: ${path}: ${describeError(error)}`))
        .finally(() => {
          this.#backlog.finish(path);
          this.#running.delete(run);
          this.#pump();
        });
      this.#running.add(run);
    }
    if (this.#isIdle()) this.#idle.splice(0).forEach((resolve) => resolve());
  }
}
