/**
 * rtnetlink address messages (pure): the RTM_GETADDR dump request, and a parser for what a
 * NETLINK_ROUTE socket delivers — RTM_NEWADDR / RTM_DELADDR (dump parts and RTMGRP_IPV6_IFADDR
 * notifications), NLMSG_DONE and NLMSG_ERROR.
 *
 * Layouts (include/uapi/linux/netlink.h, rtnetlink.h, if_addr.h), all in the host's byte order:
 *
 *   struct nlmsghdr   { u32 nlmsg_len; u16 nlmsg_type; u16 nlmsg_flags; u32 nlmsg_seq; u32 nlmsg_pid; }  16
 *   struct ifaddrmsg  { u8 ifa_family; u8 ifa_prefixlen; u8 ifa_flags; u8 ifa_scope; u32 ifa_index; }    8
 *   struct rtattr     { u16 rta_len; u16 rta_type; }  then rta_len - 4 octets of payload              4
 *   struct ifa_cacheinfo { u32 ifa_prefered; u32 ifa_valid; u32 cstamp; u32 tstamp; }                16
 *   struct nlmsgerr   { s32 error; struct nlmsghdr msg; }  (then the request or, with
 *                     NLM_F_CAPPED, only its header; then extended-ACK attributes if NLM_F_ACK_TLVS)
 *
 * Messages and attributes are aligned to 4 octets. The parser is total: whatever the input,
 * it returns the messages it could read and typed errors for the rest; it never throws and
 * never reads outside the input (every read is bounds-checked first; a last-resort guard turns
 * a parser bug into an INTERNAL error, which the fuzz tests assert never happens).
 */
import { endianness } from 'node:os';
import { formatIPv6 } from '../protocol/address';

// Address families, netlink protocol and groups.
export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_NETLINK = 16;
export const NETLINK_ROUTE = 0;
/** Multicast group of IPv6 address notifications (bit mask for sockaddr_nl.nl_groups). */
export const RTMGRP_IPV6_IFADDR = 0x100;

// Message types.
export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLMSG_OVERRUN = 4;
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;

// nlmsg_flags.
export const NLM_F_REQUEST = 0x01;
export const NLM_F_MULTI = 0x02;
export const NLM_F_ACK = 0x04;
export const NLM_F_ECHO = 0x08;
/** A dump part: the dump was interrupted by a change and may be inconsistent (dump again). */
export const NLM_F_DUMP_INTR = 0x10;
export const NLM_F_ROOT = 0x100;
export const NLM_F_MATCH = 0x200;
export const NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH;
/** On NLMSG_ERROR: only the request's header follows the error code, not the whole request. */
export const NLM_F_CAPPED = 0x100;
/** On NLMSG_ERROR: extended-ACK attributes follow. */
export const NLM_F_ACK_TLVS = 0x200;
/** Extended-ACK attribute: a NUL-terminated message text. */
export const NLMSGERR_ATTR_MSG = 1;

// Address attributes (struct rtattr types after struct ifaddrmsg).
export const IFA_UNSPEC = 0;
export const IFA_ADDRESS = 1;
export const IFA_LOCAL = 2;
export const IFA_LABEL = 3;
export const IFA_BROADCAST = 4;
export const IFA_ANYCAST = 5;
export const IFA_CACHEINFO = 6;
export const IFA_MULTICAST = 7;
export const IFA_FLAGS = 8;

// Address flags: ifa_flags (the low 8) and the 32-bit IFA_FLAGS attribute.
export const IFA_F_SECONDARY = 0x01;
/** Same bit as IFA_F_SECONDARY: for IPv6 it marks a temporary (privacy, RFC 8981) address. */
export const IFA_F_TEMPORARY = IFA_F_SECONDARY;
export const IFA_F_NODAD = 0x02;
export const IFA_F_OPTIMISTIC = 0x04;
export const IFA_F_DADFAILED = 0x08;
export const IFA_F_HOMEADDRESS = 0x10;
export const IFA_F_DEPRECATED = 0x20;
export const IFA_F_TENTATIVE = 0x40;
export const IFA_F_PERMANENT = 0x80;
export const IFA_F_MANAGETEMPADDR = 0x100;
export const IFA_F_NOPREFIXROUTE = 0x200;
export const IFA_F_MCAUTOJOIN = 0x400;
export const IFA_F_STABLE_PRIVACY = 0x800;

// Scopes (ifa_scope).
export const RT_SCOPE_UNIVERSE = 0;
export const RT_SCOPE_SITE = 200;
export const RT_SCOPE_LINK = 253;
export const RT_SCOPE_HOST = 254;
export const RT_SCOPE_NOWHERE = 255;

