/**
 * Writes classic libpcap files (the format tshark, tcpdump and Wireshark all read), so tests
 * can have packets we build decoded by an independent implementation.
 *
 * Layout: a 24-octet global header (magic 0xa1b2c3d4, version 2.4, snaplen, link type), then
 * per packet a 16-octet record header (seconds, microseconds, captured length, original
 * length) and the captured octets. Written little-endian; readers detect it from the magic.
 */
import { writeFileSync } from 'node:fs';

/** LINKTYPE_IPV6 (229): each record is a raw IPv6 packet, starting at the IPv6 header. */
export const LINKTYPE_IPV6 = 229;
/** LINKTYPE_ETHERNET (1), for captures that carry link-layer frames. */
export const LINKTYPE_ETHERNET = 1;

const PCAP_MAGIC = 0xa1b2c3d4;
const GLOBAL_HEADER_LENGTH = 24;
const RECORD_HEADER_LENGTH = 16;

export interface PcapOptions {
  /** Link type of every record (default LINKTYPE_IPV6). */
  linkType?: number;
  /** Longest record captured (default 65535); longer packets are cut, with their original length kept. */
  snapLength?: number;
  /** Time stamp of the first record in seconds since 1970 (default 0); each next one is 1 ms later. */
  startSeconds?: number;
}

/** The octets of a pcap file holding `packets` in order. */
export function encodePcap(packets: readonly Uint8Array[], options: PcapOptions = {}): Buffer {
  const linkType = options.linkType ?? LINKTYPE_IPV6;
  const snapLength = options.snapLength ?? 65535;
  const startSeconds = options.startSeconds ?? 0;
  let total = GLOBAL_HEADER_LENGTH;
  for (const p of packets) total += RECORD_HEADER_LENGTH + Math.min(p.length, snapLength);
  const out = Buffer.alloc(total);
  out.writeUInt32LE(PCAP_MAGIC, 0);
  out.writeUInt16LE(2, 4); // version 2.4
  out.writeUInt16LE(4, 6);
  out.writeInt32LE(0, 8); // thiszone: GMT
  out.writeUInt32LE(0, 12); // sigfigs
  out.writeUInt32LE(snapLength, 16);
  out.writeUInt32LE(linkType, 20);
  let at = GLOBAL_HEADER_LENGTH;
  packets.forEach((p, i) => {
    const captured = Math.min(p.length, snapLength);
    out.writeUInt32LE(startSeconds + Math.floor(i / 1000), at);
    out.writeUInt32LE((i % 1000) * 1000, at + 4);
    out.writeUInt32LE(captured, at + 8);
    out.writeUInt32LE(p.length, at + 12);
    out.set(p.subarray(0, captured), at + RECORD_HEADER_LENGTH);
    at += RECORD_HEADER_LENGTH + captured;
  });
  return out;
}

/** Writes `packets` to a pcap file at `path` (replacing it). */
export function writePcap(path: string, packets: readonly Uint8Array[], options: PcapOptions = {}): void {
  writeFileSync(path, encodePcap(packets, options));
}
