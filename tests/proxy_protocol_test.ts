/**
 * lib/proxy_protocol.ts over real loopback sockets: valid v1 and v2 headers,
 * headers split one byte per segment, the bytes behind the header left in the
 * socket, malformed headers, the single deadline, an immediate close; then a
 * bounded, seeded fuzz over an in-memory socket that counts every byte taken.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { AccioError, ConnectionError, ProtocolError, TimeoutError } from "../lib/errors.ts";
import {
  clientAddress,
  encodeProxyHeader,
  type ProxyHeader,
  type ProxyHeaderFields,
  readProxyHeader,
  V2_SIGNATURE,
} from "../lib/proxy_protocol.ts";
import { bytes, concat } from "./support/encoding.ts";
import { delay } from "./support/wait.ts";
import { readToEnd } from "./support/wire.ts";

/** A connected loopback pair: `server` is the accepted side that the parser reads. */
async function socketPair(): Promise<{ client: Deno.TcpConn; server: Deno.TcpConn } & AsyncDisposable> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [client, server] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  client.setNoDelay(true);
  return {
    client,
    server,
    [Symbol.asyncDispose]: async () => {
      for (const conn of [client, server]) {
        try {
          conn.close();
        } catch { /* closed by the test */ }
      }
      await delay(0);
    },
  };
}

/** Sends `data` one byte per segment (Nagle off, a pause between writes). */
async function trickle(conn: Deno.Conn, data: Uint8Array, pauseMs = 2): Promise<void> {
  for (let i = 0; i < data.length; i++) {
    await conn.write(data.subarray(i, i + 1));
    await delay(pauseMs);
  }
}

/** Parses `header` sent ahead of `payload`, and checks the payload is what stays in the socket. */
async function parseOverLoopback(
  header: Uint8Array,
  payload: Uint8Array,
  split: boolean,
): Promise<ProxyHeader | null> {
  await using pair = await socketPair();
  const sending = (async () => {
    if (split) await trickle(pair.client, header);
    else await pair.client.write(header);
    await pair.client.write(payload);
    await pair.client.closeWrite();
  })();
  const result = await readProxyHeader(pair.server, { timeoutMs: 10_000 });
  await sending;
  const rest = await readToEnd(pair.server);
  assert.deepEqual(rest, payload, "the bytes after the header stay in the socket, untouched");
  return result;
}

const PAYLOAD = bytes("accio payload\r\nconfirm-accio\r\n\x00\xff");
const v4 = {
  source: { hostname: "192.0.2.7", port: 40000 },
  destination: { hostname: "198.51.100.1", port: 5000 },
};
const v6 = {
  source: { hostname: "2001:db8::7", port: 65535 },
  destination: { hostname: "::1", port: 0 },
};

/** A TLV block such as HAProxy may append: a unique ID and a NOOP. */
const TLVS = Uint8Array.of(0x05, 0x00, 0x03, 0x61, 0x62, 0x63, 0x04, 0x00, 0x00);

