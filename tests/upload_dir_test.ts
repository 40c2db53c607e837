/**
 * The upload directory across restarts: numbering over odd and huge entries,
 * start-up repair of leftover temporary files that it must never follow or
 * write through, and the lock that keeps a second server off a directory.
 * Checked from outside: the real server over loopback.
 */
import assert from "node:assert/strict";
import { bytes, text } from "./support/encoding.ts";
import { listDir, tempDir } from "./support/files.ts";
import { spawnProgram, startServer } from "./support/process.ts";
import { rawUpload } from "./support/raw_upload.ts";
import { waitFor } from "./support/wait.ts";
import { connect, freePort, readToEnd, recvExactly } from "./support/wire.ts";
import { UploadDirectory } from "../lib/upload_dir.ts";

const MAX = Number.MAX_SAFE_INTEGER; // 9007199254740991

/** Starts a server that is expected to refuse to start; returns its exit code and stderr. */
async function refusedStart(dir: string): Promise<{ code: number; stderr: string }> {
  const proc = spawnProgram("server", [String(freePort()), dir]);
  const status = await proc.wait(15_000);
  return { code: status.code, stderr: proc.stderr };
}

/** Uploads `count` small files, one after another, and waits until no temporary file is left. */
async function uploadMany(port: number, dir: string, count: number, tag: string): Promise<void> {
  for (let i = 0; i < count; i++) await rawUpload(port, bytes(`${tag} ${i}`));
  await waitFor(
    async () => (await listDir(dir)).filter((n) => n.startsWith(".")).length === 0,
    5_000,
    "no temporary file left",
  );
}

/** A FIFO at `path` (opening one for writing blocks until a reader comes: repair must never do that). */
async function mkfifo(path: string): Promise<void> {
  const made = await new Deno.Command("mkfifo", { args: [path] }).output();
  assert.ok(made.success, "mkfifo failed");
}

Deno.test("numbering: huge N.file entries that are not regular files are ignored; 5 of 5 uploads stored", async () => {
  const dir = await tempDir();
  await Deno.mkdir(`${dir}/99999999999999999999.file`);
  await Deno.mkdir(`${dir}/9007199254740993.file`);
  await Deno.symlink("/nonexistent", `${dir}/9007199254740995.file`);
  {
    await using server = await startServer("server", { dir });
    await uploadMany(server.port, dir, 5, "after huge");
  }
  for (let n = 1; n <= 5; n++) {
    assert.equal(await Deno.readTextFile(`${dir}/${n}.file`), `after huge ${n - 1}`);
  }
});

Deno.test("numbering: a regular file above 2^53 - 1 stops the start with one ERROR: line", async () => {
  for (const name of ["9007199254740993.file", "99999999999999999999.file"]) {
    const dir = await tempDir();
    await Deno.writeTextFile(`${dir}/${name}`, "someone's upload");
    const { code, stderr } = await refusedStart(dir);
    assert.notEqual(code, 0, `started over ${name}`);
    assert.equal(stderr.split("\n").filter((l) => l.startsWith("ERROR:")).length, 1, stderr);
    assert.match(stderr, new RegExp(`^ERROR: cannot use directory ".*": .*${name.replace(".", "\\.")}`, "m"));
    assert.equal(await Deno.readTextFile(`${dir}/${name}`), "someone's upload");
  }
});

Deno.test("numbering: any entry N.file up to 2^53 - 1 counts as used, and no number above it is handed out", async () => {
  const dir = await tempDir();
  await Deno.mkdir(`${dir}/${MAX - 1}.file`); // a directory still holds its number
  {
    await using server = await startServer("server", { dir });
    await rawUpload(server.port, bytes("the last number"));
    assert.equal(await Deno.readTextFile(`${dir}/${MAX}.file`), "the last number");
    // No number is left: the connection is closed before accio\r\n, and the server says why.
    const conn = await connect(server.port);
    const got = await readToEnd(conn, 5_000);
    conn.close();
    assert.ok(got === "reset" || got.length === 0, `got a greeting: ${got === "reset" ? got : text(got)}`);
    await waitFor(() => server.proc.stderr.includes("no upload number left"), 5_000, "the log line");
    assert.ok(!server.proc.exited, "the server stopped");
  }
  assert.deepEqual(await listDir(dir), [`${MAX - 1}.file`, `${MAX}.file`]);
});

