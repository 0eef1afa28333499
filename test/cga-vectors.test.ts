/**
 * Third-party test vectors for CGA and HBA. RFC 3972's Appendix A could not be read from
 * the copies available here (see cga-generate-verify.test.ts). What stands in for it is
 * the HBA vector of LinShim6's hba_test.c, from Francis Dupont's HBA implementation
 * (test/support/hba-vector.ts). Two other implementations computed these addresses.
 *
 * The vector exercises every part a CGA uses: the Sec 1 modifier search (Hash2, 16 zero
 * bits), Hash1, and the Sec and u/g bits of the interface identifier. It also checks what
 * only HBA adds:
 * - the Multi-Prefix extension's encoding, with the P flag clear;
 * - the prefix order;
 * - the 384-bit pseudo-key wrapped as a SubjectPublicKeyInfo.
 * Those are the choices protocol/cga/hba.ts says it took from LinShim6, now checked
 * against data that was not made with our code.
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatIPv6, ipv6 } from '../protocol/address';
import {
  decodeCgaParameters,
  encodeCgaParameters,
  findMultiPrefixExtension,
  generateHbaSet,
  generateHbaSetAsync,
  hash2,
  hash2Input,
  hbaAddress,
  hbaPseudoPublicKey,
  verifyHbaLocator,
  verifyHbaSet,
  type GeneratedHbaSet,
} from '../protocol/cga';
import { HBA_VECTOR } from './support/hba-vector';
import { prefix64 } from './support/prefix';


const V = HBA_VECTOR;
const PREFIXES = V.set.map((s) => prefix64(s.prefix));
const ADDRESSES = V.set.map((s) => ipv6(s.address));
const hex = (s: string): Buffer => Buffer.from(s, 'hex');

describe('third-party vectors: the LinShim6 / F. Dupont HBA set (Sec 1, three prefixes)', () => {
  let set: GeneratedHbaSet;

  before(() => {
    set = generateHbaSet({ prefixes: PREFIXES, sec: V.sec, modifier: hex(V.modifierStart), random: hex(V.pseudoKey) });
  });

  it('generation from the same pseudo-key and starting modifier gives the same three addresses, in order', () => {
    assert.deepEqual(set.addresses.map((a) => formatIPv6(a)), V.set.map((s) => s.address));
  });

  it('the search tries the starting modifier (Hash2 as listed, rejected) and ends on the next one', () => {
    assert.equal(set.attempts, 2);
    assert.equal(set.params.modifier.toString('hex'), V.modifierFinal);
    assert.equal(hash2(set.encoded).toString('hex'), V.hash2Final);
    const atStart = encodeCgaParameters({ ...set.params, modifier: hex(V.modifierStart) });
    assert.equal(hash2(atStart).toString('hex'), V.hash2Start);
  });

  it('the search in a worker thread ends at the same place', async () => {
    const again = await generateHbaSetAsync({ prefixes: PREFIXES, sec: V.sec, modifier: hex(V.modifierStart), random: hex(V.pseudoKey) });
    assert.ok(again.encoded.equals(set.encoded));
  });

  it('the parameters are HBA-only: a Multi-Prefix extension with the P flag clear and the prefixes in order', () => {
    const d = decodeCgaParameters(set.encoded);
    assert.ok(d.ok);
    const mp = findMultiPrefixExtension(d.value);
    assert.ok(mp);
    assert.equal(mp.publicKeyIncluded, false);
    assert.deepEqual(mp.prefixes.map((p) => p.toString('hex')), PREFIXES.map((p) => p.toString('hex')));
    assert.ok(d.value.publicKey.equals(hbaPseudoPublicKey(hex(V.pseudoKey))));
    assert.equal(set.cgaCompatible, false);
  });

  it('every address of the vector verifies as a member of the set; hbaAddress gives each from the parameters', () => {
    assert.deepEqual(verifyHbaSet(ADDRESSES, set.encoded), { ok: true });
    for (const [i, p] of PREFIXES.entries()) {
      assert.ok(hbaAddress(set.params, p, V.sec).equals(ADDRESSES[i] as Buffer));
      const v = verifyHbaLocator(ADDRESSES[i] as Buffer, set.encoded);
      assert.ok(v.ok);
      assert.equal(v.sec, 1);
    }
  });

  it('any other encoding of the same set gives other addresses (the vector pins each choice)', () => {
    const differs = (mutate: (p: typeof set.params) => typeof set.params): boolean =>
      !hbaAddress(mutate(set.params), PREFIXES[1] as Buffer, V.sec).equals(ADDRESSES[1] as Buffer);
    const withExtension = (data: Buffer) => (p: typeof set.params): typeof set.params => ({ ...p, extensionFields: [{ type: 0x0012, data }] });
    const mp = set.params.extensionFields[0]?.data as Buffer;
    const pSet = Buffer.from(mp);
    pSet[0] = 0x80;
    assert.ok(differs(withExtension(pSet)), 'P flag set');
    const reordered = Buffer.concat([mp.subarray(0, 4), mp.subarray(12, 20), mp.subarray(4, 12), mp.subarray(20)]);
    assert.ok(differs(withExtension(reordered)), 'prefixes reordered');
    assert.ok(differs((p) => ({ ...p, publicKey: hex(V.pseudoKey) })), 'pseudo-key not wrapped');
    assert.ok(differs((p) => ({ ...p, extensionFields: [] })), 'no extension');
  });

  it('a locator outside the set, or a changed pseudo-key octet, is rejected at its step', () => {
    const outside = ipv6('2001:db8::3c4a:5bf6:ffb4:ca6c');
    const o = verifyHbaLocator(outside, set.encoded);
    assert.ok(!o.ok);
    assert.equal(o.step, 'hba-set-membership');
    const tampered = Buffer.from(set.encoded);
    const at = tampered.indexOf(hex(V.pseudoKey));
    assert.ok(at > 0);
    tampered[at + 10] = (tampered[at + 10] as number) ^ 0x01;
    const t = verifyHbaLocator(ADDRESSES[2] as Buffer, tampered);
    assert.ok(!t.ok);
    assert.equal(t.step, 'hash1');
  });

  it('openssl dgst -sha1 over our Hash2 inputs gives the vector\'s Hash2 values', function () {
    const dir = mkdtempSync(join(tmpdir(), 'shim6-hba-vector-'));
    try {
      for (const [modifier, expected] of [[V.modifierStart, V.hash2Start], [V.modifierFinal, V.hash2Final]] as const) {
        const file = join(dir, `${modifier}.bin`);
        writeFileSync(file, hash2Input(encodeCgaParameters({ ...set.params, modifier: hex(modifier) })));
        const r = spawnSync('openssl', ['dgst', '-sha1', '-r', file], { encoding: 'utf8' });
        assert.equal(r.status, 0, r.stderr);
        assert.equal(r.stdout.slice(0, 28), expected);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
