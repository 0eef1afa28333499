/**
 * Shim6 control messages (RFC 5533 section 5.2-5.14, RFC 5534 section 5): the model and
 * its codec.
 *
 * Common header, 8 octets:
 *   Next Header (8) | Hdr Ext Len (8) | P=0 (1) | Type (7) | Type-specific (7) | S=0 (1)
 *   | Checksum (16) | type-specific fields ... | options
 * Hdr Ext Len counts 8-octet units after the first 8. The checksum covers the Shim6
 * message alone, no pseudo-header.
 */
import { formatIPv6, ipv6 } from './address';
import { checkUint } from './field-range';
import { checksumVerifies, internetChecksum } from './checksum';
import { IPV6_MIN_MTU, MAX_SHIM6_HEADER_LENGTH, MessageType, MessageTypeName, NO_NEXT_HEADER, messageTypeName } from './constants';
import { readContextTag, writeContextTag } from './context-tag';
import { DecodeResult, fail, guarded, ok } from './decode-result';
import { OptionDecodeSettings, Shim6Option, decodeOptions, optionContentLength, optionTotalLength, writeOption } from './options';

/** One probe report of a Probe message (RFC 5534 section 5.3): 40 octets on the wire. */
export interface ProbeReport {
  source: string;
  destination: string;
  nonce: number;
  data: number;
}

interface WithOptions {
  options: Shim6Option[];
}

export interface I1Message extends WithOptions {
  type: 'I1';
  initiatorContextTag: number;
  initiatorNonce: number;
}
export interface R1Message extends WithOptions {
  type: 'R1';
  initiatorNonce: number;
  responderNonce: number;
}
export interface I2Message extends WithOptions {
  type: 'I2';
  initiatorContextTag: number;
  initiatorNonce: number;
  responderNonce: number;
}
export interface R2Message extends WithOptions {
  type: 'R2';
  responderContextTag: number;
  initiatorNonce: number;
}
export interface R1bisMessage extends WithOptions {
  type: 'R1bis';
  packetContextTag: number;
  responderNonce: number;
}
export interface I2bisMessage extends WithOptions {
  type: 'I2bis';
  initiatorContextTag: number;
  initiatorNonce: number;
  responderNonce: number;
  packetContextTag: number;
}
export interface UpdateRequestMessage extends WithOptions {
  type: 'UpdateRequest';
  receiverContextTag: number;
  requestNonce: number;
}
export interface UpdateAcknowledgementMessage extends WithOptions {
  type: 'UpdateAcknowledgement';
  receiverContextTag: number;
  requestNonce: number;
}
export interface KeepaliveMessage extends WithOptions {
  type: 'Keepalive';
  receiverContextTag: number;
}
export interface ProbeMessage extends WithOptions {
  type: 'Probe';
  receiverContextTag: number;
  reapState: number;
  /** At most 15 each (4-bit counts). */
  sentProbes: ProbeReport[];
  receivedProbes: ProbeReport[];
}
export interface ErrorMessage {
  type: 'Error';
  /** 7 bits (RFC 5533 section 5.14; see ErrorCode). */
  errorCode: number;
  /** Offset in the packet in error where the problem was found. */
  pointer: number;
  /** As much of the packet in error as fits, zero-padded to a multiple of 8 octets on the wire. */
  packetInError: Buffer;
}

export type ControlMessage =
  | I1Message
  | R1Message
  | I2Message
  | R2Message
  | R1bisMessage
  | I2bisMessage
  | UpdateRequestMessage
  | UpdateAcknowledgementMessage
  | KeepaliveMessage
  | ProbeMessage
  | ErrorMessage;

/** Octets of each message type's fixed part, common header included (Probe: without reports). */
const FIXED_LENGTH: Record<MessageTypeName, number> = {
  I1: 16,
  R1: 16,
  I2: 24,
  R2: 16,
  R1bis: 16,
  I2bis: 32,
  UpdateRequest: 16,
  UpdateAcknowledgement: 16,
  Keepalive: 16,
  Probe: 16,
  Error: 8,
};

/**
 * Where the options of a message of this type start, from the start of its Shim6 header;
 * undefined for an unknown type, for Error (it has none) and for Probe (after its reports).
 */
