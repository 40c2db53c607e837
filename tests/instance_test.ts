/**
 * `server --instance ID`: uploads go to FILE-DIR/ID/ (made if missing), numbered
 * there on their own; a bad ID is a usage error that touches nothing.
 */
import assert from "node:assert/strict";
import { bytes } from "./support/encoding.ts";
import { listDir, tempDir, waitForFile } from "./support/files.ts";
import { spawnProgram, startServer } from "./support/process.ts";
import { rawUpload } from "./support/raw_upload.ts";
import { freePort } from "./support/wire.ts";

Deno.test("--instance: two instances on one FILE-DIR, each in its own sub-directory and numbering", async () => {
  const dir = await tempDir();
  await using gw1 = await startServer("server", { dir, extra: ["--instance", "gw1"] });
  await using gw2 = await startServer("server", { dir, extra: ["--instance", "gw2"] });
  await rawUpload(gw1.port, bytes("one"));
  await rawUpload(gw2.port, bytes("two"));
  await waitForFile(`${dir}/gw1`, 1);
  await waitForFile(`${dir}/gw2`, 1);
  assert.equal(await Deno.readTextFile(`${dir}/gw1/1.file`), "one");
  assert.equal(await Deno.readTextFile(`${dir}/gw2/1.file`), "two");
  assert.deepEqual(await listDir(dir), ["gw1", "gw2"]);
  assert.match(gw1.proc.stderr, new RegExp(`saving to ${dir}/gw1 from 1\\.file`));
});

Deno.test("--instance: an ID with '/' or a leading '.' is a usage error (exit 2), nothing created", async () => {
  const dir = await tempDir();
  for (const id of ["../x", ".hidden", ""]) {
    const proc = spawnProgram("server", ["--instance", id, String(freePort()), dir]);
    const status = await proc.wait(15_000);
    assert.equal(status.code, 2, proc.stderr);
    assert.match(proc.stderr, /ERROR: invalid instance name/);
  }
  assert.deepEqual(await listDir(dir), []);
});
