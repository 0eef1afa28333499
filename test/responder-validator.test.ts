/**
 * The Responder Validator (shim6d/responder-validator): issue/check round trip, that every
 * field it binds (tag, kind, both ULIDs, both locators, responder nonce) and every octet of
 * the validator matters, the rotation windows (current and previous secret, nothing older),
 * the epoch in the nonce's top 16 bits (and its wrap), and the constant-length check.
 */
import { strict as assert } from 'node:assert';
import { MAX_CONTEXT_TAG } from '../protocol/constants';
import { ResponderValidator, VALIDATOR_LENGTH, type ValidatorFields } from '../shim6d/responder-validator';
import { FakeClock, seededRandom32 } from './support/shim6-network';

const ROTATION = 30_000;

/** Deterministic octets for the secrets and the nonces' low bits. */
function randomOctets(seed: number): (n: number) => Buffer {
  const next = seededRandom32(seed);
  return (n) => {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = next() & 0xff;
    return b;
  };
}

function fields(over: Partial<ValidatorFields> = {}): ValidatorFields {
  return {
    tag: 0x1234_5678_9abc,
    kind: 0,
    initiatorUlid: '2001:db8:a1::1',
    responderUlid: '2001:db8:b1::2',
    initiatorLocator: '2001:db8:a2::1',
    responderLocator: '2001:db8:b2::2',
    ...over,
  };
}

/** A validator at the start of epoch 100 (clock 3_000_000). */
function setup(start = 100 * ROTATION, seed = 1): { clock: FakeClock; v: ResponderValidator } {
  const clock = new FakeClock(start);
  return { clock, v: new ResponderValidator({ rotationMs: ROTATION, now: clock.now, random: randomOctets(seed) }) };
}

