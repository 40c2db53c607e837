/**
 * The server's upload directory: numbering, temporary files, and the atomic
 * publication of each upload as `<N>.file` (complete data, or exactly `ERROR`).
 *
 * An upload is written to `.<N>.file.part` in the same directory and becomes
 * visible only when finished, by a hard link that fails rather than replace an
 * existing file. A server killed mid-upload leaves a `.part` file behind; the
 * next start turns it into an `ERROR` file for that number and continues after
 * the highest number present, so no upload is ever overwritten.
 *
 * @example
 * ```ts
 * import { UploadDirectory } from "./upload_dir.ts";
 * const dir = await UploadDirectory.open("/save");
 * const upload = await dir.createNext();
 * await upload.write(new TextEncoder().encode("hello"));
 * await upload.commit(); // /save/1.file now holds "hello"
 * ```
 * @module
 */
import type { Hash } from "node:crypto";
import { describeError, FileError } from "./errors.ts";

/** The exact content of a failed upload's file. */
export const ERROR_CONTENT: Uint8Array = new TextEncoder().encode("ERROR");

const FINAL_NAME = /^([0-9]+)\.file$/;
const PART_NAME = /^\.([0-9]+)\.file\.part$/;

/** The name of upload `id`'s file. */
export function uploadFileName(id: number): string {
  return `${id}.file`;
}

function join(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * Makes `temporary` visible as `final` without ever replacing a file already
 * there, then removes the temporary name.
 */
async function publish(temporary: string, final: string): Promise<void> {
  try {
    await Deno.link(temporary, final);
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) {
      throw new FileError(`${final} already exists; it was not overwritten`);
    }
    if (!(error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotSupported)) {
      throw error;
    }
    // A file system without hard links: check, then rename (a narrow race, but no other way).
    if (await exists(final)) throw new FileError(`${final} already exists; it was not overwritten`);
    await Deno.rename(temporary, final);
    return;
  }
  await Deno.remove(temporary);
}

/** What {@link UploadDirectory.open} found and repaired. */
export interface OpenReport {
  /** Numbers of uploads cut off by an earlier run, now recorded as `ERROR`. */
  recovered: number[];
}

/** The directory uploads are saved in. */
export class UploadDirectory {
  /** The directory's path, as given. */
  readonly path: string;
  #lastId: number;
  #creating: Promise<unknown> = Promise.resolve();

  private constructor(path: string, lastId: number) {
    this.path = path;
    this.#lastId = lastId;
  }

  /**
   * Checks that `path` is a writable directory, records leftover temporary
   * files as `ERROR` uploads, and finds the highest upload number in use.
   *
   * @throws {FileError} when the directory is missing, not a directory, or not writable.
   */
  static async open(path: string, report: OpenReport = { recovered: [] }): Promise<UploadDirectory> {
    const problem = (what: string, error?: unknown) =>
      new FileError(`cannot use directory "${path}": ${what}${error ? `: ${describeError(error)}` : ""}`);
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(path);
    } catch (error) {
      throw error instanceof Deno.errors.NotFound
        ? problem("it does not exist")
        : problem("cannot read it", error);
    }
    if (!info.isDirectory) throw problem("it is not a directory");
    try {
      const probe = await Deno.makeTempFile({ dir: path, prefix: ".accio-probe-" });
      await Deno.remove(probe);
    } catch (error) {
      throw problem("it is not writable", error);
    }
    let lastId = 0;
    const parts: number[] = [];
    try {
      for await (const entry of Deno.readDir(path)) {
        const final = FINAL_NAME.exec(entry.name);
        const part = PART_NAME.exec(entry.name);
        if (final) lastId = Math.max(lastId, Number(final[1]));
        if (part) parts.push(Number(part[1]));
      }
      for (const id of parts) {
        lastId = Math.max(lastId, id);
        const temporary = join(path, `.${id}.file.part`);
        const final = join(path, uploadFileName(id));
        if (await exists(final)) {
          await Deno.remove(temporary);
        } else {
          await Deno.writeFile(temporary, ERROR_CONTENT);
          await publish(temporary, final);
          report.recovered.push(id);
        }
      }
    } catch (error) {
      throw problem("cannot list or repair it", error);
    }
    return new UploadDirectory(path, lastId);
  }

  /** The highest upload number handed out or found on disk. */
  get lastId(): number {
    return this.#lastId;
  }

  /**
   * Starts the next upload: creates its temporary file, then hands out its
   * number. A number is only ever given to an upload that has a file, so a
   * failure here (descriptors or disk exhausted) leaves no gap in the record.
   *
   * @throws {FileError} when the temporary file cannot be created.
   */
  createNext(): Promise<UploadFile> {
    // One creation at a time: the number is claimed only once its file exists.
    const created = this.#creating.then(() => this.#create(this.#lastId + 1));
    this.#creating = created.catch(() => {});
    return created;
  }

  async #create(id: number): Promise<UploadFile> {
    const temporary = join(this.path, `.${id}.file.part`);
    let file: Deno.FsFile;
    try {
      file = await Deno.open(temporary, { write: true, createNew: true });
    } catch (error) {
      throw new FileError(`cannot create ${temporary}: ${describeError(error)}`, { cause: error });
    }
    this.#lastId = Math.max(this.#lastId, id);
    return new UploadFile(id, file, temporary, join(this.path, uploadFileName(id)));
  }
}

