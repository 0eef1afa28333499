/**
 * Hash1, Hash2 and the interface identifier of a CGA (RFC 3972 sections 2 and 4).
 *
 * - Hash2: SHA-1 over modifier | 9 zero octets | public key | extension fields, 112
 *   leftmost bits. That is the encoded parameters with the subnet prefix and the
 *   collision count zeroed, so it is computed on a copy of the encoded structure.
 * - Hash1: SHA-1 over the whole CGA Parameters data structure, 64 leftmost bits.
 * - Interface identifier: Hash1 with Sec in its three leftmost bits and bits 6 and 7
 *   (the "u" and "g" bits) zero.
 */
import * as crypto from 'node:crypto';
import { COLLISION_COUNT_OFFSET, SUBNET_PREFIX_LENGTH, SUBNET_PREFIX_OFFSET } from './params';

export const HASH1_LENGTH = 8;
export const HASH2_LENGTH = 14;
export const MAX_SEC = 7;
/** Mask of the interface identifier's first octet that Hash1 keeps (not Sec, not u/g). */
const HASH1_FIRST_OCTET_MASK = 0x1c;
const UG_BITS_MASK = 0x03;

type OneShotHash = (algorithm: string, data: Uint8Array, outputEncoding: 'buffer') => Buffer;
const oneShot = (crypto as unknown as { hash?: OneShotHash }).hash;

/** SHA-1 of `data` (the one-shot crypto.hash where Node has it, node >= 20.12). */
export const sha1: (data: Uint8Array) => Buffer = oneShot
  ? (data) => oneShot('sha1', data, 'buffer')
  : (data) => crypto.createHash('sha1').update(data).digest();

/** True if `sec` is a valid security parameter (an integer 0..7). */
export function isValidSec(sec: unknown): sec is number {
  return typeof sec === 'number' && Number.isInteger(sec) && sec >= 0 && sec <= MAX_SEC;
}

/** The Hash2 input: the encoded parameters with subnet prefix and collision count zeroed (a copy). */
export function hash2Input(encodedParams: Uint8Array): Buffer {
  const b = Buffer.from(encodedParams);
  b.fill(0, SUBNET_PREFIX_OFFSET, SUBNET_PREFIX_OFFSET + SUBNET_PREFIX_LENGTH);
  if (b.length > COLLISION_COUNT_OFFSET) b[COLLISION_COUNT_OFFSET] = 0;
  return b;
}

/** Hash2 (112 bits) of encoded CGA Parameters. */
export function hash2(encodedParams: Uint8Array): Buffer {
  return sha1(hash2Input(encodedParams)).subarray(0, HASH2_LENGTH);
}

/** Hash1 (64 bits) of encoded CGA Parameters. */
export function hash1(encodedParams: Uint8Array): Buffer {
  return sha1(encodedParams).subarray(0, HASH1_LENGTH);
}

/** True if the 16*Sec leftmost bits of `hash` are zero (always true for Sec 0). */
export function hash2MeetsSec(hash: Uint8Array, sec: number): boolean {
  for (let i = 0; i < 2 * sec; i++) if (hash[i] !== 0) return false;
  return true;
}

/** The interface identifier formed from Hash1 (RFC 3972 section 4 step 6). */
export function interfaceIdentifier(hash1Value: Uint8Array, sec: number): Buffer {
  const iid = Buffer.from(hash1Value.subarray(0, HASH1_LENGTH));
  iid[0] = ((sec << 5) | ((iid[0] as number) & HASH1_FIRST_OCTET_MASK)) & 0xff;
  return iid;
}

/** Subnet prefix (8 octets) followed by the interface identifier (8 octets). */
export function concatAddress(subnetPrefix: Uint8Array, iid: Uint8Array): Buffer {
  return Buffer.concat([subnetPrefix.subarray(0, 8), iid.subarray(0, 8)]);
}

/** Sec as written in the three leftmost bits of the address's interface identifier. */
export function secOfAddress(address: Uint8Array): number {
  return ((address[8] as number) >> 5) & 0x07;
}

/** True if the "u" or "g" bit of the address's interface identifier is set. */
export function ugBitsSet(address: Uint8Array): boolean {
  return ((address[8] as number) & UG_BITS_MASK) !== 0;
}

/**
 * Compares Hash1 with the address's interface identifier, ignoring the three leftmost
 * bits and bits 6 and 7 (RFC 3972 section 5 step 4).
 */
export function hash1MatchesInterfaceIdentifier(hash1Value: Uint8Array, address: Uint8Array): boolean {
  if ((((hash1Value[0] as number) ^ (address[8] as number)) & HASH1_FIRST_OCTET_MASK) !== 0) return false;
  for (let i = 1; i < HASH1_LENGTH; i++) if (hash1Value[i] !== address[8 + i]) return false;
  return true;
}

/** Number of Hash2 computations expected to find a modifier for `sec` (2^(16*Sec)). */
export function expectedAttempts(sec: number): number {
  return 2 ** (16 * sec);
}
