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
import { ForwardMetrics } from "./forward_metrics.ts";
import { DEFAULT_RETRY, retrying, type RetryPolicy } from "./forward_retry.ts";
import { isErrorUpload, scanUploads } from "./forward_scan.ts";
import { type ForwardRecord, ForwardState } from "./forward_state.ts";
import type { S3Client } from "./s3_client.ts";
import { S3ConflictError, S3Error, S3UnavailableError } from "./s3_errors.ts";
import { DEFAULT_PART_SIZE, etagComparable, expectedEtag, writeObject } from "./s3_object_writer.ts";
import { PartPool } from "./s3_part_pool.ts";

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

/** The upload-log line of a forward that completed or gave up. */
export interface ForwardLogEntry {
  /** Always `forward`: tells these lines from the per-connection ones. */
  event: "forward";
  /** The local file. */
  file: string;
  /** The object key. */
  key: string;
  /** `forwarded` (stored and verified) or `failed` (gave up; the local copy is kept). */
  outcome: "forwarded" | "failed";
  /** The file's size. */
  bytes: number;
  /** The stored object's ETag, or `null`. */
  etag: string | null;
  /** Forward attempts of this upload, across restarts. */
  attempts: number;
  /** Requests retried in this attempt. */
  retries: number;
  /** Whether the local copy was removed. */
  deleted: boolean;
  /** This attempt's duration. */
  durationMs: number;
  /** Why it gave up, or `null`. */
  reason: string | null;
  /** When it ended (ISO 8601). */
  time: string;
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

interface Attempt {
  path: string;
  file: string;
  key: string;
  size: number;
  attempts: number;
  retries: number;
  started: number;
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

/** The forwarder of one upload directory. */
export class ForwardQueue {
  /** Forwards by outcome, bytes, retries, queue depth and oldest age. */
  readonly metrics: ForwardMetrics;
  readonly #o: Settings;
  readonly #state: ForwardState;
  readonly #pool: PartPool;
  readonly #pending = new Map<string, Item>();
  readonly #inFlight = new Map<string, Item>();
  readonly #running = new Set<Promise<void>>();
  readonly #idle: (() => void)[] = [];
  readonly #stop = new AbortController();
  #recovered = false;
  #recovery: Promise<void> | undefined;
  #degraded = false;