Deno.test("numbering: leading zeros count (03.file is number 3)", async () => {
  const dir = await tempDir();
  await Deno.writeTextFile(`${dir}/03.file`, "old");
  {
    await using server = await startServer("server", { dir });
    await rawUpload(server.port, bytes("new"));
  }
  assert.equal(await Deno.readTextFile(`${dir}/4.file`), "new");
  assert.equal(await Deno.readTextFile(`${dir}/03.file`), "old");
});

Deno.test("repair: a symlinked .part is removed, never written through", async () => {
  const dir = await tempDir();
  const outside = await tempDir();
  await Deno.writeTextFile(`${outside}/precious`, "outside the upload directory");
  await Deno.symlink(`${outside}/precious`, `${dir}/.2.file.part`);
  await Deno.symlink(`${outside}/missing`, `${dir}/.3.file.part`);
  {
    await using server = await startServer("server", { dir });
    await rawUpload(server.port, bytes("after"));
  }
  assert.equal(await Deno.readTextFile(`${outside}/precious`), "outside the upload directory");
  assert.deepEqual(await listDir(outside), ["precious"]);
  assert.deepEqual(await listDir(dir), ["4.file"]);
  assert.equal(await Deno.readTextFile(`${dir}/4.file`), "after");
});

Deno.test("repair: a .part hard-linked to a stored file leaves that file intact", async () => {
  const dir = await tempDir();
  await Deno.writeTextFile(`${dir}/1.file`, "stored");
  await Deno.link(`${dir}/1.file`, `${dir}/.5.file.part`);
  {
    await using server = await startServer("server", { dir });
    await rawUpload(server.port, bytes("after"));
  }
  assert.equal(await Deno.readTextFile(`${dir}/1.file`), "stored");
  assert.deepEqual(await listDir(dir), ["1.file", "6.file"]);
});

Deno.test("repair: a kill between publishing a named upload and removing its .part keeps the named file", async () => {
  const dir = await tempDir();
  await Deno.mkdir(`${dir}/sub`);
  await Deno.writeTextFile(`${dir}/sub/named.csv`, "complete named upload");
  await Deno.link(`${dir}/sub/named.csv`, `${dir}/.1.file.part`); // the state a kill -9 leaves there
  {
    await using server = await startServer("server", { dir, extra: ["--names"] });
    await rawUpload(server.port, bytes("after"));
  }
  assert.equal(await Deno.readTextFile(`${dir}/sub/named.csv`), "complete named upload");
  assert.deepEqual(await listDir(dir), ["2.file", "sub"], "number 1 got a second file");
});

Deno.test("repair: an odd leftover name (.05.file.part) is repaired once; every later start works", async () => {
  const dir = await tempDir();
  await Deno.writeTextFile(`${dir}/.05.file.part`, "cut off");
  for (let start = 0; start < 2; start++) {
    await using server = await startServer("server", { dir });
    await rawUpload(server.port, bytes(`start ${start}`));
  }
  assert.deepEqual(await listDir(dir), ["5.file", "6.file", "7.file"]);
  assert.equal(await Deno.readTextFile(`${dir}/5.file`), "ERROR");
});

Deno.test("repair: a directory, a FIFO or a leftover server temporary never stops the start", async () => {
  const dir = await tempDir();
  await Deno.mkdir(`${dir}/.3.file.part`);
  await Deno.writeTextFile(`${dir}/.3.file.part/inside`, "x");
  await Deno.mkdir(`${dir}/.8.file.part`);
  await mkfifo(`${dir}/.4.file.part`);
  await Deno.writeTextFile(`${dir}/.accio-probe-XYZ`, "");
  {
    await using server = await startServer("server", { dir });
    await rawUpload(server.port, bytes("after"));
  }
  const names = await listDir(dir);
  assert.ok(!names.includes(".4.file.part") && !names.includes(".8.file.part"), names.join(" "));
  assert.ok(!names.includes(".accio-probe-XYZ"), names.join(" "));
  assert.equal(await Deno.readTextFile(`${dir}/9.file`), "after");
  assert.equal(
    await Deno.readTextFile(`${dir}/.3.file.part/inside`),
    "x",
    "a leftover's contents were touched",
  );
});

