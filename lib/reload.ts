/**
 * SIGHUP reloads (nginx's convention): every file the server may read again
 * (the TLS certificate and key, the tokens file) is read again, one reload at
 * a time, in order. A file that is bad keeps what is in use and says why;
 * connections in flight are never touched. A SIGHUP that finds nothing to
 * reload is logged and ignored: it never stops the server.
 *
 * @example
 * ```ts
 * import { onReloadSignal, type Reloadable } from "./reload.ts";
 * const reloadables: Reloadable[] = [{ what: "tokens", reload: () => Promise.resolve("3 identities") }];
 * const stop = onReloadSignal(reloadables, (line) => console.error(line));
 * stop();
 * ```
 * @module
 */
import { describeError } from "./errors.ts";

/** Something SIGHUP reads again. */
export interface Reloadable {
  /** What it is, for the log line: `TLS certificate`, `tokens`. */
  what: string;
  /**
   * Reads it again; resolves with a summary of what is now in use.
   * Rejects, keeping what was in use, with why the new one is bad.
   */
  reload(): Promise<string>;
}

/**
 * Runs every reload of `reloadables` in order; logs each result.
 *
 * @example
 * ```ts
 * import { reloadAll } from "./reload.ts";
 * await reloadAll([{ what: "tokens", reload: () => Promise.resolve("2 identities") }], console.error);
 * // reloaded tokens: 2 identities
 * ```
 */
export async function reloadAll(
  reloadables: readonly Reloadable[],
  log: (line: string) => void,
): Promise<void> {
  if (reloadables.length === 0) {
    log("SIGHUP: nothing to reload (no --tls-cert, no --tokens); still serving");
    return;
  }
  for (const { what, reload } of reloadables) {
    try {
      log(`reloaded ${what}: ${await reload()}`);
    } catch (error) {
      log(`kept the ${what} in use: reloading failed: ${describeError(error)}`);
    }
  }
}

/**
 * Reloads on each SIGHUP; a SIGHUP during a reload runs once that one ends.
 *
 * @returns a function that removes the listener.
 *
 * @example
 * ```ts
 * import { onReloadSignal } from "./reload.ts";
 * const stop = onReloadSignal([], console.error);
 * stop();
 * ```
 */
export function onReloadSignal(reloadables: readonly Reloadable[], log: (line: string) => void): () => void {
  let running: Promise<void> = Promise.resolve();
  const handler = () => {
    running = running.then(() => reloadAll(reloadables, log));
  };
  Deno.addSignalListener("SIGHUP", handler);
  return () => Deno.removeSignalListener("SIGHUP", handler);
}