// Sizes and alignment.
export const NLMSG_ALIGNTO = 4;
export const RTA_ALIGNTO = 4;
export const NLMSG_HDRLEN = 16;
export const IFADDRMSG_LENGTH = 8;
export const RTA_HDRLEN = 4;
export const IFA_CACHEINFO_LENGTH = 16;
/** ifa_prefered / ifa_valid meaning "forever". */
export const INFINITY_LIFE_TIME = 0xffffffff;
/** rta_type bits that are flags, not part of the type (NLA_F_NESTED, NLA_F_NET_BYTEORDER). */
const RTA_TYPE_MASK = 0x3fff;

export const nlmsgAlign = (n: number): number => (n + NLMSG_ALIGNTO - 1) & ~(NLMSG_ALIGNTO - 1);
export const rtaAlign = (n: number): number => (n + RTA_ALIGNTO - 1) & ~(RTA_ALIGNTO - 1);

/** Byte order of netlink's integers: the host's (the default), or explicit for tests. */
export type ByteOrder = 'LE' | 'BE';
export const HOST_BYTE_ORDER: ByteOrder = endianness();

export interface ParseOptions {
  byteOrder?: ByteOrder;
}

export interface NetlinkHeader {
  length: number;
  type: number;
  flags: number;
  seq: number;
  pid: number;
}

/** The IFA_F_* bits, decoded (from IFA_FLAGS when present, else from ifa_flags). */
export interface AddressFlags {
  /** The raw IFA_F_* bit mask. */
  value: number;
  /** IFA_F_SECONDARY; for IPv6 the same bit is `temporary`. */
  secondary: boolean;
  temporary: boolean;
  nodad: boolean;
  optimistic: boolean;
  dadfailed: boolean;
  homeaddress: boolean;
  deprecated: boolean;
  tentative: boolean;
  permanent: boolean;
  managetempaddr: boolean;
  noprefixroute: boolean;
  mcautojoin: boolean;
  stablePrivacy: boolean;
}

export function decodeAddressFlags(value: number): AddressFlags {
  const v = value >>> 0;
  const has = (bit: number): boolean => (v & bit) !== 0;
  return {
    value: v,
    secondary: has(IFA_F_SECONDARY),
    temporary: has(IFA_F_TEMPORARY),
    nodad: has(IFA_F_NODAD),
    optimistic: has(IFA_F_OPTIMISTIC),
    dadfailed: has(IFA_F_DADFAILED),
    homeaddress: has(IFA_F_HOMEADDRESS),
    deprecated: has(IFA_F_DEPRECATED),
    tentative: has(IFA_F_TENTATIVE),
    permanent: has(IFA_F_PERMANENT),
    managetempaddr: has(IFA_F_MANAGETEMPADDR),
    noprefixroute: has(IFA_F_NOPREFIXROUTE),
    mcautojoin: has(IFA_F_MCAUTOJOIN),
    stablePrivacy: has(IFA_F_STABLE_PRIVACY),
  };
}

/** RTM_NEWADDR ('new': added, changed or listed by a dump) or RTM_DELADDR ('del'). */
export interface AddressMessage {
  kind: 'new' | 'del';
  header: NetlinkHeader;
  /** AF_INET6 (10) or AF_INET (2). */
  family: number;
  prefixLength: number;
  flags: AddressFlags;
  /** RT_SCOPE_*: 0 global, 200 site, 253 link, 254 host. */
  scope: number;
  ifindex: number;
  /** The local address, canonical text: IFA_LOCAL if present, else IFA_ADDRESS. */
  address: string;
  /** The far end of a point-to-point address: IFA_ADDRESS when IFA_LOCAL is also present and differs. */
  peer?: string;
  /** IFA_LABEL (IPv4 only, in practice). */
  label?: string;
  /** From IFA_CACHEINFO: seconds, Infinity for "forever". */
  preferredLifetime?: number;
  validLifetime?: number;
  /** From IFA_CACHEINFO: creation and last-update times, hundredths of a second since boot. */
  createdTimestamp?: number;
  updatedTimestamp?: number;
}

/** NLMSG_DONE: the end of a dump; errno is non-zero if the dump failed. */
export interface DoneMessage {
  kind: 'done';
  header: NetlinkHeader;
  errno: number;
}

