/** The command-line surface of all three programs: --help, --version, usage errors. */
import assert from "node:assert/strict";
import denoConfig from "../deno.json" with { type: "json" };
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
