/**
 * Whole IPv6 packets as the data plane sees them (starting at the IPv6 header): the fixed
 * header's fields, the extension-header chain (RFC 8200 section 4), and where the Shim6
 * header sits in it (RFC 5533 section 4: after the routing-related headers, before the
 * endpoint ones).
 *
 * Nothing here throws on a bad packet: every function returns a value or a PacketError
 * that says what is wrong and at which octet offset. The `locate*` functions are the
 * data plane's per-packet versions: they fill a caller-owned position and allocate nothing.
 */
import { IPPROTO_SHIM6 as SHIM6_PROTOCOL, NO_NEXT_HEADER } from './constants';

// The constants are module-local and exported in a list below, so that code here reads them
// directly: tsc's CommonJS output turns each use of an `export const` into a property load
// on the exports object, which the per-packet walk measurably paid for.

/** Length of the fixed IPv6 header (RFC 8200 section 3). */
const IPV6_HEADER_LENGTH = 40;
/** Offsets of the fixed header's fields. */
const PAYLOAD_LENGTH_OFFSET = 4;
const NEXT_HEADER_OFFSET = 6;
const SOURCE_ADDRESS_OFFSET = 8;
const DESTINATION_ADDRESS_OFFSET = 24;
/** Largest Payload Length; larger packets would be jumbograms (RFC 2675), which are not supported. */
const MAX_PAYLOAD_LENGTH = 0xffff;

/** Next Header values (IANA "Assigned Internet Protocol Numbers"). */
const IPPROTO_HOPOPTS = 0;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const IPPROTO_ROUTING = 43;
const IPPROTO_FRAGMENT = 44;
const IPPROTO_ESP = 50;
const IPPROTO_AH = 51;
const IPPROTO_ICMPV6 = 58;
const IPPROTO_NONE = NO_NEXT_HEADER;
const IPPROTO_DSTOPTS = 60;
const IPPROTO_MH = 135;
const IPPROTO_HIP = 139;
/** Shim6 (RFC 5533 section 5), the same number as constants.ts. */
const IPPROTO_SHIM6 = SHIM6_PROTOCOL;

/** Fixed length of the Fragment header. */
const FRAGMENT_HEADER_LENGTH = 8;
/**
 * Most extension headers the walk follows. Real packets carry a handful; a chain longer than
 * this is hostile or broken and is refused rather than walked (each walk stays O(cap)).
 */
const MAX_EXTENSION_HEADERS = 16;

export {
  DESTINATION_ADDRESS_OFFSET,
  FRAGMENT_HEADER_LENGTH,
  IPPROTO_AH,
  IPPROTO_DSTOPTS,
  IPPROTO_ESP,
  IPPROTO_FRAGMENT,
  IPPROTO_HIP,
  IPPROTO_HOPOPTS,
  IPPROTO_ICMPV6,
  IPPROTO_MH,
  IPPROTO_NONE,
  IPPROTO_ROUTING,
  IPPROTO_SHIM6,
  IPPROTO_TCP,
  IPPROTO_UDP,
  IPV6_HEADER_LENGTH,
  MAX_EXTENSION_HEADERS,
  MAX_PAYLOAD_LENGTH,
  NEXT_HEADER_OFFSET,
  PAYLOAD_LENGTH_OFFSET,
  SOURCE_ADDRESS_OFFSET,
};

export type PacketErrorCode =
  /** Shorter than the 40-octet IPv6 header (or, for decodePayloadHeader, than its 8 octets). */
  | 'TRUNCATED'
  /** The Version field is not 6. */
  | 'BAD_VERSION'
  /** 40 + Payload Length is not the length of the packet. */
  | 'LENGTH_MISMATCH'
  /** Payload Length 0 with a Hop-by-Hop Options header: a jumbogram (RFC 2675), not supported. */
  | 'JUMBOGRAM'
  /** An extension header (or the octets that give its length) runs past the end of the packet. */
  | 'HEADER_OVERRUN'
  /** More than MAX_EXTENSION_HEADERS extension headers. */
  | 'CHAIN_TOO_LONG'
  /** A Hop-by-Hop Options header anywhere but right after the IPv6 header (RFC 8200 section 4.3). */
  | 'MISPLACED_HOP_BY_HOP'
  /** No Shim6 header (protocol 140) in the chain. */
  | 'NO_SHIM6_HEADER'
  /** The Shim6 header is a control message (P = 0), not a payload extension header. */
  | 'WRONG_P_BIT'
  /** A payload extension header whose Hdr Ext Len is not 0. */
  | 'BAD_HDR_EXT_LEN'
  /** The packet already carries a Shim6 header where the payload header would go. */
  | 'SHIM6_PRESENT'
  /** Inserting the payload header would make Payload Length exceed 65535 (no jumbograms). */
  | 'TOO_LONG';

