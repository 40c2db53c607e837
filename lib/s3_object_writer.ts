/**
 * Writes one local file to one S3 key and verifies it. A file of at most one
 * part goes in a single PUT with `Content-MD5`; a larger one as a multipart
 * upload with a fixed part size (8 MiB by default, at least 5 MiB, larger
 * only past 10,000 parts), at most `partsInFlight` parts at a time, each with
 * `Content-MD5`. The upload id is reported before any part is sent, so a
 * crash leaves a record to abort; any failure aborts the upload. The object
 * is then checked with HEAD: its size, and its ETag against the MD5 computed
 * here (single PUT: the file's MD5; multipart: the MD5 of the parts' MD5s,
 * `-N`), when the store's ETag has that form.
 *
 * @example
 * ```ts
 * import { S3Client } from "./s3_client.ts";
 * import { PartPool } from "./s3_part_pool.ts";
 * import { writeObject } from "./s3_object_writer.ts";
 * const s3 = new S3Client({
 *   endpoint: "http://127.0.0.1:8080",
 *   bucket: "uploads",
 *   region: "us-east-1",
 *   credentials: { accessKeyId: "test:tester", secretAccessKey: "testing" },
 * });
 * const written = await writeObject(s3, "site/gw1/1.file", "/save/1.file", {
 *   pool: new PartPool(4, 8 << 20),
 *   retry: (operation) => operation(),
 *   onUploadId: async () => {},
 * });
 * ```
 * @module
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { describeError, FileError } from "./errors.ts";
import type { S3Client } from "./s3_client.ts";
import { S3VerifyError } from "./s3_errors.ts";
import type { PartPool } from "./s3_part_pool.ts";

/** The default part size: 8 MiB (S3's minimum is 5 MiB). */
export const DEFAULT_PART_SIZE = 8 * 1024 * 1024;
/** S3's largest part count. */
export const MAX_PARTS = 10_000;
const MIB = 1024 * 1024;

/** How to write. */
export interface WriteOptions {
  /** The shared part buffers. */
  pool: PartPool;
  /** Runs one request with the caller's retry policy. */
  retry: <T>(operation: () => Promise<T>) => Promise<T>;
  /** Called with a multipart upload's id before its first part; resolves once recorded. */
  onUploadId: (uploadId: string) => Promise<void>;
  /**
   * The base part size.
   *
   * @default {DEFAULT_PART_SIZE}
   */
  partSize?: number;
  /**
   * Parts sent at once per object.
   *
   * @default {2}
   */
  partsInFlight?: number;
  /** Called as bytes are acknowledged by the store. */
  onBytes?: (bytes: number) => void;
  /** Stops the write (rejects with the signal's reason). */
  signal?: AbortSignal;
}

/** A verified object. */
export interface Written {
  /** Bytes stored. */
  size: number;
  /** The ETag the store reported (and, where it is an MD5, checked). */
  etag: string;
  /** Parts sent: 0 for a single PUT. */
  parts: number;
}

/**
 * The part size used for an object of `size` bytes: `base`, or more (in
 * whole MiB) when `base` would need more than {@link MAX_PARTS} parts.
 *
 * @example
 * ```ts
 * import { partSizeFor } from "./s3_object_writer.ts";
 * partSizeFor(2 ** 31, 8 << 20); // 8388608
 * ```
 */
export function partSizeFor(size: number, base: number = DEFAULT_PART_SIZE): number {
  return Math.max(base, Math.ceil(size / MAX_PARTS / MIB) * MIB);
}

async function readAt(file: Deno.FsFile, path: string, offset: number, into: Uint8Array): Promise<void> {
  await file.seek(offset, Deno.SeekMode.Start);
  for (let got = 0; got < into.length;) {
    const n = await file.read(into.subarray(got));
    if (n === null) {
      throw new FileError(`${path} shrank while being forwarded (short read at ${offset + got})`);
    }
    got += n;
  }
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch (error) {
    throw new FileError(`cannot read ${path}: ${describeError(error)}`, { cause: error });
  }
}

/**
 * Writes `path` to `key` and verifies the result.
 *
 * @throws {S3Error} typed, from the store; {@link S3VerifyError} when the stored object differs.
 * @throws {FileError} when the local file cannot be read or changes meanwhile.
 */
export async function writeObject(
  s3: S3Client,
  key: string,
  path: string,
  options: WriteOptions,
): Promise<Written> {
  const size = await fileSize(path);
  const partSize = partSizeFor(size, options.partSize);
  const expected = size <= partSize
    ? await putSingle(s3, key, path, size, options)
    : await putMultipart(s3, key, path, size, partSize, options);
  if (await fileSize(path) !== size) throw new FileError(`${path} changed size while being forwarded`);
  const stored = await options.retry(() => s3.head(key, options.signal));
  verify(key, stored, size, expected);
  return { size, etag: stored!.etag, parts: size <= partSize ? 0 : Math.ceil(size / partSize) };
}

function verify(key: string, stored: { size: number; etag: string } | undefined, size: number, etag: string) {
  if (!stored) throw new S3VerifyError(`${key}: not found in the store right after it was written`);
  if (stored.size !== size) {
    throw new S3VerifyError(`${key}: the store holds ${stored.size} bytes, the local file has ${size}`);
  }
  if (etagComparable(stored.etag) && stored.etag !== etag) {
    throw new S3VerifyError(`${key}: the store's ETag ${stored.etag} is not the local file's ${etag}`);
  }
}

