/**
 * Typed errors of the S3 store, built from its answers. Each says whether a
 * retry can help: a store that is down, overloaded or slow answers again
 * later; wrong credentials, a missing bucket or a refused request do not fix
 * themselves.
 *
 * @example
 * ```ts
 * import { s3ErrorFromResponse } from "./s3_errors.ts";
 * const error = s3ErrorFromResponse("PUT uploads/gw1/1.file", 503, "");
 * error.retryable; // true
 * ```
 * @module
 */
import { AccioError } from "./errors.ts";
import { xmlText } from "./s3_xml.ts";

/** A request to the S3 store failed. */
export class S3Error extends AccioError {
  /** The HTTP status, or `undefined` when no answer came (network, timeout). */
  readonly status: number | undefined;
  /** The S3 error code (`NoSuchBucket`, `SignatureDoesNotMatch`, ...), when the store sent one. */
  readonly code: string | undefined;
  /** Whether the same request may succeed later. */
  readonly retryable: boolean = false;

  /** `message` is shown after `ERROR: `. */
  constructor(message: string, status?: number, code?: string, options?: ErrorOptions) {
    super(message, options);
    this.status = status;
    this.code = code;
  }
}

/** The store is unreachable, timed out, or answered 5xx / 429 / 408: retry later. */
export class S3UnavailableError extends S3Error {
  /** Always retryable: the store may come back. */
  override readonly retryable: boolean = true;
}

/** The store rejected the credentials or denied access (HTTP 403). */
export class S3AuthError extends S3Error {}

/** The bucket does not exist. */
export class S3NoSuchBucketError extends S3Error {}

/** The key already holds different content; it is never overwritten. */
export class S3ConflictError extends S3Error {}

/** The object in the store does not match the local file (size or checksum). */
export class S3VerifyError extends S3Error {}

const AUTH_CODES = new Set([
  "AccessDenied",
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "InvalidToken",
  "ExpiredToken",
  "AuthorizationHeaderMalformed",
]);
const RETRY_CODES = new Set(["SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable"]);

/**
 * Turns a failed answer into the matching typed error. `what` names the
 * request (`PUT bucket/key`); the message says what the store said.
 *
 * @example
 * ```ts
 * import { s3ErrorFromResponse } from "./s3_errors.ts";
 * const xml = "<Error><Code>NoSuchBucket</Code><Message>gone</Message></Error>";
 * s3ErrorFromResponse("PUT b/k", 404, xml).message; // "PUT b/k: NoSuchBucket: gone (HTTP 404)"
 * ```
 */
export function s3ErrorFromResponse(what: string, status: number, body: string): S3Error {
  const code = xmlText(body, "Code");
  const said = xmlText(body, "Message");
  const detail = [code, said].filter(Boolean).join(": ") || "no error detail";
  const message = `${what}: ${detail} (HTTP ${status})`;
  if (status >= 500 || status === 429 || status === 408 || (code && RETRY_CODES.has(code))) {
    return new S3UnavailableError(message, status, code);
  }
  if (code === "NoSuchBucket") return new S3NoSuchBucketError(message, status, code);
  if (status === 403 || (code && AUTH_CODES.has(code))) {
    return new S3AuthError(
      `${message}: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION`,
      status,
      code,
    );
  }
  return new S3Error(message, status, code);
}
