/**
 * A real HAProxy (tests/support/haproxy.ts) in front of raw loopback servers
 * written in the test: what reaches a gateway behind it is a valid PROXY
 * protocol header, parsed by lib/proxy_protocol.ts, carrying the client's real
 * address, with the data untouched behind it; health checks come as v2 LOCAL
 * headers with nothing after them; and a gateway's reset reaches a client
 * that already half-closed as a clean close.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { type ProxyHeader, readProxyHeader } from "../lib/proxy_protocol.ts";
import { bytes, text } from "./support/encoding.ts";
import { tempDir } from "./support/files.ts";
import { waitFor } from "./support/wait.ts";
import { readToEnd } from "./support/wire.ts";
import { ensureHaproxy, skipWithoutHaproxy, startHaproxy } from "./support/haproxy.ts";

const ignore = skipWithoutHaproxy(await ensureHaproxy(), "tests/haproxy_smoke_test.ts");

/** What the raw backend saw on one connection. */
interface Seen {
  header: ProxyHeader | null | Error;
  rest: Uint8Array | "reset";
}

/** A raw backend: its TCP port (0 on a Unix socket), the connections it saw, the accepts that failed. */
interface RawBackend extends AsyncDisposable {
  port: number;
  seen: Seen[];
  /** Accepts that failed with NotConnected: the peer was gone before Deno had its address. */
  acceptFailures: number;
}

/** A loopback server (TCP, or a Unix socket at `path`) that reads a PROXY header, then all after it. */
function rawBackend(path?: string): RawBackend {
  const listener = path === undefined
    ? Deno.listen({ hostname: "127.0.0.1", port: 0 })
    : Deno.listen({ transport: "unix", path });
  const handlers: Promise<void>[] = [];
  let open = true;
  const backend: RawBackend = {
    port: listener.addr.transport === "tcp" ? listener.addr.port : 0,
    seen: [],
    acceptFailures: 0,
    [Symbol.asyncDispose]: async () => {
      open = false;
      listener.close();
      await accepting;
      await Promise.all(handlers);
    },
  };
  const serve = async (conn: Deno.Conn) => {
    const header = await readProxyHeader(conn, { timeoutMs: 5_000 }).catch((error: Error) => error);
    const rest = header instanceof Error ? new Uint8Array() : await readToEnd(conn, 15_000);
    backend.seen.push({ header, rest });
    conn.close();
  };
  const accepting = (async () => {
    while (open) {
      try {
        handlers.push(serve(await listener.accept()).catch(() => {}));
      } catch (error) {
        if (error instanceof Deno.errors.NotConnected) backend.acceptFailures++;
        else open = false; // the listener was closed
      }
    }
  })();
  return backend;
}

/**
 * A gateway that dies mid-upload, as HAProxy sees it: once more than a v2
 * IPv4 header (28 bytes) has arrived, it resets the connection (node:net's
 * resetAndDestroy: Deno's own close sends a FIN even with input unread).
 */
async function resettingBackend(): Promise<{ port: number; resets: number } & AsyncDisposable> {
  const server = net.createServer((socket) => {
    let received = 0;
    socket.on("error", () => {});
    socket.on("data", (chunk: Uint8Array) => {
      received += chunk.length;
      if (received > 28 && !socket.destroyed) {
        backend.resets++;
        socket.resetAndDestroy();
      }
    });
  });
  server.on("error", () => {});
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const backend = {
    port: (server.address() as net.AddressInfo).port,
    resets: 0,
    [Symbol.asyncDispose]: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  return backend;
}

/** Sends `data` through the balancer, half-closes, and reads to the end. */
async function upload(port: number, data: Uint8Array, hostname = "127.0.0.1") {
  const conn = await Deno.connect({ hostname, port });
  const local = conn.localAddr;
  await conn.write(data);
  await conn.closeWrite();
  const answer = await readToEnd(conn, 15_000);
  conn.close();
  return { local, answer };
}

/** The one relayed (PROXY command) connection from the client at `port`, once it has been seen. */
async function relayed(
  backend: RawBackend,
  port: number,
): Promise<{ header: ProxyHeader; rest: Uint8Array }> {
  const from = () =>
    backend.seen.filter((s) =>
      !(s.header instanceof Error) && s.header?.command === "proxy" && s.header.source?.port === port
    );
  await waitFor(() => from().length > 0, 10_000, "the relayed connection");
  assert.equal(from().length, 1);
  const [{ header, rest }] = from();
  assert.ok(rest instanceof Uint8Array, "the relayed connection ended cleanly");
  return { header: header as ProxyHeader, rest };
}

/** A health check's connection: a v2 LOCAL header, then nothing but the end (HAProxy resets it). */
function assertHealthCheck({ header, rest }: Seen): void {
  assert.ok(header && !(header instanceof Error), `a check sent a valid header: ${header}`);
  assert.equal(header.command, "local");
  assert.equal(header.version, 2);
  assert.ok(rest === "reset" || rest.length === 0, "no data after a check's header");
}

Deno.test({
  name: "HAProxy sends a v2 PROXY header with the client's real loopback address, data untouched behind it",
  ignore,
  fn: async () => {
    await using backend = rawBackend();
    const haproxy = await startHaproxy({ backends: [backend.port] });
    try {
      await haproxy.waitForServers("UP");
      const { local } = await upload(haproxy.port, bytes("hello through HAProxy"));
      const { header, rest } = await relayed(backend, local.port);
      assert.equal(header.version, 2);
      assert.equal(header.family, "inet");
      assert.deepEqual(header.source, { hostname: "127.0.0.1", port: local.port });
      assert.deepEqual(header.destination, { hostname: "127.0.0.1", port: haproxy.port });
      assert.equal(text(rest), "hello through HAProxy");
      await waitFor(() => haproxy.log().includes(`127.0.0.1:${local.port} `), 5_000, "HAProxy's log line");
    } finally {
      await haproxy.stop();
    }
    // Stopped by PID: nothing listens on the frontend any more.
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port: haproxy.port }),
      Deno.errors.ConnectionRefused,
    );
  },
});

