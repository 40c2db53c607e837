/**
 * The connection slots of a whole server, shared by its workers: a count of
 * connections in service in a `SharedArrayBuffer`, so that
 * `--max-connections` bounds the server, not each worker. A worker takes a
 * slot with {@link SharedSlots.take}, gives it back with
 * {@link SharedSlots.give}, and waits for one with {@link SharedSlots.freed}
 * (`Atomics.waitAsync`: a slot freed in another worker wakes it).
 *
 * @example
 * ```ts
 * import { SharedSlots } from "./shared_slots.ts";
 * const slots = new SharedSlots(2);
 * const copy = SharedSlots.from(slots.buffer, 2); // in a worker, from a message
 * copy.take(); // true
 * slots.take(); // true
 * slots.take(); // false: 2 in service
 * copy.give();
 * ```
 * @module
 */

/** A connection limit shared through its {@link SharedSlots.buffer}. */
export class SharedSlots {
  /** The shared memory: post it to a worker and open it there with {@link SharedSlots.from}. */
  readonly buffer: SharedArrayBuffer;
  /** Connections served at once, over every worker. */
  readonly limit: number;
  readonly #count: Int32Array;

  /** `limit` slots, all free, or those counted in `buffer`. */
  constructor(limit: number, buffer = new SharedArrayBuffer(4)) {
    this.buffer = buffer;
    this.limit = limit;
    this.#count = new Int32Array(buffer);
  }

  /**
   * The slots whose count is `buffer` (received from the thread that made them).
   *
   * @example
   * ```ts
   * import { SharedSlots } from "./shared_slots.ts";
   * const slots = SharedSlots.from(new SharedSlots(8).buffer, 8);
   * ```
   */
  static from(buffer: SharedArrayBuffer, limit: number): SharedSlots {
    return new SharedSlots(limit, buffer);
  }

  /** Connections in service now, over every worker. */
  get inService(): number {
    return Atomics.load(this.#count, 0);
  }

  /** Takes a slot if one is free. */
  take(): boolean {
    for (;;) {
      const current = Atomics.load(this.#count, 0);
      if (current >= this.limit) return false;
      if (Atomics.compareExchange(this.#count, 0, current, current + 1) === current) return true;
    }
  }

  /** Gives a slot back and wakes a worker waiting in {@link freed}. */
  give(): void {
    Atomics.sub(this.#count, 0, 1);
    Atomics.notify(this.#count, 0, 1);
  }

  /** Resolves when a slot may have been freed, or after `timeoutMs` (so a waiter can check for a stop). */
  async freed(timeoutMs: number): Promise<void> {
    const current = Atomics.load(this.#count, 0);
    if (current < this.limit) return;
    const wait = Atomics.waitAsync(this.#count, 0, current, timeoutMs);
    if (wait.async) await wait.value;
  }
}
