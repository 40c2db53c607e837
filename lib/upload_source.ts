/**
 * The file a client uploads: opened and checked before connecting, its first
 * bytes peeked (they decide the handshake: see `client.ts`) and then sent
 * like the rest, and its SHA-256 for `--verify` (from `file_hash.ts`). Works for pipes, FIFOs and
 * standard input (`-`) as well as regular files. Only a regular file seeks
 * (to resume from an offset, or to start over for a retry); a stream can
 * start over only while nothing past its first bytes was read.
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

/** The file name that means standard input. */
export const STDIN_PATH = "-";

/** An opened upload: its first bytes, and a reader that yields them again, then the rest. */
export interface UploadSource extends ByteSource {
  /** The file's size, when it is a regular file. */
  size: number | undefined;
  /** Its first bytes (fewer when the file is shorter). */
  head: Uint8Array;
  /** Reading goes on from byte `offset` (0 up to the size); only a regular file can skip. */
  seek(offset: number): Promise<void>;
  /**
   * Starts over from byte 0 for another attempt. False for a stream (a pipe,
   * standard input) once bytes past its first ones were read: those are gone.
   */
  rewind(): Promise<boolean>;
  /** Closes the file (standard input stays open). */
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

/** What a source reads from: a file, or standard input. */
type Readable = Pick<Deno.FsFile, "read" | "seek" | "close">;

async function openFile(path: string): Promise<{ file: Readable; size: number | undefined }> {
  if (path === STDIN_PATH) return { file: { ...stdinReader(), close: () => {} }, size: undefined };
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

function stdinReader(): Pick<Deno.FsFile, "read" | "seek"> {
  return {
    read: (buffer) => Deno.stdin.read(buffer),
    seek: () => Promise.reject(new Error("standard input cannot seek")),
  };
}

async function readHead(file: Readable, path: string, length: number): Promise<Uint8Array> {
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
 * Opens `path` (`-`: standard input) for sending and reads its first `peek` bytes.
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
  return new PeekedSource(file, path, size, head);
}

/** A file whose first bytes were read ahead: they are yielded again before the rest. */
class PeekedSource implements UploadSource {
  readonly size: number | undefined;
  readonly head: Uint8Array;
  readonly #file: Readable;
  readonly #path: string;
  #pending: Uint8Array | undefined;
  /** Bytes past the head were read: a stream cannot give them again. */
  #consumed = false;

  constructor(file: Readable, path: string, size: number | undefined, head: Uint8Array) {
    this.#file = file;
    this.#path = path;
    this.size = size;
    this.head = head;
    this.#pending = head.length > 0 ? head : undefined;
  }

  read(buffer: Uint8Array): Promise<number | null> {
    const pending = this.#pending;
    if (pending === undefined) {
      this.#consumed = true;
      return this.#file.read(buffer);
    }
    const n = Math.min(pending.length, buffer.length);
    buffer.set(pending.subarray(0, n));
    this.#pending = n === pending.length ? undefined : pending.subarray(n);
    return Promise.resolve(n);
  }

  async seek(offset: number): Promise<void> {
    if (this.size === undefined) {
      if (offset !== 0 || this.#consumed) {
        throw new FileError(`cannot go back or skip ahead in "${this.#path}": not a regular file`);
      }
      this.#pending = this.head.length > 0 ? this.head : undefined;
      return;
    }
    try {
      await this.#file.seek(offset, Deno.SeekMode.Start);
    } catch (error) {
      throw new FileError(`cannot seek in "${this.#path}": ${describeError(error)}`, { cause: error });
    }
    this.#pending = undefined;
  }

  async rewind(): Promise<boolean> {
    if (this.size === undefined && this.#consumed) return false;
    await this.seek(0);
    return true;
  }

  close(): void {
    this.#file.close();
  }
}

// The client takes its source and the source's hash from this one module.
export { fileSha256, type HashOptions } from "./file_hash.ts";
