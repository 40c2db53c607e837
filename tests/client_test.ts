/** `client <HOST> <PORT> <FILE>` checked against fake servers over loopback TCP. */
import assert from "node:assert/strict";
import { bytes, text } from "./support/encoding.ts";
import { contentFile as fileWith, makeFile, tempDir } from "./support/files.ts";
import { runClient, spawnPeer, spawnProgram, startServer } from "./support/process.ts";
import { canUnshareMounts, inPrivateMounts } from "./support/system.ts";
import { delay, waitFor } from "./support/wait.ts";
import {
  freePort,
  readToEnd,
  readWithTimeout,
  recvExactly,
  sendAll,
  withFakeServer,
} from "./support/wire.ts";

Deno.test("client waits for accio\\r\\n sent one byte per segment, and sends nothing before it", async () => {
  const path = await fileWith("payload after the whole command");
  const received = await withFakeServer(async (conn) => {
    await conn.setNoDelay(true);
    const greeting = bytes("accio\r\n");
    for (let i = 0; i < greeting.length; i++) {
      await sendAll(conn, greeting.subarray(i, i + 1));
      if (i < greeting.length - 1) {
        const early = await readWithTimeout(conn, new Uint8Array(64), 150);
        assert.equal(early, "timeout", `client sent data after only ${i + 1} bytes of accio\\r\\n`);
      }
    }
    return await readToEnd(conn);
  }, async (port) => {
    const result = await runClient(["127.0.0.1", String(port), path]);
    assert.equal(result.code, 0, result.stderr);
  });
  assert.notEqual(received, "reset");
  assert.equal(text(received as Uint8Array), "payload after the whole command");
});

Deno.test("a default client sends exactly the file's bytes: no header, no trailer", async () => {
  const content = new Uint8Array(300_000).map((_, i) => (i * 7) % 256);
  const path = await fileWith(content);
  const received = await withFakeServer(async (conn) => {
    await sendAll(conn, bytes("accio\r\n"));
    return await readToEnd(conn);
  }, async (port) => {
    const result = await runClient(["127.0.0.1", String(port), path]);
    assert.equal(result.code, 0, result.stderr);
  });
  assert.deepEqual(received, content);
});

Deno.test("client --handshake double waits for each accio and sends the header, then the file", async () => {
  const path = await fileWith("double file");
  const received = await withFakeServer(async (conn) => {
    await sendAll(conn, bytes("accio\r\n"));
    assert.equal(text(await recvExactly(conn, 15)), "confirm-accio\r\n");
    assert.equal(
      await readWithTimeout(conn, new Uint8Array(64), 200),
      "timeout",
      "sent before the 2nd accio",
    );
    await sendAll(conn, bytes("acc"));
    await delay(50);
    await sendAll(conn, bytes("io\r\n"));
    return await readToEnd(conn);
  }, async (port) => {
    const result = await runClient(["--handshake", "double", "127.0.0.1", String(port), path]);
    assert.equal(result.code, 0, result.stderr);
  });
  assert.equal(text(received as Uint8Array), "confirm-accio-again\r\n\r\ndouble file");
});

Deno.test("client exits 0 only after the server closed the connection", async () => {
  const path = await fileWith("x");
  let closedAt = 0;
  await withFakeServer(async (conn) => {
    await sendAll(conn, bytes("accio\r\n"));
    await readToEnd(conn);
    await delay(700);
    closedAt = Date.now();
    conn.close();
  }, async (port) => {
    const result = await runClient(["127.0.0.1", String(port), path]);
    assert.equal(result.code, 0, result.stderr);
    assert.ok(Date.now() >= closedAt && closedAt > 0, "client exited before the server's close");
  });
});

Deno.test("client: no accio within the timeout is an error", async () => {
  const path = await fileWith("x");
  await withFakeServer(async (conn) => {
    await sendAll(conn, bytes("acci")); // never completes
    await readToEnd(conn, 10_000).catch(() => {});
  }, async (port) => {
    const started = Date.now();
    const result = await runClient(["--timeout", "1", "127.0.0.1", String(port), path]);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /^ERROR: only 4 of the 7 bytes of the accio\\r\\n arrived within 1 s$/m);
    assert.ok(Date.now() - started < 5_000);
  });
});

