/**
 * What the client decides before it connects, from its command line and the
 * file's first bytes: a file that begins `confirm-accio\r\n` goes by the double
 * handshake (so an auto-detecting server stores it exactly), and names the
 * server would refuse never reach the wire. Against the real server.
 */
import assert from "node:assert/strict";
import { ProtocolError } from "../lib/errors.ts";
import { formatHeaders } from "../lib/headers.ts";
import { bytes } from "./support/encoding.ts";
import { contentFile, listDir, tempDir } from "./support/files.ts";
import { runClient, startServer } from "./support/process.ts";

const lines = (stderr: string) => stderr.split("\n").filter((l) => l !== "");

const tricky = {
  "a whole double-handshake header": "confirm-accio\r\nconfirm-accio-again\r\n\r\nthe rest of the file",
  "confirm-accio and other bytes": "confirm-accio\r\nsomething else entirely",
  "nothing but confirm-accio": "confirm-accio\r\n",
  "only a prefix of confirm-accio": "confirm-acc",
  "confirm-accio without its CRLF": "confirm-accio and more",
};

Deno.test("default client: files that begin confirm-accio\\r\\n are stored byte for byte", async () => {
  await using server = await startServer("server");
  let n = 0;
  for (const [label, content] of Object.entries(tricky)) {
    const path = await contentFile(content);
    const result = await runClient(["127.0.0.1", String(server.port), path]);
    assert.equal(result.code, 0, `${label}: ${result.stderr}`);
    n++;
    assert.equal(await Deno.readTextFile(`${server.dir}/${n}.file`), content, label);
  }
});

Deno.test("client --handshake single refuses, before connecting, a file that begins confirm-accio\\r\\n", async () => {
  await using server = await startServer("server");
  const path = await contentFile(tricky["a whole double-handshake header"]);
  const result = await runClient(["--handshake", "single", "127.0.0.1", String(server.port), path]);
  assert.equal(result.code, 2, result.stderr);
  const [first] = lines(result.stderr);
  assert.match(first, /^ERROR: cannot send ".*upload\.bin" with --handshake single: it begins with/);
  assert.match(first, /use --handshake double/);
  assert.equal(lines(result.stderr).filter((l) => l.startsWith("ERROR:")).length, 1);
  assert.deepEqual(await listDir(server.dir), [], "the client connected anyway");
  // The double handshake sends it as it is.
  const double = await runClient(["--handshake", "double", "127.0.0.1", String(server.port), path]);
  assert.equal(double.code, 0, double.stderr);
  assert.equal(await Deno.readTextFile(`${server.dir}/1.file`), tricky["a whole double-handshake header"]);
});

Deno.test("client refuses, before connecting, a --name or --named the server would refuse", async () => {
  await using server = await startServer("server", { extra: ["--names"] });
  const path = await contentFile("payload");
  const cases: [string[], RegExp][] = [
    [
      ["--verify", "--name", "evil\r\n\r\nINJECTED"],
      /refused name "evil\\r\\n\\r\\nINJECTED": contains a control/,
    ],
    [["--name", "tab\tname"], /refused name "tab\\tname": contains a control character/],
    [["--name", "../escape"], /refused name "\.\.\/escape": a segment starts with a dot/],
    [["--name", "/etc/passwd"], /refused name "\/etc\/passwd": absolute path/],
    [["--name", "7.file"], /refused name "7\.file": numbered names are the server's/],
  ];
  for (const [options, message] of cases) {
    const result = await runClient([...options, "127.0.0.1", String(server.port), path]);
    assert.equal(result.code, 2, `${options.join(" ")}: ${result.stderr}`);
    assert.match(lines(result.stderr)[0], /^ERROR: /);
    assert.match(lines(result.stderr)[0], message);
  }
  // A file whose own base name carries CR/LF, sent with --named.
  const dir = await tempDir();
  const evil = `${dir}/evil\r\n\r\nINJECTED.csv`;
  await Deno.writeFile(evil, bytes("payload"));
  const named = await runClient(["--named", "127.0.0.1", String(server.port), evil]);
  assert.equal(named.code, 2, named.stderr);
  assert.match(
    named.stderr,
    /^ERROR: refused name "evil\\r\\n\\r\\nINJECTED\.csv": contains a control character/m,
  );
  assert.deepEqual(await listDir(server.dir), [], "a refused name reached the server");
});

Deno.test("formatHeaders refuses CR, LF and NUL in any value", () => {
  for (const bad of ["a\rb", "a\nb", "a\0b", "x\r\n\r\nINJECTED"]) {
    assert.throws(() => formatHeaders({ name: bad }), ProtocolError, JSON.stringify(bad));
    assert.throws(() => formatHeaders({ sha256: bad }), ProtocolError, JSON.stringify(bad));
  }
  assert.deepEqual(formatHeaders({ name: "floor2/temp.csv", length: 3 }), [
    "name: floor2/temp.csv",
    "length: 3",
  ]);
});

Deno.test("client: a name or file name that was not valid UTF-8 is refused before connecting", async () => {
  const dir = await tempDir();
  const path = `${dir}/data.csv`;
  await Deno.writeTextFile(path, "x");
  // Deno decodes the argument bytes "bad\xff.txt" as "bad\uFFFD.txt": that is what the client sees.
  const named = await runClient(["--name", "bad\uFFFD.txt", "127.0.0.1", "9", path]);
  assert.equal(named.code, 2, named.stderr);
  assert.match(named.stderr, /^ERROR: refused name "bad\uFFFD.txt": contains U\+FFFD/m);
  const odd = await runClient(["127.0.0.1", "9", `${dir}/odd\uFFFD name`]);
  assert.equal(odd.code, 1, odd.stderr);
  assert.match(odd.stderr, /^ERROR: cannot open ".*": no such file; its name is not valid UTF-8/m);
});

Deno.test("client: a file under /proc gets a clear message, not Deno's permission hint", async () => {
  const result = await runClient(["127.0.0.1", "9", "/proc/self/status"]);
  assert.equal(result.code, 1, result.stderr);
  assert.match(
    result.stderr,
    /^ERROR: cannot open "\/proc\/self\/status": the client may not read files under \/dev or \/proc/m,
  );
  assert.doesNotMatch(result.stderr, /run again/);
});
