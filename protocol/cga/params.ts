/**
 * The CGA Parameters data structure (RFC 3972 section 3):
 *
 *   modifier (16 octets) | subnet prefix (8) | collision count (1) |
 *   public key (DER SubjectPublicKeyInfo, variable) | extension fields (variable)
 *
 * Extension fields are type-length-value (RFC 4581): a 16-bit Extension Type, a 16-bit
 * Extension Data Length (octets of data that follow), then the data.
 *
 * decodeCgaParameters is total: it returns a result, never throws. The decoded value
 * keeps every extension's raw bytes, so encodeCgaParameters(decoded) gives back the
 * exact octets the hashes were computed over.
 */
import { checkSubjectPublicKeyInfo, readDerElement } from './der';
import { decodeMultiPrefixExtension, MULTI_PREFIX_EXTENSION_TYPE } from './multi-prefix';

export const MODIFIER_LENGTH = 16;
export const SUBNET_PREFIX_LENGTH = 8;
export const SUBNET_PREFIX_OFFSET = 16;
export const COLLISION_COUNT_OFFSET = 24;
export const PUBLIC_KEY_OFFSET = 25;
/** RFC 3972 section 4 step 8 / section 5 step 1: collision count is 0, 1 or 2. */
export const MAX_COLLISION_COUNT = 2;
/** RFC 4581 extension header: Extension Type (16 bits) and Extension Data Length (16 bits). */
export const EXTENSION_HEADER_LENGTH = 4;

/** One extension field (RFC 4581), data without the 4-octet header. */
export interface CgaExtension {
  type: number;
  data: Buffer;
}

export interface CgaParameters {
  /** 128-bit modifier. */
  modifier: Buffer;
  /** 64-bit subnet prefix. */
  subnetPrefix: Buffer;
  /** 8-bit collision count (valid CGAs: 0..2; decoding accepts any, verification checks). */
  collisionCount: number;
  /** DER-encoded SubjectPublicKeyInfo (or, for HBA-only sets, RFC 5535's random stand-in). */
  publicKey: Buffer;
  /** Extension fields in wire order. */
  extensionFields: CgaExtension[];
}

export type CgaParamsErrorCode =
  | 'too-short' // fewer octets than modifier + subnet prefix + collision count
  | 'public-key-missing' // nothing after the collision count
  | 'der-length-invalid' // the public key's DER length is indefinite or not minimal
  | 'der-truncated' // the public key's DER length runs past the end
  | 'public-key-not-spki' // the public key is not shaped as a SubjectPublicKeyInfo
  | 'extension-truncated' // an extension header or its data runs past the end
  | 'multi-prefix-malformed' // Multi-Prefix extension data is not 4 + 8n octets
  | 'multi-prefix-repeated'; // more than one Multi-Prefix extension

export interface CgaParamsError {
  code: CgaParamsErrorCode;
  message: string;
  /** Octet offset in the input where the problem was found. */
  offset: number;
}

export type DecodeResult<T, E> = { ok: true; value: T } | { ok: false; error: E };

function fail(code: CgaParamsErrorCode, message: string, offset: number): DecodeResult<CgaParameters, CgaParamsError> {
  return { ok: false, error: { code, message, offset } };
}

