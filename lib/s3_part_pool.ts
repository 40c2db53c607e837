/**
 * A fixed number of part buffers shared by every forward: what bounds the
 * forwarder's memory whatever the files' sizes and however many forwards run.
 * A forward holds at most one buffer per part in flight and gives it back
 * before asking again, so waiting for a buffer never deadlocks.
 *
 * @example
 * ```ts
 * import { PartPool } from "./s3_part_pool.ts";
 * const pool = new PartPool(4, 8 * 1024 * 1024);
 * const buffer = await pool.acquire(1024);
 * try {
 *   // fill and send buffer.subarray(0, 1024)
 * } finally {
 *   pool.release(buffer);
 * }
 * ```
 * @module
 */

/** Buffers handed out at most `count` at a time, each at least `size` bytes. */
export class PartPool {
  readonly #count: number;
  readonly #size: number;
  readonly #free: Uint8Array[] = [];
  readonly #waiting: (() => void)[] = [];
  #out = 0;

  /** Allocates lazily: a buffer exists only once it has been needed. */
  constructor(count: number, size: number) {
    this.#count = count;
    this.#size = size;
  }

  /** Buffers handed out now. */
  get inUse(): number {
    return this.#out;
  }

  /**
   * A buffer of at least `bytes` (and at least the pool's size), once one is
   * free; rejects with the signal's reason if it aborts first.
   */
  async acquire(bytes: number, signal?: AbortSignal): Promise<Uint8Array> {
    while (this.#out >= this.#count) await this.#wait(signal);
    this.#out++;
    const buffer = this.#free.pop();
    if (buffer && buffer.length >= bytes) return buffer;
    // Parts larger than the pool's size (objects past 10,000 default parts) get their own buffer.
    return new Uint8Array(Math.max(bytes, this.#size));
  }

  #wait(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      signal?.throwIfAborted();
      const wake = () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = () => {
        this.#waiting.splice(this.#waiting.indexOf(wake), 1);
        reject(signal?.reason);
      };
      this.#waiting.push(wake);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Gives `buffer` back (kept for reuse when it has the pool's size). */
  release(buffer: Uint8Array): void {
    this.#out--;
    if (buffer.length === this.#size) this.#free.push(buffer);
    this.#waiting.shift()?.();
  }
}
