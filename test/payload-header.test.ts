/**
 * The Shim6 payload extension header and the data plane's packet surgery: header vectors,
 * shim/deshim on hand-built packets against independently built expectations, transport
 * checksums (they cover the ULIDs), a fast-check round trip over random extension-header
 * chains, a deterministic 100k-packet fuzz of every per-packet function, and tshark reading
 * what shimPacket produces.
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { ipv6 } from '../protocol/address';
import { endpointChain, routingChain, upperLayer, type ExtensionHeaderSpec } from './support/extension-chains';
import { ipv6Packet, udpChecksumVerifies, udpDatagram } from './support/packets';
import { MAX_CONTEXT_TAG } from '../protocol/constants';
import {
  IPPROTO_AH,
  IPPROTO_DSTOPTS,
  IPPROTO_ESP,
  IPPROTO_FRAGMENT,
  IPPROTO_HOPOPTS,
  IPPROTO_NONE,
  IPPROTO_ROUTING,
  IPPROTO_SHIM6,
  IPPROTO_TCP,
  IPPROTO_UDP,
  PacketError,
  PacketErrorCode,
  findShim6Header,
  findShimInsertionPoint,
  walkExtensionHeaders,
} from '../protocol/ipv6-packet';
import {
  DESTINATION_ADDRESS_OFFSET,
  DeshimmedPacket,
  PAYLOAD_HEADER_LENGTH,
  SOURCE_ADDRESS_OFFSET,
  decodePayloadHeader,
  deshimPacket,
  deshimPacketInPlace,
  encodePayloadHeader,
  peekReceiverContextTag,
  shimPacket,
} from '../protocol/payload-header';
import { tshark, tsharkFields } from './support/tshark';
import { contextTag } from './support/wire-arbitraries';

const ULID_A = ipv6('2001:db8:a1::1');
const ULID_B = ipv6('2001:db8:b1::1');
const LOCATOR_A = ipv6('2001:db8:a2::1');
const LOCATOR_B = ipv6('2001:db8:b2::1');

/** An extension header to build: its type and length in octets (generic: a multiple of 8). */
interface Ext extends ExtensionHeaderSpec {
  /** Shim6 only: the tag (the header is then a payload header, P = 1). */
  tag?: number;
}

function extensionHeader(h: Ext, next: number): Buffer {
  const length = h.type === IPPROTO_FRAGMENT ? 8 : (h.length ?? (h.type === IPPROTO_AH ? 24 : 8));
  const b = Buffer.alloc(length);
  b[0] = next;
  if (h.type === IPPROTO_FRAGMENT) {
    b.writeUInt16BE(((h.fragmentOffset ?? 0) << 3) | 1, 2);
    b.writeUInt32BE(0x01020304, 4);
  } else if (h.type === IPPROTO_AH) {
    b[1] = length / 4 - 2;
    b.fill(0xa5, 2);
  } else {
    b[1] = length / 8 - 1;
    if (h.type === IPPROTO_SHIM6 && h.tag !== undefined) {
      // Laid out by hand from RFC 5533's Payload Extension Header Format, not with the code under test.
      b[2] = 0x80 | Math.floor(h.tag / 2 ** 40);
      b.writeUIntBE(h.tag % 2 ** 40, 3, 5);
    }
  }
  return b;
}

/** IPv6 header (addresses given), the chain, then `upper` and its octets. */
function packet(chain: Ext[], upper: number, body: Uint8Array, source: Uint8Array = ULID_A, destination: Uint8Array = ULID_B): Buffer {
  const parts: Buffer[] = chain.map((h, i) => extensionHeader(h, chain[i + 1]?.type ?? upper));
  parts.push(Buffer.from(body));
  // Traffic class and flow label set, to see they are carried.
  return ipv6Packet({ source, destination, nextHeader: chain[0]?.type ?? upper, payload: Buffer.concat(parts), firstWord: 0x600a_0042 });
}

