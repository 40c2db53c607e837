/**
 * Named uploads against a hostile local process that, while uploads run,
 * keeps moving FILE-DIR/sub aside and putting a symbolic link to a directory
 * outside FILE-DIR in its place (tests/swap_race.ts). Whatever the timing,
 * no upload's bytes may land outside FILE-DIR, and every `ok` receipt must
 * match a file inside FILE-DIR with exactly the bytes sent.
 */
import assert from "node:assert/strict";
import { bytes, text } from "./support/encoding.ts";
import { tempDir } from "./support/files.ts";
import { ROOT } from "./support/process.ts";
import { rawDoubleUpload } from "./support/raw_upload.ts";
import { freePort } from "./support/wire.ts";
import { raceSwapper, startHeldServer } from "./swap_race.ts";

Deno.test("named upload under a racing directory swapper (directories held open): nothing lands outside", async () => {
  const dir = await tempDir();
  const { proc, port } = await startHeldServer(dir);
  await using _ = proc;
  const counts = await raceSwapper(port, dir, true);
  console.log(`held: ${counts.ok} ok, ${counts.refused} refused, ${counts.swaps} swaps`);
});

// Without /proc/self/fd (Deno opens it only under --allow-all) a swap could beat any check by path:
// the server refuses --names rather than fall back.
Deno.test("server --names without --allow-all refuses to start, with one ERROR line", async () => {
  const dir = await tempDir();
  const args = ["run", "--allow-net", "--allow-read", "--allow-write", `${ROOT}server.ts`, "--names"];
  const out = await new Deno.Command(Deno.execPath(), {
    args: [...args, String(freePort()), dir],
    stdout: "null",
    stderr: "piped",
  }).output();
  const stderr = text(out.stderr);
  assert.equal(out.code, 1, stderr);
  assert.match(stderr, /^ERROR: .*named uploads need \/proc\/self\/fd.*--allow-all/m);
  assert.equal(stderr.match(/^ERROR:/gm)?.length, 1, stderr);
  assert.deepEqual([...Deno.readDirSync(dir)], []);
});

Deno.test("named upload with held directories: names in the root and below, one after another", async () => {
  const dir = await tempDir();
  const { proc, port } = await startHeldServer(dir);
  await using _ = proc;
  const names = ["top.csv", "second.csv", "a/b/c.csv", "third.csv", "a/b/d.csv", "a/e.csv"];
  for (const name of names) {
    const reply = await rawDoubleUpload(
      port,
      bytes(`confirm-accio-again\r\nname: ${name}\r\n\r\n${name} data`),
    );
    assert.equal(reply === "reset" ? reply : text(reply), "ok\r\n", name);
  }
  for (const name of names) assert.equal(await Deno.readTextFile(`${dir}/${name}`), `${name} data`);
});
