/** Unit tests of lib/upload_name.ts: which upload names are taken, and how they split into directories. */
import assert from "node:assert/strict";
import { ProtocolError } from "../lib/errors.ts";
import { checkName } from "../lib/upload_name.ts";

Deno.test("checkName splits good names and refuses escapes", () => {
  assert.deepEqual(checkName("a/b/c.csv"), ["a", "b", "c.csv"]);
  assert.deepEqual(checkName("7.file.csv"), ["7.file.csv"]);
  assert.deepEqual(checkName("sub/7.file"), ["sub", "7.file"]);
  assert.deepEqual(checkName("café/Ωmega.csv"), ["café", "Ωmega.csv"]);
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
      "next\u0085line",
      "c1\u009b[31m",
      "bad\uFFFD.txt",
      "7.file",
      "7.file/x",
      "007.file/y/z",
    ]
  ) {
    assert.throws(() => checkName(bad), ProtocolError, JSON.stringify(bad));
  }
});
