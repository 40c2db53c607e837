/**
 * Connecting to a server with a deadline, over TCP or over TLS (the
 * handshake and the certificate's verification then count in the deadline),
 * and errors that name the host.
 *
 * @example
 * ```ts
 * import { connectWithin } from "./connect.ts";
 * const socket = await connectWithin("localhost", 5000, 10_000);
 * const secure = await connectWithin("gw.example", 5000, 10_000, { tls: {} }); // the system's roots
 * ```
 * @module
 */
import { formatSeconds, withDeadline } from "./deadline.ts";
import { ConnectionError, describeError, TimeoutError } from "./errors.ts";
import { TcpSocket } from "./tcp_socket.ts";
import { connectTls, type TlsClientOptions } from "./tls_client.ts";
import type { TlsStream } from "./tls_stream.ts";

/** A client's connection: plaintext or TLS, with the same surface (read, write, half-close, reset). */
export type ClientSocket = TcpSocket | TlsStream;

/** Options of {@link connectWithin}. */
export interface ConnectOptions {
  /** Speak TLS, verified so; plaintext when absent. */
  tls?: TlsClientOptions;
}

/** `host:port` for messages, with brackets around IPv6 literals. */
export function hostPort(hostname: string, port: number): string {
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}

/** getaddrinfo's failures, by the code `node:net` gives them. */
const RESOLVE_FAILURES: Record<string, string> = {
  ENOTFOUND: "name or service not known",
  EAI_NONAME: "name or service not known",
  EAI_NODATA: "no address associated with the name",
  EAI_AGAIN: "temporary failure in name resolution",
  EAI_FAIL: "non-recoverable failure in name resolution",
};

/** Other connect failures, said plainly. */
const CONNECT_FAILURES: Record<string, string> = {
  EHOSTUNREACH: "no route to host",
  ENETUNREACH: "network is unreachable",
  EADDRNOTAVAIL: "address not available",
  ETIMEDOUT: "timed out",
};

function connectFailure(error: unknown, host: string, where: string): Error {
  // A TLS failure (describeTlsFailure) already says what happened, and what to do.
  if (error instanceof TimeoutError || error instanceof ConnectionError) return error;
  if (error instanceof Deno.errors.ConnectionRefused) {
    return new ConnectionError(`connection refused by ${where}`, { cause: error });
  }
  const code = (error as { code?: string }).code ?? "";
  const reason = describeError(error);
  if (code in RESOLVE_FAILURES || /lookup|resolve|name or service|nodename|no address/i.test(reason)) {
    const why = RESOLVE_FAILURES[code] ?? reason;
    // Only a temporary failure of the resolver may pass; a name that does not exist stays so.
    return new ConnectionError(`cannot resolve host "${host}": ${why}`, {
      cause: error,
      transient: code === "EAI_AGAIN",
    });
  }
  return new ConnectionError(`cannot connect to ${where}: ${CONNECT_FAILURES[code] ?? reason}`, {
    cause: error,
  });
}

/**
 * Opens a TCP connection to `hostname` (a name, an IPv4 literal, or an IPv6
 * literal with or without brackets) within `timeoutMs`; with `tls`, also
 * runs the TLS handshake and verifies the certificate (for `tls.serverName`,
 * by default the host: an IP literal is checked against the IP addresses the
 * certificate names) within the same deadline, before any byte of the upload.
 *
 * @throws {TimeoutError} when the connection (or its TLS handshake) is not established in time.
 * @throws {ConnectionError} when the name does not resolve, the peer refuses, or TLS fails.
 */
export async function connectWithin(
  hostname: string,
  port: number,
  timeoutMs: number,
  options: ConnectOptions = {},
): Promise<ClientSocket> {
  const host = hostname.startsWith("[") && hostname.endsWith("]") ? hostname.slice(1, -1) : hostname;
  const where = hostPort(host, port);
  if (host === "") throw new ConnectionError("empty host name", { transient: false });
  const attempt: { connected: Promise<ClientSocket>; cancel: () => void } = options.tls
    ? connectTls(host, port, options.tls)
    : TcpSocket.connect(host, port);
  const what = options.tls ? "connect and finish the TLS handshake with" : "connect to";
  try {
    return await withDeadline(
      attempt.connected,
      timeoutMs,
      () => new TimeoutError(`could not ${what} ${where} within ${formatSeconds(timeoutMs)}`),
      attempt.cancel,
    );
  } catch (error) {
    throw connectFailure(error, host, where);
  }
}
