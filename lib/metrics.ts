/**
 * Server metrics in the Prometheus text format, served over HTTP (on loopback
 * unless told otherwise) by {@link serveMetrics}.
 *
 * The HTTP side is a small responder of our own on the shared
 * {@link AcceptLoop}, not `Deno.serve`: running out of descriptors must pause
 * it (never throw out of it and end the server), and a scraper that connects
 * and sends nothing, or half a request, must be dropped within
 * {@link METRICS_REQUEST_DEADLINE_MS}. It reads one request head (at most
 * {@link MAX_REQUEST_HEAD} bytes), answers `GET` (or `HEAD`) `/metrics` and
 * `/`, says 404, 405 or 400 to anything else, and closes.
 *
 * @example
 * ```ts
 * import { Metrics, serveMetrics } from "./metrics.ts";
 * const metrics = new Metrics(() => 0);
 * const http = serveMetrics(metrics, { port: 9100 });
 * await http.close();
 * ```
 * @module
 */
import { AcceptLoop } from "./accept_loop.ts";
import { closeQuietly } from "./socket_io.ts";

/** Upper bounds of the upload-duration histogram, in seconds. */
export const DURATION_BUCKETS = [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300];

/**
 * One metric family in the Prometheus text format: its `HELP` and `TYPE`
 * lines, then its samples.
 *
 * @example
 * ```ts
 * import { metricFamily } from "./metrics.ts";
 * metricFamily("accio_connections_active", "gauge", "Connections in progress.", ["accio_connections_active 3"]);
 * ```
 */
export function metricFamily(
  name: string,
  type: "counter" | "gauge" | "histogram",
  help: string,
  samples: readonly string[],
): string[] {
  return [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...samples];
}

/** Counters of one server. */
export class Metrics {
  #connections = 0;
  #bytes = 0;
  readonly #uploads = { saved: 0, error: 0 };
  readonly #buckets = DURATION_BUCKETS.map(() => 0);
  #durationCount = 0;
  #durationSum = 0;
  readonly #refused = new Map<string, number>();
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

  /** Records one connection refused before it got a number, under its label (`address-limit`, ...). */
  recordRefusal(kind: string): void {
    this.#refused.set(kind, (this.#refused.get(kind) ?? 0) + 1);
  }