export function optionsOffset(messageType: number): number | undefined {
  const name = messageTypeName.get(messageType);
  return name === undefined || name === 'Error' || name === 'Probe' ? undefined : FIXED_LENGTH[name];
}

const PROBE_REPORT_LENGTH = 40;
/** Most octets of packet in error: the Error message and its IPv6 header stay within 1280. */
export const MAX_PACKET_IN_ERROR = IPV6_MIN_MTU - 40 - 8;

function pad8(n: number): number {
  return (n + 7) & ~7;
}

/** Octets the message takes on the wire. */
export function controlMessageLength(m: ControlMessage): number {
  if (m.type === 'Error') return FIXED_LENGTH.Error + pad8(m.packetInError.length);
  let n = FIXED_LENGTH[m.type];
  if (m.type === 'Probe') n += PROBE_REPORT_LENGTH * (m.sentProbes.length + m.receivedProbes.length);
  for (const o of m.options) n += optionTotalLength(optionContentLength(o));
  return n;
}

export interface EncodeSettings {
  /** Next Header of the Shim6 header; control messages carry nothing after them (59). */
  nextHeader?: number;
}

/**
 * Encodes a control message with its Hdr Ext Len and checksum. Throws RangeError when a
 * value does not fit its field or the message exceeds 2048 octets: input comes from our code.
 */
export function encodeControlMessage(m: ControlMessage, settings: EncodeSettings = {}): Buffer {
  const length = controlMessageLength(m);
  if (length > MAX_SHIM6_HEADER_LENGTH) throw new RangeError(`${m.type} message of ${length} octets exceeds the Shim6 maximum of ${MAX_SHIM6_HEADER_LENGTH}`);
  const nextHeader = settings.nextHeader ?? NO_NEXT_HEADER;
  checkUint(nextHeader, 8, 'next header');
  const buf = Buffer.alloc(length);
  buf[0] = nextHeader;
  buf[1] = length / 8 - 1;
  buf[2] = MessageType[m.type]; // P = 0
  // buf[3]: type-specific 7 bits (Error Code, else reserved) and S = 0.
  // Octets 4-5 hold the checksum; the type-specific fields start at octet 6.
  switch (m.type) {
    case 'I1':
      writeContextTag(buf, 6, m.initiatorContextTag);
      writeUint32(buf, 12, m.initiatorNonce, 'initiator nonce');
      break;
    case 'R1':
      writeUint32(buf, 8, m.initiatorNonce, 'initiator nonce');
      writeUint32(buf, 12, m.responderNonce, 'responder nonce');
      break;
    case 'I2':
      writeContextTag(buf, 6, m.initiatorContextTag);
      writeUint32(buf, 12, m.initiatorNonce, 'initiator nonce');
      writeUint32(buf, 16, m.responderNonce, 'responder nonce');
      break;
    case 'R2':
      writeContextTag(buf, 6, m.responderContextTag);
      writeUint32(buf, 12, m.initiatorNonce, 'initiator nonce');
      break;
    case 'R1bis':
      writeContextTag(buf, 6, m.packetContextTag);
      writeUint32(buf, 12, m.responderNonce, 'responder nonce');
      break;
    case 'I2bis':
      writeContextTag(buf, 6, m.initiatorContextTag);
      writeUint32(buf, 12, m.initiatorNonce, 'initiator nonce');
      writeUint32(buf, 16, m.responderNonce, 'responder nonce');
      writeContextTag(buf, 26, m.packetContextTag);
      break;
    case 'UpdateRequest':
    case 'UpdateAcknowledgement':
      writeContextTag(buf, 6, m.receiverContextTag);
      writeUint32(buf, 12, m.requestNonce, 'request nonce');
      break;
    case 'Keepalive':
      writeContextTag(buf, 6, m.receiverContextTag);
      break;
    case 'Probe': {
      writeContextTag(buf, 6, m.receiverContextTag);
      const ns = m.sentProbes.length;
      const nr = m.receivedProbes.length;
      if (ns > 15 || nr > 15) throw new RangeError(`a Probe carries at most 15 sent and 15 received reports: ${ns}, ${nr}`);
      checkUint(m.reapState, 2, 'REAP state');
      buf[12] = (ns << 4) | nr;
      buf[15] = m.reapState;
      let q = FIXED_LENGTH.Probe;
      for (const r of [...m.sentProbes, ...m.receivedProbes]) {
        ipv6(r.source, 'probe source').copy(buf, q);
        ipv6(r.destination, 'probe destination').copy(buf, q + 16);
        writeUint32(buf, q + 32, r.nonce, 'probe nonce');
        writeUint32(buf, q + 36, r.data, 'probe data');
        q += PROBE_REPORT_LENGTH;
      }
      break;
    }
    case 'Error':
      checkUint(m.errorCode, 7, 'error code');
      checkUint(m.pointer, 16, 'pointer');
      buf[3] = m.errorCode << 1;
      buf.writeUInt16BE(m.pointer, 6);
      m.packetInError.copy(buf, 8);
      break;
  }
  if (m.type !== 'Error') {
    let p = FIXED_LENGTH[m.type] + (m.type === 'Probe' ? PROBE_REPORT_LENGTH * (m.sentProbes.length + m.receivedProbes.length) : 0);
    for (const o of m.options) p = writeOption(buf, p, o);
  }
  buf.writeUInt16BE(internetChecksum(buf, 0, length), 4);
  return buf;
}

