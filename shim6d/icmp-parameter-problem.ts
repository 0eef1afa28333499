/**
 * ICMPv6 Parameter Problem "unrecognised Next Header" about one of our I1 messages: the peer
 * has no Shim6 (RFC 5533 section 7.6), so the context goes to NO-SUPPORT with the ICMP
 * hold-down at once instead of after every I1 retransmission.
 *
 * Pure; shim6d/icmpv6-monitor.ts is the raw ICMPv6 socket that feeds it.
 */
import { formatIPv6 } from '../protocol/address';
import { IPPROTO_SHIM6, MessageType } from '../protocol/constants';
import { locateShim6Header, PacketError, type HeaderPosition } from '../protocol/ipv6-packet';

/** ICMPv6 Parameter Problem (RFC 4443 section 3.4). */
export const ICMPV6_PARAMETER_PROBLEM = 4;
const UNRECOGNISED_NEXT_HEADER = 1;

/**
 * The peer an ICMPv6 message (from its type field on) says has no Shim6: a Parameter Problem,
 * code 1, whose pointer names a Next Header field holding 140 in the packet it quotes, which
 * is one of our I1 messages. Anything else: undefined.
 */
export function parseNoShim6(icmp: Buffer): { peer: string; local: string } | undefined {
  if (icmp.length < 8 + 40 + 8 || icmp[0] !== ICMPV6_PARAMETER_PROBLEM || icmp[1] !== UNRECOGNISED_NEXT_HEADER) return undefined;
  const pointer = icmp.readUInt32BE(4);
  const invoking = icmp.subarray(8);
  if (invoking[0] === undefined || invoking[0] >> 4 !== 6 || pointer >= invoking.length || invoking[pointer] !== IPPROTO_SHIM6) return undefined;
  const at: HeaderPosition = { offset: 0, nextHeaderOffset: 0 };
  const found = locateShim6Header(invoking, at);
  if (found instanceof PacketError || !found || at.nextHeaderOffset !== pointer || invoking.length < at.offset + 3) return undefined;
  if (((invoking[at.offset + 2] as number) & 0x7f) !== MessageType.I1) return undefined;
  return { local: formatIPv6(invoking.subarray(8, 24)), peer: formatIPv6(invoking.subarray(24, 40)) };
}
