/**
 * Server metrics in the Prometheus text format, served over HTTP (on loopback
 * unless told otherwise) by {@link serveMetrics}.
 *
 * @example
 * ```ts
 * import { Metrics, serveMetrics } from "./metrics.ts";
 * const metrics = new Metrics(() => 0);
 * const http = serveMetrics(metrics, { port: 9100 });
 * ```
 * @module
 */

/** Upper bounds of the upload-duration histogram, in seconds. */
export const DURATION_BUCKETS = [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300];

/** Counters of one server. */
export class Metrics {
  #connections = 0;
  #bytes = 0;
  readonly #uploads = { saved: 0, error: 0 };
  readonly #buckets = DURATION_BUCKETS.map(() => 0);
  #durationCount = 0;
  #durationSum = 0;
  readonly #active: () => number;

  /** Starts from zero; `active` reads the number of connections in progress when rendering. */
  constructor(active: () => number) {
    this.#active = active;
  }

  /** Records one ended connection. */
  record(outcome: "saved" | "error", bytes: number, durationMs: number): void {
    this.#connections++;
    this.#bytes += bytes;
    this.#uploads[outcome]++;
    const seconds = durationMs / 1000;
    DURATION_BUCKETS.forEach((bound, i) => {
      if (seconds <= bound) this.#buckets[i]++;
    });
    this.#durationCount++;
    this.#durationSum += seconds;
  }

  /** The Prometheus text exposition. */
  render(): string {
    const active = this.#active();
    const lines = [
      "# HELP accio_connections_total Connections accepted.",
      "# TYPE accio_connections_total counter",
      `accio_connections_total ${this.#connections + active}`,
      "# HELP accio_connections_active Connections in progress.",
      "# TYPE accio_connections_active gauge",
      `accio_connections_active ${active}`,
      "# HELP accio_received_bytes_total File bytes received by ended connections.",
      "# TYPE accio_received_bytes_total counter",
      `accio_received_bytes_total ${this.#bytes}`,
      "# HELP accio_uploads_total Ended connections by outcome.",
      "# TYPE accio_uploads_total counter",
      `accio_uploads_total{outcome="saved"} ${this.#uploads.saved}`,
      `accio_uploads_total{outcome="error"} ${this.#uploads.error}`,
      "# HELP accio_upload_duration_seconds Connection durations.",
      "# TYPE accio_upload_duration_seconds histogram",
      ...DURATION_BUCKETS.map((bound, i) =>
        `accio_upload_duration_seconds_bucket{le="${bound}"} ${this.#buckets[i]}`
      ),
      `accio_upload_duration_seconds_bucket{le="+Inf"} ${this.#durationCount}`,
      `accio_upload_duration_seconds_sum ${this.#durationSum}`,
      `accio_upload_duration_seconds_count ${this.#durationCount}`,
    ];
    return lines.join("\n") + "\n";
  }
}

/** Settings of {@link serveMetrics}. */
export interface MetricsServerOptions {
  /** TCP port. */
  port: number;
  /** Address to listen on. Default `127.0.0.1`: metrics stay on the machine unless asked. */
  hostname?: string;
}

/** Serves `GET /metrics` (and `/`) with the current metrics. */
export function serveMetrics(
  metrics: Metrics,
  { port, hostname = "127.0.0.1" }: MetricsServerOptions,
): Deno.HttpServer {
  return Deno.serve({ port, hostname, onListen: () => {} }, (request) => {
    const path = new URL(request.url).pathname;
    if (request.method !== "GET" || (path !== "/metrics" && path !== "/")) {
      return new Response("not found\n", { status: 404 });
    }
    return new Response(metrics.render(), { headers: { "content-type": "text/plain; version=0.0.4" } });
  });
}
