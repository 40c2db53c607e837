/**
 * The server's side of TLS: a certificate that can be reloaded (SIGHUP)
 * without touching a connection in flight, and the TLS handshake run on an
 * accepted TCP connection, within a deadline, before the server spends a
 * connection number on it.
 *
 * The listener stays the plaintext `Deno.listen` one (its backlog, its accept
 * loop, the PROXY header read before anything else); each accepted
 * `Deno.Conn` is then wrapped with `node:tls` (see `tls_stream.ts`). Not
 * `Deno.listenTls`: in Deno 2.9.6 closing one of its connections before the
 * handshake completes leaves the TCP connection open until the peer acts, so a
 * silent client (a plaintext client waits for `accio\r\n`) would hold a file
 * descriptor for as long as it likes, after its deadline; and it cannot change
 * its certificate.
 *
 * @example
 * ```ts
 * import { acceptTls, TlsContext } from "./tls_server.ts";
 * const context = await TlsContext.load({ cert: "cert.pem", key: "key.pem" });
 * Deno.addSignalListener("SIGHUP", () => context.reload().catch(console.error));
 * const listener = Deno.listen({ port: 5000 });
 * const stream = await acceptTls(await listener.accept(), context, 10_000);
 * // only now: take a connection number, send accio\r\n
 * ```
 * @module
 */
import { Duplex } from "node:stream";
import tls from "node:tls";
import { formatSeconds, withDeadline } from "./deadline.ts";
import { type AccioErrorOptions, ConnectionError, describeError, FileError } from "./errors.ts";
import type { DuplexSocket } from "./socket_io.ts";
import { connCarrier, TlsStream } from "./tls_stream.ts";
import { loadTlsMaterial, type TlsFiles, type TlsMaterial } from "./tls_material.ts";

/** Longest wait for the test handshake that proves rustls takes a certificate and key. */
const SELF_TEST_MS = 5_000;

/** Two `Duplex` streams wired to each other, in memory. */
function streamPair(): [Duplex, Duplex] {
  const ends: Duplex[] = [];
  const end = (other: () => Duplex) =>
    new Duplex({
      read: () => {},
      write: (chunk, _encoding, done) => {
        other().push(chunk);
        done();
      },
      final: (done) => {
        other().push(null);
        done();
      },
    });
  ends.push(end(() => ends[1]), end(() => ends[0]));
  return [ends[0], ends[1]];
}

/**
 * Runs one TLS handshake in memory with `context`: `createSecureContext`
 * checks nothing in Deno 2.9.6, rustls does so at the first handshake.
 *
 * @throws {FileError} when rustls refuses the certificate or key.
 */
async function selfTest(context: tls.SecureContext, material: TlsMaterial): Promise<void> {
  const [serverEnd, clientEnd] = streamPair();
  const server = new tls.TLSSocket(serverEnd as never, { isServer: true, secureContext: context } as never);
  const client = tls.connect({
    socket: clientEnd as never,
    rejectUnauthorized: false,
    servername: "self-test.invalid",
  });
  try {
    await withDeadline(
      new Promise<void>((resolve, reject) => {
        client.once("secureConnect", () => resolve());
        client.once("error", reject);
        server.once("error", reject);
      }),
      SELF_TEST_MS,
      () => new Error(`no test handshake within ${formatSeconds(SELF_TEST_MS)}`),
    );
  } catch (error) {
    const { cert, key } = material.files;
    throw new FileError(
      `TLS certificate "${cert}" with key "${key}" fails a test handshake: ${describeError(error)}`,
      {
        cause: error,
      },
    );
  } finally {
    client.destroy();
    server.destroy();
  }
}

/** Reads, checks and tries the material: what {@link TlsContext} serves. */
async function prepare(files: TlsFiles): Promise<{ material: TlsMaterial; context: tls.SecureContext }> {
  const material = await loadTlsMaterial(files);
  const context = tls.createSecureContext({ cert: material.cert, key: material.key });
  await selfTest(context, material);
  return { material, context };
}

