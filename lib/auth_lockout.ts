/**
 * Lock-out per client address after failed token checks (`server --tokens`):
 * after {@link LOCKOUT_FREE_FAILURES} failures an address is locked for 1 s,
 * and each further failure locks it for twice as long, up to 60 s. While it
 * is locked, its connections are refused at once, before `accio\r\n` and
 * without reading a byte, so a locked-out guesser costs the server no
 * connection slot and no token check. A success does not clear the
 * address's failures: one holder of a valid token could otherwise guess other
 * sensors' tokens between its own uploads at full speed; failures are only
 * forgotten with time.
 *
 * Refusing instead of delaying keeps slots free: a delayed attempt would hold
 * its slot for the whole delay. And a locked address's next turn is not moved
 * on by its refused attempts, so a client that keeps trying is let in once
 * the lock ends.
 *
 * A suspicious address (past its free failures) gets one check at a time:
 * otherwise each unlocked moment would let a whole burst of parallel guesses
 * through. An address with no failures is not limited at all, so a fleet of
 * good sensors behind one NAT is never slowed down.
 *
 * Memory is bounded: at most `maxTracked` addresses, the one whose last
 * failure is oldest among those not locked forgotten first; an address is
 * also forgotten once its lock is over and it has not failed for `forgetMs`.
 *
 * @example
 * ```ts
 * import { AuthLockout } from "./auth_lockout.ts";
 * const lockout = new AuthLockout();
 * const admission = lockout.begin("192.0.2.7");
 * if (!admission.admitted) console.log(`locked for ${admission.lockedMs} ms`);
 * else admission.finish("failure"); // after checking the token
 * ```
 * @module
 */

/** Failures an address may have before it is locked. */
export const LOCKOUT_FREE_FAILURES = 3;

/** Settings of an {@link AuthLockout}. */
export interface LockoutOptions {
  /**
   * Failures before the first lock.
   *
   * @default {3}
   */
  freeFailures?: number;
  /**
   * The first lock, in ms; each further failure doubles it.
   *
   * @default {1_000}
   */
  firstLockMs?: number;
  /**
   * The longest lock, in ms.
   *
   * @default {60_000}
   */
  maxLockMs?: number;
  /**
   * An address's failures are forgotten this long after its last one (once its lock is over), in ms.
   *
   * @default {900_000}
   */
  forgetMs?: number;
  /**
   * Most addresses tracked.
   *
   * @default {10_000}
   */
  maxTracked?: number;
  /** The clock, in ms. Default `performance.now`. */
  now?: () => number;
}

/** How an admitted attempt ended: `other` (a timeout, a broken connection) changes nothing. */
export type AttemptOutcome = "success" | "failure" | "other";

/** What {@link AuthLockout.begin} decided. */
export type Admission =
  | {
    admitted: true;
    /**
     * Whether the token may still be checked: not once the address was locked
     * meanwhile (by the failures of a burst admitted with this attempt).
     */
    mayCheck(): boolean;
    /** Call once the token was checked, or the attempt ended without a check; later calls do nothing. */
    finish(outcome: AttemptOutcome): void;
  }
  | {
    admitted: false;
    /** How much longer the lock lasts, in ms; 0 when it is a check of the address already in flight. */
    lockedMs: number;
  };

interface Failures {
  failures: number;
  lockedUntil: number;
  lastFailureAt: number;
  /** Checks in progress that began while the address was suspicious. */
  inFlight: number;
}

/** Failed token checks per address, and the locks they lead to: see the module's description. *
 * @example
 * ```ts
 * import { AuthLockout } from "./auth_lockout.ts";
 * const lockout = new AuthLockout({ freeFailures: 3 });
 * for (let i = 0; i < 3; i++) {
 *   const admission = lockout.begin("192.0.2.7");
 *   if (admission.admitted) admission.finish("failure");
 * }
 * lockout.begin("192.0.2.7"); // { admitted: false, lockedMs: 1000 }
 * ```
 */
export class AuthLockout {
  readonly #free: number;
  readonly #firstLockMs: number;
  readonly #maxLockMs: number;
  readonly #forgetMs: number;
  readonly #maxTracked: number;
  readonly #now: () => number;
  readonly #records = new Map<string, Failures>();

  /** See {@link LockoutOptions} for the defaults. */
  constructor(options: LockoutOptions = {}) {
    this.#free = options.freeFailures ?? LOCKOUT_FREE_FAILURES;
    this.#firstLockMs = options.firstLockMs ?? 1_000;
    this.#maxLockMs = options.maxLockMs ?? 60_000;
    this.#forgetMs = options.forgetMs ?? 15 * 60_000;
    this.#maxTracked = options.maxTracked ?? 10_000;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Addresses tracked now. */
  get tracked(): number {
    return this.#records.size;
  }

  /** The record of `key`, unless there is none or it is old enough to forget. */
  #current(key: string, now: number): Failures | undefined {
    const record = this.#records.get(key);
    if (!record) return undefined;
    const idle = record.inFlight === 0 && now >= record.lockedUntil;
    if (idle && now - record.lastFailureAt >= this.#forgetMs) {
      this.#records.delete(key);
      return undefined;
    }
    return record;
  }

  /** Decides on a new attempt from `key`; an admitted one must be {@link Admission} finished. */
  begin(key: string): Admission {
    const now = this.#now();
    const record = this.#current(key, now);
    if (record && record.lockedUntil > now) return { admitted: false, lockedMs: record.lockedUntil - now };
    const suspicious = record !== undefined && record.failures >= this.#free;
    if (suspicious && record.inFlight > 0) return { admitted: false, lockedMs: 0 };
    if (suspicious) record.inFlight++;
    let finished = false;
    return {
      admitted: true,
      mayCheck: () => !((this.#current(key, this.#now())?.lockedUntil ?? 0) > this.#now()),
      finish: (outcome) => {
        if (finished) return;
        finished = true;
        const mine = suspicious ? this.#records.get(key) : undefined;
        if (mine) mine.inFlight = Math.max(0, mine.inFlight - 1);
        if (outcome === "failure") this.#fail(key); // a success changes nothing: see the module doc
      },
    };
  }

  /** Counts a failure of `key`, and locks it once past the free ones. */
  #fail(key: string): void {
    const now = this.#now();
    const record = this.#current(key, now) ??
      { failures: 0, lockedUntil: 0, lastFailureAt: now, inFlight: 0 };
    record.failures++;
    record.lastFailureAt = now;
    const beyond = record.failures - this.#free;
    if (beyond >= 0) record.lockedUntil = now + Math.min(this.#firstLockMs * 2 ** beyond, this.#maxLockMs);
    this.#records.delete(key); // re-inserted last: the map's order is the order of the latest failures
    this.#records.set(key, record);
    if (this.#records.size > this.#maxTracked) this.#evict(now);
  }

  /**
   * Makes room: forgets the address whose last failure is oldest among those
   * not locked, so that flooding the table from many addresses does not
   * unlock the ones already locked; only when every one is locked, the oldest.
   */
  #evict(now: number): void {
    for (const [key, record] of this.#records) {
      if (record.lockedUntil <= now && record.inFlight === 0) {
        this.#records.delete(key);
        return;
      }
    }
    this.#records.delete(this.#records.keys().next().value!);
  }
}
