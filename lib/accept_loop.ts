/**
 * The one accept loop of every listener in Accio: the upload server, the
 * simplified server (a limit of 1) and the metrics responder.
 *
 * It serves at most `limit` connections at once (more wait in the kernel's
 * listen backlog), never ends because accepting failed (out of descriptors,
 * EMFILE: it pauses {@link ACCEPT_RETRY_MS} and retries, logging one line a
 * second at most), and stops in one of two ways, like Go's `net/http`:
 * {@link AcceptLoop.shutdown} stops accepting and lets the connections in
 * flight finish, {@link AcceptLoop.close} also aborts them.
 *
 * @example
 * ```ts
 * import { AcceptLoop } from "./accept_loop.ts";
 * const loop = new AcceptLoop(Deno.listen({ port: 8000 }), {
 *   limit: 16,
 *   handle: async (conn, { signal }) => {
 *     signal.addEventListener("abort", () => conn.close());
 *     await conn.write(new TextEncoder().encode("hello\n"));
 *     conn.close();
 *   },
 * });
 * Deno.addSignalListener("SIGTERM", () => loop.close());
 * await loop.finished;
 * ```
 * @module
 */
import { describeError } from "./errors.ts";
import { closeQuietly } from "./socket_io.ts";

/** How long accepting pauses after a failure (EMFILE and friends), in ms. */
export const ACCEPT_RETRY_MS = 100;

/** What a connection's handler gets besides the connection. */
export interface ConnectionContext {
  /** Aborted by {@link AcceptLoop.close}: the handler should end its connection now. */
  readonly signal: AbortSignal;
  /** Frees this connection's slot before the handler returns (say, before a lingering close). */
  release(): void;
}

/** Settings of an {@link AcceptLoop}. */
export interface AcceptLoopOptions {
  /** Connections handled at once; more wait in the listen backlog. */
  limit: number;
  /** Serves one connection; its slot is held until it settles (or calls `release`). */
  handle: (conn: Deno.Conn, context: ConnectionContext) => Promise<void>;
  /** Receives the throttled operational messages. Default: nothing. */
  onLog?: (message: string) => void;
  /**
   * Slots shared with the other workers' loops, over `limit` (see `shared_slots.ts`): an accepted
   * connection waits for one before it is handled, as it would in the backlog.
   *
   * @default {undefined}
   */
  shared?: SharedLimit;
}

/** A connection limit over several accept loops (the workers of one server). */
export interface SharedLimit {
  /** Takes a slot if one is free. */
  take(): boolean;
  /** Gives a slot back. */
  give(): void;
  /** Resolves when a slot may be free, or after `timeoutMs`. */
  freed(timeoutMs: number): Promise<void>;
}

/** How often a connection waiting for a shared slot checks for a stop, in ms. */
const SHARED_WAIT_MS = 100;

/** At most one line a second, so a burst of identical failures cannot flood the log; says how many it dropped. */
class ThrottledLog {
  readonly #onLog: ((message: string) => void) | undefined;
  #lastLog = 0;
  #suppressed = 0;

  constructor(onLog: ((message: string) => void) | undefined) {
    this.#onLog = onLog;
  }

  write(message: string): void {
    const now = Date.now();
    if (now - this.#lastLog < 1000) {
      this.#suppressed++;
      return;
    }
    const suppressed = this.#suppressed ? ` (${this.#suppressed} similar messages suppressed)` : "";
    this.#onLog?.(message + suppressed);
    this.#lastLog = now;
    this.#suppressed = 0;
  }
}

/** A wait that {@link Wakeup.wake} ends early (a slot freed, or stopping). */
class Wakeup {
  #wake: (() => void) | undefined;

  /** Waits until woken, or `ms` pass. */
  wait(ms?: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(() => done(), ms);
      const done = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      this.#wake = done;
    });
  }

  wake(): void {
    this.#wake?.();
  }
}

