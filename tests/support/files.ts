/**
 * Files for tests: temporary directories (all under one root per test module,
 * removed when it unloads), generated and literal upload files, directory
 * listings, waiting for a stored file, and the SHA-256 of bytes. The SHA-256
 * of a file is lib's `fileSha256` (lib/file_hash.ts).
 *
 * @module
 */
import { createHash } from "node:crypto";
import { bytes } from "./encoding.ts";
import { waitFor } from "./wait.ts";

// Every temporary directory of one test module lives under one root, removed when the module unloads.
const TEST_ROOT = Deno.makeTempDirSync({ prefix: "accio-test-" });
globalThis.addEventListener("unload", () => Deno.removeSync(TEST_ROOT, { recursive: true }));

/** A fresh temporary directory, removed with the test module. */
export function tempDir(): Promise<string> {
  return Deno.makeTempDir({ dir: TEST_ROOT });
}

/** SHA-256 of bytes. */
export function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Writes `size` pseudo-random bytes to a new file in `dir` (deterministic per seed), streamed. */
export async function makeFile(dir: string, name: string, size: number, seed = 1): Promise<string> {
  const path = `${dir}/${name}`;
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const chunk = new Uint8Array(Math.min(size, 1 << 20));
  let state = seed >>> 0 || 1;
  for (let written = 0; written < size;) {
    const n = Math.min(chunk.length, size - written);
    for (let i = 0; i < n; i += 4) {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      chunk[i] = state;
      chunk[i + 1] = state >>> 8;
      chunk[i + 2] = state >>> 16;
      chunk[i + 3] = state >>> 24;
    }
    for (let done = 0; done < n;) done += await file.write(chunk.subarray(done, n));
    written += n;
  }
  return path;
}

/** A new file `upload.bin` in a fresh temporary directory holding `content`. */
export async function contentFile(content: string | Uint8Array, name = "upload.bin"): Promise<string> {
  const dir = await tempDir();
  const path = `${dir}/${name}`;
  await Deno.writeFile(path, typeof content === "string" ? bytes(content) : content);
  return path;
}

/** Files in `dir` (names), sorted, hidden ones included. */
export async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
}

/** Waits until `<dir>/<n>.file` exists, bounded. */
export function waitForFile(dir: string, n: number, timeoutMs = 15_000): Promise<void> {
  return waitFor(
    async () => {
      try {
        await Deno.lstat(`${dir}/${n}.file`);
        return true;
      } catch {
        return false;
      }
    },
    timeoutMs,
    `${dir}/${n}.file`,
  );
}
