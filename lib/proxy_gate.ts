/**
 * The PROXY protocol as a {@link Gate} (`server --proxy-protocol`): every
 * connection must begin with a header from the balancer, read before
 * `accio\r\n` and within the idle timeout, and the client address it carries
 * becomes the connection's peer: the one logged and in the upload log.
 *
 * - a v2 `LOCAL` header (HAProxy's health check) or a close before any byte:
 *   refused with {@link NotAnUploadError}, so no number, no file, no log line;
 * - a missing, malformed or late header: refused with the reason, logged with
 *   the balancer's address (the peer is not replaced).
 *
 * @example
 * ```ts
 * import { AccioServer } from "./server.ts";
 * import { proxyProtocolGate } from "./proxy_gate.ts";
 * const server = await AccioServer.start({
 *   port: 5001,
 *   directory: "/srv/uploads",
 *   gates: [proxyProtocolGate({ timeoutMs: 10_000 })],
 * });
 * await server.finished;
 * ```
 * @module
 */
import { AccioError, describeError, NotAnUploadError, ProtocolError } from "./errors.ts";
import { clientAddress, readProxyHeader } from "./proxy_protocol.ts";
import type { Arrival, Gate } from "./upload_session.ts";

/** Settings of {@link proxyProtocolGate}. */
export interface ProxyGateOptions {
  /** The whole header must arrive within this many ms (the server's idle timeout). */
  timeoutMs: number;
}

/**
 * A gate that reads the PROXY protocol header and sets `arrival.peer` to the
 * client it names.
 *
 * @example
 * ```ts
 * import { proxyProtocolGate } from "./proxy_gate.ts";
 * const gates = [proxyProtocolGate({ timeoutMs: 10_000 })];
 * ```
 */
export function proxyProtocolGate(options: ProxyGateOptions): Gate {
  return async (arrival: Arrival) => {
    let header;
    try {
      header = await readProxyHeader(arrival.conn, { timeoutMs: options.timeoutMs });
    } catch (error) {
      // Keep the error's kind (timeout, protocol, connection); the log line adds the balancer's address.
      if (error instanceof AccioError) throw error;
      throw new ProtocolError(`bad PROXY protocol header: ${describeError(error)}`, {
        cause: error,
        refusal: "proxy-protocol",
      });
    }
    if (header === null) throw new NotAnUploadError("closed before a PROXY protocol header");
    if (header.command === "local") {
      throw new NotAnUploadError("PROXY protocol LOCAL connection (health check)");
    }
    arrival.peer = clientAddress(header, arrival.remoteAddr);
  };
}
