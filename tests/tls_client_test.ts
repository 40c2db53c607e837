/**
 * The client's TLS socket (lib/tls_client.ts) against a real `Deno.listenTls`
 * server on loopback: verification failures say what is wrong and happen before
 * any byte of the upload; the end of the connection is read as the TCP socket
 * saw it (a reset is an error, as in plaintext); a reset sent by the client
 * reaches the server as a reset.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { ConnectionError, FileError } from "../lib/errors.ts";
import { clientHandshake, GREETING } from "../lib/handshake.ts";
import { readExactly, writeAll } from "../lib/socket_io.ts";
import { connectTls, loadCaFile, pemCertificates, systemRoots } from "../lib/tls_client.ts";
import { bytes, text } from "./support/encoding.ts";
import { tempDir } from "./support/files.ts";
import { delay } from "./support/wait.ts";
import { makeTestCerts, skipWithoutOpenssl, type TestCerts } from "./support/certs.ts";

const ignore = await skipWithoutOpenssl("the TLS client tests");
let certs: TestCerts | undefined;
const getCerts = async () => certs ??= await makeTestCerts();

/** A `Deno.listenTls` server on 127.0.0.1 with `which` certificate. */
async function tlsListener(which: "server" | "expired" | "otherName" = "server"): Promise<Deno.TlsListener> {
  const files = (await getCerts())[which];
  return Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: await Deno.readTextFile(files.cert),
    key: await Deno.readTextFile(files.key),
  });
}

/** What the server's side of one connection saw: handshake outcome, bytes, how it ended. */
async function serveOnce(listener: Deno.TlsListener, reply?: Uint8Array): Promise<string> {
  const conn = await listener.accept();
  try {
    await conn.handshake();
  } catch (error) {
    conn.close();
    return `handshake failed: ${(error as Error).message}`;
  }
  const buffer = new Uint8Array(64 * 1024);
  let received = 0;
  try {
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      received += n;
    }
  } catch (error) {
    conn.close();
    return `${(error as Error).name} after ${received} bytes`;
  }
  if (reply) await conn.write(reply);
  conn.close();
  return `clean end after ${received} bytes`;
}

async function connectError(port: number, ca: string[], serverName?: string): Promise<ConnectionError> {
  const attempt = connectTls("127.0.0.1", port, { ca, caSource: "ca.pem", serverName });
  const error = await attempt.connected.then(
    (socket) => {
      socket.close();
      throw new Error("connected");
    },
    (error) => error,
  );
  assert.ok(error instanceof ConnectionError, String(error));
  return error;
}

Deno.test({ name: "tls client: upload, half-close, receipt, clean end", ignore }, async () => {
  using listener = await tlsListener();
  const served = serveOnce(listener, bytes("ok\r\n"));
  const socket = await connectTls("127.0.0.1", listener.addr.port, { ca: [(await getCerts()).caPem] })
    .connected;
  await writeAll(socket, new Uint8Array(300_000).fill(7), 5_000);
  await socket.closeWrite();
  assert.equal(text(await readExactly(socket, 4, 5_000, "the receipt")), "ok\r\n");
  assert.equal(await socket.read(new Uint8Array(10)), null);
  socket.close();
  assert.equal(await served, "clean end after 300000 bytes");
});

Deno.test({ name: "tls client: the Accio handshakes run unchanged inside TLS", ignore }, async () => {
  using listener = await tlsListener();
  const served = (async () => {
    const conn = await listener.accept();
    await conn.write(GREETING);
    const confirm = new Uint8Array(15);
    let got = 0;
    while (got < 15) got += (await conn.read(confirm.subarray(got)))!;
    await conn.write(GREETING);
    const rest = new Uint8Array(1024);
    let all = "";
    for (;;) {
      const n = await conn.read(rest);
      if (n === null) break;
      all += text(rest.subarray(0, n));
    }
    conn.close();
    return text(confirm) + all;
  })();
  const socket = await connectTls("localhost", listener.addr.port, { ca: [(await getCerts()).caPem] })
    .connected;
  await clientHandshake(socket, { mode: "double", timeoutMs: 5_000, headerLines: ["length: 4"] });
  await writeAll(socket, bytes("data"), 5_000);
  await socket.closeWrite();
  assert.equal(await socket.read(new Uint8Array(10)), null);
  socket.close();
  assert.equal(await served, "confirm-accio\r\nconfirm-accio-again\r\nlength: 4\r\n\r\ndata");
});

