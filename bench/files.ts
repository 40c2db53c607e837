/**
 * The bench's files: random sources, hashed as they are written, and the
 * checks that every saved file holds exactly the bytes of a source.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { fileSha256 } from "../lib/file_hash.ts";

const CHUNK = 64 * 1024; // the most crypto.getRandomValues fills at once

/** Writes `bytes` random bytes to `path`; resolves with their SHA-256 (hex). */
export async function writeRandomFile(path: string, bytes: number): Promise<string> {
  const hash = createHash("sha256");
  const chunk = new Uint8Array(CHUNK);
  using file = await Deno.open(path, { write: true, createNew: true });
  for (let left = bytes; left > 0; left -= CHUNK) {
    const part = crypto.getRandomValues(chunk.subarray(0, Math.min(CHUNK, left)));
    hash.update(part);
    for (let done = 0; done < part.length;) done += await file.write(part.subarray(done));
  }
  return hash.digest("hex");
}

/** An empty directory `name` under `base`, emptied first if it was there. */
export async function freshDir(base: string, name: string): Promise<string> {
  const dir = `${base}/${name}`;
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(dir, { recursive: true });
  return dir;
}

/** Paths of the files a server saved in `dir` (hidden partial files left out). */
export async function savedFiles(dir: string): Promise<string[]> {
  const paths: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.name.startsWith(".")) paths.push(`${dir}/${entry.name}`);
  }
  return paths;
}

/**
 * Checks that the files saved in `dir` hold, as a multiset, exactly the
 * contents whose hashes are `expected`: none missing, none extra, none changed.
 */
export async function verifySaved(dir: string, expected: string[], what: string): Promise<void> {
  const saved = await savedFiles(dir);
  // One at a time: each hash holds a 1 MiB buffer, and workload 3 saves thousands of files.
  const got: string[] = [];
  for (const path of saved) got.push(await fileSha256(path));
  got.sort();
  const want = [...expected].sort();
  if (got.length !== want.length) throw new Error(`${what}: ${got.length} files saved, ${want.length} sent`);
  const wrong = got.filter((hash, i) => hash !== want[i]).length;
  if (wrong > 0) throw new Error(`${what}: ${wrong} of ${want.length} saved files differ from what was sent`);
}
