/**
 * Access control pieces: the tokens file (lib/tokens.ts), the client's token,
 * per-identity names, and the per-address limits and back-off
 * (lib/address_limit.ts), the last over real loopback sockets from two
 * client addresses (127.0.0.1 and 127.0.0.2).
 */
import assert from "node:assert/strict";
import net from "node:net";
import { addressKey, AddressLimit, FailureBackoff } from "../lib/address_limit.ts";
import { FileError, ProtocolError, UsageError } from "../lib/errors.ts";
import {
  identityPath,
  isTokenLine,
  readClientToken,
  TOKEN_ENV,
  tokenDigest,
  TokenFile,
  TokenTable,
  UNAUTHORIZED,
} from "../lib/tokens.ts";
import { tempDir } from "./support/files.ts";
import { delay } from "./support/wait.ts";

const TOKEN_A = "a".repeat(16) + "-sensor-a-secret";
const TOKEN_B = "b".repeat(16) + "-sensor-b-secret";
const TOKEN_B2 = "c".repeat(16) + "-sensor-b-rotated";

Deno.test("tokens: tokenDigest is the SHA-256 hex of the token's bytes (printf %s | sha256sum)", () => {
  assert.equal(tokenDigest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
});

Deno.test("tokens: a tokens file with comments, blank lines, rotation; verify finds the identity", () => {
  const table = TokenTable.parse(
    `# sensors of building 4\n\nsensor-a:${tokenDigest(TOKEN_A)}\r\n  sensor-b : ${
      tokenDigest(TOKEN_B).toUpperCase()
    }\nsensor-b:${tokenDigest(TOKEN_B2)}\n`,
    "tokens",
  );
  assert.equal(table.size, 3);
  assert.deepEqual(table.identities(), ["sensor-a", "sensor-b"]);
  assert.equal(table.verify(TOKEN_A), "sensor-a");
  assert.equal(table.verify(TOKEN_B), "sensor-b");
  assert.equal(table.verify(TOKEN_B2), "sensor-b");
  assert.equal(table.verify(TOKEN_A + "x"), undefined);
  assert.equal(table.verify(""), undefined);
  assert.equal(table.verify(tokenDigest(TOKEN_A)), undefined, "the digest itself is not a token");
});

Deno.test("tokens: every bad line is named with its line number, never with a token", () => {
  const digest = tokenDigest(TOKEN_A);
  const cases: [string, RegExp][] = [
    [`sensor-a ${digest}`, /^tokens, line 1: expected identity:<sha256 hex of the token>$/],
    [
      `\n\nSensor-A:${digest}`,
      /^tokens, line 3: bad identity "Sensor-A": only a-z, 0-9, _ and - are allowed/,
    ],
    [`../etc:${digest}`, /line 1: bad identity "\.\.\/etc"/],
    [`.hidden:${digest}`, /line 1: bad identity/],
    [`a.file:${digest}`, /line 1: bad identity/],
    [`:${digest}`, /line 1: bad identity "": empty/],
    [`${"x".repeat(65)}:${digest}`, /longer than 64 characters/],
    [
      `sensor-a:${digest.slice(1)}`,
      /line 1: expected 64 hex digits \(the token's SHA-256\) after "sensor-a:"/,
    ],
    [`sensor-a:${TOKEN_A}`, /line 1: expected 64 hex digits/],
    [`sensor-a:${digest}\nsensor-b:${digest}`, /^tokens, line 2: the same token as line 1$/],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => TokenTable.parse(text, "tokens"), (error: Error) => {
      assert.ok(error instanceof FileError);
      assert.match(error.message, message);
      assert.ok(!error.message.includes(TOKEN_A), "no token in the message");
      return true;
    });
  }
});

Deno.test("tokens: reload applies new tokens and revokes removed ones; a bad file keeps the old ones", async () => {
  const dir = await tempDir();
  const path = `${dir}/tokens`;
  await Deno.writeTextFile(path, `sensor-a:${tokenDigest(TOKEN_A)}\nsensor-b:${tokenDigest(TOKEN_B)}\n`);
  const tokens = await TokenFile.load(path);
  assert.equal(tokens.verify(TOKEN_B), "sensor-b");
  await Deno.writeTextFile(path, `sensor-a:${tokenDigest(TOKEN_A)}\n`);
  await tokens.reload();
  assert.equal(tokens.verify(TOKEN_B), undefined, "revoked");
  assert.equal(tokens.verify(TOKEN_A), "sensor-a");
  await Deno.writeTextFile(path, `sensor-a:not-a-digest\n`);
  await assert.rejects(tokens.reload(), FileError, "line 1");
  assert.equal(tokens.verify(TOKEN_A), "sensor-a", "the tokens in use stay");
  await Deno.remove(path);
  await assert.rejects(tokens.reload(), FileError, "no such file");
  await assert.rejects(TokenFile.load(dir), FileError, "is not a regular file");
});

Deno.test("tokens: the client's token file: one line, mode checked, never quoted in errors", async () => {
  const dir = await tempDir();
  const file = `${dir}/token`;
  await Deno.writeTextFile(file, `${TOKEN_A}\n`, { mode: 0o600 });
  await Deno.chmod(file, 0o600);
  assert.deepEqual(await readClientToken(file), { token: TOKEN_A, source: `token file "${file}"` });
  await Deno.chmod(file, 0o640);
  assert.equal((await readClientToken(file))?.token, TOKEN_A, "group-readable is allowed");
  await Deno.chmod(file, 0o644);
  await assert.rejects(
    readClientToken(file),
    FileError,
    `is readable by every user (mode 644); run: chmod o-r`,
  );
  const write = async (content: string) => {
    await Deno.writeTextFile(file, content);
    await Deno.chmod(file, 0o600);
  };
  for (
    const [content, message] of [
      ["short\n", /shorter than 16 characters/],
      [`${TOKEN_A}\n${TOKEN_B}\n`, /more than one line/],
      [`${TOKEN_A} trailing\n`, /holds a space/],
      ["", /shorter than 16/],
    ] as const
  ) {
    await write(content);
    await assert.rejects(readClientToken(file), (error: Error) => {
      assert.ok(error instanceof FileError);
      assert.match(error.message, message);
      assert.ok(!error.message.includes(TOKEN_A.slice(0, 16)), "no token in the message");
      return true;
    });
  }
  await assert.rejects(readClientToken(`${dir}/missing`), FileError, "no such file");
});

Deno.test("tokens: ACCIO_TOKEN when no token file is given; the file wins over it", async () => {
  const saved = Deno.env.get(TOKEN_ENV);
  try {
    Deno.env.delete(TOKEN_ENV);
    assert.equal(await readClientToken(), undefined);
    Deno.env.set(TOKEN_ENV, TOKEN_B);
    assert.deepEqual(await readClientToken(), { token: TOKEN_B, source: TOKEN_ENV });
    const dir = await tempDir();
    await Deno.writeTextFile(`${dir}/token`, TOKEN_A, { mode: 0o600 });
    await Deno.chmod(`${dir}/token`, 0o600);
    assert.equal((await readClientToken(`${dir}/token`))?.token, TOKEN_A);
    Deno.env.set(TOKEN_ENV, "short");
    await assert.rejects(
      readClientToken(),
      UsageError,
      "the token in ACCIO_TOKEN is unusable: shorter than 16",
    );
  } finally {
    if (saved === undefined) Deno.env.delete(TOKEN_ENV);
    else Deno.env.set(TOKEN_ENV, saved);
  }
});

Deno.test("tokens: token header lines are recognised for redaction", () => {
  assert.ok(isTokenLine(`token: ${TOKEN_A}`));
  assert.ok(isTokenLine(new TextEncoder().encode(`Token:${TOKEN_A}`)));
  assert.ok(isTokenLine(" token : x"));
  assert.ok(!isTokenLine("name: token.csv"));
  assert.ok(!isTokenLine("tokens: 3"));
});

Deno.test("tokens: an identity's names stay in its folder: .. and absolute names are refused", () => {
  assert.deepEqual(identityPath("sensor-a", "floor2/temp.csv"), ["sensor-a", "floor2", "temp.csv"]);
  assert.deepEqual(
    identityPath("sensor-a", "sensor-b/x"),
    ["sensor-a", "sensor-b", "x"],
    "never sensor-b's folder",
  );
  for (const name of ["../sensor-b/x", "/sensor-b/x", "a/../../sensor-b/x", "./x", "a//b", "..", ""]) {
    assert.throws(() => identityPath("sensor-a", name), ProtocolError, name);
  }
  assert.throws(() => identityPath("../x", "y"), ProtocolError, "not a folder name");
});

Deno.test("address limit: at most N at once per address; release frees one, once", () => {
  const limit = new AddressLimit(2);
  const a1 = limit.tryAcquire("192.0.2.1")!;
  const a2 = limit.tryAcquire("192.0.2.1")!;
  assert.equal(limit.tryAcquire("192.0.2.1"), undefined);
  assert.ok(limit.tryAcquire("192.0.2.2"), "another address is not affected");
  a1();
  a1();
  assert.equal(limit.openFrom("192.0.2.1"), 1);
  assert.ok(limit.tryAcquire("192.0.2.1"));
  assert.equal(limit.tryAcquire("192.0.2.1"), undefined);
  a2();
  assert.deepEqual(limit.stats, { addresses: 2, refused: 2 });
  assert.throws(() => new AddressLimit(0), RangeError);
});

Deno.test("address keys: IPv4 and IPv4-mapped alike; IPv6 by prefix", () => {
  assert.equal(addressKey("192.0.2.7"), "192.0.2.7");
  assert.equal(addressKey("::ffff:192.0.2.7"), "192.0.2.7");
  assert.equal(addressKey("[::ffff:192.0.2.7]"), "192.0.2.7");
  assert.equal(addressKey("2001:db8::7"), "2001:db8:0:0:0:0:0:7");
  assert.equal(addressKey("2001:DB8:0:0:1:2:3:4", 64), "2001:db8:0:0::/64");
  assert.equal(addressKey("2001:db8::1:2:3:4", 64), addressKey("2001:db8:0:0:ffff::1", 64));
  assert.equal(addressKey("fe80::1%eth0", 64), "fe80:0:0:0::/64");
  assert.equal(addressKey("::1"), "0:0:0:0:0:0:0:1");
  assert.equal(addressKey("not:an:address:::"), "not:an:address:::");
});

Deno.test("back-off: free failures, then doubling waits up to the cap, attempts queued, then refused", () => {
  const now = 0;
  const backoff = new FailureBackoff({ freeFailures: 3, baseMs: 100, capMs: 1_000, now: () => now });
  const key = "192.0.2.1";
  for (let i = 0; i < 3; i++) backoff.recordFailure(key);
  assert.equal(backoff.delayMs(key), 100);
  assert.equal(backoff.admit(key), 0, "the first attempt after the free ones goes at once...");
  assert.equal(backoff.admit(key), 100, "...the next queues behind it");
  for (let i = 0; i < 4; i++) backoff.recordFailure(key);
  assert.equal(backoff.delayMs(key), 1_000, "100 * 2^4 capped at 1000");
  assert.equal(backoff.admit(key), 200);
  assert.equal(backoff.admit(key), undefined, "a wait past the cap (1200 > 1000) is refused at once");
  assert.equal(backoff.admit("192.0.2.2"), 0, "another address is not affected");
  assert.deepEqual(backoff.stats, { failures: 7, delayed: 2, refused: 1, tracked: 1 });
});

Deno.test("back-off: failures decay with the half-life, and are forgotten", () => {
  let now = 0;
  const backoff = new FailureBackoff({ freeFailures: 2, baseMs: 100, halfLifeMs: 1_000, now: () => now });
  for (let i = 0; i < 6; i++) backoff.recordFailure("a");
  assert.equal(backoff.delayMs("a"), 1_600);
  now = 1_000; // 3 failures left
  assert.equal(backoff.delayMs("a"), 200);
  now = 3_000; // 0.75 left: free again
  assert.equal(backoff.delayMs("a"), 0);
  now = 20_000;
  assert.equal(backoff.admit("a"), 0);
  assert.equal(backoff.stats.tracked, 0, "forgotten");
});

Deno.test("back-off: memory stays bounded with many addresses", () => {
  const backoff = new FailureBackoff({ maxTracked: 100 });
  for (let i = 0; i < 10_000; i++) backoff.recordFailure(`10.0.${i >> 8}.${i & 255}`);
  assert.equal(backoff.stats.tracked, 100);
  assert.equal(backoff.delayMs("10.0.0.0"), 0, "the least recent failures were forgotten first");
  assert.ok(backoff.stats.failures === 10_000);
});

/**
 * A token checker on loopback, shaped like the server's: the back-off wait
 * (or refusal) before the token is checked, `ok` or `error unauthorized`.
 */
function tokenServer(
  table: TokenTable,
  backoff: FailureBackoff,
): { listener: Deno.TcpListener; done: Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serve = async (conn: Deno.Conn) => {
    const key = addressKey((conn.remoteAddr as Deno.NetAddr).hostname, 64);
    const buffer = new Uint8Array(1024);
    const n = await conn.read(buffer).catch(() => null);
    const token = n === null ? "" : new TextDecoder().decode(buffer.subarray(0, n)).trim();
    const wait = backoff.admit(key);
    if (wait === undefined) {
      await conn.write(new TextEncoder().encode(`error ${UNAUTHORIZED}: too many failed attempts\r\n`)).catch(
        () => {},
      );
    } else {
      await delay(wait);
      const identity = table.verify(token);
      if (identity === undefined) backoff.recordFailure(key);
      await conn.write(
        new TextEncoder().encode(identity ? `ok ${identity}\r\n` : `error ${UNAUTHORIZED}\r\n`),
      )
        .catch(() => {});
    }
    conn.close();
  };
  const done = (async () => {
    const serving = new Set<Promise<void>>();
    for await (const conn of listener) {
      const one = serve(conn).finally(() => serving.delete(one));
      serving.add(one);
    }
    await Promise.all(serving);
  })();
  return { listener, done };
}

/** One attempt from `localAddress`: the server's answer and how long it took. */
function attempt(port: number, localAddress: string, token: string): Promise<{ answer: string; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port, localAddress });
    let answer = "";
    socket.on("connect", () => socket.write(`${token}\n`));
    socket.on("data", (chunk) => answer += chunk);
    socket.on("error", reject);
    socket.on("close", () => resolve({ answer: answer.trim(), ms: performance.now() - started }));
  });
}

