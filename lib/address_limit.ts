/**
 * Limits per client address: connections at once ({@link AddressLimit}, like
 * vsftpd's `max_per_ip`), and the keys addresses are counted by
 * ({@link addressKey}, also the token lock-out's: `auth_lockout.ts`). The
 * address is the client's, or the one the PROXY header gave when the server
 * sits behind a proxy. Memory stays bounded: the counts hold only addresses
 * with a connection open.
 *
 * @example
 * ```ts
 * import { addressKey, AddressLimit } from "./address_limit.ts";
 * const limit = new AddressLimit(4);
 * const release = limit.tryAcquire(addressKey("192.0.2.7"));
 * if (release === undefined) console.log("too many connections from 192.0.2.7");
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
