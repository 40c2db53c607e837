/**
 * The Accio handshakes, both sides.
 *
 * Single: the server sends `accio\r\n`; every byte the client sends after it is
 * the file. Double: after the first `accio\r\n` the client answers
 * `confirm-accio\r\n`, the server sends `accio\r\n` again, and the client sends
 * `confirm-accio-again\r\n`, optional `key: value` header lines (an opt-in
 * extension), and an empty line; then the file. A server in `auto` mode takes a
 * connection as double exactly when its first bytes are `confirm-accio\r\n`.
 *
 * @example
 * ```ts
 * import { clientHandshake } from "./handshake.ts";
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: 5000 });
 * await clientHandshake(conn, { mode: "double", timeoutMs: 10_000 });
 * ```
 * @module
 */
import { ConnectionError, LimitError, ProtocolError, TimeoutError } from "./errors.ts";
import { readExactly, readWithin, type Socket, writeAll } from "./socket_io.ts";

const ascii = (text: string) => new TextEncoder().encode(text);

/** `accio\r\n`, sent by the server. */
export const GREETING: Uint8Array = ascii("accio\r\n");
/** `confirm-accio\r\n`, the client's first answer in the double handshake. */
export const CONFIRM: Uint8Array = ascii("confirm-accio\r\n");
/** `confirm-accio-again\r\n`, the client's second answer. */
export const CONFIRM_AGAIN: Uint8Array = ascii("confirm-accio-again\r\n");
/** The empty line that ends the double handshake's header. */
export const HEADER_END: Uint8Array = ascii("\r\n");

/** Default limit on a double-handshake header after `confirm-accio\r\n`, in bytes. */
export const DEFAULT_MAX_HEADER_BYTES = 8192;

/** Which handshake a client uses. */
export type ClientHandshakeMode = "single" | "double";
/** Which handshakes a server accepts: `auto` detects each connection's. */
export type ServerHandshakeMode = "auto" | "single" | "double";

/** Shows bytes from the wire in an error message: printable ASCII as is, the rest escaped. */
export function showBytes(bytes: Uint8Array, limit = 32): string {
  let shown = "";
  for (const byte of bytes.subarray(0, limit)) {
    if (byte === 0x0d) shown += "\\r";
    else if (byte === 0x0a) shown += "\\n";
    else if (byte >= 0x20 && byte < 0x7f && byte !== 0x22 && byte !== 0x5c) {
      shown += String.fromCharCode(byte);
    } else shown += `\\x${byte.toString(16).padStart(2, "0")}`;
  }
  return `"${shown}${bytes.length > limit ? "..." : ""}"`;
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

/** True when `bytes` could still grow into `whole` (it is a prefix of it, or `whole` of it). */
function agreesWith(bytes: Uint8Array, whole: Uint8Array): boolean {
  const length = Math.min(bytes.length, whole.length);
  for (let i = 0; i < length; i++) if (bytes[i] !== whole[i]) return false;
  return true;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a);
  joined.set(b, a.length);
  return joined;
}

async function expectGreeting(
  socket: Socket,
  timeoutMs: number,
  which: string,
  hint?: string,
): Promise<void> {
  const heard = { any: false };
  const watched = hint === undefined ? socket : listening(socket, heard);
  const received = await readExactly(watched, GREETING.length, timeoutMs, `the ${which}accio\\r\\n`)
    .catch((error) => {
      throw heard.any ? error : withHint(error, hint);
    });
  if (!startsWith(received, GREETING)) {
    throw new ProtocolError(`server sent ${showBytes(received)} instead of "accio\\r\\n"`);
  }
}

/** `socket`, noting in `heard` whether any byte came. */
function listening(socket: Socket, heard: { any: boolean }): Socket {
  return {
    read: async (buffer) => {
      const n = await socket.read(buffer);
      if (n !== null && n > 0) heard.any = true;
      return n;
    },
    write: (data) => socket.write(data),
    close: () => socket.close(),
  };
}

/** The same failure (a timeout, a close), with `hint` added to its message. */
function withHint(error: unknown, hint: string | undefined): unknown {
  if (hint === undefined) return error;
  const options = { cause: error, transient: (error as { transient?: boolean }).transient };
  if (error instanceof TimeoutError) return new TimeoutError(`${error.message} (${hint})`, options);
  if (error instanceof ConnectionError) return new ConnectionError(`${error.message} (${hint})`, options);
  return error;
}

/** Options of {@link clientHandshake}. */
export interface ClientHandshakeOptions {
  /** Which handshake to perform. */
  mode: ClientHandshakeMode;
  /** Longest wait for each of the server's `accio\r\n`, all 7 bytes of it as a whole, in ms. */
  timeoutMs: number;
  /**
   * Extension header lines (`key: value`, no CRLF) for the double handshake.
   *
   * @default {[]}
   */
  headerLines?: readonly string[];
  /**
   * Added to the message when the server sent nothing at all before the
   * first `accio\r\n` was due: what may be wrong (a TLS port).
   */
  silenceHint?: string;
}

/**
 * Performs the client's side of the handshake. It sends nothing before the
 * server's whole `accio\r\n` has arrived, and reads nothing past it.
 *
 * @throws {TimeoutError} {ProtocolError} {ConnectionError}
 */
export async function clientHandshake(
  socket: Socket,
  { mode, timeoutMs, headerLines = [], silenceHint }: ClientHandshakeOptions,
): Promise<void> {
  await expectGreeting(socket, timeoutMs, "", silenceHint);
  if (mode === "single") return;
  await writeAll(socket, CONFIRM, timeoutMs, "confirm-accio");
  await expectGreeting(socket, timeoutMs, "second ");
  const header = ["confirm-accio-again", ...headerLines, "", ""].join("\r\n");
  await writeAll(socket, ascii(header), timeoutMs, "confirm-accio-again");
}

