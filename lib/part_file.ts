/**
 * One upload's temporary file while it is written: the open handle, the
 * bytes written so far, and the `ERROR` reserved at its start (so that a
 * failure on a full disk still has the space to record it).
 *
 * @example
 * ```ts
 * import { PartFile } from "./part_file.ts";
 * const path = await Deno.makeTempFile();
 * const part = new PartFile(await Deno.open(path, { write: true }), path);
 * await part.write(new TextEncoder().encode("hi"));
 * await part.flush(); // the reserved ERROR's tail is gone: the file holds "hi"
 * part.close();
 * ```
 * @module
 */
import { describeError, FileError } from "./errors.ts";

/** The exact content of a failed upload's file. */
export const ERROR_CONTENT: Uint8Array = new TextEncoder().encode("ERROR");

/** Writes all of `bytes` at the file's position. */
export async function writeFully(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.length;) done += await file.write(bytes.subarray(done));
}

/** An upload's temporary file, open for writing until {@link PartFile.close}. */
export class PartFile {
  /** The temporary file's path. */
  readonly path: string;
  #file: Deno.FsFile | undefined;
  #bytes = 0;
  /** Visible under its final name: from then on nothing may write this inode. */
  #published = false;
  /** The inode may have another name than the temporary one (a failed named publication). */
  #detached = false;

  /** Wraps `file`, open for writing at its start, whose path is `path`. */
  constructor(file: Deno.FsFile, path: string) {
    this.#file = file;
    this.path = path;
  }

  /** Bytes written so far. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The open handle, or `undefined` once closed. */
  get handle(): Deno.FsFile | undefined {
    return this.#file;
  }

  /** Whether the file is visible under its final name: from then on nothing may write it. */
  get published(): boolean {
    return this.#published;
  }

  /**
   * Records that the file is visible under its final name (or, given up,
   * needs none), and removes the temporary name. A leftover name here (its
   * removal failed) has two links: the next start only removes it.
   */
  async finish(): Promise<void> {
    this.#published = true;
    await removeQuietly(this.path);
  }

  /** Whether the inode may have another name than the temporary one: never write `ERROR` into it. */
  get detached(): boolean {
    return this.#detached;
  }

  /** Records that the inode may have another name than the temporary one. */
  detach(): void {
    this.#detached = true;
  }

  /** Appends `chunk`. */
  async write(chunk: Uint8Array): Promise<void> {
    const file = this.#file;
    if (!file) throw new FileError("upload already finished");
    try {
      await writeFully(file, chunk);
    } catch (error) {
      throw new FileError(`cannot write ${this.path}: ${describeError(error)}`, {
        cause: error,
      });
    }
    this.#bytes += chunk.length;
  }

  /** Cuts what is left of the reserved `ERROR` past the data, and flushes the data to disk. */
  async flush(): Promise<void> {
    const file = this.#file!;
    // Shorter than the reserved ERROR: its tail goes.
    if (this.#bytes < ERROR_CONTENT.length) await file.truncate(this.#bytes);
    await file.syncData();
  }

  /**
   * Replaces the (still empty) file by the kept prefix `prefixPath`, a
   * regular file with no other name, and goes on after its end.
   */
  async adopt(prefixPath: string): Promise<number> {
    if (!this.#file || this.#published || this.#bytes > 0) throw new FileError("upload already has data");
    const info = await Deno.lstat(prefixPath);
    if (!info.isFile || (info.nlink ?? 1) !== 1) throw new FileError(`${prefixPath} is not a kept prefix`);
    await Deno.rename(prefixPath, this.path);
    const empty = this.#file!;
    try {
      // Not O_APPEND: fail() writes ERROR at the start.
      this.#file = await Deno.open(this.path, { write: true });
      await this.#file.seek(0, Deno.SeekMode.End);
    } catch (error) {
      // The name is the prefix's now: never publish it as this upload's ERROR.
      this.#detached = true;
      await removeQuietly(this.path);
      throw new FileError(`cannot reopen ${this.path}: ${describeError(error)}`);
    } finally {
      empty.close();
    }
    this.#bytes = info.size;
    return info.size;
  }

  /** Writes `ERROR` through the open handle (no new descriptor: works under EMFILE). */
  async writeError(): Promise<void> {
    const file = this.#file!;
    // Never below 5 bytes: the block reserved at creation keeps ERROR's space on a full disk.
    await file.truncate(ERROR_CONTENT.length);
    await file.seek(0, Deno.SeekMode.Start);
    await writeFully(file, ERROR_CONTENT);
  }

  /** Releases the descriptor. */
  close(): void {
    try {
      this.#file?.close();
    } catch {
      // Closing only releases the descriptor; a failure leaves nothing to undo.
    }
    this.#file = undefined;
  }
}

/** Removes `path`, quietly when it is already gone. */
export async function removeQuietly(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch {
    // Already gone (or its directory is): nothing is left behind by this name.
  }
}
