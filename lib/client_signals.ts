/**
 * The client's signals: SIGINT, SIGTERM and SIGHUP abort the upload (with a
 * reset, so the server records `ERROR`), and the program exits with the
 * shell's code for the signal, 128 + its number. SIGKILL cannot be caught:
 * `--verify` is what tells a complete upload from a cut one then.
 *
 * @example
 * ```ts
 * import { abortOnSignals } from "./client_signals.ts";
 * const stop = new AbortController();
 * const remove = abortOnSignals(stop);
 * // ... upload({ ..., signal: stop.signal }) ...
 * remove();
 * ```
 * @module
 */
import { InterruptedError } from "./errors.ts";

/** The signals that abort an upload, with the exit code of each. */
export const CLIENT_SIGNALS: Readonly<Record<"SIGINT" | "SIGTERM" | "SIGHUP", number>> = {
  SIGINT: 130,
  SIGTERM: 143,
  SIGHUP: 129,
};

/**
 * Aborts `controller` with an {@link InterruptedError} ("interrupted by
 * SIGINT", exit code 130, ...) on the first of {@link CLIENT_SIGNALS}, then
 * calls `onSignal` with it. Returns a function that removes the listeners.
 */
export function abortOnSignals(
  controller: AbortController,
  onSignal: (error: InterruptedError) => void = () => {},
): () => void {
  const listeners = Object.entries(CLIENT_SIGNALS).map(([name, code]) => {
    const signal = name as Deno.Signal;
    const listener = () => {
      if (controller.signal.aborted) return;
      const error = new InterruptedError(`interrupted by ${signal}`, code);
      controller.abort(error);
      onSignal(error);
    };
    Deno.addSignalListener(signal, listener);
    return [signal, listener] as const;
  });
  return () => {
    for (const [signal, listener] of listeners) Deno.removeSignalListener(signal, listener);
  };
}
