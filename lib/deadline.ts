/**
 * Deadlines for single socket operations. Every wait on a peer in Accio goes
 * through {@link withDeadline}, so "no progress for N ms" is decided in one place.
 *
 * @example
 * ```ts
 * import { withDeadline } from "./deadline.ts";
 * import { TimeoutError } from "./errors.ts";
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: 5000 });
 * const n = await withDeadline(
 *   conn.read(new Uint8Array(7)),
 *   10_000,
 *   () => new TimeoutError("no data for 10 s"),
 *   () => conn.close(),
 * );
 * ```
 * @module
 */

/** The default for every timeout in Accio, from the specification: 10 seconds. */
export const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * Settles like `operation`, unless `ms` pass first: then `onExpire` runs (to
 * close the socket, which also ends the pending operation) and the returned
 * promise rejects with the error from `makeError`.
 */
export function withDeadline<T>(
  operation: Promise<T>,
  ms: number,
  makeError: () => Error,
  onExpire?: () => void,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      try {
        onExpire?.();
      } finally {
        reject(makeError());
      }
    }, ms);
  });
  return Promise.race([operation, expired]).finally(() => clearTimeout(timer));
}

/**
 * Formats a duration in milliseconds the way error messages say it: `10 s`, `0.5 s`.
 *
 * @example
 * ```ts
 * import { formatSeconds } from "./deadline.ts";
 * formatSeconds(10_000); // "10 s"
 * ```
 */
export function formatSeconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

/**
 * An idle timeout for a stream of operations: `touch()` after each one that
 * made progress; when `ms` pass without a touch, `onExpire` runs once. Cheaper
 * than a deadline per operation on a busy stream: one timer, re-armed only when
 * it fires.
 *
 * @example
 * ```ts
 * import { IdleWatchdog } from "./deadline.ts";
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: 5000 });
 * const watchdog = new IdleWatchdog(10_000, () => conn.close());
 * while ((await conn.read(new Uint8Array(1024))) !== null) watchdog.touch();
 * watchdog.stop();
 * ```
 */
export class IdleWatchdog {
  #expired = false;
  readonly #ms: number;
  readonly #onExpire: () => void;
  #last = performance.now();
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** Starts watching: `onExpire` runs once `ms` pass without a {@link touch}. */
  constructor(ms: number, onExpire: () => void) {
    this.#ms = ms;
    this.#onExpire = onExpire;
    this.#arm(ms);
  }

  /** True once the timeout has passed and `onExpire` ran. */
  get expired(): boolean {
    return this.#expired;
  }

  #arm(delay: number): void {
    this.#timer = setTimeout(() => {
      const idle = performance.now() - this.#last;
      if (idle + 1 < this.#ms) return this.#arm(this.#ms - idle);
      this.#expired = true;
      this.#timer = undefined;
      this.#onExpire();
    }, delay);
  }

  /** Records progress: the idle period starts again. */
  touch(): void {
    this.#last = performance.now();
  }

  /** Cancels the watchdog. */
  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
