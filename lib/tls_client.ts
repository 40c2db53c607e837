/**
 * The client's TLS connection, over `node:tls` on a `node:net` socket, with
 * the same surface as the plaintext `TcpSocket`: read, write, half-close,
 * close, and a reset that aborts an unfinished upload.
 *
 * Deno 2.9.6's `node:tls` reports the end of the connection as a clean end
 * whatever it was: `close_notify`, a bare FIN, even a reset; and its own
 * `resetAndDestroy()` sends a FIN. So the TCP socket stays ours, under the TLS
 * layer, behind a small `Duplex`: a reset from the server is seen there (and
 * is an error, as in plaintext), and {@link TlsSocket.reset} resets the TCP
 * connection itself, so the server (`Deno.listenTls`) records `ERROR`.
 *
 * Verification is `node:tls`'s, with `rejectUnauthorized` on: a client that
 * does not trust the certificate aborts inside the handshake, before any byte
 * of the upload, and the server never counts the connection.
 *
 * @example
 * ```ts
 * import { systemRoots, TlsSocket } from "./tls_client.ts";
 * const roots = await systemRoots();
 * const socket = await TlsSocket.connect("gw.example", 5000, { ca: roots.certificates }).connected;
 * await socket.write(new TextEncoder().encode("data"));
 * await socket.closeWrite();
 * socket.close();
 * ```
 * @module
 */
import net from "node:net";
import { Duplex } from "node:stream";
import tls from "node:tls";
import { ConnectionError, describeError, FileError } from "./errors.ts";
import type { Socket } from "./socket_io.ts";

/** Received bytes held before the socket stops reading from the kernel. */
const QUEUE_LIMIT = 64 * 1024;

/** How to verify the server. */
export interface TlsClientOptions {
  /** Trusted root certificates, PEM. Default: {@link systemRoots}. They replace the runtime's own roots. */
  ca?: string[];
  /** Where {@link ca} came from, for messages: a file name, or "the system's root certificates". */
  caSource?: string;
  /** The name the certificate must hold (and the SNI sent). Default: the host connected to. */
  serverName?: string;
}

/** A connection attempt: {@link TlsSocket.connect}. */
export interface TlsConnecting {
  /** Settles with the verified connection, or with the runtime's TCP error, or a {@link ConnectionError} for TLS. */
  connected: Promise<TlsSocket>;
  /** Abandons the attempt. */
  cancel(): void;
}

/** Node's socket errors as the runtime's classes, where one fits (as `tcp_socket.ts` does). */
function translate(error: unknown): Error {
  const code = (error as { code?: string }).code;
  const message = error instanceof Error ? error.message : String(error);
  const options = { cause: error };
  if (code === "ECONNRESET") return new Deno.errors.ConnectionReset(message, options);
  if (code === "EPIPE") return new Deno.errors.BrokenPipe(message, options);
  if (code === "ECONNREFUSED") return new Deno.errors.ConnectionRefused(message, options);
  return error instanceof Error ? error : new Error(message);
}

/** Codes `node:tls` gives a certificate it does not trust (Deno reports an expired one so too). */
const UNTRUSTED = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_UNTRUSTED",
]);

/**
 * A TLS handshake failure in one line that says what to do.
 *
 * @example
 * ```ts
 * import { describeTlsFailure } from "./tls_client.ts";
 * describeTlsFailure({ code: "ERR_SSL_WRONG_VERSION_NUMBER" }, "localhost", "ca.pem").message;
 * // "TLS handshake failed: the server does not speak TLS ..."
 * ```
 */
export function describeTlsFailure(error: unknown, serverName: string, caSource: string): ConnectionError {
  const code = (error as { code?: string }).code ?? "";
  const reason = describeError(error);
  const say = (text: string) => new ConnectionError(`TLS handshake failed: ${text}`, { cause: error });
  if (UNTRUSTED.has(code)) {
    return say(
      `the server's certificate is not trusted: not signed by a CA in ${caSource}, or expired, or not yet valid` +
        (code === "DEPTH_ZERO_SELF_SIGNED_CERT" ? " (it is self-signed)" : ""),
    );
  }
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    const names = reason.match(/.*altnames: (.*)$/)?.[1] ?? "other names";
    return say(
      `the server's certificate is not valid for "${serverName}" (it names ${names}); --tls-name sets the name`,
    );
  }
  if (code === "ERR_SSL_WRONG_VERSION_NUMBER" || /InvalidContentType|wrong version number/.test(reason)) {
    return say("the server does not speak TLS (a plaintext Accio server? then leave out --tls)");
  }
  if (code === "ECONNRESET" || /disconnected before secure TLS connection/.test(reason)) {
    return say("the server closed the connection during the TLS handshake (not a TLS port?)");
  }
  return say(reason);
}

