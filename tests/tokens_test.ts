/**
 * Access control pieces: the tokens file (lib/tokens.ts), the client's token,
 * per-identity names, and the per-address limits and keys
 * (lib/address_limit.ts). The lock-out after failed token checks is
 * tests/auth_lockout_test.ts's, and over loopback tests/token_wire_test.ts's.
 */
import assert from "node:assert/strict";
import { addressKey, AddressLimit } from "../lib/address_limit.ts";
import { FileError, ProtocolError, UsageError } from "../lib/errors.ts";
import {
  identityPath,
  isTokenLine,
  readClientToken,
  TOKEN_ENV,
  tokenDigest,
  TokenFile,
  TokenTable,
} from "../lib/tokens.ts";
import { tempDir } from "./support/files.ts";

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
