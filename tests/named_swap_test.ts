/**
 * Named uploads against a hostile local process that, while uploads run,
 * keeps moving FILE-DIR/sub aside and putting a symbolic link to a directory
 * outside FILE-DIR in its place (tests/swap_race.ts). Whatever the timing,
 * no upload's bytes may land outside FILE-DIR, and every `ok` receipt must
 * match a file inside FILE-DIR with exactly the bytes sent.
 */
import assert from "node:assert/strict";
import { bytes, rawDoubleUpload, startServer, tempDir, text } from "./helpers.ts";
import { raceSwapper, startHeldServer } from "./swap_race.ts";

Deno.test("named upload under a racing directory swapper (directories held open): nothing lands outside", async () => {
  const dir = await tempDir();
  const { proc, port } = await startHeldServer(dir);
  await using _ = proc;
  const counts = await raceSwapper(port, dir, true);
  console.log(`held: ${counts.ok} ok, ${counts.refused} refused, ${counts.swaps} swaps`);
});

// Without /proc/self/fd a swap within microseconds of a check can still leave an empty directory or an
// emptied file outside (README, Reliability); never a byte of an upload, never a wrong ok.
Deno.test("named upload under a racing directory swapper (the task's permissions): no upload byte lands outside", async () => {
  await using server = await startServer("server", { extra: ["--names"] });
  assert.match(server.proc.stderr, /named uploads: \/proc\/self\/fd is not available/);
  const counts = await raceSwapper(server.port, server.dir, false);
  console.log(
    `task permissions: ${counts.ok} ok, ${counts.refused} refused, ${counts.swaps} swaps, ` +
      `${counts.escaped} empty entries outside`,
  );
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
