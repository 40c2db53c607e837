/**
 * Signal handling for the servers, after nginx: SIGTERM and SIGINT stop at
 * once, SIGQUIT stops accepting and lets the work in flight finish. A second
 * signal during a graceful stop stops at once. Also what keeps a server
 * process alive through what would otherwise end it: SIGXFSZ, and (a last
 * resort) an error no code path caught.
 *
 * @example
 * ```ts
 * import { onStopSignals } from "./signals.ts";
 * onStopSignals({ graceful: () => console.log("drain"), immediate: () => console.log("stop") });
 * ```
 * @module
 */

/** What to do on each kind of stop request. */
export interface StopHandlers {
  /** SIGQUIT: stop accepting, finish what is in flight. */
  graceful: () => void;
  /** SIGTERM, SIGINT, or any signal after SIGQUIT: stop now. */
  immediate: () => void;
}

/** Installs the stop handlers; returns a function that removes them. */
export function onStopSignals({ graceful, immediate }: StopHandlers): () => void {
  let stopping = false;
  const onQuit = () => {
    if (stopping) return immediate();
    stopping = true;
    graceful();
  };
  const onTerminate = () => {
    stopping = true;
    immediate();
  };
  const installed: [Deno.Signal, () => void][] = [
    ["SIGQUIT", onQuit],
    ["SIGTERM", onTerminate],
    ["SIGINT", onTerminate],
  ];
  for (const [signal, handler] of installed) Deno.addSignalListener(signal, handler);
  return () => {
    for (const [signal, handler] of installed) Deno.removeSignalListener(signal, handler);
  };
}

/**
 * Makes "file too large" (a file-size limit, `ulimit -f`) an error returned by
 * the write instead of SIGXFSZ killing the process, so the upload ends as
 * `ERROR` and the server keeps serving.
 */
export function surviveFileSizeLimit(): void {
  Deno.addSignalListener("SIGXFSZ", () => {});
}

/**
 * The last resort: an exception or rejected promise that no code path caught
 * is logged and the process keeps serving, instead of ending with every upload
 * in flight. Each such line is a bug to fix; until then it costs at most the
 * connection it happened on.
 *
 * @example
 * ```ts
 * import { surviveUncaughtErrors } from "./signals.ts";
 * surviveUncaughtErrors((line) => console.error(line));
 * ```
 */
export function surviveUncaughtErrors(log: (message: string) => void): void {
  const describe = (value: unknown) => value instanceof Error ? value.stack ?? value.message : String(value);
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    log(`internal error, kept running: unhandled rejection: ${describe(event.reason).replace(/\s+/g, " ")}`);
  });
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    log(`internal error, kept running: ${describe(event.error ?? event.message).replace(/\s+/g, " ")}`);
  });
}
