/** Unit tests of lib/headers.ts: the header extensions (`name`, `length`, `sha256`) written and read. */
import assert from "node:assert/strict";
import { ProtocolError } from "../lib/errors.ts";
import { formatHeaders, parseHeaders } from "../lib/headers.ts";

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
