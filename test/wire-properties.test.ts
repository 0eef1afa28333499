/**
 * Property tests of the control-message codec: every message and option round-trips, and
 * the decoder is total: 100,000+ random and mutated inputs give only values or typed errors.
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { internetChecksum } from '../protocol/checksum';
import { ControlMessage, decodeControlMessage, encodeControlMessage } from '../protocol/control-message';
import { DecodeResult } from '../protocol/decode-result';
import { prng } from './support/prng';
import { controlMessage } from './support/wire-arbitraries';

const SEED = 0x5eed6;

function assertTotal(input: Buffer, r: DecodeResult<unknown>): void {
  if (r.ok) return;
  assert.notEqual(r.error.code, 'INTERNAL', `decoder fault on ${input.toString('hex')}: ${r.error.message}`);
  assert.ok(r.error.offset >= 0 && r.error.offset <= input.length, `offset ${r.error.offset} outside input of ${input.length}`);
  assert.equal(typeof r.error.message, 'string');
}

describe('control-message codec properties', () => {
  it('decode(encode(m)) equals m for every message type and option (fast-check)', () => {
    fc.assert(
      fc.property(controlMessage, (m: ControlMessage) => {
        const wire = encodeControlMessage(m);
        const r = decodeControlMessage(wire);
        if (!r.ok) throw new Error(`${r.error.code} at ${r.error.offset}: ${r.error.message}`);
        assert.deepEqual(r.value.message, m);
        assert.equal(r.value.length, wire.length);
      }),
      { seed: SEED, numRuns: 3000 },
    );
  });

  it('a strict decode is canonical: encode(decode(x)) gives x back', () => {
    fc.assert(
      fc.property(controlMessage, (m) => {
        const wire = encodeControlMessage(m);
        const r = decodeControlMessage(wire);
        assert.ok(r.ok);
        assert.ok(encodeControlMessage(r.value.message).equals(wire));
      }),
      { seed: SEED + 1, numRuns: 1000 },
    );
  });

  it('fuzz: 100,000 random and mutated inputs return values or typed errors, never throw', () => {
    const rand = prng(SEED);
    const seeds = fc.sample(controlMessage, { seed: SEED + 2, numRuns: 200 }).map((m) => encodeControlMessage(m));
    const counts = new Map<string, number>();
    const N = 100_000;
    for (let i = 0; i < N; i++) {
      let input: Buffer;
      const kind = i % 4;
      if (kind === 0) {
        // Pure noise, sometimes with a plausible first four octets.
        input = Buffer.alloc(rand() % 320);
        for (let j = 0; j < input.length; j++) input[j] = rand() & 0xff;
        if (input.length >= 4 && rand() % 2 === 0) {
          input[1] = Math.max(0, (input.length >> 3) - 1);
          input[2] &= 0x7f;
        }
      } else {
        const base = seeds[rand() % seeds.length] as Buffer;
        input = Buffer.from(base);
        const flips = 1 + (rand() % 4);
        for (let f = 0; f < flips; f++) {
          const at = rand() % input.length;
          if (rand() % 2 === 0) input[at] = rand() & 0xff;
          else input[at] = (input[at] as number) ^ (1 << (rand() % 8));
        }
        if (kind === 2) input = input.subarray(0, rand() % (input.length + 1)); // truncate
        if (kind === 3 && input.length >= 8) {
          // Fix the checksum so the mutation reaches the field and option parsers.
          input.writeUInt16BE(0, 4);
          input.writeUInt16BE(internetChecksum(input, 0, Math.min(input.length, ((input[1] as number) + 1) * 8)), 4);
        }
      }
      for (const strictReserved of [true, false]) {
        const r = decodeControlMessage(input, { strictReserved });
        assertTotal(input, r);
        const key = r.ok ? 'ok' : r.error.code;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
    }
    // The mutations must reach the deep parsers, not stop at the checksum.
    for (const code of ['ok', 'BAD_CHECKSUM', 'TRUNCATED', 'OPTION_OVERRUN', 'BAD_OPTION_LENGTH', 'UNKNOWN_MESSAGE_TYPE', 'RESERVED_NONZERO']) {
      assert.ok((counts.get(code) ?? 0) > 0, `no input produced ${code}: ${JSON.stringify([...counts])}`);
    }
  });
});
