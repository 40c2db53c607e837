/**
 * Forwarding throughput against OpenStack Swift on loopback (tests/support/swift.ts), beside Debian's
 * `aws` command-line tool (`/usr/bin/aws`, package awscli) copying the same files to the same server
 * in the same run: one 1 GiB file, and 1,000 files of 64 KiB. The forwarder is Accio's ForwardQueue
 * in this process, with the server's defaults (4 forwards, 2 parts each, 8 MiB parts).
 *
 * `deno run --allow-all bench/forward.ts` (`ACCIO_BENCH_MIB` for another size of the big file).
 *
 * @module
 */
import { ForwardQueue } from "../lib/forward_queue.ts";
import { S3Client } from "../lib/s3_client.ts";
import { ensureSwift, SwiftStore } from "../tests/support/swift.ts";

const MIB = 1024 * 1024;
const BIG_MIB = Number(Deno.env.get("ACCIO_BENCH_MIB") ?? 1024);
const SMALL = 1000;

async function writeFiles(dir: string, count: number, size: number): Promise<void> {
  const chunk = new Uint8Array(Math.min(size, 8 * MIB));
  for (let i = 1; i <= count; i++) {
    crypto.getRandomValues(chunk.subarray(0, Math.min(chunk.length, 65536)));
    using file = await Deno.open(`${dir}/${i}.file`, { write: true, create: true });
    for (let left = size; left > 0; left -= chunk.length) {
      await file.write(chunk.subarray(0, Math.min(left, chunk.length)));
    }
  }
}

async function forward(swift: SwiftStore, bucket: string, dir: string): Promise<number> {
  const s3 = new S3Client({
    endpoint: swift.endpoint,
    bucket,
    region: swift.region,
    credentials: { accessKeyId: swift.accessKeyId, secretAccessKey: swift.secretAccessKey },
  });
  const started = performance.now();
  const queue = await ForwardQueue.open({ fileDir: dir, s3, prefix: "accio", instance: "bench" });
  await queue.start();
  await queue.drained();
  const seconds = (performance.now() - started) / 1000;
  await queue.stop();
  return seconds;
}

async function awsCopy(swift: SwiftStore, bucket: string, dir: string): Promise<number> {
  const started = performance.now();
  const out = await new Deno.Command("/usr/bin/aws", {
    args: [
      "s3",
      "cp",
      "--recursive",
      "--only-show-errors",
      "--endpoint-url",
      swift.endpoint,
      dir,
      `s3://${bucket}/aws/`,
    ],
    env: {
      AWS_ACCESS_KEY_ID: swift.accessKeyId,
      AWS_SECRET_ACCESS_KEY: swift.secretAccessKey,
      AWS_DEFAULT_REGION: swift.region,
    },
    stdout: "null",
  }).output();
  if (!out.success) throw new Error(`aws failed: ${new TextDecoder().decode(out.stderr)}`);
  return (performance.now() - started) / 1000;
}

const found = await ensureSwift();
if (!found.ok) throw new Error(`Swift unavailable: ${found.why}`);
await using swift = await SwiftStore.start();
const rows: string[] = [];
for (
  const [name, count, size] of [[`1 x ${BIG_MIB} MiB`, 1, BIG_MIB * MIB], [
    `${SMALL} x 64 KiB`,
    SMALL,
    65536,
  ]] as const
) {
  const dir = await Deno.makeTempDir({ prefix: "accio-bench-fwd-" });
  try {
    await writeFiles(dir, count, size);
    const bucket = `bench-${rows.length}`;
    await swift.createBucket(bucket);
    const accio = await forward(swift, bucket, dir);
    await Deno.remove(`${dir}/.accio-forward`, { recursive: true });
    const aws = await awsCopy(swift, bucket, dir);
    const mib = (count * size) / MIB;
    const rate = (seconds: number) =>
      `${seconds.toFixed(1)} s (${(mib / seconds).toFixed(0)} MiB/s` +
      (count > 1 ? `, ${(count / seconds).toFixed(0)} files/s)` : ")");
    rows.push(`| ${name} | ${rate(accio)} | ${rate(aws)} |`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
console.log("| files | Accio forwarder | aws s3 cp --recursive |\n| --- | --- | --- |\n" + rows.join("\n"));
