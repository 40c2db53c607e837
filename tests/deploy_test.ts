/**
 * deploy/: the HAProxy configuration is accepted by `haproxy -c` and says what
 * README.md promises; the systemd unit passes `systemd-analyze verify` with no
 * warning and has the sandbox it claims; and its ExecStop= line, run against a
 * real server, stops it gracefully, and bounded when an upload will not end.
 */
import assert from "node:assert/strict";
import { bytes } from "./support/encoding.ts";
import { tempDir, waitForFile } from "./support/files.ts";
import { ROOT, startServer } from "./support/process.ts";
import { hasCommand } from "./support/system.ts";
import { connect, recvExactly } from "./support/wire.ts";
import { ensureHaproxy, skipWithoutHaproxy } from "./support/haproxy.ts";

const HAPROXY_CFG = `${ROOT}deploy/haproxy.cfg`;
const UNIT = `${ROOT}deploy/accio.service`;
const unit = Deno.readTextFileSync(UNIT);

/** The value of `key=` in the unit (the last one, as systemd reads it), with continuation lines joined. */
function directive(key: string): string | undefined {
  const joined = unit.replace(/\\\n\s*/g, " ");
  return [...joined.matchAll(new RegExp(`^${key}=(.*)$`, "gm"))].at(-1)?.[1].trim();
}

const noHaproxy = skipWithoutHaproxy(await ensureHaproxy(), "deploy/haproxy.cfg check");

Deno.test({
  name: "deploy/haproxy.cfg: valid for haproxy -c; tcp, leastconn, PROXY v2 with checks, timeouts above 10 s",
  ignore: noHaproxy,
  fn: async () => {
    const check = await new Deno.Command("haproxy", { args: ["-c", "-f", HAPROXY_CFG], stderr: "piped" })
      .output();
    assert.ok(check.success, new TextDecoder().decode(check.stderr));
    const config = await Deno.readTextFile(HAPROXY_CFG);
    assert.match(config, /^\s*mode tcp$/m);
    assert.match(config, /^\s*balance leastconn$/m);
    assert.match(config, /^\s*default-server send-proxy-v2 check /m);
    assert.equal([...config.matchAll(/^\s*server \S+ \S+:5001$/gm)].length, 3, "three gateways");
    for (const which of ["client", "server"]) {
      const seconds = Number(new RegExp(`^\\s*timeout ${which} (\\d+)s$`, "m").exec(config)?.[1]);
      assert.ok(seconds > 10, `timeout ${which} ${seconds}s is above the gateways' 10 s idle timeout`);
    }
  },
});

const noAnalyze = !(await hasCommand("systemd-analyze"));
if (noAnalyze) {
  console.log("SKIPPED: deploy/accio.service verify: systemd-analyze is not installed (package systemd)");
}

Deno.test({
  name: "deploy/accio.service: systemd-analyze verify reports nothing",
  ignore: noAnalyze,
  fn: async () => {
    // verify insists that ExecStart='s binary exists: point it at this Deno instead of /usr/local/bin/deno.
    const dir = await tempDir();
    await Deno.writeTextFile(`${dir}/accio.service`, unit.replaceAll("/usr/local/bin/deno", Deno.execPath()));
    const result = await new Deno.Command("systemd-analyze", {
      args: ["verify", `${dir}/accio.service`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    // verify exits 0 even for directives it ignores: any output at all is a finding.
    const output = new TextDecoder().decode(result.stdout) + new TextDecoder().decode(result.stderr);
    assert.ok(result.success, output);
    assert.equal(output.trim(), "");
  },
});

Deno.test("deploy/accio.service: dedicated user, only the directory writable, graceful and bounded stop", () => {
  const start = directive("ExecStart") ?? "";
  const directory = start.split(/\s+/).at(-1)!;
  assert.equal(directive("User"), "accio");
  assert.equal(directive("NoNewPrivileges"), "yes");
  assert.equal(directive("ProtectSystem"), "strict");
  assert.equal(directive("ReadWritePaths"), directory, "the upload directory and nothing else is writable");
  assert.ok(start.includes(`--allow-write=${directory} `), "Deno may write the directory only");
  assert.ok(start.includes("--proxy-protocol"));
  assert.equal(directive("Restart"), "on-failure");
  assert.ok(Number(directive("TimeoutStopSec")) > 60, "room for the 60 s drain before systemd kills");
  assert.match(directive("ExecStop") ?? "", /kill -QUIT/);
});

/** The unit's ExecStop= command as the shell gets it, with its drain window shortened to `seconds`. */
function execStopScript(seconds: number): string {
  const script = /^ExecStop=-\/bin\/sh -c '(.*)'$/m.exec(unit)?.[1];
  assert.ok(script, "ExecStop= runs one sh -c script");
  assert.match(script, /timeout 60 /);
  return script.replaceAll("$$", "$").replace("timeout 60 ", `timeout ${seconds} `);
}

async function runExecStop(pid: number, seconds: number): Promise<Deno.CommandOutput> {
  return await new Deno.Command("/bin/sh", {
    args: ["-c", execStopScript(seconds)],
    env: { MAINPID: String(pid) },
    signal: AbortSignal.timeout(30_000),
  }).output();
}

Deno.test("deploy/accio.service ExecStop: SIGQUIT lets an upload in flight finish, and the server exits 0", async () => {
  await using server = await startServer("server", { extra: ["--timeout", "30"] });
  const conn = await connect(server.port);
  await recvExactly(conn, 7);
  await conn.write(bytes("first half "));
  const stopping = runExecStop(server.proc.pid, 20);
  await new Promise((resolve) => setTimeout(resolve, 500)); // the server has had its SIGQUIT
  await conn.write(bytes("second half"));
  await conn.closeWrite();
  await waitForFile(server.dir, 1);
  conn.close();
  const [stop, status] = await Promise.all([stopping, server.proc.wait(20_000)]);
  assert.ok(stop.success);
  assert.equal(status.code, 0);
  assert.equal(await Deno.readTextFile(`${server.dir}/1.file`), "first half second half");
});

Deno.test("deploy/accio.service ExecStop: an upload that outlasts the drain window ends as ERROR, exit 0", async () => {
  const dir = await tempDir();
  await using server = await startServer("server", { dir, extra: ["--timeout", "30"] });
  const conn = await connect(server.port);
  await recvExactly(conn, 7);
  await conn.write(bytes("never finished"));
  const started = performance.now();
  const stop = await runExecStop(server.proc.pid, 2);
  const status = await server.proc.wait(10_000);
  const took = performance.now() - started;
  conn.close();
  assert.ok(stop.success);
  assert.equal(status.code, 0);
  assert.ok(
    took >= 1_900 && took < 15_000,
    `stopped after the window, not the 30 s idle timeout: ${took} ms`,
  );
  assert.equal(await Deno.readTextFile(`${dir}/1.file`), "ERROR");
});
