/**
 * lib/accept_loop.ts: a peer that resets its connection while it waits in the
 * backlog (HAProxy's TCP checks do) makes Deno's accept() throw NotConnected;
 * that is no shortage, so the loop neither logs nor backs off.
 */
import assert from "node:assert/strict";
import { ACCEPT_RETRY_MS, AcceptLoop } from "../lib/accept_loop.ts";
import { waitFor } from "./support/wait.ts";
import { connect, connectAndReset } from "./support/wire.ts";

Deno.test("accept loop: connections reset in the backlog are no failure: no log line, no back-off", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  const logs: string[] = [];
  let release: () => void = () => {};
  const held = new Promise<void>((resolve) => release = resolve);
  const served: number[] = [];
  const loop = new AcceptLoop(listener, {
    limit: 1,
    onLog: (line) => logs.push(line),
    handle: async (conn) => {
      served.push(Date.now());
      if (served.length === 1) await held; // holds the only slot: the resets queue in the backlog
      conn.close();
    },
  });
  try {
    const first = await connect(port);
    await waitFor(() => served.length === 1, 5_000, "the first connection to be served");
    for (let i = 0; i < 5; i++) await connectAndReset(port);
    const last = await connect(port);
    const freedAt = Date.now();
    release();
    await waitFor(() => served.length >= 2, 5_000, "the connection behind the resets to be served");
    first.close();
    last.close();
    assert.deepEqual(logs, [], "no log line for a peer that was gone before accept returned");
    // Five back-offs would take at least 5 x ACCEPT_RETRY_MS.
    const took = served[1] - freedAt;
    assert.ok(took < 5 * ACCEPT_RETRY_MS, `served ${took} ms after the slot freed: no back-off`);
  } finally {
    await loop.close();
  }
});
