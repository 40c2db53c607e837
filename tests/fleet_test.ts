/**
 * The client for sensor fleets: standard input, several files in one run
 * (`--parallel`), directory trees (`--named`), summary lines, and which
 * failures `--retries` tries again (the policy's unit tests: retry_test.ts). Real client, real or fake servers, loopback.
 */
import assert from "node:assert/strict";
import { fileSha256 } from "../lib/file_hash.ts";
import { bytes } from "./support/encoding.ts";
import { listDir, makeFile, tempDir } from "./support/files.ts";
import { runClient, runClientWithStdin, startServer } from "./support/process.ts";
import { delay, waitFor } from "./support/wait.ts";
import { freePort, readToEnd, recvExactly, sendAll, withFakeServer } from "./support/wire.ts";

/** The entries of `dir` but the server's own record of numbers without an `N.file` (`.accio.numbers`). */
async function visibleEntries(dir: string): Promise<string[]> {
  return (await listDir(dir)).filter((n) => n !== ".accio.numbers").sort();
}

const lines = (output: string) => output.split("\n").filter((l) => l !== "");

const pseudoRandom = (size: number, seed: number) =>
  new Uint8Array(size).map((_, i) => (i * seed + (i >> 8)) % 256);

Deno.test("client - reads standard input and sends exactly its bytes by default (no header)", async () => {
  const data = pseudoRandom(300_000, 7);
  const received = await withFakeServer(async (conn) => {
    await sendAll(conn, bytes("accio\r\n"));
    return await readToEnd(conn);
  }, async (port) => {
    const result = await runClientWithStdin(["127.0.0.1", String(port), "-"], data);
    assert.equal(result.code, 0, result.stderr);
    assert.match(
      result.stdout,
      /^stored - \(standard input\) as a numbered upload: 300000 bytes in [0-9.]+ s\n$/,
    );
  });
  assert.deepEqual(received, data);
});

Deno.test("client - to the real server: stored as N.file, or at --name; --verify and --named refuse it", async () => {
  await using server = await startServer("server", { extra: ["--names"] });
  const data = pseudoRandom(2 * 1024 * 1024, 3);
  const plain = await runClientWithStdin(["127.0.0.1", String(server.port), "-"], data);
  assert.equal(plain.code, 0, plain.stderr);
  assert.deepEqual(await Deno.readFile(`${server.dir}/1.file`), data);
  const named = await runClientWithStdin(
    ["--name", "logs/today.tar", "127.0.0.1", String(server.port), "-"],
    data,
  );
  assert.equal(named.code, 0, named.stderr);
  assert.deepEqual(await Deno.readFile(`${server.dir}/logs/today.tar`), data);
  for (const option of [["--verify"], ["--resume", "--name", "x.tar"]]) {
    const refused = await runClientWithStdin([...option, "127.0.0.1", String(server.port), "-"], data);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(
      lines(refused.stderr)[0],
      /^ERROR: cannot verify standard input \(--verify, --resume\): its length and SHA-256 go out before its bytes; save it to a file and send that$/,
    );
  }
  const nameless = await runClientWithStdin(["--named", "127.0.0.1", String(server.port), "-"], data);
  assert.equal(nameless.code, 2, nameless.stderr);
  assert.match(nameless.stderr, /^ERROR: standard input has no name for --named; use --name PATH$/m);
  assert.deepEqual(await visibleEntries(server.dir), ["1.file", "logs"], "a refused run connected");
});