Deno.test({
  name: "HAProxy: an IPv6 client's address arrives as an inet6 source",
  ignore,
  fn: async () => {
    await using backend = rawBackend();
    await using haproxy = await startHaproxy({ backends: [backend.port], ipv6: true });
    await haproxy.waitForServers("UP");
    const { local } = await upload(haproxy.port, bytes("six"), "::1");
    const { header, rest } = await relayed(backend, local.port);
    assert.equal(header.family, "inet6");
    assert.deepEqual(header.source, { hostname: "::1", port: local.port });
    assert.equal(text(rest), "six");
  },
});

Deno.test({
  name: "HAProxy: v1 (send-proxy) also parses, with the client's address",
  ignore,
  fn: async () => {
    await using backend = rawBackend();
    await using haproxy = await startHaproxy({ backends: [backend.port], sendProxy: "v1" });
    await haproxy.waitForServers("UP");
    const { local } = await upload(haproxy.port, bytes("one"));
    const { header, rest } = await relayed(backend, local.port);
    assert.equal(header.version, 1);
    assert.deepEqual(header.source, { hostname: "127.0.0.1", port: local.port });
    assert.equal(text(rest), "one");
    // v1 has no LOCAL: HAProxy's v1 checks are ordinary PROXY lines with its own addresses, which a gateway
    // cannot tell from an empty upload; that is why deploy/haproxy.cfg uses send-proxy-v2 with its checks.
  },
});

Deno.test({
  name: "HAProxy: health checks arrive as v2 LOCAL headers with nothing after them",
  ignore,
  fn: async () => {
    // Over a Unix socket every check reaches the backend, so each one is seen and parsed.
    const path = `${await tempDir()}/gateway.sock`;
    await using backend = rawBackend(path);
    await using _haproxy = await startHaproxy({ backends: [path], checkIntervalMs: 100 });
    await waitFor(() => backend.seen.length >= 3, 10_000, "three health checks");
    backend.seen.forEach(assertHealthCheck);
  },
});

Deno.test({
  name: "HAProxy: TCP health checks are LOCAL headers, or gone before Deno's accept returns",
  ignore,
  fn: async () => {
    // HAProxy resets a check right after its header, usually before Deno has the peer's address, and
    // Deno's accept() then rejects with NotConnected: a gateway must take that as a check, not a failure.
    await using backend = rawBackend();
    await using _haproxy = await startHaproxy({ backends: [backend.port], checkIntervalMs: 50 });
    await waitFor(() => backend.seen.length + backend.acceptFailures >= 10, 10_000, "ten health checks");
    backend.seen.forEach(assertHealthCheck);
  },
});

Deno.test({
  name:
    "HAProxy: a gateway's reset fails a client still sending, and reaches a half-closed one as a clean close",
  ignore,
  fn: async () => {
    // Why a --proxy-protocol gateway must send its `error` line before closing: HAProxy 2.6 turns the
    // gateway's RST into a FIN towards the client, so a client that already half-closed sees an ordinary
    // end of stream, nothing to tell it from success.
    await using backend = await resettingBackend();
    await using haproxy = await startHaproxy({ backends: [backend.port] });
    await haproxy.waitForServers("UP");
    const small = await upload(haproxy.port, bytes("tiny"));
    assert.equal(backend.resets, 1, "the gateway reset the upload");
    assert.deepEqual(small.answer, new Uint8Array(), "half-closed client: a clean, empty close");
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: haproxy.port });
    let failed = false;
    try {
      for (let i = 0; i < 200 && !failed; i++) {
        await conn.write(new Uint8Array(16_384));
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    } catch {
      failed = true;
    } finally {
      conn.close();
    }
    assert.equal(backend.resets, 2);
    assert.ok(failed, "a client still sending gets an error once the gateway reset");
  },
});
