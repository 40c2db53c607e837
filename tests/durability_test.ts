/**
 * A client's exit 0 promises that the upload survives a crash of the
 * gateway: the server flushes the file's data, links its name, then flushes
 * the directory holding that name (fsync), all before it closes the
 * connection. Seen from outside with strace attached to the real server.
 */
import assert from "node:assert/strict";
import { installPackages } from "./support/debian.ts";
import { contentFile, tempDir } from "./support/files.ts";
import { Proc, runClient, startServer } from "./support/process.ts";
import { hasCommand } from "./support/system.ts";
import { waitFor } from "./support/wait.ts";

async function ensureStrace(): Promise<boolean> {
  if (await hasCommand("strace")) return true;
  const failure = await installPackages(["strace"]);
  if (failure === undefined && await hasCommand("strace")) return true;
  console.log(
    `SKIPPED: the durability tests: could not install strace (the Debian package "strace"): ${failure}`,
  );
  return false;
}

const haveStrace = await ensureStrace();

/** The server's file-system and socket calls while `act` runs, one strace line each. */
async function traced(pid: number, act: () => Promise<void>): Promise<string[]> {
  const log = `${await tempDir()}/strace.log`;
  const calls = "trace=fsync,fdatasync,linkat,renameat,renameat2,shutdown,close";
  await using tracer = new Proc("strace", ["-f", "-p", String(pid), "-yy", "-e", calls, "-o", log]);
  await waitFor(() => tracer.stderr.includes("attached") || tracer.exited, 10_000, "strace to attach");
  assert.ok(!tracer.exited, `strace could not attach: ${tracer.stderr}`);
  await act();
  await tracer.stop("SIGTERM");
  return (await Deno.readTextFile(log)).split("\n");
}

/** Checks the order: data flushed, `final` linked, its directory flushed, then the connection closed. */
function assertDurableBeforeClose(lines: string[], final: string, directory: string, port: number): void {
  const at = (test: (line: string) => boolean, from: number, what: string) => {
    const index = lines.findIndex((line, i) => i >= from && test(line));
    assert.ok(index !== -1, `no ${what} in the trace:\n${lines.join("\n")}`);
    return index;
  };
  const linked = at(
    (l) => /linkat\(|renameat2?\(/.test(l) && l.includes(`"${final}"`),
    0,
    `link of ${final}`,
  );
  assert.ok(
    lines.slice(0, linked).some((l) => /fdatasync\(|fsync\(/.test(l) && l.includes(".file.part>")),
    "the data was not flushed before its name was linked",
  );
  const synced = at(
    (l) => l.includes(`fsync(`) && l.includes(`<${directory}>)`),
    linked,
    `fsync of ${directory}`,
  );
  const tcp = new RegExp(`(shutdown|close)\\(\\d+<TCP(v6)?:\\[.*:${port}->`);
  const closed = at((l) => tcp.test(l), linked, "close of the upload's connection");
  assert.ok(synced < closed, `the directory was flushed after the connection closed:\n${lines.join("\n")}`);
}

Deno.test({
  name: "durability: a numbered upload's data and directory entry are flushed before the client is answered",
  ignore: !haveStrace,
  async fn() {
    await using server = await startServer("server");
    const file = await contentFile("reading 1: 21.5 C\n");
    const directory = await Deno.realPath(server.dir);
    const lines = await traced(server.proc.pid, async () => {
      const { code, stderr } = await runClient(["127.0.0.1", String(server.port), file]);
      assert.equal(code, 0, stderr);
    });
    assertDurableBeforeClose(lines, `${directory}/1.file`, directory, server.port);
  },
});

Deno.test({
  name: "durability: a named upload's directory entry is flushed in its own sub-directory",
  ignore: !haveStrace,
  async fn() {
    await using server = await startServer("server", { extra: ["--names"] });
    const file = await contentFile("floor 2, room 4\n");
    const directory = await Deno.realPath(server.dir);
    const lines = await traced(server.proc.pid, async () => {
      const { code, stderr } = await runClient([
        "--name",
        "floor2/temp.csv",
        "127.0.0.1",
        String(server.port),
        file,
      ]);
      assert.equal(code, 0, stderr);
    });
    const linked = lines.find((l) => /linkat\(|renameat2?\(/.test(l) && l.includes("temp.csv"));
    assert.ok(linked, `no link of temp.csv in the trace:\n${lines.join("\n")}`);
    const final = /"([^"]*temp\.csv)"/.exec(linked)![1];
    assertDurableBeforeClose(lines, final, `${directory}/floor2`, server.port);
    assert.ok(
      lines.some((l) => l.includes("fsync(") && l.includes(`<${directory}>)`)),
      "the upload directory was not flushed after floor2 was made in it",
    );
  },
});
