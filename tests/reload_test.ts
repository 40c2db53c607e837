/**
 * SIGHUP on the server: a reload of what it can read again, never a stop.
 * With nothing to reload it says so and goes on serving.
 */
import assert from "node:assert/strict";
import { bytes } from "./support/encoding.ts";
import { startServer } from "./support/process.ts";
import { rawUpload } from "./support/raw_upload.ts";
import { waitFor } from "./support/wait.ts";

Deno.test("server: SIGHUP with nothing to reload is logged and the server goes on serving", async () => {
  await using server = await startServer("server");
  server.proc.child.kill("SIGHUP");
  await waitFor(
    () => /SIGHUP: nothing to reload/.test(server.proc.stderr) || server.proc.exited,
    5_000,
    "the log line",
  );
  assert.equal(server.proc.exited, false, `the server exited on SIGHUP: ${server.proc.stderr}`);
  await rawUpload(server.port, bytes("after the SIGHUP"));
  assert.equal(await Deno.readTextFile(`${server.dir}/1.file`), "after the SIGHUP");
});