/** A connected, verified TLS socket: reads, writes, half-close, reset. One read at a time. */
export class TlsSocket implements Socket {
  readonly #tls: tls.TLSSocket;
  readonly #raw: net.Socket;
  readonly #queue: Uint8Array[] = [];
  #queued = 0;
  #tlsEnded = false;
  #rawEnded = false;
  #failure: Error | undefined;
  #wake: (() => void) | undefined;
  #writeEnded = false;

  private constructor(secure: tls.TLSSocket, raw: net.Socket) {
    this.#tls = secure;
    this.#raw = raw;
    secure.on("data", (chunk: Uint8Array) => {
      this.#queue.push(chunk);
      this.#queued += chunk.length;
      if (this.#queued >= QUEUE_LIMIT) secure.pause();
      this.#notify();
    });
    const fail = (error: Error) => {
      this.#failure ??= translate(error);
      this.#notify();
    };
    secure.on("error", fail);
    raw.on("error", fail);
    secure.on("end", () => {
      this.#tlsEnded = true;
      this.#notify();
    });
    raw.on("end", () => {
      this.#rawEnded = true;
      this.#notify();
    });
    // The TCP socket has the last word: a TLS layer that ended cleanly still waits for its FIN (or reset).
    secure.on("close", () => this.#closed(this.#tlsEnded));
    raw.on("close", () => this.#closed(this.#rawEnded));
  }

  #closed(endedCleanly: boolean): void {
    if (!endedCleanly) this.#failure ??= new Deno.errors.BadResource("the connection is closed");
    this.#notify();
  }

  /**
   * Connects to `hostname` (a name, or an IP literal without brackets) and
   * `port`, and runs the TLS handshake; settles once the certificate is verified.
   */
  static connect(hostname: string, port: number, options: TlsClientOptions = {}): TlsConnecting {
    const raw = net.connect({ host: hostname, port, allowHalfOpen: true });
    raw.on("error", () => {}); // a late error after cancel() must not go unhandled
    const serverName = options.serverName ?? hostname;
    const secure = tls.connect({
      socket: carrier(raw) as net.Socket,
      host: serverName,
      servername: net.isIP(serverName) ? undefined : serverName,
      ca: options.ca,
      rejectUnauthorized: true,
      allowHalfOpen: true,
    } as tls.ConnectionOptions);
    let tcpConnected = false;
    raw.once("connect", () => tcpConnected = true);
    const connected = new Promise<TlsSocket>((resolve, reject) => {
      const onError = (error: Error) => {
        // Flush the TLS alert that names the refusal, then close: the server sees why, not a reset.
        raw.end(() => raw.destroy());
        if (!tcpConnected) return reject(translate(error));
        reject(describeTlsFailure(error, serverName, options.caSource ?? "the trusted roots"));
      };
      secure.once("error", onError);
      secure.once("secureConnect", () => {
        secure.off("error", onError);
        resolve(new TlsSocket(secure, raw));
      });
    });
    secure.on("error", () => {}); // reported through `connected`, or by the socket once made
    return {
      connected,
      cancel: () => {
        raw.destroy();
        secure.destroy();
      },
    };
  }

  get #ended(): boolean {
    return this.#tlsEnded && this.#rawEnded;
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /**
   * Reads into `buffer`: bytes already received first, then `null` once the
   * server has closed cleanly (TLS end and TCP FIN), or the error (a reset).
   */
  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#queue.length === 0) {
      if (this.#failure) throw this.#failure;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    const head = this.#queue[0];
    const n = Math.min(head.length, buffer.length);
    buffer.set(head.subarray(0, n));
    if (n === head.length) this.#queue.shift();
    else this.#queue[0] = head.subarray(n);
    this.#queued -= n;
    if (this.#queued < QUEUE_LIMIT && this.#tls.isPaused()) this.#tls.resume();
    return n;
  }

  /** Writes all of `data`; resolves once it is encrypted and handed to the kernel (`data` may then be reused). */
  write(data: Uint8Array): Promise<number> {
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#tls.write(data, (error) => error ? reject(translate(error)) : resolve(data.length));
    });
  }

  /** Half-closes: TLS `close_notify`, then FIN, after everything written; reading goes on. */
  closeWrite(): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    this.#writeEnded = true;
    return new Promise((resolve, reject) => {
      const onError = (error: Error) => reject(translate(error));
      this.#tls.once("error", onError);
      // Deno's node:tls ends its TLS stream (close_notify) but not the stream under it: the FIN is ours to send.
      this.#tls.end(() => {
        this.#raw.end(() => {
          this.#tls.off("error", onError);
          resolve();
        });
      });
    });
  }

  /** Aborts with a TCP reset, without `close_notify`: the server records the upload as `ERROR`. */
  reset(): void {
    if (!this.#raw.destroyed) {
      try {
        this.#raw.resetAndDestroy();
      } catch {
        this.#raw.destroy();
      }
    }
    this.#tls.destroy();
  }

  /** Closes: gracefully once {@link closeWrite} has run, otherwise with a {@link reset}. */
  close(): void {
    if (!this.#writeEnded) return this.reset();
    this.#tls.destroy();
    this.#raw.destroy();
  }
}

