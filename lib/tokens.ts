/**
 * Per-sensor tokens, both sides.
 *
 * The server's tokens file holds one `identity:<sha256 of the token, hex>`
 * line per token (comments `#`, blank lines), never a token itself, and is
 * reloaded on SIGHUP (a bad file keeps the tokens in use). An identity is a
 * folder name on every file system: `a-z`, `0-9`, `_`, `-`, starting with a
 * letter or digit, at most 64 characters; an identity may hold several tokens
 * (for rotation). A token is checked by comparing its SHA-256 with every
 * line's in constant time.
 *
 * The client reads its token from a file (`--token-file`, refused when every
 * user may read it) or from `ACCIO_TOKEN`, never from the command line, which
 * every user can read in `ps`. No message here ever contains a token.
 *
 * @example
 * ```ts
 * import { TokenFile, tokenDigest } from "./tokens.ts";
 * const line = `sensor-7:${tokenDigest("s3cret-token-of-sensor-7")}`; // what the operator writes
 * const tokens = await TokenFile.load("/etc/accio/tokens");
 * tokens.verify("s3cret-token-of-sensor-7"); // "sensor-7", or undefined
 * ```
 * @module
 */
import { readSmallTextFile, type SmallTextFile } from "./small_file.ts";
import { Buffer } from "node:buffer";
import { createHash, timingSafeEqual } from "node:crypto";
import { FileError, ProtocolError, UsageError } from "./errors.ts";
import { checkName } from "./upload_name.ts";

/** The header key of the double handshake that carries the token: `token: <token>`. */
export const TOKEN_HEADER = "token";
/** The reason the server answers a missing or wrong token with (`error unauthorized`). */
export const UNAUTHORIZED = "unauthorized";
/** The environment variable the client reads its token from. */
export const TOKEN_ENV = "ACCIO_TOKEN";
/** Shortest token accepted: 16 characters (`openssl rand -hex 32` makes 64). */
export const MIN_TOKEN_LENGTH = 16;
/** Longest token accepted. */
export const MAX_TOKEN_LENGTH = 512;
/** Largest tokens file or token file read, in bytes. */
export const MAX_TOKENS_FILE_BYTES = 4 * 1024 * 1024;

const IDENTITY = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const DIGEST = /^[0-9a-fA-F]{64}$/;
const TOKEN_CHARS = /^[\x21-\x7e]+$/;

/**
 * The SHA-256 of a token, lowercase hex: what a tokens file line holds.
 * Same as `printf %s "$TOKEN" | sha256sum`.
 *
 * @example
 * ```ts
 * import { tokenDigest } from "./tokens.ts";
 * tokenDigest("abc"); // "ba7816bf..."
 * ```
 */