const VALID: { name: string; wire: Uint8Array; expected: Omit<ProxyHeader, "length"> }[] = [
  {
    name: "v1 TCP4",
    wire: bytes("PROXY TCP4 192.0.2.7 198.51.100.1 40000 5000\r\n"),
    expected: { version: 1, command: "proxy", family: "inet", ...v4 },
  },
  {
    name: "v1 TCP6, long form canonicalised",
    wire: bytes("PROXY TCP6 2001:0DB8:0000:0000:0000:0000:0000:0007 0:0:0:0:0:0:0:1 65535 0\r\n"),
    expected: { version: 1, command: "proxy", family: "inet6", ...v6 },
  },
  {
    name: "v1 TCP6, IPv4-mapped",
    wire: bytes("PROXY TCP6 ::ffff:192.0.2.7 ::ffff:c633:6401 40000 5000\r\n"),
    expected: {
      version: 1,
      command: "proxy",
      family: "inet6",
      source: { hostname: "::ffff:192.0.2.7", port: 40000 },
      destination: { hostname: "::ffff:198.51.100.1", port: 5000 },
    },
  },
  {
    name: "v1 UNKNOWN, short form",
    wire: bytes("PROXY UNKNOWN\r\n"),
    expected: { version: 1, command: "proxy", family: "unspec" },
  },
  {
    name: "v1 UNKNOWN, worst case of 107 bytes",
    wire: bytes(`PROXY UNKNOWN ${"ffff:".repeat(7)}ffff ${"ffff:".repeat(7)}ffff 65535 65535\r\n`),
    expected: { version: 1, command: "proxy", family: "unspec" },
  },
  {
    name: "v2 PROXY IPv4 with TLVs",
    wire: encodeProxyHeader({ version: 2, command: "proxy", family: "inet", ...v4 }, TLVS),
    expected: { version: 2, command: "proxy", family: "inet", ...v4 },
  },
  {
    name: "v2 PROXY IPv6",
    wire: encodeProxyHeader({ version: 2, command: "proxy", family: "inet6", ...v6 }),
    expected: { version: 2, command: "proxy", family: "inet6", ...v6 },
  },
  {
    name: "v2 PROXY UNSPEC",
    wire: encodeProxyHeader({ version: 2, command: "proxy", family: "unspec" }),
    expected: { version: 2, command: "proxy", family: "unspec" },
  },
  {
    name: "v2 LOCAL (a health check), with an address block that must be skipped",
    wire: (() => {
      const wire = encodeProxyHeader({ version: 2, command: "proxy", family: "inet", ...v4 }, TLVS);
      wire[12] = 0x20;
      return wire;
    })(),
    expected: { version: 2, command: "local", family: "unspec" },
  },
];

for (const split of [false, true]) {
  for (const { name, wire, expected } of VALID) {
    Deno.test(`proxy header: ${name}${split ? ", one byte per segment" : ""}`, async () => {
      const header = await parseOverLoopback(wire, PAYLOAD, split);
      assert.deepEqual(header, { ...expected, length: wire.length });
    });
  }
}

const MALFORMED: { name: string; wire: Uint8Array; error: typeof AccioError; message: RegExp }[] = [
  { name: "an Accio client's data", wire: bytes("hello"), error: ProtocolError, message: /did not begin/ },
  { name: "HTTP", wire: bytes("GET / HTTP/1.1\r\n\r\n"), error: ProtocolError, message: /did not begin/ },
  {
    name: "lowercase proxy",
    wire: bytes("proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n"),
    error: ProtocolError,
    message: /did not begin/,
  },
  {
    name: "v1 unknown protocol",
    wire: bytes("PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n"),
    error: ProtocolError,
    message: /unknown protocol/,
  },
  {
    name: "v1 over 107 bytes without CRLF",
    wire: bytes(`PROXY UNKNOWN ${"x".repeat(200)}\r\n`),
    error: ProtocolError,
    message: /no CRLF within 107 bytes/,
  },
  {
    name: "v1 ended by LF alone",
    wire: bytes("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n"),
    error: ProtocolError,
    message: /CR or LF out of place/,
  },
  {
    name: "v1 CR without LF",
    wire: bytes("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rX\n"),
    error: ProtocolError,
    message: /CR or LF out of place/,
  },
  {
    name: "v1 octet above 255",
    wire: bytes("PROXY TCP4 256.2.3.4 1.2.3.4 1 2\r\n"),
    error: ProtocolError,
    message: /malformed/,
  },
  {
    name: "v1 leading zero",
    wire: bytes("PROXY TCP4 01.2.3.4 1.2.3.4 1 2\r\n"),
    error: ProtocolError,
    message: /malformed/,
  },
  {
    name: "v1 TCP4 with IPv6",
    wire: bytes("PROXY TCP4 ::1 ::1 1 2\r\n"),
    error: ProtocolError,
    message: /malformed/,
  },
  {
    name: "v1 TCP6 with IPv4",
    wire: bytes("PROXY TCP6 1.2.3.4 ::1 1 2\r\n"),
    error: ProtocolError,
    message: /malformed/,
  },
  {
    name: "v1 two ::",
    wire: bytes("PROXY TCP6 1::2::3 ::1 1 2\r\n"),
    error: ProtocolError,
    message: /malformed/,
  },
  {
    name: "v1 nine groups",
    wire: bytes("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n"),
    error: ProtocolError,
    message: /malformed/,
  },
  {
    name: "v1 port 65536",
    wire: bytes("PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n"),
    error: ProtocolError,
    message: /malformed/,
  },
  {
    name: "v1 port 080",
    wire: bytes("PROXY TCP4 1.2.3.4 1.2.3.4 080 2\r\n"),
    error: ProtocolError,
    message: /malformed/,
  },
  {
    name: "v1 two spaces",
    wire: bytes("PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n"),
    error: ProtocolError,
    message: /malformed/,
  },
  {
    name: "v1 missing port",
    wire: bytes("PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n"),
    error: ProtocolError,
    message: /malformed/,
  },
  {
    name: "v1 TCP4 and nothing else",
    wire: bytes("PROXY TCP4\r\nrest"),
    error: ProtocolError,
    message: /malformed/,
  },
  { name: "v2 bad signature", wire: v2With(5, 0x0e), error: ProtocolError, message: /did not begin/ },
  { name: "v2 version 1", wire: v2With(12, 0x11), error: ProtocolError, message: /version 1, not 2/ },
  { name: "v2 command 2", wire: v2With(12, 0x22), error: ProtocolError, message: /unknown command 2/ },
  {
    name: "v2 family 0x41",
    wire: v2With(13, 0x41),
    error: ProtocolError,
    message: /unknown family and protocol 0x41/,
  },
  {
    name: "v2 IPv4 in 8 bytes",
    wire: concat(V2_SIGNATURE, Uint8Array.of(0x21, 0x11, 0, 8), new Uint8Array(8)),
    error: ProtocolError,
    message: /too short for its IPv4/,
  },
  {
    name: "v2 length beyond the cap",
    wire: concat(V2_SIGNATURE, Uint8Array.of(0x21, 0x11, 0x04, 0x01), new Uint8Array(1025)),
    error: ProtocolError,
    message: /announces 1025 bytes .* more than the 1024 allowed/,
  },
  {
    name: "v1 cut short",
    wire: bytes("PROXY TCP4 1.2.3.4 "),
    error: ConnectionError,
    message: /after 19 bytes/,
  },
  {
    name: "v2 cut in its addresses",
    wire: v2With(0, 0x0d).subarray(0, 20),
    error: ConnectionError,
    message: /after 20 bytes/,
  },
];

