/**
 * The little XML that S3 answers carry: the text of flat elements (`Code`,
 * `UploadId`, `Key`) and repeated blocks (`Upload` in a listing). S3's
 * answers are machine-written and flat, so a scan by tag is enough; Deno has
 * no DOMParser.
 *
 * @example
 * ```ts
 * import { xmlText } from "./s3_xml.ts";
 * xmlText("<R><UploadId>a&amp;b</UploadId></R>", "UploadId"); // "a&b"
 * ```
 * @module
 */

const ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

function decode(text: string): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (whole, name: string) => {
    if (name.startsWith("#x")) return String.fromCodePoint(parseInt(name.slice(2), 16));
    if (name.startsWith("#")) return String.fromCodePoint(parseInt(name.slice(1), 10));
    return ENTITIES[name] ?? whole;
  });
}

function pattern(tag: string): RegExp {
  return new RegExp(`<${tag}(?:\\s[^>]*)?>([\\s\\S]*?)</${tag}>`, "g");
}

/**
 * The decoded text of every `<tag>` element, in order.
 *
 * @example
 * ```ts
 * import { xmlTexts } from "./s3_xml.ts";
 * xmlTexts("<a><Key>x</Key><Key>y</Key></a>", "Key"); // ["x", "y"]
 * ```
 */
export function xmlTexts(xml: string, tag: string): string[] {
  return [...xml.matchAll(pattern(tag))].map((match) => decode(match[1]));
}

/**
 * The decoded text of the first `<tag>` element, or `undefined`.
 *
 * @example
 * ```ts
 * import { xmlText } from "./s3_xml.ts";
 * xmlText("<Error><Code>NoSuchKey</Code></Error>", "Code"); // "NoSuchKey"
 * ```
 */
export function xmlText(xml: string, tag: string): string | undefined {
  return xmlTexts(xml, tag)[0];
}

/**
 * The raw inner XML of every `<tag>` block, for reading fields per block.
 *
 * @example
 * ```ts
 * import { xmlBlocks, xmlText } from "./s3_xml.ts";
 * xmlBlocks("<L><Upload><Key>k</Key></Upload></L>", "Upload").map((b) => xmlText(b, "Key")); // ["k"]
 * ```
 */
export function xmlBlocks(xml: string, tag: string): string[] {
  return [...xml.matchAll(pattern(tag))].map((match) => match[1]);
}

/**
 * Escapes text for an XML element's content.
 *
 * @example
 * ```ts
 * import { xmlEscape } from "./s3_xml.ts";
 * xmlEscape('"abc"'); // "&quot;abc&quot;"
 * ```
 */
export function xmlEscape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&${Object.entries(ENTITIES).find(([, v]) => v === c)![0]};`);
}