Deno.test(
  { name: "tls client: an unknown CA fails in the handshake, before any byte of the upload", ignore },
  async () => {
    using listener = await tlsListener();
    const served = serveOnce(listener);
    const error = await connectError(listener.addr.port, [
      await Deno.readTextFile((await getCerts()).otherCa.cert),
    ]);
    assert.match(
      error.message,
      /^TLS handshake failed: the server's certificate is not trusted: not signed by a CA in ca\.pem/,
    );
    // Over the client's own TCP socket, Deno's node:tls sends no alert: the server sees the connection end.
    assert.match(await served, /^handshake failed: /);
  },
);

Deno.test({ name: "tls client: an expired certificate is refused", ignore }, async () => {
  using listener = await tlsListener("expired");
  const served = serveOnce(listener);
  const error = await connectError(listener.addr.port, [(await getCerts()).caPem]);
  assert.match(error.message, /not trusted: .*expired/);
  assert.match(await served, /^handshake failed: /);
});

Deno.test(
  { name: "tls client: a certificate for another name is refused, naming both", ignore },
  async () => {
    using listener = await tlsListener("otherName");
    const served = serveOnce(listener);
    const error = await connectError(listener.addr.port, [(await getCerts()).caPem], "localhost");
    assert.match(
      error.message,
      /not valid for "localhost" \(it names DNS:other\.example\); --tls-name sets the name/,
    );
    await served;
    // The same certificate is fine when the client is told the name to expect.
    const served2 = serveOnce(listener);
    const socket = await connectTls("127.0.0.1", listener.addr.port, {
      ca: [(await getCerts()).caPem],
      serverName: "other.example",
    }).connected;
    await socket.closeWrite();
    assert.equal(await socket.read(new Uint8Array(1)), null);
    socket.close();
    assert.equal(await served2, "clean end after 0 bytes");
  },
);

Deno.test(
  { name: "tls client: an IP address is checked against the certificate's IP names", ignore },
  async () => {
    using listener = await tlsListener();
    const served = serveOnce(listener);
    const socket = await connectTls("127.0.0.1", listener.addr.port, {
      ca: [(await getCerts()).caPem],
    })
      .connected;
    await socket.closeWrite();
    assert.equal(await socket.read(new Uint8Array(1)), null);
    socket.close();
    assert.equal(await served, "clean end after 0 bytes");
  },
);

Deno.test(
  { name: "tls client: a plaintext Accio server (accio\\r\\n) gets one clear error", ignore },
  async () => {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const served = (async () => {
      const conn = await listener.accept();
      await conn.write(GREETING);
      const buffer = new Uint8Array(4096);
      let received = 0;
      try {
        for (let n; (n = await conn.read(buffer)) !== null;) received += n;
      } catch (error) {
        conn.close();
        return `${(error as Error).name} after ${received > 0 ? "some" : "no"} bytes`;
      }
      conn.close();
      return `clean end after ${received} bytes`;
    })();
    const error = await connectError(listener.addr.port, [(await getCerts()).caPem]);
    assert.equal(
      error.message,
      "TLS handshake failed: the server does not speak TLS (a plaintext Accio server? then leave out --tls)",
    );
    // The plaintext server took the TLS hello for file bytes; the reset makes that upload ERROR.
    assert.equal(await served, "ConnectionReset after some bytes");
  },
);

Deno.test({ name: "tls client: a server that closes during the handshake", ignore }, async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = listener.accept().then((conn) => conn.close());
  const error = await connectError(listener.addr.port, [(await getCerts()).caPem]);
  assert.match(error.message, /closed the connection during the TLS handshake/);
  await served;
});

Deno.test(
  { name: "tls client: a refused port is the runtime's ConnectionRefused, as for TCP", ignore },
  async () => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = listener.addr.port;
    listener.close();
    const error = await connectTls("127.0.0.1", port, { ca: [(await getCerts()).caPem] }).connected
      .then(
        () => undefined,
        (error) => error,
      );
    assert.ok(error instanceof Deno.errors.ConnectionRefused, String(error));
  },
);

