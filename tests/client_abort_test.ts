/**
 * A client stopped by SIGINT, SIGTERM or SIGHUP mid-upload aborts its
 * connection with a reset (so the server records ERROR, never a truncated
 * file), prints one line and exits 130, 143 or 129. The fault suite repeats
 * this 50 times against the real server.
 */
import assert from "node:assert/strict";
import { bytes } from "./support/encoding.ts";
import { makeFile, tempDir } from "./support/files.ts";
import { spawnProgram } from "./support/process.ts";
import { readToEnd, recvExactly, sendAll, withFakeServer } from "./support/wire.ts";

const CODES = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;

for (const [signal, code] of Object.entries(CODES) as [keyof typeof CODES, number][]) {
  Deno.test(`client: ${signal} mid-upload resets the connection, prints one line, exits ${code}`, async () => {
    const work = await tempDir();
    const path = await makeFile(work, "big.bin", 64 * 1024 * 1024);
    let client: ReturnType<typeof spawnProgram> | undefined;
    const ending = await withFakeServer(async (conn) => {
      await sendAll(conn, bytes("accio\r\n"));
      await recvExactly(conn, 256 * 1024);
      client!.child.kill(signal);
      const rest = await readToEnd(conn, 15_000);
      return rest === "reset" ? "reset" : `a clean close after ${rest.length} more bytes`;
    }, async (port) => {
      client = spawnProgram("client", ["127.0.0.1", String(port), path]);
      const status = await client.wait(20_000);
      assert.equal(status.code, code, client.stderr);
      const lines = client.stderr.split("\n").filter((l) => l !== "");
      assert.equal(lines.length, 1, client.stderr);
      assert.match(lines[0], new RegExp(`^ERROR: interrupted by ${signal}: upload aborted`));
    });
    assert.equal(ending, "reset", "the server would have stored a truncated file");
    await Deno.remove(work, { recursive: true });
  });
}
