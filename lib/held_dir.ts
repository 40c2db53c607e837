/**
 * Directories of the upload tree that a named upload walks through, held so
 * that another local process renaming them, or swapping a symbolic link in,
 * cannot redirect what the server creates.
 *
 * Two modes, chosen once per server by {@link HeldDirectory.openRoot}:
 *
 * - **Descriptors** (Linux, where Deno may open `/proc/self/fd`, which it
 *   allows only with `--allow-all`): each directory is an open descriptor,
 *   opened with `O_DIRECTORY|O_NOFOLLOW` relative to its parent's descriptor,
 *   and every path handed out is `/proc/self/fd/<fd>/<name>`, which the kernel
 *   resolves through the held directory itself: a rename or a swapped link
 *   elsewhere in the path changes nothing. Exact.
 * - **Paths** (everywhere else, e.g. under the server's task permissions):
 *   each directory is its path plus the identity (device, inode) found when
 *   it was reached without following a link; {@link HeldDirectory.isInside}
 *   re-checks the whole chain. A swap is detected, not prevented: it can win
 *   only within the microseconds between a check and the system call after it.
 *
 * @example
 * ```ts
 * import { HeldDirectory } from "./held_dir.ts";
 * const root = await HeldDirectory.openRoot("/save");
 * const sub = await root.child("floor2", true);
 * if (sub instanceof HeldDirectory) {
 *   console.log(sub.entry("temp.csv"), await sub.isInside());
 *   sub.close();
 * }
 * root.close();
 * ```
 * @module
 */
import fs from "node:fs";
import { describeError, FileError } from "./errors.ts";

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW } = fs.constants;

interface Identity {
  dev: number;
  ino: number | null;
}

function openDescriptor(path: string, flags: number): Promise<number> {
  return new Promise((resolve, reject) =>
    fs.open(path, flags, (error, fd) => error ? reject(error) : resolve(fd))
  );
}

function closeDescriptor(fd: number): void {
  // Only a descriptor is released; a failure leaves nothing to undo.
  fs.close(fd, () => {});
}

/** What {@link HeldDirectory.child} found instead of a directory. */
export type NotADirectory = "symlink" | "not-a-directory";

/** A directory inside (or being) the upload directory. Close it when done. */
export class HeldDirectory {
  /** The directory's path as the operator and the log see it. */
  readonly path: string;
  readonly #fd: number | undefined;
  readonly #identity: Identity;
  readonly #parent: HeldDirectory | undefined;
  #closed = false;

  private constructor(path: string, fd: number | undefined, identity: Identity, parent?: HeldDirectory) {
    this.path = path;
    this.#fd = fd;
    this.#identity = identity;
    this.#parent = parent;
  }

  /** Whether this server holds directories as descriptors (exact) rather than paths (checked). */
  get holdsDescriptors(): boolean {
    return this.#fd !== undefined;
  }

  /**
   * Holds the upload directory itself (a link given by the operator is
   * followed: the root is trusted). Uses descriptors when `/proc/self/fd`
   * is usable, paths otherwise.
   *
   * @throws {FileError} when it cannot be opened.
   */
  static async openRoot(path: string): Promise<HeldDirectory> {
    let fd: number;
    let identity: Identity;
    try {
      fd = await openDescriptor(path, O_RDONLY | O_DIRECTORY);
      identity = await Deno.stat(path);
    } catch (error) {
      throw new FileError(`cannot open directory "${path}": ${describeError(error)}`);
    }
    try {
      const held = await Deno.stat(`/proc/self/fd/${fd}`);
      if (held.dev === identity.dev && held.ino === identity.ino) {
        return new HeldDirectory(path, fd, identity);
      }
    } catch {
      // No /proc, or Deno refuses it (it wants --allow-all for /proc): hold paths instead.
    }
    closeDescriptor(fd);
    return new HeldDirectory(path, undefined, identity);
  }

  /** A path that names `name` inside exactly this directory. */
  entry(name: string): string {
    return this.#fd === undefined ? `${this.path}/${name}` : `/proc/self/fd/${this.#fd}/${name}`;
  }

  /**
   * Holds the subdirectory `segment`, creating it first when `create` is set.
   * A symbolic link or a non-directory there is reported, never followed.
   *
   * @throws {FileError} when it cannot be created or opened (descriptors exhausted, disk full).
   */
  async child(segment: string, create: boolean): Promise<HeldDirectory | NotADirectory> {
    const path = `${this.path}/${segment}`;
    const at = this.entry(segment);
    if (create) await this.#mkdir(at, path);
    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(at);
    } catch (error) {
      throw new FileError(`cannot open directory "${path}": ${describeError(error)}`);
    }
    if (info.isSymlink) return "symlink";
    if (!info.isDirectory) return "not-a-directory";
    if (this.#fd === undefined) return new HeldDirectory(path, undefined, info, this);
    let fd: number;
    try {
      fd = await openDescriptor(at, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    } catch (error) {
      // Swapped for a link or a file since the lstat above.
      if ((error as { code?: string }).code === "ENOTDIR") return "symlink";
      throw new FileError(`cannot open directory "${path}": ${describeError(error)}`);
    }
    try {
      return new HeldDirectory(path, fd, await Deno.stat(this.#proc(fd)), this);
    } catch (error) {
      closeDescriptor(fd);
      throw new FileError(`cannot open directory "${path}": ${describeError(error)}`);
    }
  }

  async #mkdir(at: string, path: string): Promise<void> {
    try {
      await Deno.mkdir(at);
    } catch (error) {
      if (error instanceof Deno.errors.AlreadyExists) return;
      throw new FileError(`cannot create directory "${path}": ${describeError(error)}`);
    }
    // This directory may have been moved out of the root meanwhile: then take back what was made in it.
    if (!(await this.isInside())) {
      await Deno.remove(at).catch(() => {});
      throw new FileError(`directory "${this.path}" was moved while in use`);
    }
  }

  #proc(fd: number): string {
    return `/proc/self/fd/${fd}`;
  }

  /**
   * Whether this directory is still inside the root it was reached from:
   * with descriptors, its current location is under the root's; with paths,
   * every directory of the chain is still the one that was checked, and no
   * link.
   */
  async isInside(): Promise<boolean> {
    try {
      if (this.#fd !== undefined) return await this.#descriptorInside();
      for (const level of this.#levels()) {
        const info = level.#parent ? await Deno.lstat(level.path) : await Deno.stat(level.path);
        if (info.isSymlink || !info.isDirectory) return false;
        if (info.dev !== level.#identity.dev || info.ino !== level.#identity.ino) return false;
      }
      return true;
    } catch {
      return false; // gone, or no longer reachable: not inside
    }
  }

  async #descriptorInside(): Promise<boolean> {
    const root = this.#levels()[0];
    const [here, top] = await Promise.all([
      Deno.readLink(this.#proc(this.#fd!)),
      Deno.readLink(root.#proc(root.#fd!)),
    ]);
    return here === top || here.startsWith(top.endsWith("/") ? top : `${top}/`);
  }

  /** The chain from the root down to this directory. */
  #levels(): HeldDirectory[] {
    return this.#parent ? [...this.#parent.#levels(), this] : [this];
  }

  /** Releases the descriptor (idempotent; nothing to release for a held path). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#fd !== undefined) closeDescriptor(this.#fd);
  }
}
