/**
 * Connecting to a server with a deadline, and errors that name the host.
 *
 * @example
 * ```ts
 * import { connectWithin } from "./connect.ts";
 * const socket = await connectWithin("localhost", 5000, 10_000);
 * ```
 * @module
 */
import { formatSeconds, withDeadline } from "./deadline.ts";
import { ConnectionError, describeError, TimeoutError } from "./errors.ts";
import { TcpSocket } from "./tcp_socket.ts";

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
  if (error instanceof TimeoutError) return error;
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
 * literal with or without brackets) within `timeoutMs`.
 *
 * @throws {TimeoutError} when the connection is not established in time.
 * @throws {ConnectionError} when the name does not resolve or the peer refuses.
 */
export async function connectWithin(
  hostname: string,
  port: number,
  timeoutMs: number,
): Promise<TcpSocket> {
  const host = hostname.startsWith("[") && hostname.endsWith("]") ? hostname.slice(1, -1) : hostname;
  const where = hostPort(host, port);
  if (host === "") throw new ConnectionError("empty host name", { transient: false });
  const attempt = TcpSocket.connect(host, port);
  try {
    return await withDeadline(
      attempt.connected,
      timeoutMs,
      () => new TimeoutError(`could not connect to ${where} within ${formatSeconds(timeoutMs)}`),
      attempt.cancel,
    );
  } catch (error) {
    throw connectFailure(error, host, where);
  }
}
