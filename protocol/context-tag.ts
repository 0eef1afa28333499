/**
 * 47-bit context tags (RFC 5533 section 5): carried as a reserved bit followed by 47 bits,
 * across a 16-bit and a 32-bit word. Held as a JS number (exact up to 2^53).
 */
import { MAX_CONTEXT_TAG } from './constants';

export function isContextTag(tag: number): boolean {
  return Number.isInteger(tag) && tag >= 0 && tag <= MAX_CONTEXT_TAG;
}

/** Reads the 47-bit tag in the 6 octets at offset (the top bit is the R or P bit, masked off). */
export function readContextTag(buf: Uint8Array, offset: number): number {
  const hi = (((buf[offset] as number) & 0x7f) << 8) | (buf[offset + 1] as number);
  const lo = (((buf[offset + 2] as number) << 24) >>> 0) + ((buf[offset + 3] as number) << 16) + ((buf[offset + 4] as number) << 8) + (buf[offset + 5] as number);
  return hi * 0x1_0000_0000 + lo;
}

/** Writes a 47-bit tag into the 6 octets at offset, with `topBit` (R = 0, or P = 1) before it. */
export function writeContextTag(buf: Uint8Array, offset: number, tag: number, topBit: 0 | 1 = 0): void {
  if (!isContextTag(tag)) throw new RangeError(`context tag out of range (47 bits): ${tag}`);
  const hi = Math.floor(tag / 0x1_0000_0000);
  const lo = tag % 0x1_0000_0000;
  buf[offset] = (topBit << 7) | (hi >>> 8);
  buf[offset + 1] = hi & 0xff;
  buf[offset + 2] = lo >>> 24;
  buf[offset + 3] = (lo >>> 16) & 0xff;
  buf[offset + 4] = (lo >>> 8) & 0xff;
  buf[offset + 5] = lo & 0xff;
}