/** The certificate and key new TLS connections get; {@link TlsContext.reload} swaps them. *
 * @example
 * ```ts
 * import { TlsContext } from "./tls_server.ts";
 * const context = await TlsContext.load({ cert: "cert.pem", key: "key.pem" });
 * Deno.addSignalListener("SIGHUP", () => {
 *   context.reload().then((m) => console.log(`reloaded: ${m.summary}`), (e) => console.log(`kept: ${e.message}`));
 * });
 * ```
 */
export class TlsContext {
  #material: TlsMaterial;
  #context: tls.SecureContext;
  #reloads: Promise<unknown> = Promise.resolve();

  private constructor(material: TlsMaterial, context: tls.SecureContext) {
    this.#material = material;
    this.#context = context;
  }

  /**
   * Reads and checks the files, and tries them in a handshake.
   *
   * @throws {FileError} saying what is wrong with which file.
   */
  static async load(files: TlsFiles): Promise<TlsContext> {
    const { material, context } = await prepare(files);
    return new TlsContext(material, context);
  }

  /** What is being served now: names, dates, warnings. */
  get material(): TlsMaterial {
    return this.#material;
  }

  /** The `node:tls` context of new connections. */
  get secureContext(): tls.SecureContext {
    return this.#context;
  }

  /**
   * Reads the same files again and serves them to new connections; those in
   * flight keep theirs. Reloads run one at a time.
   *
   * @returns the material now served.
   * @throws {FileError} when a file is bad: the material served stays as it was.
   */
  reload(): Promise<TlsMaterial> {
    const run = this.#reloads.then(async () => {
      const { material, context } = await prepare(this.#material.files);
      this.#material = material;
      this.#context = context;
      return material;
    });
    this.#reloads = run.catch(() => {});
    return run;
  }
}

/** Why a TLS handshake failed, for logs and metrics. */
export type TlsHandshakeFailure =
  | "timeout"
  | "not-tls"
  | "closed"
  | "reset"
  | "certificate-refused"
  | "alert"
  | "incompatible"
  | "other";

/** A client's TLS handshake failed: no number was used, nothing was stored. *
 * @example
 * ```ts
 * import { acceptTls, TlsContext, TlsHandshakeError } from "./tls_server.ts";
 * const context = await TlsContext.load({ cert: "cert.pem", key: "key.pem" });
 * const conn = await Deno.listen({ port: 5000 }).accept();
 * await acceptTls(conn, context, 10_000).catch((error) => {
 *   if (error instanceof TlsHandshakeError) console.log(`${error.kind}: ${error.message}`);
 * });
 * ```
 */
export class TlsHandshakeError extends ConnectionError {
  /** The cause, as a keyword. */
  readonly kind: TlsHandshakeFailure;
  /** `message` says what happened in words; `kind` names it for counting (`accio_refused_total{reason="tls-<kind>"}`). */
  constructor(kind: TlsHandshakeFailure, message: string, options?: AccioErrorOptions) {
    super(message, { refusal: `tls-${kind}`, ...options });
    this.kind = kind;
  }
}

/** The alerts a client sends when it does not accept the server's certificate. */
const CERTIFICATE_ALERTS = new Set([
  "UnknownCA",
  "BadCertificate",
  "CertificateExpired",
  "CertificateUnknown",
  "CertificateRevoked",
  "UnsupportedCertificate",
]);

/** The connection ended (FIN) before the handshake did. */
class EndedEarly extends Error {}

/**
 * Names the cause of a failed server handshake, from what `node:tls` (over
 * rustls) or the TCP connection reported.
 *
 * @example
 * ```ts
 * import { classifyHandshakeError } from "./tls_server.ts";
 * classifyHandshakeError(new Error("received fatal alert: UnknownCA")).kind; // "certificate-refused"
 * ```
 */