/** NLMSG_ERROR: errno 0 is an acknowledgement; otherwise the request (if included) failed. */
export interface ErrorMessage {
  kind: 'error';
  header: NetlinkHeader;
  errno: number;
  /** The header of the request this answers, when present. */
  request?: NetlinkHeader;
  /** The extended-ACK message text, when present. */
  text?: string;
}

/** Any other message type (NLMSG_NOOP, NLMSG_OVERRUN, other rtnetlink messages): header only. */
export interface OtherMessage {
  kind: 'other';
  header: NetlinkHeader;
}

export type NetlinkMessage = AddressMessage | DoneMessage | ErrorMessage | OtherMessage;

export type RtnetlinkParseErrorCode =
  /** The input ends inside a header or a message (or is empty). */
  | 'TRUNCATED'
  /** nlmsg_len smaller than a header, or a message whose fixed part does not fit its length. */
  | 'BAD_LENGTH'
  /** An attribute whose length is too short, overruns its message, or does not fit its type. */
  | 'BAD_ATTRIBUTE'
  /** An address message with neither IFA_ADDRESS nor IFA_LOCAL. */
  | 'MISSING_ADDRESS'
  /** An address message of a family other than AF_INET / AF_INET6. */
  | 'UNSUPPORTED_FAMILY'
  /** A parser bug caught by the last-resort guard. */
  | 'INTERNAL';

export interface RtnetlinkParseError {
  code: RtnetlinkParseErrorCode;
  message: string;
  /** Octet offset in the input where the problem was found. */
  offset: number;
  /** nlmsg_type of the message in error, once read. */
  messageType?: number;
  /** rta_type of the attribute in error. */
  attributeType?: number;
}

/**
 * The messages read, in order, and the errors met. A message whose framing is intact but
 * whose content is malformed is skipped (one error) and parsing goes on with the next; an
 * error in the framing itself (a truncated header or nlmsg_len) ends the parse.
 */
export interface ParseResult {
  messages: NetlinkMessage[];
  errors: RtnetlinkParseError[];
}

// ---------------------------------------------------------------------------------------------
// Building requests.

/** One netlink message: header and payload (padded to 4 octets). */
export function buildNetlinkMessage(
  type: number,
  flags: number,
  seq: number,
  pid: number,
  payload: Uint8Array = new Uint8Array(0),
  byteOrder: ByteOrder = HOST_BYTE_ORDER,
): Buffer {
  for (const [name, v, max] of [['type', type, 0xffff], ['flags', flags, 0xffff], ['seq', seq, 0xffffffff], ['pid', pid, 0xffffffff]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`netlink message: bad ${name} ${v}`);
  }
  const length = NLMSG_HDRLEN + payload.length;
  const buf = Buffer.alloc(nlmsgAlign(length));
  const le = byteOrder === 'LE';
  if (le) {
    buf.writeUInt32LE(length, 0);
    buf.writeUInt16LE(type, 4);
    buf.writeUInt16LE(flags, 6);
    buf.writeUInt32LE(seq, 8);
    buf.writeUInt32LE(pid, 12);
  } else {
    buf.writeUInt32BE(length, 0);
    buf.writeUInt16BE(type, 4);
    buf.writeUInt16BE(flags, 6);
    buf.writeUInt32BE(seq, 8);
    buf.writeUInt32BE(pid, 12);
  }
  buf.set(payload, NLMSG_HDRLEN);
  return buf;
}

/** RTM_GETADDR with NLM_F_REQUEST | NLM_F_DUMP for one family (AF_INET6 by default): every address. */
export function buildGetAddrDumpRequest(seq: number, family = AF_INET6, byteOrder: ByteOrder = HOST_BYTE_ORDER): Buffer {
  if (!Number.isInteger(family) || family < 0 || family > 0xff) throw new RangeError(`RTM_GETADDR: bad family ${family}`);
  const ifa = new Uint8Array(IFADDRMSG_LENGTH);
  ifa[0] = family; // prefixlen, flags, scope, index: 0 (no filter)
  return buildNetlinkMessage(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, 0, ifa, byteOrder);
}

// ---------------------------------------------------------------------------------------------
// Parsing.

