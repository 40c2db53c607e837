/**
 * The server's TLS certificate and key: read from their files and checked
 * before any listener uses them, so a bad file gets one clear message (missing,
 * unreadable, not PEM, encrypted, not matching) instead of a rustls error at
 * bind time, and a bad file given on reload never replaces a good one.
 *
 * @example
 * ```ts
 * import { loadTlsMaterial } from "./tls_material.ts";
 * const material = await loadTlsMaterial({ cert: "/etc/accio/cert.pem", key: "/etc/accio/key.pem" });
 * console.log(material.summary); // certificate for DNS:gw.example, valid until ...
 * ```
 * @module
 */
import { readSmallTextFile } from "./small_file.ts";
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { describeError, FileError } from "./errors.ts";

/** Largest certificate or key file read, in bytes: a chain of a few certificates is a few KiB. */
export const MAX_PEM_BYTES = 1024 * 1024;

/** Where the certificate chain and its private key are. */
export interface TlsFiles {
  /** PEM file: the server's certificate first, then any intermediates. */
  cert: string;
  /** PEM file: the unencrypted private key of the first certificate. */
  key: string;
}

/** A certificate and key that belong together, ready for `Deno.listenTls`. */
export interface TlsMaterial {
  /** The files they were read from. */
  files: TlsFiles;
  /** PEM text of the chain. */
  cert: string;
  /** PEM text of the key. */
  key: string;
  /** When the first certificate stops being valid. */
  notAfter: Date;
  /** When it starts being valid. */
  notBefore: Date;
  /** Its names, as openssl shows them (`DNS:gw.example, IP Address:192.0.2.1`), or its subject. */
  names: string;
  /** One line for the log: names and validity. */
  summary: string;
  /** Problems that do not stop the server but will stop clients: expired, not yet valid, CA:TRUE. */
  warnings: string[];
}

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/;
const KEY_BLOCK = /-----BEGIN ((?:RSA |EC )?PRIVATE KEY)-----[\s\S]+?-----END \1-----/;

interface PemFile {
  text: string;
  /** Permission bits, where the platform has them. */
  mode: number | null;
}

async function readPem(path: string, what: string): Promise<PemFile> {
  const { text, info } = await readSmallTextFile(path, `TLS ${what} file`, MAX_PEM_BYTES);
  return { text, mode: info.mode };
}

function parseCertificate(text: string, path: string): X509Certificate {
  if (!CERT_BLOCK.test(text)) {
    throw new FileError(
      `TLS certificate file "${path}" holds no PEM certificate (-----BEGIN CERTIFICATE-----)`,
    );
  }
  try {
    return new X509Certificate(text.match(CERT_BLOCK)![0]);
  } catch (error) {
    throw new FileError(
      `TLS certificate file "${path}": the certificate cannot be parsed: ${describeError(error)}`,
      {
        cause: error,
      },
    );
  }
}

function parseKey(text: string, path: string): KeyObject {
  if (text.includes("-----BEGIN ENCRYPTED PRIVATE KEY-----") || /Proc-Type: 4,ENCRYPTED/.test(text)) {
    throw new FileError(`TLS key file "${path}" is encrypted; Accio needs an unencrypted key (mode 600)`);
  }
  const block = text.match(KEY_BLOCK);
  if (!block) {
    throw new FileError(`TLS key file "${path}" holds no PEM private key (-----BEGIN PRIVATE KEY-----)`);
  }
  try {
    return createPrivateKey(block[0]);
  } catch (error) {
    throw new FileError(`TLS key file "${path}": the key cannot be parsed: ${describeError(error)}`, {
      cause: error,
    });
  }
}

function warningsFor(certificate: X509Certificate, notBefore: Date, notAfter: Date, now: Date): string[] {
  const warnings: string[] = [];
  if (notAfter < now) warnings.push(`the certificate expired on ${notAfter.toISOString()}`);
  if (notBefore > now) warnings.push(`the certificate is not valid before ${notBefore.toISOString()}`);
  if (certificate.ca) {
    warnings.push("the certificate is a CA certificate (CA:TRUE); rustls clients refuse it");
  }
  if (!certificate.subjectAltName) {
    warnings.push("the certificate has no subjectAltName; clients match names only there");
  }
  return warnings;
}

/**
 * Reads and checks the certificate chain and key.
 *
 * @throws {FileError} when a file is missing, unreadable, not PEM, encrypted,
 * or when the key does not belong to the first certificate.
 *
 * @example
 * ```ts
 * import { loadTlsMaterial } from "./tls_material.ts";
 * const material = await loadTlsMaterial({ cert: "cert.pem", key: "key.pem" });
 * for (const warning of material.warnings) console.log(`warning: ${warning}`);
 * ```
 */
export async function loadTlsMaterial(files: TlsFiles, now: Date = new Date()): Promise<TlsMaterial> {
  const { text: cert } = await readPem(files.cert, "certificate");
  const { text: key, mode: keyMode } = await readPem(files.key, "key");
  const certificate = parseCertificate(cert, files.cert);
  const privateKey = parseKey(key, files.key);
  if (!certificate.checkPrivateKey(privateKey)) {
    throw new FileError(
      `TLS key file "${files.key}" does not belong to the certificate in "${files.cert}" (the public keys differ)`,
    );
  }
  const notBefore = new Date(certificate.validFrom);
  const notAfter = new Date(certificate.validTo);
  const names = certificate.subjectAltName ?? certificate.subject.replace(/\n/g, ", ");
  return {
    files,
    cert,
    key,
    notBefore,
    notAfter,
    names,
    summary: `certificate for ${names}, valid ${notBefore.toISOString()} to ${notAfter.toISOString()}`,
    warnings: [
      ...warningsFor(certificate, notBefore, notAfter, now),
      ...(keyMode !== null && (keyMode & 0o004) !== 0
        ? [`the key file "${files.key}" is readable by every user`]
        : []),
    ],
  };
}
