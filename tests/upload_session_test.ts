/**
 * The upload session without a process: each test accepts one loopback
 * connection itself, runs {@link runSession} on it over an in-memory Store,
 * and plays the client on the other end, byte by byte.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { withDeadline } from "../lib/deadline.ts";
import { FileError, NotAnUploadError, ProtocolError } from "../lib/errors.ts";
import { readExactly, writeAll } from "../lib/socket_io.ts";
import type { Store, StoredUpload } from "../lib/store.ts";
import {
  type Gate,
  runSession,
  type SessionEnd,
  type SessionOptions,
  sessionSettings,
} from "../lib/upload_session.ts";

const encode = (text: string) => new TextEncoder().encode(text);
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** An upload kept in memory, with the calls the session made. */
class MemoryUpload implements StoredUpload {
  readonly id: number;
  readonly chunks: Uint8Array[] = [];
  state: "open" | "committed" | "failed" = "open";
  name: string | undefined;

  constructor(id: number) {
    this.id = id;
  }

  get finalPath(): string {
    return `memory/${this.id}.file`;
  }

  get bytes(): number {
    return this.chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  }

  get content(): string {
    return decode(new Uint8Array(this.chunks.flatMap((chunk) => [...chunk])));
  }

  useName(segments: readonly string[]): Promise<string> {
    this.name = segments.join("/");
    return Promise.resolve(`memory/${this.name}`);
  }

  write(chunk: Uint8Array): Promise<void> {
    assert.equal(this.state, "open", "write after the upload ended");
    this.chunks.push(chunk.slice()); // the session reuses its buffers
    return Promise.resolve();
  }

  commit(): Promise<void> {
    assert.equal(this.state, "open", "commit after the upload ended");
    this.state = "committed";
    return Promise.resolve();
  }

  fail(): Promise<string | undefined> {
    assert.equal(this.state, "open", "fail after the upload ended");
    this.state = "failed";
    return Promise.resolve(undefined);
  }
}

class MemoryStore implements Store {
  readonly uploads: MemoryUpload[] = [];
  refuseWith: Error | undefined;

  createNext(): Promise<StoredUpload> {
    if (this.refuseWith) return Promise.reject(this.refuseWith);
    const upload = new MemoryUpload(this.uploads.length + 1);
    this.uploads.push(upload);
    return Promise.resolve(upload);
  }
}

/** The client's side: reads everything until the server's end of stream (bounded). */
async function readToEnd(conn: Deno.Conn): Promise<string> {
  const parts: Uint8Array[] = [];
  const buffer = new Uint8Array(4096);
  const loop = async () => {
    for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
      parts.push(buffer.slice(0, n));
    }
  };
  await withDeadline(
    loop(),
    5_000,
    () => new Error("the server did not close within 5 s"),
    () => conn.close(),
  );
  return decode(new Uint8Array(parts.flatMap((part) => [...part])));
}

/** A client that greets like `client --handshake double` with `headers`, sends `data` and half-closes. */
function doubleClient(headers: string[], data: string) {
  return async (conn: Deno.TcpConn): Promise<string> => {
    assert.equal(decode(await readExactly(conn, 7, 5_000, "accio")), "accio\r\n");
    await writeAll(conn, encode("confirm-accio\r\n"), 5_000);
    assert.equal(decode(await readExactly(conn, 7, 5_000, "accio")), "accio\r\n");
    await writeAll(conn, encode(["confirm-accio-again", ...headers, "", ""].join("\r\n") + data), 5_000);
    await conn.closeWrite();
    return await readToEnd(conn);
  };
}

/** Runs one session on a loopback connection whose client end `client` drives; returns both sides. */
async function serveOne(
  options: SessionOptions,
  client: (conn: Deno.TcpConn) => Promise<string>,
  store = new MemoryStore(),
  signal = new AbortController().signal,
): Promise<{ end: SessionEnd; reply: string; store: MemoryStore }> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  try {
    const session = runSession(await accepted, store, sessionSettings(options), { signal }).then(
      async (end) => {
        if (end.numbered) await end.closed;
        return end;
      },
    );
    const [end, reply] = await Promise.all([session, client(conn)]);
    return { end, reply, store };
  } finally {
    conn.close();
  }
}

Deno.test("session: a single-handshake upload is committed, and the server sends nothing after accio", async () => {
  const { end, reply, store } = await serveOne({}, async (conn) => {
    assert.equal(decode(await readExactly(conn, 7, 5_000, "accio")), "accio\r\n");
    await writeAll(conn, encode("hello, store"), 5_000);
    await conn.closeWrite();
    return await readToEnd(conn);
  });
  assert.equal(reply, "", "the success path is the seed protocol: a close and no byte");
  assert.ok(end.numbered);
  assert.equal(end.outcome.outcome, "saved");
  assert.equal(end.outcome.bytes, 12);
  assert.equal(end.outcome.handshake, "single");
  assert.equal(end.outcome.file, "memory/1.file");
  assert.equal(store.uploads[0].state, "committed");
  assert.equal(store.uploads[0].content, "hello, store");
});

