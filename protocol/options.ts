/**
 * Shim6 options (RFC 5533 section 5.15, RFC 5534 section 5.2): the model and its codec.
 *
 * Every option is Type (15 bits) | C (1 bit, critical) | Length (16 bits, of the contents
 * only) | contents | padding, padded so that the whole option is a multiple of 8 octets:
 * total length = 11 + Length - (Length + 3) mod 8.
 */
import { formatIPv6, ipv6 } from './address';
import { checkUint } from './field-range';
import { OptionType } from './constants';
import { DecodeError, DecodeResult, fail, ok } from './decode-result';

/** One locator of a Locator List option, with its verification method (1 HBA, 2 CGA). */
export interface LocatorEntry {
  address: string;
  verificationMethod: number;
}

/**
 * One element of a Locator Preferences option. Which fields are on the wire depends on
 * the option's Element Len: 1 → flags, 2 → flags and priority, 3 → flags, priority and
 * weight; longer elements (future formats, same first three octets) keep the rest in `extra`.
 */
export interface LocatorPreference {
  flags: number;
  priority?: number;
  weight?: number;
  extra?: Buffer;
}

interface OptionBase {
  /** The C bit; the options RFC 5533 defines are sent with it clear. */
  critical?: boolean;
}

export interface ResponderValidatorOption extends OptionBase {
  kind: 'ResponderValidator';
  validator: Buffer;
}
export interface LocatorListOption extends OptionBase {
  kind: 'LocatorList';
  generation: number;
  locators: LocatorEntry[];
}
export interface LocatorPreferencesOption extends OptionBase {
  kind: 'LocatorPreferences';
  generation: number;
  elementLength: number;
  elements: LocatorPreference[];
}
export interface CgaParameterDataStructureOption extends OptionBase {
  kind: 'CgaParameterDataStructure';
  data: Buffer;
}
export interface CgaSignatureOption extends OptionBase {
  kind: 'CgaSignature';
  signature: Buffer;
}
export interface UlidPairOption extends OptionBase {
  kind: 'UlidPair';
  senderUlid: string;
  receiverUlid: string;
}
export interface ForkedInstanceIdentifierOption extends OptionBase {
  kind: 'ForkedInstanceIdentifier';
  forkedInstanceId: number;
}
export interface KeepaliveTimeoutOption extends OptionBase {
  kind: 'KeepaliveTimeout';
  /** Seconds (RFC 5534 section 5.2). */
  keepaliveTimeout: number;
}
/** An option this implementation does not know and whose C bit is clear: kept, ignored. */
export interface UnknownOption extends OptionBase {
  kind: 'Unknown';
  optionType: number;
  contents: Buffer;
}

export type Shim6Option =
  | ResponderValidatorOption
  | LocatorListOption
  | LocatorPreferencesOption
  | CgaParameterDataStructureOption
  | CgaSignatureOption
  | UlidPairOption
  | ForkedInstanceIdentifierOption
  | KeepaliveTimeoutOption
  | UnknownOption;

export type OptionKind = Shim6Option['kind'];

/** Octets an option with `contentLength` octets of contents takes on the wire. */
export function optionTotalLength(contentLength: number): number {
  return 11 + contentLength - ((contentLength + 3) % 8);
}

/** Octets of verification methods plus padding in a Locator List of n locators. */
function methodsFieldLength(n: number): number {
  return Math.ceil((1 + n) / 8) * 8;
}

function optionTypeNumber(o: Shim6Option): number {
  return o.kind === 'Unknown' ? o.optionType : OptionType[o.kind];
}

/** Length of an option's contents (the Length field). */
export function optionContentLength(o: Shim6Option): number {
  switch (o.kind) {
    case 'ResponderValidator':
      return o.validator.length;
    case 'LocatorList':
      return 4 + methodsFieldLength(o.locators.length) + 16 * o.locators.length;
    case 'LocatorPreferences':
      return 5 + o.elementLength * o.elements.length;
    case 'CgaParameterDataStructure':
      return o.data.length;
    case 'CgaSignature':
      return o.signature.length;
    case 'UlidPair':
      return 36;
    case 'ForkedInstanceIdentifier':
      return 4;
    case 'KeepaliveTimeout':
      return 4;
    case 'Unknown':
      return o.contents.length;
  }
}

/**
 * Writes an option at buf[offset]; returns the offset after it. buf must be zeroed there
 * (padding and reserved fields are left as they are). Throws RangeError on values that do
 * not fit the format: encoder input comes from our own code.
 */
