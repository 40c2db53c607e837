/**
 * Opening the listening socket on every interface: IPv6 `::` (which on Linux
 * also takes IPv4), or `0.0.0.0` where the machine has no IPv6.
 *
 * @example
 * ```ts
 * import { listenAll } from "./listen.ts";
 * const listener = listenAll(5000);
 * ```
 * @module
 */
import { ConnectionError, describeError } from "./errors.ts";

/** Options of {@link listenAll}. */
export interface ListenOptions {
  /**
   * Share the port with the other listeners of this process that set it too
   * (`SO_REUSEPORT`, Linux: the kernel spreads connections over them; needs
   * `--unstable-net` in Deno 2.9).
   *
   * @default {false}
   */
  reusePort?: boolean;
}

/**
 * Listens on `port` on all interfaces, or on `hostname` when given.
 *
 * @throws {ConnectionError} saying why the port cannot be bound.
 */
export function listenAll(
  port: number,
  hostname?: string,
  { reusePort }: ListenOptions = {},
): Deno.TcpListener {
  const attempt = (host: string) =>
    Deno.listen({ hostname: host, port, transport: "tcp", ...(reusePort ? { reusePort } : {}) });
  try {
    if (hostname !== undefined) return attempt(hostname);
    try {
      return attempt("::");
    } catch (error) {
      if (error instanceof Deno.errors.AddrInUse || error instanceof Deno.errors.PermissionDenied) {
        throw error;
      }
      return attempt("0.0.0.0"); // no IPv6 on this machine
    }
  } catch (error) {
    const reason = error instanceof Deno.errors.AddrInUse
      ? "the port is already in use"
      : error instanceof Deno.errors.PermissionDenied
      ? "permission denied (ports below 1024 need privileges)"
      : describeError(error);
    throw new ConnectionError(`cannot listen on port ${port}: ${reason}`, { cause: error });
  }
}

/** Formats a socket address as `host:port`, with brackets for IPv6. */
export function formatAddress(addr: Deno.Addr): string {
  if (addr.transport !== "tcp" && addr.transport !== "udp") return addr.transport;
  const host = addr.hostname.startsWith("::ffff:") ? addr.hostname.slice(7) : addr.hostname;
  return host.includes(":") ? `[${host}]:${addr.port}` : `${host}:${addr.port}`;
}
