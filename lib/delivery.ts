/**
 * One file delivered, with retries: opens the file once, hashes it once
 * (`verify`, `resume`), and runs attempts ({@link upload}) until one is
 * confirmed, a failure is permanent, the retries run out, or a signal stops
 * it. Between attempts it waits a back-off (`retry.ts`) and starts the file
 * over (or, with `resume`, the server says where to go on from). Standard
 * input and other streams are retried only while nothing past their first
 * bytes was read: what was read is gone. And once the whole file went out,
 * only a named, verified upload is retried: the server may have stored it,
 * and only for that kind does a retry find it (`ok`) instead of storing it
 * again (a numbered upload) or being refused (a named, unverified one).
 *
 * @example
 * ```ts
 * import { deliver } from "./delivery.ts";
 * const outcome = await deliver({
 *   hostname: "gw", port: 5000, path: "data.csv", name: "node7/data.csv", resume: true,
 *   retries: 10, retryDelayMs: 1_000,
 * });
 * if (!outcome.ok) console.error(outcome.error);
 * ```
 * @module
 */
import { abortable } from "./abortable.ts";
import { checkUploadOptions, upload, type UploadOptions } from "./client.ts";
import { describeError, FileError, InterruptedError } from "./errors.ts";
import { CONFIRM } from "./handshake.ts";
import { backoffMs, isRetryable } from "./retry.ts";
import { fileSha256, openSource, type UploadSource } from "./upload_source.ts";

/** Settings of {@link deliver}: those of one attempt, and the retries. */
export interface DeliveryOptions extends Omit<UploadOptions, "source" | "sha256" | "onSent" | "onAllSent"> {
  /** Attempts after the first, for transient failures. Default 0. */
  retries?: number;
  /** The first back-off, in ms; it doubles with each retry. Default 1000. */
  retryDelayMs?: number;
  /** Called before each back-off with the retry's number (1 for the first), the failure and the wait. */
  onRetry?: (retry: number, error: unknown, waitMs: number) => void;
  /** Source of randomness for the jitter (tests). Default `Math.random`. */
  random?: () => number;
}

/** How a delivery ended. */
export type DeliveryOutcome =
  & {
    /** Attempts made (1 without a retry). */
    attempts: number;
    /** File bytes sent over all attempts (resent bytes included). */
    sentBytes: number;
    /** How long it took, in ms. */
    durationMs: number;
  }
  & (
    | {
      /** Stored, as the server confirmed. */
      ok: true;
      /** The file's size. */
      bytes: number;
      /** The prefix the server already held at the last attempt (0 unless resumed). */
      offset: number;
      /** The file's SHA-256, when verified. */
      sha256?: string;
    }
    | {
      /** Not stored. */
      ok: false;
      /** Why (the last attempt's failure). */
      error: unknown;
      /** Why it was not retried, when that is not obvious from the error (a stream read past). */
      note?: string;
    }
  );

/** Delivers one file: see the module's description. Never throws; the outcome says how it ended. */
export async function deliver(options: DeliveryOptions): Promise<DeliveryOutcome> {
  const started = performance.now();
  let attempts = 0;
  let sentBytes = 0;
  const finish = <T extends object>(fields: T) => ({
    attempts,
    sentBytes,
    durationMs: performance.now() - started,
    ...fields,
  });
  let source: UploadSource | undefined;
  try {
    checkUploadOptions(options);
    source = await openSource(options.path, CONFIRM.length);
    const sha256 = await hashFor(options, source);
    for (;;) {
      attempts++;
      const tried = await attempt(options, source, sha256);
      sentBytes += tried.sentBytes;
      if (tried.ok) return finish(tried.ok);
      const { error } = tried;
      const idempotent = options.name !== undefined && sha256 !== undefined;
      const stop = await mayRetry(options, attempts, error, source, tried.allSent && !idempotent);
      if (stop !== undefined) return finish({ ok: false as const, error, note: stop || undefined });
      await pause(options, attempts, error);
    }
  } catch (error) {
    return finish({ ok: false as const, error });
  } finally {
    source?.close();
  }
}

/** One attempt: how it ended, what it sent, and whether all of the file went out. */
async function attempt(options: DeliveryOptions, source: UploadSource, sha256: string | undefined) {
  let sentBytes = 0;
  let allSent = false;
  try {
    const result = await upload({
      ...options,
      source,
      sha256,
      onSent: (n) => sentBytes = n,
      onAllSent: () => allSent = true,
    });
    const bytes = result.offset + result.bytes;
    return { ok: { ok: true as const, bytes, offset: result.offset, sha256 }, sentBytes, allSent };
  } catch (error) {
    return { ok: undefined, error, sentBytes, allSent };
  }
}

/** The SHA-256 to announce, computed once for every attempt. */
async function hashFor(options: DeliveryOptions, source: UploadSource): Promise<string | undefined> {
  if (!options.verify && !options.resume) return undefined;
  const size = source.size;
  if (size === undefined) throw new FileError(`cannot verify "${options.path}": not a regular file`);
  return await fileSha256(options.path, {
    onProgress: (hashed) => options.onHashProgress?.(hashed, size),
    signal: options.signal,
  });
}

/**
 * `undefined` when the failure is retried; otherwise why not: `""` when the
 * error says it, a note when the file may be stored already (`mayBeStored`:
 * all of it went out, and a retry could not tell) or cannot be read again.
 */
async function mayRetry(
  options: DeliveryOptions,
  attempts: number,
  error: unknown,
  source: UploadSource,
  mayBeStored: boolean,
): Promise<string | undefined> {
  if (!isRetryable(error) || attempts > (options.retries ?? 0) || options.signal?.aborted) return "";
  if (mayBeStored) return UNSAFE_AFTER_SENDING;
  if (!(await source.rewind())) return "not retried: its bytes were partly sent and cannot be read again";
  return undefined;
}

const UNSAFE_AFTER_SENDING = "not retried: all of it was sent, so the server may have stored it; only a " +
  "named, verified upload (--named or --name, with --verify) can be sent again safely then";

/** The back-off before the next attempt; a signal ends it with the interruption. */
async function pause(options: DeliveryOptions, retry: number, error: unknown): Promise<void> {
  const waitMs = backoffMs(retry, options.retryDelayMs ?? 1_000, options.random);
  options.onRetry?.(retry, error, waitMs);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const wait = new Promise<void>((resolve) => timer = setTimeout(resolve, waitMs));
  try {
    await abortable(wait, options.signal);
  } catch (reason) {
    const code = reason instanceof InterruptedError ? reason.exitCode : 130;
    throw new InterruptedError(
      `${describeError(reason)}: stopped while waiting to try again; the last attempt failed: ${
        describeError(error)
      }`,
      code,
      { cause: reason },
    );
  } finally {
    clearTimeout(timer);
  }
}