Deno.test("client - with --retries: a refused connection is retried (nothing was read yet); a cut one is not", async () => {
  const port = freePort();
  const data = pseudoRandom(100_000, 5);
  const late = (async () => {
    await delay(700);
    return await startServer("server", { port });
  })();
  const result = await runClientWithStdin([
    "--retries",
    "6",
    "--retry-delay",
    "0.2",
    "127.0.0.1",
    String(port),
    "-",
  ], data);
  await using server = await late;
  assert.equal(result.code, 0, result.stderr);
  assert.match(
    result.stderr,
    /^client: - \(standard input\): attempt 1 failed: connection refused by 127\.0\.0\.1:\d+; trying again in [0-9.]+ s \(retry 1 of 6\)$/m,
  );
  assert.deepEqual(await Deno.readFile(`${server.dir}/1.file`), data);
  // Once its bytes went out, standard input cannot be sent again: no retry, and the line says why.
  // (More than the socket buffers hold, so that the client is still sending when the server speaks.)
  const big = pseudoRandom(16 * 1024 * 1024, 11);
  await withFakeServer(async (conn) => {
    await sendAll(conn, bytes("accio\r\n"));
    await recvExactly(conn, 50_000);
    await sendAll(conn, bytes("error no data for 1 s while waiting for file data\r\n")); // transient
    await delay(200);
  }, async (fake) => {
    const cut = await runClientWithStdin([
      "--retries",
      "3",
      "--retry-delay",
      "0.1",
      "127.0.0.1",
      String(fake),
      "-",
    ], big);
    assert.equal(cut.code, 1, cut.stderr);
    assert.doesNotMatch(cut.stderr, /trying again/);
    assert.match(
      cut.stdout,
      /^failed - \(standard input\): server refused the upload: no data for 1 s .*\(not retried: its bytes were partly sent and cannot be read again\)$/m,
    );
  });
});

Deno.test("client FILE... --parallel 4: never more than 4 connections, every file over its own", async () => {
  const dir = await tempDir();
  const paths = await Promise.all(
    Array.from({ length: 9 }, (_, i) => makeFile(dir, `f${i}.bin`, 50_000 + i, i + 1)),
  );
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  let open = 0;
  let most = 0;
  const received: Uint8Array[] = [];
  const waiting: (() => void)[] = [];
  const serve = async (conn: Deno.Conn) => {
    open++;
    most = Math.max(most, open);
    // Greet only once 4 are open (or 3 s passed): a client that sent them one by one would wait here.
    if (open >= 4) waiting.splice(0).forEach((go) => go());
    else await new Promise<void>((go) => (waiting.push(go), setTimeout(go, 3_000)));
    await sendAll(conn, bytes("accio\r\n"));
    const data = await readToEnd(conn);
    if (data !== "reset") received.push(data);
    open--;
    conn.close();
  };
  const served: Promise<void>[] = [];
  const accepting = (async () => {
    // Ends when the listener is closed below, once the client has exited.
    for (;;) served.push(serve(await listener.accept()));
  })().catch(() => {});
  try {
    const result = await runClient(["--parallel", "4", "127.0.0.1", String(port), ...paths]);
    listener.close();
    await accepting;
    await Promise.all(served);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(most, 4, `at most ${most} connections were open at once`);
    assert.equal(lines(result.stdout).length, 9);
    for (const path of paths) {
      assert.match(result.stdout, new RegExp(`^stored "${path}" as a numbered upload: \\d+ bytes in`, "m"));
    }
    const sizes = received.map((r) => r.length).sort();
    assert.deepEqual(sizes, paths.map((_, i) => 50_000 + i));
  } finally {
    try {
      listener.close();
    } catch {
      // closed above
    }
  }
});

