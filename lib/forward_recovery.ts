/**
 * What a {@link ForwardQueue} does at start, in the background, before it
 * forwards: aborts the multipart uploads a crash left open (those recorded in
 * `.accio-forward/`, and every one listed under `PREFIX/<instance>/`, for a
 * crash before its id was recorded), then rescans the upload directory and
 * queues every upload not yet done (with `deleteAfter`, a done upload whose
 * local copy survived a crash is removed now).
 *
 * @example
 * ```ts
 * import { recoverForwards, type RecoveryContext } from "./forward_recovery.ts";
 * declare const context: RecoveryContext; // what a ForwardQueue gives its recovery
 * await recoverForwards(context);
 * ```
 * @module
 */
import { describeError } from "./errors.ts";
import { type ForwardContext, removeLocal } from "./forward_job.ts";
import { scanUploads } from "./forward_scan.ts";
import type { ForwardRecord } from "./forward_state.ts";

/** What recovery needs from its queue. */
export interface RecoveryContext extends
  Pick<
    ForwardContext,
    "fileDir" | "s3" | "state" | "signal" | "deleteAfter" | "keyFor" | "retry" | "notice"
  > {
  /** Queues an upload found on disk and not yet done. */
  enqueue(path: string, options: { savedMs: number }): void;
}

/**
 * Aborts what a crash left open, then queues what is not yet forwarded.
 *
 * @throws the signal's reason when forwarding stops meanwhile; a failed listing of the directory.
 */
export async function recoverForwards(ctx: RecoveryContext): Promise<void> {
  let aborted = 0;
  for await (const record of ctx.state.records()) {
    ctx.signal.throwIfAborted();
    if (record.status === "multipart" && record.uploadId) aborted += await abortRecorded(ctx, record);
  }
  aborted += await sweepOpenUploads(ctx);
  if (aborted) ctx.notice(`forward: aborted ${aborted} multipart upload(s) left open by an earlier run`);
  for await (const found of scanUploads(ctx.fileDir)) {
    ctx.signal.throwIfAborted();
    const record = await ctx.state.get(found.path);
    if (record?.status !== "done") ctx.enqueue(found.path, { savedMs: found.mtimeMs });
    else if (ctx.deleteAfter) await removeLocal(ctx.fileDir, found.path, ctx.notice);
  }
}

/** Aborts a multipart upload an earlier run recorded (or finds it gone: completed or aborted). */
async function abortRecorded(ctx: RecoveryContext, record: ForwardRecord): Promise<number> {
  try {
    await ctx.retry(() => ctx.s3.abortMultipart(record.key, record.uploadId!, ctx.signal));
    await ctx.state.put({ ...record, status: "failed", uploadId: undefined, reason: "interrupted" });
    return 1;
  } catch (error) {
    if (ctx.signal.aborted) throw error;
    ctx.notice(`forward: cannot abort the multipart upload of ${record.key}: ${describeError(error)}`);
    return 0;
  }
}

/** Aborts every multipart upload open under this instance's prefix (a crash before its id was recorded). */
async function sweepOpenUploads(ctx: RecoveryContext): Promise<number> {
  const prefix = ctx.keyFor("") + "/";
  let open;
  try {
    open = await ctx.retry(() => ctx.s3.listMultipartUploads(prefix, ctx.signal));
  } catch (error) {
    if (ctx.signal.aborted) throw error;
    ctx.notice(`forward: cannot list open multipart uploads under ${prefix}: ${describeError(error)}`);
    return 0;
  }
  for (const upload of open) {
    await ctx.retry(() => ctx.s3.abortMultipart(upload.key, upload.uploadId, ctx.signal));
  }
  return open.length;
}