/** Options of {@link serverHandshake}. */
export interface ServerHandshakeOptions {
  /** Which handshakes to accept. */
  mode: ServerHandshakeMode;
  /** Longest wait for each read, in ms. */
  timeoutMs: number;
  /** Longest double-handshake header after `confirm-accio\r\n`, in bytes. */
  maxHeaderBytes: number;
  /** Whether `key: value` lines are allowed in the header. */
  allowHeaderLines: boolean;
  /** Buffer for the first reads; its size bounds what an idle connection holds. */
  buffer: Uint8Array;
}

/** What the server learned from the handshake. */
export interface ServerHandshakeResult {
  /** The handshake the client used. */
  kind: "single" | "double";
  /** Extension header lines of a double handshake, raw, in order. */
  headerLines: Uint8Array[];
  /** File bytes that arrived together with the handshake. */
  data: Uint8Array;
  /** True when the client already closed its side (the file is `data`). */
  ended: boolean;
}

/**
 * Performs the server's side, after its first `accio\r\n` was sent.
 *
 * @throws {ProtocolError} when the client breaks the handshake it started.
 * @throws {LimitError} when the header grows past `maxHeaderBytes`.
 */
export async function serverHandshake(
  socket: Socket,
  options: ServerHandshakeOptions,
): Promise<ServerHandshakeResult> {
  const { mode, timeoutMs, buffer } = options;
  let head: Uint8Array = new Uint8Array(0);
  for (;;) {
    const n = await readWithin(socket, buffer, timeoutMs, "the client's first bytes");
    if (n === null) {
      if (mode === "double") {
        throw new ProtocolError(`client closed after ${showBytes(head)}, before confirm-accio`);
      }
      return { kind: "single", headerLines: [], data: head, ended: true };
    }
    head = head.length === 0 ? buffer.slice(0, n) : concat(head, buffer.subarray(0, n));
    if (mode === "single") break;
    if (!agreesWith(head, CONFIRM)) {
      if (mode === "double") {
        throw new ProtocolError(`expected confirm-accio\\r\\n, received ${showBytes(head)}`);
      }
      break;
    }
    if (head.length >= CONFIRM.length) {
      return await serverDoubleHandshake(socket, head.slice(CONFIRM.length), options);
    }
  }
  return { kind: "single", headerLines: [], data: head, ended: false };
}

const CR = 0x0d;
const LF = 0x0a;
const CONFIRM_AGAIN_LINE = CONFIRM_AGAIN.subarray(0, CONFIRM_AGAIN.length - 2);

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && startsWith(a, b);
}

/** The double handshake's header as it arrives: the bytes so far, and the lines taken from them. */
interface HeaderState {
  pending: Uint8Array;
  /** Where the first line not yet taken starts in `pending`. */
  lineStart: number;
  lineCount: number;
  headerLines: Uint8Array[];
}

/** Takes one complete line; returns true for the empty line that ends the header. */
function takeLine(line: Uint8Array, state: HeaderState, allowHeaderLines: boolean): boolean {
  if (state.lineCount++ === 0) {
    if (!sameBytes(line, CONFIRM_AGAIN_LINE)) {
      throw new ProtocolError(`expected confirm-accio-again\\r\\n, received ${showBytes(line)}`);
    }
    return false;
  }
  if (line.length === 0) return true;
  if (!allowHeaderLines) {
    throw new ProtocolError(
      `header line ${showBytes(line)} sent, but this server accepts no header extensions`,
    );
  }
  state.headerLines.push(line.slice());
  return false;
}

/** Takes every complete line of `state.pending`; returns true once the header has ended. */
function takeLines(state: HeaderState, allowHeaderLines: boolean): boolean {
  const { pending } = state;
  for (let i = state.lineStart; i + 1 < pending.length; i++) {
    if (pending[i] !== CR || pending[i + 1] !== LF) continue;
    const line = pending.subarray(state.lineStart, i);
    state.lineStart = i + 2;
    i = state.lineStart - 1;
    if (takeLine(line, state, allowHeaderLines)) return true;
  }
  return false;
}

async function serverDoubleHandshake(
  socket: Socket,
  received: Uint8Array,
  { timeoutMs, maxHeaderBytes, allowHeaderLines, buffer }: ServerHandshakeOptions,
): Promise<ServerHandshakeResult> {
  await writeAll(socket, GREETING, timeoutMs, "the second accio\\r\\n");
  const state: HeaderState = { pending: received, lineStart: 0, lineCount: 0, headerLines: [] };
  for (;;) {
    if (takeLines(state, allowHeaderLines)) {
      return {
        kind: "double",
        headerLines: state.headerLines,
        data: state.pending.slice(state.lineStart),
        ended: false,
      };
    }
    // Fail as soon as the first line cannot become confirm-accio-again.
    if (state.lineCount === 0 && !agreesWith(state.pending, CONFIRM_AGAIN)) {
      throw new ProtocolError(`expected confirm-accio-again\\r\\n, received ${showBytes(state.pending)}`);
    }
    if (state.pending.length > maxHeaderBytes) {
      throw new LimitError(`handshake header longer than ${maxHeaderBytes} bytes`);
    }
    const n = await readWithin(socket, buffer, timeoutMs, "the rest of the handshake header");
    if (n === null) {
      throw new ProtocolError("client closed the connection inside the handshake header");
    }
    state.pending = concat(state.pending, buffer.subarray(0, n));
  }
}