export function writeOption(buf: Buffer, offset: number, o: Shim6Option): number {
  const type = optionTypeNumber(o);
  checkUint(type, 15, 'option type');
  const len = optionContentLength(o);
  checkUint(len, 16, 'option length');
  buf.writeUInt16BE((type << 1) | (o.critical ? 1 : 0), offset);
  buf.writeUInt16BE(len, offset + 2);
  const c = offset + 4;
  switch (o.kind) {
    case 'ResponderValidator':
      o.validator.copy(buf, c);
      break;
    case 'LocatorList': {
      checkUint(o.generation, 32, 'locator list generation');
      const n = o.locators.length;
      if (n > 255) throw new RangeError(`a Locator List holds at most 255 locators: ${n}`);
      buf.writeUInt32BE(o.generation, c);
      buf[c + 4] = n;
      o.locators.forEach((l, i) => {
        checkUint(l.verificationMethod, 8, 'verification method');
        buf[c + 5 + i] = l.verificationMethod;
      });
      const locStart = c + 4 + methodsFieldLength(n);
      o.locators.forEach((l, i) => ipv6(l.address, 'locator').copy(buf, locStart + 16 * i));
      break;
    }
    case 'LocatorPreferences': {
      checkUint(o.generation, 32, 'locator list generation');
      if (o.elementLength < 1 || o.elementLength > 255) throw new RangeError(`element length must be 1 to 255: ${o.elementLength}`);
      buf.writeUInt32BE(o.generation, c);
      buf[c + 4] = o.elementLength;
      o.elements.forEach((e, i) => {
        const p = c + 5 + i * o.elementLength;
        checkUint(e.flags, 8, 'flags');
        buf[p] = e.flags;
        if (o.elementLength >= 2) {
          checkUint(e.priority ?? 0, 8, 'priority');
          buf[p + 1] = e.priority ?? 0;
        }
        if (o.elementLength >= 3) {
          checkUint(e.weight ?? 0, 8, 'weight');
          buf[p + 2] = e.weight ?? 0;
        }
        if (o.elementLength > 3 && e.extra) {
          if (e.extra.length > o.elementLength - 3) throw new RangeError('locator preference extra octets exceed the element length');
          e.extra.copy(buf, p + 3);
        }
      });
      break;
    }
    case 'CgaParameterDataStructure':
      o.data.copy(buf, c);
      break;
    case 'CgaSignature':
      o.signature.copy(buf, c);
      break;
    case 'UlidPair':
      ipv6(o.senderUlid, 'sender ULID').copy(buf, c + 4);
      ipv6(o.receiverUlid, 'receiver ULID').copy(buf, c + 20);
      break;
    case 'ForkedInstanceIdentifier':
      checkUint(o.forkedInstanceId, 32, 'forked instance identifier');
      buf.writeUInt32BE(o.forkedInstanceId, c);
      break;
    case 'KeepaliveTimeout':
      checkUint(o.keepaliveTimeout, 16, 'keepalive timeout');
      buf.writeUInt16BE(o.keepaliveTimeout, c + 2);
      break;
    case 'Unknown':
      o.contents.copy(buf, c);
      break;
  }
  return offset + optionTotalLength(len);
}

export interface OptionDecodeSettings {
  /** Reject non-zero reserved fields and padding (true), or ignore them as RFC 5533 says receivers do. */
  strictReserved: boolean;
}

function allZero(buf: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (buf[i] !== 0) return false;
  return true;
}

/**
 * Decodes the options in buf[start, end), which they must tile exactly. Offsets in errors
 * are relative to `base` (the start of the message), so they point into what was received.
 */
export function decodeOptions(buf: Buffer, start: number, end: number, base: number, settings: OptionDecodeSettings): DecodeResult<Shim6Option[]> {
  const options: Shim6Option[] = [];
  let p = start;
  while (p < end) {
    const at = p - base;
    if (end - p < 4) return fail('OPTION_OVERRUN', at, `${end - p} octets left: too few for an option header`);
    const typeField = buf.readUInt16BE(p);
    const optionType = typeField >>> 1;
    const critical = (typeField & 1) === 1;
    const len = buf.readUInt16BE(p + 2);
    const total = optionTotalLength(len);
    if (p + total > end) {
      return fail('OPTION_OVERRUN', at, `option type ${optionType} with length ${len} takes ${total} octets; ${end - p} left`, { optionType });
    }
    const c = p + 4;
    if (settings.strictReserved && !allZero(buf, c + len, p + total)) {
      return fail('RESERVED_NONZERO', c + len - base, `option type ${optionType}: padding is not zero`, { optionType });
    }
    const r = decodeOptionContents(buf, optionType, critical, c, len, base, settings);
    if (!r.ok) return r;
    options.push(r.value);
    p += total;
  }
  return ok(options);
}

