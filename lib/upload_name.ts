/**
 * Named uploads: checking a client-chosen name and placing it under the
 * upload directory so that it can never escape it or replace a file.
 *
 * Refused: empty names, absolute paths, `.`/`..` and any segment starting
 * with `.` (hidden files, and the server's own temporary files), empty
 * segments (`a//b`, a trailing `/`), backslashes, NUL and other control characters
 * (C0, DEL and C1), U+FFFD (the mark of a name that was not UTF-8),
 * names over 1024 bytes or segments over 255, a first segment `<N>.file`
 * (leading zeros too: those names belong to numbered uploads, whether the
 * name is `3.file` or `3.file/x`), a path through a symbolic link or a
 * non-directory, and a name that already exists. Every name the server
 * itself uses in the directory (`.N.file.part`, `.accio-*`) starts with a dot.
 *
 * @example
 * ```ts
 * import { checkName, prepareNamedTarget } from "./upload_name.ts";
 * import { HeldDirectory } from "./held_dir.ts";
 *
 * const root = await HeldDirectory.openRoot("/save");
 * const target = await prepareNamedTarget(root, checkName("floor2/temp.csv")); // floor2/ created
 * console.log(target.path); // "/save/floor2/temp.csv"
 * target.release();
 * ```
 * @module
 */
import { ProtocolError } from "./errors.ts";
import type { HeldDirectory } from "./held_dir.ts";

/** Longest name accepted, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 1024;
/** Longest path segment accepted, in UTF-8 bytes (the usual file-system limit). */
export const MAX_SEGMENT_BYTES = 255;

/**
 * The names of numbered uploads, `<N>.file`; N may have leading zeros
 * (`03.file` is number 3). Any entry of the upload directory with such a
 * name holds its number.
 */
export const NUMBERED_NAME: RegExp = /^([0-9]+)\.file$/;

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
  if (/[\x00-\x1f\x7f-\x9f]/.test(name)) throw refuse("contains a control character");
  // A replacement character means the name was mangled on its way (Deno decodes arguments lossily).
  if (name.includes("\uFFFD")) throw refuse("contains U+FFFD (a name that was not valid UTF-8)");
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
  // At any depth: a top-level directory "3.file" would take number 3's place (and 03.file counts as 3).
  if (NUMBERED_NAME.test(segments[0])) throw refuse("numbered names are the server's");
  return segments;
}

/** Where a named upload will be published: `leaf` inside the held directory `dir`. */
export interface NamedTarget {
  /** The directory the file goes in, held open until {@link NamedTarget.release}. */
  dir: HeldDirectory;
  /** The file's name inside `dir`. */
  leaf: string;
  /** The full path, as the log shows it. */
  path: string;
  /** What the name already is (not followed), when {@link PrepareOptions.allowExisting} let it be. */
  existing?: Deno.FileInfo;
  /** Releases `dir` (never the root it came from). */
  release(): void;
}

/** Options of {@link prepareNamedTarget}. */
export interface PrepareOptions {
  /**
   * Hand back a name that exists (with {@link NamedTarget.existing}) instead
   * of refusing it: a retry may find its own upload there. Publishing over it
   * is refused all the same. Default false.
   */
  allowExisting?: boolean;
}

/**
 * Creates the directories of a checked name under `root`, one at a time and
 * each relative to the one held before it (never through a symbolic link),
 * and holds the last one. The name itself does not exist yet.
 *
 * @throws {ProtocolError} when the path goes through a link or a file, or the name exists.
 * @throws {FileError} when a directory cannot be created or opened.
 */
export async function prepareNamedTarget(
  root: HeldDirectory,
  segments: readonly string[],
  { allowExisting = false }: PrepareOptions = {},
): Promise<NamedTarget> {
  const refuse = (why: string) =>
    new ProtocolError(`refused name ${JSON.stringify(segments.join("/"))}: ${why}`);
  let dir = root;
  try {
    for (const segment of segments.slice(0, -1)) {
      const child = await dir.child(segment, true);
      if (child === "symlink") throw refuse("goes through a symbolic link");
      if (child === "not-a-directory") throw refuse(`"${segment}" is not a directory`);
      if (dir !== root) dir.close();
      dir = child;
    }
    if (!(await dir.isInside())) throw refuse("resolves outside the upload directory");
    const leaf = segments.at(-1)!;
    let existing: Deno.FileInfo | undefined;
    try {
      existing = await Deno.lstat(dir.entry(leaf));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    if (existing && !allowExisting) throw refuse("already exists (never overwritten)");
    const held = dir;
    return {
      dir,
      leaf,
      path: `${dir.path}/${leaf}`,
      existing,
      release: () => {
        if (held !== root) held.close();
      },
    };
  } catch (error) {
    if (dir !== root) dir.close();
    throw error;
  }
}
