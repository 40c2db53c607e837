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

/** Most bytes of lines waiting to be written; past it lines are dropped and counted. */
export const MAX_PENDING_BYTES = 1024 * 1024;

/** An append-only JSON-lines file. */
export class UploadLog {
  /** The log file's path. */
  readonly path: string;
  readonly #file: Deno.FsFile;
  #queue: Promise<void> = Promise.resolve();
  #pendingBytes = 0;
  #dropped = 0;
  readonly #encoder = new TextEncoder();

  private constructor(path: string, file: Deno.FsFile) {
    this.path = path;
    this.#file = file;
  }

  /**
   * Opens (creating if needed) `path` for appending. Only a regular file: a
   * FIFO would block the open until a reader comes, and a reader that stops
   * reading would stall every line.
   *
   * @throws {FileError} when it cannot be opened, or is not a regular file.
   */
  static async open(path: string): Promise<UploadLog> {
    const problem = (why: string, cause?: unknown) =>
      new FileError(`cannot open upload log "${path}": ${why}`, { cause });
    const info = await Deno.stat(path).catch((error) => error instanceof Deno.errors.NotFound ? null : error);
    if (info instanceof Error) throw problem(describeError(info), info);
    if (info && !info.isFile) throw problem("not a regular file (a FIFO, device or directory)");
    try {
      return new UploadLog(path, await Deno.open(path, { append: true, create: true }));
    } catch (error) {
      throw problem(describeError(error), error);
    }
  }

  /**
   * Appends `entry` as one line. Resolves once written; a failure is returned,
   * not thrown. While more than {@link MAX_PENDING_BYTES} wait (a stalled
   * disk), lines are dropped and counted, and the next line written says so.
   */
  append(entry: unknown): Promise<string | undefined> {
    const line = this.#encoder.encode(JSON.stringify(entry) + "\n");
    if (this.#pendingBytes + line.length > MAX_PENDING_BYTES) {
      this.#dropped++;
      return Promise.resolve(`upload log ${this.path} is not keeping up: a line was dropped`);
    }
    this.#pendingBytes += line.length;
    const written = this.#queue.then(() => this.#write(line)).finally(() =>
      this.#pendingBytes -= line.length
    );
    this.#queue = written.catch(() => {});
    return written.then(() => undefined, (error) => `cannot append to ${this.path}: ${describeError(error)}`);
  }

  async #write(line: Uint8Array): Promise<void> {
    if (this.#dropped > 0) {
      const note = { event: "dropped", lines: this.#dropped };
      this.#dropped = 0;
      await this.#writeAll(this.#encoder.encode(JSON.stringify(note) + "\n"));
    }
    await this.#writeAll(line);
  }

  async #writeAll(data: Uint8Array): Promise<void> {
    for (let done = 0; done < data.length;) done += await this.#file.write(data.subarray(done));
  }

  /**
   * Waits for pending lines (at most `waitMs`), then closes the file. Never throws.
   *
   * @param waitMs longest wait for pending lines, in ms.
   * @default {2000}
   */
  async close(waitMs = 2_000): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.#queue, new Promise((resolve) => timer = setTimeout(resolve, waitMs))]);
    clearTimeout(timer);
    try {
      this.#file.close();
    } catch {
      // Already closed: nothing left to release.
    }
  }
}
