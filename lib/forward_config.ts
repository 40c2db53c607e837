/**
 * The forwarding settings from the command line and the environment:
 * `--forward s3://BUCKET/PREFIX`, `--s3-endpoint URL` (path-style), the
 * instance name, and the credentials and region from `AWS_ACCESS_KEY_ID`,
 * `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` (optional) and `AWS_REGION`
 * (else `AWS_DEFAULT_REGION`, else `us-east-1`). Credentials are never taken
 * from the command line, where `ps` would show them.
 *
 * @example
 * ```ts
 * import { forwardSettings } from "./forward_config.ts";
 * const { s3, prefix } = forwardSettings(
 *   { forward: "s3://uploads/site", endpoint: "http://127.0.0.1:8080" },
 *   (name) => ({ AWS_ACCESS_KEY_ID: "test:tester", AWS_SECRET_ACCESS_KEY: "testing" })[name],
 * );
 * ```
 * @module
 */
import { UsageError } from "./errors.ts";
import type { S3Settings } from "./s3_client.ts";

/** Where uploads go: a bucket and a key prefix (no leading or trailing `/`; may be empty). */
export interface ForwardTarget {
  /** The bucket. */
  bucket: string;
  /** The key prefix. */
  prefix: string;
}

// Control bytes and backslashes have no place in a key path; `.`/`..` segments mean something else to people.
// deno-lint-ignore no-control-regex
const BAD_SEGMENT = /^\.{1,2}$|[\x00-\x1f\x7f\\]/;

/**
 * Parses `s3://BUCKET[/PREFIX]`.
 *
 * @example
 * ```ts
 * import { parseForwardTarget } from "./forward_config.ts";
 * parseForwardTarget("s3://uploads/site/a"); // { bucket: "uploads", prefix: "site/a" }
 * ```
 * @throws {UsageError} for anything else.
 */
export function parseForwardTarget(text: string): ForwardTarget {
  const match = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(text);
  const bad = (why: string) =>
    new UsageError(`invalid --forward "${text}": ${why} (expected s3://BUCKET/PREFIX)`);
  if (!match) throw bad("not an s3:// URL with a bucket");
  const [, bucket, rawPrefix = ""] = match;
  if (!/^[A-Za-z0-9._-]{3,255}$/.test(bucket)) throw bad(`bad bucket name "${bucket}"`);
  const prefix = rawPrefix.replace(/\/+$/, "");
  if (prefix && prefix.split("/").some((segment) => segment === "" || BAD_SEGMENT.test(segment))) {
    throw bad("the prefix has an empty, '.' or '..' segment, or a control character or backslash");
  }
  return { bucket, prefix };
}

/**
 * Checks `--s3-endpoint`: an `http://` or `https://` URL without credentials,
 * query or fragment. Returns it without a trailing `/`.
 *
 * @example
 * ```ts
 * import { parseS3Endpoint } from "./forward_config.ts";
 * parseS3Endpoint("http://127.0.0.1:8080/"); // "http://127.0.0.1:8080"
 * ```
 * @throws {UsageError} otherwise.
 */
export function parseS3Endpoint(text: string): string {
  const bad = (why: string) => new UsageError(`invalid --s3-endpoint "${text}": ${why}`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw bad("not a URL");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw bad("not http:// or https://");
  if (url.username || url.password) throw bad("credentials go in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY");
  if (url.search || url.hash) throw bad("no query or fragment allowed");
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}

/**
 * Checks an instance name: the key segment that keeps gateways apart
 * (`PREFIX/<instance>/...`): 1-255 bytes, no `/`, not starting with `.`,
 * no control bytes or backslash.
 *
 * @example
 * ```ts
 * import { parseInstance } from "./forward_config.ts";
 * parseInstance("gw-north"); // "gw-north"
 * ```
 * @throws {UsageError} otherwise.
 */
export function parseInstance(text: string): string {
  // deno-lint-ignore no-control-regex
  if (!text || new TextEncoder().encode(text).length > 255 || /[/\\\x00-\x1f\x7f]|^\./.test(text)) {
    throw new UsageError(
      `invalid instance name "${text}": 1-255 bytes, no '/', '\\' or control bytes, not '.'-first`,
    );
  }
  return text;
}

/** Reads an environment variable (`Deno.env.get` by default; tests pass their own). */
export type EnvGet = (name: string) => string | undefined;

/**
 * The S3 client settings and the key prefix for `--forward` and
 * `--s3-endpoint` (default: AWS's regional endpoint).
 *
 * @example
 * ```ts
 * import { forwardSettings } from "./forward_config.ts";
 * const env = { AWS_ACCESS_KEY_ID: "k", AWS_SECRET_ACCESS_KEY: "s", AWS_REGION: "eu-west-1" };
 * forwardSettings({ forward: "s3://b-1/p" }, (n) => env[n as keyof typeof env]).s3.endpoint;
 * // "https://s3.eu-west-1.amazonaws.com"
 * ```
 * @throws {UsageError} for a bad value or missing credentials.
 */
export function forwardSettings(
  options: { forward: string; endpoint?: string },
  env: EnvGet = (name) => Deno.env.get(name),
): { s3: S3Settings; prefix: string } {
  const { bucket, prefix } = parseForwardTarget(options.forward);
  const accessKeyId = env("AWS_ACCESS_KEY_ID");
  const secretAccessKey = env("AWS_SECRET_ACCESS_KEY");
  if (!accessKeyId || !secretAccessKey) {
    throw new UsageError("--forward needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment");
  }
  const region = env("AWS_REGION") || env("AWS_DEFAULT_REGION") || "us-east-1";
  const endpoint = parseS3Endpoint(options.endpoint ?? `https://s3.${region}.amazonaws.com`);
  const sessionToken = env("AWS_SESSION_TOKEN") || undefined;
  return {
    s3: { endpoint, bucket, region, credentials: { accessKeyId, secretAccessKey, sessionToken } },
    prefix,
  };
}
