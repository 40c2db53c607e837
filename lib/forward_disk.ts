/**
 * The disk high-water mark: while the store is down the upload directory is
 * the queue, and it can fill up. When the file system's free space falls
 * below the mark, the server refuses new connections before `accio\r\n`
 * (they get no number, and clients exit non-zero) instead of letting uploads
 * fail midway. The check reads `statfs` at most once per `cacheMs`, so the
 * accept path stays cheap. It needs `--allow-sys=statfs`.
 *
 * @example
 * ```ts
 * import { DiskGuard } from "./forward_disk.ts";
 * const guard = await DiskGuard.open("/save", { minFreeBytes: 1 << 30, minFreeRatio: 0.05 });
 * if (await guard.nearlyFull()) {
 *   // close the connection before sending accio\r\n
 * }
 * ```
 * @module
 */
import { statfs } from "node:fs/promises";
import { describeError, FileError } from "./errors.ts";

/** When the file system counts as nearly full: free space below either bound. */
export interface HighWaterMark {
  /** Refuse below this many free bytes. */
  minFreeBytes: number;
  /** Refuse below this fraction of the file system free (0-1). */
  minFreeRatio: number;
}

/** The default mark: less than 1 GiB or 5 % free. */
export const DEFAULT_HIGH_WATER: HighWaterMark = { minFreeBytes: 1024 ** 3, minFreeRatio: 0.05 };

/** Free and total bytes for unprivileged writers. */
export interface DiskSpace {
  /** Bytes available to the server's user. */
  freeBytes: number;
  /** The file system's size. */
  totalBytes: number;
}

/**
 * Free space of the file system holding `path`.
 *
 * @example
 * ```ts
 * import { diskSpace } from "./forward_disk.ts";
 * const { freeBytes } = await diskSpace("/save");
 * ```
 * @throws {FileError} when it cannot be read (no `--allow-sys=statfs`, no such path).
 */
export async function diskSpace(path: string): Promise<DiskSpace> {
  try {
    const s = await statfs(path);
    return { freeBytes: s.bavail * s.bsize, totalBytes: s.blocks * s.bsize };
  } catch (error) {
    throw new FileError(`cannot read the free space of ${path}: ${describeError(error)}`, { cause: error });
  }
}

/** Answers "is the disk nearly full?" for the accept path, from a short-lived cache. */
export class DiskGuard {
  readonly #path: string;
  readonly #mark: HighWaterMark;
  readonly #cacheMs: number;
  #checkedAt = -Infinity;
  #full = false;

  /** Watches the file system holding `path`; prefer {@link DiskGuard.open}, which checks it can. */
  constructor(path: string, mark: HighWaterMark = DEFAULT_HIGH_WATER, cacheMs = 1000) {
    this.#path = path;
    this.#mark = mark;
    this.#cacheMs = cacheMs;
  }

  /**
   * A guard for the file system holding `path`, after one successful read of
   * its free space (so a missing `--allow-sys=statfs` fails at start, loudly).
   *
   * @throws {FileError} when the free space cannot be read.
   */
  static async open(
    path: string,
    mark: HighWaterMark = DEFAULT_HIGH_WATER,
    cacheMs = 1000,
  ): Promise<DiskGuard> {
    await diskSpace(path);
    return new DiskGuard(path, mark, cacheMs);
  }

  /** Whether free space is below the mark. An unreadable file system counts as full. */
  async nearlyFull(): Promise<boolean> {
    const now = performance.now();
    if (now - this.#checkedAt < this.#cacheMs) return this.#full;
    this.#checkedAt = now;
    try {
      const { freeBytes, totalBytes } = await diskSpace(this.#path);
      this.#full = freeBytes < this.#mark.minFreeBytes || freeBytes < totalBytes * this.#mark.minFreeRatio;
    } catch {
      this.#full = true;
    }
    return this.#full;
  }
}
