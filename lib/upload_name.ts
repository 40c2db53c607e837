/**
 * Named uploads: checking a client-chosen name and placing it under the
 * upload directory so that it can never escape it or replace a file.
 *
 * Refused: empty names, absolute paths, `.`/`..` and any segment starting
 * with `.` (hidden files, and the server's own temporary files), empty
 * segments (`a//b`, a trailing `/`), backslashes, NUL and other control bytes,
 * names over 1024 bytes or segments over 255, a top-level `<N>.file` (those
 * names belong to numbered uploads), a path through a symbolic link or a
 * non-directory, and a name that already exists.
 *
 * @example
 * ```ts
 * import { checkName, prepareNamedPath } from "./upload_name.ts";
 * const segments = checkName("floor2/temp.csv");
 * const path = await prepareNamedPath("/save", segments); // "/save/floor2/temp.csv", floor2/ created
 * ```
 * @module
 */
import { describeError, FileError, ProtocolError } from "./errors.ts";

/** Longest name accepted, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 1024;
/** Longest path segment accepted, in UTF-8 bytes (the usual file-system limit). */
export const MAX_SEGMENT_BYTES = 255;

const encoder = new TextEncoder();

/**
 * Checks a name and splits it into path segments.
 *
 * @throws {ProtocolError} saying why the name is refused.
 */
export function checkName(name: string): string[] {
  const refuse = (why: string) => new ProtocolError(`refused name ${JSON.stringify(name)}: ${why}`);
  if (name === "") throw refuse("empty");
  if (encoder.encode(name).length > MAX_NAME_BYTES) throw refuse(`longer than ${MAX_NAME_BYTES} bytes`);
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f]/.test(name)) throw refuse("contains a control character");
  if (name.includes("\\")) throw refuse("contains a backslash");
  if (name.startsWith("/")) throw refuse("absolute path");
  const segments = name.split("/");
  for (const segment of segments) {
    if (segment === "") throw refuse("empty path segment");
    if (segment.startsWith(".")) throw refuse("a segment starts with a dot (., .. and hidden names)");
    if (encoder.encode(segment).length > MAX_SEGMENT_BYTES) {
      throw refuse(`a segment is longer than ${MAX_SEGMENT_BYTES} bytes`);
    }
  }
  if (segments.length === 1 && /^[0-9]+\.file$/.test(name)) throw refuse("numbered names are the server's");
  return segments;
}

/**
 * Creates the directories of a checked name under `root` (never through a
 * symbolic link) and returns the final path, which does not exist yet.
 *
 * @throws {ProtocolError} when the path goes through a link or a file, or the name exists.
 * @throws {FileError} when a directory cannot be created.
 */
export async function prepareNamedPath(root: string, segments: readonly string[]): Promise<string> {
  const name = segments.join("/");
  let path = root.replace(/\/+$/, "");
  for (const segment of segments.slice(0, -1)) {
    path = `${path}/${segment}`;
    try {
      await Deno.mkdir(path);
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) {
        throw new FileError(`cannot create directory for "${name}": ${describeError(error)}`);
      }
    }
    const info = await Deno.lstat(path);
    if (info.isSymlink) {
      throw new ProtocolError(`refused name ${JSON.stringify(name)}: goes through a symbolic link`);
    }
    if (!info.isDirectory) {
      throw new ProtocolError(`refused name ${JSON.stringify(name)}: "${segment}" is not a directory`);
    }
  }
  const final = `${path}/${segments.at(-1)}`;
  // The parent must still resolve inside the root (a link swapped in after the check above).
  const [realRoot, realParent] = await Promise.all([Deno.realPath(root), Deno.realPath(path)]);
  if (realParent !== realRoot && !realParent.startsWith(realRoot + "/")) {
    throw new ProtocolError(`refused name ${JSON.stringify(name)}: resolves outside the upload directory`);
  }
  try {
    await Deno.lstat(final);
    throw new ProtocolError(`refused name ${JSON.stringify(name)}: already exists (never overwritten)`);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return final;
}