Deno.test("back-off over loopback: 200 failed attempts from one address slow down; another address is served", async () => {
  const table = TokenTable.parse(`sensor-a:${tokenDigest(TOKEN_A)}\n`, "tokens");
  const backoff = new FailureBackoff({ freeFailures: 3, baseMs: 40, capMs: 320 });
  const server = tokenServer(table, backoff);
  const port = server.listener.addr.port;
  try {
    // Sequential failures: 3 free, then each evaluation waits 40, 80, 160, 320, 320 ms after the one before.
    const durations: number[] = [];
    let fourthStarted = 0;
    for (let i = 0; i < 9; i++) {
      if (i === 3) fourthStarted = performance.now();
      const { answer, ms } = await attempt(port, "127.0.0.1", "wrong-token-0123456789");
      assert.equal(answer, `error ${UNAUTHORIZED}`);
      durations.push(ms);
    }
    const slowedFor = performance.now() - fourthStarted;
    assert.ok(slowedFor >= 920 - 5, `attempts 4-9 took ${slowedFor} ms, at least 40+80+160+320+320`);
    assert.ok(Math.max(...durations) < 320 + 5_000, `no attempt waits much past the cap: ${durations}`);
    // A burst: 191 more at once. They queue one behind the other; past the cap they are refused at once.
    const burst = await Promise.all(
      Array.from({ length: 191 }, () => attempt(port, "127.0.0.1", "wrong-token-0123456789")),
    );
    const refused = burst.filter((r) => r.answer.endsWith("too many failed attempts")).length;
    assert.ok(refused >= 100, `${refused} of 191 refused at once`);
    assert.ok(burst.every((r) => r.answer.startsWith(`error ${UNAUTHORIZED}`)));
    // Meanwhile another address is served at once, and its good token works.
    const other = await attempt(port, "127.0.0.2", TOKEN_A);
    assert.equal(other.answer, "ok sensor-a");
    assert.ok(backoff.delayMs(addressKey("127.0.0.2")) === 0);
    const { failures, refused: refusedCount } = backoff.stats;
    assert.equal(failures + refusedCount, 200);
  } finally {
    server.listener.close();
    await server.done;
  }
});