/**
 * What is wrong with a packet, and at which octet offset from the start of the IPv6 header.
 * Returned, never thrown (it deliberately does not extend Error: no stack trace to capture).
 */
export class PacketError {
  constructor(
    readonly code: PacketErrorCode,
    readonly offset: number,
    readonly message: string,
  ) {}

  /** One line for logs: "HEADER_OVERRUN at offset 48: ...". */
  toString(): string {
    return `${this.code} at offset ${this.offset}: ${this.message}`;
  }
}

/** One extension header of a walked chain. */
export interface ExtensionHeader {
  /** Its protocol number: the value of the Next Header octet that names it. */
  readonly type: number;
  /** Where it starts. */
  readonly offset: number;
  /** Its length in octets. */
  readonly length: number;
  /** Offset of the Next Header octet that names it (6 for the first, in the IPv6 header). */
  readonly nextHeaderOffset: number;
}

/** The extension-header chain of a packet, and where the walk stopped. */
export interface HeaderChain {
  /** Payload Length from the IPv6 header. */
  readonly payloadLength: number;
  readonly headers: ExtensionHeader[];
  /**
   * What follows the last extension header: an upper-layer protocol, No Next Header (59),
   * ESP (50: the walk stops there, what follows is encrypted) or, when `laterFragment`, the
   * type of the fragmented part.
   */
  readonly upperLayerType: number;
  readonly upperLayerOffset: number;
  readonly upperLayerNextHeaderOffset: number;
  /**
   * The packet is a fragment other than the first (non-zero Fragment Offset): what follows
   * the Fragment header is fragment data, not a header, so the walk stops there.
   */
  readonly laterFragment: boolean;
}

/** A header's place in a packet: where it starts, and the Next Header octet that names it. */
export interface HeaderPosition {
  offset: number;
  nextHeaderOffset: number;
}

/** Where the Shim6 payload header goes, and the Next Header value it takes over. */
export interface ShimInsertionPoint extends HeaderPosition {
  /** The value now in the Next Header octet at nextHeaderOffset. */
  nextHeader: number;
}

/** True for the headers the walk steps over: those in RFC 8200's generic format, Fragment and AH. */
export function isExtensionHeader(type: number): boolean {
  switch (type) {
    case IPPROTO_HOPOPTS:
    case IPPROTO_ROUTING:
    case IPPROTO_FRAGMENT:
    case IPPROTO_AH:
    case IPPROTO_DSTOPTS:
    case IPPROTO_MH:
    case IPPROTO_HIP:
    case IPPROTO_SHIM6:
    case 253: // RFC 3692-style experiments (RFC 4727)
    case 254:
      return true;
    default:
      return false; // upper layer, ESP (encrypted from here on) or No Next Header
  }
}

/**
 * The walker's state. One instance lives in this module and is reused by every call, so the
 * per-packet functions allocate nothing (JS runs them to completion, one at a time).
 */
class Cursor {
  /** 40 + Payload Length: the end of the packet. */
  end = 0;
  payloadLength = 0;
  /** Type of the current header (the value of the Next Header octet at nextHeaderOffset). */
  type = 0;
  offset = 0;
  nextHeaderOffset = 0;
  /** Length of the current header, set by measure(). */
  length = 0;
  /** Extension headers measured so far. */
  count = 0;
  /** Set by measure() on a Fragment header with a non-zero Fragment Offset. */
  laterFragment = false;
}

const cursor = new Cursor();