Deno.test("session: an idle client ends as ERROR, is told why in one error line, and the store records it", async () => {
  const { end, reply, store } = await serveOne({ idleTimeoutMs: 300 }, async (conn) => {
    assert.equal(decode(await readExactly(conn, 7, 5_000, "accio")), "accio\r\n");
    return await readToEnd(conn); // sends nothing
  });
  const reason = "no data for 0.3 s while waiting for the client's first bytes";
  assert.equal(reply, `error ${reason}\r\n`);
  assert.ok(end.numbered);
  assert.equal(end.outcome.outcome, "error");
  assert.equal(end.outcome.reason, reason);
  assert.equal(store.uploads[0].state, "failed");
});

Deno.test("session: a named upload is stored at its name, and the client gets ok", async () => {
  const { end, reply, store } = await serveOne(
    { allowNames: true, hashUploads: true },
    doubleClient(["name: floor2/temp.csv", "length: 5"], "21.5\n"),
  );
  assert.equal(reply, "ok\r\n");
  assert.ok(end.numbered);
  assert.equal(end.outcome.outcome, "saved");
  assert.equal(end.outcome.file, "memory/floor2/temp.csv");
  assert.equal(end.outcome.name, "floor2/temp.csv");
  assert.equal(end.outcome.handshake, "double");
  assert.equal(end.outcome.sha256, createHash("sha256").update("21.5\n").digest("hex"));
  assert.equal(store.uploads[0].name, "floor2/temp.csv");
  assert.equal(store.uploads[0].content, "21.5\n");
  assert.equal(store.uploads[0].state, "committed");
});

Deno.test("session: a SHA-256 that differs from the announced one fails the upload and says so", async () => {
  const wrong = createHash("sha256").update("other bytes").digest("hex");
  const { end, reply, store } = await serveOne(
    { allowHeaders: true },
    doubleClient([`sha256: ${wrong}`], "the real bytes"),
  );
  const reason = "SHA-256 of the received bytes differs from the one the client announced";
  assert.equal(reply, `error ${reason}\r\n`);
  assert.ok(end.numbered);
  assert.equal(end.outcome.outcome, "error");
  assert.equal(end.outcome.reason, reason);
  assert.equal(end.outcome.file, "memory/1.file", "a failed upload is recorded under its number");
  assert.equal(store.uploads[0].state, "failed");
});

Deno.test("session: a refusing gate and a failing store both close before accio, and use no number", async () => {
  const gate: Gate = (arrival) => {
    arrival.peer = "203.0.113.7:4000"; // as a PROXY protocol gate would
    return Promise.reject(new ProtocolError("no PROXY header"));
  };
  const gated = await serveOne({ gates: [gate] }, readToEnd);
  assert.deepEqual(gated.end, {
    numbered: false,
    peer: "203.0.113.7:4000",
    reason: "no PROXY header",
    kind: "protocol",
    shortage: false,
    quiet: false,
  });
  assert.equal(gated.reply, "", "closed before accio\\r\\n");
  assert.equal(gated.store.uploads.length, 0, "the gate runs before the store is asked for a number");

  const check: Gate = () => Promise.reject(new NotAnUploadError("PROXY protocol LOCAL connection"));
  const checked = await serveOne({ gates: [check] }, readToEnd);
  assert.ok(!checked.end.numbered && checked.end.quiet, "no upload (a health check): refused, not logged");
  assert.equal(checked.store.uploads.length, 0);

  const full = new MemoryStore();
  full.refuseWith = new FileError("cannot create .1.file.part: Too many open files");
  const refused = await serveOne({}, readToEnd, full);
  assert.ok(!refused.end.numbered);
  assert.equal(refused.end.shortage, true, "a store shortage pauses accepting");
  assert.equal(refused.reply, "");
});

Deno.test("session: stopping at once ends an upload in flight as ERROR, and its client is told", async () => {
  const stop = new AbortController();
  const { end, reply, store } = await serveOne(
    {},
    async (conn) => {
      assert.equal(decode(await readExactly(conn, 7, 5_000, "accio")), "accio\r\n");
      await writeAll(conn, encode("the first half"), 5_000);
      setTimeout(() => stop.abort(), 100); // then stays silent, as a slow client would
      return await readToEnd(conn);
    },
    undefined,
    stop.signal,
  );
  const reason = "server shut down before the upload finished";
  assert.equal(reply, `error ${reason}\r\n`);
  assert.ok(end.numbered);
  assert.equal(end.outcome.reason, reason);
  assert.equal(store.uploads[0].state, "failed");
});
