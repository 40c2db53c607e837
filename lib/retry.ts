/**
 * When the client tries an upload again, and how long it waits first.
 *
 * Only failures that can succeed later are retried: those whose error is
 * {@link AccioError.transient}. Transient: a refused connection, a reset or
 * early close, an unreachable host, a temporary failure of the resolver,
 * every timeout, and a server's `error` receipt whose reason is transient
 * (`busy`, its idle timeout, its shutdown: `headers.ts`). Permanent: a name
 * that does not resolve, a refused or existing name, `unauthorized` and every
 * other receipt, a server that does not speak the protocol, a local file
 * error, a wrong command line, and a signal.
 *
 * Back-off: the k-th retry waits a random time between half and all of
 * `base · 2^(k-1)`, at most {@link MAX_BACKOFF_MS} (exponential, with jitter,
 * so that a fleet cut off at once does not come back at once).
 *
 * @example
 * ```ts
 * import { backoffMs, isRetryable } from "./retry.ts";
 * import { ConnectionError } from "./errors.ts";
 * isRetryable(new ConnectionError("connection refused by gw:5000")); // true
 * backoffMs(3, 1_000); // between 2000 and 4000
 * ```
 * @module
 */
import { AccioError, InterruptedError } from "./errors.ts";

/** The longest wait between two attempts, in ms. */
export const MAX_BACKOFF_MS = 60_000;

/** Whether `error` is a failure that trying again may overcome. */
export function isRetryable(error: unknown): boolean {
  return error instanceof AccioError && !(error instanceof InterruptedError) && error.transient;
}

/**
 * The wait before retry number `retry` (1 for the first), in ms: random in
 * `[c/2, c]` where `c = min(baseMs · 2^(retry-1), MAX_BACKOFF_MS)`.
 */
export function backoffMs(retry: number, baseMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(MAX_BACKOFF_MS, baseMs * 2 ** Math.max(0, retry - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
