/**
 * The CGA Parameters data structure (RFC 3972 section 3) and its Multi-Prefix extension
 * (RFC 5535): encoding, decoding with typed errors, DER length handling, a round-trip
 * property and a decoder fuzz. fast-check runs with fixed seeds.
 */
import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  decodeCgaParameters,
  decodeMultiPrefixExtension,
  encodeCgaParameters,
  encodeDerElement,
  encodeMultiPrefixExtension,
  findMultiPrefixExtension,
  hbaPseudoPublicKey,
  MULTI_PREFIX_EXTENSION_TYPE,
  readDerElement,
  verifyCga,
  verifyHbaLocator,
  type CgaExtension,
  type CgaParameters,
} from '../protocol/cga';

/** A SubjectPublicKeyInfo-shaped DER whose BIT STRING holds `bits` octets. */
function spki(bitStringContents: Uint8Array, algorithm: Uint8Array = Buffer.from('06092a864886f70d0101010500', 'hex')): Buffer {
  return encodeDerElement(0x30, Buffer.concat([encodeDerElement(0x30, algorithm), encodeDerElement(0x03, bitStringContents)]));
}

function sample(extensionFields: CgaExtension[] = []): CgaParameters {
  return {
    modifier: Buffer.from('00112233445566778899aabbccddeeff', 'hex'),
    subnetPrefix: Buffer.from('20010db800010000', 'hex'),
    collisionCount: 1,
    publicKey: spki(Buffer.alloc(141, 0x5a)), // long-form length (0x81 ..), like a 1024-bit RSA key
    extensionFields,
  };
}

