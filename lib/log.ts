/**
 * Log and output lines that can never end or stall the program that writes
 * them. A server's stderr may be a pipe whose reader died (`2>&1 | logger`
 * with the logger gone: every write fails with EPIPE) or stopped reading (a
 * full pipe would block a synchronous write, and with it every connection).
 * So lines are queued and written one at a time, asynchronously; a failed
 * write drops its line, a broken pipe drops every later line, and a queue
 * that grows past its bound drops new lines and says later how many.
 *
 * @example
 * ```ts
 * import { LineWriter } from "./log.ts";
 * const log = new LineWriter(Deno.stderr, { timestamps: true });
 * log.write("server: listening on [::]:5000");
 * await log.flush(1_000);
 * ```
 * @module
 */

/** Where lines go: `Deno.stderr` and `Deno.stdout` have this. */
export interface LineSink {
  /** Writes some of `data`; resolves with how much was taken. */
  write(data: Uint8Array): Promise<number>;
}

/** Options of a {@link LineWriter}. */
export interface LineWriterOptions {
  /**
   * Start every line with an ISO 8601 UTC timestamp and a space.
   *
   * @default {false}
   */
  timestamps?: boolean;
  /**
   * Most bytes waiting to be written; more lines are dropped (and counted).
   *
   * @default {1024 * 1024}
   */
  maxQueuedBytes?: number;
}

/** Writes lines to a {@link LineSink} in order, without ever throwing or blocking the caller. */
export class LineWriter {
  readonly #sink: LineSink;
  readonly #timestamps: boolean;
  readonly #maxQueued: number;
  readonly #encoder = new TextEncoder();
  readonly #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #dropped = 0;
  #broken = false;
  #draining: Promise<void> | undefined;

  /** Writes to `sink`; see {@link LineWriterOptions}. */
  constructor(sink: LineSink, { timestamps = false, maxQueuedBytes = 1024 * 1024 }: LineWriterOptions = {}) {
    this.#sink = sink;
    this.#timestamps = timestamps;
    this.#maxQueued = maxQueuedBytes;
  }

  /** Queues `line` (a newline is added). Never throws; the line may be dropped, as described above. */
  write(line: string): void {
    if (this.#broken) return;
    const stamped = this.#timestamps ? `${new Date().toISOString()} ${line}` : line;
    const data = this.#encoder.encode(stamped + "\n");
    if (this.#queuedBytes + data.length > this.#maxQueued) {
      this.#dropped++;
      return;
    }
    this.#queue.push(data);
    this.#queuedBytes += data.length;
    this.#draining ??= this.#drain();
  }

  /** Waits until every queued line is written, or `timeoutMs` pass. Never rejects. */
  async flush(timeoutMs: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<void>((resolve) => timer = setTimeout(resolve, timeoutMs));
    await Promise.race([this.#draining, timeout]);
    clearTimeout(timer);
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0 && !this.#broken) {
      const data = this.#queue.shift()!;
      this.#queuedBytes -= data.length;
      await this.#writeAll(data);
      if (this.#dropped > 0 && this.#queue.length === 0) {
        const note = `${this.#dropped} log line(s) dropped: the output did not keep up`;
        this.#dropped = 0;
        await this.#writeAll(this.#encoder.encode(note + "\n"));
      }
    }
    if (this.#broken) this.#queue.length = this.#queuedBytes = 0;
    this.#draining = undefined;
  }

  async #writeAll(data: Uint8Array): Promise<void> {
    try {
      for (let done = 0; done < data.length;) done += await this.#sink.write(data.subarray(done));
    } catch (error) {
      // A reader that is gone never comes back; any other failure costs only this line.
      if (error instanceof Deno.errors.BrokenPipe || error instanceof Deno.errors.BadResource) {
        this.#broken = true;
      }
    }
  }
}