/**
 * The stream `node:tls` runs over: the bytes of `raw`, but `raw` itself stays
 * here, so its reset is seen and can be sent.
 */
function carrier(raw: net.Socket): Duplex {
  const duplex = new Duplex({
    allowHalfOpen: true,
    read: () => void raw.resume(),
    write: (chunk, _encoding, done) => void raw.write(chunk, done),
    final: (done) => void raw.end(done),
    destroy: (error, done) => {
      // After a clean TLS end the TCP socket stays open to deliver its own end: FIN, or a reset.
      if (error) raw.destroy();
      else raw.resume();
      done(error);
    },
  });
  raw.on("data", (chunk) => {
    if (!duplex.push(chunk)) raw.pause();
  });
  raw.on("end", () => duplex.push(null));
  raw.on("error", (error) => duplex.destroy(error));
  return duplex;
}

/** Where systems keep their bundle of trusted roots (the list Go's crypto/x509 reads). */
export const SYSTEM_BUNDLES: readonly string[] = [
  "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Gentoo, Arch
  "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // Fedora, RHEL 7+
  "/etc/pki/tls/certs/ca-bundle.crt", // older Fedora, RHEL
  "/etc/ssl/ca-bundle.pem", // openSUSE
  "/etc/pki/tls/cacert.pem", // OpenELEC
  "/etc/ssl/cert.pem", // Alpine, macOS, BSDs
];

/** Trusted roots and where they came from. */
export interface Roots {
  /** PEM certificates. */
  certificates: string[];
  /** For messages: the file they were read from, or the runtime's bundle. */
  source: string;
}

/** Splits PEM text into its certificates. */
export function pemCertificates(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

function envBundle(): string | undefined {
  try {
    return Deno.env.get("SSL_CERT_FILE") || undefined;
  } catch {
    return undefined; // no permission to read the environment: the standard places only
  }
}

/**
 * The system's trusted roots: `SSL_CERT_FILE` when set (and readable through
 * the permissions), else the first bundle of {@link SYSTEM_BUNDLES} that
 * exists. Where none does, the runtime's own (Mozilla) roots.
 *
 * @throws {FileError} when `SSL_CERT_FILE` names a file that cannot be read or holds no certificate.
 */
export async function systemRoots(): Promise<Roots> {
  const fromEnv = envBundle();
  for (const path of fromEnv ? [fromEnv] : SYSTEM_BUNDLES) {
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (error) {
      if (fromEnv) throw new FileError(`cannot read SSL_CERT_FILE "${path}": ${describeError(error)}`);
      continue;
    }
    const certificates = pemCertificates(text);
    if (certificates.length > 0) return { certificates, source: path };
    if (fromEnv) throw new FileError(`SSL_CERT_FILE "${path}" holds no PEM certificate`);
  }
  return { certificates: [...tls.rootCertificates], source: "the runtime's bundled (Mozilla) roots" };
}

/**
 * Reads the `--ca` file: the only roots trusted then.
 *
 * @throws {FileError} when it cannot be read or holds no PEM certificate.
 */
export async function loadCaFile(path: string): Promise<Roots> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound ? "no such file" : describeError(error);
    throw new FileError(`cannot read CA file "${path}": ${reason}`, { cause: error });
  }
  const certificates = pemCertificates(text);
  if (certificates.length === 0) {
    throw new FileError(`CA file "${path}" holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  }
  return { certificates, source: `"${path}"` };
}
