/**
 * Port arguments: a decimal number 1-65535, or (for the client) a TCP service
 * name from `/etc/services`.
 *
 * @example
 * ```ts
 * import { parsePort, resolvePort } from "./port.ts";
 * parsePort("5000"); // 5000
 * await resolvePort("ssh"); // 22, from /etc/services
 * ```
 * @module
 */
import { UsageError } from "./errors.ts";

/** Where service names are looked up unless told otherwise. */
export const SERVICES_FILE = "/etc/services";

const DECIMAL = /^[0-9]+$/;

/**
 * Parses a decimal port number. Only plain digits are accepted: `+5`, `5.0`,
 * `0x10` and ` 5` are all refused, because a port typed wrong should fail loudly.
 *
 * @throws {UsageError} when the text is not an integer in 1-65535.
 */
export function parsePort(text: string): number {
  if (!DECIMAL.test(text)) {
    throw new UsageError(`invalid port "${text}": expected a number from 1 to 65535`);
  }
  const port = Number(text);
  if (port < 1 || port > 65535) {
    throw new UsageError(`invalid port "${text}": out of range 1-65535`);
  }
  return port;
}

/**
 * Looks a TCP service name up in a services file (format of `services(5)`:
 * `name port/protocol aliases...`, `#` comments).
 *
 * @returns the port, or `undefined` when the name is not listed for TCP.
 */
export function lookupService(name: string, servicesText: string): number | undefined {
  for (const rawLine of servicesText.split("\n")) {
    const fields = rawLine.replace(/#.*/, "").trim().split(/\s+/);
    if (fields.length < 2) continue;
    const [serviceName, portAndProtocol, ...aliases] = fields;
    const match = /^([0-9]+)\/tcp$/i.exec(portAndProtocol);
    if (!match) continue;
    if (serviceName === name || aliases.includes(name)) return Number(match[1]);
  }
  return undefined;
}

/**
 * Resolves a client's port argument: a number as {@link parsePort}, anything
 * else as a TCP service name in `servicesFile` (default `/etc/services`).
 *
 * @throws {UsageError} when it is neither.
 */
export async function resolvePort(
  text: string,
  servicesFile: string = SERVICES_FILE,
): Promise<number> {
  if (DECIMAL.test(text) || /^[-+]?[0-9]/.test(text)) return parsePort(text);
  let servicesText = "";
  try {
    servicesText = await Deno.readTextFile(servicesFile);
  } catch {
    // No services database: the name simply cannot be resolved.
  }
  const port = lookupService(text, servicesText);
  if (port === undefined || port < 1 || port > 65535) {
    throw new UsageError(
      `invalid port "${text}": not a number from 1 to 65535 nor a TCP service in ${servicesFile}`,
    );
  }
  return port;
}
