/**
 * Hash-Based Addresses (RFC 5535): one CGA Parameters data structure whose Multi-Prefix
 * extension lists every /64 prefix of the host binds all of its addresses. The address
 * for each prefix is the CGA computed with that prefix in the Subnet Prefix field; the
 * modifier search (Hash2, which covers the extension) is done once for the whole set.
 *
 * - HBA/CGA-compatible set: a real RSA public key, P flag set; the owner can also sign
 *   (CGA Signature) for locators outside the set.
 * - HBA-only set: no key pair. RFC 5535 puts a 384-bit random number where the public
 *   key goes and clears the P flag; here it is wrapped as a SubjectPublicKeyInfo
 *   (rsaEncryption, BIT STRING of the 48 random octets), as LinShim6 does, so that the
 *   structure stays parseable by the DER length of the Public Key field.
 *
 * Verifying that a locator belongs to a peer's set: its prefix must be one of the
 * Multi-Prefix prefixes, and the CGA verification must pass with the locator's prefix
 * written in the Subnet Prefix field.
 */
import * as crypto from 'node:crypto';
import { DER_TAG_BIT_STRING, DER_TAG_NULL, DER_TAG_OBJECT_IDENTIFIER, DER_TAG_SEQUENCE, encodeDerElement, OID_RSA_ENCRYPTION } from './der';
import { computeCgaAddress, prepareGeneration, type PreparedGeneration } from './generate';
import { searchModifier, type ModifierFound, type ModifierSearchOptions } from './modifier-search';
import { encodeMultiPrefixExtension, findMultiPrefixExtension } from './multi-prefix';
import { encodeCgaParameters, SUBNET_PREFIX_LENGTH, SUBNET_PREFIX_OFFSET, type CgaParameters } from './params';
import { toParamsAndOctets, verifyDecodedCga, type CgaVerification, type CgaVerificationStep, type CgaVerifyOptions } from './verify';
import { searchModifierInWorker, type AsyncSearchOptions } from './worker';

/** RFC 5535: the random number standing in for a public key in HBA-only sets is 384 bits. */
export const HBA_RANDOM_LENGTH = 48;

/** The HBA-only stand-in for the Public Key field: SubjectPublicKeyInfo around 384 random bits. */
export function hbaPseudoPublicKey(random: Uint8Array = crypto.randomBytes(HBA_RANDOM_LENGTH)): Buffer {
  if (random.length !== HBA_RANDOM_LENGTH) throw new RangeError(`HBA random number must be ${HBA_RANDOM_LENGTH} octets`);
  const algorithm = encodeDerElement(DER_TAG_SEQUENCE, Buffer.concat([
    encodeDerElement(DER_TAG_OBJECT_IDENTIFIER, OID_RSA_ENCRYPTION),
    encodeDerElement(DER_TAG_NULL, Buffer.alloc(0)),
  ]));
  const bits = encodeDerElement(DER_TAG_BIT_STRING, Buffer.concat([Buffer.from([0]), random]));
  return encodeDerElement(DER_TAG_SEQUENCE, Buffer.concat([algorithm, bits]));
}

export interface HbaSetOptions {
  /** The 64-bit prefixes (8 octets each), in the order the addresses are wanted. */
  prefixes: Uint8Array[];
  sec: number;
  /** A DER SubjectPublicKeyInfo for an HBA/CGA-compatible set; absent for HBA-only. */
  publicKey?: Uint8Array;
  /** Where the modifier search starts (default random). */
  modifier?: Uint8Array;
  collisionCount?: number;
  /** HBA-only: the 384-bit random number (default random). */
  random?: Uint8Array;
}

export interface GeneratedHbaSet {
  /** One address per prefix, in the order of options.prefixes. */
  addresses: Buffer[];
  /** The parameters, with the first prefix in the Subnet Prefix field. */
  params: CgaParameters;
  encoded: Buffer;
  sec: number;
  /** P flag: a real public key is included (HBA/CGA-compatible). */
  cgaCompatible: boolean;
  attempts: number;
}

function prepareHbaSet(options: HbaSetOptions): PreparedGeneration {
  const { prefixes } = options;
  if (prefixes.length === 0) throw new RangeError('an HBA set needs at least one prefix');
  const seen = new Set<string>();
  for (const p of prefixes) {
    if (p.length !== SUBNET_PREFIX_LENGTH) throw new RangeError(`HBA prefixes must be ${SUBNET_PREFIX_LENGTH} octets`);
    const key = Buffer.from(p).toString('hex');
    if (seen.has(key)) throw new RangeError(`prefix ${key} is listed twice`);
    seen.add(key);
  }
  const cgaCompatible = options.publicKey !== undefined;
  const publicKey = options.publicKey ?? hbaPseudoPublicKey(options.random);
  const multiPrefix = encodeMultiPrefixExtension({ publicKeyIncluded: cgaCompatible, prefixes: prefixes.map((p) => Buffer.from(p)) });
  return prepareGeneration(prefixes[0] as Uint8Array, publicKey, options.sec, {
    modifier: options.modifier,
    collisionCount: options.collisionCount,
    extensionFields: [multiPrefix],
  });
}