/** One upload in progress. Ends with exactly one of {@link commit} or {@link fail}. */
export class UploadFile {
  /** The upload's number. */
  readonly id: number;
  /** Where the upload becomes visible. */
  readonly finalPath: string;
  readonly #temporaryPath: string;
  #file: Deno.FsFile | undefined;
  #bytes = 0;

  /** Use {@link UploadDirectory.createNext}. */
  constructor(id: number, file: Deno.FsFile, temporaryPath: string, finalPath: string) {
    this.id = id;
    this.#file = file;
    this.#temporaryPath = temporaryPath;
    this.finalPath = finalPath;
  }

  /** Bytes written so far. */
  get bytes(): number {
    return this.#bytes;
  }

  /** When set, every byte written also goes into this hash (for verification and the log). */
  hash: Hash | undefined;

  /** Appends `chunk` to the temporary file. */
  async write(chunk: Uint8Array): Promise<void> {
    const file = this.#file;
    if (!file) throw new FileError("upload already finished");
    this.hash?.update(chunk);
    try {
      for (let done = 0; done < chunk.length;) done += await file.write(chunk.subarray(done));
    } catch (error) {
      throw new FileError(`cannot write ${this.#temporaryPath}: ${describeError(error)}`, { cause: error });
    }
    this.#bytes += chunk.length;
  }

  #closeFile(): void {
    try {
      this.#file?.close();
    } catch {
      // Closing only releases the descriptor; a failure leaves nothing to undo.
    }
    this.#file = undefined;
  }

  /** Flushes the data to disk and publishes it as the final file, or at `destination` instead. */
  async commit(destination: string = this.finalPath): Promise<void> {
    const file = this.#file;
    if (!file) throw new FileError("upload already finished");
    try {
      await file.syncData();
      this.#closeFile();
      await publish(this.#temporaryPath, destination);
    } catch (error) {
      this.#closeFile();
      if (error instanceof FileError) throw error;
      throw new FileError(`cannot save ${this.finalPath}: ${describeError(error)}`, { cause: error });
    }
  }

  /**
   * Discards the data and publishes `ERROR` instead. Never throws: when even
   * that cannot be written (disk full, directory gone) the temporary file is
   * removed and the returned reason says why, for the log.
   */
  async fail(): Promise<string | undefined> {
    const file = this.#file;
    try {
      if (file) {
        // Through the open handle: needs no new descriptor, so it works under EMFILE too.
        // Truncating first frees the space the partial data held, so a full disk still takes "ERROR".
        await file.truncate(0);
        await file.seek(0, Deno.SeekMode.Start);
        for (let done = 0; done < ERROR_CONTENT.length;) {
          done += await file.write(ERROR_CONTENT.subarray(done));
        }
        this.#closeFile();
      } else {
        await Deno.writeFile(this.#temporaryPath, ERROR_CONTENT);
      }
      await publish(this.#temporaryPath, this.finalPath);
      return undefined;
    } catch (error) {
      this.#closeFile();
      try {
        await Deno.remove(this.#temporaryPath);
      } catch {
        // Already gone with its directory: nothing left behind.
      }
      return `could not record ERROR in ${this.finalPath}: ${describeError(error)}`;
    }
  }
}
