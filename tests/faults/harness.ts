/**
 * The fault suite's invariant and bookkeeping. After every scenario the upload
 * directory must hold, for each connection number, exactly one `N.file`:
 * byte-identical to what a peer sent where that peer finished cleanly,
 * `ERROR` where it was cut off, and never anything else; files that were there
 * before are unchanged, and no temporary file is left.
 *
 * @module
 */
import assert from "node:assert/strict";
import { text } from "../support/encoding.ts";
import { listDir, sha256 } from "../support/files.ts";
import { delay } from "../support/wait.ts";
import { connect, readToEnd, recvExactly, sendAll } from "../support/wire.ts";

/** What one connection of a scenario did. */
export interface Attempt {
  /** The bytes the peer sent as its file (after any handshake). */
  content: Uint8Array;
  /**
   * `clean`: the peer finished and got the server's close: the file must be there, intact.
   * `error`: the peer was cut off: the file must be `ERROR`.
   * `either`: complete or `ERROR` are both right (e.g. an idle peer that closed with no data).
   */
  expect: "clean" | "error" | "either";
}

/** One row of the summary table. */
export interface ScenarioRow {
  scenario: string;
  connections: number;
  faults: number;
  verified: number;
  lost: number;
  crashes: number;
  note?: string;
}

const rows: ScenarioRow[] = [];

/** Records a scenario's row for the summary. */
export function record(row: ScenarioRow): void {
  rows.push(row);
}

/** Sums over every recorded scenario. */
export function totals(): Omit<ScenarioRow, "scenario" | "note"> & { scenarios: number } {
  return rows.reduce(
    (t, r) => ({
      scenarios: t.scenarios + 1,
      connections: t.connections + r.connections,
      faults: t.faults + r.faults,
      verified: t.verified + r.verified,
      lost: t.lost + r.lost,
      crashes: t.crashes + r.crashes,
    }),
    { scenarios: 0, connections: 0, faults: 0, verified: 0, lost: 0, crashes: 0 },
  );
}

/** The summary table, as Markdown. */
export function summaryTable(): string {
  const total = rows.reduce(
    (t, r) => ({
      connections: t.connections + r.connections,
      faults: t.faults + r.faults,
      verified: t.verified + r.verified,
      lost: t.lost + r.lost,
      crashes: t.crashes + r.crashes,
    }),
    { connections: 0, faults: 0, verified: 0, lost: 0, crashes: 0 },
  );
  const lines = [
    "| scenario | connections | faults injected | files verified | files lost | server crashes | note |",
    "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ...rows.map((r) =>
      `| ${r.scenario} | ${r.connections} | ${r.faults} | ${r.verified} | ${r.lost} | ${r.crashes} | ${
        r.note ?? ""
      } |`
    ),
    `| **${rows.length} scenarios** | **${total.connections}** | **${total.faults}** | **${total.verified}** | **${total.lost}** | **${total.crashes}** | |`,
  ];
  return lines.join("\n");
}

/** SHA-256 of every `N.file` in `dir`, by name. */
export async function snapshot(dir: string): Promise<Map<string, string>> {
  const hashes = new Map<string, string>();
  for (const name of await listDir(dir)) {
    if (/^[0-9]+\.file$/.test(name)) hashes.set(name, sha256(await Deno.readFile(`${dir}/${name}`)));
  }
  return hashes;
}

/**
 * Checks the invariant over the files numbered after `before`'s and returns
 * how many files were verified and how many uploads were lost (a clean
 * upload missing or wrong, or a file that matches no upload).
 */
export async function verify(
  dir: string,
  attempts: Attempt[],
  before: Map<string, string>,
): Promise<{ verified: number; lost: number }> {
  // An ERROR upload is published just after its socket closes: give that a bounded moment.
  let names = await listDir(dir);
  for (let i = 0; i < 100 && names.some((n) => n.startsWith(".")); i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    names = await listDir(dir);
  }
  const strays = names.filter((n) => !/^[0-9]+\.file$/.test(n));
  assert.deepEqual(strays, [], `files other than N.file left in ${dir}`);
  for (const [name, hash] of before) {
    assert.equal(sha256(await Deno.readFile(`${dir}/${name}`)), hash, `${name} changed`);
  }
  const firstNew = Math.max(0, ...[...before.keys()].map((n) => parseInt(n))) + 1;
  const numbers = names.map((n) => parseInt(n)).filter((n) => n >= firstNew).sort((a, b) => a - b);
  numbers.forEach((n, i) => assert.equal(n, firstNew + i, `connection ${firstNew + i} has no file`));

  const byHash = new Map<string, Attempt[]>();
  for (const attempt of attempts) {
    const key = sha256(attempt.content);
    byHash.set(key, [...byHash.get(key) ?? [], attempt]);
  }
  const found = new Map<Attempt, number>();
  let errors = 0;
  let unmatched = 0;
  for (const n of numbers) {
    const data = await Deno.readFile(`${dir}/${n}.file`);
    if (text(data) === "ERROR" && !byHash.has(sha256(data))) {
      errors++;
      continue;
    }
    const candidates = (byHash.get(sha256(data)) ?? []).filter((a) => !found.has(a));
    if (candidates.length === 0) {
      unmatched++;
      continue;
    }
    found.set(candidates[0], n);
  }
  let lost = unmatched;
  for (const attempt of attempts) {
    if (attempt.expect === "clean" && !found.has(attempt)) lost++;
    if (attempt.expect === "error" && found.has(attempt) && attempt.content.length > 0) lost++;
  }
  assert.equal(unmatched, 0, `${unmatched} file(s) match no upload: a silently wrong file`);
  assert.ok(numbers.length <= attempts.length, `${numbers.length} files for ${attempts.length} connections`);
  return { verified: numbers.length, lost };
}

/** A unique, tagged file body: the tag makes every attempt's content distinct. */
export function uniqueContent(tag: string, size: number): Uint8Array {
  const data = new Uint8Array(size);
  crypto.getRandomValues(data.subarray(0, Math.min(size, 65536)));
  for (let i = 65536; i < size; i += 65536) data.copyWithin(i, 0, Math.min(65536, size - i));
  const label = new TextEncoder().encode(`${tag}:`);
  data.set(label.subarray(0, size));
  return data;
}

/** A clean single-handshake upload from the test process; resolves true on the server's close. */
export async function cleanUpload(port: number, content: Uint8Array): Promise<boolean> {
  try {
    return await (await openUpload(port, content)).finish(new Uint8Array(0));
  } catch {
    return false;
  }
}

/**
 * {@link cleanUpload}, tried up to 50 times 100 ms apart while the server has
 * no descriptor to spare; resolves true once one attempt was delivered.
 */
export async function cleanUploadEventually(port: number, content: Uint8Array): Promise<boolean> {
  for (let tries = 0; tries < 50; tries++) {
    if (await cleanUpload(port, content)) return true;
    await delay(100);
  }
  return false;
}

/**
 * Opens an upload, sends `partial`, and leaves it open; `finish(rest)`
 * completes it cleanly. (Resets come from the Python peer: Deno has no SO_LINGER.)
 */
export async function openUpload(port: number, partial: Uint8Array) {
  const conn = await connect(port);
  await recvExactly(conn, 7);
  await sendAll(conn, partial);
  return {
    conn,
    async finish(rest: Uint8Array): Promise<boolean> {
      try {
        await sendAll(conn, rest);
        await conn.closeWrite();
        return (await readToEnd(conn, 30_000)) !== "reset";
      } catch {
        return false;
      } finally {
        conn.close();
      }
    },
  };
}
