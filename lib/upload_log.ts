/**
 * The upload log: one JSON line per connection, appended to a file. Lines are
 * written one at a time, each with a single `write` on a file opened for
 * appending, so concurrent connections never interleave.
 *
 * @example
 * ```ts
 * import { UploadLog } from "./upload_log.ts";
 * const log = await UploadLog.open("/var/log/accio.jsonl");
 * await log.append({ id: 1, outcome: "saved" });
 * log.close();
 * ```
 * @module
 */
import { describeError, FileError } from "./errors.ts";

/** An append-only JSON-lines file. */
export class UploadLog {
  /** The log file's path. */
  readonly path: string;
  readonly #file: Deno.FsFile;
  #queue: Promise<void> = Promise.resolve();
  readonly #encoder = new TextEncoder();

  private constructor(path: string, file: Deno.FsFile) {
    this.path = path;
    this.#file = file;
  }

  /**
   * Opens (creating if needed) `path` for appending.
   *
   * @throws {FileError} when it cannot be opened.
   */
  static async open(path: string): Promise<UploadLog> {
    try {
      return new UploadLog(path, await Deno.open(path, { append: true, create: true }));
    } catch (error) {
      throw new FileError(`cannot open upload log "${path}": ${describeError(error)}`, { cause: error });
    }
  }

  /** Appends `entry` as one line. Resolves once written; a failure is returned, not thrown. */
  append(entry: unknown): Promise<string | undefined> {
    const line = this.#encoder.encode(JSON.stringify(entry) + "\n");
    const written = this.#queue.then(async () => {
      for (let done = 0; done < line.length;) done += await this.#file.write(line.subarray(done));
    });
    this.#queue = written.catch(() => {});
    return written.then(() => undefined, (error) => `cannot append to ${this.path}: ${describeError(error)}`);
  }

  /** Waits for pending lines, then closes the file. Never throws. */
  async close(): Promise<void> {
    await this.#queue;
    try {
      this.#file.close();
    } catch {
      // Already closed: nothing left to release.
    }
  }
}
