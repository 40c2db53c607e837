/**
 * Waiting on a promise until an `AbortSignal` fires, and bounded waits that
 * report whether they settled. The operation itself goes on (nothing here
 * cancels it); the caller stops waiting for it.
 *
 * @example
 * ```ts
 * import { abortable, settlesWithin } from "./abortable.ts";
 * const stop = new AbortController();
 * const slow = new Promise((resolve) => setTimeout(resolve, 5_000));
 * setTimeout(() => stop.abort(new Error("stopped")), 10);
 * await abortable(slow, stop.signal).catch((error) => console.log(error.message)); // "stopped"
 * console.log(await settlesWithin(slow, 10)); // false
 * ```
 * @module
 */

/** Settles like `promise`, or rejects with `signal.reason` as soon as `signal` aborts. */
export function abortable<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  let onAbort = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
  });
  return Promise.race([promise, aborted]).finally(() => signal.removeEventListener("abort", onAbort));
}

/** Resolves `true` once `promise` settles (either way), or `false` when `ms` pass first. */
export function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<boolean>((resolve) =>
    timer = setTimeout(() => resolve(false), Math.max(0, ms))
  );
  const settled = promise.then(() => true, () => true);
  return Promise.race([settled, expired]).finally(() => clearTimeout(timer));
}