/** Checks the fixed header and puts the cursor on the first header after it. */
function start(packet: Uint8Array, c: Cursor): PacketError | undefined {
  const length = packet.length;
  if (length < IPV6_HEADER_LENGTH) {
    return new PacketError('TRUNCATED', length, `${length} octets: shorter than the ${IPV6_HEADER_LENGTH}-octet IPv6 header`);
  }
  const version = (packet[0] as number) >>> 4;
  if (version !== 6) return new PacketError('BAD_VERSION', 0, `version ${version}, not 6`);
  const payloadLength = ((packet[PAYLOAD_LENGTH_OFFSET] as number) << 8) | (packet[PAYLOAD_LENGTH_OFFSET + 1] as number);
  const type = packet[NEXT_HEADER_OFFSET] as number;
  if (IPV6_HEADER_LENGTH + payloadLength !== length) {
    if (payloadLength === 0 && type === IPPROTO_HOPOPTS && length > IPV6_HEADER_LENGTH) {
      return new PacketError('JUMBOGRAM', PAYLOAD_LENGTH_OFFSET, 'Payload Length 0 with a Hop-by-Hop Options header: a jumbogram (RFC 2675), not supported');
    }
    return new PacketError('LENGTH_MISMATCH', PAYLOAD_LENGTH_OFFSET, `Payload Length ${payloadLength} but ${length - IPV6_HEADER_LENGTH} octets follow the IPv6 header`);
  }
  c.end = length;
  c.payloadLength = payloadLength;
  c.type = type;
  c.offset = IPV6_HEADER_LENGTH;
  c.nextHeaderOffset = NEXT_HEADER_OFFSET;
  c.length = 0;
  c.count = 0;
  c.laterFragment = false;
  return undefined;
}

/** Measures the current header, which must be an extension header: sets c.length (and c.laterFragment). */
function measure(packet: Uint8Array, c: Cursor): PacketError | undefined {
  const { type, offset, end } = c;
  if (c.count === MAX_EXTENSION_HEADERS) {
    return new PacketError('CHAIN_TOO_LONG', offset, `more than ${MAX_EXTENSION_HEADERS} extension headers`);
  }
  if (type === IPPROTO_HOPOPTS && c.nextHeaderOffset !== NEXT_HEADER_OFFSET) {
    return new PacketError('MISPLACED_HOP_BY_HOP', c.nextHeaderOffset, 'Hop-by-Hop Options header not right after the IPv6 header');
  }
  let length: number;
  if (type === IPPROTO_FRAGMENT) {
    length = FRAGMENT_HEADER_LENGTH;
  } else {
    if (offset + 2 > end) {
      return new PacketError('HEADER_OVERRUN', offset, `${headerName(type)} header at ${offset}: its length octet is past the end of the packet (${end} octets)`);
    }
    const hdrExtLen = packet[offset + 1] as number;
    // AH counts 4-octet units minus 2 (RFC 4302 section 2.2); the others 8-octet units minus 1.
    length = type === IPPROTO_AH ? (hdrExtLen + 2) * 4 : (hdrExtLen + 1) * 8;
  }
  if (offset + length > end) {
    return new PacketError('HEADER_OVERRUN', offset, `${headerName(type)} header at ${offset} is ${length} octets, only ${end - offset} left`);
  }
  if (type === IPPROTO_FRAGMENT) {
    // Fragment Offset (13 bits) | Res (2) | M (1): anything but the first fragment carries data only.
    c.laterFragment = ((((packet[offset + 2] as number) << 8) | (packet[offset + 3] as number)) & 0xfff8) !== 0;
  }
  c.length = length;
  c.count++;
  return undefined;
}

/** Moves the cursor past the (measured) current header, onto the one its Next Header names. */
function advance(packet: Uint8Array, c: Cursor): void {
  c.nextHeaderOffset = c.offset; // Next Header is the first octet of every extension header
  c.type = packet[c.offset] as number;
  c.offset += c.length;
  c.length = 0;
}

/** True while the cursor is on a header the walk steps over. */
function onExtensionHeader(c: Cursor): boolean {
  return !c.laterFragment && isExtensionHeader(c.type);
}

function headerName(type: number): string {
  switch (type) {
    case IPPROTO_HOPOPTS: return 'Hop-by-Hop Options';
    case IPPROTO_ROUTING: return 'Routing';
    case IPPROTO_FRAGMENT: return 'Fragment';
    case IPPROTO_AH: return 'Authentication';
    case IPPROTO_DSTOPTS: return 'Destination Options';
    case IPPROTO_MH: return 'Mobility';
    case IPPROTO_HIP: return 'HIP';
    case IPPROTO_SHIM6: return 'Shim6';
    default: return `type ${type}`;
  }
}