/** A valid v2 IPv4 header with byte `index` replaced by `value`. */
function v2With(index: number, value: number): Uint8Array {
  const wire = encodeProxyHeader({ version: 2, command: "proxy", family: "inet", ...v4 });
  wire[index] = value;
  return wire;
}

for (const { name, wire, error, message } of MALFORMED) {
  Deno.test(`proxy header refused: ${name}`, async () => {
    await using pair = await socketPair();
    await pair.client.write(wire);
    await pair.client.closeWrite();
    await assert.rejects(readProxyHeader(pair.server, { timeoutMs: 10_000 }), (thrown: Error) => {
      assert.ok(thrown instanceof error, `${thrown.name}: ${thrown.message}`);
      assert.match(thrown.message, message);
      return true;
    });
  });
}

Deno.test("proxy header: maxV2Length lowers the cap on the announced length", async () => {
  await using pair = await socketPair();
  await pair.client.write(encodeProxyHeader({ version: 2, command: "proxy", family: "inet6", ...v6 }));
  await assert.rejects(
    readProxyHeader(pair.server, { timeoutMs: 10_000, maxV2Length: 35 }),
    /announces 36 bytes .* more than the 35 allowed/,
  );
});

Deno.test("proxy header: nothing sent times out, and closes the socket", async () => {
  await using pair = await socketPair();
  const started = performance.now();
  await assert.rejects(
    readProxyHeader(pair.server, { timeoutMs: 300 }),
    (thrown: Error) => thrown instanceof TimeoutError && /within 0.3 s/.test(thrown.message),
  );
  assert.ok(performance.now() - started < 5_000);
  assert.equal(await readToEnd(pair.client, 5_000).then((r) => r instanceof Uint8Array), true);
});

Deno.test("proxy header: one deadline for the whole header, however slowly it trickles", async () => {
  await using pair = await socketPair();
  const wire = bytes("PROXY TCP4 192.0.2.7 198.51.100.1 40000 5000\r\n");
  // Each byte comes well within the timeout, the whole header not: a per-read deadline would wait ~2.3 s.
  const sending = trickle(pair.client, wire, 50).catch(() => {});
  const started = performance.now();
  await assert.rejects(readProxyHeader(pair.server, { timeoutMs: 600 }), TimeoutError);
  assert.ok(performance.now() - started < 2_000, "the deadline is total, not per read");
  await sending;
});