/** Decodes a CGA Parameters data structure; never throws. */
export function decodeCgaParameters(buf: Uint8Array): DecodeResult<CgaParameters, CgaParamsError> {
  if (buf.length < PUBLIC_KEY_OFFSET) {
    return fail('too-short', `CGA Parameters need at least ${PUBLIC_KEY_OFFSET} octets before the public key, got ${buf.length}`, buf.length);
  }
  if (buf.length === PUBLIC_KEY_OFFSET) return fail('public-key-missing', 'CGA Parameters have no public key', PUBLIC_KEY_OFFSET);
  const key = readDerElement(buf, PUBLIC_KEY_OFFSET);
  if (!key.ok) {
    const code = key.code === 'der-length-invalid' ? 'der-length-invalid' : 'der-truncated';
    return fail(code, `public key: ${key.message}`, key.offset);
  }
  const shape = checkSubjectPublicKeyInfo(buf, key.element);
  if (shape) return fail('public-key-not-spki', shape.message, shape.offset);

  const extensionFields: CgaExtension[] = [];
  let seenMultiPrefix = false;
  let p = key.element.end;
  while (p < buf.length) {
    if (p + EXTENSION_HEADER_LENGTH > buf.length) {
      return fail('extension-truncated', `extension header needs ${EXTENSION_HEADER_LENGTH} octets, ${buf.length - p} left`, p);
    }
    const type = ((buf[p] as number) << 8) | (buf[p + 1] as number);
    const length = ((buf[p + 2] as number) << 8) | (buf[p + 3] as number);
    const dataStart = p + EXTENSION_HEADER_LENGTH;
    if (dataStart + length > buf.length) {
      return fail('extension-truncated', `extension type 0x${type.toString(16)} declares ${length} data octets, ${buf.length - dataStart} left`, p);
    }
    const data = Buffer.from(buf.subarray(dataStart, dataStart + length));
    if (type === MULTI_PREFIX_EXTENSION_TYPE) {
      if (seenMultiPrefix) return fail('multi-prefix-repeated', 'more than one Multi-Prefix extension', p);
      seenMultiPrefix = true;
      const mp = decodeMultiPrefixExtension(data);
      if (!mp.ok) return fail('multi-prefix-malformed', mp.error.message, dataStart + mp.error.offset);
    }
    extensionFields.push({ type, data });
    p = dataStart + length;
  }
  return {
    ok: true,
    value: {
      modifier: Buffer.from(buf.subarray(0, MODIFIER_LENGTH)),
      subnetPrefix: Buffer.from(buf.subarray(SUBNET_PREFIX_OFFSET, SUBNET_PREFIX_OFFSET + SUBNET_PREFIX_LENGTH)),
      collisionCount: buf[COLLISION_COUNT_OFFSET] as number,
      publicKey: Buffer.from(buf.subarray(PUBLIC_KEY_OFFSET, key.element.end)),
      extensionFields,
    },
  };
}

/** Encodes one extension field (RFC 4581 TLV). */
export function encodeExtensionField(ext: CgaExtension): Buffer {
  if (!Number.isInteger(ext.type) || ext.type < 0 || ext.type > 0xffff) throw new RangeError(`extension type ${ext.type} out of range`);
  if (ext.data.length > 0xffff) throw new RangeError(`extension data of ${ext.data.length} octets is too long`);
  const header = Buffer.alloc(EXTENSION_HEADER_LENGTH);
  header.writeUInt16BE(ext.type, 0);
  header.writeUInt16BE(ext.data.length, 2);
  return Buffer.concat([header, ext.data]);
}

/**
 * Encodes a CGA Parameters data structure. Throws RangeError when a field has the
 * wrong size (a programming error, not bad input from the network).
 */
export function encodeCgaParameters(params: CgaParameters): Buffer {
  if (params.modifier.length !== MODIFIER_LENGTH) throw new RangeError(`modifier must be ${MODIFIER_LENGTH} octets`);
  if (params.subnetPrefix.length !== SUBNET_PREFIX_LENGTH) throw new RangeError(`subnet prefix must be ${SUBNET_PREFIX_LENGTH} octets`);
  if (!Number.isInteger(params.collisionCount) || params.collisionCount < 0 || params.collisionCount > 0xff) {
    throw new RangeError(`collision count ${params.collisionCount} does not fit 8 bits`);
  }
  if (params.publicKey.length === 0) throw new RangeError('public key is empty');
  return Buffer.concat([
    params.modifier,
    params.subnetPrefix,
    Buffer.from([params.collisionCount]),
    params.publicKey,
    ...params.extensionFields.map(encodeExtensionField),
  ]);
}

