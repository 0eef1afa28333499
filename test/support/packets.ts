/**
 * Builds whole IPv6 packets for tests (the data plane and tshark see whole packets).
 */
import { ipv6 } from '../../protocol/address';

export interface Ipv6PacketSpec {
  source: string;
  destination: string;
  nextHeader: number;
  payload: Buffer;
  hopLimit?: number;
}

/** A 40-octet IPv6 header with Payload Length set, followed by the payload. */
export function ipv6Packet(spec: Ipv6PacketSpec): Buffer {
  const header = Buffer.alloc(40);
  header[0] = 0x60;
  header.writeUInt16BE(spec.payload.length, 4);
  header[6] = spec.nextHeader;
  header[7] = spec.hopLimit ?? 64;
  ipv6(spec.source).copy(header, 8);
  ipv6(spec.destination).copy(header, 24);
  return Buffer.concat([header, spec.payload]);
}
