/**
 * The SHA-256 of a file, read as a stream: the client's `--verify` header, the
 * bench's and the tests' checks of what a server stored. Works for pipes and
 * FIFOs as well as regular files: nothing here seeks.
 *
 * @example
 * ```ts
 * import { fileSha256 } from "./file_hash.ts";
 * const sha256 = await fileSha256("data.csv", { onProgress: (n) => console.log(n) });
 * console.log(sha256); // 64 lowercase hex digits
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import { abortable } from "./abortable.ts";
import { describeError, FileError } from "./errors.ts";

/** Options of {@link fileSha256}. */
export interface HashOptions {
  /** Called as the file is read, with the bytes hashed so far. */
  onProgress?: (hashedBytes: number) => void;
  /** Stops hashing when it aborts (rejects with its reason). */
  signal?: AbortSignal;
}

/**
 * SHA-256 of a file, streamed, as 64 lowercase hex digits.
 *
 * @example
 * ```ts
 * import { fileSha256 } from "./file_hash.ts";
 * const same = (await fileSha256("a.bin")) === (await fileSha256("b.bin"));
 * ```
 * @throws {FileError} when the file cannot be read.
 */
export async function fileSha256(path: string, { onProgress, signal }: HashOptions = {}): Promise<string> {
  const hash = createHash("sha256");
  const buffer = new Uint8Array(1024 * 1024);
  let hashed = 0;
  try {
    using file = await Deno.open(path);
    for (;;) {
      const n = await abortable(file.read(buffer), signal);
      if (n === null) break;
      hash.update(buffer.subarray(0, n));
      hashed += n;
      onProgress?.(hashed);
    }
  } catch (error) {
    if (signal?.aborted && error === signal.reason) throw error;
    throw new FileError(`cannot read "${path}": ${describeError(error)}`, { cause: error });
  }
  return hash.digest("hex");
}
