/**
 * ICMPv6 Packet Too Big from a router on a shimmed path (pure).
 *
 * A router that cannot forward one of our shimmed packets sends the Packet Too Big to our
 * locator. The packet it quotes has the locators and the payload extension header. The
 * kernel cannot give that report to the transport: the connection uses the ULIDs, the quote
 * names the locators, and no kernel protocol handles Next Header 140. So shim6d takes it:
 * - find the context by the quoted locator pair and the peer's context tag in the quoted
 *   payload header;
 * - lower the context's path MTU;
 * - the data plane then answers the next TCP segment that does not fit with a Packet Too
 *   Big of its own, about the ULID packet, which the kernel does act on
 *   (shim6d/packet-too-big.ts).
 *
 * As RFC 8201 asks of any PMTU report, it is only believed downwards:
 * - it must report an MTU smaller than the packet it quotes;
 * - that MTU must be smaller than the path MTU the context already has;
 * - an MTU under 1280 counts as 1280.
 */
import { formatIPv6 } from '../protocol/address';
import { IPV6_MIN_MTU } from '../protocol/constants';
import { IPV6_HEADER_LENGTH, PacketError, type HeaderPosition } from '../protocol/ipv6-packet';
import { locatePayloadHeader } from '../protocol/payload-header';
import { readContextTag } from '../protocol/context-tag';
import { isShimmed, type ShimContext } from './context';
import type { ContextTable } from './context-table';
import { ICMPV6_PACKET_TOO_BIG } from './packet-too-big';

/** What a Packet Too Big about one of our shimmed packets says. */
export interface PathMtuReport {
  /** The MTU the router reported (not yet raised to 1280). */
  mtu: number;
  /** The quoted packet's locators: ours (source) and the peer's (destination). */
  local: string;
  peer: string;
  /** The Receiver Context Tag of the quoted payload header: the peer's tag. */
  peerContextTag: number;
  /** The length of the packet that did not fit (from its Payload Length). */
  packetLength: number;
}

/**
 * The report an ICMPv6 message (from its type field on) makes about a shimmed packet: type 2
 * (Packet Too Big), code 0, quoting an IPv6 packet with a Shim6 payload extension header.
 * Anything else (another ICMPv6 message, a quote without a payload header, a quote cut before
 * it): undefined. Never throws.
 */
export function parsePathMtuReport(icmp: Uint8Array): PathMtuReport | undefined {
  if (icmp.length < 8 + IPV6_HEADER_LENGTH + 8 || icmp[0] !== ICMPV6_PACKET_TOO_BIG || icmp[1] !== 0) return undefined;
  const mtu = Buffer.from(icmp.buffer, icmp.byteOffset, icmp.length).readUInt32BE(4);
  // The quote is cut to fit 1280 octets; make its Payload Length agree with what is there.
  const quoted = Buffer.from(icmp.subarray(8));
  if (((quoted[0] as number) & 0xf0) !== 0x60) return undefined;
  const packetLength = IPV6_HEADER_LENGTH + quoted.readUInt16BE(4);
  if (packetLength < quoted.length) return undefined;
  quoted.writeUInt16BE(quoted.length - IPV6_HEADER_LENGTH, 4);
  const at: HeaderPosition = { offset: 0, nextHeaderOffset: 0 };
  const bad = locatePayloadHeader(quoted, at);
  if (bad instanceof PacketError) return undefined;
  return {
    mtu,
    local: formatIPv6(quoted.subarray(8, 24)),
    peer: formatIPv6(quoted.subarray(24, 40)),
    peerContextTag: readContextTag(quoted, at.offset + 2),
    packetLength,
  };
}

export type PathMtuOutcome =
  | { applied: true; ctx: ShimContext; before: number | undefined; after: number }
  | { applied: false; reason: 'no-context' | 'not-smaller'; ctx?: ShimContext };

/**
 * Lowers the path MTU of the shimmed context the report is about. The context is the one
 * whose current locator pair is the quoted pair and whose peer context tag is the quoted tag.
 * A PTB is rare (routers rate-limit them), so a walk of the table is affordable here.
 */
export function applyPathMtuReport(table: ContextTable, report: PathMtuReport): PathMtuOutcome {
  let ctx: ShimContext | undefined;
  for (const c of table.values()) {
    if (c.peerContextTag === report.peerContextTag && isShimmed(c) && c.current.local.text === report.local && c.current.peer.text === report.peer) {
      ctx = c;
      break;
    }
  }
  if (!ctx) return { applied: false, reason: 'no-context' };
  const after = Math.max(report.mtu, IPV6_MIN_MTU);
  const before = ctx.pathMtu;
  if (report.mtu >= report.packetLength || (before !== undefined && after >= before)) return { applied: false, reason: 'not-smaller', ctx };
  ctx.pathMtu = after;
  return { applied: true, ctx, before, after };
}
