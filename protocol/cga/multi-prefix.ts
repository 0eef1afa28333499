/**
 * The Multi-Prefix extension of the CGA Parameters (RFC 5535 section 3; Extension Type
 * 0x0012 in the IANA "CGA Extension Type Values" registry):
 *
 *   Extension Type (16) | Extension Data Length (16) |
 *   P (1 bit) | Reserved (31 bits) | Prefix[1] (64) ... Prefix[n] (64)
 *
 * P is set when the Public Key field holds a real public key (an HBA/CGA-compatible
 * set) and clear when it holds RFC 5535's random stand-in (an HBA-only set).
 */
import type { CgaExtension, CgaParameters } from './params';

export const MULTI_PREFIX_EXTENSION_TYPE = 0x0012;
const P_FLAG = 0x80;
const FLAGS_LENGTH = 4;
const PREFIX_LENGTH = 8;

export interface MultiPrefixExtension {
  /** The P flag: a public key is included in the Public Key field. */
  publicKeyIncluded: boolean;
  /** The 64-bit prefixes of the HBA set, in order. */
  prefixes: Buffer[];
}

export type MultiPrefixDecode =
  | { ok: true; value: MultiPrefixExtension }
  | { ok: false; error: { message: string; offset: number } };

/** Decodes the Extension Data of a Multi-Prefix extension (offsets relative to it); never throws. */
export function decodeMultiPrefixExtension(data: Uint8Array): MultiPrefixDecode {
  if (data.length < FLAGS_LENGTH) {
    return { ok: false, error: { message: `Multi-Prefix extension data of ${data.length} octets has no P flag`, offset: 0 } };
  }
  if ((data.length - FLAGS_LENGTH) % PREFIX_LENGTH !== 0) {
    return { ok: false, error: { message: `Multi-Prefix extension data of ${data.length} octets is not 4 + 8n`, offset: FLAGS_LENGTH } };
  }
  const prefixes: Buffer[] = [];
  for (let p = FLAGS_LENGTH; p < data.length; p += PREFIX_LENGTH) prefixes.push(Buffer.from(data.subarray(p, p + PREFIX_LENGTH)));
  return { ok: true, value: { publicKeyIncluded: ((data[0] as number) & P_FLAG) !== 0, prefixes } };
}

/** Encodes a Multi-Prefix extension field (reserved bits zero). */
export function encodeMultiPrefixExtension(ext: MultiPrefixExtension): CgaExtension {
  for (const p of ext.prefixes) if (p.length !== PREFIX_LENGTH) throw new RangeError('Multi-Prefix prefixes must be 8 octets');
  const head = Buffer.alloc(FLAGS_LENGTH);
  if (ext.publicKeyIncluded) head[0] = P_FLAG;
  return { type: MULTI_PREFIX_EXTENSION_TYPE, data: Buffer.concat([head, ...ext.prefixes]) };
}

/** The Multi-Prefix extension of decoded parameters, if there is one (and it is well formed). */
export function findMultiPrefixExtension(params: CgaParameters): MultiPrefixExtension | undefined {
  const field = params.extensionFields.find((e) => e.type === MULTI_PREFIX_EXTENSION_TYPE);
  if (!field) return undefined;
  const decoded = decodeMultiPrefixExtension(field.data);
  return decoded.ok ? decoded.value : undefined;
}
