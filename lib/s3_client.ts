/**
 * The S3 operations the forwarder needs, path-style, against one bucket:
 * HEAD and PUT of objects, the multipart upload calls, the listing of open
 * multipart uploads, and a check of bucket and credentials. Every failure is
 * a typed {@link S3Error} that says whether retrying can help.
 *
 * @example
 * ```ts
 * import { S3Client } from "./s3_client.ts";
 * const s3 = new S3Client({
 *   endpoint: "http://127.0.0.1:8080",
 *   bucket: "uploads",
 *   region: "us-east-1",
 *   credentials: { accessKeyId: "test:tester", secretAccessKey: "testing" },
 * });
 * await s3.checkBucket("site/");
 * ```
 * @module
 */
import http from "node:http";
import https from "node:https";
import { type S3Answer, type S3Credentials, type S3Request, sendSigned } from "./s3_http.ts";
import { S3Error, s3ErrorFromResponse } from "./s3_errors.ts";
import { xmlBlocks, xmlEscape, xmlText } from "./s3_xml.ts";

/** Where and as whom to talk to the store. */
export interface S3Settings {
  /** The endpoint URL (`--s3-endpoint`), e.g. `http://127.0.0.1:8080`. */
  endpoint: string;
  /** The bucket. */
  bucket: string;
  /** The signing region. */
  region: string;
  /** Credentials for signing. */
  credentials: S3Credentials;
  /**
   * Longest wait for progress on one request, in ms.
   *
   * @default {30_000}
   */
  timeoutMs?: number;
}

/** An object's size and ETag, from HEAD. */
export interface ObjectInfo {
  /** Content-Length. */
  size: number;
  /** ETag without its quotes. */
  etag: string;
}

/** An open multipart upload. */
export interface OpenUpload {
  /** Its key. */
  key: string;
  /** Its upload id. */
  uploadId: string;
}

/** Encodes a key for a path: every segment percent-encoded (RFC 3986), slashes kept. */
function encodeKey(key: string): string {
  return key.split("/").map((segment) =>
    encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
  ).join("/");
}

const unquote = (etag: string | undefined): string => (etag ?? "").replace(/^"|"$/g, "");

/** The `Content-MD5` header's value. */
const contentMd5 = (md5: Uint8Array): string => btoa(String.fromCharCode(...md5));

/** The body of CompleteMultipartUpload: the parts' numbers and ETags, in order. */
function completionBody(etags: readonly string[]): Uint8Array {
  const parts = etags.map((etag, i) =>
    `<Part><PartNumber>${i + 1}</PartNumber><ETag>${xmlEscape(`"${etag}"`)}</ETag></Part>`
  );
  return new TextEncoder().encode(`<CompleteMultipartUpload>${parts.join("")}</CompleteMultipartUpload>`);
}

/** One page of ListMultipartUploads: its uploads, and the markers of the next page if there is one. */
function uploadsPage(body: string): { uploads: OpenUpload[]; next?: string } {
  const uploads = xmlBlocks(body, "Upload").map((block) => ({
    key: xmlText(block, "Key") ?? "",
    uploadId: xmlText(block, "UploadId") ?? "",
  }));
  if (xmlText(body, "IsTruncated") !== "true") return { uploads };
  const key = xmlText(body, "NextKeyMarker") ?? "";
  const id = xmlText(body, "NextUploadIdMarker") ?? "";
  return {
    uploads,
    next: `key-marker=${encodeURIComponent(key)}&upload-id-marker=${encodeURIComponent(id)}&`,
  };
}

/** A client for one bucket. */
export class S3Client {
  /** The settings it was made with. */
  readonly settings: Readonly<S3Settings>;
  readonly #base: string;
  readonly #agent: http.Agent;

  /** Makes no request; see {@link checkBucket}. */
  constructor(settings: S3Settings) {
    this.settings = settings;
    this.#base = `${settings.endpoint.replace(/\/+$/, "")}/${encodeURIComponent(settings.bucket)}`;
    const Agent = settings.endpoint.startsWith("https:") ? https.Agent : http.Agent;
    this.#agent = new Agent({ keepAlive: true, maxSockets: 32 });
  }

  /** `s3://bucket at endpoint`, for messages. */
  describe(): string {
    return `s3://${this.settings.bucket} at ${this.settings.endpoint}`;
  }

