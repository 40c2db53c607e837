/**
 * The client's TLS connection: `node:tls` over the client's own `node:net`
 * socket (see `tls_stream.ts` for why the TCP socket stays ours), with the
 * surface of the plaintext `TcpSocket`: read, write, half-close, close, and a
 * TCP reset that aborts an unfinished upload, so the server records `ERROR`.
 * Also the trusted roots: the system's by default, or a `--ca` file.
 *
 * Verification is `node:tls`'s, with `rejectUnauthorized` on: a client that
 * does not trust the certificate aborts inside the handshake, before any byte
 * of the upload, and the server never counts the connection.
 *
 * @example
 * ```ts
 * import { connectTls, systemRoots } from "./tls_client.ts";
 * const roots = await systemRoots();
 * const stream = await connectTls("gw.example", 5000, { ca: roots.certificates, caSource: roots.source })
 *   .connected;
 * await stream.write(new TextEncoder().encode("data"));
 * await stream.closeWrite();
 * stream.close();
 * ```
 * @module
 */
import net from "node:net";
import tls from "node:tls";
import { ConnectionError, describeError, FileError } from "./errors.ts";
import { netCarrier, TlsStream, translateSocketError } from "./tls_stream.ts";

/** How to verify the server. */
export interface TlsClientOptions {
  /** Trusted root certificates, PEM. Default: {@link systemRoots}. They replace the runtime's own roots. */
  ca?: string[];
  /** Where {@link ca} came from, for messages: a file name, or "the system's root certificates". */
  caSource?: string;
  /** The name the certificate must hold (and the SNI sent). Default: the host connected to. */
  serverName?: string;
}

/** A connection attempt: {@link connectTls}. */
export interface TlsConnecting {
  /** Settles with the verified connection, or with the runtime's TCP error, or a {@link ConnectionError} for TLS. */
  connected: Promise<TlsStream>;
  /** Abandons the attempt. */
  cancel(): void;
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
  // Only a handshake cut off may pass: a certificate or a protocol that is wrong stays so (--retries skip it).
  const say = (text: string, transient = false) =>
    new ConnectionError(`TLS handshake failed: ${text}`, { cause: error, transient });
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
    return say("the server closed the connection during the TLS handshake (not a TLS port?)", true);
  }
  return say(reason, true);
}

/**
 * Connects to `hostname` (a name, or an IP literal without brackets) and
 * `port`, and runs the TLS handshake; settles once the certificate is
 * verified, before any byte of the upload.
 *
 * @example
 * ```ts
 * import { connectTls } from "./tls_client.ts";
 * const attempt = connectTls("127.0.0.1", 5000, { serverName: "gw.example" });
 * const stream = await attempt.connected;
 * ```
 */
export function connectTls(hostname: string, port: number, options: TlsClientOptions = {}): TlsConnecting {
  const raw = net.connect({ host: hostname, port, allowHalfOpen: true });
  raw.on("error", () => {}); // a late error after cancel() must not go unhandled
  const carrier = netCarrier(raw);
  const serverName = options.serverName ?? hostname;
  const secure = tls.connect({
    socket: carrier.stream as net.Socket,
    host: serverName,
    servername: net.isIP(serverName) ? undefined : serverName,
    ca: options.ca,
    rejectUnauthorized: true,
    allowHalfOpen: true,
  } as tls.ConnectionOptions);
  secure.on("error", () => {}); // reported through `connected`, or by the stream once made
  let tcpConnected = false;
  raw.once("connect", () => tcpConnected = true);
  const connected = new Promise<TlsStream>((resolve, reject) => {
    // The TCP error (refused, unreachable) when there is one; the TLS layer reports it only as a close.
    raw.once("error", (error) => tcpConnected || reject(translateSocketError(error)));
    const onError = (error: Error) => {
      // A reset: a plaintext server that took the TLS hello for file bytes then records ERROR.
      carrier.abort();
      if (tcpConnected) {
        reject(describeTlsFailure(error, serverName, options.caSource ?? "the trusted roots"));
      }
    };
    secure.once("error", onError);
    secure.once("secureConnect", () => {
      secure.off("error", onError);
      resolve(new TlsStream(secure, carrier));
    });
  });
  return {
    connected,
    cancel: () => {
      raw.destroy();
      secure.destroy();
    },
  };
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

/** Splits PEM text into its certificates. *
 * @example
 * ```ts
 * import { pemCertificates } from "./tls_client.ts";
 * pemCertificates(Deno.readTextFileSync("chain.pem")).length; // 2
 * ```
 */
export function pemCertificates(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

function envBundle(): string | undefined {
  // Without the permission to read it (asking would prompt on a terminal), the standard places only.
  if (Deno.permissions.querySync({ name: "env", variable: "SSL_CERT_FILE" }).state !== "granted") {
    return undefined;
  }
  return Deno.env.get("SSL_CERT_FILE") || undefined;
}

/**
 * The system's trusted roots: `SSL_CERT_FILE` when set (and readable through
 * the permissions), else the first bundle of {@link SYSTEM_BUNDLES} that
 * exists. Where none does, the runtime's own (Mozilla) roots.
 *
 * @throws {FileError} when `SSL_CERT_FILE` names a file that cannot be read or holds no certificate.
 *
 * @example
 * ```ts
 * import { connectTls, systemRoots } from "./tls_client.ts";
 * const roots = await systemRoots();
 * connectTls("gw.example", 5000, { ca: roots.certificates, caSource: roots.source });
 * ```
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
 *
 * @example
 * ```ts
 * import { connectTls, loadCaFile } from "./tls_client.ts";
 * const roots = await loadCaFile("ca.pem");
 * connectTls("127.0.0.1", 5000, { ca: roots.certificates, caSource: roots.source, serverName: "gw.example" });
 * ```
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

/** The client's TLS choices, as given on its command line. */
export interface ClientTlsChoice {
  /** `--ca FILE`: trust only these roots; the system's otherwise. */
  caFile?: string;
  /** `--tls-name NAME`: the name to verify (and send as SNI); the host connected to otherwise. */
  serverName?: string;
}

/**
 * Reads the roots once for every upload of a run: the `--ca` file, or the
 * system's.
 *
 * @throws {FileError} when the CA file (or `SSL_CERT_FILE`) cannot be used.
 *
 * @example
 * ```ts
 * import { clientTlsOptions, connectTls } from "./tls_client.ts";
 * const options = await clientTlsOptions({ caFile: "ca.pem", serverName: "gw.example" });
 * connectTls("127.0.0.1", 5000, options);
 * ```
 */
export async function clientTlsOptions(choice: ClientTlsChoice): Promise<TlsClientOptions> {
  const roots = choice.caFile === undefined ? await systemRoots() : await loadCaFile(choice.caFile);
  return { ca: roots.certificates, caSource: roots.source, serverName: choice.serverName };
}