/**
 * Walks the whole extension-header chain. Total: a HeaderChain or a PacketError, never a
 * throw. For diagnostics and tests; the per-packet paths use the locate* functions.
 */
export function walkExtensionHeaders(packet: Uint8Array): HeaderChain | PacketError {
  const c = cursor;
  const bad = start(packet, c);
  if (bad) return bad;
  const headers: ExtensionHeader[] = [];
  while (onExtensionHeader(c)) {
    const e = measure(packet, c);
    if (e) return e;
    headers.push({ type: c.type, offset: c.offset, length: c.length, nextHeaderOffset: c.nextHeaderOffset });
    advance(packet, c);
  }
  return {
    payloadLength: c.payloadLength,
    headers,
    upperLayerType: c.type,
    upperLayerOffset: c.offset,
    upperLayerNextHeaderOffset: c.nextHeaderOffset,
    laterFragment: c.laterFragment,
  };
}

/**
 * Where the Shim6 header goes (RFC 5533 section 4): the shim sits between the IP endpoint
 * sublayer and the IP routing sublayer, so its header follows the routing-related headers
 * (Hop-by-Hop Options, Routing, and a Destination Options header that precedes a Routing
 * header) and precedes the endpoint ones (Fragment, a Destination Options header not
 * followed by Routing, AH, ESP, and the upper-layer header).
 *
 * Fills `out` (offset where the header goes, offset of the Next Header octet to patch) and
 * returns undefined, or returns a PacketError. Allocates nothing on success. Only the chain
 * up to the insertion point is checked; the rest is carried as it is.
 */
export function locateShimInsertionPoint(packet: Uint8Array, out: HeaderPosition): PacketError | undefined {
  const c = cursor;
  const bad = start(packet, c);
  if (bad) return bad;
  for (;;) {
    const type = c.type;
    if (type === IPPROTO_DSTOPTS) {
      // Routing-related only when a Routing header follows it; its own Next Header says so.
      // (With no octet left to say, measure() reports the overrun.)
      if (c.offset < c.end && packet[c.offset] !== IPPROTO_ROUTING) break;
    } else if (type !== IPPROTO_HOPOPTS && type !== IPPROTO_ROUTING) {
      break;
    }
    const e = measure(packet, c);
    if (e) return e;
    advance(packet, c);
  }
  out.offset = c.offset;
  out.nextHeaderOffset = c.nextHeaderOffset;
  return undefined;
}

/** locateShimInsertionPoint, returning a new object (and the Next Header value it takes over). */
export function findShimInsertionPoint(packet: Uint8Array): ShimInsertionPoint | PacketError {
  const at: HeaderPosition = { offset: 0, nextHeaderOffset: 0 };
  const bad = locateShimInsertionPoint(packet, at);
  if (bad) return bad;
  return { offset: at.offset, nextHeaderOffset: at.nextHeaderOffset, nextHeader: packet[at.nextHeaderOffset] as number };
}

/**
 * Finds the first Shim6 header (protocol 140) in the chain. Fills `out` and returns true;
 * returns false when the chain has none (the walk reached an upper-layer header, ESP, No
 * Next Header or fragment data: `out` then says where), or a PacketError when the chain
 * before it is malformed. Allocates nothing unless it returns an error.
 */
export function locateShim6Header(packet: Uint8Array, out: HeaderPosition): PacketError | boolean {
  const c = cursor;
  const bad = start(packet, c);
  if (bad) return bad;
  while (onExtensionHeader(c)) {
    if (c.type === IPPROTO_SHIM6) {
      out.offset = c.offset;
      out.nextHeaderOffset = c.nextHeaderOffset;
      return true;
    }
    const e = measure(packet, c);
    if (e) return e;
    advance(packet, c);
  }
  out.offset = c.offset;
  out.nextHeaderOffset = c.nextHeaderOffset;
  return false;
}

/** locateShim6Header, returning a new position, or undefined when there is no Shim6 header. */
export function findShim6Header(packet: Uint8Array): HeaderPosition | PacketError | undefined {
  const at: HeaderPosition = { offset: 0, nextHeaderOffset: 0 };
  const found = locateShim6Header(packet, at);
  if (found instanceof PacketError) return found;
  return found ? at : undefined;
}
