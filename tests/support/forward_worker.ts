/**
 * A stand-alone forwarder for tests that need a separate process (kill -9,
 * peak memory): forwards the uploads in a directory with the real modules and
 * the real settings path (`--forward`, `--s3-endpoint`, credentials from the
 * environment), printing one JSON line per event on stdout:
 * `{"log": ...}` per forward, `{"notice": ...}`, `{"baselineKiB": N, "freeBytes": N}`
 * just before it starts (the free space through the high-water guard's own
 * call), `{"drained": true}` when nothing is left.
 *
 * deno run <permissions> tests/support/forward_worker.ts DIR s3://BUCKET/PREFIX ENDPOINT INSTANCE [--delete]
 *   [--exit-when-drained] [--part-delay-ms N]
 *
 * `--part-delay-ms` holds each part back before sending it, so that a test can
 * reliably kill the process while a multipart upload is open.
 *
 * @module
 */
import { forwardSettings } from "../../lib/forward_config.ts";
import { diskSpace } from "../../lib/forward_disk.ts";
import { ForwardQueue } from "../../lib/forward_queue.ts";
import { S3Client } from "../../lib/s3_client.ts";

const [dir, forward, endpoint, instance, ...flags] = Deno.args;
const partDelayMs = Number(flags[flags.indexOf("--part-delay-ms") + 1] ?? 0);

/** The real client, each part held back by `--part-delay-ms`. */
class SlowPartClient extends S3Client {
  override async uploadPart(...args: Parameters<S3Client["uploadPart"]>): Promise<string> {
    await new Promise((resolve) => setTimeout(resolve, partDelayMs));
    return await super.uploadPart(...args);
  }
}

const print = (value: unknown) => console.log(JSON.stringify(value));
const { s3, prefix } = forwardSettings({ forward, endpoint });
const queue = await ForwardQueue.open({
  fileDir: dir,
  s3: flags.includes("--part-delay-ms") ? new SlowPartClient(s3) : new S3Client(s3),
  prefix,
  instance,
  deleteAfter: flags.includes("--delete"),
  concurrency: 2,
  retry: { baseMs: 100, maxMs: 1000 },
  onLog: (entry) => print({ log: entry }),
  onNotice: (notice) => print({ notice }),
});
// Deno.memoryUsage needs no permission; /proc/self would need --allow-all.
print({
  baselineKiB: Math.round(Deno.memoryUsage().rss / 1024),
  freeBytes: (await diskSpace(dir)).freeBytes,
});
await queue.start();
await queue.drained();
print({ drained: true, metrics: queue.metrics.snapshot() });
if (flags.includes("--exit-when-drained")) {
  await queue.stop();
} else {
  await new Promise<void>((resolve) => Deno.addSignalListener("SIGTERM", resolve));
  await queue.stop();
}
