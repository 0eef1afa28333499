/**
 * The Internet checksum (RFC 1071): 16-bit one's complement of the one's complement sum.
 * Shim6 control messages use it over the Shim6 message alone, with no pseudo-header
 * (RFC 5533 section 5.2).
 */

/** One's complement sum of buf[start, end), folded to 16 bits (not inverted). */
export function onesComplementSum(buf: Uint8Array, start: number, end: number, initial = 0): number {
  let sum = initial;
  let i = start;
  for (; i + 1 < end; i += 2) sum += ((buf[i] as number) << 8) | (buf[i + 1] as number);
  if (i < end) sum += (buf[i] as number) << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** The checksum field value for buf[start, end), computed with the checksum field zeroed. */
export function internetChecksum(buf: Uint8Array, start: number, end: number): number {
  return ~onesComplementSum(buf, start, end) & 0xffff;
}

/** True if buf[start, end), checksum field included, verifies (sums to 0xffff). */
export function checksumVerifies(buf: Uint8Array, start: number, end: number): boolean {
  return onesComplementSum(buf, start, end) === 0xffff;
}
