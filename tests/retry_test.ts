/** Unit tests of lib/retry.ts: which failures are transient (typed errors, receipt reasons), and the back-off. */
import assert from "node:assert/strict";
import {
  ConnectionError,
  FileError,
  InterruptedError,
  ProtocolError,
  TimeoutError,
  UsageError,
} from "../lib/errors.ts";
import { isTransientReason } from "../lib/headers.ts";
import { refusal } from "../lib/reply.ts";
import { backoffMs, isRetryable, MAX_BACKOFF_MS } from "../lib/retry.ts";

Deno.test("retry policy: which failures are transient, and the back-off's bounds", () => {
  assert.ok(isRetryable(new ConnectionError("connection refused by gw:5000")));
  assert.ok(isRetryable(new TimeoutError("no data for 10 s")));
  assert.ok(!isRetryable(new ConnectionError('cannot resolve host "nope"', { transient: false })));
  for (const permanent of [new ProtocolError("x"), new FileError("x"), new UsageError("x"), new Error("x")]) {
    assert.ok(!isRetryable(permanent), permanent.constructor.name);
  }
  assert.ok(!isRetryable(new InterruptedError("interrupted by SIGINT", 130)));
  for (
    const reason of [
      "busy",
      "busy: held",
      "no data for 10 s while waiting for file data",
      "server shut down before the upload finished",
      "received 1048430 bytes, but the client announced 4194304",
    ]
  ) {
    assert.ok(isTransientReason(reason) && isRetryable(refusal(reason)), reason);
  }
  for (
    const reason of [
      'refused name "a": already exists',
      "exists: x",
      "unauthorized",
      "busyness",
      "SHA-256 of the received bytes differs",
      "upload larger than the limit",
      // More than announced: the same client would send it again.
      "received 20 bytes, but the client announced 10",
      "received 10 bytes, but the client announced 10",
    ]
  ) {
    assert.ok(!isRetryable(refusal(reason)), reason);
  }
  for (let retry = 1; retry <= 12; retry++) {
    const ceiling = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** (retry - 1));
    assert.equal(backoffMs(retry, 1000, () => 0), ceiling / 2);
    assert.equal(backoffMs(retry, 1000, () => 0.999999), Math.round(ceiling / 2 + 0.999999 * ceiling / 2));
  }
});