describe('ResponderValidator', () => {
  describe('issue and check', () => {
    it('accepts what it issued, for the same nonce and fields', () => {
      const { v } = setup();
      const f = fields();
      const { responderNonce, validator } = v.issue(f);
      assert.equal(validator.length, VALIDATOR_LENGTH);
      assert.equal(VALIDATOR_LENGTH, 16);
      assert.ok(Number.isInteger(responderNonce) && responderNonce >= 0 && responderNonce <= 0xffff_ffff);
      assert.equal(v.check(responderNonce, validator, f), true);
      assert.equal(v.check(responderNonce, Buffer.from(validator), { ...f }), true, 'a copy of the validator and of the fields');
    });

    it('puts the secret epoch in the top 16 bits of the responder nonce', () => {
      const { clock, v } = setup(100 * ROTATION + 5);
      assert.equal(v.issue(fields()).responderNonce >>> 16, 100);
      clock.set(101 * ROTATION);
      assert.equal(v.issue(fields()).responderNonce >>> 16, 101);
    });

    it('gives different nonces and validators for successive issues', () => {
      const { v } = setup();
      const a = v.issue(fields());
      const b = v.issue(fields());
      assert.notEqual(a.responderNonce, b.responderNonce);
      assert.ok(!a.validator.equals(b.validator));
      assert.equal(v.check(a.responderNonce, a.validator, fields()), true);
      assert.equal(v.check(b.responderNonce, b.validator, fields()), true);
      assert.equal(v.check(a.responderNonce, b.validator, fields()), false, 'validators are not interchangeable between nonces');
    });

    it('is deterministic with an injected random source', () => {
      const one = setup(100 * ROTATION, 9).v.issue(fields());
      const two = setup(100 * ROTATION, 9).v.issue(fields());
      assert.equal(one.responderNonce, two.responderNonce);
      assert.ok(one.validator.equals(two.validator));
    });

    it('does not accept a validator of another responder (another secret)', () => {
      const mine = setup(100 * ROTATION, 1).v;
      const theirs = setup(100 * ROTATION, 2).v;
      const { responderNonce, validator } = theirs.issue(fields());
      assert.equal(mine.check(responderNonce, validator, fields()), false);
    });

    it('compares addresses, not their spelling', () => {
      const { v } = setup();
      const { responderNonce, validator } = v.issue(fields({ initiatorUlid: '2001:DB8:A1:0:0:0:0:1' }));
      assert.equal(v.check(responderNonce, validator, fields({ initiatorUlid: '2001:db8:a1::1' })), true);
    });

    it('throws on a field that is not an IPv6 address', () => {
      const { v } = setup();
      assert.throws(() => v.issue(fields({ responderLocator: 'b1' })), RangeError);
    });

    it('refuses a rotation period that is not positive', () => {
      for (const rotationMs of [0, -1, Number.NaN]) {
        assert.throws(() => new ResponderValidator({ rotationMs, now: () => 0 }), RangeError, String(rotationMs));
      }
    });

    it('works without an injected random source (crypto)', () => {
      const clock = new FakeClock(0);
      const v = new ResponderValidator({ rotationMs: ROTATION, now: clock.now });
      const { responderNonce, validator } = v.issue(fields());
      assert.equal(v.check(responderNonce, validator, fields()), true);
    });
  });

  describe('any changed field fails', () => {
    const f = fields();
    const changes: Array<[string, Partial<ValidatorFields>]> = [
      ['tag + 1', { tag: f.tag + 1 }],
      ['tag - 1', { tag: f.tag - 1 }],
      ['tag in its high bits', { tag: f.tag + 0x1_0000_0000 }],
      ['tag in its low 16 bits', { tag: f.tag ^ 0x8000 }],
      ['kind (an R1 validator is no R1bis validator)', { kind: 1 }],
      ['initiator ULID', { initiatorUlid: '2001:db8:a1::9' }],
      ['responder ULID', { responderUlid: '2001:db8:b1::9' }],
      ['initiator locator', { initiatorLocator: '2001:db8:a3::1' }],
      ['responder locator', { responderLocator: '2001:db8:b3::2' }],
      ['initiator and responder ULIDs swapped', { initiatorUlid: f.responderUlid, responderUlid: f.initiatorUlid }],
      ['ULIDs and locators swapped', { initiatorUlid: f.initiatorLocator, initiatorLocator: f.initiatorUlid }],
    ];
    for (const [what, change] of changes) {
      it(what, () => {
        const { v } = setup();
        const { responderNonce, validator } = v.issue(f);
        assert.equal(v.check(responderNonce, validator, { ...f, ...change }), false);
        assert.equal(v.check(responderNonce, validator, f), true, 'the original still passes');
      });
    }

    it('the responder nonce (each of its low 16 bits)', () => {
      const { v } = setup();
      const { responderNonce, validator } = v.issue(f);
      for (let bit = 0; bit < 16; bit++) {
        assert.equal(v.check((responderNonce ^ (1 << bit)) >>> 0, validator, f), false, `bit ${bit}`);
      }
    });

    it('the responder nonce epoch (top 16 bits)', () => {
      const { v } = setup();
      const { responderNonce, validator } = v.issue(f);
      assert.equal(v.check((responderNonce - 0x1_0000) >>> 0, validator, f), false, 'claims the previous epoch');
      assert.equal(v.check((responderNonce + 0x1_0000) >>> 0, validator, f), false, 'claims the next epoch');
    });

    it('each octet of the validator', () => {
      const { v } = setup();
      const { responderNonce, validator } = v.issue(f);
      for (let i = 0; i < VALIDATOR_LENGTH; i++) {
        const forged = Buffer.from(validator);
        forged[i] = (forged[i] as number) ^ 0x01;
        assert.equal(v.check(responderNonce, forged, f), false, `octet ${i}`);
      }
    });

    it('extreme tags are bound too', () => {
      const { v } = setup();
      const top = v.issue(fields({ tag: MAX_CONTEXT_TAG }));
      assert.equal(v.check(top.responderNonce, top.validator, fields({ tag: MAX_CONTEXT_TAG })), true);
      assert.equal(v.check(top.responderNonce, top.validator, fields({ tag: MAX_CONTEXT_TAG - 1 })), false);
      const zero = v.issue(fields({ tag: 0 }));
      assert.equal(v.check(zero.responderNonce, zero.validator, fields({ tag: 0 })), true);
      assert.equal(v.check(zero.responderNonce, zero.validator, fields({ tag: 0x1_0000 })), false);
    });
  });

  describe('rotation windows', () => {
    it('accepts within the same period', () => {
      const { clock, v } = setup(100 * ROTATION);
      const { responderNonce, validator } = v.issue(fields());
      clock.set(101 * ROTATION - 1);
      assert.equal(v.check(responderNonce, validator, fields()), true);
    });

    it('accepts after one rotation (the previous secret)', () => {
      const { clock, v } = setup(100 * ROTATION + 10);
      const { responderNonce, validator } = v.issue(fields());
      clock.set(101 * ROTATION);
      assert.equal(v.check(responderNonce, validator, fields()), true);
      clock.set(102 * ROTATION - 1);
      assert.equal(v.check(responderNonce, validator, fields()), true, 'until the end of the next period');
    });

    it('rejects after two rotations, checked at each one', () => {
      const { clock, v } = setup(100 * ROTATION);
      const { responderNonce, validator } = v.issue(fields());
      clock.set(101 * ROTATION);
      assert.equal(v.check(responderNonce, validator, fields()), true);
      clock.set(102 * ROTATION);
      assert.equal(v.check(responderNonce, validator, fields()), false);
    });

    it('rejects after two rotations with no call in between (the clock jumped)', () => {
      const { clock, v } = setup(100 * ROTATION);
      const { responderNonce, validator } = v.issue(fields());
      clock.set(102 * ROTATION);
      assert.equal(v.check(responderNonce, validator, fields()), false);
    });

    it('rejects long after (older secrets are gone)', () => {
      const { clock, v } = setup(100 * ROTATION);
      const { responderNonce, validator } = v.issue(fields());
      clock.set(150 * ROTATION);
      assert.equal(v.check(responderNonce, validator, fields()), false);
    });

    it('keeps a validator between one and two periods', () => {
      // Issued at the very end of a period: valid one period (plus 1 ms) more.
      const late = setup(101 * ROTATION - 1);
      const l = late.v.issue(fields());
      late.clock.set(102 * ROTATION - 1);
      assert.equal(late.v.check(l.responderNonce, l.validator, fields()), true);
      late.clock.set(102 * ROTATION);
      assert.equal(late.v.check(l.responderNonce, l.validator, fields()), false);
      // Issued at the very start of a period: valid almost two periods.
      const early = setup(100 * ROTATION);
      const e = early.v.issue(fields());
      early.clock.set(102 * ROTATION - 1);
      assert.equal(early.v.check(e.responderNonce, e.validator, fields()), true);
    });

    it('a new validator issued after a rotation is checked with the new secret', () => {
      const { clock, v } = setup(100 * ROTATION);
      const old = v.issue(fields());
      clock.set(101 * ROTATION + 5);
      const fresh = v.issue(fields());
      assert.equal(fresh.responderNonce >>> 16, 101);
      assert.equal(v.check(fresh.responderNonce, fresh.validator, fields()), true);
      assert.equal(v.check(old.responderNonce, old.validator, fields()), true);
      clock.set(102 * ROTATION);
      assert.equal(v.check(fresh.responderNonce, fresh.validator, fields()), true);
      assert.equal(v.check(old.responderNonce, old.validator, fields()), false);
    });

    it('accepts the previous epoch across the 16-bit wrap of the nonce epoch', () => {
      const rotationMs = 1000;
      const clock = new FakeClock(0x1_0000 * rotationMs - 1); // epoch 65535
      const v = new ResponderValidator({ rotationMs, now: clock.now, random: randomOctets(3) });
      const { responderNonce, validator } = v.issue(fields());
      assert.equal(responderNonce >>> 16, 0xffff);
      clock.set(0x1_0000 * rotationMs); // epoch 65536: 0 in the nonce
      assert.equal(v.issue(fields()).responderNonce >>> 16, 0);
      assert.equal(v.check(responderNonce, validator, fields()), true);
      clock.set(0x1_0001 * rotationMs);
      assert.equal(v.check(responderNonce, validator, fields()), false);
    });

    it('a validator from the first period has no "previous" to fall back on before it', () => {
      const { v } = setup(100 * ROTATION);
      // A nonce claiming epoch 99, which this validator never had: no secret, false (not a throw).
      assert.equal(v.check((99 << 16) | 1, Buffer.alloc(VALIDATOR_LENGTH), fields()), false);
    });
  });

  describe('constant length', () => {
    it('rejects validators that are not exactly 16 octets, without throwing', () => {
      const { v } = setup();
      const { responderNonce, validator } = v.issue(fields());
      const candidates: Array<[string, Buffer]> = [
        ['empty', Buffer.alloc(0)],
        ['one octet', validator.subarray(0, 1)],
        ['15-octet prefix', validator.subarray(0, 15)],
        ['17 octets: the validator and one more', Buffer.concat([validator, Buffer.from([0])])],
        ['32 octets: the whole HMAC-SHA256 length', Buffer.concat([validator, validator])],
      ];
      for (const [what, candidate] of candidates) assert.equal(v.check(responderNonce, candidate, fields()), false, what);
      assert.equal(v.check(responderNonce, validator, fields()), true);
    });
  });
});
