/**
 * Builds whole IPv6 packets for tests (the data plane and tshark see whole packets).
 */
import { ipv6 } from '../../protocol/address';
import { onesComplementSum } from '../../protocol/checksum';
import { IPPROTO_UDP } from '../../protocol/ipv6-packet';

export interface Ipv6PacketSpec {
  /** Text, or the 16 octets. */
  source: string | Uint8Array;
  destination: string | Uint8Array;
  /** Next Header of the IPv6 header: the first extension header or the upper layer. */
  nextHeader: number;
  payload: Uint8Array;
  hopLimit?: number;
  /** Version, Traffic Class and Flow Label: the first 32-bit word (default 0x60000000). */
  firstWord?: number;
}

/** A 40-octet IPv6 header with Payload Length set, followed by the payload. */
export function ipv6Packet(spec: Ipv6PacketSpec): Buffer {
  const header = Buffer.alloc(40);
  header.writeUInt32BE(spec.firstWord ?? 0x6000_0000, 0);
  header.writeUInt16BE(spec.payload.length, 4);
  header[6] = spec.nextHeader;
  header[7] = spec.hopLimit ?? 64;
  header.set(typeof spec.source === 'string' ? ipv6(spec.source) : spec.source, 8);
  header.set(typeof spec.destination === 'string' ? ipv6(spec.destination) : spec.destination, 24);
  return Buffer.concat([header, spec.payload]);
}

/** RFC 8200 section 8.1 pseudo-header of (source, destination), summed (ones' complement). */
export function pseudoHeaderSum(source: Uint8Array, destination: Uint8Array, upperLayerLength: number, nextHeader: number): number {
  const pseudo = Buffer.alloc(40);
  pseudo.set(source, 0);
  pseudo.set(destination, 16);
  pseudo.writeUInt32BE(upperLayerLength, 32);
  pseudo[39] = nextHeader;
  return onesComplementSum(pseudo, 0, pseudo.length);
}

const octets = (a: string | Uint8Array): Uint8Array => (typeof a === 'string' ? ipv6(a) : a);

/** A UDP header and data with the checksum over the IPv6 pseudo-header of (source, destination). */
export function udpDatagram(source: string | Uint8Array, destination: string | Uint8Array, sourcePort: number, destinationPort: number, data: Uint8Array): Buffer {
  const udp = Buffer.alloc(8 + data.length);
  udp.writeUInt16BE(sourcePort, 0);
  udp.writeUInt16BE(destinationPort, 2);
  udp.writeUInt16BE(udp.length, 4);
  udp.set(data, 8);
  const sum = onesComplementSum(udp, 0, udp.length, pseudoHeaderSum(octets(source), octets(destination), udp.length, IPPROTO_UDP));
  udp.writeUInt16BE(~sum & 0xffff || 0xffff, 6);
  return udp;
}

/** True if the UDP datagram at `offset` (to the end of the packet) verifies with the packet's own addresses. */
export function udpChecksumVerifies(packet: Buffer, offset: number): boolean {
  const initial = pseudoHeaderSum(packet.subarray(8, 24), packet.subarray(24, 40), packet.length - offset, IPPROTO_UDP);
  return onesComplementSum(packet, offset, packet.length, initial) === 0xffff;
}
