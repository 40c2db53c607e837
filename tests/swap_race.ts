/**
 * A race for named uploads: a hostile local process (tests/peers/swapper.py)
 * keeps moving FILE-DIR/sub aside and putting a symbolic link to a directory
 * outside FILE-DIR in its place while named uploads into sub/ run. Used by
 * tests/named_swap_test.ts and the fault suite.
 *
 * @module
 */
import assert from "node:assert/strict";
import { bytes, text } from "./support/encoding.ts";
import { tempDir } from "./support/files.ts";
import { Proc, ROOT, spawnPeer } from "./support/process.ts";
import { doubleHandshake } from "./support/raw_upload.ts";
import { delay, waitFor } from "./support/wait.ts";
import { connect, freePort, readToEnd, sendAll } from "./support/wire.ts";

/** Every regular file under `dir`, found without following symbolic links, by base name. */
async function filesUnder(dir: string, found = new Map<string, string[]>()): Promise<Map<string, string[]>> {
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) await filesUnder(path, found);
    else if (entry.isFile) found.set(entry.name, [...found.get(entry.name) ?? [], path]);
  }
  return found;
}

/** Every entry under `dir` (recursively, links not followed), as paths. */
async function entriesUnder(dir: string): Promise<string[]> {
  const all: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    all.push(path);
    if (entry.isDirectory) all.push(...await entriesUnder(path));
  }
  return all;
}

/** One named upload whose data follows its header after a pause (the window a swap needs). */
async function slowNamedUpload(port: number, name: string, data: Uint8Array): Promise<string> {
  const conn = await connect(port);
  try {
    await doubleHandshake(conn);
    await sendAll(conn, bytes(`confirm-accio-again\r\nname: ${name}\r\n\r\n`));
    await delay(2);
    await sendAll(conn, data).catch(() => {});
    await conn.closeWrite().catch(() => {});
    const reply = await readToEnd(conn, 10_000).catch(() => "reset" as const);
    return reply === "reset" ? reply : text(reply);
  } finally {
    conn.close();
  }
}

/**
 * Runs named uploads into sub/ while the swapper races and checks the promise: every `ok` is inside
 * with its bytes, no byte of an upload is outside; with `exact`, nothing at all is created outside.
 */
export async function raceSwapper(
  port: number,
  dir: string,
  exact: boolean,
  seconds = 4,
): Promise<{ ok: number; refused: number; swaps: string; escaped: number }> {
  const outside = await tempDir();
  await Deno.mkdir(`${dir}/sub`);
  await using swapper = spawnPeer("swapper.py", [dir, outside, String(seconds)]);
  const sent = new Map<string, Uint8Array>();
  let next = 0;
  let refused = 0;
  await Promise.all(Array.from({ length: 6 }, async () => {
    while (!swapper.exited) {
      const i = next++;
      const leaf = `f-${i}`;
      const name = i % 2 ? `sub/${leaf}` : `sub/deep${i % 5}/${leaf}`;
      const data = bytes(`upload ${i} ${crypto.randomUUID()}`);
      const reply = await slowNamedUpload(port, name, data);
      if (reply === "ok\r\n") sent.set(leaf, data);
      else refused++;
    }
  }));
  const status = await swapper.wait(10_000);
  assert.ok(status.success, swapper.stderr);
  const escaped = await entriesUnder(outside);
  if (exact) assert.deepEqual(escaped, [], `${escaped.length} entries created outside FILE-DIR`);
  for (const path of escaped) {
    const info = await Deno.lstat(path);
    assert.ok(
      info.isDirectory || info.size === 0,
      `${path}: ${info.size} bytes of an upload outside FILE-DIR`,
    );
  }
  const inside = await filesUnder(dir);
  for (const [leaf, data] of sent) {
    const copies = inside.get(leaf) ?? [];
    assert.equal(copies.length, 1, `ok receipt for ${leaf}, but ${copies.length} files of that name inside`);
    assert.deepEqual(await Deno.readFile(copies[0]), data, `${copies[0]} differs from what was sent`);
  }
  assert.ok(sent.size > 0, "no upload succeeded while racing");
  // Every connection that did not get ok left its number as ERROR: one file per connection.
  // (An ERROR is published just after its connection closes: give that a bounded moment.)
  const numberedNow = () => [...Deno.readDirSync(dir)].filter((e) => /^[0-9]+\.file$/.test(e.name));
  await waitFor(() => numberedNow().length >= refused, 5_000, `${refused} ERROR files`).catch(() => {});
  const numbered = numberedNow();
  assert.equal(numbered.length, refused, "numbered files differ from the connections that failed");
  for (const e of numbered) assert.equal(text(await Deno.readFile(`${dir}/${e.name}`)), "ERROR", e.name);
  return { ok: sent.size, refused, swaps: swapper.stdout.trim(), escaped: escaped.length };
}

/** `server --names` run with --allow-all: Deno opens /proc/self/fd only then, so directories are held open. */
export async function startHeldServer(dir: string): Promise<{ proc: Proc; port: number }> {
  const port = freePort();
  const proc = new Proc(Deno.execPath(), [
    "run",
    "--allow-all",
    `${ROOT}server.ts`,
    "--names",
    String(port),
    dir,
  ]);
  await waitFor(() => proc.stderr.includes("listening on") || proc.exited, 15_000, "the server to listen");
  assert.ok(!proc.exited, proc.stderr);
  assert.doesNotMatch(proc.stderr, /fd is not available/, "the server did not hold descriptors");
  return { proc, port };
}
