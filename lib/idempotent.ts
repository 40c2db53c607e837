/**
 * Idempotent named uploads: a retry of a named, verified upload that was
 * stored already (its receipt lost on the way) finds the name holding a
 * regular file of exactly the announced length and SHA-256, and is answered
 * `ok` without storing anything. A name that holds anything else is refused
 * as `exists` (permanent), as before: nothing is ever overwritten.
 *
 * The existing file is read through the held directory of its name and
 * checked to be the very inode that was looked at without following links
 * (a link swapped in meanwhile is never read through).
 *
 * @example
 * ```ts
 * import { isStored, mayBeStored } from "./idempotent.ts";
 * import type { NamedTarget } from "./upload_name.ts";
 * declare const target: NamedTarget;
 * if (mayBeStored(target.existing, 20480)) console.log(await isStored(target, 20480, "9f86...".padEnd(64, "0")));
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import { ProtocolError } from "./errors.ts";
import { REASON_EXISTS } from "./headers.ts";
import type { NamedTarget } from "./upload_name.ts";

/** The refusal of a named, verified upload whose name (at `path`) holds a different file. */
export function existsError(path: string): ProtocolError {
  return new ProtocolError(
    `${REASON_EXISTS}: ${JSON.stringify(path)} already holds a different file (never overwritten)`,
  );
}

/** Whether what the name holds (`existing`, not followed) is a regular file of `length` bytes: worth hashing. */
export function mayBeStored(
  existing: { isFile: boolean; size: number } | undefined,
  length: number,
): boolean {
  return existing !== undefined && existing.isFile && existing.size === length;
}

function sameInode(a: Deno.FileInfo, b: Deno.FileInfo): boolean {
  return a.ino === b.ino && a.dev === b.dev;
}

/** Whether the name holds exactly `length` bytes with SHA-256 `sha256` (a regular file, not through a link). */
export async function isStored(target: NamedTarget, length: number, sha256: string): Promise<boolean> {
  const entry = target.dir.entry(target.leaf);
  const before = await Deno.lstat(entry).catch(() => undefined);
  if (!before?.isFile || before.size !== length) return false;
  let file: Deno.FsFile;
  try {
    file = await Deno.open(entry, { read: true });
  } catch {
    return false;
  }
  try {
    if (!sameInode(before, await file.stat())) return false;
    const hash = createHash("sha256");
    const buffer = new Uint8Array(1024 * 1024);
    let total = 0;
    for (let n = await file.read(buffer); n !== null; n = await file.read(buffer)) {
      hash.update(buffer.subarray(0, n));
      total += n;
    }
    return total === length && hash.digest("hex") === sha256;
  } finally {
    file.close();
  }
}
