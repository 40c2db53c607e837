/**
 * Resident memory of a running process, from /proc/PID/status.
 *
 * @module
 */

/** A `kB` field of /proc/PID/status (`VmRSS` now, `VmHWM` the peak); undefined once the process is gone. */
export function statusKiB(pid: number, field: "VmRSS" | "VmHWM"): number | undefined {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(
      Deno.readTextFileSync(`/proc/${pid}/status`),
    );
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Samples the peak resident memory of `pid` every `everyMs` while it lives
 * (the peak has to be read before the process is reaped). The returned
 * function stops sampling and gives the peak in KiB.
 */
export function watchPeakRss(pid: number, everyMs = 10): () => number {
  let peak = 0;
  const sample = () => {
    peak = Math.max(peak, statusKiB(pid, "VmHWM") ?? 0);
  };
  sample();
  const timer = setInterval(sample, everyMs);
  return () => {
    clearInterval(timer);
    sample();
    return peak;
  };
}