Deno.test("client: the default greeting timeout is 10 seconds", async () => {
  const path = await fileWith("x");
  await withFakeServer(async (conn) => {
    await readToEnd(conn, 20_000).catch(() => {});
  }, async (port) => {
    const started = Date.now();
    const result = await runClient(["127.0.0.1", String(port), path], 20_000);
    const took = Date.now() - started;
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /^ERROR: no data for 10 s/m);
    assert.ok(took >= 9_500 && took < 13_000, `gave up after ${took} ms`);
  });
});

Deno.test("client: a wrong command instead of accio is an error", async () => {
  const path = await fileWith("x");
  await withFakeServer(async (conn) => {
    await sendAll(conn, bytes("hello\r\n"));
    return await readToEnd(conn);
  }, async (port) => {
    const result = await runClient(["127.0.0.1", String(port), path]);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /^ERROR: server sent "hello\\r\\n" instead of "accio\\r\\n"/m);
  });
});

Deno.test("client: a server that closes before accio is an error", async () => {
  const path = await fileWith("x");
  await withFakeServer(async (conn) => {
    await sendAll(conn, bytes("acc"));
    conn.close();
  }, async (port) => {
    const result = await runClient(["127.0.0.1", String(port), path]);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /^ERROR: connection closed by peer after 3 of the 7 bytes/m);
  });
});

Deno.test("client: a server that resets mid-upload is an error", async () => {
  const work = await tempDir();
  const path = await makeFile(work, "big.bin", 32 * 1024 * 1024);
  await withFakeServer(async (conn) => {
    await sendAll(conn, bytes("accio\r\n"));
    await recvExactly(conn, 100_000);
    conn.close(); // unread data in the receive queue: the kernel sends a reset
  }, async (port) => {
    const result = await runClient(["127.0.0.1", String(port), path]);
    assert.notEqual(result.code, 0);
    // Which the client sees first, the reset on its write or the end of its read, is the kernel's timing.
    assert.match(
      result.stderr,
      /^ERROR: connection ((reset|closed) by peer while sending the file|closed by the server before the whole file was sent)/m,
    );
  });
  await Deno.remove(work, { recursive: true });
});

Deno.test("client: a server that takes the data but never closes gives no receipt: error", async () => {
  const path = await fileWith("data");
  await withFakeServer(async (conn) => {
    await sendAll(conn, bytes("accio\r\n"));
    await readToEnd(conn);
    await delay(3_000);
  }, async (port) => {
    const result = await runClient(["--timeout", "1", "127.0.0.1", String(port), path]);
    assert.notEqual(result.code, 0);
    assert.match(
      result.stderr,
      /^ERROR: no data for 1 s while waiting for the server to confirm by closing/m,
    );
  });
});

for (
  const [label, options, lowMs, highMs] of [
    ["--timeout 1", ["--timeout", "1"], 900, 6_000],
    ["the default 10 s", [], 9_500, 15_000],
  ] as const
) {
  Deno.test(`client: a server that stops reading stalls the send: error after ${label}`, async () => {
    const work = await tempDir();
    // Larger than all the socket buffers on the path, so the client's writes must block.
    const path = await makeFile(work, "big.bin", 96 * 1024 * 1024);
    let clientDone!: () => void;
    const clientFinished = new Promise<void>((resolve) => clientDone = resolve);
    let stalledAt = 0;
    await withFakeServer(async (conn) => {
      await sendAll(conn, bytes("accio\r\n"));
      await recvExactly(conn, 1024);
      stalledAt = Date.now(); // from here on, read nothing
      await clientFinished;
    }, async (port) => {
      const result = await runClient([...options, "127.0.0.1", String(port), path], 30_000);
      clientDone();
      const took = Date.now() - stalledAt;
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /^ERROR: peer accepted no data for \d+ s while sending the file/m);
      assert.ok(took >= lowMs && took < highMs, `gave up ${took} ms after the server stopped reading`);
    });
    await Deno.remove(work, { recursive: true });
  });
}

for (
  const [label, options, lowMs, highMs] of [
    ["--timeout 1", ["--timeout", "1"], 900, 5_000],
    ["the default 10 s", [], 9_500, 14_000],
  ] as const
) {
  Deno.test(`client: a connect that hangs (SYNs dropped) is an error after ${label}`, async () => {
    const path = await fileWith("x");
    const port = freePort();
    await using backlog = spawnPeer("full_backlog.py", [String(port)]);
    await waitFor(() => backlog.stdout.includes("ready"), 10_000, "the full backlog");
    const started = Date.now();
    const result = await runClient([...options, "127.0.0.1", String(port), path], 30_000);
    const took = Date.now() - started;
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /^ERROR: could not connect to 127\.0\.0\.1:\d+ within \d+ s/m);
    assert.ok(took >= lowMs && took < highMs, `gave up after ${took} ms`);
  });
}

