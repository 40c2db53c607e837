/**
 * lib/cli.ts: the command-line surface of all three programs (--help,
 * --version, usage errors), and its parser and option values unit by unit.
 */
import assert from "node:assert/strict";
import denoConfig from "../deno.json" with { type: "json" };
import { parseArgs, parseIntegerOption, parseSecondsOption } from "../lib/cli.ts";
import { UsageError } from "../lib/errors.ts";
import { spawnProgram } from "./support/process.ts";

for (const program of ["server", "client", "server-s"] as const) {
  Deno.test(`${program} --help prints the usage and exits 0`, async () => {
    const proc = spawnProgram(program, ["--help"]);
    assert.equal((await proc.wait()).code, 0);
    assert.match(proc.stdout, new RegExp(`^usage: ${program} \\[options\\]`));
    assert.match(proc.stdout, /--timeout SECONDS/);
  });

  Deno.test(`${program} --version prints the version and exits 0`, async () => {
    const proc = spawnProgram(program, ["--version"]);
    assert.equal((await proc.wait()).code, 0);
    assert.equal(proc.stdout, `${program} ${denoConfig.version}\n`);
  });

  Deno.test(`${program}: a usage error shows ERROR:, the usage line, and exits 2`, async () => {
    const proc = spawnProgram(program, ["--no-such-option"]);
    assert.equal((await proc.wait()).code, 2);
    assert.match(proc.stderr, /^ERROR: unknown option "--no-such-option"\nusage: /);
  });
}

Deno.test("parseArgs: options anywhere, --x=y, negative numbers stay positional", () => {
  const spec = {
    name: "t",
    usage: "t",
    summary: "",
    positionals: ["A", "B"],
    options: { timeout: { type: "string", help: "" }, quiet: { type: "boolean", help: "" } },
  } as const;
  assert.deepEqual(parseArgs(spec, ["--timeout=3", "x", "--quiet", "-1"]), {
    positionals: ["x", "-1"],
    values: { timeout: "3", quiet: true },
  });
  assert.deepEqual(parseArgs(spec, ["--", "--quiet", "y"]).positionals, ["--quiet", "y"]);
  assert.throws(() => parseArgs(spec, ["x"]), /missing argument/);
  assert.throws(() => parseArgs(spec, ["x", "y", "z"]), /too many/);
  assert.throws(() => parseArgs(spec, ["-q", "x", "y"]), /unknown option "-q"/);
  assert.throws(() => parseArgs(spec, ["x", "y", "--timeout"]), /needs a value/);
  assert.throws(() => parseArgs(spec, ["x", "y", "--quiet=1"]), /takes no value/);
});

Deno.test("option values: seconds and sizes", () => {
  assert.equal(parseSecondsOption("t", "0.5", 1), 500);
  assert.equal(parseSecondsOption("t", undefined, 1234), 1234);
  for (const bad of ["0", "-1", "abc", "1e3", "90000"]) {
    assert.throws(() => parseSecondsOption("t", bad, 1), UsageError);
  }
  assert.equal(parseIntegerOption("s", "4G", 0, { units: true }), 4 * 2 ** 30);
  assert.equal(parseIntegerOption("s", "10KiB", 0, { units: true }), 10240);
  assert.throws(() => parseIntegerOption("s", "4G", 0), UsageError);
  assert.throws(() => parseIntegerOption("s", "0", 0, { min: 1 }), UsageError);
});
