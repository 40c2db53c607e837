/**
 * Bytes and text for tests: UTF-8 both ways, and joining chunks.
 *
 * @module
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** `text` as UTF-8 bytes. */
export const bytes = (text: string): Uint8Array => encoder.encode(text);

/** UTF-8 `data` as text. */
export const text = (data: Uint8Array): string => decoder.decode(data);

/** The parts, one after another, in a new array. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
