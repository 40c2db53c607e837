/**
 * Several uploads in one client run: at most `parallel` at once, each over
 * its own connection(s); one summary line per file as it ends; and the run's
 * verdict, which names every file that was not stored.
 *
 * @example
 * ```ts
 * import { batchVerdict, runBatch, summaryLine } from "./upload_batch.ts";
 * import { deliver } from "./delivery.ts";
 * const items = [{ path: "a.csv" }, { path: "b.csv" }];
 * const outcomes = await runBatch(items, 4, (item) => deliver({ hostname: "gw", port: 5000, path: item.path }), {
 *   onDone: (item, outcome) => console.log(summaryLine(item, outcome)),
 * });
 * const failure = batchVerdict(items, outcomes);
 * if (failure) throw failure;
 * ```
 * @module
 */
import type { DeliveryOutcome } from "./delivery.ts";
import { AccioError, describeError, EXIT_FAILURE, InterruptedError } from "./errors.ts";
import type { UploadItem } from "./upload_list.ts";
import { STDIN_PATH } from "./upload_source.ts";

/** Options of {@link runBatch}. */
export interface BatchOptions {
  /** Called as each upload ends, in the order they end. */
  onDone?: (item: UploadItem, outcome: DeliveryOutcome) => void;
  /** Once it aborts, uploads not yet started are not started (they fail with its reason). */
  signal?: AbortSignal;
}

/** Runs `deliver` for every item, at most `parallel` at once; outcomes in the items' order. */
export async function runBatch(
  items: readonly UploadItem[],
  parallel: number,
  deliver: (item: UploadItem) => Promise<DeliveryOutcome>,
  { onDone, signal }: BatchOptions = {},
): Promise<DeliveryOutcome[]> {
  const outcomes: DeliveryOutcome[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      const item = items[index];
      const outcome = item.error
        ? failed(item.error)
        : signal?.aborted
        ? failed(notStarted(signal.reason))
        : await deliver(item);
      outcomes[index] = outcome;
      onDone?.(item, outcome);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(parallel, items.length)) }, worker));
  return outcomes;
}

function failed(error: unknown): DeliveryOutcome {
  return { ok: false, error, attempts: 0, sentBytes: 0, durationMs: 0 };
}

function notStarted(reason: unknown): InterruptedError {
  const code = reason instanceof InterruptedError ? reason.exitCode : 130;
  return new InterruptedError(`${describeError(reason)}: not started`, code, { cause: reason });
}

/** How a summary line names a file: quoted, so that any name stays on its line. */
export function shownPath(path: string): string {
  return path === STDIN_PATH ? "- (standard input)" : JSON.stringify(path);
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

/**
 * The summary line of one file:
 * `stored "a.csv" as "node7/a.csv": 20480 bytes in 0.05 s, verified` (then,
 * where they apply: `, resumed at byte N`, `, 3 attempts, M bytes sent`), or
 * `failed "a.csv": <reason>` (then `, after 3 attempts` and any note).
 */
export function summaryLine(item: UploadItem, outcome: DeliveryOutcome): string {
  const tries = outcome.attempts > 1 ? `${outcome.attempts} attempts` : "";
  if (!outcome.ok) {
    const extra = [tries && `after ${tries}`, outcome.note].filter(Boolean).join(", ");
    return `failed ${shownPath(item.path)}: ${describeError(outcome.error)}${extra ? ` (${extra})` : ""}`;
  }
  const target = item.name === undefined ? "a numbered upload" : JSON.stringify(item.name);
  const details = [
    outcome.sha256 ? "verified" : "",
    outcome.offset > 0 ? `resumed at byte ${outcome.offset}` : "",
    tries && `${tries}, ${outcome.sentBytes} bytes sent`,
  ].filter(Boolean);
  return `stored ${shownPath(item.path)} as ${target}: ${outcome.bytes} bytes in ${
    seconds(outcome.durationMs)
  }${details.length > 0 ? `, ${details.join(", ")}` : ""}`;
}

/** A run in which some files were not stored. */
export class BatchError extends AccioError {
  /** The exit code: the failures' own when they share one, else 1. */
  override readonly exitCode: number;
  /** `message` names the files; `exitCode` as described. */
  constructor(message: string, exitCode: number) {
    super(message);
    this.exitCode = exitCode;
  }
}

/**
 * The run's verdict: `undefined` when every file was stored. One file: its
 * own error, as a single upload reports it. Several: a {@link BatchError}
 * naming each file not stored, with its reason.
 */
export function batchVerdict(items: readonly UploadItem[], outcomes: readonly DeliveryOutcome[]): unknown {
  const failures = items.flatMap((item, i) => {
    const outcome = outcomes[i];
    return outcome.ok ? [] : [{ item, error: outcome.error }];
  });
  if (failures.length === 0) return undefined;
  if (items.length === 1) return failures[0].error;
  const codes = new Set(
    failures.map(({ error }) => error instanceof AccioError ? error.exitCode : EXIT_FAILURE),
  );
  const interrupted = failures.find(({ error }) => error instanceof InterruptedError)?.error as
    | InterruptedError
    | undefined;
  const code = interrupted?.exitCode ?? (codes.size === 1 ? [...codes][0] : EXIT_FAILURE);
  const listed = failures.map(({ item, error }) => `${shownPath(item.path)} (${describeError(error)})`);
  return new BatchError(`${failures.length} of ${items.length} files not stored: ${listed.join("; ")}`, code);
}
