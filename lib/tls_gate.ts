/**
 * TLS as a {@link Gate} (`server --tls-cert FILE --tls-key FILE`): the TLS
 * handshake runs on every new connection before it gets a number, within the
 * idle timeout, and the session then reads and writes the decrypted stream.
 * Everything after it (both handshakes, the headers, receipts, resuming, the
 * error line and the lingering close) runs unchanged inside TLS.
 *
 * A failed handshake (a plaintext client that waits for `accio\r\n`, a client
 * that refuses the certificate, a scanner) is refused like any gate's
 * refusal: no number, no file, the reason in the refusal log line, and
 * counted as `accio_refused_total{reason="tls-<kind>"}` (see
 * `TlsHandshakeError`). Place it after the cheap gates (PROXY header,
 * `--max-per-address`, the disk mark): a connection they refuse costs no
 * handshake.
 *
 * @example
 * ```ts
 * import { AccioServer } from "./server.ts";
 * import { TlsContext } from "./tls_server.ts";
 * import { tlsGate } from "./tls_gate.ts";
 * const context = await TlsContext.load({ cert: "cert.pem", key: "key.pem" });
 * const server = await AccioServer.start({
 *   port: 5000,
 *   directory: "/srv/uploads",
 *   gates: [tlsGate(context, { timeoutMs: 10_000 })],
 * });
 * await server.finished;
 * ```
 * @module
 */
import { acceptTls, type TlsContext } from "./tls_server.ts";
import type { Arrival, Gate } from "./upload_session.ts";

/** Settings of {@link tlsGate}. */
export interface TlsGateOptions {
  /** The whole handshake must be done within this many ms (the server's idle timeout). */
  timeoutMs: number;
}

/**
 * A gate that runs the server's TLS handshake with `context`'s certificate
 * (the one in use when the connection arrives: a reload changes only later
 * connections) and hands the session the decrypted stream.
 *
 * @throws {import("./tls_server.ts").TlsHandshakeError} from the gate, naming why; the session refuses the connection.
 *
 * @example
 * ```ts
 * import { TlsContext } from "./tls_server.ts";
 * import { tlsGate } from "./tls_gate.ts";
 * const context = await TlsContext.load({ cert: "cert.pem", key: "key.pem" });
 * const gates = [tlsGate(context, { timeoutMs: 10_000 })];
 * ```
 */
export function tlsGate(context: TlsContext, options: TlsGateOptions): Gate {
  return async (arrival: Arrival) => {
    arrival.conn = await acceptTls(arrival.conn, context, options.timeoutMs);
  };
}
