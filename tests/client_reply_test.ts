/**
 * What the client does with the bytes a server sends after the handshake, and
 * how long it waits for them: any byte after its half-close in the default
 * protocol is a failure, an error line mid-upload stops the upload, and every
 * wait on the server is bounded as a whole. Against scripted servers over
 * loopback TCP.
 */
import assert from "node:assert/strict";
import { bytes, text } from "./support/encoding.ts";
import { contentFile, makeFile, tempDir } from "./support/files.ts";
import { runClient, runClientInTerminal, startServer } from "./support/process.ts";
import { delay } from "./support/wait.ts";
import { readToEnd, readWithTimeout, recvExactly, sendAll, withFakeServer } from "./support/wire.ts";

/** The stderr lines of a run. */
const lines = (stderr: string) => stderr.split("\n").filter((l) => l !== "");

/**
 * The server half of the failure contract: half-close, then read and discard
 * until the client's EOF or reset (bounded). Returns how it ended and the bytes taken.
 */
async function linger(conn: Deno.Conn, ms = 5_000): Promise<{ ending: string; bytes: number }> {
  await conn.closeWrite().catch(() => {});
  const buffer = new Uint8Array(1 << 20);
  const end = Date.now() + ms;
  let total = 0;
  for (;;) {
    let n;
    try {
      n = await readWithTimeout(conn, buffer, end - Date.now());
    } catch {
      return { ending: "reset", bytes: total };
    }
    if (n === "timeout") return { ending: "timeout", bytes: total };
    if (n === null) return { ending: "eof", bytes: total };
    total += n;
  }
}

/** Writes `data` one byte every `everyMs`, stopping quietly once the client is gone. */
async function trickle(conn: Deno.TcpConn, data: Uint8Array, everyMs: number): Promise<void> {
  try {
    await conn.setNoDelay(true);
    for (let i = 0; i < data.length; i++) {
      await sendAll(conn, data.subarray(i, i + 1));
      await delay(everyMs);
    }
  } catch {
    // The client gave up: what this test wants to see.
  }
}

/** Reads the client's double-handshake header up to its empty line. */
async function readDoubleHeader(conn: Deno.Conn): Promise<string> {
  await sendAll(conn, bytes("accio\r\n"));
  assert.equal(text(await recvExactly(conn, 15)), "confirm-accio\r\n");
  await sendAll(conn, bytes("accio\r\n"));
  let header = "";
  while (!header.endsWith("\r\n\r\n")) header += text(await recvExactly(conn, 1));
  return header;
}

Deno.test("default client: an error line after its upload is a failure with the server's reason", async () => {
  const path = await contentFile("twenty bytes of data");
  await withFakeServer(async (conn) => {
    await sendAll(conn, bytes("accio\r\n"));
    assert.equal(text(await readToEnd(conn) as Uint8Array), "twenty bytes of data");
    await sendAll(conn, bytes("error upload larger than --max-size 10\r\n"));
  }, async (port) => {
    const result = await runClient(["127.0.0.1", String(port), path]);
    assert.equal(result.code, 1, result.stderr);
    assert.deepEqual(lines(result.stderr), [
      "ERROR: server refused the upload: upload larger than --max-size 10",
    ]);
  });
});

Deno.test("default client: any other byte after its half-close is a failure (a second accio)", async () => {
  const path = await contentFile("data");
  await withFakeServer(async (conn) => {
    await sendAll(conn, bytes("accio\r\n"));
    await readToEnd(conn);
    await sendAll(conn, bytes("accio\r\n"));
  }, async (port) => {
    const result = await runClient(["127.0.0.1", String(port), path]);
    assert.equal(result.code, 1, result.stderr);
    assert.deepEqual(lines(result.stderr), [
      'ERROR: server sent unexpected bytes "accio\\r\\n" after the upload; it may not have stored the file',
    ]);
  });
});

