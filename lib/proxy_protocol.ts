/**
 * The PROXY protocol (versions 1 and 2, as HAProxy specifies them): a load
 * balancer in TCP mode prepends one header to every connection it relays,
 * carrying the original client's address. A server started behind one reads
 * that header before anything else, and takes the client address from it.
 *
 * Reading never takes a byte past the header: the upload that follows stays in
 * the socket for the handshake. The whole header must arrive within one
 * deadline, however it is split into segments.
 *
 * @example
 * ```ts
 * import { readProxyHeader } from "./proxy_protocol.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 5000 });
 * const conn = await listener.accept();
 * const header = await readProxyHeader(conn, { timeoutMs: 10_000 });
 * if (header === null) conn.close(); // closed before sending a byte
 * else console.log(header.command, header.source?.hostname);
 * ```
 * @module
 */
import { formatSeconds, withDeadline } from "./deadline.ts";
import { ConnectionError, ProtocolError, TimeoutError } from "./errors.ts";
import { showBytes } from "./handshake.ts";
import { formatAddress } from "./listen.ts";
import { closeQuietly, connectionFailure, type Socket } from "./socket_io.ts";

/** The longest version 1 line, CRLF included (`PROXY UNKNOWN` with two IPv6 addresses). */
export const V1_MAX_LENGTH = 107;
/** The shortest version 1 line, `PROXY UNKNOWN\r\n`; no header of either version is shorter. */
const V1_MIN_LENGTH = 15;
/** The fixed part of a version 2 header: signature, version and command, family, length. */
const V2_FIXED_LENGTH = 16;
/** The 12 bytes that open every version 2 header. */
export const V2_SIGNATURE: Uint8Array = Uint8Array.of(
  0x0d,
  0x0a,
  0x0d,
  0x0a,
  0x00,
  0x0d,
  0x0a,
  0x51,
  0x55,
  0x49,
  0x54,
  0x0a,
);
/**
 * Default cap on what a version 2 header may announce after its fixed part
 * (addresses and TLVs): IPv6 takes 36 bytes, HAProxy's usual TLVs a few dozen.
 */
export const DEFAULT_MAX_V2_LENGTH = 1024;

const CR = 0x0d;
const LF = 0x0a;
const V1_PREFIX = new TextEncoder().encode("PROXY ");

/** A layer 3 address and layer 4 port carried by a header. */
export interface ProxyEndpoint {
  /** IPv4 dotted quad, or IPv6 in its canonical short form (`::1`, `::ffff:127.0.0.1`). */
  hostname: string;
  /** TCP port, 0-65535. */
  port: number;
}

/** The address family a header announces: `unspec` carries no addresses (v1 `UNKNOWN`, v2 `AF_UNSPEC`). */
export type ProxyFamily = "inet" | "inet6" | "unspec";

/** What a PROXY protocol header said. */
export interface ProxyHeader {
  /** 1 for the text format, 2 for the binary one. */
  version: 1 | 2;
  /** `proxy`: relayed for a client; `local`: the balancer's own connection (a health check, v2 only). */
  command: "proxy" | "local";
  /** The family of the addresses; `unspec` (and always for `local`) when there are none. */
  family: ProxyFamily;
  /** The original client, when the header carries addresses. */
  source?: ProxyEndpoint;
  /** The address the client connected to on the balancer, when the header carries addresses. */
  destination?: ProxyEndpoint;
  /** Bytes the header took on the wire. */
  length: number;
}

/** How {@link readProxyHeader} waits and what it accepts. */
export interface ProxyHeaderOptions {
  /** The whole header must have arrived within this many milliseconds. */
  timeoutMs: number;
  /** Largest length a version 2 header may announce after its 16 fixed bytes; default {@link DEFAULT_MAX_V2_LENGTH}. */
  maxV2Length?: number;
}

/** One socket read bounded by what is left of a single deadline for the whole header. */
class HeaderReader {
  readonly #socket: Socket;
  readonly #timeoutMs: number;
  readonly #until: number;

