/**
 * Tokens inside TLS, as operators are meant to run them: no
 * `--allow-plaintext-tokens` on either side. A good token uploads into its
 * identity's folder; a wrong one gets `error unauthorized` through TLS with no
 * number; a plaintext client that offers a token to the TLS port sends it
 * nowhere; the token shows in no log, upload log or metrics.
 */
import assert from "node:assert/strict";
import { tokenDigest } from "../lib/tokens.ts";
import { makeTestCerts, skipWithoutOpenssl, type TestCerts } from "./support/certs.ts";
import { listDir, tempDir } from "./support/files.ts";
import { runClient, startServer } from "./support/process.ts";
import { freePort } from "./support/wire.ts";

const ignore = await skipWithoutOpenssl("the tokens-over-TLS tests");
let certs: TestCerts | undefined;
const getCerts = async () => certs ??= await makeTestCerts();

const GOOD = "good-token-0123456789abcdef0123456789abcdef";
const WRONG = "wrong-token-0123456789abcdef0123456789abcde";

/** A tokens file naming sensor-a, token files for the good and a wrong token, and a file to send. */
async function setup() {
  const dir = await tempDir();
  await Deno.writeTextFile(`${dir}/tokens`, `sensor-a:${tokenDigest(GOOD)}\n`);
  await Deno.writeTextFile(`${dir}/good.token`, GOOD, { mode: 0o600 });
  await Deno.writeTextFile(`${dir}/wrong.token`, WRONG, { mode: 0o600 });
  await Deno.writeTextFile(`${dir}/data.csv`, "t,v\n1,2\n");
  return dir;
}

Deno.test({
  name:
    "tokens over TLS: no --allow-plaintext-tokens needed; good token stored under its identity, wrong one refused, the token nowhere",
  ignore,
}, async () => {
  const c = await getCerts();
  const dir = await setup();
  const metricsPort = freePort();
  await using server = await startServer("server", {
    extra: [
      ...["--tls-cert", c.server.cert, "--tls-key", c.server.key, "--tokens", `${dir}/tokens`, "--names"],
      ...["--verbose", "--log", `${dir}/uploads.jsonl`, "--metrics-port", String(metricsPort)],
    ],
  });
  const client = (token: string, ...rest: string[]) =>
    runClient(["--tls", "--ca", c.ca.cert, "--token-file", `${dir}/${token}`, ...rest]);
  const good = await client(
    "good.token",
    "--name",
    "site/data.csv",
    "127.0.0.1",
    `${server.port}`,
    `${dir}/data.csv`,
  );
  assert.equal(good.code, 0, good.stderr);
  assert.equal(await Deno.readTextFile(`${server.dir}/sensor-a/site/data.csv`), "t,v\n1,2\n");
  const wrong = await client("wrong.token", "127.0.0.1", `${server.port}`, `${dir}/data.csv`);
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /^ERROR: .*token/m);
  // The named upload took number 1; the refused one took none: the next upload is 2.file.
  const numbered = await client("good.token", "127.0.0.1", `${server.port}`, `${dir}/data.csv`);
  assert.equal(numbered.code, 0, numbered.stderr);
  assert.deepEqual((await listDir(server.dir)).filter((n) => n.endsWith(".file")), ["2.file"]);
  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  assert.match(metrics, /^accio_refused_total\{reason="unauthorized"\} 1$/m);
  assert.match(server.proc.stderr, / as sensor-a: saved /);
  const everything = [
    server.proc.stderr,
    await Deno.readTextFile(`${dir}/uploads.jsonl`),
    metrics,
    good.stderr,
  ];
  for (const text of [...everything, wrong.stderr]) {
    assert.ok(!text.includes(GOOD) && !text.includes(WRONG), "a token leaked");
  }
});

Deno.test({
  name:
    "tokens over TLS: a plaintext client with a token refuses to send it, and --allow-plaintext-tokens to a TLS port stores nothing",
  ignore,
}, async () => {
  const c = await getCerts();
  const dir = await setup();
  await using server = await startServer("server", {
    extra: [
      "--tls-cert",
      c.server.cert,
      "--tls-key",
      c.server.key,
      "--tokens",
      `${dir}/tokens`,
      "--timeout",
      "1",
    ],
  });
  const args = ["--token-file", `${dir}/good.token`, "127.0.0.1", `${server.port}`, `${dir}/data.csv`];
  const refused = await runClient(args);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /^ERROR: .*--allow-plaintext-tokens/m);
  const plaintext = await runClient(["--allow-plaintext-tokens", "--timeout", "2", ...args]);
  assert.equal(plaintext.code, 1);
  assert.match(plaintext.stderr, /^ERROR: .*--tls/m);
  assert.deepEqual((await listDir(server.dir)).filter((n) => !n.startsWith(".")), []);
});
