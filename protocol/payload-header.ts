/**
 * The Shim6 payload extension header (RFC 5533 section 5, "Payload Extension Header
 * Format") and the data plane's packet surgery with it:
 *
 *   Next Header (8) | Hdr Ext Len (8) = 0 | P (1) = 1 | Receiver Context Tag (47)
 *
 * Outbound, shimPacket rewrites the ULIDs to the current locators and inserts the header;
 * inbound, peekReceiverContextTag reads the tag (to find the context, whose locators the
 * handler then checks against SOURCE_ADDRESS_OFFSET / DESTINATION_ADDRESS_OFFSET with
 * sameAddress), and deshimPacket / deshimPacketInPlace strip it and restore the ULIDs.
 * Transport checksums are left alone: they cover the ULIDs, which the receiver restores.
 *
 * Per packet: at most one new buffer, no closures, no address formatting. Bad packets give
 * a PacketError; only bad arguments from our own code (tags, addresses) throw RangeError.
 */
import { IPV6_ADDRESS_LENGTH } from './address';
import { MAX_CONTEXT_TAG } from './constants';
import * as contextTag from './context-tag';
import * as ip from './ipv6-packet';
import { HeaderPosition, PacketError, PacketErrorCode } from './ipv6-packet';

// Read once at load. These are used per packet, and each use of an imported name is a
// property load on the other module's exports object (tsc's CommonJS; a getter call under
// tsx), which this path measurably paid for.
const {
  DESTINATION_ADDRESS_OFFSET,
  IPPROTO_SHIM6,
  IPV6_HEADER_LENGTH,
  MAX_PAYLOAD_LENGTH,
  PAYLOAD_LENGTH_OFFSET,
  SOURCE_ADDRESS_OFFSET,
  locateShim6Header,
  locateShimInsertionPoint,
} = ip;
const { readContextTag, writeContextTag } = contextTag;
const MAX_TAG = MAX_CONTEXT_TAG;
const ADDRESS_LENGTH = IPV6_ADDRESS_LENGTH;

export { DESTINATION_ADDRESS_OFFSET, SOURCE_ADDRESS_OFFSET };

/** The payload extension header is always 8 octets (Hdr Ext Len 0). */
const PAYLOAD_HEADER_LENGTH = 8;
export { PAYLOAD_HEADER_LENGTH };
/** The P bit, top bit of the third octet: 1 in a payload header, 0 in a control message. */
const P_BIT = 0x80;

export interface PayloadHeader {
  /** What follows the payload header. */
  nextHeader: number;
  /** 47 bits, allocated by the receiver to identify its context. */
  receiverContextTag: number;
}

/** A packet with its payload header taken out and its ULIDs restored. */
export interface DeshimmedPacket {
  receiverContextTag: number;
  packet: Buffer;
}

function checkNextHeader(nextHeader: number): void {
  if (!Number.isInteger(nextHeader) || nextHeader < 0 || nextHeader > 0xff) {
    throw new RangeError(`Next Header must fit 8 bits: ${nextHeader}`);
  }
}

function checkTag(tag: number): void {
  if (!(Number.isInteger(tag) && tag >= 0 && tag <= MAX_TAG)) throw new RangeError(`receiver context tag must fit 47 bits: ${tag}`);
}

function checkAddress(address: Uint8Array, what: string): void {
  if (address.length !== ADDRESS_LENGTH) throw new RangeError(`${what} must be ${ADDRESS_LENGTH} octets, not ${address.length}`);
}

/** Writes a payload header at buf[offset, offset + 8). Throws RangeError on a bad Next Header or tag. */
export function writePayloadHeader(buf: Uint8Array, offset: number, nextHeader: number, receiverContextTag: number): void {
  checkNextHeader(nextHeader);
  checkTag(receiverContextTag);
  buf[offset] = nextHeader;
  buf[offset + 1] = 0;
  writeContextTag(buf, offset + 2, receiverContextTag, 1);
}

/** The 8 octets of a payload header. Throws RangeError on a bad Next Header or tag. */
export function encodePayloadHeader(nextHeader: number, receiverContextTag: number): Buffer {
  const buf = Buffer.alloc(PAYLOAD_HEADER_LENGTH);
  writePayloadHeader(buf, 0, nextHeader, receiverContextTag);
  return buf;
}

