/**
 * The modifier search of CGA generation (RFC 3972 section 4 steps 2-3): starting from
 * a (random) modifier, compute Hash2 and increment the modifier by one until the
 * 16*Sec leftmost bits of Hash2 are zero. Expected cost 2^(16*Sec) SHA-1 computations:
 * milliseconds for Sec 1, hours for Sec 2, beyond reach for Sec 3 and up.
 *
 * This is the synchronous search; worker.ts runs the same function in a worker thread.
 */
import { expectedAttempts, hash2MeetsSec, HASH2_LENGTH, sha1 } from './hash';
import { MODIFIER_LENGTH } from './params';

export interface ModifierSearchProgress {
  /** Hash2 computations so far. */
  attempts: number;
  /** 2^(16*Sec): the mean number of computations a search takes. */
  expectedAttempts: number;
}

export interface ModifierSearchOptions {
  /** Called every `progressEvery` attempts. Returning true stops the search. */
  onProgress?: (progress: ModifierSearchProgress) => boolean | void;
  /** Attempts between progress calls (default 65536). */
  progressEvery?: number;
  /** Give up (return undefined) after this many attempts. */
  maxAttempts?: number;
}

export interface ModifierFound {
  modifier: Buffer;
  /** Hash2 computations made (0 for Sec 0, whose first modifier always does). */
  attempts: number;
}

export const DEFAULT_PROGRESS_EVERY = 65536;

/**
 * Adds one to the 128-bit big-endian modifier in the first 16 octets of `buf`, in place
 * (wrapping at 2^128).
 */
export function incrementModifier(buf: Uint8Array): void {
  for (let i = MODIFIER_LENGTH - 1; i >= 0; i--) {
    const v = ((buf[i] as number) + 1) & 0xff;
    buf[i] = v;
    if (v !== 0) return;
  }
}

/**
 * Searches for a modifier. `hash2InputTemplate` is the Hash2 input (the encoded
 * parameters with subnet prefix and collision count zeroed); the search runs on a private
 * copy whose first 16 octets hold the modifier being tried. Returns undefined when
 * stopped or out of attempts.
 */
export function searchModifier(
  hash2InputTemplate: Uint8Array,
  sec: number,
  start: Uint8Array,
  options: ModifierSearchOptions = {},
): ModifierFound | undefined {
  if (start.length !== MODIFIER_LENGTH) throw new RangeError(`modifier must be ${MODIFIER_LENGTH} octets`);
  if (sec === 0) return { modifier: Buffer.from(start), attempts: 0 };
  // The modifier lives in the first 16 octets of a private copy of the Hash2 input.
  const input = Buffer.from(hash2InputTemplate);
  input.set(start, 0);
  const every = Math.max(1, options.progressEvery ?? DEFAULT_PROGRESS_EVERY);
  const max = options.maxAttempts ?? Number.POSITIVE_INFINITY;
  const expected = expectedAttempts(sec);
  const zeroOctets = Math.min(2 * sec, HASH2_LENGTH);
  let attempts = 0;
  while (attempts < max) {
    const h = sha1(input);
    attempts++;
    if (h[0] === 0 && h[1] === 0 && (zeroOctets <= 2 || hash2MeetsSec(h, sec))) {
      return { modifier: Buffer.from(input.subarray(0, MODIFIER_LENGTH)), attempts };
    }
    incrementModifier(input);
    if (attempts % every === 0 && options.onProgress?.({ attempts, expectedAttempts: expected }) === true) return undefined;
  }
  return undefined;
}