/** Bounds-checked readers over one input. */
class Reader {
  private readonly view: DataView;
  readonly length: number;
  constructor(
    readonly bytes: Uint8Array,
    private readonly le: boolean,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.length = bytes.byteLength;
  }
  has(offset: number, n: number): boolean {
    return offset >= 0 && n >= 0 && offset + n <= this.length;
  }
  u8(o: number): number {
    return this.view.getUint8(o);
  }
  u16(o: number): number {
    return this.view.getUint16(o, this.le);
  }
  u32(o: number): number {
    return this.view.getUint32(o, this.le);
  }
  s32(o: number): number {
    return this.view.getInt32(o, this.le);
  }
  header(o: number): NetlinkHeader {
    return { length: this.u32(o), type: this.u16(o + 4), flags: this.u16(o + 6), seq: this.u32(o + 8), pid: this.u32(o + 12) };
  }
  /** Text up to the first NUL, within [start, end). */
  cString(start: number, end: number): string {
    let stop = start;
    while (stop < end && this.bytes[stop] !== 0) stop++;
    return Buffer.from(this.bytes.buffer, this.bytes.byteOffset + start, stop - start).toString('utf8');
  }
}

type BodyResult = { ok: true; message: NetlinkMessage } | { ok: false; error: RtnetlinkParseError };

const bad = (code: RtnetlinkParseErrorCode, offset: number, message: string, extra: Partial<RtnetlinkParseError> = {}): BodyResult => ({
  ok: false,
  error: { code, offset, message, ...extra },
});

/** Parses a buffer of netlink messages (one recv's worth). Never throws. */
export function parseNetlinkMessages(input: Uint8Array, options: ParseOptions = {}): ParseResult {
  const messages: NetlinkMessage[] = [];
  const errors: RtnetlinkParseError[] = [];
  try {
    const r = new Reader(input, (options.byteOrder ?? HOST_BYTE_ORDER) === 'LE');
    if (r.length === 0) errors.push({ code: 'TRUNCATED', offset: 0, message: 'empty input: no netlink message' });
    let off = 0;
    while (off < r.length) {
      const remaining = r.length - off;
      if (remaining < NLMSG_HDRLEN) {
        errors.push({ code: 'TRUNCATED', offset: off, message: `${remaining} octets left, less than a ${NLMSG_HDRLEN}-octet nlmsghdr` });
        break;
      }
      const header = r.header(off);
      if (header.length < NLMSG_HDRLEN) {
        errors.push({ code: 'BAD_LENGTH', offset: off, message: `nlmsg_len ${header.length} is less than the header`, messageType: header.type });
        break;
      }
      if (header.length > remaining) {
        errors.push({
          code: 'TRUNCATED',
          offset: off,
          message: `message of ${header.length} octets (type ${header.type}) but only ${remaining} left`,
          messageType: header.type,
        });
        break;
      }
      const body = parseBody(r, off, header);
      if (body.ok) messages.push(body.message);
      else errors.push(body.error);
      off += nlmsgAlign(header.length); // past the end when the last message is not padded: done
    }
  } catch (e) {
    errors.push({ code: 'INTERNAL', offset: 0, message: `parser fault: ${e instanceof Error ? e.message : String(e)}` });
  }
  return { messages, errors };
}

function parseBody(r: Reader, off: number, header: NetlinkHeader): BodyResult {
  const start = off + NLMSG_HDRLEN;
  const end = off + header.length;
  switch (header.type) {
    case RTM_NEWADDR:
    case RTM_DELADDR:
      return parseAddress(r, start, end, header);
    case NLMSG_DONE:
      // The payload is the dump's status (an int, negative errno); some senders leave it out.
      return { ok: true, message: { kind: 'done', header, errno: end - start >= 4 ? errnoOf(r.s32(start)) : 0 } };
    case NLMSG_ERROR:
      return parseError(r, start, end, header);
    default:
      return { ok: true, message: { kind: 'other', header } };
  }
}

/** Netlink carries a negative errno; anything else positive is not an errno but is kept (as its magnitude). */
const errnoOf = (status: number): number => Math.abs(status);

function parseError(r: Reader, start: number, end: number, header: NetlinkHeader): BodyResult {
  if (end - start < 4) return bad('BAD_LENGTH', start, `NLMSG_ERROR with ${end - start} octets, less than its error code`, { messageType: NLMSG_ERROR });
  const message: ErrorMessage = { kind: 'error', header, errno: errnoOf(r.s32(start)) };
  const reqAt = start + 4;
  if (end - reqAt >= NLMSG_HDRLEN) {
    message.request = r.header(reqAt);
    // Extended ACK: after the request header (NLM_F_CAPPED) or the whole request. A
    // malformed attribute area only loses the text: the errno is what matters.
    if ((header.flags & NLM_F_ACK_TLVS) !== 0) {
      const requestLength = (header.flags & NLM_F_CAPPED) !== 0 ? NLMSG_HDRLEN : nlmsgAlign(message.request.length);
      let a = reqAt + requestLength;
      while (requestLength >= NLMSG_HDRLEN && a + RTA_HDRLEN <= end) {
        const len = r.u16(a);
        const type = r.u16(a + 2) & RTA_TYPE_MASK;
        if (len < RTA_HDRLEN || a + len > end) break;
        if (type === NLMSGERR_ATTR_MSG) message.text = r.cString(a + RTA_HDRLEN, a + len);
        a += rtaAlign(len);
      }
    }
  }
  return { ok: true, message };
}

