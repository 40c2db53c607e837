/** The lock-out per address after failed token checks (lib/auth_lockout.ts), on a fake clock. */
import assert from "node:assert/strict";
import { type Admission, AuthLockout } from "../lib/auth_lockout.ts";

function admitted(admission: Admission) {
  assert.ok(admission.admitted, `refused: locked for ${!admission.admitted && admission.lockedMs} ms`);
  return admission;
}

Deno.test("lock-out: 3 free failures, then 1 s, doubling per failure up to 60 s; refused attempts do not extend it", () => {
  let now = 0;
  const lockout = new AuthLockout({ now: () => now });
  for (let i = 0; i < 2; i++) admitted(lockout.begin("a")).finish("failure");
  admitted(lockout.begin("a")).finish("failure"); // the 3rd: locked for 1 s
  assert.deepEqual(lockout.begin("a"), { admitted: false, lockedMs: 1_000 });
  now = 999;
  assert.deepEqual(lockout.begin("a"), { admitted: false, lockedMs: 1 });
  now = 1_000;
  admitted(lockout.begin("a")).finish("failure"); // the 4th: 2 s
  assert.deepEqual(lockout.begin("a"), { admitted: false, lockedMs: 2_000 });
  for (let i = 0; i < 10; i++) {
    now += 60_000;
    admitted(lockout.begin("a")).finish("failure");
  }
  assert.deepEqual(lockout.begin("a"), { admitted: false, lockedMs: 60_000 }, "capped");
  assert.ok(admitted(lockout.begin("b")), "another address is not affected");
});

Deno.test("lock-out: neither a success nor a timeout (other) clears an address's failures", () => {
  let now = 0;
  const lockout = new AuthLockout({ now: () => now });
  for (let i = 0; i < 3; i++) admitted(lockout.begin("a")).finish("failure");
  now = 1_000;
  admitted(lockout.begin("a")).finish("other");
  admitted(lockout.begin("a")).finish("other"); // a timeout neither counts nor locks
  admitted(lockout.begin("a")).finish("success"); // a holder of one good token, guessing others' between uploads
  admitted(lockout.begin("a")).finish("failure"); // the 4th failure: 2 s, not a fresh start
  assert.deepEqual(lockout.begin("a"), { admitted: false, lockedMs: 2_000 });
  now = 1_000 + 16 * 60_000; // forgotten with time only
  admitted(lockout.begin("a")).finish("failure");
  assert.ok(lockout.begin("a").admitted, "the count started over after 15 minutes");
});

Deno.test("lock-out: a suspicious address gets one check at a time; an address without failures any number", () => {
  let now = 0;
  const lockout = new AuthLockout({ now: () => now });
  const fleet = Array.from({ length: 50 }, () => admitted(lockout.begin("nat")));
  fleet.forEach((a) => a.finish("success"));
  for (let i = 0; i < 3; i++) admitted(lockout.begin("x")).finish("failure");
  now = 1_000;
  const first = admitted(lockout.begin("x"));
  assert.deepEqual(lockout.begin("x"), { admitted: false, lockedMs: 0 }, "a burst gets one check through");
  first.finish("failure");
  first.finish("failure"); // a second finish counts nothing
  assert.deepEqual(lockout.begin("x"), { admitted: false, lockedMs: 2_000 });
});

Deno.test("lock-out: memory stays bounded, and old failures are forgotten", () => {
  let now = 0;
  const lockout = new AuthLockout({ maxTracked: 100, forgetMs: 60_000, now: () => now });
  for (let i = 0; i < 10_000; i++) admitted(lockout.begin(`10.0.${i >> 8}.${i & 255}`)).finish("failure");
  assert.equal(lockout.tracked, 100);
  admitted(lockout.begin("y")).finish("failure");
  admitted(lockout.begin("y")).finish("failure");
  now = 60_000;
  admitted(lockout.begin("y")).finish("failure");
  assert.ok(lockout.begin("y").admitted, "the first two were forgotten: one failure only");
});

Deno.test("lock-out: a burst admitted before any failure is checked only until the address locks", () => {
  const lockout = new AuthLockout({ now: () => 0 });
  const burst = Array.from({ length: 10 }, () => admitted(lockout.begin("a")));
  let checked = 0;
  for (const attempt of burst) {
    if (!attempt.mayCheck()) {
      attempt.finish("other");
      continue;
    }
    checked++;
    attempt.finish("failure");
  }
  assert.equal(checked, 3, "the 3 free failures, then the lock stops the rest of the burst");
});

Deno.test("lock-out: flooding the table from new addresses never forgets a locked one", () => {
  let now = 0;
  const lockout = new AuthLockout({ now: () => now, maxTracked: 3 });
  for (let i = 0; i < 3; i++) admitted(lockout.begin("locked")).finish("failure");
  for (let i = 0; i < 50; i++) admitted(lockout.begin(`flood-${i}`)).finish("failure");
  assert.equal(lockout.tracked, 3);
  assert.deepEqual(lockout.begin("locked"), { admitted: false, lockedMs: 1_000 });
  now = 1_000; // unlocked: from here it may be forgotten like any other
  for (let i = 0; i < 3; i++) admitted(lockout.begin(`later-${i}`)).finish("failure");
  assert.ok(lockout.begin("locked").admitted);
});
