/**
 * The standalone executables: `deno task compile` builds `dist/server`,
 * `dist/client` and `dist/server-s`, and they work like the scripts. Compiling
 * needs Deno's `denort` runtime, downloaded by `deno compile` or named by
 * `DENORT_BIN`; where neither is possible these tests say so and skip.
 */
import assert from "node:assert/strict";
import { fileSha256 } from "../lib/file_hash.ts";
import { makeFile, tempDir } from "./support/files.ts";
import { Proc, ROOT } from "./support/process.ts";
import { waitFor } from "./support/wait.ts";
import { freePort } from "./support/wire.ts";

async function compile(): Promise<{ ok: true } | { ok: false; why: string }> {
  const result = await new Deno.Command(Deno.execPath(), {
    args: ["task", "compile"],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (result.success) return { ok: true };
  const stderr = new TextDecoder().decode(result.stderr);
  if (/denort|dns error|lookup|download|network|dl\.deno\.land|No such file/i.test(stderr)) {
    return {
      ok: false,
      why: `deno compile could not get the denort runtime (offline: set DENORT_BIN=/path/to/denort): ${
        stderr.split("\n").findLast((l) => /dns|lookup|download|denort/i.test(l))?.trim() ?? "no detail"
      }`,
    };
  }
  throw new Error(`deno task compile failed:\n${stderr}`);
}

const outcome = await compile();
if (!outcome.ok) console.log(`SKIPPED compiled-binary tests: ${outcome.why}`);

Deno.test({
  name: "compiled server, client and server-s upload and count a file",
  ignore: !outcome.ok,
  async fn() {
    const work = await tempDir();
    const saved = await tempDir();
    const source = await makeFile(work, "data.bin", 1024 * 1024 + 1, 21);
    const port = freePort();
    await using server = new Proc(`${ROOT}dist/server`, [String(port), saved]);
    await waitFor(() => server.stderr.includes("listening"), 10_000, "the compiled server");
    await using client = new Proc(`${ROOT}dist/client`, ["127.0.0.1", String(port), source]);
    assert.equal((await client.wait()).code, 0, client.stderr);
    assert.equal(await fileSha256(`${saved}/1.file`), await fileSha256(source));
    assert.equal((await server.stop("SIGTERM")).code, 0);

    const countPort = freePort();
    await using counter = new Proc(`${ROOT}dist/server-s`, [String(countPort)]);
    await waitFor(() => counter.stderr.includes("listening"), 10_000, "the compiled server-s");
    await using client2 = new Proc(`${ROOT}dist/client`, [
      "--handshake",
      "double",
      "::1",
      String(countPort),
      source,
    ]);
    assert.equal((await client2.wait()).code, 0, client2.stderr);
    await waitFor(() => counter.stdout.includes("\n"), 5_000, "the count");
    assert.equal(counter.stdout, `${1024 * 1024 + 1}\n`);
  },
});

Deno.test({
  name: "compiled client rejects a bad port with ERROR: like the script",
  ignore: !outcome.ok,
  async fn() {
    await using client = new Proc(`${ROOT}dist/client`, ["127.0.0.1", "65536", "/etc/hostname"]);
    assert.equal((await client.wait()).code, 2);
    assert.match(client.stderr, /^ERROR: invalid port "65536"/);
  },
});
