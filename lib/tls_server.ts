/**
 * The server's side of TLS: a listener whose certificate can be reloaded
 * (SIGHUP) without dropping a connection in flight, and the TLS handshake
 * completed within a deadline before the server spends a connection number.
 *
 * Built on `Deno.listenTls`, whose connections report a peer that vanishes
 * without TLS's `close_notify` (a reset, or a bare FIN) as an error, so an
 * aborted or truncated upload ends as `ERROR`. (Deno 2.9.6's `node:tls` server
 * reports both as a clean end; it is not used.) `Deno.listenTls` cannot change
 * its certificate, so a reload opens a new listener on the same address: the
 * old one's waiting connections are accepted first (they keep the old
 * certificate), then it is closed and the new one bound, in one synchronous
 * step. Connections already accepted never notice.
 *
 * @example
 * ```ts
 * import { completeHandshake, TlsAcceptor } from "./tls_server.ts";
 * import { loadTlsMaterial } from "./tls_material.ts";
 * const material = await loadTlsMaterial({ cert: "cert.pem", key: "key.pem" });
 * const acceptor = TlsAcceptor.listen({ port: 5000, material });
 * Deno.addSignalListener("SIGHUP", () => acceptor.reload().catch(console.error));
 * const conn = await completeHandshake(await acceptor.accept(), 10_000);
 * // only now: take a connection number, send accio\r\n
 * ```
 * @module
 */
import { formatSeconds, withDeadline } from "./deadline.ts";
import { ConnectionError, describeError, FileError } from "./errors.ts";
import { closeQuietly } from "./socket_io.ts";
import { loadTlsMaterial, type TlsMaterial } from "./tls_material.ts";

/** Settings of {@link TlsAcceptor.listen}. */
export interface TlsAcceptorOptions {
  /** TCP port, 1-65535 (0 in tests: any free port, kept across reloads). */
  port: number;
  /** Address to listen on. Default: every interface, IPv6 and IPv4. */
  hostname?: string;
  /** Certificate and key, from {@link loadTlsMaterial}. */
  material: TlsMaterial;
}

/** A drain stops once no waiting connection arrives for this long. */
const DRAIN_QUIET_MS = 25;
/** At most this many waiting connections are taken over by one reload (the kernel's backlog is smaller). */
const DRAIN_MAX = 65_536;

/** Turns a `Deno.listenTls` failure into {@link ConnectionError} (the address) or {@link FileError} (the material). */
function listenFailure(error: unknown, port: number, material: TlsMaterial): Error {
  if (error instanceof Deno.errors.AddrInUse) {
    return new ConnectionError(`cannot listen on port ${port}: the port is already in use`, { cause: error });
  }
  if (error instanceof Deno.errors.PermissionDenied) {
    return new ConnectionError(
      `cannot listen on port ${port}: permission denied (ports below 1024 need privileges)`,
      {
        cause: error,
      },
    );
  }
  const reason = describeError(error);
  if (error instanceof Deno.errors.InvalidData || /\b(keys?|certificates?)\b/i.test(reason)) {
    const { cert, key } = material.files;
    return new FileError(`TLS certificate "${cert}" and key "${key}" refused: ${reason}`, { cause: error });
  }
  return new ConnectionError(`cannot listen on port ${port}: ${reason}`, { cause: error });
}

function openTls(hostname: string, port: number, material: TlsMaterial): Deno.TlsListener {
  return Deno.listenTls({ hostname, port, transport: "tcp", cert: material.cert, key: material.key });
}

/** `Deno.listenTls` on one address, failing as {@link listenFailure} says. */
function listenTlsOn(hostname: string, port: number, material: TlsMaterial): Deno.TlsListener {
  try {
    return openTls(hostname, port, material);
  } catch (error) {
    throw listenFailure(error, port, material);
  }
}

/** Like `listenAll` in `listen.ts`: `hostname`, or `::` (which on Linux also takes IPv4), or `0.0.0.0` without IPv6. */
function listenTlsAll(port: number, hostname: string | undefined, material: TlsMaterial): Deno.TlsListener {
  if (hostname !== undefined) return listenTlsOn(hostname, port, material);
  try {
    return openTls("::", port, material);
  } catch (error) {
    const failure = listenFailure(error, port, material);
    const addressTaken = error instanceof Deno.errors.AddrInUse ||
      error instanceof Deno.errors.PermissionDenied;
    if (addressTaken || failure instanceof FileError) throw failure;
    return listenTlsOn("0.0.0.0", port, material); // no IPv6 on this machine
  }
}

