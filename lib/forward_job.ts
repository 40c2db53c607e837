/**
 * One forward: one saved upload copied to the store, as a
 * {@link ForwardQueue} runs it. A HEAD first, so an object an earlier run
 * already stored (same size and ETag) is recognised and not sent again, and
 * a key holding different content is never overwritten (the forward gives
 * up). Then the write, verified ({@link writeObject}), then the `done`
 * record, then (with `deleteAfter`) the local copy is removed. A failure that
 * retrying cannot help gives the upload up: a `failed` record, a log entry,
 * the local copy kept.
 *
 * @example
 * ```ts
 * import { type ForwardContext, forwardUpload } from "./forward_job.ts";
 * declare const context: ForwardContext; // what a ForwardQueue gives its forwards
 * await forwardUpload(context, "floor2/temp.csv", {});
 * ```
 * @module
 */
import { describeError } from "./errors.ts";
import type { ForwardMetrics } from "./forward_metrics.ts";
import { isErrorUpload } from "./forward_scan.ts";
import type { ForwardState } from "./forward_state.ts";
import type { S3Client } from "./s3_client.ts";
import { S3ConflictError } from "./s3_errors.ts";
import { etagComparable, expectedEtag, writeObject } from "./s3_object_writer.ts";
import type { PartPool } from "./s3_part_pool.ts";

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

/** One attempt at forwarding one upload. */
export interface Attempt {
  /** The upload's path relative to FILE-DIR. */
  path: string;
  /** The local file. */
  file: string;
  /** The object key. */
  key: string;
  /** The file's size. */
  size: number;
  /** Attempts of this upload, across restarts, this one included. */
  attempts: number;
  /** Requests retried in this attempt so far. */
  retries: number;
  /** When it started (`performance.now()`). */
  started: number;
}

/** What a forward needs from its queue. */
export interface ForwardContext {
  /** The upload directory. */
  readonly fileDir: string;
  /** The store. */
  readonly s3: S3Client;
  /** The durable per-upload records. */
  readonly state: ForwardState;
  /** The part buffers all forwards share. */
  readonly pool: PartPool;
  /** The forwarder's counters. */
  readonly metrics: ForwardMetrics;
  /** Aborted when forwarding stops. */
  readonly signal: AbortSignal;
  /** The base part size. */
  readonly partSize: number;
  /** Parts in flight per forward. */
  readonly partsInFlight: number;
  /** Remove the local copy once the object is verified. */
  readonly deleteAfter: boolean;
  /** Forward `ERROR` uploads too. */
  readonly forwardErrors: boolean;
  /** Receives one entry per forward that completes or gives up. */
  readonly onLog?: (entry: ForwardLogEntry) => void;
  /** The key of the upload at `path`. */
  keyFor(path: string): string;
  /** Runs `operation`, retrying what can be retried; counts the retries in `attempt`. */
  retry<T>(operation: () => Promise<T>, attempt?: Attempt): Promise<T>;
  /** Says something to the operator. */
  notice(message: string): void;
  /** The store answered a whole forward: ends a spell of retries (and says so). */
  answered(): void;
}

/**
 * Forwards the saved upload at `path` (relative to FILE-DIR), unless it is
 * already done, gone, or an `ERROR` upload that is not to be forwarded.
 * Never throws once the attempt has begun, unless forwarding stopped.
 */
export async function forwardUpload(
  ctx: ForwardContext,
  path: string,
  item: { error?: boolean },
): Promise<void> {
  const record = await ctx.state.get(path);
  if (record?.status === "done") return;
  const file = `${ctx.fileDir}/${path}`;
  const info = await Deno.lstat(file).catch(() => undefined);
  if (!info?.isFile) return ctx.notice(`forward: ${file} is gone; not forwarded`);
  if (!ctx.forwardErrors && (item.error ?? await isErrorUpload(file, info.size))) {
    return ctx.metrics.outcome("skipped");
  }
  const attempt: Attempt = {
    path,
    file,
    key: ctx.keyFor(path),
    size: info.size,
    attempts: (record?.attempts ?? 0) + 1,
    retries: 0,
    started: performance.now(),
  };
  try {
    await done(ctx, attempt, await store(ctx, attempt));
  } catch (error) {
    if (ctx.signal.aborted) return;
    await giveUp(ctx, attempt, error);
  }
}

/**
 * Removes the local copy of the upload at `path`; returns whether it did.
 *
 * @example
 * ```ts
 * import { removeLocal } from "./forward_job.ts";
 * await removeLocal("/save", "1.file", console.error);
 * ```
 */
export async function removeLocal(
  fileDir: string,
  path: string,
  notice: (message: string) => void,
): Promise<boolean> {
  try {
    await Deno.remove(`${fileDir}/${path}`);
    return true;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) notice(`forward: cannot remove ${path}: ${error}`);
    return false;
  }
}

/** Writes the object, unless an earlier run already did; returns its ETag. */
async function store(ctx: ForwardContext, attempt: Attempt): Promise<string> {
  const { s3, partSize, signal } = ctx;
  const existing = await ctx.retry(() => s3.head(attempt.key, signal), attempt);
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
    pool: ctx.pool,
    retry: (operation) => ctx.retry(operation, attempt),
    onUploadId: (uploadId) =>
      ctx.state.put({ ...base, attempts: attempt.attempts, status: "multipart", uploadId }),
    partSize,
    partsInFlight: ctx.partsInFlight,
    signal,
  });
  return written.etag;
}

async function done(ctx: ForwardContext, attempt: Attempt, etag: string): Promise<void> {
  await ctx.state.put({
    path: attempt.path,
    key: attempt.key,
    size: attempt.size,
    attempts: attempt.attempts,
    status: "done",
    etag,
  });
  const deleted = ctx.deleteAfter ? await removeLocal(ctx.fileDir, attempt.path, ctx.notice) : false;
  ctx.metrics.outcome("forwarded", attempt.size);
  ctx.answered();
  log(ctx, attempt, "forwarded", { etag, deleted, reason: null });
}

async function giveUp(ctx: ForwardContext, attempt: Attempt, error: unknown): Promise<void> {
  const reason = describeError(error);
  await ctx.state.put({
    path: attempt.path,
    key: attempt.key,
    size: attempt.size,
    attempts: attempt.attempts,
    status: "failed",
    reason,
  }).catch((e) => ctx.notice(`forward: ${describeError(e)}`));
  ctx.metrics.outcome("failed");
  log(ctx, attempt, "failed", { etag: null, deleted: false, reason });
}

function log(
  ctx: ForwardContext,
  attempt: Attempt,
  outcome: ForwardLogEntry["outcome"],
  rest: Pick<ForwardLogEntry, "etag" | "deleted" | "reason">,
): void {
  ctx.onLog?.({
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