function decodeOptionContents(
  buf: Buffer,
  optionType: number,
  critical: boolean,
  c: number,
  len: number,
  base: number,
  settings: OptionDecodeSettings,
): DecodeResult<Shim6Option> {
  const at = c - base;
  const bad = (why: string, offset = at): DecodeResult<Shim6Option> => fail('BAD_OPTION_LENGTH', offset, why, { optionType });
  const crit = critical ? { critical: true } : {};
  switch (optionType) {
    case OptionType.ResponderValidator:
      return ok({ kind: 'ResponderValidator', validator: Buffer.from(buf.subarray(c, c + len)), ...crit });
    case OptionType.LocatorList: {
      if (len < 5) return bad(`Locator List length ${len}: shorter than generation and count`);
      const n = buf[c + 4] as number;
      const want = 4 + methodsFieldLength(n) + 16 * n;
      if (len !== want) return bad(`Locator List of ${n} locators must have length ${want}, not ${len}`);
      const locStart = c + 4 + methodsFieldLength(n);
      if (settings.strictReserved && !allZero(buf, c + 5 + n, locStart)) {
        return fail('RESERVED_NONZERO', c + 5 + n - base, 'Locator List: padding after the verification methods is not zero', { optionType });
      }
      const locators: LocatorEntry[] = [];
      for (let i = 0; i < n; i++) {
        locators.push({ address: formatIPv6(buf, locStart + 16 * i), verificationMethod: buf[c + 5 + i] as number });
      }
      return ok({ kind: 'LocatorList', generation: buf.readUInt32BE(c), locators, ...crit });
    }
    case OptionType.LocatorPreferences: {
      if (len < 5) return bad(`Locator Preferences length ${len}: shorter than generation and element length`);
      const e = buf[c + 4] as number;
      if (e === 0) return fail('BAD_VALUE', at + 4, 'Locator Preferences: Element Len is 0', { optionType });
      if ((len - 5) % e !== 0) return bad(`Locator Preferences: ${len - 5} octets of elements is not a multiple of Element Len ${e}`);
      const elements: LocatorPreference[] = [];
      for (let p = c + 5; p < c + len; p += e) {
        const el: LocatorPreference = { flags: buf[p] as number };
        if (e >= 2) el.priority = buf[p + 1] as number;
        if (e >= 3) el.weight = buf[p + 2] as number;
        if (e > 3) el.extra = Buffer.from(buf.subarray(p + 3, p + e));
        elements.push(el);
      }
      return ok({ kind: 'LocatorPreferences', generation: buf.readUInt32BE(c), elementLength: e, elements, ...crit });
    }
    case OptionType.CgaParameterDataStructure:
      return ok({ kind: 'CgaParameterDataStructure', data: Buffer.from(buf.subarray(c, c + len)), ...crit });
    case OptionType.CgaSignature:
      return ok({ kind: 'CgaSignature', signature: Buffer.from(buf.subarray(c, c + len)), ...crit });
    case OptionType.UlidPair:
      if (len !== 36) return bad(`ULID Pair must have length 36, not ${len}`);
      if (settings.strictReserved && !allZero(buf, c, c + 4)) return fail('RESERVED_NONZERO', at, 'ULID Pair: Reserved2 is not zero', { optionType });
      return ok({ kind: 'UlidPair', senderUlid: formatIPv6(buf, c + 4), receiverUlid: formatIPv6(buf, c + 20), ...crit });
    case OptionType.ForkedInstanceIdentifier:
      if (len !== 4) return bad(`Forked Instance Identifier must have length 4, not ${len}`);
      return ok({ kind: 'ForkedInstanceIdentifier', forkedInstanceId: buf.readUInt32BE(c), ...crit });
    case OptionType.KeepaliveTimeout:
      if (len !== 4) return bad(`Keepalive Timeout must have length 4, not ${len}`);
      if (settings.strictReserved && !allZero(buf, c, c + 2)) return fail('RESERVED_NONZERO', at, 'Keepalive Timeout: Reserved is not zero', { optionType });
      return ok({ kind: 'KeepaliveTimeout', keepaliveTimeout: buf.readUInt16BE(c + 2), ...crit });
    default:
      if (critical) {
        return fail('UNKNOWN_CRITICAL_OPTION', at - 4, `option type ${optionType} is critical and not recognized`, { optionType });
      }
      return ok({ kind: 'Unknown', optionType, contents: Buffer.from(buf.subarray(c, c + len)) });
  }
}

/** The first option of a kind, typed (the control plane reads options this way). */
export function findOption<K extends OptionKind>(options: readonly Shim6Option[], kind: K): Extract<Shim6Option, { kind: K }> | undefined {
  return options.find((o): o is Extract<Shim6Option, { kind: K }> => o.kind === kind);
}

export type { DecodeError };
