/**
 * The per-packet data plane (shim6d/data-plane) on a real context table with fake hooks
 * and a fake clock: outbound shimming (addresses, payload header placement, counters),
 * the path MTU check (TCP is dropped with a rate-limited Packet Too Big; anything else is
 * shimmed anyway), inbound deshimming and every inbound drop, control messages, and a
 * fast-check round trip between two hosts.
 *
 * Expected packets are laid out by hand from RFC 5533 section 5, not with the code under test.
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { ipv6 } from '../protocol/address';
import { encodeControlMessage } from '../protocol/control-message';
import {
  IPPROTO_AH,
  IPPROTO_DSTOPTS,
  IPPROTO_ESP,
  IPPROTO_FRAGMENT,
  IPPROTO_HOPOPTS,
  IPPROTO_ICMPV6,
  IPPROTO_NONE,
  IPPROTO_ROUTING,
  IPPROTO_SHIM6,
  IPPROTO_TCP,
  IPPROTO_UDP,
  PacketError,
} from '../protocol/ipv6-packet';
import { shimPacket } from '../protocol/payload-header';
import { refreshLocatorKeys, zeroDrops, type ContextSpec, type DropReason, type ShimContext } from '../shim6d/context';
import { ContextTable } from '../shim6d/context-table';
import { DataPlane, type DataPlaneHooks, type DataPlaneOptions, type Verdict } from '../shim6d/data-plane';
import { endpointChain, routingChain, upperLayer, type ExtensionHeaderSpec } from './support/extension-chains';
import { ipv6Packet, udpChecksumVerifies, udpDatagram } from './support/packets';
import { prng, randomBytes } from './support/prng';
import { contextTag } from './support/wire-arbitraries';

const A1 = '2001:db8:a1::a';
const A2 = '2001:db8:a2::a';
const B1 = '2001:db8:b1::b';
const B2 = '2001:db8:b2::b';
/** Host A's tag (B puts it in what it sends A) and host B's; both use the high bits. */
const TAG_A = 0x0a0a_1234_5678;
const TAG_B = 0x7b0b_8765_4321;

const addr = (text: string): Buffer => ipv6(text);

/** The context as host A holds it: ULIDs A1 → B1, on the pair given (default A2 → B2). */
function specA(over: Partial<ContextSpec> = {}): ContextSpec {
  return {
    id: 1,
    origin: 'static',
    localUlid: A1,
    peerUlid: B1,
    localContextTag: TAG_A,
    peerContextTag: TAG_B,
    localLocators: [A1, A2],
    peerLocators: [B1, B2],
    verification: 'static',
    locatorPair: { local: A2, peer: B2 },
    ...over,
  };
}

/** The same context as host B holds it: specA's with the two ends swapped (pair B2 → A2). */
function specB(over: Partial<ContextSpec> = {}): ContextSpec {
  const a = specA();
  return {
    ...a,
    localUlid: a.peerUlid,
    peerUlid: a.localUlid,
    localContextTag: a.peerContextTag,
    peerContextTag: a.localContextTag,
    localLocators: a.peerLocators,
    peerLocators: a.localLocators,
    locatorPair: a.locatorPair && { local: a.locatorPair.peer, peer: a.locatorPair.local },
    ...over,
  };
}

interface PtbCall {
  ctx: ShimContext;
  packet: Buffer;
  mtu: number;
}

/** Hooks that record every call, with a clock the test sets. */
class FakeHooks implements DataPlaneHooks {
  clock = 0;
  readonly ptb: PtbCall[] = [];
  readonly unknownTags: { tag: number; packet: Buffer }[] = [];
  readonly control: Buffer[] = [];
  now(): number {
    return this.clock;
  }
  packetTooBig(ctx: ShimContext, packet: Buffer, mtu: number): void {
    this.ptb.push({ ctx, packet, mtu });
  }
  unknownContextTag(tag: number, packet: Buffer): void {
    this.unknownTags.push({ tag, packet });
  }
  controlMessage(packet: Buffer): void {
    this.control.push(packet);
  }
}

interface Host {
  table: ContextTable;
  ctx: ShimContext;
  hooks: FakeHooks;
  dp: DataPlane;
}

function host(spec: ContextSpec, options: Partial<DataPlaneOptions> = {}): Host {
  const table = new ContextTable();
  const ctx = table.add(spec);
  const hooks = new FakeHooks();
  const dp = new DataPlane(table, hooks, { defaultPathMtu: 1500, ptbPerSecond: 10, ...options });
  return { table, ctx, hooks, dp };
}

/** An extension header to build: its type and length in octets. */
type Ext = ExtensionHeaderSpec;

function extensionHeader(h: Ext, next: number): Buffer {
  const length = h.type === IPPROTO_FRAGMENT ? 8 : (h.length ?? (h.type === IPPROTO_AH ? 16 : 8));
  const b = Buffer.alloc(length, 0x5a);
  b[0] = next;
  if (h.type === IPPROTO_FRAGMENT) {
    b[1] = 0;
    b.writeUInt16BE(((h.fragmentOffset ?? 0) << 3) | 1, 2);
    b.writeUInt32BE(0xcafe0001, 4);
  } else if (h.type === IPPROTO_AH) {
    b[1] = length / 4 - 2;
  } else {
    b[1] = length / 8 - 1;
  }
  return b;
}

