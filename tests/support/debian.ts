/**
 * Installs Debian packages that a test needs (HAProxy, Swift, strace) when
 * this process is root and has apt-get: `apt-get install -y
 * --no-install-recommends`, with one `apt-get update` and a second try when
 * the first fails (a fresh machine's package lists may be missing or stale).
 * Another apt-get (a parallel test file) may hold the dpkg lock: waited for,
 * bounded.
 */

const LOCK = ["-o", "DPkg::Lock::Timeout=120"];

/**
 * Installs `packages`; returns why it could not, or `undefined` once apt-get
 * succeeded. Never throws.
 *
 * @example
 * ```ts
 * import { installPackages } from "./support/debian.ts";
 * const failure = await installPackages(["strace"]);
 * if (failure) console.log(`SKIPPED: strace: ${failure}`);
 * ```
 */
export async function installPackages(packages: string[]): Promise<string | undefined> {
  const what = packages.join(" ");
  if (Deno.uid() !== 0) return `not root, so apt-get cannot install ${what}`;
  const install = [...LOCK, "install", "-y", "--no-install-recommends", ...packages];
  const first = await aptGet(install);
  if (first === undefined || first === NO_APT_GET) return first;
  const update = await aptGet([...LOCK, "update"]);
  if (update !== undefined) return `apt-get update failed: ${update}`;
  const second = await aptGet(install);
  return second === undefined ? undefined : `apt-get install ${what} failed: ${second}`;
}

const NO_APT_GET = "apt-get is not available (not a Debian-like system)";

/** Runs apt-get (bounded to 5 minutes); returns the tail of its output on failure, or undefined. */
async function aptGet(args: string[]): Promise<string | undefined> {
  try {
    const { success, stdout, stderr } = await new Deno.Command("apt-get", {
      args,
      env: { DEBIAN_FRONTEND: "noninteractive" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(300_000),
    }).output();
    if (success) return undefined;
    const output = new TextDecoder().decode(stderr).trim() || new TextDecoder().decode(stdout).trim();
    return output.split("\n").slice(-2).join(" / ") || "exit status non-zero";
  } catch (error) {
    return error instanceof Deno.errors.NotFound ? NO_APT_GET : String(error);
  }
}
