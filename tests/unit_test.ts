/** Unit tests of the pure pieces of lib/: ports, arguments, names, headers, the idle watchdog. */
import assert from "node:assert/strict";
import { parseArgs, parseIntegerOption, parseSecondsOption } from "../lib/cli.ts";
import { IdleWatchdog } from "../lib/deadline.ts";
import { ProtocolError, UsageError } from "../lib/errors.ts";
import { formatHeaders, parseHeaders } from "../lib/headers.ts";
import { lookupService, parsePort } from "../lib/port.ts";
import { checkName } from "../lib/upload_name.ts";

Deno.test("parsePort accepts 1-65535 in plain digits only", () => {
  assert.equal(parsePort("1"), 1);
  assert.equal(parsePort("65535"), 65535);
  for (const bad of ["0", "65536", "-1", "+5", "5.0", "0x10", " 5", "", "abc", "99999999999999999999"]) {
    assert.throws(() => parsePort(bad), UsageError, bad);
  }
});

Deno.test("lookupService reads tcp entries, names and aliases, ignoring comments and udp", () => {
  const services = "# comment\nssh 22/tcp\nfoo 100/udp\nwww 80/tcp http # alias\nbar 7/TCP\n";
  assert.equal(lookupService("ssh", services), 22);
  assert.equal(lookupService("http", services), 80);
  assert.equal(lookupService("www", services), 80);
  assert.equal(lookupService("bar", services), 7);
  assert.equal(lookupService("foo", services), undefined);
  assert.equal(lookupService("comment", services), undefined);
});

Deno.test("parseArgs: options anywhere, --x=y, negative numbers stay positional", () => {
  const spec = {
    name: "t",
    usage: "t",
    summary: "",
    positionals: ["A", "B"],
    options: { timeout: { type: "string", help: "" }, quiet: { type: "boolean", help: "" } },
  } as const;
  assert.deepEqual(parseArgs(spec, ["--timeout=3", "x", "--quiet", "-1"]), {
    positionals: ["x", "-1"],
    values: { timeout: "3", quiet: true },
  });
  assert.deepEqual(parseArgs(spec, ["--", "--quiet", "y"]).positionals, ["--quiet", "y"]);
  assert.throws(() => parseArgs(spec, ["x"]), /missing argument/);
  assert.throws(() => parseArgs(spec, ["x", "y", "z"]), /too many/);
  assert.throws(() => parseArgs(spec, ["-q", "x", "y"]), /unknown option "-q"/);
  assert.throws(() => parseArgs(spec, ["x", "y", "--timeout"]), /needs a value/);
  assert.throws(() => parseArgs(spec, ["x", "y", "--quiet=1"]), /takes no value/);
});

Deno.test("option values: seconds and sizes", () => {
  assert.equal(parseSecondsOption("t", "0.5", 1), 500);
  assert.equal(parseSecondsOption("t", undefined, 1234), 1234);
  for (const bad of ["0", "-1", "abc", "1e3", "90000"]) {
    assert.throws(() => parseSecondsOption("t", bad, 1), UsageError);
  }
  assert.equal(parseIntegerOption("s", "4G", 0, { units: true }), 4 * 2 ** 30);
  assert.equal(parseIntegerOption("s", "10KiB", 0, { units: true }), 10240);
  assert.throws(() => parseIntegerOption("s", "4G", 0), UsageError);
  assert.throws(() => parseIntegerOption("s", "0", 0, { min: 1 }), UsageError);
});

Deno.test("checkName splits good names and refuses escapes", () => {
  assert.deepEqual(checkName("a/b/c.csv"), ["a", "b", "c.csv"]);
  assert.deepEqual(checkName("7.file.csv"), ["7.file.csv"]);
  assert.deepEqual(checkName("sub/7.file"), ["sub", "7.file"]);
  for (
    const bad of [
      "",
      "/a",
      "../a",
      "a/../b",
      "a/.",
      ".a",
      "a//b",
      "a/",
      "a\\b",
      "a\x00b",
      "a\nb",
      "7.file",
      "7.file/x",
      "007.file/y/z",
    ]
  ) {
    assert.throws(() => checkName(bad), ProtocolError, JSON.stringify(bad));
  }
});

Deno.test("headers round-trip and reject what they do not know", () => {
  const enc = (lines: string[]) => lines.map((l) => new TextEncoder().encode(l));
  const headers = { name: "a/b", length: 12, sha256: "a".repeat(64) };
  assert.deepEqual(parseHeaders(enc(formatHeaders(headers))), headers);
  for (
    const bad of [["x"], ["name:a"], ["Name: a"], ["size: 1"], ["length: 1", "length: 1"], [
      "sha256: A".padEnd(72, "A"),
    ]]
  ) {
    assert.throws(() => parseHeaders(enc(bad)), ProtocolError, bad.join("|"));
  }
});

Deno.test("IdleWatchdog fires only after the idle period, and touch() postpones it", async () => {
  let fired = 0;
  const watchdog = new IdleWatchdog(150, () => fired++);
  for (let i = 0; i < 4; i++) {
    await new Promise((r) => setTimeout(r, 60));
    watchdog.touch();
  }
  assert.equal(fired, 0, "fired while touched");
  await new Promise((r) => setTimeout(r, 250));
  assert.equal(fired, 1);
  assert.equal(watchdog.expired, true);
  watchdog.stop();
});

Deno.test("receiveStream never reuses a buffer whose write is in flight, as reads change pace", async () => {
  const { receiveStream } = await import("../lib/receiver.ts");
  const { BufferPool } = await import("../lib/buffer_pool.ts");
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