function writeUint32(buf: Buffer, offset: number, value: number, what: string): void {
  checkUint(value, 32, what);
  buf.writeUInt32BE(value, offset);
}

/** An Error message for a received packet, truncated so that it fits the IPv6 minimum MTU. */
export function errorMessageFor(errorCode: number, pointer: number, packetInError: Buffer): ErrorMessage {
  return { type: 'Error', errorCode, pointer, packetInError: Buffer.from(packetInError.subarray(0, MAX_PACKET_IN_ERROR)) };
}

export interface DecodeSettings {
  /**
   * Reject non-zero reserved bits, reserved fields and padding. RFC 5533 says receivers
   * ignore them; the daemons decode with `strictReserved: false`. Default: true.
   */
  strictReserved?: boolean;
}

export interface DecodedControlMessage {
  message: ControlMessage;
  /** The Next Header field (59 for every message this implementation sends). */
  nextHeader: number;
  /** Octets the Shim6 header took; anything after it in the input was not read. */
  length: number;
}

/**
 * Decodes the Shim6 control message at the start of `input` (the octets after the IPv6
 * header and any extension headers before it). Total: returns a value or a typed error
 * with an offset, and never throws.
 */
export function decodeControlMessage(input: Buffer, settings: DecodeSettings = {}): DecodeResult<DecodedControlMessage> {
  return guarded(() => decode(input, { strictReserved: settings.strictReserved ?? true }));
}

