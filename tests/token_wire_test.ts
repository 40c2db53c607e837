/**
 * `server --tokens` and `client --token-file` / `ACCIO_TOKEN`, end to end:
 * the real entry points over real loopback sockets. Only a valid token gets
 * a number; named uploads land in the identity's folder; failures from one
 * address lock it out while other addresses are served; the token never
 * shows anywhere.
 *
 * Linux picks the source 127.0.0.1 for every loopback destination, so the
 * connections that must come from other addresses bind one (node:net's
 * `localAddress`); the real client always comes from 127.0.0.1.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { tokenDigest } from "../lib/tokens.ts";
import { listDir, tempDir } from "./support/files.ts";
import { Proc, runClient, spawnProgram, startServer, taskArgs } from "./support/process.ts";
import { waitFor } from "./support/wait.ts";
import { settlesWithin } from "../lib/abortable.ts";
import { bytes, text } from "./support/encoding.ts";
import { connect, freePort, readToEnd, recvExactly, sendAll } from "./support/wire.ts";

const TOKEN_A = "tok-a-0123456789abcdef0123456789abcdef";
const TOKEN_B = "tok-b-fedcba9876543210fedcba9876543210";
const UNAUTHORIZED_LINE = "error unauthorized\r\n";

/** A tokens file for sensor-a and sensor-b, and a token file (mode 600) for each. */
async function tokenSetup() {
  const dir = await tempDir();
  const file = `${dir}/tokens`;
  await Deno.writeTextFile(file, `sensor-a:${tokenDigest(TOKEN_A)}\nsensor-b:${tokenDigest(TOKEN_B)}\n`);
  const a = `${dir}/a.token`;
  const b = `${dir}/b.token`;
  await Deno.writeTextFile(a, TOKEN_A, { mode: 0o600 });
  await Deno.writeTextFile(b, TOKEN_B, { mode: 0o600 });
  const data = `${dir}/data.csv`;
  await Deno.writeTextFile(data, "t,v\n1,2\n");
  return { dir, file, a, b, data, log: `${dir}/uploads.jsonl`, metricsPort: freePort() };
}
type Setup = Awaited<ReturnType<typeof tokenSetup>>;

/** The server's options of these tests (plaintext allowed: TLS is another branch's). */
function serverArgs(t: Setup, extra: string[] = []): string[] {
  return [
    "--tokens",
    t.file,
    "--allow-plaintext-tokens",
    "--names",
    "--verbose",
    "--log",
    t.log,
    "--metrics-port",
    String(t.metricsPort),
    ...extra,
  ];
}

/** The client with a token file, over plaintext. */
function tokenClient(tokenFile: string, port: number, ...rest: string[]) {
  return runClient([
    "--allow-plaintext-tokens",
    "--token-file",
    tokenFile,
    ...rest.slice(0, -1),
    "127.0.0.1",
    String(port),
    rest.at(-1)!,
  ]);
}

async function scrape(port: number): Promise<string> {
  return await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

function refusedCount(metrics: string, reason: string): number {
  return Number(
    new RegExp(`^accio_refused_total\\{reason="${reason}"\\} (\\d+)$`, "m").exec(metrics)?.[1] ?? 0,
  );
}

/** Every file under `dir`, relative, sorted. */
async function tree(dir: string, prefix = ""): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(`${dir}/${prefix}`)) {
    const path = `${prefix}${entry.name}`;
    if (entry.isDirectory) found.push(...await tree(dir, `${path}/`));
    else if (!entry.name.startsWith(".")) found.push(path);
  }
  return found.sort();
}

/** What a hand-made connection does: the handshake to send, and what is sent after it. */
interface RawPlan {
  double: boolean;
  /** Header lines of a double handshake (no CRLF). */
  header?: string[];
  body: string;
}

/**
 * One connection from `localAddress`, spoken by hand: whether the server
 * greeted, every byte it sent after its greeting(s), how long it took.
 */
