/**
 * The forwarder's counters: forwards by outcome, bytes forwarded, retries,
 * and, read from the queue when asked, its depth and the age of the oldest
 * unforwarded upload. {@link ForwardMetrics.snapshot} gives a plain object;
 * {@link ForwardMetrics.render} the Prometheus text lines to append to the
 * server's `/metrics`.
 *
 * @example
 * ```ts
 * import { ForwardMetrics } from "./forward_metrics.ts";
 * const metrics = new ForwardMetrics(() => ({ depth: 0, oldestMs: undefined }));
 * metrics.outcome("forwarded", 1024);
 * metrics.render().includes('accio_forwards_total{outcome="forwarded"} 1'); // true
 * ```
 * @module
 */
import { metricFamily } from "./metrics.ts";

/** How a forward ended: stored and verified, given up, or not forwarded on purpose (`ERROR` uploads). */
export type ForwardOutcome = "forwarded" | "failed" | "skipped";

/** What the queue holds now. */
export interface QueueView {
  /** Uploads not yet forwarded (waiting or in flight). */
  depth: number;
  /** When the oldest of them was saved (ms since the epoch), or `undefined` when none. */
  oldestMs: number | undefined;
}

/** A plain copy of the counters. */
export interface ForwardMetricsSnapshot {
  /** Uploads not yet forwarded (waiting or in flight). */
  queueDepth: number;
  /** Seconds since the oldest unforwarded upload was saved; 0 when none. */
  oldestAgeSeconds: number;
  /** Forwards by outcome since the start. */
  forwards: Record<ForwardOutcome, number>;
  /** File bytes stored and verified. */
  bytesForwarded: number;
  /** Requests retried after a retryable failure. */
  retries: number;
}

/** Counters of one forwarder. */
export class ForwardMetrics {
  readonly #queue: () => QueueView;
  readonly #now: () => number;
  readonly #forwards: Record<ForwardOutcome, number> = { forwarded: 0, failed: 0, skipped: 0 };
  #bytes = 0;
  #retries = 0;

  /** `queue` is read at each snapshot; `now` is the clock (ms). */
  constructor(queue: () => QueueView, now: () => number = Date.now) {
    this.#queue = queue;
    this.#now = now;
  }

  /** Records a finished forward (`bytes` counts for `forwarded` only). */
  outcome(outcome: ForwardOutcome, bytes = 0): void {
    this.#forwards[outcome]++;
    if (outcome === "forwarded") this.#bytes += bytes;
  }

  /** Records one retried request. */
  retry(): void {
    this.#retries++;
  }

  /** The counters now. */
  snapshot(): ForwardMetricsSnapshot {
    const { depth, oldestMs } = this.#queue();
    return {
      queueDepth: depth,
      oldestAgeSeconds: oldestMs === undefined ? 0 : Math.max(0, (this.#now() - oldestMs) / 1000),
      forwards: { ...this.#forwards },
      bytesForwarded: this.#bytes,
      retries: this.#retries,
    };
  }

  /** Prometheus text lines (ending with a newline). */
  render(): string {
    const s = this.snapshot();
    return [
      ...metricFamily("accio_forward_queue_depth", "gauge", "Saved uploads not yet forwarded.", [
        `accio_forward_queue_depth ${s.queueDepth}`,
      ]),
      ...metricFamily(
        "accio_forward_oldest_age_seconds",
        "gauge",
        "Age of the oldest upload not yet forwarded.",
        [
          `accio_forward_oldest_age_seconds ${s.oldestAgeSeconds}`,
        ],
      ),
      ...metricFamily(
        "accio_forwards_total",
        "counter",
        "Forwards by outcome.",
        Object.entries(s.forwards).map(([outcome, n]) => `accio_forwards_total{outcome="${outcome}"} ${n}`),
      ),
      ...metricFamily("accio_forward_bytes_total", "counter", "File bytes forwarded and verified.", [
        `accio_forward_bytes_total ${s.bytesForwarded}`,
      ]),
      ...metricFamily("accio_forward_retries_total", "counter", "Store requests retried.", [
        `accio_forward_retries_total ${s.retries}`,
      ]),
    ].join("\n") + "\n";
  }
}
