/**
 * ICMPv6 Packet Too Big (RFC 4443 section 3.2) for a packet that no longer fits once the
 * payload header is added: shim6d sends it to the packet's sender (a local ULID), as the
 * entry of a tunnel does, so the sender's stack lowers its path MTU towards the peer's ULID
 * (TCP shrinks its segments, UDP fragments at the source) instead of losing every full-size
 * packet. Pure: builds the message; the daemon sends it through a raw ICMPv6 socket, whose
 * checksum the kernel computes.
 */
import { IPV6_MIN_MTU } from '../protocol/constants';
import { IPV6_HEADER_LENGTH } from '../protocol/ipv6-packet';

export const ICMPV6_PACKET_TOO_BIG = 2;
const ICMPV6_HEADER_LENGTH = 8;
/** As much of the invoking packet as fits in a minimum-MTU packet (RFC 4443 section 2.4 (c)). */
export const MAX_INVOKING_OCTETS = IPV6_MIN_MTU - IPV6_HEADER_LENGTH - ICMPV6_HEADER_LENGTH;

/** The ICMPv6 message (checksum left 0 for the kernel): type 2, code 0, MTU, invoking packet. */
export function packetTooBigMessage(invoking: Uint8Array, mtu: number): Buffer {
  if (!Number.isInteger(mtu) || mtu < IPV6_MIN_MTU || mtu > 0xffffffff) throw new RangeError(`Packet Too Big MTU ${mtu} is below ${IPV6_MIN_MTU} or not an integer`);
  const carried = Math.min(invoking.length, MAX_INVOKING_OCTETS);
  const out = Buffer.alloc(ICMPV6_HEADER_LENGTH + carried);
  out[0] = ICMPV6_PACKET_TOO_BIG;
  out[1] = 0;
  out.writeUInt32BE(mtu, 4);
  out.set(invoking.subarray(0, carried), ICMPV6_HEADER_LENGTH);
  return out;
}