export function classifyHandshakeError(error: unknown): TlsHandshakeError {
  if (error instanceof TlsHandshakeError) return error;
  const reason = describeError(error);
  const code = (error as { code?: string }).code ?? "";
  const named = (kind: TlsHandshakeFailure, message: string) =>
    new TlsHandshakeError(kind, message, { cause: error });
  if (error instanceof EndedEarly) {
    return named("closed", "the client closed the connection during the TLS handshake");
  }
  if (error instanceof Deno.errors.ConnectionReset) {
    return named("reset", "the client reset the connection during the TLS handshake");
  }
  if (code === "ERR_SSL_WRONG_VERSION_NUMBER" || /InvalidContentType|wrong version number/.test(reason)) {
    return named(
      "not-tls",
      "the client sent bytes that are not a TLS handshake (a client without TLS on the TLS port?)",
    );
  }
  const alert = reason.match(/received fatal alert: (\w+)/)?.[1];
  if (alert && CERTIFICATE_ALERTS.has(alert)) {
    return named("certificate-refused", `the client refused the server's certificate (TLS alert ${alert})`);
  }
  if (alert) return named("alert", `the client ended the TLS handshake (TLS alert ${alert})`);
  const incompatible = reason.match(/peer is incompatible: (\w+)/)?.[1];
  if (incompatible) {
    return named("incompatible", `the client's TLS cannot agree with the server's (${incompatible})`);
  }
  return named("other", `TLS handshake failed: ${reason}`);
}

/** Settles when the server handshake on `secure` is done, or rejects with why not. */
function handshakeDone(
  secure: tls.TLSSocket,
  failure: () => Error | undefined,
  onChange: (fn: () => void) => void,
) {
  return new Promise<void>((resolve, reject) => {
    secure.once("secure", () => resolve());
    secure.once("error", reject);
    // Only the TLS layer knows whether the bytes before a FIN completed the handshake.
    secure.once("end", () => reject(new EndedEarly("ended")));
    secure.once("close", () => reject(new EndedEarly("closed")));
    // A reset it does not report: the TCP connection does.
    onChange(() => {
      const error = failure();
      if (error) reject(error);
    });
  });
}

/**
 * Runs the server's TLS handshake on `conn` (a freshly accepted `Deno.Conn`,
 * or one whose PROXY header was just read) within `timeoutMs` for the whole of
 * it: a client trickling its hello cannot stretch it. Call it before the
 * connection gets a number: a plaintext client, a scanner, or a client that
 * refuses the certificate then costs no number and leaves no file. On failure
 * the TCP connection is closed at once.
 *
 * @returns the TLS stream, ready for `accio\r\n`.
 * @throws {TlsHandshakeError} naming the cause.
 *
 * @example
 * ```ts
 * import { acceptTls, TlsContext } from "./tls_server.ts";
 * const context = await TlsContext.load({ cert: "cert.pem", key: "key.pem" });
 * const stream = await acceptTls(await Deno.listen({ port: 5000 }).accept(), context, 10_000);
 * await stream.write(new TextEncoder().encode("accio\r\n"));
 * ```
 */
export async function acceptTls(
  conn: DuplexSocket,
  context: TlsContext,
  timeoutMs: number,
): Promise<TlsStream> {
  const carrier = connCarrier(conn);
  const secure = new tls.TLSSocket(carrier.stream as never, {
    isServer: true,
    secureContext: context.secureContext,
    allowHalfOpen: true,
  } as never);
  secure.on("error", () => {}); // the handshake's error is reported below, later ones by the stream
  const abandon = () => {
    carrier.close();
    secure.destroy();
  };
  try {
    await withDeadline(
      handshakeDone(secure, () => carrier.failure, (fn) => carrier.onChange = fn),
      timeoutMs,
      () =>
        new TlsHandshakeError(
          "timeout",
          `no TLS handshake within ${
            formatSeconds(timeoutMs)
          } (a client without TLS sends nothing: it waits for accio\\r\\n)`,
        ),
      abandon,
    );
  } catch (error) {
    abandon();
    throw classifyHandshakeError(error);
  }
  return new TlsStream(secure, carrier);
}