/**
 * Whether an ETag is an MD5 (single PUT) or an MD5 of MD5s (`-N`), and so can
 * be compared; encrypted stores answer other forms.
 *
 * @example
 * ```ts
 * import { etagComparable } from "./s3_object_writer.ts";
 * etagComparable("0b23934e90da211875fce062e7fc4def-32"); // true
 * ```
 */
export function etagComparable(etag: string): boolean {
  return /^[0-9a-f]{32}(-[0-9]+)?$/.test(etag);
}

async function putSingle(s3: S3Client, key: string, path: string, size: number, options: WriteOptions) {
  const buffer = await options.pool.acquire(size, options.signal);
  try {
    const body = buffer.subarray(0, size);
    {
      using file = await Deno.open(path);
      await readAt(file, path, 0, body);
    }
    const md5 = createHash("md5").update(body).digest();
    await options.retry(() => s3.putObject(key, body, md5, options.signal));
    options.onBytes?.(size);
    return md5.toString("hex");
  } finally {
    options.pool.release(buffer);
  }
}

async function putMultipart(
  s3: S3Client,
  key: string,
  path: string,
  size: number,
  partSize: number,
  options: WriteOptions,
): Promise<string> {
  const uploadId = await options.retry(() => s3.createMultipart(key, options.signal));
  try {
    await options.onUploadId(uploadId);
    const md5s = await sendParts(s3, key, path, uploadId, { size, partSize }, options);
    const etags = md5s.map((md5) => md5.toString("hex"));
    await options.retry(() => s3.completeMultipart(key, uploadId, etags, options.signal));
    return `${createHash("md5").update(Buffer.concat(md5s)).digest("hex")}-${md5s.length}`;
  } catch (error) {
    // Best effort: a store that is down keeps the upload, and the next start aborts it.
    if (!options.signal?.aborted) await s3.abortMultipart(key, uploadId).catch(() => {});
    throw error;
  }
}

interface PartLayout {
  size: number;
  partSize: number;
}

async function sendParts(
  s3: S3Client,
  key: string,
  path: string,
  uploadId: string,
  layout: PartLayout,
  options: WriteOptions,
): Promise<Buffer[]> {
  const count = Math.ceil(layout.size / layout.partSize);
  const md5s: Buffer[] = new Array(count);
  let next = 0;
  let failed = false;
  const worker = async () => {
    using file = await Deno.open(path);
    while (next < count && !failed) {
      const index = next++;
      md5s[index] = await sendPart(s3, { key, uploadId, file, path }, index, layout, options);
    }
  };
  const workers = Array.from(
    { length: Math.min(options.partsInFlight ?? 2, count) },
    () =>
      worker().catch((error) => {
        failed = true;
        throw error;
      }),
  );
  const results = await Promise.allSettled(workers);
  const rejected = results.find((result) => result.status === "rejected");
  if (rejected) throw (rejected as PromiseRejectedResult).reason;
  return md5s;
}

/** Reads part `index` (from 0) into a pooled buffer and uploads it; returns its MD5. */
async function sendPart(
  s3: S3Client,
  target: { key: string; uploadId: string; file: Deno.FsFile; path: string },
  index: number,
  layout: PartLayout,
  options: WriteOptions,
): Promise<Buffer> {
  const length = Math.min(layout.partSize, layout.size - index * layout.partSize);
  const buffer = await options.pool.acquire(length, options.signal);
  try {
    const body = buffer.subarray(0, length);
    await readAt(target.file, target.path, index * layout.partSize, body);
    const md5 = createHash("md5").update(body).digest();
    await options.retry(() =>
      s3.uploadPart(target.key, target.uploadId, index + 1, body, md5, options.signal)
    );
    options.onBytes?.(length);
    return md5;
  } finally {
    options.pool.release(buffer);
  }
}

/**
 * The ETag that S3 gives `path` when written as {@link writeObject} writes it,
 * computed locally by reading the file once (to recognise an object a
 * previous run already stored).
 *
 * @example
 * ```ts
 * import { expectedEtag } from "./s3_object_writer.ts";
 * const etag = await expectedEtag("/save/1.file");
 * ```
 */
export async function expectedEtag(path: string, base: number = DEFAULT_PART_SIZE): Promise<string> {
  using file = await Deno.open(path);
  const size = (await file.stat()).size;
  const partSize = partSizeFor(size, base);
  const md5s: Buffer[] = [];
  let part = createHash("md5");
  let inPart = 0;
  const chunk = new Uint8Array(MIB);
  for (let done = 0; done < size;) {
    const n = await file.read(chunk.subarray(0, Math.min(chunk.length, partSize - inPart, size - done)));
    if (n === null) throw new FileError(`${path} shrank while being read`);
    part.update(chunk.subarray(0, n));
    done += n;
    inPart += n;
    if (inPart === partSize || done === size) {
      md5s.push(part.digest());
      part = createHash("md5");
      inPart = 0;
    }
  }
  if (size <= partSize) return (md5s[0] ?? part.digest()).toString("hex");
  return `${createHash("md5").update(Buffer.concat(md5s)).digest("hex")}-${md5s.length}`;
}
