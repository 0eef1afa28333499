/**
 * CGA verification (RFC 3972 section 5), each failure naming its step:
 *
 *   decode           the CGA Parameters do not decode (or the address is not 16 octets)
 *   collision-count  1. the collision count is not 0, 1 or 2
 *   subnet-prefix    2. the subnet prefix differs from the address's leftmost 64 bits
 *   bits-ug          (only with rejectUgBits) the address has the u or g bit set
 *   hash1            3-4. Hash1 differs from the interface identifier (ignoring the
 *                    three leftmost bits and the u and g bits)
 *   sec-hash2        5-7. the 16*Sec leftmost bits of Hash2 are not all zero, Sec
 *                    being read from the address
 *
 * RFC 3972 ignores the u and g bits in step 4; rejectUgBits adds the stricter check some
 * implementations make (generation always writes them as zero).
 *
 * Verifiers are total: bad input gives { ok: false }, never an exception.
 */
import { IPV6_ADDRESS_LENGTH } from '../address';
import { hash1, hash1MatchesInterfaceIdentifier, hash2, hash2MeetsSec, secOfAddress, ugBitsSet } from './hash';
import {
  decodeCgaParameters,
  encodeCgaParameters,
  MAX_COLLISION_COUNT,
  SUBNET_PREFIX_LENGTH,
  type CgaParameters,
  type CgaParamsError,
} from './params';

export type CgaVerificationStep = 'decode' | 'collision-count' | 'subnet-prefix' | 'bits-ug' | 'hash1' | 'sec-hash2';

export type CgaVerification =
  | { ok: true; sec: number; params: CgaParameters }
  | { ok: false; step: CgaVerificationStep; message: string; decodeError?: CgaParamsError };

export interface CgaVerifyOptions {
  /** Also reject addresses whose u or g bit is set (step 'bits-ug'). Default false, as RFC 3972. */
  rejectUgBits?: boolean;
}

/** Decoded parameters and their exact octets, from either form; never throws. */
export function toParamsAndOctets(
  params: Uint8Array | CgaParameters,
): { ok: true; params: CgaParameters; encoded: Uint8Array } | { ok: false; message: string; decodeError?: CgaParamsError } {
  if (params instanceof Uint8Array) {
    const d = decodeCgaParameters(params);
    if (!d.ok) return { ok: false, message: `CGA Parameters: ${d.error.message} (at octet ${d.error.offset})`, decodeError: d.error };
    return { ok: true, params: d.value, encoded: params };
  }
  let encoded: Buffer;
  try {
    encoded = encodeCgaParameters(params);
  } catch (e) {
    return { ok: false, message: `CGA Parameters: ${e instanceof Error ? e.message : String(e)}` };
  }
  const d = decodeCgaParameters(encoded);
  if (!d.ok) return { ok: false, message: `CGA Parameters: ${d.error.message} (at octet ${d.error.offset})`, decodeError: d.error };
  return { ok: true, params: d.value, encoded };
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

/** Steps 1-7 on parameters already decoded; `encoded` are their exact octets. */
export function verifyDecodedCga(
  address: Uint8Array,
  params: CgaParameters,
  encoded: Uint8Array,
  options: CgaVerifyOptions = {},
): CgaVerification {
  if (address.length !== IPV6_ADDRESS_LENGTH) {
    return { ok: false, step: 'decode', message: `address must be ${IPV6_ADDRESS_LENGTH} octets, got ${address.length}` };
  }
  if (params.collisionCount > MAX_COLLISION_COUNT) {
    return { ok: false, step: 'collision-count', message: `collision count ${params.collisionCount} is not 0, 1 or 2` };
  }
  const addressPrefix = address.subarray(0, SUBNET_PREFIX_LENGTH);
  if (Buffer.compare(params.subnetPrefix, addressPrefix) !== 0) {
    return { ok: false, step: 'subnet-prefix', message: `subnet prefix ${hex(params.subnetPrefix)} differs from the address prefix ${hex(addressPrefix)}` };
  }
  if (options.rejectUgBits && ugBitsSet(address)) {
    return { ok: false, step: 'bits-ug', message: 'the u or g bit of the interface identifier is set' };
  }
  const h1 = hash1(encoded);
  if (!hash1MatchesInterfaceIdentifier(h1, address)) {
    return { ok: false, step: 'hash1', message: `Hash1 ${hex(h1)} does not match the interface identifier ${hex(address.subarray(8))}` };
  }
  const sec = secOfAddress(address);
  const h2 = hash2(encoded);
  if (!hash2MeetsSec(h2, sec)) {
    return { ok: false, step: 'sec-hash2', message: `Sec ${sec} needs the ${16 * sec} leftmost bits of Hash2 zero; Hash2 is ${hex(h2)}` };
  }
  return { ok: true, sec, params };
}

/** Verifies that `address` is the CGA of `params` (encoded octets or decoded); never throws. */
export function verifyCga(address: Uint8Array, params: Uint8Array | CgaParameters, options: CgaVerifyOptions = {}): CgaVerification {
  const p = toParamsAndOctets(params);
  if (!p.ok) return { ok: false, step: 'decode', message: p.message, ...(p.decodeError ? { decodeError: p.decodeError } : {}) };
  return verifyDecodedCga(address, p.params, p.encoded, options);
}
