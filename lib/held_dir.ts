/**
 * Directories of the upload tree that a named upload walks through, held so
 * that another local process renaming them, or swapping a symbolic link in,
 * cannot redirect what the server creates.
 *
 * Each directory is an open descriptor, opened with `O_DIRECTORY|O_NOFOLLOW`
 * relative to its parent's descriptor, and every path handed out is
 * `/proc/self/fd/<fd>/<name>`, which the kernel resolves through the held
 * directory itself: a rename or a swapped link elsewhere in the path changes
 * nothing. Linux only, and Deno opens `/proc/self/fd` only under
 * `--allow-all`; where it cannot, {@link HeldDirectory.openRoot} refuses, so
 * that named uploads never fall back to checks that a race could beat.
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

function openDescriptor(path: string, flags: number): Promise<number> {
  return new Promise((resolve, reject) =>
    fs.open(path, flags, (error, fd) => error ? reject(error) : resolve(fd))
  );
}

function closeDescriptor(fd: number): void {
  // Only a descriptor is released; a failure leaves nothing to undo.
  fs.close(fd, () => {});
}

/** The path through which the kernel resolves the held descriptor `fd` itself. */
function procPath(fd: number): string {
  return `/proc/self/fd/${fd}`;
}

/**
 * Opens the directory `at` without following a link, and checks that it can
 * be reached through `/proc/self/fd`. Returns its descriptor, or `symlink`
 * when a link or a file was swapped in since it was looked at.
 */
async function openNoFollow(at: string, path: string): Promise<number | "symlink"> {
  let fd: number;
  try {
    fd = await openDescriptor(at, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  } catch (error) {
    if ((error as { code?: string }).code === "ENOTDIR") return "symlink";
    throw new FileError(`cannot open directory "${path}": ${describeError(error)}`);
  }
  try {
    await Deno.stat(procPath(fd));
    return fd;
  } catch (error) {
    closeDescriptor(fd);
    throw new FileError(`cannot open directory "${path}": ${describeError(error)}`);
  }
}

/** What {@link HeldDirectory.child} found instead of a directory. */
export type NotADirectory = "symlink" | "not-a-directory";

/** A directory inside (or being) the upload directory. Close it when done. */
export class HeldDirectory {
  /** The directory's path as the operator and the log see it. */
  readonly path: string;
  readonly #fd: number;
  readonly #parent: HeldDirectory | undefined;
  #closed = false;

  private constructor(path: string, fd: number, parent?: HeldDirectory) {
    this.path = path;
    this.#fd = fd;
    this.#parent = parent;
  }

  /**
   * Holds the upload directory itself (a link given by the operator is
   * followed: the root is trusted).
   *
   * @throws {FileError} when it cannot be opened, or `/proc/self/fd` is unusable.
   */
  static async openRoot(path: string): Promise<HeldDirectory> {
    let fd: number;
    let identity: Deno.FileInfo;
    try {
      fd = await openDescriptor(path, O_RDONLY | O_DIRECTORY);
      identity = await Deno.stat(path);
    } catch (error) {
      throw new FileError(`cannot open directory "${path}": ${describeError(error)}`);
    }
    try {
      const held = await Deno.stat(procPath(fd));
      if (held.dev === identity.dev && held.ino === identity.ino) return new HeldDirectory(path, fd);
    } catch {
      // No /proc, or Deno refuses it: said below.
    }
    closeDescriptor(fd);
    throw new FileError(
      "named uploads need /proc/self/fd (Linux), which Deno opens only under --allow-all " +
        "(as `deno task server` and the compiled server run): cannot hold the directories of names safely",
    );
  }

  /** A path that names `name` inside exactly this directory. */
  entry(name: string): string {
    return `${procPath(this.#fd)}/${name}`;
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
    const fd = await openNoFollow(at, path);
    return fd === "symlink" ? fd : new HeldDirectory(path, fd, this);
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
    await this.sync();
  }

  /**
   * Whether this directory is still inside the root it was reached from: its
   * current location (a directory moved out of the root by another process
   * is not) is under the root's.
   */
  async isInside(): Promise<boolean> {
    const root = this.#levels()[0];
    try {
      const [here, top] = await Promise.all([
        Deno.readLink(procPath(this.#fd)),
        Deno.readLink(procPath(root.#fd)),
      ]);
      return here === top || here.startsWith(top.endsWith("/") ? top : `${top}/`);
    } catch {
      return false; // gone, or no longer reachable: not inside
    }
  }

  /** The chain from the root down to this directory. */
  #levels(): HeldDirectory[] {
    return this.#parent ? [...this.#parent.#levels(), this] : [this];
  }

  /**
   * Flushes this directory's entries (fsync through the held descriptor): a
   * name just linked or made here survives a crash. A directory made by
   * {@link child} is flushed into its parent at once.
   *
   * @throws {FileError} when the flush fails.
   */
  sync(): Promise<void> {
    return new Promise((resolve, reject) =>
      fs.fsync(
        this.#fd,
        (error) =>
          error
            ? reject(new FileError(`cannot flush directory "${this.path}": ${describeError(error)}`))
            : resolve(),
      )
    );
  }

  /** Releases the descriptor (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeDescriptor(this.#fd);
  }
}