/** A running accept loop; it starts in the constructor. */
export class AcceptLoop {
  /** Settles once accepting has stopped and every handler has settled. Never rejects. */
  readonly finished: Promise<void>;
  readonly #listener: Deno.Listener;
  readonly #options: AcceptLoopOptions;
  readonly #abort = new AbortController();
  readonly #handlers = new Set<Promise<void>>();
  #slots = 0;
  #stopping = false;
  readonly #wakeup = new Wakeup();
  #backoffUntil = 0;
  readonly #log: ThrottledLog;

  /** Starts accepting on `listener`. */
  constructor(listener: Deno.Listener, options: AcceptLoopOptions) {
    this.#listener = listener;
    this.#options = options;
    this.#log = new ThrottledLog(options.onLog);
    this.finished = this.#run();
  }

  /** Connections holding a slot. */
  get active(): number {
    return this.#slots;
  }

  /** Pauses accepting for `ms` (a handler met a resource shortage: let some free up). */
  backOff(ms: number = ACCEPT_RETRY_MS): void {
    this.#backoffUntil = Math.max(this.#backoffUntil, Date.now() + ms);
  }

  /** Logs at most one line a second, so a burst of identical failures cannot flood the log. */
  logThrottled(message: string): void {
    this.#log.write(message);
  }

  /**
   * Stops accepting and waits for the connections in flight; after
   * `deadlineMs`, if given, aborts those still running (see {@link close}).
   */
  shutdown(deadlineMs?: number): Promise<void> {
    this.#stopAccepting();
    if (deadlineMs !== undefined) {
      const timer = setTimeout(() => this.close(), deadlineMs);
      this.finished.then(() => clearTimeout(timer));
    }
    return this.finished;
  }

  /** Stops accepting and aborts every handler's signal; resolves once they have settled. */
  close(): Promise<void> {
    this.#stopAccepting();
    this.#abort.abort();
    return this.finished;
  }

  #stopAccepting(): void {
    if (this.#stopping) return;
    this.#stopping = true;
    closeQuietly(this.#listener);
    this.#wakeup.wake();
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      if (this.#slots >= this.#options.limit) {
        await this.#wakeup.wait(); // excess clients wait in the kernel's backlog
        continue;
      }
      const wait = this.#backoffUntil - Date.now();
      if (wait > 0) {
        await this.#wakeup.wait(wait);
        continue;
      }
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#stopping) break;
        // The peer was gone before accept() returned (HAProxy's TCP checks reset at once): not a shortage.
        if (peerGone(error)) continue;
        // EMFILE and friends: keep serving; descriptors come back as connections end.
        this.logThrottled(`accept failed, retrying: ${describeError(error)}`);
        this.backOff();
        continue;
      }
      const { shared } = this.#options;
      if (shared && !(await sharedSlot(shared, () => this.#stopping))) {
        closeQuietly(conn); // stopping: like a connection left in the backlog
        continue;
      }
      this.#start(conn);
    }
    while (this.#handlers.size > 0) await Promise.all(this.#handlers);
  }

  #start(conn: Deno.Conn): void {
    this.#slots++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.#slots--;
      this.#options.shared?.give();
      this.#wakeup.wake();
    };
    const handled: Promise<void> = Promise.resolve()
      .then(() => this.#options.handle(conn, { signal: this.#abort.signal, release }))
      .catch((error) => {
        // A handler bug must cost one connection, never the loop.
        closeQuietly(conn);
        this.logThrottled(`connection ended by an internal error: ${describeError(error)}`);
      })
      .finally(() => {
        release();
        this.#handlers.delete(handled);
      });
    this.#handlers.add(handled);
  }
}

/** Waits for a slot of the whole server (one accepted connection per loop waits at most); false once stopping. */
async function sharedSlot(shared: SharedLimit, stopping: () => boolean): Promise<boolean> {
  while (!stopping()) {
    if (shared.take()) return true;
    await shared.freed(SHARED_WAIT_MS);
  }
  return false;
}

/** Errors of accept() that mean only that this one peer has already gone. */
function peerGone(error: unknown): boolean {
  return error instanceof Deno.errors.NotConnected || error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.ConnectionAborted;
}
