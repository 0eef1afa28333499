/**
 * IPv6 extension-header walking: hand-built chains (UDP, TCP, Hop-by-Hop, Routing,
 * Destination Options before and after Routing, Fragment, AH, ESP, No Next Header), where
 * the Shim6 header goes in each (RFC 5533 section 4), and every malformation with its code
 * and offset. The 100k-packet fuzz of these functions is in payload-header.test.ts, beside
 * the shim/deshim it cross-checks.
 */
import { strict as assert } from 'node:assert';
import { ipv6Packet } from './support/packets';
import {
  ExtensionHeader,
  HeaderChain,
  IPPROTO_AH,
  IPPROTO_DSTOPTS,
  IPPROTO_ESP,
  IPPROTO_FRAGMENT,
  IPPROTO_HOPOPTS,
  IPPROTO_MH,
  IPPROTO_NONE,
  IPPROTO_ROUTING,
  IPPROTO_SHIM6,
  IPPROTO_TCP,
  IPPROTO_UDP,
  MAX_EXTENSION_HEADERS,
  PacketError,
  PacketErrorCode,
  findShim6Header,
  findShimInsertionPoint,
  isExtensionHeader,
  walkExtensionHeaders,
} from '../protocol/ipv6-packet';

/** An extension header to build: its type and length in octets (generic: a multiple of 8). */
interface Ext {
  type: number;
  length?: number;
  /** Fragment only: the 13-bit Fragment Offset (in 8-octet units) and the M flag. */
  fragmentOffset?: number;
  more?: boolean;
}

/** The octets of one extension header whose Next Header is `next`. */
function extensionHeader(h: Ext, next: number): Buffer {
  if (h.type === IPPROTO_FRAGMENT) {
    const b = Buffer.alloc(8);
    b[0] = next;
    b.writeUInt16BE(((h.fragmentOffset ?? 0) << 3) | (h.more ? 1 : 0), 2);
    b.writeUInt32BE(0xdeadbeef, 4);
    return b;
  }
  if (h.type === IPPROTO_AH) {
    const length = h.length ?? 24;
    const b = Buffer.alloc(length, 0xa5);
    b[0] = next;
    b[1] = length / 4 - 2;
    return b;
  }
  const length = h.length ?? 8;
  const b = Buffer.alloc(length); // zeros: Pad1 options, or Routing type 0 with Segments Left 0
  b[0] = next;
  b[1] = length / 8 - 1;
  return b;
}

/** A whole packet: IPv6 header, the chain, then `upper` (a protocol number) and its octets. */
function packet(chain: Ext[], upper: number, body: Buffer = Buffer.alloc(8, 0x11)): Buffer {
  const parts: Buffer[] = chain.map((h, i) => extensionHeader(h, chain[i + 1]?.type ?? upper));
  parts.push(body);
  return ipv6Packet({ source: '2001:db8:1::1', destination: '2001:db8:2::2', nextHeader: chain[0]?.type ?? upper, payload: Buffer.concat(parts) });
}

function walk(p: Uint8Array): HeaderChain {
  const r = walkExtensionHeaders(p);
  if (r instanceof PacketError) assert.fail(`unexpected ${r.toString()}`);
  return r;
}

/** [type, offset, length, nextHeaderOffset] of each header, for compact comparisons. */
function rows(headers: ExtensionHeader[]): number[][] {
  return headers.map((h) => [h.type, h.offset, h.length, h.nextHeaderOffset]);
}

function expectError(r: unknown, code: PacketErrorCode, offset: number): void {
  assert.ok(r instanceof PacketError, `expected ${code}, got ${JSON.stringify(r)}`);
  assert.equal(r.code, code, r.message);
  assert.equal(r.offset, offset, `${r.code} offset (${r.message})`);
  assert.ok(r.message.length > 0);
  assert.match(r.toString(), new RegExp(`^${code} at offset ${offset}: `));
}

function insertion(p: Uint8Array): [number, number, number] {
  const r = findShimInsertionPoint(p);
  if (r instanceof PacketError) assert.fail(`unexpected ${r.toString()}`);
  return [r.offset, r.nextHeaderOffset, r.nextHeader];
}