/** IPv6 header, the extension headers, then `upper` with its octets. */
function packet(source: string | Uint8Array, destination: string | Uint8Array, chain: Ext[], upper: number, body: Uint8Array): Buffer {
  const parts = chain.map((h, i) => extensionHeader(h, chain[i + 1]?.type ?? upper));
  parts.push(Buffer.from(body));
  return ipv6Packet({ source, destination, nextHeader: chain[0]?.type ?? upper, payload: Buffer.concat(parts), firstWord: 0x6012_3456, hopLimit: 61 });
}

/** A UDP datagram (40000 → 9999) with its checksum over the given addresses. */
const udp = (source: string, destination: string, data: Uint8Array): Buffer => udpDatagram(source, destination, 40000, 9999, data);

/** A TCP-like segment: a 20-octet header (ACK|PSH) and data. */
function tcp(data: Uint8Array): Buffer {
  const t = Buffer.alloc(20 + data.length);
  t.writeUInt16BE(443, 0);
  t.writeUInt16BE(51000, 2);
  t.writeUInt32BE(0x11223344, 4);
  t.writeUInt32BE(0x55667788, 8);
  t[12] = 5 << 4;
  t[13] = 0x18;
  t.writeUInt16BE(501, 14);
  t.writeUInt16BE(0xbeef, 16);
  t.set(data, 20);
  return t;
}

/** A UDP packet of exactly `total` octets from `source` to `destination`. */
function udpPacketOfLength(source: string, destination: string, total: number): Buffer {
  const p = packet(source, destination, [], IPPROTO_UDP, udp(source, destination, Buffer.alloc(total - 48, 0x33)));
  assert.equal(p.length, total);
  return p;
}

/** A TCP segment (header + data) of exactly `total` octets from `source` to `destination`. */
function tcpPacketOfLength(source: string, destination: string, total: number, chain: Ext[] = []): Buffer {
  const headers = chain.reduce((n, h) => n + (h.type === IPPROTO_FRAGMENT ? 8 : (h.length ?? 8)), 0);
  const p = packet(source, destination, chain, IPPROTO_TCP, tcp(Buffer.alloc(total - 60 - headers, 0x44)));
  assert.equal(p.length, total);
  return p;
}

/** The 8 octets of a payload header, by hand: Next Header, Hdr Ext Len 0, P = 1, 47-bit tag. */
function payloadHeaderBytes(nextHeader: number, tag: number): Buffer {
  const b = Buffer.alloc(8);
  b[0] = nextHeader;
  b[1] = 0;
  b[2] = 0x80 | Math.floor(tag / 2 ** 40);
  b.writeUIntBE(tag % 2 ** 40, 3, 5);
  return b;
}

/**
 * What shimming `original` should give: the payload header inserted at `insert`, the Next
 * Header octet at `nextHeaderOffset` patched to 140, Payload Length + 8, the locators.
 */
function expectedShimmed(original: Buffer, insert: number, nextHeaderOffset: number, tag: number, source: string, destination: string): Buffer {
  const head = Buffer.from(original.subarray(0, insert));
  const nextHeader = head[nextHeaderOffset] as number;
  head[nextHeaderOffset] = IPPROTO_SHIM6;
  head.writeUInt16BE(original.length - 40 + 8, 4);
  addr(source).copy(head, 8);
  addr(destination).copy(head, 24);
  return Buffer.concat([head, payloadHeaderBytes(nextHeader, tag), original.subarray(insert)]);
}

function asBuffer(v: Verdict): Buffer {
  assert.ok(Buffer.isBuffer(v), `a rewritten packet, not '${String(v)}'`);
  return v;
}

/** Shims as the peer would: `tag` is the receiver's, from `source` to `destination` locators. */
function peerShim(original: Buffer, tag: number, source: string, destination: string): Buffer {
  const s = shimPacket(original, tag, addr(source), addr(destination));
  if (s instanceof PacketError) assert.fail(s.toString());
  return s;
}

function dropsOnly(reason: DropReason, n = 1): Record<DropReason, number> {
  return { ...zeroDrops(), [reason]: n };
}

