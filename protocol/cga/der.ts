/**
 * The little DER (X.690) the CGA Parameters need: the public key field holds a
 * DER-encoded SubjectPublicKeyInfo (RFC 3972 section 3), and only its outer SEQUENCE
 * length tells where the extension fields begin. Readers are total: they return a
 * result, never throw.
 */

export const DER_TAG_SEQUENCE = 0x30;
export const DER_TAG_BIT_STRING = 0x03;
export const DER_TAG_NULL = 0x05;
export const DER_TAG_OBJECT_IDENTIFIER = 0x06;

/** Why a DER element could not be read. */
export type DerErrorCode =
  | 'der-missing' // nothing left to read
  | 'der-length-invalid' // indefinite, non-minimal, or more than 4 length octets
  | 'der-truncated'; // the element runs past the end of the buffer

/** One TLV: `tag` at `offset`, contents in [contentStart, end). */
export interface DerElement {
  tag: number;
  offset: number;
  contentStart: number;
  end: number;
}

export type DerRead =
  | { ok: true; element: DerElement }
  | { ok: false; code: DerErrorCode; message: string; offset: number };

/** Reads one DER element (low tag numbers only) at `offset`, not past `limit`. */
export function readDerElement(buf: Uint8Array, offset: number, limit = buf.length): DerRead {
  if (offset >= limit) return { ok: false, code: 'der-missing', message: 'no DER element', offset };
  const tag = buf[offset] as number;
  if (offset + 1 >= limit) return { ok: false, code: 'der-truncated', message: 'DER element has no length octet', offset };
  const first = buf[offset + 1] as number;
  let length: number;
  let contentStart: number;
  if (first < 0x80) {
    length = first;
    contentStart = offset + 2;
  } else {
    const count = first & 0x7f;
    if (count === 0) return { ok: false, code: 'der-length-invalid', message: 'indefinite DER length', offset: offset + 1 };
    if (count > 4) return { ok: false, code: 'der-length-invalid', message: `DER length of ${count} octets`, offset: offset + 1 };
    if (offset + 2 + count > limit) return { ok: false, code: 'der-truncated', message: 'DER length octets truncated', offset: offset + 1 };
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + (buf[offset + 2 + i] as number);
    if ((buf[offset + 2] as number) === 0 || length < 0x80) {
      return { ok: false, code: 'der-length-invalid', message: 'non-minimal DER length', offset: offset + 1 };
    }
    contentStart = offset + 2 + count;
  }
  const end = contentStart + length;
  if (end > limit) {
    return { ok: false, code: 'der-truncated', message: `DER element needs ${end - offset} octets, ${limit - offset} left`, offset };
  }
  return { ok: true, element: { tag, offset, contentStart, end } };
}

/** Encodes a DER length. */
export function encodeDerLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const octets: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) octets.unshift(n % 256);
  return Buffer.from([0x80 | octets.length, ...octets]);
}

/** Encodes one DER element. */
export function encodeDerElement(tag: number, contents: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([tag]), encodeDerLength(contents.length), contents]);
}

/** rsaEncryption (1.2.840.113549.1.1.1), the algorithm of RSA SubjectPublicKeyInfo. */
export const OID_RSA_ENCRYPTION = Buffer.from([0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]);

/**
 * Checks the shape of a SubjectPublicKeyInfo occupying exactly buf[offset, end):
 * SEQUENCE { AlgorithmIdentifier SEQUENCE, subjectPublicKey BIT STRING }.
 * Returns undefined when it fits, otherwise what is wrong.
 */
export function checkSubjectPublicKeyInfo(buf: Uint8Array, spki: DerElement): { message: string; offset: number } | undefined {
  if (spki.tag !== DER_TAG_SEQUENCE) return { message: 'public key is not a DER SEQUENCE', offset: spki.offset };
  const algorithm = readDerElement(buf, spki.contentStart, spki.end);
  if (!algorithm.ok) return { message: `public key AlgorithmIdentifier: ${algorithm.message}`, offset: algorithm.offset };
  if (algorithm.element.tag !== DER_TAG_SEQUENCE) return { message: 'public key AlgorithmIdentifier is not a SEQUENCE', offset: algorithm.element.offset };
  const bits = readDerElement(buf, algorithm.element.end, spki.end);
  if (!bits.ok) return { message: `public key BIT STRING: ${bits.message}`, offset: bits.offset };
  if (bits.element.tag !== DER_TAG_BIT_STRING) return { message: 'subjectPublicKey is not a BIT STRING', offset: bits.element.offset };
  if (bits.element.end !== spki.end) return { message: 'trailing data inside SubjectPublicKeyInfo', offset: bits.element.end };
  return undefined;
}

/** The algorithm OID contents of a well-formed SubjectPublicKeyInfo, or undefined. */
export function subjectPublicKeyAlgorithm(spkiDer: Uint8Array): Buffer | undefined {
  const outer = readDerElement(spkiDer, 0);
  if (!outer.ok || outer.element.end !== spkiDer.length) return undefined;
  if (checkSubjectPublicKeyInfo(spkiDer, outer.element)) return undefined;
  const algorithm = readDerElement(spkiDer, outer.element.contentStart, outer.element.end);
  if (!algorithm.ok) return undefined;
  const oid = readDerElement(spkiDer, algorithm.element.contentStart, algorithm.element.end);
  if (!oid.ok || oid.element.tag !== DER_TAG_OBJECT_IDENTIFIER) return undefined;
  return Buffer.from(spkiDer.subarray(oid.element.contentStart, oid.element.end));
}