  /** The Prometheus text exposition. */
  render(): string {
    const active = this.#active();
    const histogram = "accio_upload_duration_seconds";
    const lines = [
      ...metricFamily("accio_connections_total", "counter", "Connections accepted.", [
        `accio_connections_total ${this.#connections + active}`,
      ]),
      ...metricFamily("accio_connections_active", "gauge", "Connections in progress.", [
        `accio_connections_active ${active}`,
      ]),
      ...metricFamily("accio_received_bytes_total", "counter", "File bytes received by ended connections.", [
        `accio_received_bytes_total ${this.#bytes}`,
      ]),
      ...metricFamily("accio_uploads_total", "counter", "Ended connections by outcome.", [
        `accio_uploads_total{outcome="saved"} ${this.#uploads.saved}`,
        `accio_uploads_total{outcome="error"} ${this.#uploads.error}`,
      ]),
      ...metricFamily(
        "accio_refused_total",
        "counter",
        "Connections refused before they got a number, by reason.",
        [...this.#refused].sort().map(([kind, count]) => `accio_refused_total{reason="${kind}"} ${count}`),
      ),
      ...metricFamily(histogram, "histogram", "Connection durations.", [
        ...DURATION_BUCKETS.map((bound, i) => `${histogram}_bucket{le="${bound}"} ${this.#buckets[i]}`),
        `${histogram}_bucket{le="+Inf"} ${this.#durationCount}`,
        `${histogram}_sum ${this.#durationSum}`,
        `${histogram}_count ${this.#durationCount}`,
      ]),
    ];
    return lines.join("\n") + "\n";
  }
}

/** A whole request head must arrive within this time, in ms; then the connection is closed. */
export const METRICS_REQUEST_DEADLINE_MS = 5_000;
/** Largest request head read, in bytes; a longer one is answered 400. */
export const MAX_REQUEST_HEAD = 8192;
/** Scrapes served at once; more wait in the listen backlog. */
const MAX_SCRAPES = 16;

/** Settings of {@link serveMetrics}. */
export interface MetricsServerOptions {
  /** TCP port. */
  port: number;
  /**
   * Address to listen on: metrics stay on the machine unless asked.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /** Receives operational messages (accept failures, throttled). Default: nothing. */
  onLog?: (message: string) => void;
}

/** A running metrics responder. */
export interface MetricsServer {
  /** The address it listens on. */
  readonly addr: Deno.NetAddr;
  /** Stops at once; resolves when every connection has closed. */
  close(): Promise<void>;
}

/** What the responder serves: the server's {@link Metrics}, or them with other parts' lines appended. */
export interface MetricsSource {
  /** The whole Prometheus text exposition, ending with a newline. */
  render(): string;
}

/**
 * Serves `GET /metrics` (and `/`) with the current metrics.
 *
 * @throws {Deno.errors.AddrInUse} and the like when the port cannot be bound.
 */
export function serveMetrics(
  metrics: MetricsSource,
  { port, hostname = "127.0.0.1", onLog }: MetricsServerOptions,
): MetricsServer {
  const listener = Deno.listen({ hostname, port, transport: "tcp" });
  const loop = new AcceptLoop(listener, {
    limit: MAX_SCRAPES,
    handle: (conn, { signal }) => answerScrape(conn, metrics, signal),
    onLog,
  });
  return { addr: listener.addr, close: () => loop.close() };
}

async function answerScrape(conn: Deno.Conn, metrics: MetricsSource, signal: AbortSignal): Promise<void> {
  // One deadline for the whole exchange: a peer that trickles or stalls is dropped when it passes.
  const drop = () => closeQuietly(conn);
  const deadline = setTimeout(drop, METRICS_REQUEST_DEADLINE_MS);
  signal.addEventListener("abort", drop, { once: true });
  try {
    const head = await readRequestHead(conn);
    if (head === null) return;
    const data = new TextEncoder().encode(respond(head, metrics));
    for (let done = 0; done < data.length;) done += await conn.write(data.subarray(done));
    await conn.closeWrite();
    // Read until the client closes, so that closing cannot reset the response away.
    const discard = new Uint8Array(1024);
    while ((await conn.read(discard)) !== null) {
      // Anything after the head is ignored.
    }
  } catch {
    // Reset, or closed by the deadline: nothing more to say to this peer.
  } finally {
    clearTimeout(deadline);
    signal.removeEventListener("abort", drop);
    closeQuietly(conn);
  }
}

/** Reads up to the empty line; `"too large"` past {@link MAX_REQUEST_HEAD}; null if the peer closed first. */
async function readRequestHead(conn: Deno.Conn): Promise<string | "too large" | null> {
  const buffer = new Uint8Array(MAX_REQUEST_HEAD);
  let filled = 0;
  for (;;) {
    if (filled === buffer.length) return "too large";
    const n = await conn.read(buffer.subarray(filled));
    if (n === null) return null;
    filled += n;
    const head = new TextDecoder("latin1").decode(buffer.subarray(0, filled));
    const end = head.search(/\r?\n\r?\n/);
    if (end !== -1) return head.slice(0, end);
  }
}

const STATUS: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  404: "Not Found",
  405: "Method Not Allowed",
};

/** The whole HTTP/1.1 response to a request head. */
function respond(head: string, metrics: MetricsSource): string {
  const request = /^([A-Z]+) (\S+) HTTP\/1\.[01]\r?$/.exec(head.split("\n")[0]);
  if (head === "too large" || !request) return response(400, "bad request\n");
  const [, method, target] = request;
  if (method !== "GET" && method !== "HEAD") {
    return response(405, "method not allowed\n", "Allow: GET, HEAD\r\n");
  }
  const path = target.replace(/^https?:\/\/[^/]*/, "").replace(/\?.*$/, "");
  if (path !== "/metrics" && path !== "/") return response(404, "not found\n");
  const body = metrics.render();
  return response(200, method === "HEAD" ? "" : body, "", "text/plain; version=0.0.4; charset=utf-8", body);
}

function response(
  status: number,
  body: string,
  extra = "",
  type = "text/plain; charset=utf-8",
  sized = body,
) {
  const length = new TextEncoder().encode(sized).length;
  return `HTTP/1.1 ${status} ${STATUS[status]}\r\nContent-Type: ${type}\r\nContent-Length: ${length}\r\n` +
    `${extra}Connection: close\r\n\r\n${body}`;
}