Deno.test("proxy header: a close before any byte is null, not an error", async () => {
  await using pair = await socketPair();
  pair.client.close();
  assert.equal(await readProxyHeader(pair.server, { timeoutMs: 10_000 }), null);
});

Deno.test("proxy header: a reset before any byte is null too", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const socket = net.connect({ host: "127.0.0.1", port: listener.addr.port });
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  const server = await listener.accept();
  socket.resetAndDestroy();
  await delay(50);
  try {
    assert.equal(await readProxyHeader(server, { timeoutMs: 10_000 }), null);
  } finally {
    server.close();
  }
});

Deno.test("encodeProxyHeader: v1 has no LOCAL, and addresses must match the family", () => {
  assert.throws(() => encodeProxyHeader({ version: 1, command: "local", family: "unspec" }), ProtocolError);
  assert.throws(
    () => encodeProxyHeader({ version: 2, command: "proxy", family: "inet", ...v6 }),
    ProtocolError,
  );
  assert.deepEqual(
    encodeProxyHeader({ version: 1, command: "proxy", family: "inet", ...v4 }),
    bytes("PROXY TCP4 192.0.2.7 198.51.100.1 40000 5000\r\n"),
  );
});

Deno.test("clientAddress: the header's source, formatted like the server's log; else the peer", () => {
  const peer: Deno.NetAddr = { transport: "tcp", hostname: "127.0.0.1", port: 5000 };
  const header = (source?: { hostname: string; port: number }): ProxyHeader => ({
    version: 2,
    command: "proxy",
    family: "inet6",
    source,
    length: 52,
  });
  assert.equal(clientAddress(header({ hostname: "2001:db8::7", port: 1 }), peer), "[2001:db8::7]:1");
  assert.equal(clientAddress(header({ hostname: "::ffff:192.0.2.7", port: 2 }), peer), "192.0.2.7:2");
  assert.equal(clientAddress(header(), peer), "127.0.0.1:5000");
});

// ---- fuzz: seeded, bounded, over an in-memory socket that counts what it hands out ----

/** Hands out `data` in the given segment sizes, one segment (or less) per read; counts bytes taken. */
class MemorySocket {
  taken = 0;
  readonly #data: Uint8Array;
  readonly #segments: number[];

  constructor(data: Uint8Array, segments: number[]) {
    this.#data = data;
    this.#segments = [...segments];
  }