describe('IPv6 extension-header chain', () => {
  describe('walkExtensionHeaders on well-formed packets', () => {
    it('UDP alone: no extension headers, upper layer at 40 named by octet 6', () => {
      const c = walk(packet([], IPPROTO_UDP));
      assert.deepEqual(rows(c.headers), []);
      assert.equal(c.payloadLength, 8);
      assert.deepEqual([c.upperLayerType, c.upperLayerOffset, c.upperLayerNextHeaderOffset, c.laterFragment], [IPPROTO_UDP, 40, 6, false]);
    });

    it('a 60-octet TCP ACK', () => {
      const c = walk(packet([], IPPROTO_TCP, Buffer.alloc(20)));
      assert.equal(c.headers.length, 0);
      assert.deepEqual([c.upperLayerType, c.upperLayerOffset], [IPPROTO_TCP, 40]);
    });

    it('Hop-by-Hop + UDP', () => {
      const c = walk(packet([{ type: IPPROTO_HOPOPTS, length: 16 }], IPPROTO_UDP));
      assert.deepEqual(rows(c.headers), [[IPPROTO_HOPOPTS, 40, 16, 6]]);
      assert.deepEqual([c.upperLayerType, c.upperLayerOffset, c.upperLayerNextHeaderOffset], [IPPROTO_UDP, 56, 40]);
    });

    it('Hop-by-Hop + Destination Options + Routing + Destination Options + UDP', () => {
      const c = walk(packet([{ type: IPPROTO_HOPOPTS }, { type: IPPROTO_DSTOPTS }, { type: IPPROTO_ROUTING, length: 24 }, { type: IPPROTO_DSTOPTS, length: 16 }], IPPROTO_UDP));
      assert.deepEqual(rows(c.headers), [
        [IPPROTO_HOPOPTS, 40, 8, 6],
        [IPPROTO_DSTOPTS, 48, 8, 40],
        [IPPROTO_ROUTING, 56, 24, 48],
        [IPPROTO_DSTOPTS, 80, 16, 56],
      ]);
      assert.deepEqual([c.upperLayerType, c.upperLayerOffset, c.upperLayerNextHeaderOffset], [IPPROTO_UDP, 96, 80]);
    });

    it('first fragment (offset 0, M=1): the walk goes on into the fragmentable part', () => {
      const c = walk(packet([{ type: IPPROTO_FRAGMENT, more: true }, { type: IPPROTO_DSTOPTS }], IPPROTO_UDP));
      assert.deepEqual(rows(c.headers), [[IPPROTO_FRAGMENT, 40, 8, 6], [IPPROTO_DSTOPTS, 48, 8, 40]]);
      assert.deepEqual([c.upperLayerType, c.upperLayerOffset, c.laterFragment], [IPPROTO_UDP, 56, false]);
    });

    it('later fragment: the walk stops after the Fragment header (what follows is data)', () => {
      // The "DstOpts" octets after the Fragment header are fragment data: not walked.
      const p = packet([{ type: IPPROTO_FRAGMENT, fragmentOffset: 185 }, { type: IPPROTO_DSTOPTS, length: 64 }], IPPROTO_UDP);
      p[49] = 200; // would overrun if it were read as a header
      const c = walk(p);
      assert.deepEqual(rows(c.headers), [[IPPROTO_FRAGMENT, 40, 8, 6]]);
      assert.deepEqual([c.upperLayerType, c.upperLayerOffset, c.upperLayerNextHeaderOffset, c.laterFragment], [IPPROTO_DSTOPTS, 48, 40, true]);
    });

    it('AH: its length is in 4-octet units minus 2 (24 octets here, 40 by the generic rule)', () => {
      const c = walk(packet([{ type: IPPROTO_AH, length: 24 }], IPPROTO_UDP));
      assert.deepEqual(rows(c.headers), [[IPPROTO_AH, 40, 24, 6]]);
      assert.deepEqual([c.upperLayerType, c.upperLayerOffset], [IPPROTO_UDP, 64]);
    });

    it('ESP ends the walk: what follows is encrypted', () => {
      const c = walk(packet([{ type: IPPROTO_HOPOPTS }], IPPROTO_ESP, Buffer.alloc(40, 0xee)));
      assert.deepEqual(rows(c.headers), [[IPPROTO_HOPOPTS, 40, 8, 6]]);
      assert.deepEqual([c.upperLayerType, c.upperLayerOffset, c.upperLayerNextHeaderOffset], [IPPROTO_ESP, 48, 40]);
    });

    it('No Next Header (59) ends the walk, even with octets after it', () => {
      const c = walk(packet([{ type: IPPROTO_DSTOPTS }], IPPROTO_NONE, Buffer.alloc(5)));
      assert.deepEqual([c.upperLayerType, c.upperLayerOffset], [IPPROTO_NONE, 48]);
      assert.deepEqual([walk(packet([], IPPROTO_NONE, Buffer.alloc(0))).upperLayerOffset], [40]);
    });

    it('Shim6 and Mobility headers are walked by the generic rule', () => {
      const c = walk(packet([{ type: IPPROTO_SHIM6 }, { type: IPPROTO_MH, length: 16 }], IPPROTO_NONE, Buffer.alloc(0)));
      assert.deepEqual(rows(c.headers), [[IPPROTO_SHIM6, 40, 8, 6], [IPPROTO_MH, 48, 16, 40]]);
    });

    it('exactly MAX_EXTENSION_HEADERS headers are walked', () => {
      const chain: Ext[] = Array.from({ length: MAX_EXTENSION_HEADERS }, () => ({ type: IPPROTO_DSTOPTS }));
      assert.equal(walk(packet(chain, IPPROTO_UDP)).headers.length, MAX_EXTENSION_HEADERS);
    });

    it('isExtensionHeader: walked types, and not the ones that end the walk', () => {
      for (const t of [0, 43, 44, 51, 60, 135, 139, 140, 253, 254]) assert.ok(isExtensionHeader(t), String(t));
      for (const t of [6, 17, 50, 58, 59, 255]) assert.ok(!isExtensionHeader(t), String(t));
    });
  });

  describe('findShimInsertionPoint (RFC 5533 section 4)', () => {
    it('right after the IPv6 header when there are no extension headers', () => {
      assert.deepEqual(insertion(packet([], IPPROTO_UDP)), [40, 6, IPPROTO_UDP]);
      assert.deepEqual(insertion(packet([], IPPROTO_TCP, Buffer.alloc(20))), [40, 6, IPPROTO_TCP]);
    });

    it('after Hop-by-Hop Options', () => {
      assert.deepEqual(insertion(packet([{ type: IPPROTO_HOPOPTS }], IPPROTO_UDP)), [48, 40, IPPROTO_UDP]);
    });

    it('after Routing, before the Destination Options header that follows it', () => {
      const p = packet([{ type: IPPROTO_HOPOPTS }, { type: IPPROTO_ROUTING, length: 24 }, { type: IPPROTO_DSTOPTS }], IPPROTO_UDP);
      assert.deepEqual(insertion(p), [72, 48, IPPROTO_DSTOPTS]);
    });

    it('after a Destination Options header that precedes a Routing header', () => {
      const p = packet([{ type: IPPROTO_HOPOPTS }, { type: IPPROTO_DSTOPTS, length: 16 }, { type: IPPROTO_ROUTING, length: 24 }, { type: IPPROTO_DSTOPTS }], IPPROTO_UDP);
      assert.deepEqual(insertion(p), [88, 64, IPPROTO_DSTOPTS]);
    });

    it('before a Destination Options header not followed by Routing', () => {
      assert.deepEqual(insertion(packet([{ type: IPPROTO_DSTOPTS }], IPPROTO_UDP)), [40, 6, IPPROTO_DSTOPTS]);
      assert.deepEqual(insertion(packet([{ type: IPPROTO_HOPOPTS }, { type: IPPROTO_DSTOPTS }], IPPROTO_UDP)), [48, 40, IPPROTO_DSTOPTS]);
    });

    it('before Fragment, AH and ESP (endpoint headers)', () => {
      assert.deepEqual(insertion(packet([{ type: IPPROTO_FRAGMENT, more: true }], IPPROTO_UDP)), [40, 6, IPPROTO_FRAGMENT]);
      assert.deepEqual(insertion(packet([{ type: IPPROTO_FRAGMENT, fragmentOffset: 9 }], IPPROTO_UDP)), [40, 6, IPPROTO_FRAGMENT]);
      assert.deepEqual(insertion(packet([{ type: IPPROTO_HOPOPTS }, { type: IPPROTO_AH }], IPPROTO_UDP)), [48, 40, IPPROTO_AH]);
      assert.deepEqual(insertion(packet([{ type: IPPROTO_ROUTING, length: 24 }], IPPROTO_ESP, Buffer.alloc(32))), [64, 40, IPPROTO_ESP]);
      assert.deepEqual(insertion(packet([{ type: IPPROTO_ROUTING, length: 24 }, { type: IPPROTO_FRAGMENT }, { type: IPPROTO_AH }], IPPROTO_UDP)), [64, 40, IPPROTO_FRAGMENT]);
    });

    it('only the headers before the insertion point are checked', () => {
      const p = packet([{ type: IPPROTO_HOPOPTS }, { type: IPPROTO_DSTOPTS }], IPPROTO_UDP);
      p[49] = 200; // the Destination Options header overruns, but it is carried as it is
      assert.deepEqual(insertion(p), [48, 40, IPPROTO_DSTOPTS]);
      expectError(walkExtensionHeaders(p), 'HEADER_OVERRUN', 48);
    });
  });

  describe('findShim6Header', () => {
    it('finds protocol 140 wherever it is in the chain', () => {
      assert.deepEqual(findShim6Header(packet([{ type: IPPROTO_SHIM6 }], IPPROTO_UDP)), { offset: 40, nextHeaderOffset: 6 });
      const p = packet([{ type: IPPROTO_HOPOPTS }, { type: IPPROTO_ROUTING, length: 24 }, { type: IPPROTO_SHIM6 }, { type: IPPROTO_DSTOPTS }], IPPROTO_UDP);
      assert.deepEqual(findShim6Header(p), { offset: 72, nextHeaderOffset: 48 });
    });

    it('undefined when there is none (upper layer, ESP, No Next Header, fragment data)', () => {
      assert.equal(findShim6Header(packet([{ type: IPPROTO_HOPOPTS }], IPPROTO_UDP)), undefined);
      assert.equal(findShim6Header(packet([], IPPROTO_ESP, Buffer.alloc(16))), undefined);
      assert.equal(findShim6Header(packet([], IPPROTO_NONE, Buffer.alloc(0))), undefined);
      assert.equal(findShim6Header(packet([{ type: IPPROTO_FRAGMENT, fragmentOffset: 1 }, { type: IPPROTO_SHIM6 }], IPPROTO_UDP)), undefined);
    });

    it('a PacketError when the chain before it is malformed', () => {
      const p = packet([{ type: IPPROTO_DSTOPTS }, { type: IPPROTO_SHIM6 }], IPPROTO_UDP);
      p[41] = 9;
      expectError(findShim6Header(p), 'HEADER_OVERRUN', 40);
    });
  });

  describe('malformed packets: the right code and offset, never a throw', () => {
    const all = (p: Uint8Array): unknown[] => [walkExtensionHeaders(p), findShimInsertionPoint(p), findShim6Header(p)];

    it('TRUNCATED: shorter than the IPv6 header (offset = its length)', () => {
      for (const n of [0, 1, 39]) for (const r of all(Buffer.alloc(n, 0x60))) expectError(r, 'TRUNCATED', n);
    });

    it('BAD_VERSION at 0', () => {
      const p = packet([], IPPROTO_UDP);
      p[0] = 0x45;
      for (const r of all(p)) expectError(r, 'BAD_VERSION', 0);
    });

    it('LENGTH_MISMATCH at 4: Payload Length against the octets that follow', () => {
      const p = packet([], IPPROTO_UDP);
      for (const r of all(p.subarray(0, p.length - 1))) expectError(r, 'LENGTH_MISMATCH', 4);
      for (const r of all(Buffer.concat([p, Buffer.alloc(1)]))) expectError(r, 'LENGTH_MISMATCH', 4);
      const q = Buffer.from(p);
      q.writeUInt16BE(0, 4);
      for (const r of all(q)) expectError(r, 'LENGTH_MISMATCH', 4);
    });

    it('JUMBOGRAM at 4: Payload Length 0 with Hop-by-Hop Options (RFC 2675, not supported)', () => {
      const p = packet([{ type: IPPROTO_HOPOPTS }], IPPROTO_UDP);
      p.writeUInt16BE(0, 4);
      for (const r of all(p)) expectError(r, 'JUMBOGRAM', 4);
      const r = walkExtensionHeaders(p);
      assert.ok(r instanceof PacketError && /jumbogram/i.test(r.message) && /not supported/.test(r.message));
    });

    it('HEADER_OVERRUN at the header: Hdr Ext Len past the end', () => {
      const p = packet([{ type: IPPROTO_HOPOPTS }, { type: IPPROTO_ROUTING, length: 24 }], IPPROTO_UDP);
      p[49] = 4; // Routing header of 40 octets in 32 left
      for (const r of all(p)) expectError(r, 'HEADER_OVERRUN', 48);
    });

    it('HEADER_OVERRUN: the Next Header names a header the packet has no octets for', () => {
      const p = packet([], IPPROTO_DSTOPTS, Buffer.alloc(0));
      for (const r of all(p)) expectError(r, 'HEADER_OVERRUN', 40);
      const q = packet([], IPPROTO_ROUTING, Buffer.alloc(1)); // one octet: no Hdr Ext Len
      for (const r of all(q)) expectError(r, 'HEADER_OVERRUN', 40);
    });

    it('HEADER_OVERRUN: a Fragment header cut short (it is always 8 octets)', () => {
      const p = packet([{ type: IPPROTO_HOPOPTS }], IPPROTO_FRAGMENT, Buffer.alloc(6));
      expectError(walkExtensionHeaders(p), 'HEADER_OVERRUN', 48);
      expectError(findShim6Header(p), 'HEADER_OVERRUN', 48);
    });

    it('HEADER_OVERRUN: AH measured in 4-octet units', () => {
      const p = packet([{ type: IPPROTO_AH, length: 24 }], IPPROTO_UDP); // 32 octets after the IPv6 header
      p[41] = 6; // (6 + 2) * 4 = 32: fits exactly, UDP at 72 with no octets
      assert.equal(walk(p).upperLayerOffset, 72);
      p[41] = 7; // 36 octets: overrun
      expectError(walkExtensionHeaders(p), 'HEADER_OVERRUN', 40);
    });

    it('CHAIN_TOO_LONG at the first header past the cap', () => {
      const chain: Ext[] = Array.from({ length: MAX_EXTENSION_HEADERS + 1 }, () => ({ type: IPPROTO_DSTOPTS }));
      const p = packet(chain, IPPROTO_UDP);
      expectError(walkExtensionHeaders(p), 'CHAIN_TOO_LONG', 40 + 8 * MAX_EXTENSION_HEADERS);
      expectError(findShim6Header(p), 'CHAIN_TOO_LONG', 40 + 8 * MAX_EXTENSION_HEADERS);
      const routing: Ext[] = Array.from({ length: MAX_EXTENSION_HEADERS + 1 }, () => ({ type: IPPROTO_ROUTING }));
      expectError(findShimInsertionPoint(packet(routing, IPPROTO_UDP)), 'CHAIN_TOO_LONG', 40 + 8 * MAX_EXTENSION_HEADERS);
    });

    it('MISPLACED_HOP_BY_HOP at the Next Header octet that names it', () => {
      const p = packet([{ type: IPPROTO_DSTOPTS }, { type: IPPROTO_HOPOPTS }], IPPROTO_UDP);
      expectError(walkExtensionHeaders(p), 'MISPLACED_HOP_BY_HOP', 40);
      const q = packet([{ type: IPPROTO_HOPOPTS }, { type: IPPROTO_HOPOPTS }], IPPROTO_UDP);
      expectError(findShimInsertionPoint(q), 'MISPLACED_HOP_BY_HOP', 40);
    });
  });
});