/** What is wrong with the payload header at buf[offset], if anything. */
function payloadHeaderError(buf: Uint8Array, offset: number, shortCode: PacketErrorCode): PacketError | undefined {
  if (!(offset >= 0) || offset + PAYLOAD_HEADER_LENGTH > buf.length) {
    return new PacketError(shortCode, offset, `payload header at ${offset} needs ${PAYLOAD_HEADER_LENGTH} octets, ${Math.max(0, buf.length - offset)} left`);
  }
  if (((buf[offset + 2] as number) & P_BIT) === 0) {
    return new PacketError('WRONG_P_BIT', offset + 2, 'P bit is 0: a Shim6 control message, not a payload extension header');
  }
  const hdrExtLen = buf[offset + 1] as number;
  if (hdrExtLen !== 0) return new PacketError('BAD_HDR_EXT_LEN', offset + 1, `payload header with Hdr Ext Len ${hdrExtLen}, not 0`);
  return undefined;
}

/** Decodes the payload header at buf[offset]: TRUNCATED, WRONG_P_BIT or BAD_HDR_EXT_LEN if it is not one. */
export function decodePayloadHeader(buf: Uint8Array, offset = 0): PayloadHeader | PacketError {
  const bad = payloadHeaderError(buf, offset, 'TRUNCATED');
  if (bad) return bad;
  return { nextHeader: buf[offset] as number, receiverContextTag: readContextTag(buf, offset + 2) };
}

/** Scratch position for the locate* calls (reused: JS runs each call to completion). */
const at: HeaderPosition = { offset: 0, nextHeaderOffset: 0 };

/**
 * Inbound, one walk of the chain: finds and checks the payload header, into `out` (the
 * Receiver Context Tag is the 6 octets at out.offset + 2, readContextTag). NO_SHIM6_HEADER
 * when there is none; WRONG_P_BIT when the Shim6 header is a control message. Follow it with
 * stripPayloadHeaderInPlace on the same packet and position to deshim without walking again.
 */
export function locatePayloadHeader(packet: Uint8Array, out: HeaderPosition = at): PacketError | undefined {
  const found = locateShim6Header(packet, out);
  if (typeof found !== 'boolean') return found;
  if (!found) return new PacketError('NO_SHIM6_HEADER', out.offset, `no Shim6 header: the chain ends at ${out.offset} with Next Header ${packet[out.nextHeaderOffset] as number}`);
  return payloadHeaderError(packet, out.offset, 'HEADER_OVERRUN');
}

/**
 * Outbound: a new packet (exactly one allocation) with Source and Destination Address set to
 * the locators, the payload header inserted where RFC 5533 puts it (see
 * locateShimInsertionPoint), the Next Header that named the following header patched to 140
 * and Payload Length + 8. A PacketError when the packet is malformed, already carries a Shim6
 * header there (SHIM6_PRESENT), or would grow past Payload Length 65535 (TOO_LONG: jumbograms
 * are not supported). Throws RangeError on a bad tag or locator (those come from our code).
 */
export function shimPacket(packet: Uint8Array, receiverContextTag: number, sourceLocator: Uint8Array, destinationLocator: Uint8Array): Buffer | PacketError {
  checkTag(receiverContextTag);
  checkAddress(sourceLocator, 'source locator');
  checkAddress(destinationLocator, 'destination locator');
  const bad = locateShimInsertionPoint(packet, at);
  if (bad) return bad;
  const insert = at.offset;
  const nextHeaderOffset = at.nextHeaderOffset;
  const nextHeader = packet[nextHeaderOffset] as number;
  if (nextHeader === IPPROTO_SHIM6) {
    return new PacketError('SHIM6_PRESENT', insert, 'the packet already has a Shim6 header where the payload header would go');
  }
  const length = packet.length;
  const payloadLength = length - IPV6_HEADER_LENGTH + PAYLOAD_HEADER_LENGTH;
  if (payloadLength > MAX_PAYLOAD_LENGTH) {
    return new PacketError('TOO_LONG', PAYLOAD_LENGTH_OFFSET, `Payload Length would be ${payloadLength}, over ${MAX_PAYLOAD_LENGTH} (jumbograms are not supported)`);
  }
  const out = Buffer.allocUnsafe(length + PAYLOAD_HEADER_LENGTH);
  // Whole packet 8 octets in, then the headers before the insertion point back to the front:
  // no sub-range views, one native copy plus a short memmove.
  out.set(packet, PAYLOAD_HEADER_LENGTH);
  out.copyWithin(0, PAYLOAD_HEADER_LENGTH, PAYLOAD_HEADER_LENGTH + insert);
  out[insert] = nextHeader;
  out[insert + 1] = 0;
  writeContextTag(out, insert + 2, receiverContextTag, 1);
  out[nextHeaderOffset] = IPPROTO_SHIM6;
  out[PAYLOAD_LENGTH_OFFSET] = payloadLength >>> 8;
  out[PAYLOAD_LENGTH_OFFSET + 1] = payloadLength & 0xff;
  out.set(sourceLocator, SOURCE_ADDRESS_OFFSET);
  out.set(destinationLocator, DESTINATION_ADDRESS_OFFSET);
  return out;
}