Deno.test("repair: a regular .part still becomes ERROR and the complete N.file beside it is kept", async () => {
  const dir = await tempDir();
  await Deno.writeTextFile(`${dir}/.2.file.part`, "cut off");
  await Deno.writeTextFile(`${dir}/3.file`, "complete");
  await Deno.writeTextFile(`${dir}/.3.file.part`, "leftover of a finished upload");
  {
    await using server = await startServer("server", { dir });
    assert.match(server.proc.stderr, /recorded ERROR for uploads cut off by an earlier run: 2\.file\n/);
    await rawUpload(server.port, bytes("after"));
  }
  assert.deepEqual(await listDir(dir), ["2.file", "3.file", "4.file"]);
  assert.equal(await Deno.readTextFile(`${dir}/2.file`), "ERROR");
  assert.equal(await Deno.readTextFile(`${dir}/3.file`), "complete");
});

Deno.test("lock: a second server on the same directory is refused with one ERROR: line; the first keeps serving", async () => {
  const dir = await tempDir();
  await using first = await startServer("server", { dir });
  // An upload in flight on the first server: the second must not "repair" its temporary file.
  const inFlight = await connect(first.port);
  try {
    await recvExactly(inFlight, 7);
    await waitFor(async () => (await listDir(dir)).includes(".1.file.part"), 5_000, "the upload to start");
    for (const path of [dir, `${dir}/`, `${dir}/../${dir.split("/").at(-1)}`]) {
      const { code, stderr } = await refusedStart(path);
      assert.notEqual(code, 0);
      const errors = stderr.split("\n").filter((l) => l.startsWith("ERROR:"));
      assert.equal(errors.length, 1, stderr);
      assert.match(errors[0], /^ERROR: cannot use directory ".+": another server is using it/);
      assert.ok(errors[0].includes(path), errors[0]);
    }
    await inFlight.write(bytes("first server's upload"));
    await inFlight.closeWrite();
    await readToEnd(inFlight, 10_000);
  } finally {
    inFlight.close();
  }
  await rawUpload(first.port, bytes("still serving"));
  assert.equal(await Deno.readTextFile(`${dir}/1.file`), "first server's upload");
  assert.equal(await Deno.readTextFile(`${dir}/2.file`), "still serving");
  await first.proc.stop("SIGTERM");
  await using next = await startServer("server", { dir });
  await rawUpload(next.port, bytes("after the first stopped"));
  assert.equal(await Deno.readTextFile(`${dir}/3.file`), "after the first stopped");
});

Deno.test("lock: a server killed with -9 releases the directory", async () => {
  const dir = await tempDir();
  {
    await using killed = await startServer("server", { dir });
    await rawUpload(killed.port, bytes("before the kill"));
    await killed.proc.stop("SIGKILL");
  }
  await using next = await startServer("server", { dir });
  await rawUpload(next.port, bytes("after the kill"));
  assert.equal(await Deno.readTextFile(`${dir}/2.file`), "after the kill");
});

Deno.test("UploadFile.fail never writes an inode that has another name, nor a published upload", async () => {
  const dir = await tempDir();
  const directory = await UploadDirectory.open(dir);
  try {
    const linked = await directory.createNext();
    await linked.write(bytes("precious"));
    await Deno.link(`${dir}/.1.file.part`, `${dir}/elsewhere`); // its inode gained a name
    assert.equal(await linked.fail(), undefined);
    assert.equal(await Deno.readTextFile(`${dir}/elsewhere`), "precious");
    assert.equal(await Deno.readTextFile(`${dir}/1.file`), "ERROR");
    const saved = await directory.createNext();
    await saved.write(bytes("saved"));
    await saved.commit();
    assert.match((await saved.fail()) ?? "", /already saved/);
    assert.equal(await Deno.readTextFile(`${dir}/2.file`), "saved");
    assert.deepEqual(await listDir(dir), ["1.file", "2.file", "elsewhere"]);
  } finally {
    directory.close();
  }
});
