/**
 * The client's progress bar: bytes sent (or hashed), percentage, rate and
 * time left, on one line of a terminal, redrawn at most ten times a second.
 * {@link ProgressBar.end} ends a bar's line early, so that an error message
 * after it starts on a line of its own.
 *
 * @example
 * ```ts
 * import { ProgressBar } from "./progress.ts";
 * const bar = new ProgressBar(Deno.stderr, 1_000_000);
 * bar.update(250_000);
 * bar.finish();
 * const hashing = new ProgressBar(Deno.stderr, 1_000_000, "hashing");
 * hashing.update(10);
 * hashing.end(); // an error follows: end the line where it is
 * ```
 * @module
 */

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

/** `1536` → `"1.5 KiB"`. */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${UNITS[unit]}`;
}

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "--:--";
  const s = Math.round(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/** A one-line progress display for a terminal. */
export class ProgressBar {
  readonly #out: { writeSync(data: Uint8Array): number };
  readonly #total: number | undefined;
  readonly #started = performance.now();
  readonly #label: string;
  #lastDraw = -Infinity; // the first update draws at once
  #sent = 0;
  #lineOpen = false;
  readonly #encoder = new TextEncoder();

  /**
   * Draws on `out` (a terminal); `total` is the byte count to reach, when
   * known; `label` is shown before the bar (e.g. `hashing`).
   */
  constructor(out: { writeSync(data: Uint8Array): number }, total: number | undefined, label = "") {
    this.#out = out;
    this.#total = total;
    this.#label = label === "" ? "" : `${label} `;
  }

  /** Records the bytes sent so far; redraws when 100 ms have passed. */
  update(sent: number): void {
    this.#sent = sent;
    const now = performance.now();
    if (now - this.#lastDraw >= 100) {
      this.#lastDraw = now;
      this.#draw(now);
    }
  }

  /** Draws the final state and ends the line. */
  finish(): void {
    this.#draw(performance.now());
    this.end();
  }

  /** Ends the bar's line as it stands (nothing when none is open), e.g. before an error message. */
  end(): void {
    if (!this.#lineOpen) return;
    this.#lineOpen = false;
    this.#out.writeSync(this.#encoder.encode("\n"));
  }

  #draw(now: number): void {
    const seconds = (now - this.#started) / 1000;
    const rate = seconds > 0 ? this.#sent / seconds : 0;
    let line: string;
    if (this.#total) {
      const fraction = Math.min(1, this.#sent / this.#total);
      const width = 24;
      const done = Math.round(fraction * width);
      const eta = rate > 0 ? (this.#total - this.#sent) / rate : Infinity;
      line = `[${"#".repeat(done)}${" ".repeat(width - done)}] ${(fraction * 100).toFixed(0).padStart(3)}% ` +
        `${formatBytes(this.#sent)} / ${formatBytes(this.#total)}  ${formatBytes(rate)}/s  ETA ${
          formatDuration(eta)
        }`;
    } else {
      line = `${formatBytes(this.#sent)}  ${formatBytes(rate)}/s`;
    }
    this.#lineOpen = true;
    this.#out.writeSync(this.#encoder.encode(`\r${this.#label}${line}\x1b[K`));
  }
}
