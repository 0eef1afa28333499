/**
 * CGA generation (RFC 3972 section 4) and verification (section 5): every failure is
 * reported at the step the RFC checks it; the modifier search also runs in a worker
 * thread with progress and cancellation. Sec stays at 0 or 1 (Sec 3 is only started and
 * aborted).
 */
import * as assert from 'node:assert/strict';
import type { KeyObject } from 'node:crypto';
import {
  computeCgaAddress,
  decodeCgaParameters,
  encodeCgaParameters,
  generateCga,
  generateCgaAsync,
  generateRsaKey,
  hash2,
  incrementModifier,
  interfaceIdentifier,
  nextAfterCollision,
  publicKeyDer,
  searchModifier,
  searchModifierInWorker,
  secOfAddress,
  verifyCga,
  type GeneratedCga,
  type ModifierSearchProgress,
} from '../protocol/cga';
import { ipv6 } from '../protocol/address';

const PREFIX = ipv6('2001:db8:1::').subarray(0, 8);
const START = Buffer.from('0f0e0d0c0b0a09080706050403020100', 'hex');

describe('CGA generation and verification (RFC 3972)', () => {
  let key: KeyObject;
  let otherKey: KeyObject;
  let cga1: GeneratedCga;

  before(() => {
    key = generateRsaKey(1024);
    otherKey = generateRsaKey(1024);
    cga1 = generateCga({ subnetPrefix: PREFIX, publicKey: publicKeyDer(key), sec: 1, modifier: START });
  });

  it('RFC 3972 Appendix A example', function () {
    // The RFC text (public key and modifier octets of Appendix A) could not be retrieved
    // from the stored copies available to this project; a vector is not invented. Only
    // the address it gives is known (fe80::3c4a:5bf6:ffb4:ca6c, from the DoCoMo SEND
    // cgatool test), not its parameters. A third-party Sec 1 vector stands in for it:
    // test/cga-vectors.test.ts.
    this.skip();
  });

  it('Sec 1: Hash2 starts with 16 zero bits, the address has Sec 1 and the subnet prefix, and verifies', () => {
    const h2 = hash2(cga1.encoded);
    assert.equal(h2.length, 14);
    assert.equal(h2.readUInt16BE(0), 0);
    assert.equal(secOfAddress(cga1.address), 1);
    assert.equal((cga1.address[8] as number) & 0x03, 0, 'u and g bits are zero');
    assert.ok(cga1.address.subarray(0, 8).equals(PREFIX));
    assert.equal(cga1.params.collisionCount, 0);
    assert.ok(cga1.attempts >= 1);
    const v = verifyCga(cga1.address, cga1.encoded);
    assert.ok(v.ok);
    assert.equal(v.sec, 1);
  });

  it('the search is deterministic from a given modifier, and ends on the first Hash2 that qualifies', () => {
    const again = generateCga({ subnetPrefix: PREFIX, publicKey: publicKeyDer(key), sec: 1, modifier: START });
    assert.ok(again.encoded.equals(cga1.encoded));
    assert.equal(again.attempts, cga1.attempts);
    // Every modifier before the final one failed the Sec 1 test.
    const m = Buffer.from(START);
    for (let i = 1; i < Math.min(cga1.attempts, 2000); i++) {
      const probe = encodeCgaParameters({ ...cga1.params, modifier: m });
      assert.notEqual(hash2(probe).readUInt16BE(0), 0);
      incrementModifier(m);
    }
  });

  it('Sec 0 keeps the starting modifier and needs no search', () => {
    const g = generateCga({ subnetPrefix: PREFIX, publicKey: publicKeyDer(key), sec: 0, modifier: START });
    assert.ok(g.params.modifier.equals(START));
    assert.equal(g.attempts, 0);
    assert.equal(secOfAddress(g.address), 0);
    assert.ok(verifyCga(g.address, g.encoded).ok);
  });

  it('computeCgaAddress gives the generated address from the parameters alone', () => {
    assert.ok(computeCgaAddress(cga1.encoded, 1).equals(cga1.address));
    assert.ok(computeCgaAddress(cga1.params, 1).equals(cga1.address));
  });

  it('interface identifier: Sec in the three leftmost bits, u and g bits zero, the rest from Hash1', () => {
    const iid = interfaceIdentifier(Buffer.from('ffffffffffffffff', 'hex'), 5);
    assert.equal(iid.toString('hex'), 'bcffffffffffffff');
    assert.equal(interfaceIdentifier(Buffer.alloc(8), 0).toString('hex'), '0000000000000000');
  });

  describe('each tampering fails at its step', () => {
    it('an address with a changed interface identifier -> hash1', () => {
      const a = Buffer.from(cga1.address);
      a[15] = (a[15] as number) ^ 0x01;
      const v = verifyCga(a, cga1.encoded);
      assert.ok(!v.ok);
      assert.equal(v.step, 'hash1');
    });

    it('an address under another prefix -> subnet-prefix', () => {
      const a = Buffer.from(cga1.address);
      a[5] = (a[5] as number) ^ 0x01;
      const v = verifyCga(a, cga1.encoded);
      assert.ok(!v.ok);
      assert.equal(v.step, 'subnet-prefix');
    });

    it('parameters claiming another subnet prefix -> subnet-prefix', () => {
      const p = Buffer.from(cga1.encoded);
      p[20] = (p[20] as number) ^ 0x01;
      const v = verifyCga(cga1.address, p);
      assert.ok(!v.ok);
      assert.equal(v.step, 'subnet-prefix');
    });

    it("another public key in the parameters -> hash1", () => {
      const p = { ...cga1.params, publicKey: publicKeyDer(otherKey) };
      const v = verifyCga(cga1.address, p);
      assert.ok(!v.ok);
      assert.equal(v.step, 'hash1');
    });

    it('a changed modifier -> hash1', () => {
      const p = Buffer.from(cga1.encoded);
      p[0] = (p[0] as number) ^ 0x80;
      const v = verifyCga(cga1.address, p);
      assert.ok(!v.ok);
      assert.equal(v.step, 'hash1');
    });

    it('collision count 3 -> collision-count (checked first)', () => {
      const p = Buffer.from(cga1.encoded);
      p[24] = 3;
      const v = verifyCga(cga1.address, p);
      assert.ok(!v.ok);
      assert.equal(v.step, 'collision-count');
      const bad = verifyCga(cga1.address, { ...cga1.params, collisionCount: 255 });
      assert.ok(!bad.ok);
      assert.equal(bad.step, 'collision-count');
    });

    it('an address claiming a higher Sec than the modifier search paid for -> sec-hash2', () => {
      const a = Buffer.from(cga1.address);
      a[8] = ((a[8] as number) & 0x1f) | (7 << 5); // Sec 7: 112 zero bits of Hash2
      const v = verifyCga(a, cga1.encoded);
      assert.ok(!v.ok);
      assert.equal(v.step, 'sec-hash2');
    });

    it('u and g bits are ignored (RFC 3972 step 4) unless rejectUgBits asks -> bits-ug', () => {
      const a = Buffer.from(cga1.address);
      a[8] = (a[8] as number) | 0x02;
      assert.ok(verifyCga(a, cga1.encoded).ok);
      const v = verifyCga(a, cga1.encoded, { rejectUgBits: true });
      assert.ok(!v.ok);
      assert.equal(v.step, 'bits-ug');
    });

    it('undecodable parameters or a short address -> decode, with the decode error', () => {
      const v = verifyCga(cga1.address, cga1.encoded.subarray(0, 60));
      assert.ok(!v.ok);
      assert.equal(v.step, 'decode');
      assert.equal(v.decodeError?.code, 'der-truncated');
      const w = verifyCga(cga1.address.subarray(0, 15), cga1.encoded);
      assert.ok(!w.ok);
      assert.equal(w.step, 'decode');
    });
  });

  describe('collision count (RFC 3972 section 4 step 8)', () => {
    it('a collision keeps the modifier, increments the count and changes the address; after three, stop', () => {
      const c1 = nextAfterCollision(cga1);
      assert.ok(c1);
      assert.equal(c1.params.collisionCount, 1);
      assert.ok(c1.params.modifier.equals(cga1.params.modifier));
      assert.ok(!c1.address.equals(cga1.address));
      assert.ok(verifyCga(c1.address, c1.encoded).ok);
      const c2 = nextAfterCollision(c1);
      assert.ok(c2);
      assert.ok(verifyCga(c2.address, c2.encoded).ok);
      assert.equal(nextAfterCollision(c2), undefined);
    });

    it('generation refuses collision count 3 and Sec out of range', () => {
      const publicKey = publicKeyDer(key);
      assert.throws(() => generateCga({ subnetPrefix: PREFIX, publicKey, sec: 0, collisionCount: 3 }), RangeError);
      assert.throws(() => generateCga({ subnetPrefix: PREFIX, publicKey, sec: 8 }), RangeError);
      assert.throws(() => generateCga({ subnetPrefix: PREFIX, publicKey, sec: -1 }), RangeError);
      assert.throws(() => generateCga({ subnetPrefix: PREFIX, publicKey, sec: 1.5 }), RangeError);
      assert.throws(() => generateCga({ subnetPrefix: PREFIX, publicKey: Buffer.from('3003020100', 'hex'), sec: 0 }), RangeError);
    });
  });

  describe('modifier search', () => {
    it('increments the modifier as a 128-bit big-endian number, wrapping', () => {
      const m = Buffer.from('000000000000000000000000000000ff', 'hex');
      incrementModifier(m);
      assert.equal(m.toString('hex'), '00000000000000000000000000000100');
      const top = Buffer.alloc(16, 0xff);
      incrementModifier(top);
      assert.ok(top.equals(Buffer.alloc(16)));
    });

    it('reports progress, stops when told, and gives up after maxAttempts', () => {
      const input = Buffer.from(cga1.encoded);
      const seen: ModifierSearchProgress[] = [];
      const stopped = searchModifier(input, 3, START, {
        progressEvery: 100,
        onProgress: (p) => { seen.push(p); return seen.length === 3; },
      });
      assert.equal(stopped, undefined);
      assert.deepEqual(seen.map((p) => p.attempts), [100, 200, 300]);
      assert.equal(seen[0]?.expectedAttempts, 2 ** 48);
      assert.equal(searchModifier(input, 3, START, { maxAttempts: 500 }), undefined);
    });
  });

  describe('in a worker thread', () => {
    it('generateCgaAsync finds the same modifier as the synchronous search, with progress', async () => {
      const progress: number[] = [];
      const g = await generateCgaAsync(
        { subnetPrefix: PREFIX, publicKey: publicKeyDer(key), sec: 1, modifier: START },
        { progressEvery: 1000, onProgress: (p) => progress.push(p.attempts) },
      );
      assert.ok(g.encoded.equals(cga1.encoded));
      assert.ok(g.address.equals(cga1.address));
      assert.equal(progress.length, Math.floor((cga1.attempts - 1) / 1000));
      assert.ok(verifyCga(g.address, g.encoded).ok);
    });

    it('an AbortSignal terminates a Sec 3 search and rejects with AbortError', async () => {
      const ac = new AbortController();
      let reports = 0;
      const started = Date.now();
      await assert.rejects(
        generateCgaAsync(
          { subnetPrefix: PREFIX, publicKey: publicKeyDer(key), sec: 3, modifier: START },
          { signal: ac.signal, progressEvery: 5000, onProgress: () => { if (++reports === 2) ac.abort(); } },
        ),
        (e: unknown) => e instanceof Error && e.name === 'AbortError',
      );
      assert.equal(reports, 2);
      assert.ok(Date.now() - started < 20000);
    });

    it('an already aborted signal rejects at once; maxAttempts rejects with an Error', async () => {
      const ac = new AbortController();
      ac.abort();
      await assert.rejects(searchModifierInWorker(cga1.encoded, 1, START, { signal: ac.signal }), { name: 'AbortError' });
      await assert.rejects(searchModifierInWorker(cga1.encoded, 3, START, { maxAttempts: 1000 }), /gave up after 1000/);
    });

    it('the event loop keeps running during the search', async () => {
      let ticks = 0;
      const timer = setInterval(() => ticks++, 1);
      try {
        await generateCgaAsync({ subnetPrefix: PREFIX, publicKey: publicKeyDer(key), sec: 1, modifier: START });
      } finally {
        clearInterval(timer);
      }
      assert.ok(ticks > 0);
      const d = decodeCgaParameters(cga1.encoded);
      assert.ok(d.ok);
    });
  });
});
