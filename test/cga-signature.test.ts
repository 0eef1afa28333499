/**
 * The CGA Signature of a Shim6 locator list (RFC 5533 section 5.15.5): RSASSA-PKCS1-v1_5,
 * SHA-1, over the Shim6 CGA Message Type tag followed by the signed data; and the full
 * check of a peer's ULID, CGA Parameters and signature.
 */
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import {
  cgaSignatureInput,
  locatorListSignedData,
  generateCga,
  generateHbaSet,
  generateRsaKey,
  parsePrefix64,
  privateKeyPem,
  publicKeyDer,
  SHIM6_CGA_MESSAGE_TYPE_TAG,
  signLocatorList,
  verifyLocatorListSignature,
  verifySignedLocatorList,
  type GeneratedCga,
} from '../protocol/cga';

const PREFIX = (() => {
  const p = parsePrefix64('2001:db8:a::/64');
  if (!p.ok) throw new Error(p.message);
  return p.prefix;
})();
/** Stand-in for an encoded Locator List option (the wire-format codec owns the real one). */
const LOCATOR_LIST = Buffer.from('0004002c' + '00000007' + '02' + '0202' + '20010db8000a0000' + '0123456789abcdef' + '20010db8000b0000' + '0123456789abcdef', 'hex');

describe('CGA Signature of a locator list (RFC 5533)', () => {
  let key: crypto.KeyObject;
  let otherKey: crypto.KeyObject;
  let cga: GeneratedCga;

  before(() => {
    key = generateRsaKey(1024);
    otherKey = generateRsaKey(1024);
    cga = generateCga({ subnetPrefix: PREFIX, publicKey: publicKeyDer(key), sec: 1 });
  });

  it('uses the CGA Message Type tag IANA lists for RFC 5533', () => {
    assert.equal(SHIM6_CGA_MESSAGE_TYPE_TAG.toString('hex'), '0x4A30 5662 4858 574B 3655 416F 506A 6D48'.slice(2).replace(/ /g, '').toLowerCase());
    assert.equal(SHIM6_CGA_MESSAGE_TYPE_TAG.length, 16);
    assert.ok(cgaSignatureInput(LOCATOR_LIST).equals(Buffer.concat([SHIM6_CGA_MESSAGE_TYPE_TAG, LOCATOR_LIST])));
  });

  it('is RSASSA-PKCS1-v1_5 with SHA-1 over the tag followed by the signed data', () => {
    const sig = signLocatorList(key, LOCATOR_LIST);
    assert.equal(sig.length, 128);
    const pub = crypto.createPublicKey(key);
    const pkcs1 = { key: pub, padding: crypto.constants.RSA_PKCS1_PADDING };
    assert.ok(crypto.verify('sha1', Buffer.concat([SHIM6_CGA_MESSAGE_TYPE_TAG, LOCATOR_LIST]), pkcs1, sig));
    assert.ok(!crypto.verify('sha1', LOCATOR_LIST, pkcs1, sig), 'the tag is part of the signed octets');
    // PKCS#1 v1.5 is deterministic: the same input signs to the same octets.
    assert.ok(signLocatorList(privateKeyPem(key), LOCATOR_LIST).equals(sig));
    assert.ok(signLocatorList(Buffer.from(privateKeyPem(key)), LOCATOR_LIST).equals(sig));
  });

  it('signs the list generation and the CGA-verified locators only (RFC 5533 section 5.15.5)', () => {
    const data = locatorListSignedData(0x01020304, [
      { address: '2001:db8:a1::1', verificationMethod: 2 },
      { address: '2001:db8:a2::1', verificationMethod: 1 },
      { address: '2001:db8:a3::1', verificationMethod: 2 },
    ]);
    assert.equal(
      data?.toString('hex'),
      '01020304' + '20010db800a100000000000000000001' + '20010db800a300000000000000000001',
    );
    assert.equal(locatorListSignedData(1, [{ address: 'not-an-address', verificationMethod: 2 }]), undefined);
  });

  it('verifies with the right public key and data only', () => {
    const sig = signLocatorList(key, LOCATOR_LIST);
    assert.equal(verifyLocatorListSignature(publicKeyDer(key), LOCATOR_LIST, sig), true);
    assert.equal(verifyLocatorListSignature(publicKeyDer(otherKey), LOCATOR_LIST, sig), false, 'wrong key');
    const tampered = Buffer.from(LOCATOR_LIST);
    tampered[20] = (tampered[20] as number) ^ 1;
    assert.equal(verifyLocatorListSignature(publicKeyDer(key), tampered, sig), false, 'changed locator');
    const badSig = Buffer.from(sig);
    badSig[0] = (badSig[0] as number) ^ 1;
    assert.equal(verifyLocatorListSignature(publicKeyDer(key), LOCATOR_LIST, badSig), false, 'changed signature');
  });

  it('returns false, never throws, on unusable keys and signatures', () => {
    const sig = signLocatorList(key, LOCATOR_LIST);
    assert.equal(verifyLocatorListSignature(Buffer.from('3003020100', 'hex'), LOCATOR_LIST, sig), false);
    assert.equal(verifyLocatorListSignature(Buffer.alloc(0), LOCATOR_LIST, sig), false);
    assert.equal(verifyLocatorListSignature(publicKeyDer(key), LOCATOR_LIST, Buffer.alloc(0)), false);
    assert.equal(verifyLocatorListSignature(publicKeyDer(key), LOCATOR_LIST, sig.subarray(1)), false);
    const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    assert.equal(verifyLocatorListSignature(ec.publicKey.export({ format: 'der', type: 'spki' }), LOCATOR_LIST, sig), false);
    assert.throws(() => signLocatorList(ec.privateKey, LOCATOR_LIST), TypeError);
    assert.throws(() => signLocatorList('not a key', LOCATOR_LIST), TypeError);
  });

  it('refuses keys under 1024 bits unless told otherwise', () => {
    const small = generateRsaKey(512);
    const sig = signLocatorList(small, LOCATOR_LIST);
    assert.equal(verifyLocatorListSignature(publicKeyDer(small), LOCATOR_LIST, sig), false);
    assert.equal(verifyLocatorListSignature(publicKeyDer(small), LOCATOR_LIST, sig, { minModulusBits: 512 }), true);
  });

  describe('verifySignedLocatorList: ULID is a CGA, and the locator list is signed by its key', () => {
    it('passes for the CGA owner', () => {
      const v = verifySignedLocatorList(cga.address, cga.encoded, LOCATOR_LIST, signLocatorList(key, LOCATOR_LIST));
      assert.ok(v.ok);
      assert.equal(v.sec, 1);
    });

    it('a signature by another key fails at signature', () => {
      const v = verifySignedLocatorList(cga.address, cga.encoded, LOCATOR_LIST, signLocatorList(otherKey, LOCATOR_LIST));
      assert.ok(!v.ok);
      assert.equal(v.step, 'signature');
    });

    it("another key's parameters for this ULID fail at hash1, before the signature", () => {
      const forged = generateCga({ subnetPrefix: PREFIX, publicKey: publicKeyDer(otherKey), sec: 0 });
      const v = verifySignedLocatorList(cga.address, forged.encoded, LOCATOR_LIST, signLocatorList(otherKey, LOCATOR_LIST));
      assert.ok(!v.ok);
      assert.equal(v.step, 'hash1');
    });

    it('HBA-only parameters carry no key: public-key; HBA/CGA-compatible ones can sign', () => {
      const prefixes = [PREFIX, Buffer.from('20010db8000b0000', 'hex')];
      const hbaOnly = generateHbaSet({ prefixes, sec: 0 });
      const v = verifySignedLocatorList(hbaOnly.addresses[0] as Buffer, hbaOnly.encoded, LOCATOR_LIST, signLocatorList(key, LOCATOR_LIST));
      assert.ok(!v.ok);
      assert.equal(v.step, 'public-key');
      const compatible = generateHbaSet({ prefixes, sec: 0, publicKey: publicKeyDer(key) });
      const w = verifySignedLocatorList(compatible.addresses[0] as Buffer, compatible.encoded, LOCATOR_LIST, signLocatorList(key, LOCATOR_LIST));
      assert.ok(w.ok);
    });

    it('HBA/CGA-compatible: a ULID under any prefix of the set verifies; one outside it fails at hba-set-membership', () => {
      const prefixes = [PREFIX, Buffer.from('20010db8000b0000', 'hex')];
      const compatible = generateHbaSet({ prefixes, sec: 0, publicKey: publicKeyDer(key) });
      const signature = signLocatorList(key, LOCATOR_LIST);
      const second = verifySignedLocatorList(compatible.addresses[1] as Buffer, compatible.encoded, LOCATOR_LIST, signature);
      assert.ok(second.ok, second.ok ? '' : `${second.step}: ${second.message}`);
      const outside = Buffer.from(compatible.addresses[1] as Buffer);
      outside[3] = (outside[3] as number) ^ 0x01;
      const o = verifySignedLocatorList(outside, compatible.encoded, LOCATOR_LIST, signature);
      assert.ok(!o.ok);
      assert.equal(o.step, 'hba-set-membership');
      const flipped = Buffer.from(compatible.addresses[1] as Buffer);
      flipped[15] = (flipped[15] as number) ^ 0x01;
      const f = verifySignedLocatorList(flipped, compatible.encoded, LOCATOR_LIST, signature);
      assert.ok(!f.ok);
      assert.equal(f.step, 'hash1');
    });

    it('undecodable parameters fail at decode', () => {
      const v = verifySignedLocatorList(cga.address, Buffer.alloc(30), LOCATOR_LIST, Buffer.alloc(128));
      assert.ok(!v.ok);
      assert.equal(v.step, 'decode');
    });
  });
});
