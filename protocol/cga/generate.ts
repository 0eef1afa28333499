/**
 * CGA generation (RFC 3972 section 4):
 *
 *   1. modifier := random 128 bits
 *   2-3. increment the modifier until the 16*Sec leftmost bits of Hash2 are zero
 *   4. collision count := 0
 *   5. Hash1 := SHA-1(modifier | subnet prefix | collision count | public key | extensions), 64 bits
 *   6. interface identifier := Hash1 with Sec in the three leftmost bits, u and g bits zero
 *   7. address := subnet prefix | interface identifier
 *   8. on a duplicate address, increment the collision count and go back to 5; give up
 *      after three collisions
 *   9. the CGA Parameters are modifier | subnet prefix | collision count | key | extensions
 *
 * generateCga runs the search in the calling thread (CLI, offline use); generateCgaAsync
 * runs it in a worker thread with progress and cancellation (daemons).
 */
import * as crypto from 'node:crypto';
import { concatAddress, hash1, hash2Input, interfaceIdentifier, isValidSec } from './hash';
import { searchModifier, type ModifierFound, type ModifierSearchOptions } from './modifier-search';
import {
  decodeCgaParameters,
  encodeCgaParameters,
  MAX_COLLISION_COUNT,
  MODIFIER_LENGTH,
  SUBNET_PREFIX_LENGTH,
  SUBNET_PREFIX_OFFSET,
  type CgaExtension,
  type CgaParameters,
} from './params';
import { searchModifierInWorker, type AsyncSearchOptions } from './worker';

export interface CgaGenerationOptions {
  /** The 64-bit subnet prefix (8 octets). */
  subnetPrefix: Uint8Array;
  /** The public key, DER SubjectPublicKeyInfo (see keys.ts publicKeyDer). */
  publicKey: Uint8Array;
  /** Security parameter 0..7. */
  sec: number;
  /** Where the modifier search starts (default: 16 random octets). */
  modifier?: Uint8Array;
  /** 0 (default), 1 or 2: use 1 or 2 after duplicate address detection found a collision. */
  collisionCount?: number;
  /** Extension fields to include (they are covered by both hashes). */
  extensionFields?: CgaExtension[];
}

export interface GeneratedCga {
  address: Buffer;
  params: CgaParameters;
  /** The encoded CGA Parameters data structure (what goes in a CGA Parameter Data Structure option). */
  encoded: Buffer;
  sec: number;
  /** Hash2 computations the modifier search made. */
  attempts: number;
}

/** What a modifier search needs, checked: the parameters (modifier still to find) and Hash2 input. */
export interface PreparedGeneration {
  template: CgaParameters;
  hash2Input: Buffer;
  start: Buffer;
  sec: number;
}

/** Checks generation options and builds the search input; throws RangeError on bad options. */
export function prepareGeneration(
  subnetPrefix: Uint8Array,
  publicKey: Uint8Array,
  sec: number,
  options: { modifier?: Uint8Array; collisionCount?: number; extensionFields?: CgaExtension[] },
): PreparedGeneration {
  if (!isValidSec(sec)) throw new RangeError(`Sec must be an integer 0..7, got ${String(sec)}`);
  if (subnetPrefix.length !== SUBNET_PREFIX_LENGTH) throw new RangeError(`subnet prefix must be ${SUBNET_PREFIX_LENGTH} octets`);
  const collisionCount = options.collisionCount ?? 0;
  if (!Number.isInteger(collisionCount) || collisionCount < 0 || collisionCount > MAX_COLLISION_COUNT) {
    throw new RangeError(`collision count must be 0..${MAX_COLLISION_COUNT}, got ${collisionCount}`);
  }
  const start = options.modifier ? Buffer.from(options.modifier) : crypto.randomBytes(MODIFIER_LENGTH);
  if (start.length !== MODIFIER_LENGTH) throw new RangeError(`modifier must be ${MODIFIER_LENGTH} octets`);
  const template: CgaParameters = {
    modifier: Buffer.alloc(MODIFIER_LENGTH),
    subnetPrefix: Buffer.from(subnetPrefix),
    collisionCount,
    publicKey: Buffer.from(publicKey),
    extensionFields: (options.extensionFields ?? []).map((e) => ({ type: e.type, data: Buffer.from(e.data) })),
  };
  const encoded = encodeCgaParameters(template);
  const check = decodeCgaParameters(encoded);
  if (!check.ok) throw new RangeError(`unusable CGA Parameters: ${check.error.message}`);
  return { template, hash2Input: hash2Input(encoded), start, sec };
}

/** The address given CGA Parameters yield with `sec` (RFC 3972 section 4 steps 5-7). */
export function computeCgaAddress(params: CgaParameters | Uint8Array, sec: number): Buffer {
  const encoded = params instanceof Uint8Array ? params : encodeCgaParameters(params);
  const subnetPrefix = params instanceof Uint8Array
    ? params.subarray(SUBNET_PREFIX_OFFSET, SUBNET_PREFIX_OFFSET + SUBNET_PREFIX_LENGTH)
    : params.subnetPrefix;
  return concatAddress(subnetPrefix, interfaceIdentifier(hash1(encoded), sec));
}

/** Completes generation once the modifier is known. */
export function finishCgaGeneration(prepared: PreparedGeneration, found: ModifierFound): GeneratedCga {
  const params: CgaParameters = { ...prepared.template, modifier: Buffer.from(found.modifier) };
  const encoded = encodeCgaParameters(params);
  return { address: computeCgaAddress(encoded, prepared.sec), params, encoded, sec: prepared.sec, attempts: found.attempts };
}

function prepareCga(options: CgaGenerationOptions): PreparedGeneration {
  return prepareGeneration(options.subnetPrefix, options.publicKey, options.sec, options);
}

/**
 * Generates a CGA in the calling thread. Throws RangeError on bad options and Error if
 * the search was stopped (onProgress returned true) or ran out of maxAttempts.
 */
export function generateCga(options: CgaGenerationOptions, search: ModifierSearchOptions = {}): GeneratedCga {
  const prepared = prepareCga(options);
  const found = searchModifier(prepared.hash2Input, prepared.sec, prepared.start, search);
  if (!found) throw new Error('modifier search stopped before finding a modifier');
  return finishCgaGeneration(prepared, found);
}

/** Generates a CGA with the modifier search in a worker thread. Rejects with an AbortError when aborted. */
export async function generateCgaAsync(options: CgaGenerationOptions, search: AsyncSearchOptions = {}): Promise<GeneratedCga> {
  const prepared = prepareCga(options);
  const found = await searchModifierInWorker(prepared.hash2Input, prepared.sec, prepared.start, search);
  return finishCgaGeneration(prepared, found);
}

/**
 * After duplicate address detection found `generated.address` in use: the same
 * parameters with the collision count incremented (step 8), or undefined after three
 * collisions ("stop and report the error").
 */
export function nextAfterCollision(generated: GeneratedCga): GeneratedCga | undefined {
  const collisionCount = generated.params.collisionCount + 1;
  if (collisionCount > MAX_COLLISION_COUNT) return undefined;
  const params: CgaParameters = { ...generated.params, collisionCount };
  const encoded = encodeCgaParameters(params);
  return { ...generated, params, encoded, address: computeCgaAddress(encoded, generated.sec), attempts: 0 };
}
