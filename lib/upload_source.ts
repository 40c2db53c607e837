/**
 * The file a client uploads: opened and checked before connecting, its first
 * bytes peeked (they decide the handshake: see `client.ts`) and then sent
 * like the rest, and its SHA-256 for `--verify` (from `file_hash.ts`). Works
 * for pipes and FIFOs as well as regular files: nothing here seeks.
 *
 * @example
 * ```ts
 * import { fileSha256, openSource } from "./upload_source.ts";
 * const source = await openSource("data.csv", 15);
 * console.log(source.size, source.head); // 20480, the first 15 bytes
 * const sha256 = await fileSha256("data.csv");
 * source.close();
 * ```
 * @module
 */
import { describeError, FileError } from "./errors.ts";
import type { ByteSource } from "./sender.ts";

/** An opened upload: its first bytes, and a reader that yields them again, then the rest. */
export interface UploadSource extends ByteSource {
  /** The file's size, when it is a regular file. */
  size: number | undefined;
  /** Its first bytes (fewer when the file is shorter). */
  head: Uint8Array;
  /** Closes the file. */
  close(): void;
}

/** Why a file could not be opened, in the client's words rather than the runtime's. */
function openFailure(path: string, error: unknown): string {
  if (error instanceof Deno.errors.NotFound) {
    // Deno decodes arguments as UTF-8, replacing what is not: such a name cannot be passed through.
    return path.includes("\uFFFD")
      ? "no such file; its name is not valid UTF-8, which Deno cannot pass through: rename it"
      : "no such file";
  }
  if (/--allow-all/.test(describeError(error))) {
    return "the client may not read files under /dev or /proc (Deno allows them only to --allow-all): copy it first";
  }
  return describeError(error);
}

async function openFile(path: string): Promise<{ file: Deno.FsFile; size: number | undefined }> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    throw new FileError(`cannot open "${path}": ${openFailure(path, error)}`, { cause: error });
  }
  const info = await file.stat();
  if (info.isDirectory) {
    file.close();
    throw new FileError(`cannot send "${path}": it is a directory`);
  }
  return { file, size: info.isFile ? info.size : undefined };
}

async function readHead(file: Deno.FsFile, path: string, length: number): Promise<Uint8Array> {
  const head = new Uint8Array(length);
  let filled = 0;
  try {
    while (filled < length) {
      const n = await file.read(head.subarray(filled));
      if (n === null) break;
      filled += n;
    }
  } catch (error) {
    throw new FileError(`cannot read "${path}": ${describeError(error)}`, { cause: error });
  }
  return head.slice(0, filled);
}

/**
 * Opens `path` for sending and reads its first `peek` bytes.
 *
 * @throws {FileError} when it is missing, unreadable or a directory.
 */
export async function openSource(path: string, peek: number): Promise<UploadSource> {
  const { file, size } = await openFile(path);
  let head: Uint8Array;
  try {
    head = await readHead(file, path, peek);
  } catch (error) {
    file.close();
    throw error;
  }
  let pending = head.length > 0 ? head : undefined;
  return {
    size,
    head,
    read(buffer: Uint8Array): Promise<number | null> {
      if (pending === undefined) return file.read(buffer);
      const n = Math.min(pending.length, buffer.length);
      buffer.set(pending.subarray(0, n));
      pending = n === pending.length ? undefined : pending.subarray(n);
      return Promise.resolve(n);
    },
    close: () => file.close(),
  };
}

// The client takes its source and the source's hash from this one module.
export { fileSha256, type HashOptions } from "./file_hash.ts";
