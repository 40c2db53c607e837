/**
 * Retries with exponential back-off and jitter. Only errors that say a retry
 * can help ({@link S3Error.retryable}: the store unreachable, 5xx, throttled)
 * are retried, and without a limit on their number: an outage of any length
 * ends in a forward, never in a lost upload. Everything else is thrown at once.
 * The delay before retry n (from 0) is drawn uniformly from
 * [d/2, d] with d = min(maxMs, baseMs * 2^n) ("equal jitter": never zero,
 * never synchronised across forwards).
 *
 * @example
 * ```ts
 * import { retrying } from "./forward_retry.ts";
 * const policy = { baseMs: 200, maxMs: 30_000 };
 * const result = await retrying(() => Promise.resolve(42), policy, {});
 * ```
 * @module
 */
import { S3Error } from "./s3_errors.ts";

/** How long to wait between attempts. */
export interface RetryPolicy {
  /** The first retry's upper bound, in ms. */
  baseMs: number;
  /** The largest delay, in ms, however many retries came before. */
  maxMs: number;
}

/** The default: 200 ms doubling up to 30 s. */
export const DEFAULT_RETRY: RetryPolicy = { baseMs: 200, maxMs: 30_000 };

/** What {@link retrying} reports and obeys. */
export interface RetryHooks {
  /** Ends the waiting (rejects with the signal's reason). */
  signal?: AbortSignal;
  /** Called before each wait, with the error, the retry number (from 0) and the delay. */
  onRetry?: (error: S3Error, retry: number, delayMs: number) => void;
}

/**
 * The delay before retry `retry` (from 0).
 *
 * @example
 * ```ts
 * import { backoffDelay } from "./forward_retry.ts";
 * backoffDelay(3, { baseMs: 100, maxMs: 10_000 }, () => 1); // 800
 * ```
 */
export function backoffDelay(retry: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(retry, 52));
  return ceiling / 2 + (ceiling / 2) * random();
}

/**
 * Sleeps `ms`, or until `signal` aborts (then rejects with its reason).
 *
 * @example
 * ```ts
 * import { sleep } from "./forward_retry.ts";
 * await sleep(10);
 * ```
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Runs `operation` until it succeeds or fails with an error that retrying
 * cannot fix.
 *
 * @example
 * ```ts
 * import { retrying } from "./forward_retry.ts";
 * let calls = 0;
 * await retrying(async () => calls++, { baseMs: 1, maxMs: 10 }, { onRetry: () => {} });
 * ```
 */
export async function retrying<T>(
  operation: () => Promise<T>,
  policy: RetryPolicy,
  hooks: RetryHooks,
): Promise<T> {
  for (let retry = 0;; retry++) {
    hooks.signal?.throwIfAborted();
    try {
      return await operation();
    } catch (error) {
      if (!(error instanceof S3Error) || !error.retryable || hooks.signal?.aborted) throw error;
      const delayMs = backoffDelay(retry, policy);
      hooks.onRetry?.(error, retry, delayMs);
      await sleep(delayMs, hooks.signal);
    }
  }
}

/** What a {@link Retrier} reports. */
export interface RetrierHooks {
  /** Ends every wait (rejects with the signal's reason). */
  signal: AbortSignal;
  /** Called for every retry (to count it). */
  onRetry: () => void;
  /** Says something to the operator. */
  notice: (message: string) => void;
}

/**
 * The retries of one forwarder: every request through {@link retrying}, and
 * one notice when requests start failing, one when the store answers again,
 * rather than a line per retry.
 *
 * @example
 * ```ts
 * import { DEFAULT_RETRY, Retrier } from "./forward_retry.ts";
 * const retrier = new Retrier(DEFAULT_RETRY, { signal: new AbortController().signal, onRetry() {}, notice: console.error });
 * await retrier.run(() => Promise.resolve("stored"));
 * retrier.answered();
 * ```
 */
export class Retrier {
  readonly #policy: RetryPolicy;
  readonly #hooks: RetrierHooks;
  #degraded = false;

  /** Retries by `policy`. */
  constructor(policy: RetryPolicy, hooks: RetrierHooks) {
    this.#policy = policy;
    this.#hooks = hooks;
  }

  /** Runs `operation`, retrying what can be retried; counts the retries in `attempt`. */
  run<T>(operation: () => Promise<T>, attempt?: { retries: number }): Promise<T> {
    return retrying(operation, this.#policy, {
      signal: this.#hooks.signal,
      onRetry: (error) => {
        this.#hooks.onRetry();
        if (attempt) attempt.retries++;
        if (!this.#degraded) this.#hooks.notice(`forward: ${error.message}; retrying with back-off`);
        this.#degraded = true;
      },
    });
  }

  /** The store answered a whole forward: a spell of retries, if any, is over (and said to be). */
  answered(): void {
    if (this.#degraded) this.#hooks.notice("forward: the store answers again");
    this.#degraded = false;
  }
}
