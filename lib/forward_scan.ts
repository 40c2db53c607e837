/**
 * Finds the saved uploads in an upload directory, for the forwarder's restart:
 * every regular file under FILE-DIR whose path has no hidden segment. Hidden
 * names are never uploads: `.N.file.part` files are still being written, and
 * `.accio-forward/` holds the forwarding state. A visible file is complete,
 * since the server publishes an upload only once it is flushed.
 *
 * An `ERROR` upload is recognised by its content: exactly the 5 bytes
 * `ERROR`. (A client that uploads exactly those 5 bytes looks the same; the
 * upload log tells them apart.)
 *
 * @example
 * ```ts
 * import { scanUploads } from "./forward_scan.ts";
 * for await (const upload of scanUploads("/save")) console.log(upload.path, upload.size);
 * ```
 * @module
 */
import { ERROR_CONTENT } from "./upload_dir.ts";

/** A saved upload found on disk. */
export interface FoundUpload {
  /** Path relative to FILE-DIR, `/`-separated. */
  path: string;
  /** Size in bytes. */
  size: number;
  /** Last modification (ms since the epoch): when it was saved. */
  mtimeMs: number;
}

/**
 * Every saved upload under `fileDir`, depth first.
 *
 * @example
 * ```ts
 * import { scanUploads } from "./forward_scan.ts";
 * const all = await Array.fromAsync(scanUploads("/save"));
 * ```
 */
export async function* scanUploads(fileDir: string, under = ""): AsyncGenerator<FoundUpload> {
  const dir = under ? `${fileDir}/${under}` : fileDir;
  const entries = await Array.fromAsync(Deno.readDir(dir));
  entries.sort((a, b) => a.name.localeCompare(b.name, "en", { numeric: true }));
  for (const entry of entries) {
    if (entry.name.startsWith(".") || entry.isSymlink) continue;
    const path = under ? `${under}/${entry.name}` : entry.name;
    if (entry.isDirectory) {
      yield* scanUploads(fileDir, path);
    } else if (entry.isFile) {
      const info = await Deno.lstat(`${fileDir}/${path}`).catch(() => undefined);
      if (info?.isFile) yield { path, size: info.size, mtimeMs: info.mtime?.getTime() ?? Date.now() };
    }
  }
}

/**
 * Whether the file at `path` (of `size` bytes) is an `ERROR` upload.
 *
 * @example
 * ```ts
 * import { isErrorUpload } from "./forward_scan.ts";
 * await isErrorUpload("/save/3.file", 5);
 * ```
 */
export async function isErrorUpload(path: string, size: number): Promise<boolean> {
  if (size !== ERROR_CONTENT.length) return false;
  try {
    const data = await Deno.readFile(path);
    return data.length === ERROR_CONTENT.length && data.every((byte, i) => byte === ERROR_CONTENT[i]);
  } catch {
    return false;
  }
}
