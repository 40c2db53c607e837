/**
 * One numbering for every worker of a server: a counter in a
 * `SharedArrayBuffer`, drawn from with `Atomics`, so that each number is
 * handed out once whichever worker asks.
 *
 * Unlike `LocalNumbers` (`store.ts`), whose {@link NumberSource.next} only proposes
 * a number until the store reports it used, {@link SharedNumbers.next}
 * claims it at once (another worker may ask at the same moment). A store
 * whose file could not be created for a claimed number gives it back with
 * {@link SharedNumbers.release}; the next draw in any worker takes a given-back
 * number first, so the record stays gap-free. Whatever is still given back
 * when the server stops is listed by {@link SharedNumbers.unused}, for the
 * main thread to record as `ERROR`.
 *
 * @example
 * ```ts
 * import { SharedNumbers } from "./shared_numbers.ts";
 * const numbers = new SharedNumbers();
 * numbers.observe(41); // 41.file found at start
 * const copy = SharedNumbers.from(numbers.buffer); // in a worker, from a message
 * copy.next(); // 42
 * numbers.next(); // 43
 * ```
 * @module
 */
import type { NumberSource } from "./store.ts";

/** How many given-back numbers can wait at once: one creation in flight per worker at most. */
export const RETURN_SLOTS = 256;

const HIGHEST = 0;
const RETURNED = 1;
const FIRST_SLOT = 2;

/** A numbering shared through its {@link SharedNumbers.buffer}. */
export class SharedNumbers implements NumberSource {
  /** The shared memory: post it to a worker and open it there with {@link SharedNumbers.from}. */
  readonly buffer: SharedArrayBuffer;
  readonly #cells: BigInt64Array;

  /** A new numbering at 0, or the one in `buffer`. */
  constructor(buffer = new SharedArrayBuffer((FIRST_SLOT + RETURN_SLOTS) * 8)) {
    this.buffer = buffer;
    this.#cells = new BigInt64Array(buffer);
  }

  /**
   * The numbering whose memory is `buffer` (received from the thread that made it).
   *
   * @example
   * ```ts
   * import { SharedNumbers } from "./shared_numbers.ts";
   * const numbers = SharedNumbers.from(new SharedNumbers().buffer);
   * ```
   */
  static from(buffer: SharedArrayBuffer): SharedNumbers {
    return new SharedNumbers(buffer);
  }

  /** Claims the next number: a given-back one first, else one past the highest drawn. */
  next(): number {
    if (Atomics.load(this.#cells, RETURNED) > 0n) {
      for (let slot = FIRST_SLOT; slot < this.#cells.length; slot++) {
        const id = Atomics.load(this.#cells, slot);
        if (id !== 0n && Atomics.compareExchange(this.#cells, slot, id, 0n) === id) {
          Atomics.sub(this.#cells, RETURNED, 1n);
          return Number(id);
        }
      }
    }
    return Number(Atomics.add(this.#cells, HIGHEST, 1n) + 1n);
  }

  /**
   * Gives back a number claimed by {@link next} that no upload got (its file
   * could not be created). Returns false when every slot is taken, which
   * cannot happen while each worker creates one upload at a time.
   */
  release(id: number): boolean {
    for (let slot = FIRST_SLOT; slot < this.#cells.length; slot++) {
      if (Atomics.compareExchange(this.#cells, slot, 0n, BigInt(id)) === 0n) {
        Atomics.add(this.#cells, RETURNED, 1n);
        return true;
      }
    }
    return false;
  }

  /** Records that `id` is in use (found at start): numbering continues after it. */
  observe(id: number): void {
    const wanted = BigInt(id);
    for (;;) {
      const current = Atomics.load(this.#cells, HIGHEST);
      if (current >= wanted || Atomics.compareExchange(this.#cells, HIGHEST, current, wanted) === current) {
        return;
      }
    }
  }

  /** The highest number drawn or found. */
  get highest(): number {
    return Number(Atomics.load(this.#cells, HIGHEST));
  }

  /**
   * The given-back numbers that would leave a gap: those below a number that
   * was handed out. Given-back numbers at the top need nothing (a restart
   * continues after the highest file there is), so they are not listed.
   */
  unused(): number[] {
    const returned = new Set<number>();
    for (let slot = FIRST_SLOT; slot < this.#cells.length; slot++) {
      const id = Atomics.load(this.#cells, slot);
      if (id !== 0n) returned.add(Number(id));
    }
    for (let top = this.highest; returned.has(top); top--) returned.delete(top);
    return [...returned].sort((a, b) => a - b);
  }
}