describe('CGA Parameters data structure', () => {
  it('lays out modifier, subnet prefix, collision count, public key, extension fields', () => {
    const p = sample([{ type: 0xfffd, data: Buffer.from('abcd', 'hex') }]);
    const e = encodeCgaParameters(p);
    assert.equal(e.subarray(0, 16).toString('hex'), '00112233445566778899aabbccddeeff');
    assert.equal(e.subarray(16, 24).toString('hex'), '20010db800010000');
    assert.equal(e[24], 1);
    assert.ok(e.subarray(25, 25 + p.publicKey.length).equals(p.publicKey));
    // RFC 4581 TLV: 16-bit type, 16-bit length of the data, the data.
    assert.equal(e.subarray(25 + p.publicKey.length).toString('hex'), 'fffd0002abcd');
    const d = decodeCgaParameters(e);
    assert.ok(d.ok);
    assert.deepEqual(d.value, p);
  });

  it('finds the end of the public key from its DER SEQUENCE length (short and long forms)', () => {
    for (const size of [10, 127, 128, 300, 70000]) {
      const p = { ...sample([{ type: 7, data: Buffer.from([1, 2, 3]) }]), publicKey: spki(Buffer.alloc(size, 1)) };
      const d = decodeCgaParameters(encodeCgaParameters(p));
      assert.ok(d.ok, `key with ${size}-octet BIT STRING`);
      assert.equal(d.value.publicKey.length, p.publicKey.length);
      assert.deepEqual(d.value.extensionFields, [{ type: 7, data: Buffer.from([1, 2, 3]) }]);
    }
  });

  describe('decode errors (code and offset)', () => {
    const good = encodeCgaParameters(sample());
    const cases: [string, Buffer, string, number][] = [
      ['empty', Buffer.alloc(0), 'too-short', 0],
      ['24 octets', good.subarray(0, 24), 'too-short', 24],
      ['no public key', good.subarray(0, 25), 'public-key-missing', 25],
      ['truncated DER key', good.subarray(0, 100), 'der-truncated', 25],
      ['only the DER tag', good.subarray(0, 26), 'der-truncated', 25],
      ['indefinite length', Buffer.concat([good.subarray(0, 25), Buffer.from('3080', 'hex'), Buffer.alloc(4)]), 'der-length-invalid', 26],
      ['non-minimal length', Buffer.concat([good.subarray(0, 25), Buffer.from('30810a', 'hex'), Buffer.alloc(10)]), 'der-length-invalid', 26],
      ['5 length octets', Buffer.concat([good.subarray(0, 25), Buffer.from('30850000000010', 'hex')]), 'der-length-invalid', 26],
      ['not a SEQUENCE', Buffer.concat([good.subarray(0, 25), Buffer.from('0403010203', 'hex')]), 'public-key-not-spki', 25],
      ['SEQUENCE of garbage', Buffer.concat([good.subarray(0, 25), Buffer.from('3003020100', 'hex')]), 'public-key-not-spki', 27],
    ];
    for (const [name, buf, code, offset] of cases) {
      it(`${name} -> ${code}`, () => {
        const d = decodeCgaParameters(buf);
        assert.ok(!d.ok);
        assert.equal(d.error.code, code);
        assert.equal(d.error.offset, offset);
        assert.ok(d.error.message.length > 0);
      });
    }

    it('extension header or data past the end -> extension-truncated', () => {
      const d1 = decodeCgaParameters(Buffer.concat([good, Buffer.from('fffd00', 'hex')]));
      assert.ok(!d1.ok);
      assert.equal(d1.error.code, 'extension-truncated');
      assert.equal(d1.error.offset, good.length);
      const d2 = decodeCgaParameters(Buffer.concat([good, Buffer.from('fffd0005aabb', 'hex')]));
      assert.ok(!d2.ok);
      assert.equal(d2.error.code, 'extension-truncated');
    });

    it('Multi-Prefix data not 4 + 8n octets -> multi-prefix-malformed; two of them -> multi-prefix-repeated', () => {
      const bad = encodeCgaParameters(sample([{ type: MULTI_PREFIX_EXTENSION_TYPE, data: Buffer.alloc(4 + 7) }]));
      const d1 = decodeCgaParameters(bad);
      assert.ok(!d1.ok);
      assert.equal(d1.error.code, 'multi-prefix-malformed');
      const mp = encodeMultiPrefixExtension({ publicKeyIncluded: false, prefixes: [Buffer.alloc(8, 1)] });
      const d2 = decodeCgaParameters(encodeCgaParameters(sample([mp, mp])));
      assert.ok(!d2.ok);
      assert.equal(d2.error.code, 'multi-prefix-repeated');
    });
  });

  describe('Multi-Prefix extension (RFC 5535)', () => {
    it('is type 0x0012 with the P flag in the top bit, 31 reserved bits, then the prefixes', () => {
      const prefixes = [Buffer.from('20010db800010000', 'hex'), Buffer.from('20010db800020000', 'hex')];
      const ext = encodeMultiPrefixExtension({ publicKeyIncluded: true, prefixes });
      assert.equal(ext.type, 0x0012);
      assert.equal(ext.data.toString('hex'), '80000000' + '20010db800010000' + '20010db800020000');
      const d = decodeCgaParameters(encodeCgaParameters(sample([ext])));
      assert.ok(d.ok);
      assert.deepEqual(findMultiPrefixExtension(d.value), { publicKeyIncluded: true, prefixes });
      const hbaOnly = encodeMultiPrefixExtension({ publicKeyIncluded: false, prefixes });
      assert.equal(hbaOnly.data[0], 0);
    });

    it('ignores the reserved bits when reading the P flag', () => {
      const d = decodeMultiPrefixExtension(Buffer.from('7fffffff0102030405060708', 'hex'));
      assert.ok(d.ok);
      assert.equal(d.value.publicKeyIncluded, false);
      assert.equal(d.value.prefixes.length, 1);
    });

    it('HBA-only stand-in key is a SubjectPublicKeyInfo around 384 random bits', () => {
      const k = hbaPseudoPublicKey(Buffer.alloc(48, 0xab));
      const outer = readDerElement(k, 0);
      assert.ok(outer.ok);
      assert.equal(outer.element.end, k.length);
      assert.ok(k.subarray(k.length - 48).equals(Buffer.alloc(48, 0xab)));
      assert.throws(() => hbaPseudoPublicKey(Buffer.alloc(47)), RangeError);
    });
  });

  it('encode refuses fields of the wrong size', () => {
    assert.throws(() => encodeCgaParameters({ ...sample(), modifier: Buffer.alloc(15) }), RangeError);
    assert.throws(() => encodeCgaParameters({ ...sample(), subnetPrefix: Buffer.alloc(16) }), RangeError);
    assert.throws(() => encodeCgaParameters({ ...sample(), collisionCount: 256 }), RangeError);
    assert.throws(() => encodeCgaParameters({ ...sample(), publicKey: Buffer.alloc(0) }), RangeError);
    assert.throws(() => encodeCgaParameters(sample([{ type: 0x10000, data: Buffer.alloc(0) }])), RangeError);
  });

  describe('properties', () => {
    const octets = (min: number, max: number): fc.Arbitrary<Buffer> =>
      fc.uint8Array({ minLength: min, maxLength: max }).map((a) => Buffer.from(a));
    const extension: fc.Arbitrary<CgaExtension> = fc.record({
      type: fc.integer({ min: 0, max: 0xffff }).filter((t) => t !== MULTI_PREFIX_EXTENSION_TYPE),
      data: octets(0, 80),
    }).map((e) => ({ type: e.type, data: e.data }));
    const multiPrefix: fc.Arbitrary<CgaExtension> = fc
      .record({ publicKeyIncluded: fc.boolean(), prefixes: fc.array(octets(8, 8), { maxLength: 6 }) })
      .map(encodeMultiPrefixExtension);
    const params: fc.Arbitrary<CgaParameters> = fc.record({
      modifier: octets(16, 16),
      subnetPrefix: octets(8, 8),
      collisionCount: fc.integer({ min: 0, max: 255 }),
      publicKey: fc.tuple(octets(0, 400), octets(0, 20)).map(([bits, alg]) => spki(bits, alg)),
      extensionFields: fc
        .tuple(fc.array(extension, { maxLength: 4 }), fc.option(multiPrefix, { nil: undefined }), fc.nat(4))
        .map(([exts, mp, at]) => (mp ? [...exts.slice(0, at), mp, ...exts.slice(at)] : exts)),
    }).map((p) => ({ ...p }));

    it('decode(encode(p)) is p, and encode(decode(b)) is b', () => {
      fc.assert(
        fc.property(params, (p) => {
          const b = encodeCgaParameters(p);
          const d = decodeCgaParameters(b);
          assert.ok(d.ok, d.ok ? '' : d.error.message);
          assert.deepEqual(d.value, p);
          assert.ok(encodeCgaParameters(d.value).equals(b));
        }),
        { seed: 0x5eed, numRuns: 300 },
      );
    });

    it('random octets never make decode or the verifiers throw', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 400 }), octets(16, 16), (bytes, address) => {
          const d = decodeCgaParameters(bytes);
          if (d.ok) assert.ok(encodeCgaParameters(d.value).equals(Buffer.from(bytes)));
          else assert.equal(typeof d.error.code, 'string');
          verifyCga(address, bytes);
          verifyHbaLocator(address, bytes);
        }),
        { seed: 42, numRuns: 2000 },
      );
    });

    it('mutated valid encodings (flips, cuts, insertions) never make decode throw', () => {
      const mutated = fc.tuple(params, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('flip', 'cut', 'insert', 'set'))
        .map(([p, at, v, how]) => {
          const b = encodeCgaParameters(p);
          const i = at % (b.length + 1);
          if (how === 'cut') return b.subarray(0, i);
          if (how === 'insert') return Buffer.concat([b.subarray(0, i), Buffer.from([v]), b.subarray(i)]);
          const c = Buffer.from(b);
          if (i < c.length) c[i] = how === 'flip' ? (c[i] as number) ^ (1 << (v % 8)) : v;
          return c;
        });
      fc.assert(
        fc.property(mutated, (b) => {
          const d = decodeCgaParameters(b);
          if (d.ok) assert.ok(encodeCgaParameters(d.value).equals(b));
          verifyCga(Buffer.alloc(16), b);
          verifyHbaLocator(Buffer.alloc(16), b);
        }),
        { seed: 7, numRuns: 2000 },
      );
    });
  });
});
