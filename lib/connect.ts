/**
 * Connecting to a server with a deadline, and errors that name the host.
 *
 * @example
 * ```ts
 * import { connectWithin } from "./connect.ts";
 * const conn = await connectWithin("localhost", 5000, 10_000);
 * ```
 * @module
 */
import { formatSeconds, withDeadline } from "./deadline.ts";
import { ConnectionError, describeError, TimeoutError } from "./errors.ts";
import { closeQuietly } from "./socket_io.ts";

/** `host:port` for messages, with brackets around IPv6 literals. */
export function hostPort(hostname: string, port: number): string {
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
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
): Promise<Deno.TcpConn> {
  const host = hostname.startsWith("[") && hostname.endsWith("]") ? hostname.slice(1, -1) : hostname;
  const where = hostPort(host, port);
  if (host === "") throw new ConnectionError("empty host name");
  const attempt = Deno.connect({ hostname: host, port, transport: "tcp" });
  try {
    return await withDeadline(
      attempt,
      timeoutMs,
      () => new TimeoutError(`could not connect to ${where} within ${formatSeconds(timeoutMs)}`),
      // The attempt cannot be cancelled; if it ever completes, drop it.
      () => attempt.then(closeQuietly, () => {}),
    );
  } catch (error) {
    if (error instanceof TimeoutError) throw error;
    if (error instanceof Deno.errors.ConnectionRefused) {
      throw new ConnectionError(`connection refused by ${where}`, { cause: error });
    }
    const reason = describeError(error);
    if (/lookup|resolve|name or service|nodename|no address/i.test(reason)) {
      throw new ConnectionError(`cannot resolve host "${host}": ${reason}`, { cause: error });
    }
    throw new ConnectionError(`cannot connect to ${where}: ${reason}`, { cause: error });
  }
}
