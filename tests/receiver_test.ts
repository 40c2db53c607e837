/**
 * Unit tests of lib/receiver.ts: a socket of changing pace into a slow sink,
 * with receive buffers borrowed from a shared pool (lib/buffer_pool.ts).
 */
import assert from "node:assert/strict";
import { BufferPool } from "../lib/buffer_pool.ts";
import { receiveStream } from "../lib/receiver.ts";

Deno.test("receiveStream never reuses a buffer whose write is in flight, as reads change pace", async () => {
  let seed = 9;
  const random = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  const total = 24 * 1024 * 1024;
  const source = new Uint8Array(total).map((_, i) => (i * 7 + (i >>> 13)) & 0xff);
  // A small budget, which other connections (the neighbour) keep taking from and giving back to.
  const pool = new BufferPool(2 * 1024 * 1024);
  const neighbour: Uint8Array[] = [];
  const jostle = () => {
    if (random() < 0.1) {
      // By turns the neighbour holds the whole budget or none of it.
      if (neighbour.length > 0) neighbour.splice(0).forEach((b) => pool.give(b));
      else for (let b = pool.take(64 * 1024); b; b = pool.take(64 * 1024)) neighbour.push(b);
    }
  };
  let offset = 0;
  let phase = 0;
  const socket = {
    // Phases of full reads and of tiny ones, so that the buffers grow, shrink and change mode many times.
    async read(buffer: Uint8Array): Promise<number | null> {
      await new Promise((resolve) => setTimeout(resolve, 0));
      jostle();
      if (offset >= total) return null;
      if (random() < 0.05) phase ^= 1;
      const want = phase === 0 ? buffer.length : 1 + Math.floor(random() * 100);
      const n = Math.min(want, buffer.length, total - offset);
      buffer.set(source.subarray(offset, offset + n));
      offset += n;
      return n;
    },
    write: () => Promise.resolve(0),
    close() {},
  };
  const received: Uint8Array[] = [];
  const sink = {
    async write(chunk: Uint8Array): Promise<void> {
      const copy = chunk.slice();
      for (let i = Math.floor(random() * 3); i > 0; i--) {
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
      assert.deepEqual(chunk, copy, "a buffer was reused while its write was in flight");
      received.push(copy);
    },
  };
  const bytes = await receiveStream(socket, new Uint8Array(0), sink, { timeoutMs: 10_000, pool });
  assert.equal(bytes, total);
  const joined = new Uint8Array(total);
  let at = 0;
  for (const chunk of received) joined.set(chunk, (at += chunk.length) - chunk.length);
  assert.ok(joined.every((b, i) => b === source[i]), "the stored bytes differ from the sent ones");
  assert.ok(pool.allocated <= 2 * 1024 * 1024);
});