function decode(buf: Buffer, settings: OptionDecodeSettings): DecodeResult<DecodedControlMessage> {
  if (buf.length < 8) return fail('TRUNCATED', buf.length, `${buf.length} octets: a Shim6 header has at least 8`);
  const length = ((buf[1] as number) + 1) * 8;
  if (buf.length < length) return fail('TRUNCATED', buf.length, `Hdr Ext Len ${buf[1]} says ${length} octets; only ${buf.length} present`);
  if (((buf[2] as number) & 0x80) !== 0) return fail('WRONG_P_BIT', 2, 'P bit set: a payload extension header, not a control message');
  const typeNumber = (buf[2] as number) & 0x7f;
  const mt = { messageType: typeNumber };
  if (!checksumVerifies(buf, 0, length)) return fail('BAD_CHECKSUM', 4, `checksum 0x${buf.readUInt16BE(4).toString(16).padStart(4, '0')} does not verify`, mt);
  if (((buf[3] as number) & 1) !== 0) return fail('NOT_SHIM6', 3, 'S bit set: a HIP packet, not Shim6', mt);
  const type = messageTypeName.get(typeNumber);
  if (type === undefined) return fail('UNKNOWN_MESSAGE_TYPE', 2, `message type ${typeNumber} is not known`, mt);
  if (length < FIXED_LENGTH[type]) return fail('LENGTH_MISMATCH', 1, `${type} needs at least ${FIXED_LENGTH[type]} octets; Hdr Ext Len gives ${length}`, mt);
  const strict = settings.strictReserved;
  const reserved = (offset: number, what: string): DecodeResult<DecodedControlMessage> =>
    fail('RESERVED_NONZERO', offset, `${type}: ${what} is not zero`, mt);
  if (type !== 'Error' && strict && ((buf[3] as number) & 0xfe) !== 0) return reserved(3, 'Reserved1');
  // The R bit before a context tag at octet 4 (every type but R1 and Error has one there).
  if (strict && type !== 'R1' && type !== 'Error' && ((buf[6] as number) & 0x80) !== 0) return reserved(6, 'R bit');
  const nextHeader = buf[0] as number;
  const tagAt6 = (): number => readContextTag(buf, 6);
  const u32 = (o: number): number => buf.readUInt32BE(o);
  let message: Exclude<ControlMessage, ErrorMessage>;
  let optionsStart = FIXED_LENGTH[type];
  switch (type) {
    case 'I1':
      message = { type, initiatorContextTag: tagAt6(), initiatorNonce: u32(12), options: [] };
      break;
    case 'R1':
      if (strict && buf.readUInt16BE(6) !== 0) return reserved(6, 'Reserved2');
      message = { type, initiatorNonce: u32(8), responderNonce: u32(12), options: [] };
      break;
    case 'I2':
      if (strict && u32(20) !== 0) return reserved(20, 'Reserved2');
      message = { type, initiatorContextTag: tagAt6(), initiatorNonce: u32(12), responderNonce: u32(16), options: [] };
      break;
    case 'R2':
      message = { type, responderContextTag: tagAt6(), initiatorNonce: u32(12), options: [] };
      break;
    case 'R1bis':
      message = { type, packetContextTag: tagAt6(), responderNonce: u32(12), options: [] };
      break;
    case 'I2bis':
      if (strict && (u32(20) !== 0 || buf.readUInt16BE(24) !== 0)) return reserved(20, 'Reserved2');
      if (strict && ((buf[26] as number) & 0x80) !== 0) return reserved(26, 'R bit');
      message = {
        type,
        initiatorContextTag: tagAt6(),
        initiatorNonce: u32(12),
        responderNonce: u32(16),
        packetContextTag: readContextTag(buf, 26),
        options: [],
      };
      break;
    case 'UpdateRequest':
    case 'UpdateAcknowledgement':
      message = { type, receiverContextTag: tagAt6(), requestNonce: u32(12), options: [] };
      break;
    case 'Keepalive':
      if (strict && u32(12) !== 0) return reserved(12, 'Reserved2');
      message = { type, receiverContextTag: tagAt6(), options: [] };
      break;
    case 'Probe': {
      const ns = (buf[12] as number) >>> 4;
      const nr = (buf[12] as number) & 0x0f;
      const word = u32(12);
      if (strict && (word & 0x00ff_fffc) !== 0) return reserved(13, 'Reserved2');
      const sta = word & 3;
      if (sta === 3) return fail('BAD_VALUE', 15, 'Probe: REAP state 3 is not defined', mt);
      const reportsEnd = 16 + PROBE_REPORT_LENGTH * (ns + nr);
      if (reportsEnd > length) {
        return fail('LENGTH_MISMATCH', 12, `Probe with ${ns} sent and ${nr} received reports needs ${reportsEnd} octets; Hdr Ext Len gives ${length}`, mt);
      }
      const reports: ProbeReport[] = [];
      for (let q = 16; q < reportsEnd; q += PROBE_REPORT_LENGTH) {
        reports.push({ source: formatIPv6(buf, q), destination: formatIPv6(buf, q + 16), nonce: u32(q + 32), data: u32(q + 36) });
      }
      message = { type, receiverContextTag: tagAt6(), reapState: sta, sentProbes: reports.slice(0, ns), receivedProbes: reports.slice(ns), options: [] };
      optionsStart = reportsEnd;
      break;
    }
    case 'Error':
      return ok({
        message: { type, errorCode: (buf[3] as number) >>> 1, pointer: buf.readUInt16BE(6), packetInError: Buffer.from(buf.subarray(8, length)) },
        nextHeader,
        length,
      });
  }
  const opts = decodeOptions(buf, optionsStart, length, 0, settings);
  if (!opts.ok) return { ok: false, error: { ...opts.error, messageType: typeNumber } };
  message.options = opts.value;
  return ok({ message, nextHeader, length });
}