/** A UDP datagram (header + data) with its checksum computed over the given addresses. */
const udp = (source: Uint8Array, destination: Uint8Array, data: Uint8Array, sourcePort = 40000, destinationPort = 9999): Buffer => udpDatagram(source, destination, sourcePort, destinationPort, data);

/** A 20-octet TCP header with ACK set: with the IPv6 header, a 60-octet TCP ACK. */
function tcpAck(): Buffer {
  const t = Buffer.alloc(20);
  t.writeUInt16BE(443, 0);
  t.writeUInt16BE(51000, 2);
  t.writeUInt32BE(0x11223344, 4);
  t.writeUInt32BE(0x55667788, 8);
  t[12] = 5 << 4;
  t[13] = 0x10;
  t.writeUInt16BE(501, 14);
  return t;
}

function shimmed(p: Uint8Array, tag: number, source: Uint8Array = LOCATOR_A, destination: Uint8Array = LOCATOR_B): Buffer {
  const r = shimPacket(p, tag, source, destination);
  if (r instanceof PacketError) assert.fail(`unexpected ${r.toString()}`);
  return r;
}

function deshimmed(p: Uint8Array, source: Uint8Array = ULID_A, destination: Uint8Array = ULID_B): DeshimmedPacket {
  const r = deshimPacket(p, source, destination);
  if (r instanceof PacketError) assert.fail(`unexpected ${r.toString()}`);
  return r;
}

function expectError(r: unknown, code: PacketErrorCode, offset: number): void {
  assert.ok(r instanceof PacketError, `expected ${code}, got ${r instanceof Buffer ? r.toString('hex') : JSON.stringify(r)}`);
  assert.equal(r.code, code, r.message);
  assert.equal(r.offset, offset, `${r.code} offset (${r.message})`);
}

/** The chains of the hand-built cases, with how many headers precede the payload header. */
const CASES: { name: string; chain: Ext[]; upper: number; body: Buffer; before: number }[] = [
  { name: 'UDP', chain: [], upper: IPPROTO_UDP, body: udp(ULID_A, ULID_B, Buffer.from('hello')), before: 0 },
  { name: 'TCP ACK (60 octets)', chain: [], upper: IPPROTO_TCP, body: tcpAck(), before: 0 },
  { name: 'Hop-by-Hop + UDP', chain: [{ type: IPPROTO_HOPOPTS }], upper: IPPROTO_UDP, body: udp(ULID_A, ULID_B, Buffer.from('hbh')), before: 1 },
  {
    name: 'Hop-by-Hop + Routing + Destination Options + UDP',
    chain: [{ type: IPPROTO_HOPOPTS }, { type: IPPROTO_ROUTING, length: 24 }, { type: IPPROTO_DSTOPTS }],
    upper: IPPROTO_UDP,
    body: Buffer.alloc(12, 1),
    before: 2,
  },
  {
    name: 'Destination Options (before Routing) + Routing + UDP',
    chain: [{ type: IPPROTO_DSTOPTS, length: 16 }, { type: IPPROTO_ROUTING, length: 24 }],
    upper: IPPROTO_UDP,
    body: Buffer.alloc(12, 2),
    before: 2,
  },
  { name: 'Destination Options + UDP (inserted before it)', chain: [{ type: IPPROTO_DSTOPTS }], upper: IPPROTO_UDP, body: Buffer.alloc(9, 3), before: 0 },
  { name: 'Fragment (first) + UDP', chain: [{ type: IPPROTO_FRAGMENT }], upper: IPPROTO_UDP, body: Buffer.alloc(16, 4), before: 0 },
  { name: 'Fragment (later) + data', chain: [{ type: IPPROTO_FRAGMENT, fragmentOffset: 181 }], upper: IPPROTO_UDP, body: Buffer.alloc(16, 5), before: 0 },
  { name: 'Hop-by-Hop + AH + UDP', chain: [{ type: IPPROTO_HOPOPTS }, { type: IPPROTO_AH }], upper: IPPROTO_UDP, body: Buffer.alloc(10, 6), before: 1 },
  { name: 'Routing + ESP', chain: [{ type: IPPROTO_ROUTING, length: 24 }], upper: IPPROTO_ESP, body: Buffer.alloc(48, 7), before: 1 },
  { name: 'No Next Header', chain: [], upper: IPPROTO_NONE, body: Buffer.alloc(0), before: 0 },
];