Deno.test("default client: a flood after its upload fails at once, without reading it all", async () => {
  const path = await contentFile("data");
  const started = Date.now();
  await withFakeServer(async (conn) => {
    await sendAll(conn, bytes("accio\r\n"));
    await readToEnd(conn);
    const junk = new Uint8Array(1 << 20).fill(0x41);
    // The client stops reading after a few KiB: the writes then stall or fail.
    for (let i = 0; i < 64; i++) {
      const wrote = await Promise.race([sendAll(conn, junk).then(() => true, () => false), delay(3_000)]);
      if (wrote !== true) break;
    }
  }, async (port) => {
    const result = await runClient(["127.0.0.1", String(port), path]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /^ERROR: server sent unexpected bytes "AAAA/m);
  });
  assert.ok(Date.now() - started < 10_000);
});

Deno.test("client: an error line while it is still sending stops the upload at once, with a reset", async () => {
  const work = await tempDir();
  const size = 128 * 1024 * 1024;
  const path = await makeFile(work, "big.bin", size);
  const seen = await withFakeServer(async (conn) => {
    await sendAll(conn, bytes("accio\r\n"));
    await recvExactly(conn, 64 * 1024);
    await sendAll(conn, bytes("error upload larger than --max-size 64K\r\n"));
    return await linger(conn, 20_000);
  }, async (port) => {
    const result = await runClient(["127.0.0.1", String(port), path]);
    assert.equal(result.code, 1, result.stderr);
    assert.deepEqual(lines(result.stderr), [
      "ERROR: server refused the upload: upload larger than --max-size 64K",
    ]);
  });
  assert.equal(seen.ending, "reset", "the client ended its upload with a FIN, not a reset");
  assert.ok(seen.bytes < size / 2, `the client went on sending: ${seen.bytes} bytes after the error line`);
  await Deno.remove(work, { recursive: true });
});

Deno.test("client: a server closing its side before the whole file was sent is a failure", async () => {
  const work = await tempDir();
  const path = await makeFile(work, "big.bin", 64 * 1024 * 1024);
  const seen = await withFakeServer(async (conn) => {
    await sendAll(conn, bytes("accio\r\n"));
    await recvExactly(conn, 64 * 1024);
    return await linger(conn, 20_000);
  }, async (port) => {
    const result = await runClient(["127.0.0.1", String(port), path]);
    assert.equal(result.code, 1, result.stderr);
    assert.deepEqual(lines(result.stderr), [
      "ERROR: connection closed by the server before the whole file was sent",
    ]);
  });
  assert.equal(seen.ending, "reset");
  await Deno.remove(work, { recursive: true });
});

for (const verify of [false, true]) {
  // The contract's lingering close: the server reads on for a while after its line. (Without it, the
  // reset behind the line can destroy the line in the client's kernel buffer first: nothing can show it.)
  Deno.test(`client${verify ? " --verify" : ""}: the server's reason mid-upload stops the send and is shown`, async () => {
    const work = await tempDir();
    const path = await makeFile(work, "big.bin", 64 * 1024 * 1024);
    const reason = verify
      ? 'header line "length: 67108864" sent, but this server accepts no header extensions'
      : "upload larger than --max-size 64K";
    await withFakeServer(async (conn) => {
      if (verify) await readDoubleHeader(conn);
      else await sendAll(conn, bytes("accio\r\n"));
      await recvExactly(conn, 64 * 1024);
      await sendAll(conn, bytes(`error ${reason}\r\n`));
      await conn.closeWrite();
      const sink = new Uint8Array(64 * 1024);
      const lingerEnd = Date.now() + 2_000;
      try {
        while (Date.now() < lingerEnd && (await conn.read(sink)) !== null);
      } catch {
        // The client reset: what the test expects of it.
      }
      conn.close();
    }, async (port) => {
      const result = await runClient([...(verify ? ["--verify"] : []), "127.0.0.1", String(port), path]);
      assert.equal(result.code, 1, result.stderr);
      assert.deepEqual(lines(result.stderr), [`ERROR: server refused the upload: ${reason}`]);
    });
    await Deno.remove(work, { recursive: true });
  });
}

Deno.test("client: a greeting trickled one byte every 1.5 s fails at --timeout 2 as a whole", async () => {
  const path = await contentFile("x");
  let took = 0;
  await withFakeServer(async (conn) => {
    await trickle(conn, bytes("accio\r\n"), 1_500);
  }, async (port) => {
    const started = Date.now();
    const result = await runClient(["--timeout", "2", "127.0.0.1", String(port), path]);
    took = Date.now() - started;
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /^ERROR: only \d of the 7 bytes of the accio\\r\\n arrived within 2 s$/m);
  });
  assert.ok(took < 5_000, `the client waited ${took} ms`);
});

Deno.test("client --handshake double: a trickled second greeting fails at --timeout 2", async () => {
  const path = await contentFile("x");
  let took = 0;
  await withFakeServer(async (conn) => {
    await sendAll(conn, bytes("accio\r\n"));
    await recvExactly(conn, 15);
    await trickle(conn, bytes("accio\r\n"), 1_500);
  }, async (port) => {
    const started = Date.now();
    const result = await runClient([
      "--timeout",
      "2",
      "--handshake",
      "double",
      "127.0.0.1",
      String(port),
      path,
    ]);
    took = Date.now() - started;
    assert.equal(result.code, 1, result.stderr);
    assert.match(
      result.stderr,
      /^ERROR: only \d of the 7 bytes of the second accio\\r\\n arrived within 2 s$/m,
    );
  });
  assert.ok(took < 5_000, `the client waited ${took} ms`);
});