Deno.test("client: bad ports, hosts and files give ERROR: and a non-zero exit", async () => {
  const path = await fileWith("x");
  const dir = await tempDir();
  const refusedPort = String(freePort());
  const cases: [string[], RegExp, number][] = [
    [["127.0.0.1", "abc", path], /invalid port "abc"/, 2],
    [["127.0.0.1", "0", path], /invalid port "0"/, 2],
    [["127.0.0.1", "65536", path], /invalid port "65536"/, 2],
    [["127.0.0.1", "-1", path], /invalid port "-1"/, 2],
    [["127.0.0.1", "", path], /invalid port ""/, 2],
    [["127.0.0.1", "no-such-service-name", path], /not a number from 1 to 65535 nor a TCP service/, 2],
    [["no-such-host.invalid", refusedPort, path], /cannot resolve host "no-such-host.invalid"/, 1],
    [["127.0.0.1", refusedPort, path], /connection refused by 127\.0\.0\.1:/, 1],
    [["127.0.0.1", refusedPort, `${dir}/missing`], /cannot open ".*missing": no such file/, 1],
    [["127.0.0.1", refusedPort, dir], /it is a directory/, 1],
    [["127.0.0.1", refusedPort], /missing argument/, 2],
    [["--handshake", "triple", "127.0.0.1", refusedPort, path], /invalid --handshake "triple"/, 2],
  ];
  for (const [args, message, code] of cases) {
    const result = await runClient(args);
    assert.equal(result.code, code, `client ${args.join(" ")}: ${result.stderr}`);
    assert.match(result.stderr, /^ERROR: /m);
    assert.match(result.stderr, message);
  }
});

Deno.test("client resolves a service name from /etc/services (http: port 80)", async () => {
  const services = await Deno.readTextFile("/etc/services").catch(() => "");
  const path = await fileWith("x");
  if (!/^http\s+80\/tcp/m.test(services)) {
    console.log("SKIPPED: /etc/services on this machine does not list http 80/tcp");
    return;
  }
  // Nothing listens on port 80 here: a refusal naming port 80 proves the name was resolved to 80.
  const result = await runClient(["127.0.0.1", "http", path]);
  assert.notEqual(result.code, 0);
  assert.match(result.stderr, /^ERROR: (connection refused by 127\.0\.0\.1:80|could not connect)/m);
});

Deno.test("client reaches a server by IPv6 literal (with and without brackets) and by name", async () => {
  await using server = await startServer("server");
  const path = await fileWith("over ipv6");
  for (const host of ["::1", "[::1]", "localhost"]) {
    const result = await runClient([host, String(server.port), path]);
    assert.equal(result.code, 0, `${host}: ${result.stderr}`);
  }
  for (const n of [1, 2, 3]) assert.equal(await Deno.readTextFile(`${server.dir}/${n}.file`), "over ipv6");
});

Deno.test("client reaches a server by a host name that resolves only to IPv6 ::1", async (t) => {
  const canUnshare = await canUnshareMounts();
  if (!canUnshare) {
    await t.step({
      name: "SKIPPED: needs root and unshare -m to give the client its own /etc/hosts",
      ignore: true,
      fn() {},
    });
    return;
  }
  await using server = await startServer("server", { extra: ["--verbose"] });
  const work = await tempDir();
  const path = await fileWith("by ipv6 name");
  const hosts = `${work}/hosts`;
  await Deno.writeTextFile(hosts, "::1 accio-v6-only.test\n");
  // The client alone sees a hosts file where this name has only an IPv6 address.
  const wrap = inPrivateMounts(`mount --bind "${hosts}" /etc/hosts`);
  await using client = spawnProgram("client", ["accio-v6-only.test", String(server.port), path], wrap);
  const status = await client.wait();
  assert.equal(status.code, 0, client.stderr);
  assert.equal(await Deno.readTextFile(`${server.dir}/1.file`), "by ipv6 name");
  await waitFor(() => server.proc.stderr.includes("1.file from"), 5_000, "the upload log line");
  assert.match(server.proc.stderr, /1\.file from \[::1\]:\d+: saved 12 bytes/);
});
