/**
 * Limits per client address: connections at once ({@link AddressLimit}, like
 * vsftpd's `max_per_ip`), and a back-off after failed authentications
 * ({@link FailureBackoff}). The address is the client's, or the one the PROXY
 * header gave when the server sits behind a proxy.
 *
 * Both keep memory bounded: the connection counts hold only addresses with a
 * connection open; the back-off tracks at most `maxTracked` addresses and
 * forgets the least recently failing one first.
 *
 * @example
 * ```ts
 * import { addressKey, AddressLimit, FailureBackoff } from "./address_limit.ts";
 * const limit = new AddressLimit(4);
 * const release = limit.tryAcquire(addressKey("192.0.2.7"));
 * if (release === undefined) console.log("too many connections from 192.0.2.7");
 * const backoff = new FailureBackoff();
 * const wait = backoff.admit(addressKey("192.0.2.7", 64)); // ms to wait, or undefined: refuse now
 * release?.();
 * ```
 * @module
 */

/** Expands an IPv6 literal to its eight 16-bit groups, or `undefined` when it is not one. */
function ipv6Groups(address: string): number[] | undefined {
  let text = address.toLowerCase();
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text); // a trailing IPv4 part: two more groups
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number);
    if ([a, b, c, d].some((byte) => byte > 255)) return undefined;
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const head = halves[0] ? halves[0].split(":") : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  const fill = 8 - head.length - tail.length;
  if (halves.length === 1 ? fill !== 0 : fill < 1) return undefined;
  const words = [...head, ...Array(halves.length === 2 ? fill : 0).fill("0"), ...tail];
  if (!words.every((word) => /^[0-9a-f]{1,4}$/.test(word))) return undefined;
  return words.map((word) => parseInt(word, 16));
}

/**
 * The key an address counts under: IPv4 as is (also when IPv4-mapped,
 * `::ffff:192.0.2.7`); IPv6 cut to its first `ipv6PrefixBits` bits (a multiple
 * of 16; 128 keeps the whole address), since one IPv6 host may hold a whole
 * /64. Anything else (a name, a Unix socket) as given.
 *
 * @example
 * ```ts
 * import { addressKey } from "./address_limit.ts";
 * addressKey("2001:db8::7", 64); // "2001:db8:0:0::/64"
 * ```
 */
export function addressKey(hostname: string, ipv6PrefixBits = 128): string {
  const host = hostname.replace(/^\[(.*)\]$/, "$1").replace(/%.*$/, "");
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
  if (mapped) return mapped[1];
  if (!host.includes(":")) return host;
  const groups = ipv6Groups(host);
  if (!groups) return host;
  const kept = Math.max(0, Math.min(8, Math.floor(ipv6PrefixBits / 16)));
  const prefix = groups.slice(0, kept).map((g) => g.toString(16)).join(":");
  return kept === 8 ? prefix : `${prefix}::/${kept * 16}`;
}

/** Connections open at once per address, at most `max` each. *
 * @example
 * ```ts
 * import { addressKey, AddressLimit } from "./address_limit.ts";
 * const limit = new AddressLimit(4);
 * const release = limit.tryAcquire(addressKey("192.0.2.7"));
 * // ... serve, then:
 * release?.();
 * ```
 */
export class AddressLimit {
  /** The most connections one address may hold open. */
  readonly max: number;
  readonly #open = new Map<string, number>();
  #refused = 0;

  /** `max` connections at once per address, at least 1. */
  constructor(max: number) {
    if (!Number.isInteger(max) || max < 1) {
      throw new RangeError(`max per address must be a positive integer: ${max}`);
    }
    this.max = max;
  }

  /**
   * Counts a new connection from `key`, unless it already has {@link max}.
   *
   * @returns a release function (call it once the connection ends; later calls do nothing), or `undefined`: refuse.
   */
  tryAcquire(key: string): (() => void) | undefined {
    const open = this.#open.get(key) ?? 0;
    if (open >= this.max) {
      this.#refused++;
      return undefined;
    }
    this.#open.set(key, open + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#open.get(key) ?? 1) - 1;
      if (left === 0) this.#open.delete(key);
      else this.#open.set(key, left);
    };
  }

  /** Connections open now from `key`. */
  openFrom(key: string): number {
    return this.#open.get(key) ?? 0;
  }

  /** For metrics: addresses with a connection open, and connections refused so far. */
  get stats(): { addresses: number; refused: number } {
    return { addresses: this.#open.size, refused: this.#refused };
  }
}