function rawAttempt(
  port: number,
  localAddress: string,
  plan: RawPlan,
): Promise<{ greeted: boolean; reply: string; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port, localAddress });
    let received = "";
    let stage = 0;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no end within 10 s; received ${JSON.stringify(received)}`));
    }, 10_000);
    socket.on("data", (chunk) => {
      received += chunk.toString("latin1");
      if (stage === 0 && received.length >= 7) {
        stage = 1;
        if (!plan.double) socket.end(plan.body);
        else socket.write("confirm-accio\r\n");
      } else if (stage === 1 && plan.double && received.length >= 14) {
        stage = 2;
        socket.end(["confirm-accio-again", ...(plan.header ?? []), "", plan.body].join("\r\n"));
      }
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      const skip = plan.double && received.length >= 14 ? 14 : 7;
      resolve({
        greeted: received.length >= 7,
        reply: received.slice(skip),
        ms: performance.now() - started,
      });
    });
  });
}

const withToken = (token: string, ...header: string[]): RawPlan => ({
  double: true,
  header: [`token: ${token}`, ...header],
  body: "payload",
});

Deno.test("tokens: a good token uploads, numbered and named (under its identity); the identity is logged; the token shows nowhere", async () => {
  const t = await tokenSetup();
  await using server = await startServer("server", { extra: serverArgs(t) });
  const numbered = await tokenClient(t.a, server.port, t.data);
  assert.equal(numbered.code, 0, numbered.stderr);
  const named = await tokenClient(t.a, server.port, "--name", "floor2/data.csv", "--verify", t.data);
  assert.equal(named.code, 0, named.stderr);
  // ACCIO_TOKEN works too, and the token is never on a command line.
  const viaEnv = new Proc(Deno.execPath(), [
    ...taskArgs("client"),
    "--allow-plaintext-tokens",
    "--named",
    "127.0.0.1",
    String(server.port),
    t.data,
  ], { env: { ACCIO_TOKEN: TOKEN_B } });
  assert.equal((await viaEnv.wait()).code, 0, viaEnv.stderr);
  assert.deepEqual(await tree(server.dir), ["1.file", "sensor-a/floor2/data.csv", "sensor-b/data.csv"]);
  await waitFor(
    () => /3\.file|sensor-b\/data\.csv from .* as sensor-b: saved/.test(server.proc.stderr),
    5_000,
    "log",
  );
  assert.match(server.proc.stderr, /1\.file from 127\.0\.0\.1:\d+ as sensor-a: saved 8 bytes/);
  assert.match(
    server.proc.stderr,
    /sensor-a\/floor2\/data\.csv from 127\.0\.0\.1:\d+ as sensor-a: saved 8 bytes/,
  );
  await waitFor(
    async () => (await Deno.readTextFile(t.log).catch(() => "")).trim().split("\n").length === 3,
    5_000,
    "3 log lines",
  );
  const entries = (await Deno.readTextFile(t.log)).trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(entries.map((e) => [e.id, e.identity, e.name]).sort(), [
    [1, "sensor-a", null],
    [2, "sensor-a", "floor2/data.csv"],
    [3, "sensor-b", "data.csv"],
  ]);
  const metrics = await scrape(t.metricsPort);
  for (
    const [where, text] of [["stderr", server.proc.stderr], ["upload log", await Deno.readTextFile(t.log)], [
      "metrics",
      metrics,
    ]]
  ) {
    for (const token of [TOKEN_A, TOKEN_B]) {
      assert.ok(!text.includes(token), `the token appears in the ${where}`);
    }
  }
});

Deno.test("tokens: the token is not on a running client's command line", async () => {
  const t = await tokenSetup();
  // A listener that never greets: the client waits for accio, long enough to read its /proc entry.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  await using client = spawnProgram("client", [
    "--allow-plaintext-tokens",
    "--token-file",
    t.a,
    "--timeout",
    "5",
    "127.0.0.1",
    String(listener.addr.port),
    t.data,
  ]);
  const conn = await accepted;
  try {
    const cmdline = await Deno.readTextFile(`/proc/${client.pid}/cmdline`);
    assert.match(cmdline, /--token-file/);
    assert.ok(!cmdline.includes(TOKEN_A), "the token is on the command line");
  } finally {
    conn.close();
    listener.close();
  }
  assert.equal((await client.wait()).code, 1);
});

Deno.test("tokens: wrong, missing (single handshake, double without token), malformed and doubled tokens get exactly error unauthorized, no number, no file", async () => {
  const t = await tokenSetup();
  await using server = await startServer("server", { extra: serverArgs(t) });
  const plans: [string, RawPlan][] = [
    ["wrong token", withToken("not-the-token-0123456789")],
    ["single handshake", { double: false, body: "file bytes" }],
    ["double, no token", { double: true, header: ["name: x.csv"], body: "payload" }],
    ["double, no header at all", { double: true, body: "payload" }],
    ["malformed token line", { double: true, header: [`Token:${TOKEN_A}`], body: "payload" }],
    ["two token lines", {
      double: true,
      header: [`token: ${TOKEN_A}`, `token: ${TOKEN_A}`],
      body: "payload",
    }],
  ];
  // Each from its own address: the lock-out is per address, and is not what this test is about.
  for (const [i, [what, plan]] of plans.entries()) {
    const got = await rawAttempt(server.port, `127.0.0.${11 + i}`, plan);
    assert.equal(got.greeted, true, what);
    assert.equal(got.reply, UNAUTHORIZED_LINE, what);
  }
  // The real client: one clear line, not retried.
  const wrongFile = `${t.dir}/wrong.token`;
  await Deno.writeTextFile(wrongFile, "wrong-token-but-long-enough", { mode: 0o600 });
  const wrong = await runClient([
    "--allow-plaintext-tokens",
    "--token-file",
    wrongFile,
    "--retries",
    "3",
    "--retry-delay",
    "0.1",
    "127.0.0.1",
    String(server.port),
    t.data,
    t.data,
    t.data,
  ]);
  assert.equal(wrong.code, 1);
  assert.deepEqual(wrong.stderr.match(/^ERROR: .*$/gm), [
    "ERROR: the server refused the token (unauthorized): it matches no identity in the server's tokens file, or was revoked",
  ], "one ERROR line for the three files; the other two were not sent");
  assert.doesNotMatch(wrong.stderr, /trying again/);
  const none = await runClient(["127.0.0.1", String(server.port), t.data]);
  assert.equal(none.code, 1);
  assert.match(
    none.stderr,
    /^ERROR: the server requires a token \(unauthorized\): give one with --token-file/m,
  );
  assert.deepEqual(await tree(server.dir), [], "no number was used, no file made");
  const good = await tokenClient(t.a, server.port, t.data);
  assert.equal(good.code, 0, good.stderr);
  assert.deepEqual(await tree(server.dir), ["1.file"]);
  assert.equal(refusedCount(await scrape(t.metricsPort), "unauthorized"), plans.length + 2);
  assert.ok(!server.proc.stderr.includes(TOKEN_A), "a token line was logged");
});

Deno.test("tokens: an empty upload without a token is answered error unauthorized (its client must not exit 0); not counted", async () => {
  const t = await tokenSetup();
  await using server = await startServer("server", { extra: serverArgs(t) });
  const empty = `${t.dir}/empty.bin`;
  await Deno.writeFile(empty, new Uint8Array(0));
  const none = await runClient(["127.0.0.1", String(server.port), empty]);
  assert.equal(none.code, 1, none.stderr);
  assert.match(none.stderr, /^ERROR: the server requires a token \(unauthorized\)/m);
  assert.deepEqual(await tree(server.dir), [], "no number was used, no file made");
  // Like a port probe that connects and closes, it is neither counted nor a failure towards the lock-out.
  assert.equal(refusedCount(await scrape(t.metricsPort), "unauthorized"), 0);
});

Deno.test("tokens: a burst of 40 parallel wrong tokens from a fresh address gets 3 token checks, not 40", async () => {
  const t = await tokenSetup();
  await using server = await startServer("server", { extra: serverArgs(t) });
  const attempts = await Promise.all(
    Array.from(
      { length: 40 },
      () => rawAttempt(server.port, "127.0.0.77", withToken("guess-0123456789abcdef")),
    ),
  );
  const checked = attempts.filter((a) => a.reply === UNAUTHORIZED_LINE).length;
  assert.equal(checked, 3, `token checks reached: ${checked}`);
  for (const attempt of attempts.filter((a) => a.reply !== UNAUTHORIZED_LINE)) {
    // Greeted before the lock, told why; or arrived after it and refused before accio.
    if (attempt.greeted) assert.match(attempt.reply, /^error too many failed token checks from this address/);
  }
  assert.deepEqual(await tree(server.dir), []);
  const metrics = await scrape(t.metricsPort);
  assert.equal(refusedCount(metrics, "unauthorized"), 3);
  assert.equal(refusedCount(metrics, "backoff"), 37);
});

Deno.test("tokens: SIGHUP revokes a removed token for new connections; a bad file keeps the tokens in use", async () => {
  const t = await tokenSetup();
  await using server = await startServer("server", { extra: serverArgs(t) });
  assert.equal((await tokenClient(t.b, server.port, t.data)).code, 0);
  await Deno.writeTextFile(t.file, `sensor-a:${tokenDigest(TOKEN_A)}\n`);
  server.proc.child.kill("SIGHUP");
  await waitFor(
    () => /reloaded tokens: 1 identities, 1 tokens/.test(server.proc.stderr),
    5_000,
    "the reload",
  );
  const revoked = await rawAttempt(server.port, "127.0.0.21", withToken(TOKEN_B));
  assert.equal(revoked.reply, UNAUTHORIZED_LINE);
  const client = await tokenClient(t.b, server.port, t.data);
  assert.equal(client.code, 1);
  assert.match(client.stderr, /refused the token/);
  await Deno.writeTextFile(t.file, "sensor-a:not-a-digest\n");
  server.proc.child.kill("SIGHUP");
  await waitFor(
    () => /kept the tokens in use: reloading failed: .*line 1/.test(server.proc.stderr),
    5_000,
    "the failed reload",
  );
  assert.equal((await tokenClient(t.a, server.port, t.data)).code, 0, "sensor-a still gets in");
  assert.deepEqual(await tree(server.dir), ["1.file", "2.file"]);
});

Deno.test("tokens: named uploads stay in their identity's folder; two identities never overwrite each other", async () => {
  const t = await tokenSetup();
  await using server = await startServer("server", { extra: serverArgs(t, ["--resumable"]) });
  for (const name of ["../sensor-b/x", "/etc/x", "sensor-b/../../x", "./x"]) {
    const got = await rawAttempt(server.port, "127.0.0.1", withToken(TOKEN_A, `name: ${name}`));
    assert.match(got.reply, /^error refused name /, name);
  }
  const fileA = `${t.dir}/a.csv`;
  const fileB = `${t.dir}/b.csv`;
  await Deno.writeTextFile(fileA, "from a\n");
  await Deno.writeTextFile(fileB, "from b\n");
  assert.equal((await tokenClient(t.a, server.port, "--name", "data.csv", "--resume", fileA)).code, 0);
  assert.equal((await tokenClient(t.b, server.port, "--name", "data.csv", "--resume", fileB)).code, 0);
  // A name that looks like another identity's folder is a folder inside one's own.
  const intoB = await tokenClient(t.a, server.port, "--name", "sensor-b/data.csv", "--verify", fileA);
  assert.equal(intoB.code, 0, intoB.stderr);
  // The same name again with other bytes: refused (exists), not overwritten.
  const again = await tokenClient(t.b, server.port, "--name", "data.csv", "--verify", fileA);
  assert.equal(again.code, 1);
  assert.equal(await Deno.readTextFile(`${server.dir}/sensor-a/data.csv`), "from a\n");
  assert.equal(await Deno.readTextFile(`${server.dir}/sensor-b/data.csv`), "from b\n");
  const files = await tree(server.dir);
  assert.deepEqual(files.filter((f) => !/^\d+\.file$/.test(f)), [
    "sensor-a/data.csv",
    "sensor-a/sensor-b/data.csv",
    "sensor-b/data.csv",
  ]);
  for (const f of files.filter((f) => /^\d+\.file$/.test(f))) {
    assert.equal(await Deno.readTextFile(`${server.dir}/${f}`), "ERROR", `${f}: a refused name`);
  }
  assert.deepEqual(
    (await listDir(t.dir)).filter((n) => n === "x"),
    [],
    "nothing outside the upload directory",
  );
});

Deno.test("tokens: 200 failed attempts from one address are locked out (refused before accio) while another address uploads", async () => {
  const t = await tokenSetup();
  await using server = await startServer("server", { extra: serverArgs(t) });
  const reached: number[] = [];
  let refused = 0;
  const started = performance.now();
  const attacker = (async () => {
    for (let i = 0; i < 200; i++) {
      const got = await rawAttempt(server.port, "127.0.0.2", withToken(`guess-${i}-0123456789abcdef`));
      if (got.greeted) {
        assert.equal(got.reply, UNAUTHORIZED_LINE);
        reached.push(performance.now() - started);
      } else {
        assert.equal(got.reply, "", "a locked-out attempt reads nothing");
        refused++;
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  })();
  // Meanwhile the real client, from 127.0.0.1, is served as ever.
  const good = await tokenClient(t.a, server.port, t.data);
  assert.equal(good.code, 0, good.stderr);
  await attacker;
  // 200 attempts 25 ms apart take more than 5 s: checks at about 0 s (three), 1 s, 3 s, and none until 7 s.
  assert.ok(reached.length >= 5 && reached.length <= 8, `${reached.length} attempts reached the token check`);
  console.log(
    `reached the token check at ${reached.map((ms) => Math.round(ms)).join(", ")} ms; ${refused} refused`,
  );
  assert.equal(reached.length + refused, 200);
  // Three free failures, then a 1 s lock, then 2 s: the gaps show it.
  const gaps = reached.slice(1).map((at, i) => at - reached[i]);
  assert.ok(gaps[2] >= 950, `the 4th check came ${gaps[2]} ms after the 3rd: ${gaps}`);
  assert.ok(gaps[3] >= 1_950, `the 5th check came ${gaps[3]} ms after the 4th: ${gaps}`);
  const metrics = await scrape(t.metricsPort);
  assert.equal(refusedCount(metrics, "unauthorized"), reached.length);
  assert.equal(refusedCount(metrics, "backoff"), refused);
  assert.match(
    server.proc.stderr,
    /refused a connection from 127\.0\.0\.2:\d+: 127\.0\.0\.2 locked for .* \(back-off\)/,
  );
  assert.deepEqual(await tree(server.dir), ["1.file"]);
});

Deno.test("tokens: refused over plaintext on both sides without --allow-plaintext-tokens; with --workers 2 and --handshake single", async () => {
  const t = await tokenSetup();
  const port = String(freePort());
  const dir = await tempDir();
  const plain = spawnProgram("server", ["--tokens", t.file, port, dir]);
  assert.equal((await plain.wait()).code, 2);
  assert.match(plain.stderr, /^ERROR: --tokens without --tls-cert .*--allow-plaintext-tokens/m);
  for (const extra of [["--workers", "2"], ["--handshake", "single"]]) {
    const refused = spawnProgram("server", [
      "--tokens",
      t.file,
      "--allow-plaintext-tokens",
      ...extra,
      port,
      dir,
    ]);
    assert.equal((await refused.wait()).code, 2, extra.join(" "));
    assert.match(
      refused.stderr,
      /^ERROR: .*(--tokens cannot be used with --workers|--tokens needs the double)/m,
    );
  }
  const client = await runClient(["--token-file", t.a, "127.0.0.1", port, t.data]);
  assert.equal(client.code, 2);
  assert.match(
    client.stderr,
    /^ERROR: a token \(from token file ".*a\.token"\) without --tls .*--allow-plaintext-tokens/m,
  );
  const env = new Proc(Deno.execPath(), [...taskArgs("client"), "127.0.0.1", port, t.data], {
    env: { ACCIO_TOKEN: TOKEN_A },
  });
  assert.equal((await env.wait()).code, 2);
  assert.match(env.stderr, /^ERROR: a token \(from ACCIO_TOKEN\) without --tls/m);
  assert.deepEqual(await listDir(dir), []);
});

Deno.test("tokens: the whole handshake must arrive within the idle timeout: a trickled header is cut off, with no number", async () => {
  const t = await tokenSetup();
  await using server = await startServer("server", { extra: serverArgs(t, ["--timeout", "1"]) });
  const conn = await connect(server.port);
  try {
    const started = performance.now();
    assert.equal(text(await recvExactly(conn, 7)), "accio\r\n");
    await sendAll(conn, bytes("confirm-accio\r\n"));
    assert.equal(text(await recvExactly(conn, 7)), "accio\r\n");
    const ended = readToEnd(conn, 5_000);
    // One byte every 200 ms: each read comes well within the idle timeout, the whole never does.
    const header = `confirm-accio-again\r\ntoken: ${TOKEN_A}\r\n\r\n`;
    for (const byte of header) {
      if (await settlesWithin(ended, 200)) break;
      await sendAll(conn, bytes(byte)).catch(() => {});
    }
    const reply = await ended;
    const ms = performance.now() - started;
    assert.ok(ms < 2_500, `cut off after ${ms} ms`);
    assert.ok(reply === "reset" || reply.length === 0, `nothing answered: ${reply}`);
  } finally {
    conn.close();
  }
  assert.deepEqual(await tree(server.dir), []);
  await waitFor(() => /no complete handshake within 1 s/.test(server.proc.stderr), 5_000, "the log line");
});
