/**
 * The servers' TLS options (`--tls-cert FILE --tls-key FILE`, both or
 * neither) and what they make: the certificate loaded and checked before the
 * port is bound, the {@link tlsGate} of every connection, and the SIGHUP
 * reload of the certificate. Shared by `server` and `server-s`.
 *
 * @example
 * ```ts
 * import { parseTlsFiles, serverTls, TLS_OPTIONS } from "./tls_options.ts";
 * const files = parseTlsFiles({ "tls-cert": "cert.pem", "tls-key": "key.pem" });
 * const tls = files && await serverTls(files, { timeoutMs: 10_000, log: console.error });
 * // tls.gate goes into the gates, tls.reloadable into what SIGHUP reloads
 * console.log(Object.keys(TLS_OPTIONS)); // ["tls-cert", "tls-key"]
 * ```
 * @module
 */
import type { OptionSpec } from "./cli.ts";
import { UsageError } from "./errors.ts";
import type { Reloadable } from "./reload.ts";
import { tlsGate } from "./tls_gate.ts";
import type { TlsFiles } from "./tls_material.ts";
import { TlsContext } from "./tls_server.ts";
import type { Gate } from "./upload_session.ts";

/** The two options, for a command's spec. */
export const TLS_OPTIONS: Record<"tls-cert" | "tls-key", OptionSpec> = {
  "tls-cert": {
    type: "string",
    valueName: "FILE",
    help: "serve TLS with this PEM certificate chain (with --tls-key; SIGHUP reads both again)",
  },
  "tls-key": { type: "string", valueName: "FILE", help: "the certificate's unencrypted PEM private key" },
};

/**
 * The certificate and key files, or `undefined` for plaintext.
 *
 * @throws {UsageError} when only one of the two is given.
 *
 * @example
 * ```ts
 * import { parseTlsFiles } from "./tls_options.ts";
 * parseTlsFiles({}); // undefined
 * parseTlsFiles({ "tls-cert": "c.pem", "tls-key": "k.pem" }); // { cert: "c.pem", key: "k.pem" }
 * ```
 */
export function parseTlsFiles(values: Record<string, string | boolean | undefined>): TlsFiles | undefined {
  const cert = values["tls-cert"];
  const key = values["tls-key"];
  if (cert === undefined && key === undefined) return undefined;
  if (typeof cert !== "string" || typeof key !== "string") {
    throw new UsageError(
      `--${cert === undefined ? "tls-cert" : "tls-key"} is missing: TLS needs both --tls-cert and --tls-key`,
    );
  }
  return { cert, key };
}

/** What {@link serverTls} needs besides the files. */
export interface ServerTlsOptions {
  /** The whole handshake must be done within this many ms (the idle timeout). */
  timeoutMs: number;
  /** Where the certificate's summary and warnings (expired, CA:TRUE) go. */
  log: (line: string) => void;
}

/** A server's TLS: the gate for every connection, and what SIGHUP reloads. */
export interface ServerTls {
  /** Runs the handshake before a number (see {@link tlsGate}). */
  gate: Gate;
  /** Reads the files again for new connections; a bad file keeps the certificate in use. */
  reloadable: Reloadable;
}

/**
 * Loads the certificate (before the port is bound: a bad file stops the start
 * with the reason), logs what it is, and makes its gate and its reload.
 *
 * @throws {import("./errors.ts").FileError} saying what is wrong with which file.
 *
 * @example
 * ```ts
 * import { serverTls } from "./tls_options.ts";
 * const tls = await serverTls({ cert: "cert.pem", key: "key.pem" }, { timeoutMs: 10_000, log: console.error });
 * await tls.reloadable.reload(); // "certificate for DNS:gw.example, valid ..."
 * ```
 */
export async function serverTls(files: TlsFiles, options: ServerTlsOptions): Promise<ServerTls> {
  const context = await TlsContext.load(files);
  const { log } = options;
  log(`TLS: ${context.material.summary}`);
  for (const warning of context.material.warnings) log(`TLS warning: ${warning}`);
  const reloadable: Reloadable = {
    what: "TLS certificate",
    reload: async () => {
      const material = await context.reload();
      for (const warning of material.warnings) log(`TLS warning: ${warning}`);
      return material.summary;
    },
  };
  return { gate: tlsGate(context, { timeoutMs: options.timeoutMs }), reloadable };
}