/**
 * Inbound, cheap: the Receiver Context Tag of the packet's payload header, without copying.
 * NO_SHIM6_HEADER when there is none; WRONG_P_BIT when the Shim6 header is a control message.
 */
export function peekReceiverContextTag(packet: Uint8Array): number | PacketError {
  const bad = locatePayloadHeader(packet);
  if (bad) return bad;
  return readContextTag(packet, at.offset + 2);
}

/** Puts the stripped packet's remaining fields right: Next Header, Payload Length, ULIDs. */
function restore(out: Uint8Array, nextHeaderOffset: number, nextHeader: number, sourceUlid: Uint8Array, destinationUlid: Uint8Array): void {
  out[nextHeaderOffset] = nextHeader;
  const payloadLength = out.length - IPV6_HEADER_LENGTH;
  out[PAYLOAD_LENGTH_OFFSET] = payloadLength >>> 8;
  out[PAYLOAD_LENGTH_OFFSET + 1] = payloadLength & 0xff;
  out.set(sourceUlid, SOURCE_ADDRESS_OFFSET);
  out.set(destinationUlid, DESTINATION_ADDRESS_OFFSET);
}

/**
 * Deshims a packet whose payload header locatePayloadHeader(packet, pos) already found, in
 * the caller's buffer, with no second walk of the chain: moves the headers before the payload
 * header 8 octets up over it, restores Next Header, Payload Length and the ULIDs, and returns
 * the view from octet 8 (measured faster than copying two sub-ranges, each needs a view).
 * The ULIDs must be 16 octets (our own code's).
 */
export function stripPayloadHeaderInPlace(buf: Buffer, pos: HeaderPosition, sourceUlid: Uint8Array, destinationUlid: Uint8Array): Buffer {
  const shim = pos.offset;
  const nextHeaderOffset = pos.nextHeaderOffset;
  const nextHeader = buf[shim] as number;
  buf.copyWithin(PAYLOAD_HEADER_LENGTH, 0, shim);
  const out = buf.subarray(PAYLOAD_HEADER_LENGTH);
  restore(out, nextHeaderOffset, nextHeader, sourceUlid, destinationUlid);
  return out;
}

/**
 * Inbound: the packet without its payload header (a new buffer; `packet` is not changed),
 * with the Next Header restored, Payload Length − 8 and the addresses set to the ULIDs,
 * and the tag it carried. Throws RangeError on a bad ULID (those come from our code).
 */
export function deshimPacket(packet: Uint8Array, sourceUlid: Uint8Array, destinationUlid: Uint8Array): DeshimmedPacket | PacketError {
  checkAddress(sourceUlid, 'source ULID');
  checkAddress(destinationUlid, 'destination ULID');
  const bad = locatePayloadHeader(packet);
  if (bad) return bad;
  const receiverContextTag = readContextTag(packet, at.offset + 2);
  const copy = Buffer.allocUnsafe(packet.length);
  copy.set(packet, 0);
  return { receiverContextTag, packet: stripPayloadHeaderInPlace(copy, at, sourceUlid, destinationUlid) };
}

/**
 * deshimPacket without the copy, for a packet buffer the caller owns (as the NFQUEUE handler
 * does): moves the headers before the payload header (usually just the 40-octet IPv6 header)
 * 8 octets up over it and returns `packet.subarray(8)`. `packet` is changed only on success.
 * Get the tag first with peekReceiverContextTag.
 */
export function deshimPacketInPlace(packet: Buffer, sourceUlid: Uint8Array, destinationUlid: Uint8Array): Buffer | PacketError {
  checkAddress(sourceUlid, 'source ULID');
  checkAddress(destinationUlid, 'destination ULID');
  const bad = locatePayloadHeader(packet);
  if (bad) return bad;
  return stripPayloadHeaderInPlace(packet, at, sourceUlid, destinationUlid);
}