Deno.test("client FILE... --parallel 4 --named --verify: one fails (exists), the others are stored, exit 1 naming it", async () => {
  await using server = await startServer("server", { extra: ["--names"] });
  const dir = await tempDir();
  const paths = await Promise.all(
    Array.from({ length: 8 }, (_, i) => makeFile(dir, `node${i}.csv`, 200_000, i + 1)),
  );
  await Deno.writeTextFile(`${server.dir}/node5.csv`, "someone else's");
  const result = await runClient([
    "--parallel",
    "4",
    "--named",
    "--verify",
    "127.0.0.1",
    String(server.port),
    ...paths,
  ]);
  assert.equal(result.code, 1, result.stderr);
  const errors = lines(result.stderr).filter((l) => l.startsWith("ERROR:"));
  assert.equal(errors.length, 1, result.stderr);
  assert.match(
    errors[0],
    /^ERROR: 1 of 8 files not stored: ".*node5\.csv" \(server refused the upload: exists: .*\)$/,
  );
  assert.equal(lines(result.stdout).length, 8);
  assert.match(result.stdout, /^failed ".*node5\.csv": server refused the upload: exists: /m);
  for (const [i, path] of paths.entries()) {
    if (i === 5) continue;
    assert.match(
      result.stdout,
      new RegExp(`^stored "${path}" as "node${i}\\.csv": 200000 bytes in [0-9.]+ s, verified$`, "m"),
    );
    assert.equal(await fileSha256(`${server.dir}/node${i}.csv`), await fileSha256(path));
  }
  assert.equal(await Deno.readTextFile(`${server.dir}/node5.csv`), "someone else's");
  const quiet = await runClient([
    "--quiet",
    "--named",
    "--verify",
    "127.0.0.1",
    String(server.port),
    paths[5],
  ]);
  assert.equal(quiet.code, 1);
  assert.equal(quiet.stdout, "", "--quiet printed a summary");
  assert.match(quiet.stderr, /^ERROR: server refused the upload: exists: /);
});

Deno.test("client --named DIR: regular files under their relative paths; links, hidden and special files skipped", async () => {
  const outside = await tempDir();
  await Deno.writeTextFile(`${outside}/secret.txt`, "outside");
  const tree = await tempDir();
  await Deno.mkdir(`${tree}/sub/deeper`, { recursive: true });
  await Deno.mkdir(`${tree}/.git`);
  await Deno.writeTextFile(`${tree}/a.csv`, "a");
  await Deno.writeTextFile(`${tree}/sub/b.csv`, "bb");
  await Deno.writeTextFile(`${tree}/sub/deeper/c.csv`, "ccc");
  await Deno.writeTextFile(`${tree}/.hidden`, "h");
  await Deno.writeTextFile(`${tree}/.git/config`, "g");
  await Deno.symlink(`${outside}/secret.txt`, `${tree}/link-to-file`);
  await Deno.symlink(outside, `${tree}/sub/link-to-dir`);
  const fifo = await new Deno.Command("mkfifo", { args: [`${tree}/sub/pipe`] }).output();
  await using server = await startServer("server", { extra: ["--names"] });
  const result = await runClient(["--named", "--verify", "127.0.0.1", String(server.port), tree]);
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(lines(result.stdout).map((l) => /as "([^"]+)"/.exec(l)?.[1]), [
    "a.csv",
    "sub/b.csv",
    "sub/deeper/c.csv",
  ]);
  assert.equal(await Deno.readTextFile(`${server.dir}/a.csv`), "a");
  assert.equal(await Deno.readTextFile(`${server.dir}/sub/b.csv`), "bb");
  assert.equal(await Deno.readTextFile(`${server.dir}/sub/deeper/c.csv`), "ccc");
  assert.deepEqual(await visibleEntries(server.dir), ["a.csv", "sub"]);
  assert.deepEqual((await listDir(`${server.dir}/sub`)).sort(), ["b.csv", "deeper"]);
  const notes = lines(result.stderr);
  assert.ok(
    notes.includes(`client: skipped ${tree}/.git: a hidden name (the server refuses it)`),
    result.stderr,
  );
  assert.ok(
    notes.includes(`client: skipped ${tree}/.hidden: a hidden name (the server refuses it)`),
    result.stderr,
  );
  assert.ok(
    notes.includes(`client: skipped ${tree}/link-to-file: a symbolic link (not followed)`),
    result.stderr,
  );
  assert.ok(
    notes.includes(`client: skipped ${tree}/sub/link-to-dir: a symbolic link (not followed)`),
    result.stderr,
  );
  if (fifo.success) {
    assert.ok(notes.includes(`client: skipped ${tree}/sub/pipe: not a regular file`), result.stderr);
  }
  // Without --named a directory is an error, as before.
  const plain = await runClient(["127.0.0.1", String(server.port), tree]);
  assert.equal(plain.code, 1);
  assert.match(plain.stderr, /^ERROR: cannot send ".*": it is a directory/m);
});