  constructor(socket: Socket, timeoutMs: number) {
    this.#socket = socket;
    this.#timeoutMs = timeoutMs;
    this.#until = performance.now() + timeoutMs;
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    const left = Math.max(0, this.#until - performance.now());
    try {
      return await withDeadline(
        this.#socket.read(buffer),
        left,
        () => new TimeoutError(`no complete PROXY protocol header within ${formatSeconds(this.#timeoutMs)}`),
        () => closeQuietly(this.#socket),
      );
    } catch (error) {
      throw connectionFailure(error, "while reading the PROXY protocol header");
    }
  }
}

/**
 * Reads one PROXY protocol header, version 1 or 2, from the start of `socket`,
 * and not one byte more.
 *
 * @returns the header, or `null` when the peer closed (or reset) the
 *   connection before sending any byte: a port probe, not a client.
 * @throws {ProtocolError} when the bytes are not a valid header (not the
 *   protocol at all, wrong version, bad address, a v1 line without CRLF within
 *   107 bytes, a v2 length above `maxV2Length`).
 * @throws {TimeoutError} (and closes the socket) when the header is not
 *   complete within `timeoutMs`.
 * @throws {ConnectionError} when the connection ends inside the header.
 *
 * @example
 * ```ts
 * import { clientAddress, readProxyHeader } from "./proxy_protocol.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 5000 });
 * const conn = await listener.accept();
 * const header = await readProxyHeader(conn, { timeoutMs: 10_000 });
 * if (header?.command === "proxy") console.log(clientAddress(header, conn.remoteAddr));
 * ```
 */
export async function readProxyHeader(
  socket: Socket,
  options: ProxyHeaderOptions,
): Promise<ProxyHeader | null> {
  const reader = new HeaderReader(socket, options.timeoutMs);
  const start = new Uint8Array(V1_MAX_LENGTH);
  let received: number | null;
  try {
    received = await reader.read(start.subarray(0, V1_MIN_LENGTH));
  } catch (error) {
    if (error instanceof ConnectionError) return null; // reset before a byte: as good as a close
    throw error;
  }
  if (received === null) return null;
  if (start[0] === V1_PREFIX[0]) return await readV1(reader, start, received);
  if (start[0] === V2_SIGNATURE[0]) {
    return await readV2(reader, start, received, options.maxV2Length ?? DEFAULT_MAX_V2_LENGTH);
  }
  throw notAHeader(start.subarray(0, received));
}

/**
 * The client's address as Accio logs it (`host:port`, IPv6 in brackets): the
 * header's source when it carries one, else the socket's own peer (for a v1
 * `UNKNOWN`, a v2 `AF_UNSPEC` or `LOCAL` header).
 *
 * @example
 * ```ts
 * import { clientAddress } from "./proxy_protocol.ts";
 * const header = {
 *   version: 2, command: "proxy", family: "inet", length: 28,
 *   source: { hostname: "192.0.2.7", port: 40000 },
 * } as const;
 * clientAddress(header, { transport: "tcp", hostname: "127.0.0.1", port: 5000 }); // "192.0.2.7:40000"
 * ```
 */
export function clientAddress(header: ProxyHeader, peer: Deno.Addr): string {
  if (header.source === undefined) return formatAddress(peer);
  return formatAddress({ transport: "tcp", ...header.source });
}

function notAHeader(bytes: Uint8Array): ProtocolError {
  return new ProtocolError(`connection did not begin with a PROXY protocol header: got ${showBytes(bytes)}`);
}

function truncated(filled: number): ConnectionError {
  return new ConnectionError(`connection closed by peer after ${filled} bytes of a PROXY protocol header`);
}

// ---- version 1: one text line ----

async function readV1(reader: HeaderReader, line: Uint8Array, received: number): Promise<ProxyHeader> {
  let filled = received;
  checkV1Prefix(line, filled);
  while (!(filled >= 2 && line[filled - 2] === CR && line[filled - 1] === LF)) {
    if (filled >= V1_MAX_LENGTH) {
      throw new ProtocolError(
        `PROXY protocol v1 line has no CRLF within ${V1_MAX_LENGTH} bytes: ${showBytes(line, 40)}`,
      );
    }
    const want = Math.min(v1BytesStillNeeded(line, filled), V1_MAX_LENGTH - filled);
    const n = await reader.read(line.subarray(filled, filled + want));
    if (n === null) throw truncated(filled);
    filled += n;
    checkV1Prefix(line, filled);
  }
  return parseV1(latin1(line.subarray(0, filled - 2)), filled);
}

/**
 * The fewest bytes that can still complete the line, so that a read of that
 * many never goes past its CRLF: a TCP line has exactly 5 spaces, each token
 * at least one character.
 */
function v1BytesStillNeeded(line: Uint8Array, filled: number): number {
  // After a CR only its LF may come: never read further, even on a line too short to be valid.
  if (line[filled - 1] === CR) return 1;
  const shortest = V1_MIN_LENGTH - filled;
  const text = latin1(line.subarray(0, filled));
  const spaces = text.split(" ").length - 1;
  const family = text.split(" ")[1];
  let structural = 2;
  if (spaces >= 2 && (family === "TCP4" || family === "TCP6")) {
    structural = (5 - spaces) * 2 + 2 + (text.endsWith(" ") ? 1 : 0);
  }
  return Math.max(shortest, structural, 1);
}

/** Rejects a line as soon as its first bytes show it cannot be a valid header. */
function checkV1Prefix(line: Uint8Array, filled: number): void {
  const head = line.subarray(0, Math.min(filled, V1_PREFIX.length));
  if (!head.every((byte, i) => byte === V1_PREFIX[i])) throw notAHeader(line.subarray(0, filled));
  for (let i = 0; i < filled; i++) {
    const lineEnd = (line[i] === CR && (i === filled - 1 || (i === filled - 2 && line[i + 1] === LF))) ||
      (line[i] === LF && i === filled - 1 && line[i - 1] === CR);
    if ((line[i] === CR || line[i] === LF) && !lineEnd) {
      throw new ProtocolError(
        `malformed PROXY protocol v1 line (CR or LF out of place): ${
          showBytes(line.subarray(0, filled), 110)
        }`,
      );
    }
  }
  const text = latin1(line.subarray(V1_PREFIX.length, filled));
  const end = text.search(/[ \r]/);
  if (end >= 0 && !["TCP4", "TCP6", "UNKNOWN"].includes(text.slice(0, end))) {
    throw new ProtocolError(
      `PROXY protocol v1 line has unknown protocol ${showBytes(ascii(text.slice(0, end)))}`,
    );
  }
}

function parseV1(text: string, length: number): ProxyHeader {
  const parts = text.split(" ");
  if (parts[1] === "UNKNOWN") return { version: 1, command: "proxy", family: "unspec", length };
  const malformed = () =>
    new ProtocolError(`malformed PROXY protocol v1 line ${showBytes(ascii(text), 110)}`);
  if (parts.length !== 6) throw malformed();
  const family: ProxyFamily = parts[1] === "TCP4" ? "inet" : "inet6";
  const parse = family === "inet" ? parseIPv4 : parseIPv6;
  const [source, destination] = [parse(parts[2]), parse(parts[3])];
  const [sourcePort, destinationPort] = [parsePort(parts[4]), parsePort(parts[5])];
  if (!source || !destination || sourcePort === undefined || destinationPort === undefined) {
    throw malformed();
  }
  return {
    version: 1,
    command: "proxy",
    family,
    source: { hostname: formatIP(source), port: sourcePort },
    destination: { hostname: formatIP(destination), port: destinationPort },
    length,
  };
}

/** A decimal 0-65535 without leading zeros. */
function parsePort(text: string): number | undefined {
  if (!/^(0|[1-9][0-9]{0,4})$/.test(text)) return undefined;
  const port = Number(text);
  return port <= 65535 ? port : undefined;
}

/** Four decimal 0-255 without leading zeros, dot-separated, as 4 bytes. */
function parseIPv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((part) => /^(0|[1-9][0-9]{0,2})$/.test(part))) return undefined;
  const bytes = parts.map(Number);
  return bytes.every((byte) => byte <= 255) ? Uint8Array.from(bytes) : undefined;
}