describe('DataPlane (shim6d/data-plane)', () => {
  it('refuses a defaultPathMtu below the IPv6 minimum', () => {
    const t = new ContextTable();
    assert.throws(() => new DataPlane(t, new FakeHooks(), { defaultPathMtu: 1279, ptbPerSecond: 1 }), RangeError);
    assert.throws(() => new DataPlane(t, new FakeHooks(), { defaultPathMtu: Number.NaN, ptbPerSecond: 1 }), RangeError);
    assert.doesNotThrow(() => new DataPlane(t, new FakeHooks(), { defaultPathMtu: 1280, ptbPerSecond: 1 }));
  });

  describe('outbound', () => {
    it('a context on its ULID pair: accept unchanged, counted as passed', () => {
      const a = host(specA({ locatorPair: undefined }));
      const p = packet(A1, B1, [], IPPROTO_UDP, udp(A1, B1, Buffer.from('hello')));
      const copy = Buffer.from(p);
      assert.equal(a.dp.outbound(p), 'accept');
      assert.ok(p.equals(copy));
      assert.equal(a.dp.stats.outboundPackets, 1);
      assert.equal(a.dp.stats.outboundPassed, 1);
      assert.equal(a.dp.stats.shimmedPackets, 0);
      assert.equal(a.ctx.counters.shimmedPackets, 0);
      assert.deepEqual(a.dp.stats.drops, zeroDrops());
    });

    it('no context for the address pair (another peer, the reverse direction, locators): accept', () => {
      const a = host(specA());
      for (const [s, d] of [[A1, '2001:db8:c1::c'], [B1, A1], [A2, B2], ['2001:db8:c1::c', B1]] as const) {
        assert.equal(a.dp.outbound(packet(s, d, [], IPPROTO_UDP, udp(s, d, Buffer.alloc(10)))), 'accept', `${s} → ${d}`);
      }
      assert.equal(a.dp.stats.outboundPackets, 4);
      assert.equal(a.dp.stats.outboundPassed, 4);
      assert.equal(a.ctx.counters.shimmedPackets, 0);
    });

    it('not IPv6 (version 4, garbage) or shorter than 40 octets: accept, whatever the addresses', () => {
      const a = host(specA());
      const v4 = packet(A1, B1, [], IPPROTO_UDP, Buffer.alloc(20));
      v4[0] = 0x45;
      const short = packet(A1, B1, [], IPPROTO_UDP, Buffer.alloc(0)).subarray(0, 39);
      for (const p of [v4, short, Buffer.alloc(0), Buffer.alloc(1, 0x60), Buffer.alloc(100, 0xff)]) assert.equal(a.dp.outbound(p), 'accept');
      assert.equal(a.dp.stats.outboundPassed, 5);
      assert.equal(a.ctx.counters.shimmedPackets, 0);
      assert.deepEqual(a.dp.stats.drops, zeroDrops());
    });

    it('a shimmed context: the locators as addresses, the payload header with the PEER tag after the IPv6 header, Payload Length + 8', () => {
      const a = host(specA());
      a.hooks.clock = 12_345;
      const p = packet(A1, B1, [], IPPROTO_UDP, udp(A1, B1, Buffer.from('some data')));
      const copy = Buffer.from(p);
      const out = asBuffer(a.dp.outbound(p));
      assert.ok(p.equals(copy), 'the input is left alone');
      assert.equal(out.length, p.length + 8);
      assert.ok(out.subarray(8, 24).equals(addr(A2)), 'source: the current local locator');
      assert.ok(out.subarray(24, 40).equals(addr(B2)), 'destination: the current peer locator');
      assert.equal(out.readUInt16BE(4), p.length - 40 + 8);
      assert.equal(out[6], IPPROTO_SHIM6);
      assert.equal(out[40], IPPROTO_UDP, 'Next Header of the payload header');
      assert.equal(out[41], 0, 'Hdr Ext Len');
      assert.equal((out[42] as number) & 0x80, 0x80, 'P = 1');
      assert.equal(((out[42] as number) & 0x7f) * 2 ** 40 + out.readUIntBE(43, 5), TAG_B, "the peer's tag, not ours");
      assert.ok(out.equals(expectedShimmed(p, 40, 6, TAG_B, A2, B2)));
      assert.ok(out.subarray(0, 4).equals(p.subarray(0, 4)), 'version, traffic class and flow label carried');
      assert.equal(out[7], 61, 'hop limit carried');

      assert.equal(a.dp.stats.outboundPackets, 1);
      assert.equal(a.dp.stats.outboundPassed, 0);
      assert.equal(a.dp.stats.shimmedPackets, 1);
      assert.equal(a.ctx.counters.shimmedPackets, 1);
      assert.equal(a.ctx.counters.shimmedOctets, out.length);
      assert.equal(a.ctx.counters.lastShimmedAt, 12_345);
      a.hooks.clock = 20_000;
      const second = asBuffer(a.dp.outbound(p));
      assert.equal(a.ctx.counters.shimmedPackets, 2);
      assert.equal(a.ctx.counters.shimmedOctets, out.length + second.length);
      assert.equal(a.ctx.counters.lastShimmedAt, 20_000);
      assert.equal(a.ctx.counters.deshimmedPackets, 0);
    });

    it('follows the current pair and the peer tag as they change', () => {
      const a = host(specA());
      const p = packet(A1, B1, [], IPPROTO_TCP, tcp(Buffer.from('x')));
      a.ctx.current = { local: a.ctx.localUlid, peer: a.ctx.peerLocators[1] as ShimContext['peerUlid'] };
      a.ctx.peerContextTag = 77;
      assert.ok(asBuffer(a.dp.outbound(p)).equals(expectedShimmed(p, 40, 6, 77, A1, B2)));
      a.ctx.current = { local: a.ctx.localUlid, peer: a.ctx.peerUlid };
      assert.equal(a.dp.outbound(p), 'accept', 'back on the ULIDs');
      assert.equal(a.dp.stats.outboundPassed, 1);
    });

    const placements: { name: string; chain: Ext[]; insert: number; nextHeaderOffset: number }[] = [
      { name: 'Hop-by-Hop', chain: [{ type: IPPROTO_HOPOPTS, length: 16 }], insert: 56, nextHeaderOffset: 40 },
      { name: 'Fragment (first fragment)', chain: [{ type: IPPROTO_FRAGMENT }], insert: 40, nextHeaderOffset: 6 },
      { name: 'Fragment (later fragment)', chain: [{ type: IPPROTO_FRAGMENT, fragmentOffset: 185 }], insert: 40, nextHeaderOffset: 6 },
      { name: 'Hop-by-Hop then Fragment', chain: [{ type: IPPROTO_HOPOPTS }, { type: IPPROTO_FRAGMENT }], insert: 48, nextHeaderOffset: 40 },
      { name: 'Hop-by-Hop, Destination Options, Routing, Fragment', chain: [{ type: IPPROTO_HOPOPTS }, { type: IPPROTO_DSTOPTS, length: 16 }, { type: IPPROTO_ROUTING, length: 24 }, { type: IPPROTO_FRAGMENT }], insert: 88, nextHeaderOffset: 64 },
      { name: 'Destination Options (endpoint)', chain: [{ type: IPPROTO_DSTOPTS }], insert: 40, nextHeaderOffset: 6 },
    ];
    for (const c of placements) {
      it(`with ${c.name}: the payload header at ${c.insert}, the Next Header at ${c.nextHeaderOffset} patched to 140`, () => {
        const a = host(specA());
        const p = packet(A1, B1, c.chain, IPPROTO_UDP, udp(A1, B1, Buffer.alloc(33, 7)));
        const out = asBuffer(a.dp.outbound(p));
        assert.ok(out.equals(expectedShimmed(p, c.insert, c.nextHeaderOffset, TAG_B, A2, B2)), out.toString('hex'));
        assert.equal(out[c.nextHeaderOffset], IPPROTO_SHIM6);
        assert.equal(out[c.insert], p[c.nextHeaderOffset], 'the payload header takes over the Next Header it replaced');
        assert.equal(out.readUInt16BE(4), p.length - 40 + 8);
        assert.equal(a.ctx.counters.shimmedPackets, 1);
      });
    }

    it('a malformed IPv6 packet on a shimmed ULID pair: drop (malformed, counted on the context), lastError set', () => {
      const a = host(specA());
      const p = packet(A1, B1, [], IPPROTO_UDP, udp(A1, B1, Buffer.alloc(8)));
      const badLength = Buffer.from(p);
      badLength.writeUInt16BE(999, 4);
      assert.equal(a.dp.outbound(badLength), 'drop');
      assert.equal(a.dp.lastError?.code, 'LENGTH_MISMATCH');
      const overrun = packet(A1, B1, [], IPPROTO_HOPOPTS, Buffer.from([IPPROTO_UDP, 3, 0, 0, 0, 0, 0, 0]));
      assert.equal(a.dp.outbound(overrun), 'drop');
      assert.equal(a.dp.lastError?.code, 'HEADER_OVERRUN');
      const alreadyShimmed = packet(A1, B1, [], IPPROTO_SHIM6, payloadHeaderBytes(IPPROTO_NONE, 5));
      assert.equal(a.dp.outbound(alreadyShimmed), 'drop');
      assert.equal(a.dp.lastError?.code, 'SHIM6_PRESENT');
      assert.deepEqual(a.ctx.counters.drops, dropsOnly('malformed', 3));
      assert.deepEqual(a.dp.stats.drops, dropsOnly('malformed', 3));
      assert.equal(a.dp.stats.shimmedPackets, 0);
      assert.equal(a.ctx.counters.shimmedPackets, 0);
    });
  });

  describe('path MTU and Packet Too Big', () => {
    it('TCP, pathMtu 1500: a 1500-octet segment is dropped (too-big) and a Packet Too Big with MTU 1492 carries the packet', () => {
      const a = host(specA());
      a.ctx.pathMtu = 1500;
      const p = tcpPacketOfLength(A1, B1, 1500);
      assert.equal(a.dp.outbound(p), 'drop');
      assert.equal(a.hooks.ptb.length, 1);
      const call = a.hooks.ptb[0] as PtbCall;
      assert.equal(call.ctx, a.ctx);
      assert.equal(call.mtu, 1492);
      assert.equal(call.packet, p, 'the original packet');
      assert.ok(call.packet.subarray(8, 40).equals(Buffer.concat([addr(A1), addr(B1)])), 'with its ULIDs');
      assert.deepEqual(a.ctx.counters.drops, dropsOnly('too-big'));
      assert.deepEqual(a.dp.stats.drops, dropsOnly('too-big'));
      assert.equal(a.ctx.counters.packetTooBigSent, 1);
      assert.equal(a.dp.stats.packetTooBigSent, 1);
      assert.equal(a.ctx.counters.shimmedPackets, 0);
    });

    it('TCP, pathMtu 1500: 1493 octets do not fit either; 1492 octets do (1500 after shimming)', () => {
      const a = host(specA());
      a.ctx.pathMtu = 1500;
      assert.equal(a.dp.outbound(tcpPacketOfLength(A1, B1, 1493)), 'drop');
      const out = asBuffer(a.dp.outbound(tcpPacketOfLength(A1, B1, 1492)));
      assert.equal(out.length, 1500);
      assert.equal(a.ctx.counters.shimmedPackets, 1);
      assert.equal(a.ctx.counters.drops['too-big'], 1);
      assert.equal(a.hooks.ptb.length, 1);
    });

    it('not TCP (UDP, ICMPv6, a later fragment of a TCP segment): shimmed anyway past the path MTU, no Packet Too Big', () => {
      const a = host(specA());
      a.ctx.pathMtu = 1500;
      const udp1500 = udpPacketOfLength(A1, B1, 1500);
      assert.ok(asBuffer(a.dp.outbound(udp1500)).equals(expectedShimmed(udp1500, 40, 6, TAG_B, A2, B2)));
      const icmp = packet(A1, B1, [], IPPROTO_ICMPV6, Buffer.alloc(1460, 0x80));
      assert.equal(asBuffer(a.dp.outbound(icmp)).length, 1508);
      const laterTcpFragment = packet(A1, B1, [{ type: IPPROTO_FRAGMENT, fragmentOffset: 181 }], IPPROTO_TCP, Buffer.alloc(1452, 0x44));
      assert.equal(laterTcpFragment.length, 1500);
      assert.ok(asBuffer(a.dp.outbound(laterTcpFragment)).equals(expectedShimmed(laterTcpFragment, 40, 6, TAG_B, A2, B2)));
      const esp = packet(A1, B1, [], IPPROTO_ESP, Buffer.alloc(1460, 0x50));
      assert.equal(asBuffer(a.dp.outbound(esp)).length, 1508, 'ESP: the transport is not visible');
      assert.equal(a.hooks.ptb.length, 0);
      assert.deepEqual(a.dp.stats.drops, zeroDrops());
      assert.equal(a.ctx.counters.shimmedPackets, 4);
      assert.equal(a.ctx.counters.packetTooBigSent, 0);
    });

    it('TCP behind extension headers (Hop-by-Hop, a first fragment, AH) is recognised as TCP', () => {
      const a = host(specA());
      a.ctx.pathMtu = 1500;
      const chains: Ext[][] = [[{ type: IPPROTO_HOPOPTS }], [{ type: IPPROTO_FRAGMENT }], [{ type: IPPROTO_DSTOPTS, length: 16 }, { type: IPPROTO_AH, length: 24 }]];
      for (const chain of chains) {
        const p = tcpPacketOfLength(A1, B1, 1500, chain);
        assert.equal(a.dp.outbound(p), 'drop', JSON.stringify(chain));
        assert.equal(a.hooks.ptb.at(-1)?.packet, p);
        assert.equal(asBuffer(a.dp.outbound(tcpPacketOfLength(A1, B1, 1492, chain))).length, 1500);
      }
      assert.equal(a.ctx.counters.drops['too-big'], 3);
      assert.equal(a.hooks.ptb.length, 3);
    });

    it('a context on its ULIDs is never too big (no header to add)', () => {
      const a = host(specA({ locatorPair: undefined }));
      a.ctx.pathMtu = 1280;
      assert.equal(a.dp.outbound(tcpPacketOfLength(A1, B1, 1500)), 'accept');
      assert.equal(a.hooks.ptb.length, 0);
    });

    it('the defaultPathMtu applies when ctx.pathMtu is undefined; a known pathMtu overrides it', () => {
      const a = host(specA(), { defaultPathMtu: 1400 });
      assert.equal(a.ctx.pathMtu, undefined);
      assert.equal(a.dp.outbound(tcpPacketOfLength(A1, B1, 1393)), 'drop');
      assert.equal((a.hooks.ptb[0] as PtbCall).mtu, 1392);
      assert.equal(asBuffer(a.dp.outbound(tcpPacketOfLength(A1, B1, 1392))).length, 1400);
      a.ctx.pathMtu = 9000;
      assert.equal(asBuffer(a.dp.outbound(tcpPacketOfLength(A1, B1, 1500))).length, 1508);
      assert.equal(a.ctx.counters.shimmedPackets, 2);
      assert.equal(a.ctx.counters.drops['too-big'], 1);
    });

    it('the Packet Too Big MTU is never below 1280 (the IPv6 minimum)', () => {
      const a = host(specA());
      a.ctx.pathMtu = 1280;
      assert.equal(a.dp.outbound(tcpPacketOfLength(A1, B1, 1280)), 'drop');
      assert.equal((a.hooks.ptb[0] as PtbCall).mtu, 1280);
      assert.equal(asBuffer(a.dp.outbound(tcpPacketOfLength(A1, B1, 1272))).length, 1280);
    });

    it('rate limit ptbPerSecond 3: the 4th in the same clock second is not sent but still dropped; the next second sends again', () => {
      const a = host(specA(), { ptbPerSecond: 3 });
      a.ctx.pathMtu = 1500;
      const p = tcpPacketOfLength(A1, B1, 1500);
      a.hooks.clock = 5_000;
      for (let i = 0; i < 3; i++) assert.equal(a.dp.outbound(p), 'drop');
      assert.equal(a.hooks.ptb.length, 3);
      a.hooks.clock = 5_999;
      assert.equal(a.dp.outbound(p), 'drop');
      assert.equal(a.dp.outbound(p), 'drop');
      assert.equal(a.hooks.ptb.length, 3, 'none over the limit');
      assert.equal(a.ctx.counters.drops['too-big'], 5);
      assert.equal(a.dp.stats.drops['too-big'], 5);
      assert.equal(a.ctx.counters.packetTooBigSent, 3);
      assert.equal(a.dp.stats.packetTooBigSent, 3);
      a.hooks.clock = 6_000;
      assert.equal(a.dp.outbound(p), 'drop');
      assert.equal(a.hooks.ptb.length, 4, 'a new second');
      assert.equal(a.ctx.counters.packetTooBigSent, 4);
      assert.equal(a.ctx.counters.drops['too-big'], 6);
    });

    it('the rate limit is per context', () => {
      const a = host(specA(), { ptbPerSecond: 1 });
      const other = a.table.add(specA({ id: 2, localContextTag: 99, peerUlid: '2001:db8:c1::c', peerLocators: ['2001:db8:c1::c', '2001:db8:c2::c'], locatorPair: { local: A2, peer: '2001:db8:c2::c' } }));
      a.ctx.pathMtu = 1500;
      other.pathMtu = 1500;
      a.hooks.clock = 1_000;
      a.dp.outbound(tcpPacketOfLength(A1, B1, 1500));
      a.dp.outbound(tcpPacketOfLength(A1, B1, 1500));
      a.dp.outbound(tcpPacketOfLength(A1, '2001:db8:c1::c', 1500));
      assert.deepEqual(a.hooks.ptb.map((c) => c.ctx.id), [1, 2]);
      assert.equal(a.ctx.counters.drops['too-big'], 2);
      assert.equal(other.counters.drops['too-big'], 1);
      assert.equal(a.dp.stats.drops['too-big'], 3);
    });

    it('ptbPerSecond 0: never calls the hook, still drops', () => {
      const a = host(specA(), { ptbPerSecond: 0 });
      a.ctx.pathMtu = 1500;
      for (let i = 0; i < 5; i++) {
        a.hooks.clock = i * 1000;
        assert.equal(a.dp.outbound(tcpPacketOfLength(A1, B1, 1500)), 'drop');
      }
      assert.equal(a.hooks.ptb.length, 0);
      assert.equal(a.ctx.counters.packetTooBigSent, 0);
      assert.equal(a.dp.stats.packetTooBigSent, 0);
      assert.equal(a.ctx.counters.drops['too-big'], 5);
    });
  });

  describe('inbound', () => {
    it('a payload packet from peer locator B2 to A2 with our tag: the header stripped, the ULIDs restored, byte for byte', () => {
      const a = host(specA());
      a.hooks.clock = 777;
      const original = packet(B1, A1, [], IPPROTO_UDP, udp(B1, A1, Buffer.from('from the peer')));
      const wire = peerShim(original, TAG_A, B2, A2);
      const wireLength = wire.length;
      const out = asBuffer(a.dp.inbound(wire));
      assert.ok(out.equals(original), out.toString('hex'));
      assert.ok(out.subarray(8, 24).equals(addr(B1)), 'source: the peer ULID');
      assert.ok(out.subarray(24, 40).equals(addr(A1)), 'destination: our ULID');
      assert.ok(udpChecksumVerifies(out, 40), 'the UDP checksum holds again');
      assert.equal(a.dp.stats.inboundPackets, 1);
      assert.equal(a.dp.stats.deshimmedPackets, 1);
      assert.equal(a.ctx.counters.deshimmedPackets, 1);
      assert.equal(a.ctx.counters.deshimmedOctets, wireLength, 'octets before stripping');
      assert.equal(a.ctx.counters.lastDeshimmedAt, 777);
      assert.deepEqual(a.dp.stats.drops, zeroDrops());
      assert.equal(a.hooks.control.length + a.hooks.unknownTags.length, 0);
    });

    it('any verified peer locator to any local locator is accepted, ULIDs included, whatever the current pair', () => {
      const a = host(specA({ locatorPair: undefined }));
      const original = packet(B1, A1, [{ type: IPPROTO_HOPOPTS }], IPPROTO_TCP, tcp(Buffer.from('segment')));
      for (const [s, d] of [[B1, A1], [B1, A2], [B2, A1], [B2, A2]] as const) {
        assert.ok(asBuffer(a.dp.inbound(peerShim(original, TAG_A, s, d))).equals(original), `${s} → ${d}`);
      }
      assert.equal(a.ctx.counters.deshimmedPackets, 4);
    });

    const roundTrips: { name: string; upper: number; chain: Ext[]; body: (src: string, dst: string, data: Buffer) => Buffer }[] = [
      { name: 'UDP', upper: IPPROTO_UDP, chain: [], body: udp },
      { name: 'TCP-like', upper: IPPROTO_TCP, chain: [], body: (_s, _d, data) => tcp(data) },
      { name: 'UDP after Hop-by-Hop, fragmented', upper: IPPROTO_UDP, chain: [{ type: IPPROTO_HOPOPTS }, { type: IPPROTO_FRAGMENT }], body: udp },
      { name: 'TCP-like after Destination Options', upper: IPPROTO_TCP, chain: [{ type: IPPROTO_DSTOPTS, length: 24 }], body: (_s, _d, data) => tcp(data) },
    ];
    for (const rt of roundTrips) {
      it(`round trip ${rt.name}, random sizes: A's outbound is B's inbound, and back`, () => {
        const a = host(specA());
        const b = host(specB());
        const rand = prng(0x5eed + rt.upper + rt.chain.length);
        let sent = 0;
        for (let i = 0; i < 200; i++) {
          const size = i < 2 ? [0, 1400][i] as number : rand() % 1400;
          const fromA = i % 2 === 0;
          const [me, them, src, dst] = fromA ? [a, b, A1, B1] : [b, a, B1, A1];
          const original = packet(src, dst, rt.chain, rt.upper, rt.body(src, dst, randomBytes(rand, size)));
          const keep = Buffer.from(original);
          const wire = asBuffer(me.dp.outbound(original));
          assert.ok(original.equals(keep));
          assert.ok(wire.subarray(8, 40).equals(Buffer.concat(fromA ? [addr(A2), addr(B2)] : [addr(B2), addr(A2)])));
          if (rt.upper === IPPROTO_UDP && rt.chain.length === 0) assert.ok(!udpChecksumVerifies(wire, 48), 'the checksum covers the ULIDs, not the locators');
          const back = asBuffer(them.dp.inbound(wire));
          assert.ok(back.equals(original), `size ${size}: ${back.toString('hex')}`);
          if (rt.upper === IPPROTO_UDP && rt.chain.length === 0) assert.ok(udpChecksumVerifies(back, 40));
          sent++;
        }
        assert.equal(a.ctx.counters.shimmedPackets + b.ctx.counters.shimmedPackets, sent);
        assert.equal(a.ctx.counters.deshimmedPackets, b.ctx.counters.shimmedPackets);
        assert.equal(b.ctx.counters.deshimmedPackets, a.ctx.counters.shimmedPackets);
        assert.equal(a.ctx.counters.deshimmedOctets, b.ctx.counters.shimmedOctets);
        assert.equal(b.ctx.counters.deshimmedOctets, a.ctx.counters.shimmedOctets);
        assert.deepEqual([a.dp.stats.drops, b.dp.stats.drops], [zeroDrops(), zeroDrops()]);
      });
    }
  });

  describe('inbound drops', () => {
    const original = packet(B1, A1, [], IPPROTO_UDP, udp(B1, A1, Buffer.from('payload')));

    it('an unknown tag: drop, counted globally, and hooks.unknownContextTag gets the tag and the packet', () => {
      const a = host(specA());
      const wire = peerShim(original, 0x1234_5678_9abc, B2, A2);
      const copy = Buffer.from(wire);
      assert.equal(a.dp.inbound(wire), 'drop');
      assert.deepEqual(a.hooks.unknownTags.map((u) => u.tag), [0x1234_5678_9abc]);
      assert.equal(a.hooks.unknownTags[0]?.packet, wire);
      assert.ok(wire.equals(copy), 'unchanged');
      assert.deepEqual(a.dp.stats.drops, dropsOnly('unknown-context-tag'));
      assert.deepEqual(a.ctx.counters.drops, zeroDrops());
      // The peer's own tag is not ours either.
      assert.equal(a.dp.inbound(peerShim(original, TAG_B, B2, A2)), 'drop');
      assert.deepEqual(a.hooks.unknownTags.map((u) => u.tag), [0x1234_5678_9abc, TAG_B]);
      assert.equal(a.dp.stats.deshimmedPackets, 0);
    });

    it('a source not in the peer set (a stranger, one of our locators): source-locator-not-in-peer-set, on the context', () => {
      const a = host(specA());
      for (const s of ['2001:db8:b9::b', A2, '::']) {
        const wire = peerShim(original, TAG_A, s, A2);
        const copy = Buffer.from(wire);
        assert.equal(a.dp.inbound(wire), 'drop', s);
        assert.ok(wire.equals(copy), 'unchanged');
      }
      assert.deepEqual(a.ctx.counters.drops, dropsOnly('source-locator-not-in-peer-set', 3));
      assert.deepEqual(a.dp.stats.drops, dropsOnly('source-locator-not-in-peer-set', 3));
      assert.equal(a.ctx.counters.deshimmedPackets, 0);
      assert.equal(a.hooks.unknownTags.length, 0);
    });

    it('a destination not among our locators (a stranger, a peer locator): destination-locator-not-in-local-set', () => {
      const a = host(specA());
      for (const d of ['2001:db8:a9::a', B2]) assert.equal(a.dp.inbound(peerShim(original, TAG_A, B2, d)), 'drop', d);
      assert.deepEqual(a.ctx.counters.drops, dropsOnly('destination-locator-not-in-local-set', 2));
      assert.deepEqual(a.dp.stats.drops, dropsOnly('destination-locator-not-in-local-set', 2));
    });

    it("a peer locator marked 'unverified' is refused; the peer ULID still passes", () => {
      const a = host(specA({ locatorPair: undefined }));
      const b2 = a.ctx.peerLocators[1];
      assert.ok(b2 && b2.text === B2);
      b2.verification = 'unverified';
      refreshLocatorKeys(a.ctx);
      assert.equal(a.dp.inbound(peerShim(original, TAG_A, B2, A2)), 'drop');
      assert.deepEqual(a.ctx.counters.drops, dropsOnly('source-locator-not-in-peer-set'));
      assert.ok(asBuffer(a.dp.inbound(peerShim(original, TAG_A, B1, A2))).equals(original));
      b2.verification = 'hba';
      refreshLocatorKeys(a.ctx);
      assert.ok(asBuffer(a.dp.inbound(peerShim(original, TAG_A, B2, A2))).equals(original), 'accepted once verified');
    });

    it('truncated and malformed packets: drop (malformed, globally), lastError says why', () => {
      const a = host(specA());
      const wire = peerShim(original, TAG_A, B2, A2);
      const cases: [string, Buffer, string][] = [
        ['empty', Buffer.alloc(0), 'TRUNCATED'],
        ['39 octets', wire.subarray(0, 39), 'TRUNCATED'],
        ['cut in the payload header', (() => { const p = Buffer.from(wire.subarray(0, 44)); p.writeUInt16BE(4, 4); return p; })(), 'HEADER_OVERRUN'],
        ['cut anywhere (Payload Length mismatch)', wire.subarray(0, wire.length - 1), 'LENGTH_MISMATCH'],
        ['version 4', (() => { const p = Buffer.from(wire); p[0] = 0x45; return p; })(), 'BAD_VERSION'],
        ['Hdr Ext Len 1 with P = 1', (() => { const p = Buffer.from(wire); p[41] = 1; return p; })(), 'BAD_HDR_EXT_LEN'],
        ['no Shim6 header', original, 'NO_SHIM6_HEADER'],
      ];
      let n = 0;
      for (const [name, p, code] of cases) {
        assert.equal(a.dp.inbound(p), 'drop', name);
        n++;
        assert.equal(a.dp.lastError?.code, code, name);
        assert.deepEqual(a.dp.stats.drops, dropsOnly('malformed', n), name);
      }
      assert.equal(a.dp.stats.inboundPackets, n);
      assert.deepEqual(a.ctx.counters.drops, zeroDrops(), 'no context is known for a malformed packet');
      assert.equal(a.hooks.control.length + a.hooks.unknownTags.length, 0);
      // A good packet afterwards is still fine.
      assert.ok(asBuffer(a.dp.inbound(wire)).equals(original));
    });

    it('a control message (P = 0, a real I1): drop, handed to hooks.controlMessage, counted as a control message', () => {
      const a = host(specA());
      const i1 = encodeControlMessage({ type: 'I1', initiatorContextTag: TAG_B, initiatorNonce: 0xdeadbeef, options: [] });
      assert.equal((i1[2] as number) & 0x80, 0, 'P = 0');
      const p = packet(B1, A1, [], IPPROTO_SHIM6, i1);
      const copy = Buffer.from(p);
      assert.equal(a.dp.inbound(p), 'drop');
      assert.equal(a.hooks.control.length, 1);
      assert.equal(a.hooks.control[0], p, 'the whole packet, IPv6 header included');
      assert.ok(p.equals(copy));
      assert.equal(a.dp.stats.controlMessages, 1);
      assert.deepEqual(a.dp.stats.drops, zeroDrops(), 'not a drop: consumed');
      assert.equal(a.dp.lastError, undefined);
      assert.equal(a.hooks.unknownTags.length, 0);
      // After a Hop-by-Hop header too, and with any addresses (no context is involved).
      a.dp.inbound(packet('2001:db8:c1::c', '2001:db8:c2::c', [{ type: IPPROTO_HOPOPTS }], IPPROTO_SHIM6, i1));
      assert.equal(a.hooks.control.length, 2);
      assert.equal(a.dp.stats.controlMessages, 2);
      assert.equal(a.dp.stats.inboundPackets, 2);
      assert.equal(a.ctx.counters.deshimmedPackets, 0);
    });
  });

  describe('properties', () => {
    /** Which locators each side sends from: at least one side off its ULID. */
    const pair = fc.constantFrom<[string, string]>([A2, B2], [A1, B2], [A2, B1]);

    it('outbound on one host then inbound on the other gives the exact original packet (fast-check)', () => {
      fc.assert(
        fc.property(routingChain, endpointChain, upperLayer, fc.uint8Array({ maxLength: 1000 }), contextTag, contextTag, pair, fc.boolean(), (pre, end, up, body, tagA, tagB, [la, lb], fromA) => {
          const a = host(specA({ localContextTag: tagA, peerContextTag: tagB, locatorPair: { local: la, peer: lb } }), { defaultPathMtu: 9000 });
          const b = host(specB({ localContextTag: tagB, peerContextTag: tagA, locatorPair: { local: lb, peer: la } }), { defaultPathMtu: 9000 });
          const [me, them, src, dst] = fromA ? [a, b, A1, B1] : [b, a, B1, A1];
          const original = packet(src, dst, [...pre, ...end], up, body);
          const keep = Buffer.from(original);
          const wire = asBuffer(me.dp.outbound(original));
          assert.ok(original.equals(keep), 'outbound leaves its input alone');
          assert.equal(wire.length, original.length + 8);
          const insert = 40 + pre.reduce((n, h) => n + (h.length ?? 8), 0);
          const nextHeaderOffset = pre.length === 0 ? 6 : insert - (pre[pre.length - 1]?.length ?? 8);
          assert.ok(wire.equals(expectedShimmed(original, insert, nextHeaderOffset, fromA ? tagB : tagA, fromA ? la : lb, fromA ? lb : la)));
          const back = asBuffer(them.dp.inbound(wire));
          assert.ok(back.equals(original));
          assert.equal(me.ctx.counters.shimmedPackets, 1);
          assert.equal(them.ctx.counters.deshimmedPackets, 1);
          assert.equal(them.ctx.counters.deshimmedOctets, me.ctx.counters.shimmedOctets);
          assert.deepEqual([me.dp.stats.drops, them.dp.stats.drops], [zeroDrops(), zeroDrops()]);
        }),
        { seed: 0x5eed6, numRuns: 1000 },
      );
    });
  });
});
