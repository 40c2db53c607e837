/**
 * The client's FILE arguments as a list of uploads: `-` is standard input,
 * a file is itself, and with `--named` a directory stands for the regular
 * files under it, each named by its path relative to that directory.
 *
 * Inside a directory nothing is followed: a symbolic link (to a file or a
 * directory) is skipped, and so are other non-regular entries (FIFOs,
 * sockets, devices) and hidden entries (names that start with a dot, which
 * the server refuses as names), each with a note. The argument itself is
 * taken as given (a link named on the command line is followed). Files come
 * in a stable order: each directory's entries sorted by name.
 *
 * @example
 * ```ts
 * import { listUploads } from "./upload_list.ts";
 * const { uploads, skipped } = await listUploads(["logs", "-"], { named: true });
 * // uploads: [{ path: "logs/a.csv", name: "a.csv" }, ..., { path: "-", name: undefined }]
 * ```
 * @module
 */
import { describeError, FileError, UsageError } from "./errors.ts";
import { STDIN_PATH } from "./upload_source.ts";

/** One file to upload. */
export interface UploadItem {
  /** The path to open (`-`: standard input); also how messages name the file. */
  path: string;
  /** The name to store it under (header extension), if any. */
  name?: string;
  /** Set when it cannot be sent at all (a directory that cannot be listed): the upload fails with it. */
  error?: Error;
}

/** Options of {@link listUploads}. */
export interface ListOptions {
  /** `--named`: each file under its base name, a directory's files under their relative paths. */
  named?: boolean;
  /** `--name PATH`: the one file's name. */
  name?: string;
  /** `--verify` or `--resume`: the length and SHA-256 go out first, which standard input cannot give. */
  verify?: boolean;
}

/** The uploads, and the entries left out with why (for a note each). */
export interface UploadList {
  /** In argument order, a directory's files in sorted order. */
  uploads: UploadItem[];
  /** `path: why`, one per entry left out of a directory. */
  skipped: string[];
}

const basename = (path: string) => path.replace(/\/+$/, "").split("/").at(-1) ?? path;
const join = (dir: string, name: string) => dir.endsWith("/") ? dir + name : `${dir}/${name}`;

/**
 * Expands the FILE arguments.
 *
 * @throws {UsageError} for `-` given twice, `--name` with more than one file
 * or a directory, or standard input with `--named` (it has no name) or
 * `verify` (nothing is spooled: the client never writes a file).
 */
export async function listUploads(paths: readonly string[], options: ListOptions = {}): Promise<UploadList> {
  if (paths.filter((p) => p === STDIN_PATH).length > 1) {
    throw new UsageError(`"-" (standard input) given more than once`);
  }
  if (options.name !== undefined && paths.length > 1) {
    throw new UsageError("--name names one file; for several, use --named");
  }
  const list: UploadList = { uploads: [], skipped: [] };
  for (const path of paths) {
    if (path === STDIN_PATH) {
      if (options.verify) {
        throw new UsageError(
          "cannot verify standard input (--verify, --resume): its length and SHA-256 go out before " +
            "its bytes; save it to a file and send that",
        );
      }
      if (options.named) throw new UsageError(`standard input has no name for --named; use --name PATH`);
      list.uploads.push({ path, name: options.name });
    } else if (await isDirectory(path)) {
      if (options.name !== undefined) throw new UsageError(`--name cannot name a directory ("${path}")`);
      // Without --named the upload reports the directory as the file error it is.
      if (options.named) await walk(path, "", list);
      else list.uploads.push({ path });
    } else {
      list.uploads.push({ path, name: options.name ?? (options.named ? basename(path) : undefined) });
    }
  }
  return list;
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false; // opening it reports what is wrong
  }
}

/** Adds the regular files under `dir` (at `prefix` in the tree), never through a link. */
async function walk(dir: string, prefix: string, list: UploadList): Promise<void> {
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch (error) {
    const reason = new FileError(`cannot list directory "${dir}": ${describeError(error)}`, { cause: error });
    list.uploads.push({ path: dir, error: reason });
    return;
  }
  entries.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  for (const entry of entries) {
    const path = join(dir, entry.name);
    const name = prefix === "" ? entry.name : `${prefix}/${entry.name}`;
    if (entry.isSymlink) list.skipped.push(`${path}: a symbolic link (not followed)`);
    else if (entry.name.startsWith(".")) list.skipped.push(`${path}: a hidden name (the server refuses it)`);
    else if (entry.isDirectory) await walk(path, name, list);
    else if (entry.isFile) list.uploads.push({ path, name });
    else list.skipped.push(`${path}: not a regular file`);
  }
}
