/**
 * A flaky link on loopback, for the resume tests and the bench's workload 6:
 * a TCP relay that forwards bytes both ways, and on request cuts a connection
 * with a reset (both sides) after a chosen number of client bytes, holds one
 * (stops forwarding, keeps it open), or drops the server's reply once (the
 * bytes the server sends after the client's half-close) and resets the client
 * instead. Counts what it carried, and the most connections open at once.
 * No program of Accio uses it.
 *
 * @example
 * ```ts
 * import { Relay } from "./flaky_link.ts";
 * await using relay = await Relay.start(5000, { cutAfter: [1_048_576] });
 * // connect clients to 127.0.0.1:relay.port; the first one is reset after 1 MiB
 * console.log(relay.clientBytes, relay.cuts);
 * ```
 * @module
 */
import net from "node:net";

/** What the relay does to each connection, in the order they arrive. */
export interface RelayPlan {
  /**
   * The cuts, in order: each new connection is reset (both sides) once this
   * many bytes from the client were forwarded, by the first cut that has not
   * happened yet (a connection that ends before its cut leaves it to the
   * next one). Once all happened, everything is forwarded.
   */
  cutAfter?: number[];
  /**
   * For the k-th connection, stop forwarding (and reading) the client's
   * bytes once this many were forwarded: the upload stalls there, its
   * connection stays open.
   */
  holdAfter?: (number | undefined)[];
  /** Swallow the server's reply on the first connection that half-closes, and reset that client. */
  dropReplyOnce?: boolean;
  /**
   * On the first connection only, half-close towards the server once this
   * many client bytes were forwarded and drop the client's later bytes, as a
   * middlebox that ends a stream early: the server sees a clean, short
   * upload, and its reply still reaches the client.
   */
  endEarlyOnce?: number;
}

/** A running relay; `await using` closes it. Start it with {@link Relay.start}. */
export class Relay implements AsyncDisposable {
  /** The port clients connect to. */
  readonly port: number;
  /** Bytes received from clients, over every connection (what the clients managed to send). */
  clientBytes = 0;
  /** Connections accepted. */
  connections = 0;
  /** Connections cut by the plan's `cutAfter`. */
  cuts = 0;
  /** Replies dropped (`dropReplyOnce`). */
  drops = 0;
  /** Streams ended early (`endEarlyOnce`). */
  earlyEnds = 0;
  /** The most connections open at the same time. */
  maxOpen = 0;
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  #open = 0;
  #dropPending: boolean;
  #endEarly: number | undefined;

  private constructor(server: net.Server, port: number, plan: RelayPlan, upstream: number) {
    this.#server = server;
    this.port = port;
    this.#dropPending = plan.dropReplyOnce ?? false;
    this.#endEarly = plan.endEarlyOnce;
    server.on("connection", (client) => {
      const k = this.connections;
      this.#relay(client, upstream, plan.cutAfter?.[this.cuts], plan.holdAfter?.[k]);
    });
  }

  /** Starts a relay to `127.0.0.1:upstreamPort`. */
  static start(upstreamPort: number, plan: RelayPlan = {}): Promise<Relay> {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as net.AddressInfo;
        resolve(new Relay(server, port, plan, upstreamPort));
      });
    });
  }

  #track(socket: net.Socket): void {
    this.#sockets.add(socket);
    socket.on("error", () => {});
    socket.on("close", () => this.#sockets.delete(socket));
  }

  #relay(client: net.Socket, upstreamPort: number, cutAfter: number | undefined, holdAfter?: number): void {
    this.connections++;
    this.maxOpen = Math.max(this.maxOpen, ++this.#open);
    const server = net.connect({ host: "127.0.0.1", port: upstreamPort, allowHalfOpen: true });
    this.#track(client);
    this.#track(server);
    let closed = 0;
    const onClose = () => {
      if (++closed === 2) this.#open--;
    };
    client.on("close", onClose);
    server.on("close", onClose);
    const reset = () => {
      for (const socket of [client, server]) if (!socket.destroyed) socket.resetAndDestroy();
    };
    client.on("error", reset);
    server.on("error", reset);
    this.#forwardClient(client, server, { cutAfter, holdAfter, reset });
    forwardServer(client, server);
    server.on("connect", () => client.resume());
  }

  /** Client to server: counted, and cut or held where the plan says. */
  #forwardClient(
    client: net.Socket,
    server: net.Socket,
    { cutAfter, holdAfter, reset }: { cutAfter?: number; holdAfter?: number; reset: () => void },
  ): void {
    const endAfter = this.#endEarly;
    this.#endEarly = undefined;
    const limit = Math.min(cutAfter ?? Infinity, holdAfter ?? Infinity, endAfter ?? Infinity);
    let forwarded = 0;
    let held = false;
    let cut = false;
    let ended = false;
    client.on("data", (chunk: Uint8Array) => {
      this.clientBytes += chunk.length;
      if (ended) return;
      const room = Math.max(0, Math.min(chunk.length, limit - forwarded));
      forwarded += room;
      if (room > 0 && !server.write(chunk.subarray(0, room)) && !held) client.pause();
      if (endAfter !== undefined && forwarded >= endAfter) {
        ended = true;
        this.earlyEnds++;
        server.end();
        client.resume();
      } else if (holdAfter !== undefined && forwarded >= holdAfter && !held) {
        held = true;
        client.pause();
      } else if (cutAfter !== undefined && forwarded >= cutAfter && !cut) {
        cut = true;
        this.cuts++;
        // Let what was written reach the server before the reset discards the rest.
        server.write(new Uint8Array(0), () => setTimeout(reset, 20));
        client.pause();
      }
    });
    server.on("drain", () => held || client.resume());
    client.on("end", () => {
      // A cut connection ends in its reset: a FIN passed on now would tell the server its bytes all came.
      if (cut || ended) return;
      if (this.#dropPending) {
        this.#dropPending = false;
        dropNextReply(client, server, () => this.drops++);
      }
      server.end();
    });
  }

  /** Stops accepting and resets every connection still open. */
  async close(): Promise<void> {
    for (const socket of this.#sockets) if (!socket.destroyed) socket.resetAndDestroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** Closes it, as {@link Relay.close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Server to client, as it comes. */
function forwardServer(client: net.Socket, server: net.Socket): void {
  server.on("data", (chunk: Uint8Array) => {
    if (!client.destroyed && !client.write(chunk)) server.pause();
  });
  client.on("drain", () => server.resume());
  server.on("end", () => client.destroyed || client.end());
}

/** The server's next bytes (its reply, after the client's half-close) never arrive: the client is reset. */
function dropNextReply(client: net.Socket, server: net.Socket, onDrop: () => void): void {
  server.prependOnceListener("data", () => {
    onDrop();
    client.resetAndDestroy();
    server.destroy();
  });
}