/** Colon-separated hex groups, at most one `::`, an optional trailing dotted quad, as 16 bytes. */
function parseIPv6(text: string): Uint8Array | undefined {
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = halves.map((half, i) => parseGroups(half, i === halves.length - 1));
  if (groups.some((half) => half === undefined)) return undefined;
  const [head, tail = []] = groups as number[][];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const all = [...head, ...new Array(halves.length === 2 ? missing : 0).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  all.forEach((group, i) => bytes.set([group >> 8, group & 0xff], i * 2));
  return bytes;
}

/** Parses `a:b:c` into 16-bit groups; a dotted quad may end the last part, as two groups. */
function parseGroups(part: string, last: boolean): number[] | undefined {
  if (part === "") return [];
  const texts = part.split(":");
  const groups: number[] = [];
  for (const [i, group] of texts.entries()) {
    if (last && i === texts.length - 1 && group.includes(".")) {
      const quad = parseIPv4(group);
      if (!quad) return undefined;
      groups.push((quad[0] << 8) | quad[1], (quad[2] << 8) | quad[3]);
    } else if (/^[0-9a-fA-F]{1,4}$/.test(group)) groups.push(parseInt(group, 16));
    else return undefined;
  }
  return groups;
}

// ---- version 2: binary ----

async function readV2(
  reader: HeaderReader,
  start: Uint8Array,
  received: number,
  maxLength: number,
): Promise<ProxyHeader> {
  let filled = received;
  checkV2Prefix(start, filled);
  while (filled < V2_FIXED_LENGTH) {
    const n = await reader.read(start.subarray(filled, V2_FIXED_LENGTH));
    if (n === null) throw truncated(filled);
    filled += n;
    checkV2Prefix(start, filled);
  }
  const announced = (start[14] << 8) | start[15];
  if (announced > maxLength) {
    throw new ProtocolError(
      `PROXY protocol v2 header announces ${announced} bytes after its fixed part, more than the ${maxLength} allowed`,
    );
  }
  const body = new Uint8Array(announced);
  for (let got = 0; got < announced;) {
    const n = await reader.read(body.subarray(got));
    if (n === null) throw truncated(V2_FIXED_LENGTH + got);
    got += n;
  }
  return parseV2(start[12] & 0x0f, start[13], body);
}

/** Rejects a wrong signature, version or command as soon as its byte arrives. */
function checkV2Prefix(start: Uint8Array, filled: number): void {
  for (let i = 0; i < Math.min(filled, V2_SIGNATURE.length); i++) {
    if (start[i] !== V2_SIGNATURE[i]) throw notAHeader(start.subarray(0, filled));
  }
  if (filled <= 12) return;
  const version = start[12] >> 4;
  const command = start[12] & 0x0f;
  if (version !== 2) throw new ProtocolError(`PROXY protocol v2 header has version ${version}, not 2`);
  if (command > 1) throw new ProtocolError(`PROXY protocol v2 header has unknown command ${command}`);
}

function parseV2(command: number, familyAndProtocol: number, body: Uint8Array): ProxyHeader {
  const length = V2_FIXED_LENGTH + body.length;
  // LOCAL: the balancer's own connection; the spec says to ignore the address block and family.
  if (command === 0) return { version: 2, command: "local", family: "unspec", length };
  const size = familyAndProtocol === 0x11 ? 4 : familyAndProtocol === 0x21 ? 16 : 0;
  if (size === 0) {
    // AF_UNSPEC, UDP and AF_UNIX: valid, but without a TCP address to use; fall back to the peer's.
    if ([0x00, 0x12, 0x22, 0x31, 0x32].includes(familyAndProtocol)) {
      return { version: 2, command: "proxy", family: "unspec", length };
    }
    const hex = familyAndProtocol.toString(16).padStart(2, "0");
    throw new ProtocolError(`PROXY protocol v2 header has unknown family and protocol 0x${hex}`);
  }
  if (body.length < 2 * size + 4) {
    throw new ProtocolError(
      `PROXY protocol v2 header is too short for its ${
        size === 4 ? "IPv4" : "IPv6"
      } addresses: ${body.length} bytes`,
    );
  }
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  return {
    version: 2,
    command: "proxy",
    family: size === 4 ? "inet" : "inet6",
    source: { hostname: formatIP(body.subarray(0, size)), port: view.getUint16(2 * size) },
    destination: { hostname: formatIP(body.subarray(size, 2 * size)), port: view.getUint16(2 * size + 2) },
    length,
  };
}

// ---- formatting and encoding ----

/**
 * Formats 4 or 16 address bytes the way Deno reports peers: dotted quad;
 * IPv6 lowercase with the longest run of zero groups as `::`, and IPv4-mapped
 * addresses as `::ffff:a.b.c.d`.
 */
function formatIP(bytes: Uint8Array): string {
  if (bytes.length === 4) return bytes.join(".");
  const groups = Array.from({ length: 8 }, (_, i) => (bytes[2 * i] << 8) | bytes[2 * i + 1]);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${bytes.subarray(12).join(".")}`;
  }
  let [bestStart, bestLength] = [-1, 1];
  for (let i = 0; i < 8;) {
    let run = 0;
    while (i + run < 8 && groups[i + run] === 0) run++;
    if (run > bestLength) [bestStart, bestLength] = [i, run];
    i += run || 1;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLength).join(":")}`;
}

/** The fields of a header to send; `length` is what encoding decides. */
export type ProxyHeaderFields = Omit<ProxyHeader, "length">;

/**
 * Encodes a header as a balancer would send it: the v1 line, or the v2 binary
 * form followed by `tlvs` (already encoded). Used by tests, and by anything
 * that must speak to a server started with `--proxy-protocol`.
 *
 * @throws {ProtocolError} for a v1 `local` header (v1 has none) or an address
 *   that does not match `family`.
 *
 * @example
 * ```ts
 * import { encodeProxyHeader } from "./proxy_protocol.ts";
 * const line = encodeProxyHeader({
 *   version: 1, command: "proxy", family: "inet",
 *   source: { hostname: "192.0.2.7", port: 40000 },
 *   destination: { hostname: "192.0.2.1", port: 5000 },
 * }); // "PROXY TCP4 192.0.2.7 192.0.2.1 40000 5000\r\n"
 * ```
 */
export function encodeProxyHeader(
  header: ProxyHeaderFields,
  tlvs: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const addresses = encodeAddresses(header);
  if (header.version === 1) {
    if (header.command === "local") throw new ProtocolError("PROXY protocol v1 has no LOCAL command");
    if (addresses === undefined) return ascii("PROXY UNKNOWN\r\n");
    const { source, destination } = header as Required<ProxyHeaderFields>;
    const family = header.family === "inet" ? "TCP4" : "TCP6";
    return ascii(
      `PROXY ${family} ${source.hostname} ${destination.hostname} ${source.port} ${destination.port}\r\n`,
    );
  }
  const body = addresses ?? new Uint8Array(0);
  const out = new Uint8Array(V2_FIXED_LENGTH + body.length + tlvs.length);
  out.set(V2_SIGNATURE);
  out[12] = header.command === "local" ? 0x20 : 0x21;
  out[13] = addresses === undefined ? 0x00 : header.family === "inet" ? 0x11 : 0x21;
  new DataView(out.buffer).setUint16(14, body.length + tlvs.length);
  out.set(body, V2_FIXED_LENGTH);
  out.set(tlvs, V2_FIXED_LENGTH + body.length);
  return out;
}

/** The v2 address block for `header`, or `undefined` when it carries no addresses. */
function encodeAddresses(header: ProxyHeaderFields): Uint8Array | undefined {
  if (header.family === "unspec" || header.command === "local") return undefined;
  const parse = header.family === "inet" ? parseIPv4 : parseIPv6;
  const source = header.source && parse(header.source.hostname);
  const destination = header.destination && parse(header.destination.hostname);
  const ports = [header.source?.port, header.destination?.port];
  if (
    !source || !destination ||
    !ports.every((p) => p !== undefined && Number.isInteger(p) && p >= 0 && p <= 65535)
  ) {
    throw new ProtocolError(`PROXY protocol ${header.family} header needs a valid source and destination`);
  }
  const block = new Uint8Array(2 * source.length + 4);
  block.set(source);
  block.set(destination, source.length);
  new DataView(block.buffer).setUint16(2 * source.length, ports[0]!);
  new DataView(block.buffer).setUint16(2 * source.length + 2, ports[1]!);
  return block;
}

function latin1(bytes: Uint8Array): string {
  return String.fromCharCode(...bytes);
}

function ascii(text: string): Uint8Array {
  return Uint8Array.from(text, (char) => char.charCodeAt(0) & 0xff);
}