export function tokenDigest(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

/** Why `identity` cannot name a sensor, or `undefined` when it can. *
 * @example
 * ```ts
 * import { identityProblem } from "./tokens.ts";
 * identityProblem("sensor-7"); // undefined
 * identityProblem("../x"); // "only a-z, 0-9, _ and - are allowed, ..."
 * ```
 */
export function identityProblem(identity: string): string | undefined {
  if (IDENTITY.test(identity)) return undefined;
  if (identity === "") return "empty";
  if (identity.length > 64) return "longer than 64 characters";
  return "only a-z, 0-9, _ and - are allowed, starting with a letter or digit";
}

/**
 * Why `token` is unusable (too short, too long, spaces or control or
 * non-ASCII characters), or `undefined`. Never quotes the token.
 *
 * @example
 * ```ts
 * import { tokenProblem } from "./tokens.ts";
 * tokenProblem("short"); // "shorter than 16 characters: too easy to guess"
 * ```
 */
export function tokenProblem(token: string): string | undefined {
  if (token.length < MIN_TOKEN_LENGTH) {
    return `shorter than ${MIN_TOKEN_LENGTH} characters: too easy to guess`;
  }
  if (token.length > MAX_TOKEN_LENGTH) return `longer than ${MAX_TOKEN_LENGTH} characters`;
  if (!TOKEN_CHARS.test(token)) return "holds a space, a control or a non-ASCII character";
  return undefined;
}

interface Entry {
  identity: string;
  digest: Buffer;
}

/** The tokens of one tokens file, parsed. *
 * @example
 * ```ts
 * import { TokenTable, tokenDigest } from "./tokens.ts";
 * const table = TokenTable.parse(`sensor-7:${tokenDigest("0123456789abcdef")}\n`, "tokens");
 * table.verify("0123456789abcdef"); // "sensor-7"
 * ```
 */
export class TokenTable {
  readonly #entries: Entry[];

  private constructor(entries: Entry[]) {
    this.#entries = entries;
  }

  /**
   * Parses a tokens file's text; `source` names it in messages.
   *
   * @throws {FileError} naming the line and what is wrong with it.
   */
  static parse(text: string, source: string): TokenTable {
    const entries: Entry[] = [];
    const lineOf = new Map<string, number>();
    text.split("\n").forEach((raw, index) => {
      const line = raw.replace(/\r$/, "").trim();
      const where = `${source}, line ${index + 1}`;
      if (line === "" || line.startsWith("#")) return;
      const colon = line.indexOf(":");
      if (colon < 0) throw new FileError(`${where}: expected identity:<sha256 hex of the token>`);
      const identity = line.slice(0, colon).trim();
      const digest = line.slice(colon + 1).trim().toLowerCase();
      const problem = identityProblem(identity);
      if (problem) throw new FileError(`${where}: bad identity ${JSON.stringify(identity)}: ${problem}`);
      if (!DIGEST.test(digest)) {
        throw new FileError(`${where}: expected 64 hex digits (the token's SHA-256) after "${identity}:"`);
      }
      const first = lineOf.get(digest);
      if (first !== undefined) throw new FileError(`${where}: the same token as line ${first}`);
      lineOf.set(digest, index + 1);
      entries.push({ identity, digest: Buffer.from(digest, "hex") });
    });
    return new TokenTable(entries);
  }

  /** How many tokens it holds. */
  get size(): number {
    return this.#entries.length;
  }

  /** The identities, each once, in file order. */
  identities(): string[] {
    return [...new Set(this.#entries.map((entry) => entry.identity))];
  }

  /**
   * The identity `token` belongs to, or `undefined`. Every line is compared,
   * in constant time each: the time taken says nothing about which line, or
   * how much of a digest, matched.
   */
  verify(token: string): string | undefined {
    const digest = createHash("sha256").update(token).digest();
    let found: string | undefined;
    for (const entry of this.#entries) {
      if (timingSafeEqual(entry.digest, digest) && found === undefined) found = entry.identity;
    }
    return found;
  }
}

function readSmallFile(path: string, what: string): Promise<SmallTextFile> {
  return readSmallTextFile(path, what, MAX_TOKENS_FILE_BYTES);
}

/** The server's tokens file: loaded once, {@link TokenFile.reload}ed on SIGHUP. *
 * @example
 * ```ts
 * import { TokenFile } from "./tokens.ts";
 * const tokens = await TokenFile.load("/etc/accio/tokens");
 * Deno.addSignalListener("SIGHUP", () => tokens.reload().catch((e) => console.log(e.message)));
 * ```
 */
export class TokenFile {
  /** The tokens file. */
  readonly path: string;
  #table: TokenTable;
  #reloads: Promise<unknown> = Promise.resolve();

  private constructor(path: string, table: TokenTable) {
    this.path = path;
    this.#table = table;
  }

  /**
   * Reads and parses the file.
   *
   * @throws {FileError} when it cannot be read, or a line is bad.
   */
  static async load(path: string): Promise<TokenFile> {
    const { text } = await readSmallFile(path, "tokens file");
    return new TokenFile(path, TokenTable.parse(text, `tokens file "${path}"`));
  }

  /** The tokens in use. */
  get table(): TokenTable {
    return this.#table;
  }

  /** {@link TokenTable.verify} on the tokens in use. */
  verify(token: string): string | undefined {
    return this.#table.verify(token);
  }

  /**
   * Reads the file again; the new tokens apply to every check from now on
   * (a removed token is revoked). Reloads run one at a time.
   *
   * @throws {FileError} when the file is bad: the tokens in use stay.
   */
  reload(): Promise<TokenTable> {
    const run = this.#reloads.then(async () => {
      const { text } = await readSmallFile(this.path, "tokens file");
      this.#table = TokenTable.parse(text, `tokens file "${this.path}"`);
      return this.#table;
    });
    this.#reloads = run.catch(() => {});
    return run;
  }
}

/** Where the client's token came from. */
export interface ClientToken {
  /** The token itself: send it, never show it. */
  token: string;
  /** For messages: `token file "<path>"` or `ACCIO_TOKEN`. */
  source: string;
}

/** The token in a token file's text: the whole text, less one final newline. */
function tokenFromFile(text: string, path: string): string {
  const token = text.replace(/\r?\n$/, "");
  if (token.includes("\n")) throw new FileError(`token file "${path}" holds more than one line`);
  const problem = tokenProblem(token);
  if (problem) throw new FileError(`the token in token file "${path}" is unusable: ${problem}`);
  return token;
}

/**
 * The client's token: from `tokenFile` when given, else from `ACCIO_TOKEN`
 * when set, else `undefined`. A token file that every user may read is
 * refused (a group-readable one is allowed, for a service group), like ssh's
 * private keys.
 *
 * @throws {FileError} for an unreadable, world-readable or malformed token file.
 * @throws {UsageError} when `ACCIO_TOKEN` holds an unusable token. Without the
 * permission to read `ACCIO_TOKEN` (`--allow-env=ACCIO_TOKEN`), it counts as unset.
 *
 * @example
 * ```ts
 * import { readClientToken } from "./tokens.ts";
 * const found = await readClientToken("/etc/accio/sensor.token"); // or readClientToken(): ACCIO_TOKEN
 * if (found) console.log(`token from ${found.source}`); // never the token itself
 * ```
 */
export async function readClientToken(tokenFile?: string): Promise<ClientToken | undefined> {
  if (tokenFile !== undefined) {
    const { text, info } = await readSmallFile(tokenFile, "token file");
    if (info.mode !== null && (info.mode & 0o004) !== 0) {
      const mode = (info.mode & 0o777).toString(8);
      throw new FileError(
        `token file "${tokenFile}" is readable by every user (mode ${mode}); run: chmod o-r "${tokenFile}"`,
      );
    }
    return { token: tokenFromFile(text, tokenFile), source: `token file "${tokenFile}"` };
  }
  // Without the permission to read it, ACCIO_TOKEN counts as unset (asking would prompt on a terminal).
  if (Deno.permissions.querySync({ name: "env", variable: TOKEN_ENV }).state !== "granted") return undefined;
  const token = Deno.env.get(TOKEN_ENV);
  if (token === undefined || token === "") return undefined;
  const problem = tokenProblem(token);
  if (problem) throw new UsageError(`the token in ${TOKEN_ENV} is unusable: ${problem}`);
  return { token, source: TOKEN_ENV };
}

/**
 * True when a raw header line carries a token (`token:`, any case), so that
 * an error message or log shows `token: <redacted>` instead of the line.
 *
 * @example
 * ```ts
 * import { isTokenLine } from "./tokens.ts";
 * const line = "token: 0123456789abcdef";
 * console.log(isTokenLine(line) ? "token: <redacted>" : line);
 * ```
 */
export function isTokenLine(line: Uint8Array | string): boolean {
  const head = typeof line === "string" ? line.slice(0, 16) : new TextDecoder().decode(line.subarray(0, 16));
  return /^\s*token\s*:/i.test(head);
}

/**
 * The path, relative to the upload directory, where `identity` stores the
 * upload it named `name`: `<identity>/<name>`. `name` is checked as every name
 * is (no `..`, no absolute path, ...), so it cannot leave the identity's folder.
 *
 * @example
 * ```ts
 * import { identityPath } from "./tokens.ts";
 * identityPath("sensor-7", "floor2/temp.csv"); // ["sensor-7", "floor2", "temp.csv"]
 * ```
 * @returns the path's segments, for `prepareNamedPath`.
 * @throws {ProtocolError} when `name` is refused, or the identity is not a folder name.
 */
export function identityPath(identity: string, name: string): string[] {
  const problem = identityProblem(identity);
  if (problem) {
    throw new ProtocolError(`identity ${JSON.stringify(identity)} is not a folder name: ${problem}`);
  }
  return [identity, ...checkName(name)];
}
