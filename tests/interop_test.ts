/**
 * Interoperability with independent peers written the way the seed assignment
 * asks (Python 3, tests/peers/): our client against their servers and their
 * clients against our servers, with both handshakes.
 */
import assert from "node:assert/strict";
import { fileSha256 } from "../lib/file_hash.ts";
import { makeFile, tempDir, waitForFile } from "./support/files.ts";
import { runClient, spawnPeer, startServer } from "./support/process.ts";
import { hasCommand } from "./support/system.ts";
import { waitFor } from "./support/wait.ts";
import { freePort } from "./support/wire.ts";

const python = await hasCommand("python3");
const ignore = !python;
if (ignore) console.log("SKIPPED interop tests: python3 is not installed on this machine");

async function runSeedClient(port: number, source: string, handshake: "single" | "double"): Promise<void> {
  const flags = handshake === "double" ? ["--double"] : [];
  await using peer = spawnPeer("seed_client.py", ["127.0.0.1", String(port), source, ...flags]);
  assert.equal((await peer.wait()).code, 0, peer.stderr);
}

for (const handshake of ["single", "double"] as const) {
  Deno.test({
    name: `our client (${handshake}) -> seed server sending accio byte by byte`,
    ignore,
    async fn() {
      const work = await tempDir();
      const saved = await tempDir();
      const source = await makeFile(work, "data.bin", 3 * 1024 * 1024 + 17, 11);
      const port = freePort();
      const flags = handshake === "double" ? ["--double", "--byte-by-byte"] : ["--byte-by-byte"];
      await using peer = spawnPeer("seed_server.py", [String(port), saved, ...flags]);
      await waitFor(() => peer.stderr.includes("listening"), 10_000, "the seed server");
      const result = await runClient(["--handshake", handshake, "127.0.0.1", String(port), source]);
      assert.equal(result.code, 0, result.stderr);
      await waitForFile(saved, 1);
      assert.equal(await fileSha256(`${saved}/1.file`), await fileSha256(source));
    },
  });

  Deno.test({
    name: `our client (${handshake}) -> seed server answering "error <reason>" after the upload: exit 1`,
    ignore,
    async fn() {
      const work = await tempDir();
      const saved = await tempDir();
      const source = await makeFile(work, "data.bin", 20, 15);
      const port = freePort();
      const flags = handshake === "double" ? ["--double"] : [];
      await using peer = spawnPeer("seed_server.py", [
        String(port),
        saved,
        ...flags,
        "--refuse",
        "too large",
      ]);
      await waitFor(() => peer.stderr.includes("listening"), 10_000, "the seed server");
      const result = await runClient(["--handshake", handshake, "127.0.0.1", String(port), source]);
      assert.equal(result.code, 1, result.stderr);
      assert.equal(result.stderr, "ERROR: server refused the upload: too large\n");
      await waitForFile(saved, 1);
      assert.equal(await Deno.readTextFile(`${saved}/1.file`), "ERROR");
    },
  });

  Deno.test({
    name: `seed client (${handshake}) -> our server`,
    ignore,
    async fn() {
      const work = await tempDir();
      const source = await makeFile(work, "data.bin", 2 * 1024 * 1024 + 5, 12);
      await using server = await startServer("server");
      await runSeedClient(server.port, source, handshake);
      assert.equal(await fileSha256(`${server.dir}/1.file`), await fileSha256(source));
    },
  });

  Deno.test({
    name: `seed client (${handshake}) -> our server-s prints the byte count`,
    ignore,
    async fn() {
      const work = await tempDir();
      const size = 1024 * 1024 + 3;
      const source = await makeFile(work, "data.bin", size, 13);
      await using server = await startServer("server-s");
      await runSeedClient(server.port, source, handshake);
      await waitFor(() => server.proc.stdout.includes("\n"), 5_000, "the count");
      assert.equal(server.proc.stdout, `${size}\n`);
    },
  });
}

Deno.test({
  name: "our client against our server with the double handshake, over IPv6",
  ignore,
  async fn() {
    const work = await tempDir();
    const source = await makeFile(work, "data.bin", 512 * 1024, 14);
    await using server = await startServer("server");
    const result = await runClient(["--handshake", "double", "::1", String(server.port), source]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(await fileSha256(`${server.dir}/1.file`), await fileSha256(source));
  },
});