  private constructor(options: Settings, state: ForwardState) {
    this.#o = options;
    this.#state = state;
    this.#pool = new PartPool(options.buffers, options.partSize);
    this.metrics = new ForwardMetrics(() => this.#queueView());
  }

  /**
   * Checks the settings and opens the state directory. Makes no request.
   *
   * @throws {UsageError} for a bad setting (instance name, part size, counts); {@link FileError} when the
   * state directory is unusable.
   */
  static async open(options: ForwardQueueOptions): Promise<ForwardQueue> {
    const partSize = options.partSize ?? DEFAULT_PART_SIZE;
    parseInstance(options.instance);
    if (!Number.isInteger(partSize) || partSize < MIN_PART) {
      throw new UsageError(`invalid forward part size ${partSize}: at least 5 MiB`);
    }
    const settings = {
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
    try {
      await this.#o.s3.checkBucket(this.keyFor("") + "/", this.#stop.signal);
    } catch (error) {
      if (!(error instanceof S3UnavailableError)) throw error;
      this.#notice(`forward: ${error.message}; uploads stay queued until the store answers`);
    }
    this.#recovery = this.#recover().catch((error) => {
      if (this.#stop.signal.aborted) return;
      // Forward what is queued all the same: a failed rescan must not stall every later upload.
      this.#notice(`forward: recovery stopped early: ${describeError(error)}`);
      this.#recovered = true;
      this.#pump();
    });
  }

  /**
   * Queues the saved upload at `path` (absolute inside FILE-DIR, or relative
   * to it). Uploads already queued or done are ignored; so are hidden paths.
   * Needs no write: the file itself is the durable queue entry.
   */
  enqueue(path: string, options: EnqueueOptions = {}): void {
    const rel = this.#relative(path);
    if (rel === undefined) {
      return this.#notice(`forward: ${path} is not an upload in ${this.#o.fileDir}; ignored`);
    }
    if (this.#pending.has(rel) || this.#inFlight.has(rel)) return;
    this.#pending.set(rel, { savedMs: options.savedMs ?? Date.now(), error: options.error });
    this.#pump();
  }

  #relative(path: string): string | undefined {
    const rel = isAbsolute(path) ? relative(resolve(this.#o.fileDir), resolve(path)) : path;
    const segments = rel.split("/");
    if (!rel || segments.some((s) => s === "" || s === ".." || s.startsWith("."))) return undefined;
    return rel;
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
    return this.#recovered && this.#pending.size === 0 && this.#inFlight.size === 0;
  }

  #queueView() {
    let oldestMs: number | undefined;
    for (const item of [...this.#pending.values(), ...this.#inFlight.values()]) {
      if (oldestMs === undefined || item.savedMs < oldestMs) oldestMs = item.savedMs;
    }
    return { depth: this.#pending.size + this.#inFlight.size, oldestMs };
  }

  #notice(message: string): void {
    this.#o.onNotice?.(message);
  }

  #retry<T>(operation: () => Promise<T>, attempt?: Attempt): Promise<T> {
    return retrying(operation, this.#o.retry, {
      signal: this.#stop.signal,
      onRetry: (error) => {
        this.metrics.retry();
        if (attempt) attempt.retries++;
        if (!this.#degraded) this.#notice(`forward: ${error.message}; retrying with back-off`);
        this.#degraded = true;
      },
    });
  }

  #pump(): void {
    if (!this.#recovered || this.#stop.signal.aborted) return;
    while (this.#inFlight.size < this.#o.concurrency && this.#pending.size > 0) {
      const [path, item] = this.#pending.entries().next().value!;
      this.#pending.delete(path);
      this.#inFlight.set(path, item);
      const run: Promise<void> = this.#forward(path, item)
        .catch((error) => this.#notice(`forward: ${path}: ${describeError(error)}`))
        .finally(() => {
          this.#inFlight.delete(path);
          this.#running.delete(run);
          this.#pump();
        });
      this.#running.add(run);
    }
    if (this.#isIdle()) this.#idle.splice(0).forEach((resolve) => resolve());
  }

  async #recover(): Promise<void> {
    const signal = this.#stop.signal;
    let aborted = 0;
    for await (const record of this.#state.records()) {
      signal.throwIfAborted();
      if (record.status === "multipart" && record.uploadId) aborted += await this.#abortRecorded(record);
    }
    aborted += await this.#sweepOpenUploads();
    if (aborted) this.#notice(`forward: aborted ${aborted} multipart upload(s) left open by an earlier run`);
    for await (const found of scanUploads(this.#o.fileDir)) {
      signal.throwIfAborted();
      const record = await this.#state.get(found.path);
      if (record?.status !== "done") this.enqueue(found.path, { savedMs: found.mtimeMs });
      else if (this.#o.deleteAfter) await this.#removeLocal(found.path);
    }
    this.#recovered = true;
    this.#pump();
  }

  /** Aborts a multipart upload an earlier run recorded (or finds it gone: completed or aborted). */
  async #abortRecorded(record: ForwardRecord): Promise<number> {
    try {
      await this.#retry(() => this.#o.s3.abortMultipart(record.key, record.uploadId!, this.#stop.signal));
      await this.#state.put({ ...record, status: "failed", uploadId: undefined, reason: "interrupted" });
      return 1;
    } catch (error) {
      if (this.#stop.signal.aborted) throw error;
      this.#notice(`forward: cannot abort the multipart upload of ${record.key}: ${describeError(error)}`);
      return 0;
    }
  }

  /** Aborts every multipart upload open under this instance's prefix (a crash before its id was recorded). */
  async #sweepOpenUploads(): Promise<number> {
    const prefix = this.keyFor("") + "/";
    let open;
    try {
      open = await this.#retry(() => this.#o.s3.listMultipartUploads(prefix, this.#stop.signal));
    } catch (error) {
      if (this.#stop.signal.aborted) throw error;
      this.#notice(`forward: cannot list open multipart uploads under ${prefix}: ${describeError(error)}`);
      return 0;
    }
    for (const upload of open) {
      await this.#retry(() => this.#o.s3.abortMultipart(upload.key, upload.uploadId, this.#stop.signal));
    }
    return open.length;
  }

  async #removeLocal(path: string): Promise<boolean> {
    try {
      await Deno.remove(`${this.#o.fileDir}/${path}`);
      return true;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) this.#notice(`forward: cannot remove ${path}: ${error}`);
      return false;
    }
  }

  async #forward(path: string, item: Item): Promise<void> {
    const record = await this.#state.get(path);
    if (record?.status === "done") return;
    const file = `${this.#o.fileDir}/${path}`;
    const info = await Deno.lstat(file).catch(() => undefined);
    if (!info?.isFile) return this.#notice(`forward: ${file} is gone; not forwarded`);
    if (!this.#o.forwardErrors && (item.error ?? await isErrorUpload(file, info.size))) {
      return this.metrics.outcome("skipped");
    }
    const attempt: Attempt = {
      path,
      file,
      key: this.keyFor(path),
      size: info.size,
      attempts: (record?.attempts ?? 0) + 1,
      retries: 0,
      started: performance.now(),
    };
    try {
      await this.#done(attempt, await this.#store(attempt));
    } catch (error) {
      if (this.#stop.signal.aborted) return;
      await this.#giveUp(attempt, error);
    }
  }

  /** Writes the object, unless an earlier run already did; returns its ETag. */
  async #store(attempt: Attempt): Promise<string> {
    const { s3, partSize } = this.#o;
    const signal = this.#stop.signal;
    const existing = await this.#retry(() => s3.head(attempt.key, signal), attempt);
    if (existing) {
      const same = existing.size === attempt.size && etagComparable(existing.etag) &&
        existing.etag === await expectedEtag(attempt.file, partSize);
      if (same) return existing.etag;
      throw new S3ConflictError(
        `${attempt.key} already holds other content (${existing.size} bytes, ETag ${existing.etag}); not overwritten`,
      );
    }
    const base = { path: attempt.path, key: attempt.key, size: attempt.size, attempts: attempt.attempts };
    const written = await writeObject(s3, attempt.key, attempt.file, {
      pool: this.#pool,
      retry: (operation) => this.#retry(operation, attempt),
      onUploadId: (uploadId) =>
        this.#state.put({ ...base, attempts: attempt.attempts, status: "multipart", uploadId }),
      partSize,
      partsInFlight: this.#o.partsInFlight,
      signal,
    });
    return written.etag;
  }

  async #done(attempt: Attempt, etag: string): Promise<void> {
    await this.#state.put({
      path: attempt.path,
      key: attempt.key,
      size: attempt.size,
      attempts: attempt.attempts,
      status: "done",
      etag,
    });
    const deleted = this.#o.deleteAfter ? await this.#removeLocal(attempt.path) : false;
    this.metrics.outcome("forwarded", attempt.size);
    if (this.#degraded) this.#notice("forward: the store answers again");
    this.#degraded = false;
    this.#log(attempt, "forwarded", { etag, deleted, reason: null });
  }

  async #giveUp(attempt: Attempt, error: unknown): Promise<void> {
    const reason = describeError(error);
    await this.#state.put({
      path: attempt.path,
      key: attempt.key,
      size: attempt.size,
      attempts: attempt.attempts,
      status: "failed",
      reason,
    }).catch((e) => this.#notice(`forward: ${describeError(e)}`));
    this.metrics.outcome("failed");
    this.#log(attempt, "failed", { etag: null, deleted: false, reason });
  }

  #log(
    attempt: Attempt,
    outcome: ForwardLogEntry["outcome"],
    rest: Pick<ForwardLogEntry, "etag" | "deleted" | "reason">,
  ): void {
    this.#o.onLog?.({
      event: "forward",
      file: attempt.file,
      key: attempt.key,
      outcome,
      bytes: attempt.size,
      attempts: attempt.attempts,
      retries: attempt.retries,
      durationMs: Math.round(performance.now() - attempt.started),
      time: new Date().toISOString(),
      ...rest,
    });
  }
}