/**
 * A TLS listener whose certificate can be replaced while it runs. Accepting
 * does not run the handshake: {@link completeHandshake} does, within a deadline.
 */
export class TlsAcceptor {
  #listener: Deno.TlsListener | undefined;
  #material: TlsMaterial;
  readonly #hostname: string;
  readonly #port: number;
  readonly #ready: Deno.TlsConn[] = [];
  readonly #accepting = new Set<Deno.TlsListener>();
  #failure: { error: unknown } | undefined;
  #waiters: (() => void)[] = [];
  #closed = false;
  #reloads: Promise<unknown> = Promise.resolve();

  private constructor(listener: Deno.TlsListener, material: TlsMaterial) {
    this.#listener = listener;
    this.#material = material;
    this.#hostname = listener.addr.hostname;
    this.#port = listener.addr.port;
  }

  /**
   * Binds the port with `material`.
   *
   * @throws {ConnectionError} when the port cannot be bound; {FileError} when rustls refuses the material.
   */
  static listen({ port, hostname, material }: TlsAcceptorOptions): TlsAcceptor {
    return new TlsAcceptor(listenTlsAll(port, hostname, material), material);
  }

  /** The address it listens on (the same after every reload). */
  get addr(): Deno.NetAddr {
    return { transport: "tcp", hostname: this.#hostname, port: this.#port };
  }

  /** The certificate and key new connections get. */
  get material(): TlsMaterial {
    return this.#material;
  }

  #signal(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  /** Resolves `true` at the next {@link #signal}, or `false` after `ms` (when given). */
  #changed(ms?: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(() => resolve(false), ms);
      this.#waiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** Starts one accept on `listener` unless one is running: Deno allows one at a time. */
  #acceptOn(listener: Deno.TlsListener): void {
    if (this.#accepting.has(listener)) return;
    this.#accepting.add(listener);
    listener.accept().then(
      (conn) => this.#closed ? closeQuietly(conn) : this.#ready.push(conn),
      (error) => {
        // A listener closed by a reload fails its accept; only the current one's failures matter.
        if (listener === this.#listener && !this.#closed) this.#failure = { error };
      },
    ).finally(() => {
      this.#accepting.delete(listener);
      this.#signal();
    });
  }

  /**
   * The next connection, its handshake not yet run. Reloads in between are
   * invisible here.
   *
   * @throws the runtime's accept error (out of descriptors, ...), once per failure; the caller retries.
   * @throws {ConnectionError} while the port cannot be bound again after a reload; the caller retries.
   * @throws {Deno.errors.BadResource} once {@link close} was called.
   */
  async accept(): Promise<Deno.TlsConn> {
    for (;;) {
      const conn = this.#ready.shift();
      if (conn) return conn;
      if (this.#closed) throw new Deno.errors.BadResource("the TLS listener is closed");
      if (this.#failure) {
        const { error } = this.#failure;
        this.#failure = undefined;
        throw error;
      }
      this.#listener ??= listenTlsOn(this.#hostname, this.#port, this.#material);
      this.#acceptOn(this.#listener);
      await this.#changed();
    }
  }

  /** Takes over the connections waiting in `listener`'s backlog, until none arrives for a moment. */
  async #drain(listener: Deno.TlsListener): Promise<void> {
    for (let taken = 0; taken < DRAIN_MAX && !this.#closed; taken++) {
      this.#acceptOn(listener);
      if (!(await this.#changed(DRAIN_QUIET_MS))) return;
    }
  }

  /**
   * Reads the certificate and key files again and serves new connections
   * with them. Connections in flight keep theirs. Reloads run one at a time.
   *
   * @returns the material now in use.
   * @throws {FileError} when a file is bad: the material in use stays.
   * @throws {ConnectionError} when the port could not be bound again: {@link accept} retries.
   */
  reload(): Promise<TlsMaterial> {
    const run = this.#reloads.then(() => this.#reloadNow());
    this.#reloads = run.catch(() => {});
    return run;
  }

  async #reloadNow(): Promise<TlsMaterial> {
    const material = await loadTlsMaterial(this.#material.files);
    const old = this.#listener;
    if (old) await this.#drain(old);
    if (this.#closed) throw new Deno.errors.BadResource("the TLS listener is closed");
    // From here to the new bind nothing awaits: no accept can run on a half-swapped acceptor.
    if (this.#listener) closeQuietly(this.#listener);
    this.#listener = undefined;
    try {
      this.#listener = listenTlsOn(this.#hostname, this.#port, material);
    } catch (error) {
      if (error instanceof FileError) {
        this.#listener = listenTlsOn(this.#hostname, this.#port, this.#material);
        throw new FileError(`${error.message}; still serving the certificate loaded before`, {
          cause: error,
        });
      }
      this.#material = material; // accept() binds again with it
      throw error;
    } finally {
      this.#signal();
    }
    this.#material = material;
    return material;
  }

  /** Stops listening; connections taken over by a reload but not yet accepted are closed. */
  close(): void {
    this.#closed = true;
    if (this.#listener) closeQuietly(this.#listener);
    for (const conn of this.#ready.splice(0)) closeQuietly(conn);
    this.#signal();
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

/** A client's TLS handshake failed: no number was used, nothing was stored. */
export class TlsHandshakeError extends ConnectionError {
  /** The cause, as a keyword. */
  readonly kind: TlsHandshakeFailure;
  /** `message` says what happened in words; `kind` names it for counting. */
  constructor(kind: TlsHandshakeFailure, message: string, options?: ErrorOptions) {
    super(message, options);
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

/** Names the cause of a rustls handshake error, as `Deno.TlsConn.handshake()` reports it. */
export function classifyHandshakeError(error: unknown): TlsHandshakeError {
  const reason = describeError(error);
  const options = { cause: error };
  if (error instanceof TlsHandshakeError) return error;
  if (error instanceof Deno.errors.UnexpectedEof) {
    return new TlsHandshakeError(
      "closed",
      "the client closed the connection during the TLS handshake",
      options,
    );
  }
  if (error instanceof Deno.errors.ConnectionReset) {
    return new TlsHandshakeError(
      "reset",
      "the client reset the connection during the TLS handshake",
      options,
    );
  }
  if (/InvalidContentType|corrupt message|MissingData/.test(reason)) {
    return new TlsHandshakeError(
      "not-tls",
      "the client sent bytes that are not a TLS handshake (a client without TLS on the TLS port?)",
      options,
    );
  }
  const alert = reason.match(/received fatal alert: (\w+)/)?.[1];
  if (alert && CERTIFICATE_ALERTS.has(alert)) {
    return new TlsHandshakeError(
      "certificate-refused",
      `the client refused the server's certificate (TLS alert ${alert})`,
      options,
    );
  }
  if (alert) {
    return new TlsHandshakeError("alert", `the client ended the TLS handshake (TLS alert ${alert})`, options);
  }
  const incompatible = reason.match(/peer is incompatible: (\w+)/)?.[1];
  if (incompatible) {
    return new TlsHandshakeError(
      "incompatible",
      `the client's TLS cannot agree with the server's (${incompatible})`,
      options,
    );
  }
  return new TlsHandshakeError("other", `TLS handshake failed: ${reason}`, options);
}

/**
 * Runs the server's TLS handshake to completion within `timeoutMs` for the
 * whole of it (a client trickling its hello cannot stretch it). Call it before
 * the connection gets a number: a plaintext client, a scanner or a client that
 * refuses the certificate then costs no number and leaves no file.
 *
 * @returns `conn`, ready for `accio\r\n`.
 * @throws {TlsHandshakeError} naming the cause; `conn` is closed.
 */
export async function completeHandshake(conn: Deno.TlsConn, timeoutMs: number): Promise<Deno.TlsConn> {
  try {
    await withDeadline(
      conn.handshake(),
      timeoutMs,
      () =>
        new TlsHandshakeError(
          "timeout",
          `no TLS handshake within ${
            formatSeconds(timeoutMs)
          } (a client without TLS sends nothing: it waits for accio\\r\\n)`,
        ),
      () => closeQuietly(conn),
    );
    return conn;
  } catch (error) {
    closeQuietly(conn);
    throw classifyHandshakeError(error);
  }
}