Deno.test("client: a reply trickled one byte a second after the upload is bounded by --timeout 2", async () => {
  const path = await contentFile("x");
  let took = 0;
  await withFakeServer(async (conn) => {
    await sendAll(conn, bytes("accio\r\n"));
    await readToEnd(conn);
    await trickle(conn, bytes(`error ${"slow ".repeat(6)}\r\n`), 1_000);
  }, async (port) => {
    const started = Date.now();
    const result = await runClient(["--timeout", "2", "127.0.0.1", String(port), path]);
    took = Date.now() - started;
    assert.equal(result.code, 1, result.stderr);
    assert.equal(lines(result.stderr).length, 1, result.stderr);
    assert.match(result.stderr, /^ERROR: .*within 2 s/m);
  });
  assert.ok(took < 5_000, `the client waited ${took} ms`);
});

Deno.test("client --verify: a receipt trickled one byte every 1.5 s fails at --timeout 2", async () => {
  const path = await contentFile("x");
  let took = 0;
  await withFakeServer(async (conn) => {
    await readDoubleHeader(conn);
    await readToEnd(conn);
    await trickle(conn, bytes("ok\r\n"), 1_500);
  }, async (port) => {
    const started = Date.now();
    const result = await runClient(["--timeout", "2", "--verify", "127.0.0.1", String(port), path]);
    took = Date.now() - started;
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /^ERROR: the server's receipt did not arrive within 2 s \(received "o/m);
  });
  assert.ok(took < 5_000, `the client waited ${took} ms`);
});

Deno.test("client in a terminal: an error after the progress bar starts on a line of its own", async (t) => {
  const work = await tempDir();
  const path = await makeFile(work, "big.bin", 64 * 1024 * 1024);
  let run: { code: number; output: string } | undefined;
  await withFakeServer(async (conn) => {
    await sendAll(conn, bytes("accio\r\n"));
    await recvExactly(conn, 1024 * 1024);
    await sendAll(conn, bytes("error too big\r\n"));
    await linger(conn, 20_000);
  }, async (port) => {
    run = await runClientInTerminal(["127.0.0.1", String(port), path]);
  });
  if (run === undefined) {
    await t.step({ name: "SKIPPED: util-linux script(1) is not installed", ignore: true, fn() {} });
    return;
  }
  assert.equal(run.code, 1, run.output);
  assert.match(run.output, /ETA/, `no progress bar was drawn: ${JSON.stringify(run.output)}`);
  assert.match(run.output, /(^|\n)ERROR: server refused the upload: too big\r?\n/);
  assert.ok(!run.output.includes("\x1b[KERROR"), "the error line is glued to the progress bar");
  await Deno.remove(work, { recursive: true });
});

Deno.test("client --verify in a terminal shows that it is hashing; piped or --quiet it does not", async (t) => {
  await using server = await startServer("server", { extra: ["--headers"] });
  const work = await tempDir();
  const path = await makeFile(work, "big.bin", 8 * 1024 * 1024);
  const piped = await runClient(["--verify", "127.0.0.1", String(server.port), path]);
  assert.equal(piped.code, 0, piped.stderr);
  assert.equal(piped.stderr, "", "progress written to a pipe");
  const shown = await runClientInTerminal(["--verify", "127.0.0.1", String(server.port), path]);
  if (shown === undefined) {
    await t.step({ name: "SKIPPED: util-linux script(1) is not installed", ignore: true, fn() {} });
    return;
  }
  assert.equal(shown.code, 0, shown.output);
  const drawn = shown.output.split("\n");
  assert.ok(drawn.some((l) => /hashing \[#+\] 100% 8\.0 MiB \/ 8\.0 MiB/.test(l)), shown.output);
  assert.ok(
    drawn.some((l) => !l.includes("hashing") && /\[#+\] 100% 8\.0 MiB \/ 8\.0 MiB/.test(l)),
    `the upload bar has no line of its own: ${JSON.stringify(shown.output)}`,
  );
  const quiet = await runClientInTerminal(["--quiet", "--verify", "127.0.0.1", String(server.port), path]);
  assert.equal(quiet?.code, 0, quiet?.output);
  assert.doesNotMatch(quiet?.output ?? "", /hashing|%/);
  await Deno.remove(work, { recursive: true });
});
