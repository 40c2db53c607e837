/**
 * What this machine allows a test: commands on PATH, and private mount
 * namespaces (root with `unshare -m`) for tests that mount something only
 * the program under test sees (a small tmpfs, another /etc/hosts).
 *
 * @module
 */

/** Whether an executable is on PATH. */
export async function hasCommand(name: string): Promise<boolean> {
  try {
    const { success } = await new Deno.Command("sh", { args: ["-c", `command -v ${name}`], stdout: "null" })
      .output();
    return success;
  } catch {
    return false;
  }
}

/** Whether this process may make private mount namespaces (root with a working `unshare -m`). */
export async function canUnshareMounts(): Promise<boolean> {
  if (Deno.uid() !== 0) return false;
  return await new Deno.Command("unshare", { args: ["-m", "true"], stderr: "null" }).output()
    .then((o) => o.success, () => false);
}

/**
 * A `wrap` prefix for `spawnProgram` (./process.ts): runs `setup` (shell) in a
 * private mount namespace, then execs the program there (behind `execPrefix`,
 * e.g. `prlimit ... --`), keeping its PID.
 */
export function inPrivateMounts(setup: string, execPrefix = ""): string[] {
  return [
    "unshare",
    "-m",
    "--propagation",
    "private",
    "sh",
    "-c",
    `${setup} && exec ${execPrefix} "$0" "$@"`,
  ];
}