function parseAddress(r: Reader, start: number, end: number, header: NetlinkHeader): BodyResult {
  const mt = { messageType: header.type };
  if (end - start < IFADDRMSG_LENGTH) {
    return bad('BAD_LENGTH', start, `address message with ${end - start} octets, less than the ${IFADDRMSG_LENGTH}-octet ifaddrmsg`, mt);
  }
  const family = r.u8(start);
  const prefixLength = r.u8(start + 1);
  let flags = r.u8(start + 2);
  const scope = r.u8(start + 3);
  const ifindex = r.u32(start + 4);
  const addressLength = family === AF_INET6 ? 16 : family === AF_INET ? 4 : 0;
  if (addressLength === 0) return bad('UNSUPPORTED_FAMILY', start, `address family ${family} is neither AF_INET nor AF_INET6`, mt);

  let address: string | undefined;
  let local: string | undefined;
  let label: string | undefined;
  let cache: [number, number, number, number] | undefined;
  let a = start + nlmsgAlign(IFADDRMSG_LENGTH);
  while (a < end) {
    if (end - a < RTA_HDRLEN) return bad('BAD_ATTRIBUTE', a, `${end - a} trailing octets, less than an attribute header`, mt);
    const len = r.u16(a);
    const type = r.u16(a + 2) & RTA_TYPE_MASK;
    const at = { ...mt, attributeType: type };
    if (len < RTA_HDRLEN) return bad('BAD_ATTRIBUTE', a, `attribute ${type}: rta_len ${len} is less than its header`, at);
    if (len > end - a) return bad('BAD_ATTRIBUTE', a, `attribute ${type}: rta_len ${len} runs past the message (${end - a} left)`, at);
    const p = a + RTA_HDRLEN;
    const n = len - RTA_HDRLEN;
    switch (type) {
      case IFA_ADDRESS:
      case IFA_LOCAL: {
        if (n !== addressLength) return bad('BAD_ATTRIBUTE', a, `attribute ${type}: ${n} octets for a family-${family} address of ${addressLength}`, at);
        const text = family === AF_INET6 ? formatIPv6(r.bytes, p) : Array.from(r.bytes.subarray(p, p + 4)).join('.');
        if (type === IFA_ADDRESS) address = text;
        else local = text;
        break;
      }
      case IFA_LABEL:
        label = r.cString(p, p + n);
        break;
      case IFA_CACHEINFO:
        if (n < IFA_CACHEINFO_LENGTH) return bad('BAD_ATTRIBUTE', a, `IFA_CACHEINFO of ${n} octets, less than ${IFA_CACHEINFO_LENGTH}`, at);
        cache = [r.u32(p), r.u32(p + 4), r.u32(p + 8), r.u32(p + 12)];
        break;
      case IFA_FLAGS:
        if (n < 4) return bad('BAD_ATTRIBUTE', a, `IFA_FLAGS of ${n} octets, less than 4`, at);
        flags = r.u32(p);
        break;
      default:
        break; // IFA_BROADCAST, IFA_ANYCAST, IFA_MULTICAST, IFA_RT_PRIORITY, IFA_TARGET_NETNSID, IFA_PROTO, ...
    }
    a += rtaAlign(len); // may step past `end` when the last attribute is unpadded: the loop ends
  }
  const own = local ?? address;
  if (own === undefined) return bad('MISSING_ADDRESS', start, 'address message without IFA_ADDRESS or IFA_LOCAL', mt);
  const message: AddressMessage = {
    kind: header.type === RTM_NEWADDR ? 'new' : 'del',
    header,
    family,
    prefixLength,
    flags: decodeAddressFlags(flags),
    scope,
    ifindex,
    address: own,
  };
  if (local !== undefined && address !== undefined && address !== local) message.peer = address;
  if (label !== undefined) message.label = label;
  if (cache) {
    const life = (s: number): number => (s === INFINITY_LIFE_TIME ? Infinity : s);
    message.preferredLifetime = life(cache[0]);
    message.validLifetime = life(cache[1]);
    message.createdTimestamp = cache[2];
    message.updatedTimestamp = cache[3];
  }
  return { ok: true, message };
}