  read(buffer: Uint8Array): Promise<number | null> {
    if (this.taken >= this.#data.length) return Promise.resolve(null);
    const segment = Math.max(1, this.#segments.shift() ?? this.#data.length);
    const n = Math.min(buffer.length, segment, this.#data.length - this.taken);
    buffer.set(this.#data.subarray(this.taken, this.taken + n));
    // What the parser did not take of this segment stays first in line, as in a kernel buffer.
    if (n < segment) this.#segments.unshift(segment - n);
    this.taken += n;
    return Promise.resolve(n);
  }

  write(data: Uint8Array): Promise<number> {
    return Promise.resolve(data.length);
  }

  close(): void {}
}

/** mulberry32: small, seeded, reproducible. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pick = (rand: () => number, n: number): number => Math.floor(rand() * n);
const randomBytes = (rand: () => number, n: number): Uint8Array =>
  Uint8Array.from({ length: n }, () => pick(rand, 256));
const segmentsFor = (rand: () => number, n: number): number[] =>
  Array.from({ length: n }, () => 1 + pick(rand, 20));

/** A random address, written in the form the fuzz chooses; returns its canonical form too. */
function randomAddress(rand: () => number, family: "inet" | "inet6"): { written: string; canonical: string } {
  if (family === "inet") {
    const quad = randomBytes(rand, 4).join(".");
    return { written: quad, canonical: quad };
  }
  // Runs of zero groups, so that the compression rule is exercised.
  const groups = Array.from({ length: 8 }, () => rand() < 0.4 ? 0 : pick(rand, 0x10000));
  const written = groups.map((g) => g.toString(16).padStart(rand() < 0.5 ? 4 : 1, "0")).join(":");
  const canonical = new URL(`http://[${written}]/`).hostname.slice(1, -1);
  const mapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
  return mapped ? randomAddress(rand, family) : { written, canonical };
}

function randomHeader(rand: () => number): { fields: ProxyHeaderFields; expected: ProxyHeaderFields } {
  const version = rand() < 0.5 ? 1 : 2;
  const family = (["inet", "inet6", "unspec"] as const)[pick(rand, 3)];
  const command = version === 2 && rand() < 0.2 ? "local" : "proxy";
  if (family === "unspec" || command === "local") {
    return { fields: { version, command, family }, expected: { version, command, family: "unspec" } };
  }
  const [source, destination] = [randomAddress(rand, family), randomAddress(rand, family)];
  const [sourcePort, destinationPort] = [pick(rand, 65536), pick(rand, 65536)];
  const withAddresses = (form: "written" | "canonical"): ProxyHeaderFields => ({
    version,
    command,
    family,
    source: { hostname: source[form], port: sourcePort },
    destination: { hostname: destination[form], port: destinationPort },
  });
  return { fields: withAddresses("written"), expected: withAddresses("canonical") };
}

const SEED = Number(Deno.env.get("ACCIO_FUZZ_SEED") ?? 20_240_611);

Deno.test(`proxy header fuzz: random valid headers in random segments (seed ${SEED})`, async () => {
  const rand = random(SEED);
  for (let i = 0; i < 2_000; i++) {
    const { fields, expected } = randomHeader(rand);
    const tlvs = fields.version === 2 && rand() < 0.3 ? randomBytes(rand, pick(rand, 40)) : undefined;
    const wire = encodeProxyHeader(fields, tlvs);
    const socket = new MemorySocket(
      concat(wire, randomBytes(rand, 1 + pick(rand, 30))),
      segmentsFor(rand, 200),
    );
    const header = await readProxyHeader(socket, { timeoutMs: 10_000 });
    assert.deepEqual(header, { ...expected, length: wire.length }, `iteration ${i}`);
    assert.equal(socket.taken, wire.length, `iteration ${i}: read past the header`);
  }
});

/** Mutates a valid header: flip, insert, delete or overwrite bytes, or cut it short. */
function mutate(rand: () => number, wire: Uint8Array): Uint8Array {
  const out = [...wire];
  for (let edits = 1 + pick(rand, 3); edits > 0; edits--) {
    const at = pick(rand, out.length + 1);
    const byte = rand() < 0.5 ? pick(rand, 256) : [0x0d, 0x0a, 0x20, 0x3a, 0x2e, 0x30][pick(rand, 6)];
    const kind = pick(rand, 4);
    if (kind === 0) out[at] = byte;
    else if (kind === 1) out.splice(at, 0, byte);
    else if (kind === 2) out.splice(at, 1);
    else out.length = Math.min(out.length, at);
  }
  return Uint8Array.from(out.filter((b) => b !== undefined));
}

Deno.test(`proxy header fuzz: mutated and random input, typed errors only (seed ${SEED})`, async () => {
  const rand = random(SEED + 1);
  const outcomes = { parsed: 0, refused: 0, closed: 0 };
  for (let i = 0; i < 3_000; i++) {
    const input = rand() < 0.1 ? randomBytes(rand, pick(rand, 120)) : mutate(
      rand,
      encodeProxyHeader(randomHeader(rand).fields, rand() < 0.3 ? randomBytes(rand, 9) : undefined),
    );
    const trailer = bytes("TRAILER");
    const socket = new MemorySocket(concat(input, trailer), segmentsFor(rand, 200));
    try {
      const header = await readProxyHeader(socket, { timeoutMs: 10_000 });
      if (header === null) {
        outcomes.closed++;
        assert.equal(input.length, 0, `iteration ${i}: null only for an empty stream`);
        continue;
      }
      outcomes.parsed++;
      assert.equal(socket.taken, header.length, `iteration ${i}: read past the header`);
    } catch (error) {
      outcomes.refused++;
      const typed = error instanceof ProtocolError || error instanceof ConnectionError;
      assert.ok(typed, `iteration ${i}: untyped ${error}`);
    }
  }
  // The mix is part of the test: a fuzz that only ever hits one outcome proves little.
  assert.ok(outcomes.parsed > 100 && outcomes.refused > 1_000, JSON.stringify(outcomes));
});
