/**
 * IPv6 addresses as 16-octet buffers and as text (RFC 5952 canonical form).
 *
 * Control-plane code names addresses by their canonical text (usable as map keys);
 * the data plane works on the octets in place.
 */

export const IPV6_ADDRESS_LENGTH = 16;

/** Parses textual IPv6 (RFC 4291 section 2.2, including embedded IPv4); undefined if invalid. */
export function parseIPv6(text: string): Buffer | undefined {
  let s = text;
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  if (s.length === 0 || s.length > 45) return undefined;
  const words: number[] = [];
  let tail = s;
  // Embedded IPv4 in the last 32 bits.
  const lastColon = s.lastIndexOf(':');
  let v4: number[] | undefined;
  if (s.indexOf('.', lastColon) > lastColon) {
    const parts = s.slice(lastColon + 1).split('.');
    if (parts.length !== 4) return undefined;
    v4 = [];
    for (const p of parts) {
      if (!/^\d{1,3}$/.test(p)) return undefined;
      const n = Number(p);
      if (n > 255 || (p.length > 1 && p[0] === '0')) return undefined;
      v4.push(n);
    }
    tail = s.slice(0, lastColon + 1) + '0:0';
  }
  const halves = tail.split('::');
  if (halves.length > 2) return undefined;
  const parseHalf = (h: string): number[] | undefined => {
    if (h === '') return [];
    const out: number[] = [];
    for (const g of h.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = parseHalf(halves[0] ?? '');
  if (head === undefined) return undefined;
  if (halves.length === 2) {
    const rest = parseHalf(halves[1] ?? '');
    if (rest === undefined || head.length + rest.length > 7) return undefined;
    words.push(...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest);
  } else {
    if (head.length !== 8) return undefined;
    words.push(...head);
  }
  const buf = Buffer.alloc(IPV6_ADDRESS_LENGTH);
  for (let i = 0; i < 8; i++) buf.writeUInt16BE(words[i] ?? 0, i * 2);
  if (v4) buf.set(v4, 12);
  return buf;
}

/**
 * Like parseIPv6, but throws a RangeError naming the bad text (and `what` it was meant to be):
 * for configuration, encoders (whose input comes from our own code) and tests.
 */
export function ipv6(text: string, what?: string): Buffer {
  const b = parseIPv6(text);
  if (!b) throw new RangeError(`${what ? `${what}: ` : ''}not an IPv6 address: '${text}'`);
  return b;
}

/** Formats 16 octets at `offset` in RFC 5952 canonical form (lower case, longest zero run compressed). */
export function formatIPv6(buf: Uint8Array, offset = 0): string {
  const w: number[] = new Array<number>(8);
  for (let i = 0; i < 8; i++) w[i] = ((buf[offset + 2 * i] ?? 0) << 8) | (buf[offset + 2 * i + 1] ?? 0);
  // Longest run of two or more zero words; the first one on a tie.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = (a: number, b: number): string => w.slice(a, b).map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLen, 8)}`;
}

/** Canonical text of a textual address, or undefined if it is not IPv6. */
export function canonicalIPv6(text: string): string | undefined {
  const b = parseIPv6(text);
  return b ? formatIPv6(b) : undefined;
}

/** Addresses that never name a Shim6 host (ULID or locator), by class. */
export type ExcludedClass = 'unspecified' | 'loopback' | 'ipv4-mapped' | 'link-local' | 'multicast';

/** The class that rules an address out of Shim6, if any (`address` must be valid IPv6). */
export function excludedAddressClass(address: string | Buffer): ExcludedClass | undefined {
  const b = typeof address === 'string' ? parseIPv6(address) : address;
  if (!b || b.length !== 16) throw new RangeError(`not an IPv6 address: ${String(address)}`);
  const first = b[0] ?? 0;
  if (first === 0xff) return 'multicast';
  if (first === 0xfe && ((b[1] ?? 0) & 0xc0) === 0x80) return 'link-local';
  let zeros = 0;
  while (zeros < 16 && b[zeros] === 0) zeros++;
  if (zeros === 16) return 'unspecified';
  if (zeros === 15 && b[15] === 1) return 'loopback';
  if (zeros >= 10 && b[10] === 0xff && b[11] === 0xff) return 'ipv4-mapped';
  return undefined;
}

/** True if the 16 octets at a[ao] equal those at b[bo]. */
export function sameAddress(a: Uint8Array, ao: number, b: Uint8Array, bo: number): boolean {
  for (let i = 0; i < IPV6_ADDRESS_LENGTH; i++) if (a[ao + i] !== b[bo + i]) return false;
  return true;
}
