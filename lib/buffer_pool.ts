/**
 * Receive buffers that follow the connection's pace, and the pool that keeps
 * their memory bounded and reused.
 *
 * A bulk upload wants large reads (up to {@link MAX_CHUNK}); a peer that
 * trickles wants almost nothing. So every connection owns two small buffers
 * and, while reads fill them, borrows larger ones from one process-wide
 * {@link BufferPool} with a fixed budget; as soon as reads come back small it
 * gives them back, and the next fast connection reuses them. Allocating and
 * dropping would not do: dropped buffers linger until the garbage collector
 * runs, and memory released by the JS heap is often not returned to the
 * operating system, so 1,000 peers that each burst once and then trickle would
 * keep the peak of all their bursts resident.
 *
 * @example
 * ```ts
 * import { ReceiveBuffers } from "./buffer_pool.ts";
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: 5000 });
 * const buffers = new ReceiveBuffers();
 * for (;;) {
 *   const buffer = buffers.next();
 *   const n = await conn.read(buffer);
 *   if (n === null) break;
 *   buffers.adapt(n);
 * }
 * buffers.release();
 * ```
 * @module
 */

/** A connection's own receive buffers (two), all a slow or trickling one holds, in bytes. */
export const INITIAL_CHUNK = 16 * 1024;
/** The smallest buffer borrowed from the pool, in bytes. */
export const POOLED_MIN = 64 * 1024;
/** The largest receive buffer, in bytes. */
export const MAX_CHUNK = 1024 * 1024;
/** The shared pool's budget: all its buffers together, lent or free, in bytes. */
export const POOL_BUDGET = 16 * 1024 * 1024;

/** Large buffers, lent and given back for reuse, never more than a budget of bytes in all. */
export class BufferPool {
  readonly #budget: number;
  readonly #free = new Map<number, Uint8Array[]>();
  readonly #lent = new Set<Uint8Array>();
  #allocated = 0;

  /** A pool that holds at most `budgetBytes` in buffers, lent or free. */
  constructor(budgetBytes: number) {
    this.#budget = budgetBytes;
  }

  /** Bytes in pooled buffers (lent or free). */
  get allocated(): number {
    return this.#allocated;
  }

  /** A buffer of exactly `size` bytes: a free one, or a new one within the budget; `undefined` when out of budget. */
  take(size: number): Uint8Array | undefined {
    let buffer = this.#free.get(size)?.pop();
    if (!buffer) {
      this.#evictFor(size);
      if (this.#allocated + size > this.#budget) return undefined;
      this.#allocated += size;
      buffer = new Uint8Array(size);
    }
    this.#lent.add(buffer);
    return buffer;
  }

  /** Gives back a buffer from {@link take} for reuse; any other buffer is ignored. */
  give(buffer: Uint8Array): void {
    if (!this.#lent.delete(buffer)) return;
    const free = this.#free.get(buffer.length) ?? [];
    free.push(buffer);
    this.#free.set(buffer.length, free);
  }

  /** Writes off a lent buffer that must never be reused (a read may still fill it): its budget is freed. */
  forget(buffer: Uint8Array): void {
    if (this.#lent.delete(buffer)) this.#allocated -= buffer.length;
  }

  /** Drops free buffers of other sizes until `size` fits in the budget, if it can. */
  #evictFor(size: number): void {
    for (const [length, free] of this.#free) {
      while (
        free.length > 0 && this.#allocated + size > this.#budget && length !== size && length >= POOLED_MIN
      ) {
        free.pop();
        this.#allocated -= length;
      }
    }
  }
}

/** The pool every connection of this process shares. */
export const SHARED_POOL: BufferPool = new BufferPool(POOL_BUDGET);

/** Sizes `n` up to a power of two. */
function powerOfTwoAtLeast(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(n, 1)));
}

