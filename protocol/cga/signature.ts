/**
 * The CGA Signature of a Shim6 locator list (RFC 5533 section 5.15.5): RSASSA-PKCS1-v1_5
 * with SHA-1, by the private key whose public key is in the CGA Parameters, over the
 * 128-bit Shim6 CGA Message Type tag followed by the signed data.
 *
 * The tag is the one IANA lists for RFC 5533 in the "CGA Message Type Name Space"
 * registry. Which octets follow it (the Locator List option as carried in the message)
 * is the wire-format codec's business: callers pass them already encoded.
 */
import * as crypto from 'node:crypto';
import { parseIPv6 } from '../address';
import { VerificationMethod } from '../constants';
import type { LocatorEntry } from '../options';
import { verifyHbaLocator } from './hba';
import { findMultiPrefixExtension } from './multi-prefix';
import type { CgaParameters } from './params';
import { loadRsaPrivateKey, loadRsaPublicKey, rsaModulusBits, type KeyInput } from './keys';
import { toParamsAndOctets, verifyDecodedCga, type CgaVerificationStep, type CgaVerifyOptions } from './verify';

/** 0x4A30 5662 4858 574B 3655 416F 506A 6D48: the CGA Message Type tag of Shim6 (RFC 5533). */
export const SHIM6_CGA_MESSAGE_TYPE_TAG: Buffer = Buffer.from('4a305662485857 4b3655416f506a6d48'.replace(/ /g, ''), 'hex');

/** Keys shorter than this are refused by verification unless told otherwise. */
export const DEFAULT_MIN_MODULUS_BITS = 1024;

/**
 * The data a Shim6 CGA Signature covers after the tag (RFC 5533 section 5.15.5): the
 * Locator List Generation of the Locator List option in the same message, then the
 * locators of that list whose verification method is CGA, in their order in the list.
 * Returns undefined when a locator is not an IPv6 address.
 */
export function locatorListSignedData(generation: number, locators: readonly LocatorEntry[]): Buffer | undefined {
  const cga = locators.filter((l) => l.verificationMethod === VerificationMethod.CGA);
  const out = Buffer.alloc(4 + 16 * cga.length);
  out.writeUInt32BE(generation >>> 0, 0);
  for (const [i, l] of cga.entries()) {
    const a = parseIPv6(l.address);
    if (!a) return undefined;
    a.copy(out, 4 + 16 * i);
  }
  return out;
}

/** The octets actually signed: the Shim6 CGA Message Type tag, then `signedData`. */
export function cgaSignatureInput(signedData: Uint8Array): Buffer {
  return Buffer.concat([SHIM6_CGA_MESSAGE_TYPE_TAG, signedData]);
}

/**
 * Signs `signedData` (RSASSA-PKCS1-v1_5, SHA-1, Shim6 tag prepended). Throws TypeError
 * when the key is not a usable RSA private key (a configuration error).
 */
export function signLocatorList(privateKey: KeyInput, signedData: Buffer): Buffer {
  const k = loadRsaPrivateKey(privateKey);
  if (!k.ok) throw new TypeError(`CGA signature key: ${k.message}`);
  return crypto.sign('sha1', cgaSignatureInput(signedData), { key: k.key, padding: crypto.constants.RSA_PKCS1_PADDING });
}

export interface SignatureVerifyOptions {
  /** Minimum RSA modulus length accepted (default 1024). */
  minModulusBits?: number;
}

/**
 * Checks a CGA Signature against the public key of the CGA Parameters (DER
 * SubjectPublicKeyInfo); false for any bad input, never throws.
 */
export function verifyLocatorListSignature(
  publicKeyDer: Buffer,
  signedData: Buffer,
  signature: Buffer,
  options: SignatureVerifyOptions = {},
): boolean {
  const k = loadRsaPublicKey(publicKeyDer);
  return k.ok && verifyWithKey(k.key, signedData, signature, options);
}

/** verifyLocatorListSignature with the key already loaded (loading it costs as much as the check). */
function verifyWithKey(key: crypto.KeyObject, signedData: Buffer, signature: Buffer, options: SignatureVerifyOptions): boolean {
  const bits = rsaModulusBits(key) ?? 0;
  if (bits < (options.minModulusBits ?? DEFAULT_MIN_MODULUS_BITS)) return false;
  if (signature.length !== Math.ceil(bits / 8)) return false;
  try {
    return crypto.verify('sha1', cgaSignatureInput(signedData), { key, padding: crypto.constants.RSA_PKCS1_PADDING }, signature);
  } catch {
    return false;
  }
}

export type SignedLocatorListStep = CgaVerificationStep | 'hba-set-membership' | 'public-key' | 'signature';

export type SignedLocatorListVerification =
  | { ok: true; sec: number; params: CgaParameters }
  | { ok: false; step: SignedLocatorListStep; message: string };

/**
 * The whole CGA check of RFC 5533 for a peer's new locators: the ULID is the CGA of the
 * CGA Parameters, those carry a real public key (no Multi-Prefix extension, or one with
 * the P flag set), and the signature over the locator list verifies with it. Never throws.
 *
 * With HBA/CGA-compatible parameters the ULID may be the address of any prefix of the set
 * (the Subnet Prefix field holds only one of them): it is checked as an HBA locator.
 */
export function verifySignedLocatorList(
  ulid: Uint8Array,
  params: Uint8Array | CgaParameters,
  signedData: Buffer,
  signature: Buffer,
  options: CgaVerifyOptions & SignatureVerifyOptions = {},
): SignedLocatorListVerification {
  const p = toParamsAndOctets(params);
  if (!p.ok) return { ok: false, step: 'decode', message: p.message };
  const mp = findMultiPrefixExtension(p.params);
  const v = mp ? verifyHbaLocator(ulid, p.encoded, options) : verifyDecodedCga(ulid, p.params, p.encoded, options);
  if (!v.ok) {
    // A Multi-Prefix extension is there, so verifyHbaLocator cannot stop at 'multi-prefix'.
    const step = v.step === 'multi-prefix' ? 'decode' : v.step;
    return { ok: false, step, message: v.message };
  }
  if (mp && !mp.publicKeyIncluded) return { ok: false, step: 'public-key', message: 'HBA-only parameters (P flag clear) carry no public key' };
  const k = loadRsaPublicKey(p.params.publicKey);
  if (!k.ok) return { ok: false, step: 'public-key', message: `public key: ${k.message}` };
  if (!verifyWithKey(k.key, signedData, signature, options)) {
    return { ok: false, step: 'signature', message: 'the CGA Signature does not verify with the public key of the CGA Parameters' };
  }
  return { ok: true, sec: v.sec, params: p.params };
}
