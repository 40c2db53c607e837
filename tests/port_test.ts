/** Unit tests of lib/port.ts: port numbers in plain digits, and service names from a services file. */
import assert from "node:assert/strict";
import { UsageError } from "../lib/errors.ts";
import { lookupService, parsePort } from "../lib/port.ts";

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