Deno.test(
  { name: "tls client: reset() reaches the server as a TCP reset, not as an end", ignore },
  async () => {
    using listener = await tlsListener();
    const served = serveOnce(listener);
    const socket = await connectTls("127.0.0.1", listener.addr.port, {
      ca: [(await getCerts()).caPem],
    })
      .connected;
    await writeAll(socket, new Uint8Array(10_000), 5_000);
    await delay(100);
    socket.reset();
    assert.equal(await served, "ConnectionReset after 10000 bytes");
  },
);

Deno.test({ name: "tls client: close() before closeWrite() is a reset too", ignore }, async () => {
  using listener = await tlsListener();
  const served = serveOnce(listener);
  const socket = await connectTls("127.0.0.1", listener.addr.port, { ca: [(await getCerts()).caPem] })
    .connected;
  await writeAll(socket, bytes("partial"), 5_000);
  await delay(100);
  socket.close();
  assert.equal(await served, "ConnectionReset after 7 bytes");
});

/**
 * A TCP relay in front of `upstream` that, once the client has half-closed,
 * forwards nothing more and resets the client's connection after `ms`.
 */
function resettingRelay(upstream: number, ms: number): Promise<{ port: number; server: net.Server }> {
  return new Promise((resolve) => {
    const server = net.createServer({ allowHalfOpen: true }, (down) => {
      const up = net.connect({ host: "127.0.0.1", port: upstream, allowHalfOpen: true });
      let clientDone = false;
      up.on("error", () => {});
      down.on("error", () => {});
      down.on("data", (chunk) => up.write(chunk));
      up.on("data", (chunk) => clientDone || down.write(chunk));
      down.on("end", () => {
        clientDone = true;
        up.end();
        setTimeout(() => {
          down.resetAndDestroy();
          up.destroy();
        }, ms);
      });
    });
    server.listen(
      0,
      "127.0.0.1",
      () => resolve({ port: (server.address() as net.AddressInfo).port, server }),
    );
  });
}

Deno.test(
  { name: "tls client: a reset after the half-close is an error, not a receipt", ignore },
  async () => {
    using listener = await tlsListener();
    const served = serveOnce(listener);
    const relay = await resettingRelay(listener.addr.port, 200);
    const socket = await connectTls("127.0.0.1", relay.port, { ca: [(await getCerts()).caPem] })
      .connected;
    await writeAll(socket, new Uint8Array(20_000), 5_000);
    await socket.closeWrite();
    const outcome = await socket.read(new Uint8Array(10)).then(String, (error) => error.name);
    socket.close();
    await served;
    relay.server.close();
    assert.equal(outcome, "ConnectionReset");
  },
);

Deno.test({ name: "tls client: writes stall (bounded) when the server stops reading", ignore }, async () => {
  using listener = await tlsListener();
  const accepted = listener.accept().then(async (conn) => {
    await conn.handshake();
    return conn;
  });
  const socket = await connectTls("127.0.0.1", listener.addr.port, { ca: [(await getCerts()).caPem] })
    .connected;
  const conn = await accepted;
  const chunk = new Uint8Array(256 * 1024);
  let written = 0;
  let stalled = false;
  while (!stalled && written < 512 * 1024 * 1024) {
    const n = await Promise.race([socket.write(chunk), delay(1_000).then(() => 0)]);
    if (n === 0) stalled = true;
    written += n;
  }
  assert.ok(stalled, `wrote ${written} bytes to a server that reads nothing`);
  assert.ok(written < 64 * 1024 * 1024, `buffered ${written} bytes before stalling`);
  socket.reset();
  conn.close();
});

Deno.test({ name: "tls client: --ca files and the system roots", ignore }, async () => {
  const dir = await tempDir();
  assert.equal((await loadCaFile((await getCerts()).ca.cert)).certificates.length, 1);
  await Deno.writeTextFile(`${dir}/empty.pem`, "no certificates here\n");
  await assert.rejects(loadCaFile(`${dir}/empty.pem`), FileError, "holds no PEM certificate");
  await assert.rejects(loadCaFile(`${dir}/missing.pem`), FileError, "no such file");
  const roots = await systemRoots();
  assert.ok(roots.certificates.length > 0, roots.source);
  assert.equal(pemCertificates((await getCerts()).caPem + (await getCerts()).caPem).length, 2);
});