/** The HBA of `params` for `prefix` (8 octets): the CGA with that prefix in the Subnet Prefix field. */
export function hbaAddress(params: CgaParameters, prefix: Uint8Array, sec: number): Buffer {
  return computeCgaAddress({ ...params, subnetPrefix: Buffer.from(prefix) }, sec);
}

function finishHbaSet(prepared: PreparedGeneration, prefixes: Uint8Array[], found: ModifierFound): GeneratedHbaSet {
  const params: CgaParameters = { ...prepared.template, modifier: Buffer.from(found.modifier) };
  const mp = findMultiPrefixExtension(params);
  return {
    addresses: prefixes.map((p) => hbaAddress(params, p, prepared.sec)),
    params,
    encoded: encodeCgaParameters(params),
    sec: prepared.sec,
    cgaCompatible: mp?.publicKeyIncluded ?? false,
    attempts: found.attempts,
  };
}

/** Generates an HBA set in the calling thread (throws as generateCga does). */
export function generateHbaSet(options: HbaSetOptions, search: ModifierSearchOptions = {}): GeneratedHbaSet {
  const prepared = prepareHbaSet(options);
  const found = searchModifier(prepared.hash2Input, prepared.sec, prepared.start, search);
  if (!found) throw new Error('modifier search stopped before finding a modifier');
  return finishHbaSet(prepared, options.prefixes, found);
}

/** Generates an HBA set with the modifier search in a worker thread. */
export async function generateHbaSetAsync(options: HbaSetOptions, search: AsyncSearchOptions = {}): Promise<GeneratedHbaSet> {
  const prepared = prepareHbaSet(options);
  const found = await searchModifierInWorker(prepared.hash2Input, prepared.sec, prepared.start, search);
  return finishHbaSet(prepared, options.prefixes, found);
}

export type HbaVerificationStep = CgaVerificationStep | 'multi-prefix' | 'hba-set-membership';

export type HbaVerification =
  | { ok: true; sec: number; params: CgaParameters; cgaCompatible: boolean }
  | { ok: false; step: HbaVerificationStep; message: string };

/**
 * Verifies that `locator` belongs to the HBA set of `params` (a peer's CGA Parameter
 * Data Structure); never throws. Steps: decode, multi-prefix (no Multi-Prefix
 * extension), hba-set-membership (the locator's prefix is not in it), then the CGA steps
 * with the locator's prefix in the Subnet Prefix field.
 */
export function verifyHbaLocator(locator: Uint8Array, params: Uint8Array | CgaParameters, options: CgaVerifyOptions = {}): HbaVerification {
  const p = toParamsAndOctets(params);
  if (!p.ok) return { ok: false, step: 'decode', message: p.message };
  if (locator.length !== 16) return { ok: false, step: 'decode', message: `locator must be 16 octets, got ${locator.length}` };
  const mp = findMultiPrefixExtension(p.params);
  if (!mp) return { ok: false, step: 'multi-prefix', message: 'the CGA Parameters have no Multi-Prefix extension' };
  const prefix = Buffer.from(locator.subarray(0, SUBNET_PREFIX_LENGTH));
  if (!mp.prefixes.some((x) => x.equals(prefix))) {
    return { ok: false, step: 'hba-set-membership', message: `prefix ${prefix.toString('hex')} is not in the Multi-Prefix extension` };
  }
  // The received octets with the locator's prefix in the Subnet Prefix field.
  const asPrefix: CgaParameters = { ...p.params, subnetPrefix: prefix };
  const octets = Buffer.from(p.encoded);
  prefix.copy(octets, SUBNET_PREFIX_OFFSET);
  const v: CgaVerification = verifyDecodedCga(locator, asPrefix, octets, options);
  if (!v.ok) return { ok: false, step: v.step, message: v.message };
  return { ok: true, sec: v.sec, params: p.params, cgaCompatible: mp.publicKeyIncluded };
}

/** Verifies every locator (first failure wins, with its index). */
export function verifyHbaSet(
  locators: Uint8Array[],
  params: Uint8Array | CgaParameters,
  options: CgaVerifyOptions = {},
): { ok: true } | { ok: false; index: number; step: HbaVerificationStep; message: string } {
  for (let i = 0; i < locators.length; i++) {
    const v = verifyHbaLocator(locators[i] as Uint8Array, params, options);
    if (!v.ok) return { ok: false, index: i, step: v.step, message: v.message };
  }
  return { ok: true };
}
