/**
 * The bench's reference programs from Debian's packages: `nc` (netcat-openbsd)
 * and `iperf3`. Installed when they are missing and we can; skipped with a
 * word otherwise.
 *
 * @module
 */
import { onPath, shell } from "./programs.ts";

const PACKAGES = "netcat-openbsd iperf3";

/** Which of the reference programs the bench can run, after an install attempt as root. */
export async function ensurePeers(): Promise<{ nc: boolean; iperf3: boolean }> {
  if (!(await onPath("nc") && await onPath("iperf3")) && Deno.uid() === 0 && await onPath("apt-get")) {
    console.error(`bench: installing ${PACKAGES} (Debian packages) ...`);
    // apt-get can stall on a lock or a mirror: each step is bounded, and a failed install only skips peers.
    const install = `timeout 300 apt-get install -y -qq ${PACKAGES}`;
    await shell(
      `export DEBIAN_FRONTEND=noninteractive; ${install} || (timeout 300 apt-get update -qq && ${install})`,
      "apt-get",
    ).wait(660_000).catch(() => {});
  }
  const peers = { nc: await onPath("nc"), iperf3: await onPath("iperf3") };
  if (!peers.nc) console.error("bench: nc missing: install netcat-openbsd; netcat figures skipped");
  if (!peers.iperf3) console.error("bench: iperf3 missing: install iperf3; ceiling figures skipped");
  return peers;
}