describe('Shim6 payload extension header (RFC 5533 section 5)', () => {
  describe('encodePayloadHeader / decodePayloadHeader', () => {
    it('lays out Next Header, Hdr Ext Len 0, P = 1 and the 47-bit tag', () => {
      assert.equal(encodePayloadHeader(IPPROTO_UDP, 0x1234_5678_9abc).toString('hex'), '1100923456789abc');
      assert.equal(encodePayloadHeader(IPPROTO_TCP, 0).toString('hex'), '0600800000000000');
      assert.equal(encodePayloadHeader(IPPROTO_NONE, MAX_CONTEXT_TAG).toString('hex'), '3b00ffffffffffff');
      assert.equal(encodePayloadHeader(255, 1).toString('hex'), 'ff00800000000001');
    });

    it('decodes what it encodes, at any offset', () => {
      for (const tag of [0, 1, 0xffff_ffff, 2 ** 32, 2 ** 40 + 5, MAX_CONTEXT_TAG]) {
        const buf = Buffer.concat([Buffer.alloc(5, 0xee), encodePayloadHeader(IPPROTO_DSTOPTS, tag), Buffer.alloc(3)]);
        assert.deepEqual(decodePayloadHeader(buf, 5), { nextHeader: IPPROTO_DSTOPTS, receiverContextTag: tag });
      }
    });

    it('the encoder throws RangeError on values our code should never produce', () => {
      for (const tag of [-1, 2 ** 47, 1.5, NaN, Infinity]) assert.throws(() => encodePayloadHeader(17, tag), RangeError, String(tag));
      for (const nh of [-1, 256, 0.5]) assert.throws(() => encodePayloadHeader(nh, 1), RangeError, String(nh));
    });

    it('decode errors: TRUNCATED, WRONG_P_BIT (a control message), BAD_HDR_EXT_LEN', () => {
      const h = encodePayloadHeader(IPPROTO_UDP, 77);
      expectError(decodePayloadHeader(h.subarray(0, 7)), 'TRUNCATED', 0);
      expectError(decodePayloadHeader(h, 1), 'TRUNCATED', 1);
      expectError(decodePayloadHeader(h, -1), 'TRUNCATED', -1);
      const control = Buffer.from(h);
      control[2] = 0x40; // P = 0, Type 64 (Update Request)
      expectError(decodePayloadHeader(control), 'WRONG_P_BIT', 2);
      const long = Buffer.concat([Buffer.alloc(3), h]);
      long[4] = 1;
      expectError(decodePayloadHeader(long, 3), 'BAD_HDR_EXT_LEN', 4);
    });
  });

  describe('shimPacket / peekReceiverContextTag / deshimPacket on hand-built packets', () => {
    const tag = 0x0abc_def0_1234;
    for (const c of CASES) {
      it(`${c.name}: the header goes after ${c.before} extension header(s), and deshim gives the packet back`, () => {
        const original = packet(c.chain, c.upper, c.body);
        const expected = packet([...c.chain.slice(0, c.before), { type: IPPROTO_SHIM6, tag }, ...c.chain.slice(c.before)], c.upper, c.body, LOCATOR_A, LOCATOR_B);
        const s = shimmed(original, tag);
        assert.equal(s.toString('hex'), expected.toString('hex'));
        assert.equal(peekReceiverContextTag(s), tag);
        const d = deshimmed(s);
        assert.equal(d.receiverContextTag, tag);
        assert.equal(d.packet.toString('hex'), original.toString('hex'));
        const copy = Buffer.from(s);
        const inPlace = deshimPacketInPlace(copy, ULID_A, ULID_B);
        assert.ok(inPlace instanceof Buffer);
        assert.equal(inPlace.toString('hex'), original.toString('hex'));
        assert.equal(inPlace.buffer, copy.buffer, 'in place: no copy of the packet');
      });
    }

    it('shimPacket allocates a new packet and leaves its input alone', () => {
      const original = packet([], IPPROTO_UDP, Buffer.alloc(20, 9));
      const before = Buffer.from(original);
      const s = shimmed(original, 5);
      assert.deepEqual(original, before);
      const shimmedBefore = Buffer.from(s);
      deshimmed(s).packet.fill(0xff);
      assert.deepEqual(s, shimmedBefore, 'deshimPacket copies: its input is untouched');
      s.fill(0);
      assert.deepEqual(original, before, 'shimPacket copies: the output shares nothing with the input');
    });

    it('the locators are at SOURCE_ADDRESS_OFFSET / DESTINATION_ADDRESS_OFFSET of the shimmed packet', () => {
      const s = shimmed(packet([], IPPROTO_UDP, Buffer.alloc(8)), 1);
      assert.deepEqual([SOURCE_ADDRESS_OFFSET, DESTINATION_ADDRESS_OFFSET], [8, 24]);
      assert.deepEqual(s.subarray(SOURCE_ADDRESS_OFFSET, SOURCE_ADDRESS_OFFSET + 16), LOCATOR_A);
      assert.deepEqual(s.subarray(DESTINATION_ADDRESS_OFFSET, DESTINATION_ADDRESS_OFFSET + 16), LOCATOR_B);
    });

    it('the UDP checksum covers the ULIDs: wrong with the locators, valid again after deshim', () => {
      for (const chain of [[], [{ type: IPPROTO_HOPOPTS }, { type: IPPROTO_DSTOPTS, length: 16 }]] as Ext[][]) {
        const original = packet(chain, IPPROTO_UDP, udp(ULID_A, ULID_B, Buffer.from('checksummed payload')));
        const udpAt = original.length - 8 - 19;
        assert.ok(udpChecksumVerifies(original, udpAt), 'the test builds a valid checksum');
        const s = shimmed(original, 99);
        const shimUdpAt = udpAt + PAYLOAD_HEADER_LENGTH;
        assert.equal(s.readUInt16BE(shimUdpAt + 6), original.readUInt16BE(udpAt + 6), 'checksum not touched');
        assert.ok(!udpChecksumVerifies(s, shimUdpAt), 'with the locators in the pseudo-header it does not verify');
        assert.ok(udpChecksumVerifies(deshimmed(s).packet, udpAt));
      }
    });

    it('Payload Length up to 65535 after insertion; TOO_LONG past it (no jumbograms)', () => {
      const fits = packet([], IPPROTO_UDP, Buffer.alloc(65535 - 8));
      assert.equal(shimmed(fits, 1).readUInt16BE(4), 65535);
      const over = packet([], IPPROTO_UDP, Buffer.alloc(65535 - 7));
      const r = shimPacket(over, 1, LOCATOR_A, LOCATOR_B);
      expectError(r, 'TOO_LONG', 4);
      assert.match((r as PacketError).message, /jumbograms are not supported/);
    });

    it('shimPacket: SHIM6_PRESENT on a packet that already has a Shim6 header there', () => {
      expectError(shimPacket(packet([{ type: IPPROTO_SHIM6, tag: 1 }], IPPROTO_UDP, Buffer.alloc(8)), 2, LOCATOR_A, LOCATOR_B), 'SHIM6_PRESENT', 40);
      const control = packet([{ type: IPPROTO_HOPOPTS }, { type: IPPROTO_SHIM6, length: 16 }], IPPROTO_NONE, Buffer.alloc(0));
      expectError(shimPacket(control, 2, LOCATOR_A, LOCATOR_B), 'SHIM6_PRESENT', 48);
    });

    it('shimPacket passes malformed packets back as PacketErrors', () => {
      expectError(shimPacket(Buffer.alloc(20), 1, LOCATOR_A, LOCATOR_B), 'TRUNCATED', 20);
      const v4 = packet([], IPPROTO_UDP, Buffer.alloc(8));
      v4[0] = 0x45;
      expectError(shimPacket(v4, 1, LOCATOR_A, LOCATOR_B), 'BAD_VERSION', 0);
      const overrun = packet([{ type: IPPROTO_HOPOPTS }], IPPROTO_UDP, Buffer.alloc(8));
      overrun[41] = 3;
      expectError(shimPacket(overrun, 1, LOCATOR_A, LOCATOR_B), 'HEADER_OVERRUN', 40);
    });

    it('shimPacket and deshimPacket throw RangeError on a bad tag or address (our bugs, not bad packets)', () => {
      const p = packet([], IPPROTO_UDP, Buffer.alloc(8));
      assert.throws(() => shimPacket(p, 2 ** 47, LOCATOR_A, LOCATOR_B), RangeError);
      assert.throws(() => shimPacket(p, 1, LOCATOR_A.subarray(1), LOCATOR_B), RangeError);
      assert.throws(() => shimPacket(p, 1, LOCATOR_A, Buffer.alloc(17)), RangeError);
      const s = shimmed(p, 1);
      assert.throws(() => deshimPacket(s, ULID_A.subarray(0, 4), ULID_B), RangeError);
      assert.throws(() => deshimPacketInPlace(s, ULID_A, Buffer.alloc(0)), RangeError);
    });

    it('inbound errors: NO_SHIM6_HEADER, WRONG_P_BIT, BAD_HDR_EXT_LEN, HEADER_OVERRUN', () => {
      const inbound = (p: Buffer): unknown[] => [peekReceiverContextTag(p), deshimPacket(p, ULID_A, ULID_B), deshimPacketInPlace(Buffer.from(p), ULID_A, ULID_B)];
      for (const r of inbound(packet([{ type: IPPROTO_HOPOPTS }], IPPROTO_UDP, Buffer.alloc(8)))) expectError(r, 'NO_SHIM6_HEADER', 48);
      for (const r of inbound(packet([], IPPROTO_ESP, Buffer.alloc(24)))) expectError(r, 'NO_SHIM6_HEADER', 40);
      const control = packet([{ type: IPPROTO_SHIM6, length: 16 }], IPPROTO_NONE, Buffer.alloc(0));
      control[42] = 66; // P = 0, Keepalive
      for (const r of inbound(control)) expectError(r, 'WRONG_P_BIT', 42);
      const long = packet([{ type: IPPROTO_HOPOPTS }, { type: IPPROTO_SHIM6, length: 16, tag: 3 }], IPPROTO_UDP, Buffer.alloc(8));
      for (const r of inbound(long)) expectError(r, 'BAD_HDR_EXT_LEN', 49);
      const cut = packet([], IPPROTO_SHIM6, Buffer.from([17, 0, 0x80, 0, 0]));
      for (const r of inbound(cut)) expectError(r, 'HEADER_OVERRUN', 40);
      for (const r of inbound(Buffer.alloc(3))) expectError(r, 'TRUNCATED', 3);
    });

    it('deshimPacketInPlace changes nothing when it returns an error', () => {
      const control = packet([{ type: IPPROTO_SHIM6, length: 16 }], IPPROTO_NONE, Buffer.alloc(0));
      const before = Buffer.from(control);
      assert.ok(deshimPacketInPlace(control, ULID_A, ULID_B) instanceof PacketError);
      assert.deepEqual(control, before);
    });

    it('a Shim6 payload header inside a later fragment is not looked for', () => {
      const p = packet([{ type: IPPROTO_FRAGMENT, fragmentOffset: 3 }, { type: IPPROTO_SHIM6, tag: 8 }], IPPROTO_UDP, Buffer.alloc(8));
      expectError(peekReceiverContextTag(p), 'NO_SHIM6_HEADER', 48);
    });
  });

  describe('properties', () => {
    const address = fc.uint8Array({ minLength: 16, maxLength: 16 });

    it('shim puts the header after exactly the routing-related headers; deshim returns the packet byte for byte (fast-check)', () => {
      fc.assert(
        fc.property(routingChain, endpointChain, upperLayer, fc.uint8Array({ maxLength: 300 }), contextTag, address, address, address, address, (pre, end, up, body, tag, ulidA, ulidB, locA, locB) => {
          const original = packet([...pre, ...end], up, body, ulidA, ulidB);
          const insertAt = 40 + pre.reduce((n, h) => n + (h.length ?? 8), 0);
          const s = shimmed(original, tag, locA, locB);
          assert.equal(s.length, original.length + 8);
          const shimAt = findShim6Header(s);
          assert.deepEqual(shimAt && !(shimAt instanceof PacketError) ? shimAt.offset : shimAt, insertAt);
          assert.deepEqual(decodePayloadHeader(s, insertAt), { nextHeader: [...end, { type: up }][0]?.type, receiverContextTag: tag });
          assert.equal(peekReceiverContextTag(s), tag);
          assert.deepEqual(s.subarray(8, 40), Buffer.concat([locA, locB]));
          const w = walkExtensionHeaders(s);
          assert.ok(!(w instanceof PacketError), String(w));
          assert.deepEqual(w.headers.map((h) => h.type), [...pre, { type: IPPROTO_SHIM6 }, ...end].map((h) => h.type));
          const d = deshimmed(s, ulidA, ulidB);
          assert.equal(d.receiverContextTag, tag);
          assert.ok(d.packet.equals(original));
          const inPlace = deshimPacketInPlace(Buffer.from(s), ulidA, ulidB);
          assert.ok(inPlace instanceof Buffer && inPlace.equals(original));
        }),
        { numRuns: 1000, endOnFailure: true },
      );
    });

    it('fuzz: 100,000 random and mutated packets give values or PacketErrors, never a throw, and agree with each other', function () {
      this.timeout(30_000);
      const random = mulberry32(0x5eed_5111);
      const int = (n: number): number => Math.floor(random() * n);
      const interesting = [0, 6, 17, 43, 44, 50, 51, 58, 59, 60, 135, 140, 0x80, 0xff];
      const seeds: Buffer[] = [];
      for (const c of CASES) {
        const p = packet(c.chain, c.upper, c.body);
        seeds.push(p, shimmed(p, 0x1234_5678));
      }
      seeds.push(packet([{ type: IPPROTO_SHIM6, length: 16 }], IPPROTO_NONE, Buffer.alloc(0)));
      let values = 0;
      let errors = 0;
      const codes = new Set<string>();
      for (let i = 0; i < 100_000; i++) {
        let p: Buffer;
        if (i % 4 === 0) {
          p = Buffer.alloc(int(140));
          for (let j = 0; j < p.length; j++) p[j] = random() < 0.3 ? (interesting[int(interesting.length)] as number) : int(256);
          if (p.length > 0 && random() < 0.9) p[0] = 0x60;
        } else {
          p = Buffer.from(seeds[int(seeds.length)] as Buffer);
          for (let m = 1 + int(4); m > 0; m--) {
            const what = int(5);
            if (what === 0 && p.length > 0) p[int(p.length)] = int(256);
            else if (what === 1 && p.length > 0) p[int(p.length)] = interesting[int(interesting.length)] as number;
            else if (what === 2) p = p.subarray(0, int(p.length + 1));
            else if (what === 3) p = Buffer.concat([p, Buffer.alloc(int(24), int(256))]);
            else if (p.length > 41) p[40 + int(Math.min(p.length - 40, 64))] = interesting[int(interesting.length)] as number;
          }
        }
        if (p.length >= 6 && random() < 0.85) p.writeUInt16BE(Math.max(0, p.length - 40) & 0xffff, 4); // mostly past the length check
        try {
          const results = checkOne(p, int);
          values += results.values;
          errors += results.errors;
          for (const c of results.codes) codes.add(c);
        } catch (e) {
          assert.fail(`input ${p.toString('hex')}: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
        }
      }
      assert.ok(values > 50_000 && errors > 50_000, `both paths exercised (${values} values, ${errors} errors)`);
      for (const c of ['TRUNCATED', 'BAD_VERSION', 'LENGTH_MISMATCH', 'HEADER_OVERRUN', 'NO_SHIM6_HEADER', 'WRONG_P_BIT', 'BAD_HDR_EXT_LEN', 'SHIM6_PRESENT']) {
        assert.ok(codes.has(c), `fuzz reached ${c} (reached: ${[...codes].join(', ')})`);
      }
    });
  });
});

/** Every per-packet function on one input, checking their results against each other. */
function checkOne(p: Buffer, int: (n: number) => number): { values: number; errors: number; codes: string[] } {
  let values = 0;
  let errors = 0;
  const codes: string[] = [];
  const count = (r: unknown): void => {
    if (r instanceof PacketError) {
      assert.equal(typeof r.code, 'string');
      assert.ok(Number.isInteger(r.offset) && r.offset >= -1 && r.offset <= p.length, `offset ${r.offset} within ${p.length}`);
      errors++;
      codes.push(r.code);
    } else {
      values++;
    }
  };

  const w = walkExtensionHeaders(p);
  count(w);
  if (!(w instanceof PacketError)) {
    let at = 40;
    let nh = 6;
    for (const h of w.headers) {
      assert.deepEqual([h.offset, h.nextHeaderOffset, h.type], [at, nh, p[nh]]);
      assert.ok(h.length >= 8 && h.offset + h.length <= p.length);
      nh = h.offset;
      at += h.length;
    }
    assert.deepEqual([w.upperLayerOffset, w.upperLayerNextHeaderOffset, w.upperLayerType], [at, nh, p[nh]]);
    assert.ok(!(findShimInsertionPoint(p) instanceof PacketError), 'a walkable chain has an insertion point');
  }
  const ins = findShimInsertionPoint(p);
  count(ins);
  const found = findShim6Header(p);
  count(found);

  const tag = peekReceiverContextTag(p);
  count(tag);
  const d = deshimPacket(p, ULID_A, ULID_B);
  count(d);
  const copy = Buffer.from(p);
  const inPlace = deshimPacketInPlace(copy, ULID_A, ULID_B);
  count(inPlace);
  if (typeof tag === 'number') {
    assert.ok(Number.isInteger(tag) && tag >= 0 && tag <= MAX_CONTEXT_TAG);
    assert.ok(!(d instanceof PacketError) && d.receiverContextTag === tag);
    assert.ok(inPlace instanceof Buffer && inPlace.equals(d.packet));
    assert.equal(d.packet.length, p.length - 8);
    assert.equal(d.packet.readUInt16BE(4), p.length - 48);
  } else {
    assert.ok(d instanceof PacketError && inPlace instanceof PacketError);
    assert.deepEqual([d.code, d.offset], [tag.code, tag.offset]);
    assert.deepEqual([inPlace.code, inPlace.offset], [tag.code, tag.offset]);
    assert.ok(copy.equals(p), 'in-place deshim changed nothing on error');
  }

  const shimTag = int(2 ** 30) * 2 ** 17 + int(2 ** 17);
  const s = shimPacket(p, shimTag, LOCATOR_A, LOCATOR_B);
  count(s);
  if (!(s instanceof PacketError)) {
    // Whatever shimPacket accepts, the inbound side reads back and restores exactly.
    assert.equal(peekReceiverContextTag(s), shimTag);
    const back = deshimPacket(s, p.subarray(8, 24), p.subarray(24, 40));
    assert.ok(!(back instanceof PacketError) && back.packet.equals(p), 'deshim(shim(p)) is p');
  } else if (!(ins instanceof PacketError)) {
    assert.ok(s.code === 'SHIM6_PRESENT' || s.code === 'TOO_LONG', s.code);
  }

  count(decodePayloadHeader(p, int(p.length + 2) - 1));
  return { values, errors, codes };
}

/** A small seeded PRNG (mulberry32), so the fuzz is the same on every run. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

describe('tshark reads shimmed packets (independent check)', function () {
  this.timeout(60_000);
  const data = Buffer.from('shim6 data plane');

  it('payload header: P = 1, Next Header UDP, the inner UDP ports, the locators, and the 47-bit tag', async () => {
    const tags = [0x1234_5678_9abc, MAX_CONTEXT_TAG, 1];
    const packets = tags.map((t) => shimmed(packet([], IPPROTO_UDP, udp(ULID_A, ULID_B, data, 40001, 9999)), t));
    const rows = await tsharkFields(packets, ['shim6.p', 'shim6.nxt', 'shim6.len', 'udp.srcport', 'udp.dstport', 'ipv6.src', 'ipv6.dst']);
    assert.equal(rows.length, packets.length);
    for (const [p, nxt, len, sport, dport, src, dst] of rows) {
      assert.ok(p === '1' || p === 'True', `shim6.p: ${p}`);
      assert.deepEqual([nxt, len, sport, dport, src, dst], ['17', '0', '40001', '9999', '2001:db8:a2::1', '2001:db8:b2::1']);
    }
    // tshark 4.0 has no filterable tag field: it prints the 7 + 40 bits as six hex octets in -V.
    const text = await tshark(packets, ['-V']);
    const printed = [...text.matchAll(/Receiver Context Tag: ([0-9a-f ]+)/g)].map((m) => (m[1] as string).trim());
    assert.deepEqual(printed, ['12 34 56 78 9a bc', '7f ff ff ff ff ff', '00 00 00 00 00 01']);
    assert.equal([...text.matchAll(/1\.\.\. \.\.\.\. = P Bit: True/g)].length, 3);
  });

  it('placement: after Hop-by-Hop and Routing, before Destination Options, as tshark dissects it', async () => {
    const chain: Ext[] = [{ type: IPPROTO_HOPOPTS }, { type: IPPROTO_ROUTING, length: 24 }, { type: IPPROTO_DSTOPTS }];
    const original = packet(chain, IPPROTO_UDP, udp(ULID_A, ULID_B, data, 40002, 9999));
    const rows = await tsharkFields([original, shimmed(original, 42)], ['frame.protocols', 'udp.srcport']);
    assert.match(rows[0]?.[0] ?? '', /^ipv6:ipv6\.hopopts:ipv6\.routing:ipv6\.dstopts:udp/);
    assert.match(rows[1]?.[0] ?? '', /^ipv6:ipv6\.hopopts:ipv6\.routing:shim6:ipv6\.dstopts:udp/);
    assert.equal(rows[1]?.[1], '40002');
  });

  it('UDP checksum (tshark computes it): good before, bad on the wire with locators, good after deshim', async () => {
    const original = packet([{ type: IPPROTO_HOPOPTS }], IPPROTO_UDP, udp(ULID_A, ULID_B, data, 40003, 9999));
    const s = shimmed(original, 7);
    const rows = await tshark([original, s, deshimmed(s).packet], ['-o', 'udp.check_checksum:TRUE', '-T', 'fields', '-e', 'udp.checksum.status']);
    assert.deepEqual(rows.trim().split('\n'), ['1', '0', '1']); // 1 = Good, 0 = Bad
  });
});