Deno.test("tokens: without the permission to read ACCIO_TOKEN, the client counts it as unset (no prompt)", async () => {
  const script = `import { readClientToken } from "${new URL("../lib/tokens.ts", import.meta.url).href}";
console.log(JSON.stringify(await readClientToken() ?? null));`;
  const file = `${await tempDir()}/read_token.ts`;
  await Deno.writeTextFile(file, script);
  const run = async (permissions: string[]) => {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", ...permissions, file],
      env: { [TOKEN_ENV]: TOKEN_A },
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(30_000),
    }).output();
    assert.ok(output.success, new TextDecoder().decode(output.stderr));
    return new TextDecoder().decode(output.stdout).trim();
  };
  assert.equal(await run(["--no-prompt", "--allow-read"]), "null");
  assert.equal(
    await run(["--no-prompt", "--allow-read", `--allow-env=${TOKEN_ENV}`]),
    JSON.stringify({ token: TOKEN_A, source: TOKEN_ENV }),
  );
});

Deno.test("back-off defaults: 5 free failures, then 100 ms doubling, capped at 5 s", () => {
  const backoff = new FailureBackoff({ now: () => 0 });
  const delays: number[] = [];
  for (let i = 0; i < 12; i++) {
    delays.push(backoff.delayMs("a"));
    backoff.recordFailure("a");
  }
  assert.deepEqual(delays, [0, 0, 0, 0, 0, 100, 200, 400, 800, 1_600, 3_200, 5_000]);
});
