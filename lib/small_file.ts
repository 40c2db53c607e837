/**
 * Reading a small configuration file (a certificate, a key, a tokens file)
 * whole, with errors that say which file, what it is for, and why.
 *
 * @example
 * ```ts
 * import { readSmallTextFile } from "./small_file.ts";
 * const { text } = await readSmallTextFile("/etc/accio/tokens", "tokens file", 1024 * 1024);
 * ```
 * @module
 */
import { describeError, FileError } from "./errors.ts";

/** A file read whole, with what `stat` said of it. */
export interface SmallTextFile {
  /** The file's text. */
  text: string;
  /** Its `stat`, taken before reading. */
  info: Deno.FileInfo;
}

/**
 * Reads `path` whole, refusing anything but a regular file of at most `maxBytes`.
 * `what` names the file in messages (`TLS certificate file`, `tokens file`).
 *
 * @throws {FileError} saying which file and why: missing, unreadable, not a regular file, too large.
 */
export async function readSmallTextFile(
  path: string,
  what: string,
  maxBytes: number,
): Promise<SmallTextFile> {
  try {
    const info = await Deno.stat(path);
    if (!info.isFile) throw new FileError(`${what} "${path}" is not a regular file`);
    if (info.size > maxBytes) throw new FileError(`${what} "${path}" is larger than ${maxBytes} bytes`);
    return { text: await Deno.readTextFile(path), info };
  } catch (error) {
    if (error instanceof FileError) throw error;
    const reason = error instanceof Deno.errors.NotFound
      ? "no such file"
      : error instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : describeError(error);
    throw new FileError(`cannot read ${what} "${path}": ${reason}`, { cause: error });
  }
}
