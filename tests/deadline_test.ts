/** Unit tests of lib/deadline.ts: the idle watchdog. */
import assert from "node:assert/strict";
import { IdleWatchdog } from "../lib/deadline.ts";

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
