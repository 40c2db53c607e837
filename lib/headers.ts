/**
 * Header extensions of the double handshake: `key: value` lines between
 * `confirm-accio-again\r\n` and the empty line. Both sides opt in: the client
 * sends them only when asked (`--name`, `--named`, `--verify`), the server
 * accepts them only with `--headers` or `--names`. A client that sent any
 * extension line gets a one-line receipt, `ok` or `error <reason>`, before the
 * server closes.
 *
 * | key | value |
 * | --- | --- |
 * | `name` | relative path to store the file at (server needs `--names`) |
 * | `length` | decimal byte count of the file |
 * | `sha256` | lowercase hex SHA-256 of the file |
 * | `resume` | `yes`: ask for the offset the server holds (with `name`, `length`, `sha256`) |
 *
 * A client that sent `resume: yes` reads one line before it sends any file
 * byte: `offset <N>\r\n` (send from byte N on) or `error <reason>\r\n`.
 *
 * @example
 * ```ts
 * import { formatHeaders, parseHeaders } from "./headers.ts";
 * const lines = formatHeaders({ name: "floor2/temp.csv", length: 42 });
 * // ["name: floor2/temp.csv", "length: 42"]
 * parseHeaders(lines.map((l) => new TextEncoder().encode(l)));
 * ```
 * @module
 */
import { ProtocolError } from "./errors.ts";
import { showBytes } from "./handshake.ts";

/** The extension headers an upload may carry. */
export interface UploadHeaders {
  /** Where to store the file, relative to the server's directory. */
  name?: string;
  /** The file's length in bytes. */
  length?: number;
  /** The file's SHA-256, 64 lowercase hex digits. */
  sha256?: string;
  /** Ask for the prefix the server kept of an earlier, broken attempt (`resume: yes`). */
  resume?: boolean;
}

/** The receipt line for a verified, stored upload. */
export const RECEIPT_OK = "ok";

/** Reason of a refusal because another connection holds the same upload's prefix: transient. */
export const REASON_BUSY = "busy";
/** Reason of a refusal because the name holds a different file: permanent. */
export const REASON_EXISTS = "exists";

/**
 * How the server's transient reasons begin: the idle timeout (`no data for
 * 10 s ...`), a shutdown (`server shut down ...`), and {@link REASON_BUSY}.
 * Besides these, an upload that reached the server shorter than announced is
 * transient (see {@link isTransientReason}). Every other reason is permanent: trying again would get the same answer
 * (a refused or existing name, a limit, a hash that differs, ...).
 */
export const TRANSIENT_REASONS: readonly string[] = ["no data for", "server shut down", REASON_BUSY];

/**
 * The server's reason for an upload whose stream ended before the announced
 * length: the client sent it all (it half-closes only then), so something on
 * the way ended it early, and a new connection may carry it whole.
 */
const SHORT_UPLOAD = /^received (\d+) bytes, but the client announced (\d+)$/;

/**
 * Whether a server's `error <reason>` may pass if the upload is tried again.
 *
 * @example
 * ```ts
 * import { isTransientReason } from "./headers.ts";
 * isTransientReason("busy: another connection is uploading it"); // true
 * isTransientReason("received 10 bytes, but the client announced 20"); // true
 * isTransientReason('refused name "../x": a segment starts with a dot'); // false
 * ```
 */
export function isTransientReason(reason: string): boolean {
  const short = SHORT_UPLOAD.exec(reason);
  if (short) return Number(short[1]) < Number(short[2]);
  return TRANSIENT_REASONS.some((start) =>
    reason === start || reason.startsWith(`${start} `) ||
    reason.startsWith(`${start}:`)
  );
}

/** True when the headers describe a named, verified upload: what retries and resume need. */
export function isNamedVerified(headers: UploadHeaders): boolean {
  return headers.name !== undefined && headers.length !== undefined && headers.sha256 !== undefined;
}

const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Parses raw header lines.
 *
 * @throws {ProtocolError} for malformed lines, unknown or repeated keys, bad values.
 */
export function parseHeaders(lines: readonly Uint8Array[]): UploadHeaders {
  const headers: UploadHeaders = {};
  const seen = new Set<string>();
  for (const raw of lines) {
    let line: string;
    try {
      line = decoder.decode(raw);
    } catch {
      throw new ProtocolError(`header line ${showBytes(raw)} is not UTF-8`);
    }
    const match = /^([a-z0-9-]+): (.*)$/.exec(line);
    if (!match) throw new ProtocolError(`malformed header line ${showBytes(raw)}: expected "key: value"`);
    const [, key, value] = match;
    if (seen.has(key)) throw new ProtocolError(`header "${key}" sent twice`);
    seen.add(key);
    if (key === "name") {
      headers.name = value;
    } else if (key === "length") {
      if (!/^[0-9]{1,16}$/.test(value)) throw new ProtocolError(`bad length header "${value}"`);
      headers.length = Number(value);
    } else if (key === "sha256") {
      if (!/^[0-9a-f]{64}$/.test(value)) {
        throw new ProtocolError(`bad sha256 header: expected 64 lowercase hex digits`);
      }
      headers.sha256 = value;
    } else if (key === "resume") {
      if (value !== "yes") throw new ProtocolError(`bad resume header "${value}": expected "yes"`);
      headers.resume = true;
    } else {
      throw new ProtocolError(`unknown header "${key}"`);
    }
  }
  return headers;
}

/**
 * Renders headers as lines (without CRLF) in a fixed order.
 *
 * @throws {ProtocolError} when a value holds CR, LF or NUL: it would end the
 * line, or the whole header, early and let the rest pass for other headers.
 */
export function formatHeaders(headers: UploadHeaders): string[] {
  const lines: string[] = [];
  const add = (key: string, value: string | number | undefined) => {
    if (value === undefined) return;
    const text = String(value);
    if (/[\r\n\0]/.test(text)) {
      throw new ProtocolError(
        `header "${key}" refused: its value ${JSON.stringify(text)} holds CR, LF or NUL`,
      );
    }
    lines.push(`${key}: ${text}`);
  };
  add("name", headers.name);
  add("length", headers.length);
  add("sha256", headers.sha256);
  if (headers.resume) add("resume", "yes");
  return lines;
}