Deno.test("client: usage errors for several files before anything is sent (exit 2)", async () => {
  const a = await makeFile(await tempDir(), "a.bin", 10);
  const cases: [string[], RegExp][] = [
    [["--name", "x", a, a], /^ERROR: --name names one file; for several, use --named$/m],
    [["--resume", a], /^ERROR: --resume needs a named upload: add --named or --name PATH$/m],
    [["-", "-"], /^ERROR: "-" \(standard input\) given more than once$/m],
    [["--parallel", "0", a], /^ERROR: invalid --parallel "0": expected a whole number from 1 to 64$/m],
    [["--retries", "x", a], /^ERROR: invalid --retries "x": expected a whole number from 0 to 1000$/m],
    [["--retry-delay", "0", a], /^ERROR: invalid --retry-delay "0"/m],
  ];
  for (const [args, message] of cases) {
    const result = await runClient(["127.0.0.1", "9", ...args]);
    assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
    assert.match(result.stderr, message);
  }
  const missing = await runClient(["127.0.0.1", "9"]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /missing argument: expected <HOSTNAME-OR-IP> <PORT> <FILE>\.\.\./);
});

Deno.test("client --retries: permanent refusals are not retried; transient receipts are", async () => {
  await using server = await startServer("server", { extra: ["--names"] });
  const path = await makeFile(await tempDir(), "p.bin", 1000);
  await Deno.writeTextFile(`${server.dir}/taken.bin`, "x");
  const refused = await runClient([
    "--name",
    "taken.bin",
    "--retries",
    "5",
    "--retry-delay",
    "0.1",
    "127.0.0.1",
    String(server.port),
    path,
  ]);
  assert.equal(refused.code, 1);
  assert.match(
    refused.stderr,
    /^ERROR: server refused the upload: refused name "taken\.bin": already exists/m,
  );
  assert.doesNotMatch(refused.stderr, /trying again/);
  await waitFor(async () => (await listDir(server.dir)).includes("1.file"), 5_000, "1.file");
  assert.deepEqual(
    await visibleEntries(server.dir),
    ["1.file", "taken.bin"],
    "a permanent refusal was tried again",
  );
  // A server that is busy first, then takes it: retried.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const fake = (async () => {
    for (const answer of ["error busy: another connection is uploading it\r\n", ""]) {
      const conn = await listener.accept();
      await sendAll(conn, bytes("accio\r\n"));
      if (answer) {
        await sendAll(conn, bytes(answer));
        await delay(100);
      } else await readToEnd(conn);
      conn.close();
    }
  })();
  try {
    const busy = await runClient(["--retries", "2", "--retry-delay", "0.1", "127.0.0.1", String(port), path]);
    await fake;
    assert.equal(busy.code, 0, busy.stderr);
    assert.match(busy.stderr, /attempt 1 failed: server refused the upload: busy: /);
    assert.match(busy.stdout, /, 2 attempts, \d+ bytes sent$/m);
  } finally {
    listener.close();
  }
});

Deno.test("client --retries: once the whole file went out, only a named, verified upload is sent again", async () => {
  const path = await makeFile(await tempDir(), "sent.bin", 20_000);
  // A server that takes the whole file and never confirms: it may have stored it.
  await withFakeServer(async (conn) => {
    await sendAll(conn, bytes("accio\r\n"));
    await readToEnd(conn);
    await delay(1_500);
  }, async (port) => {
    const result = await runClient([
      "--timeout",
      "1",
      "--retries",
      "3",
      "--retry-delay",
      "0.1",
      "127.0.0.1",
      String(port),
      path,
    ]);
    assert.equal(result.code, 1, result.stderr);
    assert.doesNotMatch(result.stderr, /trying again/);
    assert.match(
      result.stdout,
      /^failed ".*sent\.bin": no data for 1 s while waiting for the server to confirm by closing \(not retried: all of it was sent, so the server may have stored it; only a named, verified upload \(--named or --name, with --verify\) can be sent again safely then\)$/m,
    );
    assert.match(
      result.stderr,
      /^ERROR: no data for 1 s while waiting for the server to confirm by closing$/m,
    );
  });
});