/** Settings of {@link FailureBackoff}. */
export interface BackoffOptions {
  /** Failures an address may have (decayed) before its attempts wait. Default 5. */
  freeFailures?: number;
  /** The first wait, in ms; each further failure doubles it. Default 100. */
  baseMs?: number;
  /**
   * The longest wait, in ms; an attempt that would wait longer is refused at once. Default 5 000:
   * well inside a client's 10 s timeouts, so it reads its `error unauthorized` instead of timing out.
   */
  capMs?: number;
  /** Failures count half after this long, in ms (exponential decay). Default 60 000. */
  halfLifeMs?: number;
  /** Most addresses tracked; the least recently failing is forgotten first. Default 10 000. */
  maxTracked?: number;
  /** The clock, in ms. Default `performance.now`. */
  now?: () => number;
}

interface Failures {
  /** Failures, decayed to {@link Failures.at}. */
  score: number;
  at: number;
  /** No attempt from this address is admitted before this time. */
  nextAt: number;
}

/**
 * Exponential back-off per address after failed authentications: past a few
 * failures, each attempt from the address waits (before its token is even
 * checked) twice as long as the one before, up to a cap; attempts queue one
 * behind the other, so waiting in parallel buys nothing; an attempt that
 * would wait past the cap is refused at once. Failures decay with a
 * half-life. Other addresses are not affected.
 *
 * @example
 * ```ts
 * import { FailureBackoff } from "./address_limit.ts";
 * const backoff = new FailureBackoff();
 * const wait = backoff.admit("192.0.2.7");
 * if (wait === undefined) console.log("refused: too many failed attempts");
 * else setTimeout(() => backoff.recordFailure("192.0.2.7"), wait); // check the token after `wait` ms
 * ```
 */
export class FailureBackoff {
  readonly #free: number;
  readonly #baseMs: number;
  readonly #capMs: number;
  readonly #halfLifeMs: number;
  readonly #maxTracked: number;
  readonly #now: () => number;
  readonly #records = new Map<string, Failures>();
  readonly #stats = { failures: 0, delayed: 0, refused: 0 };

  /** See {@link BackoffOptions} for the defaults. */
  constructor(options: BackoffOptions = {}) {
    this.#free = options.freeFailures ?? 5;
    this.#baseMs = options.baseMs ?? 100;
    this.#capMs = options.capMs ?? 5_000;
    this.#halfLifeMs = options.halfLifeMs ?? 60_000;
    this.#maxTracked = options.maxTracked ?? 10_000;
    this.#now = options.now ?? (() => performance.now());
  }

  /** The record of `key`, its score decayed to now; `undefined` when it has nothing left to remember. */
  #current(key: string, now: number): Failures | undefined {
    const record = this.#records.get(key);
    if (!record) return undefined;
    record.score *= 2 ** (-(now - record.at) / this.#halfLifeMs);
    record.at = now;
    if (record.score < 0.01 && record.nextAt <= now) {
      this.#records.delete(key);
      return undefined;
    }
    return record;
  }

  /** The wait an attempt adds behind it, for a decayed failure count (rounded: a moment's decay is no step down). */
  #delayFor(score: number): number {
    const failures = Math.round(score);
    if (failures < this.#free) return 0;
    return Math.min(this.#baseMs * 2 ** (failures - this.#free), this.#capMs);
  }

  /** How long the next attempt from `key` would add to its queue, in ms. */
  delayMs(key: string): number {
    return this.#delayFor(this.#current(key, this.#now())?.score ?? 0);
  }

  /**
   * Admits an attempt from `key`.
   *
   * @returns how long to wait before checking its token, in ms (0: at once), or `undefined`: refuse it now.
   */
  admit(key: string): number | undefined {
    const now = this.#now();
    const record = this.#current(key, now);
    if (!record) return 0;
    const wait = Math.max(0, record.nextAt - now);
    if (wait > this.#capMs) {
      this.#stats.refused++;
      return undefined;
    }
    record.nextAt = Math.max(now, record.nextAt) + this.#delayFor(record.score);
    if (wait > 0) this.#stats.delayed++;
    return wait;
  }

  /** Records a failed authentication from `key`. */
  recordFailure(key: string): void {
    const now = this.#now();
    const record = this.#current(key, now) ?? { score: 0, at: now, nextAt: now };
    record.score += 1;
    this.#stats.failures++;
    this.#records.delete(key); // re-inserted last: the map's order is the order of the latest failures
    this.#records.set(key, record);
    while (this.#records.size > this.#maxTracked) this.#records.delete(this.#records.keys().next().value!);
  }

  /** For metrics: failures recorded, attempts delayed or refused, addresses tracked now. */
  get stats(): { failures: number; delayed: number; refused: number; tracked: number } {
    return { ...this.#stats, tracked: this.#records.size };
  }
}
