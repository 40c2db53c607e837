/**
 * An exclusive lock on a directory, so that two servers never share one
 * upload directory (each would number, repair and publish over the other's
 * uploads).
 *
 * The lock is `flock(2)` on the directory itself, not on a lock file: nothing
 * is added to the directory, the same directory reached by another path or a
 * symbolic link is the same lock, and the kernel releases it when the process
 * ends in any way, `kill -9` included.
 *
 * @example
 * ```ts
 * import { lockDirectory } from "./dir_lock.ts";
 * const lock = await lockDirectory("/save"); // throws if another server holds it
 * await lock.sync(); // after linking a name there
 * lock.release();
 * ```
 * @module
 */
import { describeError, FileError } from "./errors.ts";

/** A held directory lock. */
export interface DirectoryLock {
  /**
   * Flushes the directory's entries to disk (fsync), through the lock's own
   * descriptor: a name just linked or renamed there survives a crash, and no
   * new descriptor is needed when the process has none to spare.
   */
  sync(): Promise<void>;
  /** Releases the lock (idempotent). */
  release(): void;
}

/**
 * Takes the exclusive lock on `path`, without waiting.
 *
 * @throws {FileError} when another process holds it, or the directory cannot be opened or locked.
 */
export async function lockDirectory(path: string): Promise<DirectoryLock> {
  const problem = (what: string) => new FileError(`cannot use directory "${path}": ${what}`);
  let handle: Deno.FsFile;
  try {
    handle = await Deno.open(path, { read: true });
  } catch (error) {
    throw problem(`cannot open it: ${describeError(error)}`);
  }
  let locked: boolean;
  try {
    locked = await handle.tryLock(true);
  } catch (error) {
    handle.close();
    throw problem(`cannot lock it: ${describeError(error)}`);
  }
  if (!locked) {
    handle.close();
    throw problem("another server is using it (it is locked); stop that one first");
  }
  return heldLock(handle);
}

/**
 * A descriptor on a directory that this process has already locked (a
 * worker of the server whose main thread holds the lock): the same
 * {@link DirectoryLock.sync}, and no second `flock`, which would conflict with
 * the first even within one process.
 *
 * @example
 * ```ts
 * import { openLockedDirectory } from "./dir_lock.ts";
 * const held = await openLockedDirectory("/save");
 * await held.sync();
 * held.release(); // closes the descriptor only; the main thread's lock stays
 * ```
 * @throws {FileError} when the directory cannot be opened.
 */
export async function openLockedDirectory(path: string): Promise<DirectoryLock> {
  try {
    return heldLock(await Deno.open(path, { read: true }));
  } catch (error) {
    throw new FileError(`cannot use directory "${path}": cannot open it: ${describeError(error)}`);
  }
}

function heldLock(handle: Deno.FsFile): DirectoryLock {
  let held = true;
  return {
    async sync() {
      if (held) await handle.sync();
    },
    release() {
      if (!held) return;
      held = false;
      handle.close(); // closing the last descriptor releases the flock
    },
  };
}
