/**
 * A flaky link for tests: a TCP relay on loopback that forwards bytes both
 * ways, and on request cuts a connection with a reset (both sides) after a
 * chosen number of client bytes, or drops the server's reply once (the
 * bytes the server sends after the client's half-close) and resets the
 * client instead. Counts what it carried, and the most connections open at once.
 *
 * @module
 */
import net from "node:net";

/** What the relay does to each connection, in the order they arrive. */
export interface RelayPlan {
  /**
   * For the k-th connection (from 0), reset both sides once this many bytes
   * from the client have been forwarded; `undefined` (or past the end of the
   * list) forwards everything.
   */
  cutAfter?: (number | undefined)[];
  /** Swallow the server's reply on the first connection that half-closes, and reset that client. */
  dropReplyOnce?: boolean;
}

/** A running relay; `await using` closes it. */
export class Relay implements AsyncDisposable {
  /** The port clients connect to. */
  readonly port: number;
  /** Bytes received from clients, over every connection (what the clients managed to send). */
  clientBytes = 0;
  /** Connections accepted. */
  connections = 0;
  /** Connections cut by the plan (a reset, or a dropped reply). */
  cuts = 0;
  /** The most connections open at the same time. */
  maxOpen = 0;
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  #open = 0;
  #dropPending: boolean;

  private constructor(server: net.Server, port: number, plan: RelayPlan, upstream: number) {
    this.#server = server;
    this.port = port;
    this.#dropPending = plan.dropReplyOnce ?? false;
    server.on("connection", (client) => this.#relay(client, upstream, plan.cutAfter?.[this.connections]));
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

  #relay(client: net.Socket, upstreamPort: number, cutAfter: number | undefined): void {
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
    let forwarded = 0;
    let clientEnded = false;
    let dropping = false;
    client.on("data", (chunk: Uint8Array) => {
      this.clientBytes += chunk.length;
      const room = cutAfter === undefined ? chunk.length : Math.min(chunk.length, cutAfter - forwarded);
      forwarded += room;
      if (room > 0 && !server.write(chunk.subarray(0, room))) client.pause();
      if (cutAfter !== undefined && forwarded >= cutAfter) {
        this.cuts++;
        // Let what was written reach the server before the reset discards the rest.
        server.write(new Uint8Array(0), () => setTimeout(reset, 20));
        client.pause();
      }
    });
    server.on("drain", () => client.resume());
    client.on("end", () => {
      clientEnded = true;
      if (this.#dropPending) {
        this.#dropPending = false;
        dropping = true;
      }
      server.end();
    });
    server.on("data", (chunk: Uint8Array) => {
      if (dropping && clientEnded) {
        this.cuts++;
        dropping = false;
        client.resetAndDestroy();
        server.destroy();
        return;
      }
      if (!client.destroyed && !client.write(chunk)) server.pause();
    });
    client.on("drain", () => server.resume());
    server.on("end", () => client.destroyed || client.end());
    client.on("error", reset);
    server.on("error", reset);
    server.on("connect", () => client.resume());
  }

  /** Stops accepting and resets every connection still open. */
  async close(): Promise<void> {
    for (const socket of this.#sockets) if (!socket.destroyed) socket.resetAndDestroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