/**
 * A connection's receive buffers, sized to how its reads come back.
 *
 * While reads are small it is *single*: one {@link INITIAL_CHUNK} buffer of
 * its own, and the caller lets each write settle before the next read (a slow
 * peer loses nothing by that). When a read fills half its buffer or more, it
 * borrows larger buffers from the pool, doubling up to {@link MAX_CHUNK} as
 * far as the budget allows, and becomes double-buffered: the next read fills
 * one while the other is being written. As soon as a read fills less than an
 * eighth of its buffer, the size drops to what that read needed, and below
 * {@link POOLED_MIN} the borrowed buffers go back to the pool. A slot changes
 * buffer only when it is next used, that is after its previous write settled.
 */
export class ReceiveBuffers {
  readonly #pool: BufferPool;
  /** Per slot: the buffer in use (borrowed or own), and the slot's own fallback. */
  readonly #slots: (Uint8Array | undefined)[] = [undefined, undefined];
  readonly #own: (Uint8Array | undefined)[] = [undefined, undefined];
  // Single mode reads into slot 0; after it the next slot is 1, whose buffer is not the one still being written.
  #next = 1;
  #size = INITIAL_CHUNK;

  /** Buffers that borrow from `pool` (default: the shared one). */
  constructor(pool: BufferPool = SHARED_POOL) {
    this.#pool = pool;
  }

  /** True while reads are small: one buffer, and each write must settle before the next read. */
  get single(): boolean {
    return this.#size < POOLED_MIN;
  }

  /** The buffer for the next read: at the current size, or as close as the budget allows. */
  next(): Uint8Array {
    if (this.single) {
      this.#giveBack(0);
      this.#giveBack(1);
      this.#own[1] = undefined; // only double buffering needs it; same-sized buffers recycle well
      return this.#slots[0] = this.#own[0] ??= new Uint8Array(INITIAL_CHUNK);
    }
    const i = this.#next;
    if (this.#slots[i]?.length === this.#size) return this.#slots[i];
    if ((this.#slots[i]?.length ?? 0) > this.#size) this.#giveBack(i); // its budget can pay for a smaller one
    for (let size = this.#size; size >= POOLED_MIN; size /= 2) {
      if ((this.#slots[i]?.length ?? 0) >= size) break; // already as large as the budget allows
      const borrowed = this.#pool.take(size);
      if (borrowed) {
        this.#giveBack(i);
        this.#slots[i] = borrowed;
        break;
      }
    }
    return this.#slots[i] ??= this.#own[i] ??= new Uint8Array(INITIAL_CHUNK);
  }

  /** Records that the read into {@link next}'s buffer brought `n` bytes. */
  adapt(n: number): void {
    const wasSingle = this.single;
    const length = this.#slots[wasSingle ? 0 : this.#next]!.length;
    if (n * 2 >= length) {
      this.#size = Math.min(Math.max(this.#size, length < POOLED_MIN ? POOLED_MIN : length * 2), MAX_CHUNK);
    } else if (n * 8 < length) {
      const needed = powerOfTwoAtLeast(n) * 2;
      this.#size = needed < POOLED_MIN ? INITIAL_CHUNK : Math.min(this.#size, needed);
    }
    // Leaving single mode, slot 0's buffer is still being written: the next read goes to slot 1.
    this.#next = wasSingle ? 1 : this.#next ^ 1;
  }

  /**
   * Gives every borrowed buffer back, except `tainted`: the buffer of a read
   * that was abandoned, which the runtime may still fill, is written off.
   * Call it once no write is in flight.
   */
  release(tainted?: Uint8Array): void {
    for (const i of [0, 1]) {
      if (this.#slots[i] === tainted && tainted !== this.#own[i]) this.#pool.forget(tainted!);
      else this.#giveBack(i);
      this.#slots[i] = undefined;
    }
  }

  /** Returns slot `i`'s borrowed buffer (if it has one) to the pool. */
  #giveBack(i: number): void {
    const buffer = this.#slots[i];
    if (buffer && buffer !== this.#own[i]) this.#pool.give(buffer);
    this.#slots[i] = undefined;
  }
}
