/**
 * A router's ICMPv6 Packet Too Big about one of our shimmed packets (shim6d/path-mtu-report):
 * parsing, finding the context by the quoted locator pair and peer tag, and lowering its path
 * MTU only downwards.
 */
import { strict as assert } from 'node:assert';
import { ipv6 } from '../protocol/address';
import { PacketError } from '../protocol/ipv6-packet';
import { shimPacket } from '../protocol/payload-header';
import { ContextTable } from '../shim6d/context-table';
import { applyPathMtuReport, parsePathMtuReport } from '../shim6d/path-mtu-report';
import { ipv6Packet } from './support/packets';

const A1 = '2001:db8:a1::a';
const A2 = '2001:db8:a2::a';
const B1 = '2001:db8:b1::b';
const B2 = '2001:db8:b2::b';
const PEER_TAG = 0x0b0b0b0b01;

/** A TCP-sized ULID packet of `length` octets, shimmed onto (A2, B2) with the peer's tag. */
function shimmed(length: number, tag = PEER_TAG): Buffer {
  const inner = ipv6Packet({ source: A1, destination: B1, nextHeader: 6, payload: Buffer.alloc(length - 40, 0x55) });
  const out = shimPacket(inner, tag, ipv6(A2), ipv6(B2));
  if (out instanceof PacketError) throw new Error(out.message);
  return out;
}

/** What a router sends: type 2, code 0, the MTU, as much of the packet as fits in 1280 octets. */
function packetTooBig(packet: Buffer, mtu: number, type = 2, code = 0): Buffer {
  const head = Buffer.alloc(8);
  head[0] = type;
  head[1] = code;
  head.writeUInt32BE(mtu, 4);
  return Buffer.concat([head, packet.subarray(0, 1280 - 40 - 8)]);
}

function table(pathMtu?: number): ContextTable {
  const t = new ContextTable();
  const ctx = t.add({
    id: 1,
    origin: 'static',
    localUlid: A1,
    peerUlid: B1,
    localContextTag: 0x0a0a0a0a01,
    peerContextTag: PEER_TAG,
    localLocators: [A1, A2],
    peerLocators: [B1, B2],
    verification: 'static',
    locatorPair: { local: A2, peer: B2 },
  });
  ctx.pathMtu = pathMtu;
  return t;
}

describe('Packet Too Big from a router on a shimmed path', () => {
  it('parses the MTU, the quoted locators, the peer tag and the length of the packet, from a quote cut at 1232 octets', () => {
    const r = parsePathMtuReport(packetTooBig(shimmed(1500), 1400));
    assert.deepEqual(r, { mtu: 1400, local: A2, peer: B2, peerContextTag: PEER_TAG, packetLength: 1508 });
  });

  it('ignores other ICMPv6 messages, other codes, and quotes without a payload header', () => {
    assert.equal(parsePathMtuReport(packetTooBig(shimmed(1500), 1400, 1)), undefined);
    assert.equal(parsePathMtuReport(packetTooBig(shimmed(1500), 1400, 2, 1)), undefined);
    const plain = ipv6Packet({ source: A2, destination: B2, nextHeader: 6, payload: Buffer.alloc(1460) });
    assert.equal(parsePathMtuReport(packetTooBig(plain, 1400)), undefined);
    // 56 octets is the shortest that holds the ICMPv6 header, the IPv6 header and the payload header.
    for (let n = 0; n < 56; n++) assert.equal(parsePathMtuReport(packetTooBig(shimmed(1500), 1400).subarray(0, n)), undefined, `${n} octets`);
    assert.ok(parsePathMtuReport(packetTooBig(shimmed(1500), 1400).subarray(0, 56)));
    const liar = packetTooBig(shimmed(1500), 1400);
    liar.writeUInt16BE(10, 8 + 4); // Payload Length shorter than the quote
    assert.equal(parsePathMtuReport(liar), undefined);
  });

  it('lowers the path MTU of the context on that pair with that peer tag', () => {
    const t = table(1500);
    const r = parsePathMtuReport(packetTooBig(shimmed(1500), 1400));
    assert.ok(r);
    const o = applyPathMtuReport(t, r);
    assert.ok(o.applied);
    assert.equal(o.before, 1500);
    assert.equal(t.byId(1)?.pathMtu, 1400);
  });

  it('only downwards: not at or above the current path MTU, not at or above the packet it quotes; 1280 at the least', () => {
    const t = table(1400);
    const same = applyPathMtuReport(t, { mtu: 1400, local: A2, peer: B2, peerContextTag: PEER_TAG, packetLength: 1500 });
    assert.deepEqual([same.applied, same.applied ? undefined : same.reason], [false, 'not-smaller']);
    const above = applyPathMtuReport(t, { mtu: 1450, local: A2, peer: B2, peerContextTag: PEER_TAG, packetLength: 1500 });
    assert.equal(above.applied, false);
    const notTooBig = applyPathMtuReport(t, { mtu: 1300, local: A2, peer: B2, peerContextTag: PEER_TAG, packetLength: 1300 });
    assert.equal(notTooBig.applied, false);
    assert.equal(t.byId(1)?.pathMtu, 1400);
    const tiny = applyPathMtuReport(t, { mtu: 600, local: A2, peer: B2, peerContextTag: PEER_TAG, packetLength: 1400 });
    assert.ok(tiny.applied);
    assert.equal(t.byId(1)?.pathMtu, 1280);
  });

  it('a context whose path MTU was never looked up takes the reported one', () => {
    const t = table(undefined);
    assert.ok(applyPathMtuReport(t, { mtu: 1400, local: A2, peer: B2, peerContextTag: PEER_TAG, packetLength: 1508 }).applied);
    assert.equal(t.byId(1)?.pathMtu, 1400);
  });

  it('no context: another tag, another pair, or a context back on its ULID pair', () => {
    const t = table(1500);
    const report = { mtu: 1400, local: A2, peer: B2, peerContextTag: PEER_TAG, packetLength: 1508 };
    assert.equal(applyPathMtuReport(t, { ...report, peerContextTag: PEER_TAG + 1 }).applied, false);
    assert.equal(applyPathMtuReport(t, { ...report, local: A1 }).applied, false);
    const ctx = t.byId(1);
    assert.ok(ctx);
    ctx.current = { local: ctx.localUlid, peer: ctx.peerUlid };
    const o = applyPathMtuReport(t, report);
    assert.deepEqual([o.applied, o.applied ? undefined : o.reason], [false, 'no-context']);
    assert.equal(ctx.pathMtu, 1500);
  });
});
