/**
 * Hash-Based Addresses (RFC 5535): set generation, HBA-only and HBA/CGA-compatible, and
 * verification that a locator belongs to a peer's set.
 */
import * as assert from 'node:assert/strict';
import type { KeyObject } from 'node:crypto';
import { ipv6 } from '../protocol/address';
import {
  computeCgaAddress,
  decodeCgaParameters,
  encodeCgaParameters,
  findMultiPrefixExtension,
  generateCga,
  generateHbaSet,
  generateHbaSetAsync,
  generateRsaKey,
  hash2,
  hbaAddress,
  publicKeyDer,
  verifyCga,
  verifyHbaLocator,
  verifyHbaSet,
  type GeneratedHbaSet,
} from '../protocol/cga';
import { prefix64 } from './support/prefix';

const PREFIXES = ['2001:db8:1::/64', '2001:db8:2::/64', '2001:db8:3::/64'].map(prefix64);
const START = Buffer.alloc(16, 0x42);

describe('HBA sets (RFC 5535)', () => {
  let key: KeyObject;
  let hbaOnly: GeneratedHbaSet;
  let compatible: GeneratedHbaSet;

  before(() => {
    key = generateRsaKey(1024);
    hbaOnly = generateHbaSet({ prefixes: PREFIXES, sec: 1, modifier: START });
    compatible = generateHbaSet({ prefixes: PREFIXES, sec: 1, publicKey: publicKeyDer(key), modifier: START });
  });

  it('one address per prefix, in order, each under its own prefix and with Sec 1', () => {
    for (const set of [hbaOnly, compatible]) {
      assert.equal(set.addresses.length, PREFIXES.length);
      set.addresses.forEach((a, i) => {
        assert.ok(a.subarray(0, 8).equals(PREFIXES[i] as Buffer));
        assert.equal((a[8] as number) >> 5, 1);
      });
      assert.equal(new Set(set.addresses.map((a) => a.subarray(8).toString('hex'))).size, PREFIXES.length, 'interface identifiers differ');
    }
  });

  it('the parameters carry every prefix in a Multi-Prefix extension, P flag = key included', () => {
    const a = findMultiPrefixExtension(hbaOnly.params);
    assert.deepEqual(a, { publicKeyIncluded: false, prefixes: PREFIXES });
    assert.equal(hbaOnly.cgaCompatible, false);
    const b = findMultiPrefixExtension(compatible.params);
    assert.deepEqual(b, { publicKeyIncluded: true, prefixes: PREFIXES });
    assert.equal(compatible.cgaCompatible, true);
    assert.ok(compatible.params.publicKey.equals(publicKeyDer(key)));
    assert.ok(hbaOnly.params.subnetPrefix.equals(PREFIXES[0] as Buffer));
  });

  it('Hash2 covers the Multi-Prefix extension: one modifier search for the whole set', () => {
    assert.equal(hash2(hbaOnly.encoded).readUInt16BE(0), 0);
    const withoutExt = encodeCgaParameters({ ...hbaOnly.params, extensionFields: [] });
    assert.notEqual(hash2(withoutExt).toString('hex'), hash2(hbaOnly.encoded).toString('hex'));
  });

  it('each address is the CGA computed with its own prefix in the Subnet Prefix field', () => {
    hbaOnly.addresses.forEach((a, i) => {
      const p = PREFIXES[i] as Buffer;
      assert.ok(hbaAddress(hbaOnly.params, p, 1).equals(a));
      const own = encodeCgaParameters({ ...hbaOnly.params, subnetPrefix: p });
      assert.ok(computeCgaAddress(own, 1).equals(a));
      assert.ok(verifyCga(a, own).ok, 'a plain CGA check passes with that prefix in the parameters');
    });
  });

  it('every locator of the set verifies against the parameters as sent', () => {
    for (const set of [hbaOnly, compatible]) {
      set.addresses.forEach((a) => {
        const v = verifyHbaLocator(a, set.encoded);
        assert.ok(v.ok, v.ok ? '' : `${v.step}: ${v.message}`);
        assert.equal(v.sec, 1);
        assert.equal(v.cgaCompatible, set.cgaCompatible);
      });
      assert.deepEqual(verifyHbaSet(set.addresses, set.encoded), { ok: true });
    }
  });

  it('a locator outside the set is rejected at hba-set-membership', () => {
    const outsider = Buffer.concat([prefix64('2001:db8:9::/64'), (hbaOnly.addresses[0] as Buffer).subarray(8)]);
    const v = verifyHbaLocator(outsider, hbaOnly.encoded);
    assert.ok(!v.ok);
    assert.equal(v.step, 'hba-set-membership');
    const all = verifyHbaSet([...hbaOnly.addresses, outsider], hbaOnly.encoded);
    assert.ok(!all.ok);
    assert.equal(all.index, 3);
    assert.equal(all.step, 'hba-set-membership');
  });

  it('a locator of the set with another interface identifier is rejected at hash1', () => {
    const a = Buffer.from(hbaOnly.addresses[1] as Buffer);
    a[12] = (a[12] as number) ^ 0x10;
    const v = verifyHbaLocator(a, hbaOnly.encoded);
    assert.ok(!v.ok);
    assert.equal(v.step, 'hash1');
  });

  it('an address of one set does not verify against another set', () => {
    const other = generateHbaSet({ prefixes: PREFIXES, sec: 0 });
    const v = verifyHbaLocator(hbaOnly.addresses[0] as Buffer, other.encoded);
    assert.ok(!v.ok);
    assert.equal(v.step, 'hash1');
  });

  it('parameters without a Multi-Prefix extension are rejected at multi-prefix', () => {
    const cga = generateCga({ subnetPrefix: PREFIXES[0] as Buffer, publicKey: publicKeyDer(key), sec: 0 });
    const v = verifyHbaLocator(cga.address, cga.encoded);
    assert.ok(!v.ok);
    assert.equal(v.step, 'multi-prefix');
  });

  it('collision count 3 in the parameters is rejected at collision-count', () => {
    const p = Buffer.from(hbaOnly.encoded);
    p[24] = 3;
    const v = verifyHbaLocator(hbaOnly.addresses[1] as Buffer, p);
    assert.ok(!v.ok);
    assert.equal(v.step, 'collision-count');
  });

  it('garbage parameters are rejected at decode, without throwing', () => {
    const v = verifyHbaLocator(hbaOnly.addresses[0] as Buffer, Buffer.from('00', 'hex'));
    assert.ok(!v.ok);
    assert.equal(v.step, 'decode');
    const d = decodeCgaParameters(hbaOnly.encoded);
    assert.ok(d.ok);
  });

  it('generation refuses no prefixes, duplicates and wrong-size prefixes', () => {
    assert.throws(() => generateHbaSet({ prefixes: [], sec: 0 }), RangeError);
    assert.throws(() => generateHbaSet({ prefixes: [PREFIXES[0] as Buffer, PREFIXES[0] as Buffer], sec: 0 }), RangeError);
    assert.throws(() => generateHbaSet({ prefixes: [ipv6('2001:db8::')], sec: 0 }), RangeError);
  });

  it('generateHbaSetAsync (worker thread) gives the same set as the synchronous generation', async () => {
    const random = hbaOnly.params.publicKey.subarray(hbaOnly.params.publicKey.length - 48);
    const set = await generateHbaSetAsync({ prefixes: PREFIXES, sec: 1, modifier: START, random });
    assert.ok(set.encoded.equals(hbaOnly.encoded));
    assert.deepEqual(set.addresses, hbaOnly.addresses);
  });
});