  async #send(
    method: S3Request["method"],
    key: string | undefined,
    query: string,
    options: { headers?: Record<string, string>; body?: Uint8Array; signal?: AbortSignal } = {},
  ): Promise<S3Answer> {
    const url = new URL(
      `${this.#base}${key === undefined ? "" : `/${encodeKey(key)}`}${query ? `?${query}` : ""}`,
    );
    const request = { method, url, timeoutMs: this.settings.timeoutMs ?? 30_000, ...options };
    return await sendSigned(request, this.settings.credentials, this.settings.region, this.#agent);
  }

  #fail(what: string, answer: S3Answer): never {
    throw s3ErrorFromResponse(`${what} (${this.describe()})`, answer.status, answer.body);
  }

  /**
   * Lists at most one key under `prefix`: proves the bucket exists and the
   * credentials may read it.
   *
   * @throws {S3Error} typed: {@link S3AuthError}, {@link S3NoSuchBucketError}, {@link S3UnavailableError}.
   */
  async checkBucket(prefix: string, signal?: AbortSignal): Promise<void> {
    const query = `list-type=2&max-keys=1&prefix=${encodeURIComponent(prefix)}`;
    const answer = await this.#send("GET", undefined, query, { signal });
    if (answer.status !== 200) this.#fail(`list s3://${this.settings.bucket}/${prefix}`, answer);
  }

  /** The object's size and ETag, or `undefined` when there is none. */
  async head(key: string, signal?: AbortSignal): Promise<ObjectInfo | undefined> {
    const answer = await this.#send("HEAD", key, "", { signal });
    if (answer.status === 404) return undefined;
    if (answer.status !== 200) this.#fail(`HEAD ${key}`, answer);
    return { size: Number(answer.headers["content-length"]), etag: unquote(answer.headers["etag"]) };
  }

  /** Stores `body` at `key` in one request; the store checks it against `md5`. Returns the ETag. */
  async putObject(key: string, body: Uint8Array, md5: Uint8Array, signal?: AbortSignal): Promise<string> {
    const headers = {
      "content-md5": contentMd5(md5),
      "content-type": "application/octet-stream",
    };
    const answer = await this.#send("PUT", key, "", { headers, body, signal });
    if (answer.status !== 200) this.#fail(`PUT ${key}`, answer);
    return unquote(answer.headers["etag"]);
  }

  /** Starts a multipart upload; returns its upload id. */
  async createMultipart(key: string, signal?: AbortSignal): Promise<string> {
    const headers = { "content-type": "application/octet-stream" };
    const answer = await this.#send("POST", key, "uploads=", { headers, signal });
    const uploadId = answer.status === 200 ? xmlText(answer.body, "UploadId") : undefined;
    if (!uploadId) this.#fail(`create multipart upload ${key}`, answer);
    return uploadId;
  }

  /** Sends part `partNumber` (from 1); the store checks it against `md5`. Returns its ETag. */
  async uploadPart(
    key: string,
    uploadId: string,
    partNumber: number,
    body: Uint8Array,
    md5: Uint8Array,
    signal?: AbortSignal,
  ): Promise<string> {
    const query = `partNumber=${partNumber}&uploadId=${encodeURIComponent(uploadId)}`;
    const headers = { "content-md5": contentMd5(md5) };
    const answer = await this.#send("PUT", key, query, { headers, body, signal });
    if (answer.status !== 200) this.#fail(`PUT ${key} part ${partNumber}`, answer);
    return unquote(answer.headers["etag"]);
  }

  /** Completes a multipart upload from its parts' ETags, in order. Returns the object's ETag. */
  async completeMultipart(
    key: string,
    uploadId: string,
    etags: string[],
    signal?: AbortSignal,
  ): Promise<string> {
    const query = `uploadId=${encodeURIComponent(uploadId)}`;
    const answer = await this.#send("POST", key, query, { body: completionBody(etags), signal });
    // S3 may answer 200 and still report an error in the body.
    if (answer.status !== 200 || !answer.body.includes("CompleteMultipartUploadResult")) {
      this.#fail(`complete multipart upload ${key}`, answer);
    }
    return unquote(xmlText(answer.body, "ETag"));
  }

  /** Aborts a multipart upload; one that no longer exists (aborted or completed) is fine. */
  async abortMultipart(key: string, uploadId: string, signal?: AbortSignal): Promise<void> {
    const answer = await this.#send("DELETE", key, `uploadId=${encodeURIComponent(uploadId)}`, { signal });
    if (answer.status === 204 || answer.status === 200 || answer.status === 404) return;
    this.#fail(`abort multipart upload ${key}`, answer);
  }

  /** Every open multipart upload under `prefix`, following the listing's pages. */
  async listMultipartUploads(prefix: string, signal?: AbortSignal): Promise<OpenUpload[]> {
    const uploads: OpenUpload[] = [];
    let markers = "";
    for (let page = 0; page < 10_000; page++) {
      const query = `${markers}prefix=${encodeURIComponent(prefix)}&uploads=`;
      const answer = await this.#send("GET", undefined, query, { signal });
      if (answer.status !== 200) this.#fail(`list multipart uploads under ${prefix}`, answer);
      const { uploads: found, next } = uploadsPage(answer.body);
      uploads.push(...found);
      if (next === undefined) return uploads;
      markers = next;
    }
    throw new S3Error(`list multipart uploads under ${prefix}: more than 10,000 pages`);
  }

  /** Closes idle kept-alive connections. */
  close(): void {
    this.#agent.destroy();
  }
}
