/**
 * shim6d/locator-security.ts: the locator list options we send (LocalIdentity, from
 * generated values and from the files `shim6-cga generate` writes) and the check of a
 * peer's list (HBA set membership, ULID bound to the parameters, CGA Signature), plus the
 * serial-number comparison of generations.
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import type { KeyObject } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { formatIPv6 } from '../protocol/address';
import {
  DEFAULT_MIN_MODULUS_BITS,
  generateCga,
  generateHbaSet,
  generateRsaKey,
  locatorListSignedData,
  parsePrefix64,
  privateKeyPem,
  publicKeyDer,
  signLocatorList,
  type CgaConfig,
  type GeneratedCga,
  type GeneratedHbaSet,
} from '../protocol/cga';
import { VerificationMethod } from '../protocol/constants';
import { decodeOptions, findOption, optionContentLength, optionTotalLength, writeOption, type LocatorEntry, type LocatorListOption, type Shim6Option } from '../protocol/options';
import {
  HostLocatorSecurity,
  isNewerGeneration,
  LocalIdentity,
  LocalIdentityError,
  verifyPeerLocators,
  verifyUpdate,
  type LocatorVerificationResult,
} from '../shim6d/locator-security';

const ROOT = resolve(__dirname, '..');
const HBA = VerificationMethod.HBA;
const CGA = VerificationMethod.CGA;
/** RSA keys as small as verification accepts by default, for speed. */
const KEY_BITS = Math.max(1024, DEFAULT_MIN_MODULUS_BITS);

function prefix(text: string): Buffer {
  const p = parsePrefix64(text);
  if (!p.ok) throw new Error(p.message);
  return p.prefix;
}

const P1 = prefix('2001:db8:1::/64');
const P2 = prefix('2001:db8:2::/64');
const P3 = prefix('2001:db8:3::/64');
const P4 = prefix('2001:db8:4::/64');
/** Addresses no set contains. */
const OUTSIDE = '2001:db8:99::1234';
const OUTSIDE2 = '2001:db8:98::5678';

function list(generation: number, entries: Array<[string, number]>): LocatorListOption {
  return { kind: 'LocatorList', generation, locators: entries.map(([address, verificationMethod]) => ({ address, verificationMethod })) };
}

function sign(key: KeyObject, l: LocatorListOption): Buffer {
  const data = locatorListSignedData(l.generation, l.locators);
  assert.ok(data);
  return signLocatorList(key, data);
}

function assertOk(r: LocatorVerificationResult): Extract<LocatorVerificationResult, { ok: true }> {
  if (!r.ok) assert.fail(`expected ok, got ${r.reason}${r.locator ? ` (${r.locator})` : ''}: ${r.detail}`);
  return r;
}

function assertRejected(r: LocatorVerificationResult, reason: string, locator?: string): void {
  if (r.ok) assert.fail(`expected ${reason}, got ok`);
  assert.equal(r.reason, reason, r.detail);
  assert.equal(r.locator, locator, `locator named (${r.detail})`);
  assert.ok(r.detail.length > 0);
  if (locator !== undefined) assert.ok(r.detail.includes(locator), `detail names ${locator}: ${r.detail}`);
}

/** Encodes the options as they go on the wire and decodes them back (strict). */
function wireRoundTrip(options: Shim6Option[]): Shim6Option[] {
  const total = options.reduce((n, o) => n + optionTotalLength(optionContentLength(o)), 0);
  const buf = Buffer.alloc(total);
  let p = 0;
  for (const o of options) p = writeOption(buf, p, o);
  assert.equal(p, total);
  const d = decodeOptions(buf, 0, total, 0, { strictReserved: true });
  if (!d.ok) assert.fail(`decode: ${d.error.message}`);
  return d.value;
}

/** What a receiver does with our options: verify the Locator List with the PDS and signature in them (or remembered). */
function receive(peerUlid: string, options: Shim6Option[], remembered?: Buffer): LocatorVerificationResult {
  const locatorList = findOption(options, 'LocatorList');
  assert.ok(locatorList, 'a Locator List option');
  return verifyPeerLocators({
    peerUlid,
    locatorList,
    parameters: findOption(options, 'CgaParameterDataStructure')?.data ?? remembered,
    signature: findOption(options, 'CgaSignature')?.signature,
  });
}

describe('locator security (shim6d/locator-security.ts)', function () {
  this.timeout(60000);

  let key: KeyObject;
  let otherKey: KeyObject;
  /** HBA-only set of three prefixes. */
  let hba: GeneratedHbaSet;
  let hbaAddr: string[];
  /** Another host's HBA-only set on the first two of the same prefixes. */
  let otherHba: GeneratedHbaSet;
  /** A CGA with `key`. */
  let cga: GeneratedCga;
  let cgaAddr: string;
  /** Another host's CGA (otherKey) on the same prefix. */
  let otherCga: GeneratedCga;
  /** HBA/CGA-compatible set with `key`. */
  let compat: GeneratedHbaSet;
  let compatAddr: string[];

  before(() => {
    key = generateRsaKey(KEY_BITS);
    otherKey = generateRsaKey(KEY_BITS);
    hba = generateHbaSet({ prefixes: [P1, P2, P3], sec: 0 });
    hbaAddr = hba.addresses.map((a) => formatIPv6(a));
    otherHba = generateHbaSet({ prefixes: [P1, P2], sec: 0 });
    cga = generateCga({ subnetPrefix: P4, publicKey: publicKeyDer(key), sec: 0 });
    cgaAddr = formatIPv6(cga.address);
    otherCga = generateCga({ subnetPrefix: P4, publicKey: publicKeyDer(otherKey), sec: 0 });
    compat = generateHbaSet({ prefixes: [P1, P2], sec: 0, publicKey: publicKeyDer(key) });
    compatAddr = compat.addresses.map((a) => formatIPv6(a));
  });

  describe('peer side: HBA', () => {
    it('a list of the HBA set verifies, every locator as hba, and gives back the parameters', () => {
      const r = assertOk(verifyPeerLocators({ peerUlid: hbaAddr[0] as string, locatorList: list(1, hbaAddr.map((a) => [a, HBA])), parameters: hba.encoded }));
      assert.deepEqual(r.locators, hbaAddr.map((address) => ({ address, method: 'hba' })));
      assert.ok(r.parameters.equals(hba.encoded));
    });

    it('any member of the set can be the ULID, and locators come back in canonical text', () => {
      const spelled = (hbaAddr[1] as string).toUpperCase();
      const r = assertOk(verifyPeerLocators({ peerUlid: hbaAddr[2] as string, locatorList: list(1, [[spelled, HBA], [hbaAddr[2] as string, HBA]]), parameters: hba.encoded }));
      assert.deepEqual(r.locators.map((l) => l.address), [hbaAddr[1], hbaAddr[2]]);
    });

    it('a locator outside the set is refused and named (hba-not-in-set)', () => {
      const ulid = hbaAddr[0] as string;
      assertRejected(verifyPeerLocators({ peerUlid: ulid, locatorList: list(1, [[ulid, HBA], [OUTSIDE, HBA]]), parameters: hba.encoded }), 'hba-not-in-set', OUTSIDE);
      // The right prefix but another interface identifier: another host's address there.
      const intruder = formatIPv6(otherHba.addresses[1] as Buffer);
      assertRejected(verifyPeerLocators({ peerUlid: ulid, locatorList: list(1, [[ulid, HBA], [hbaAddr[1] as string, HBA], [intruder, HBA]]), parameters: hba.encoded }), 'hba-not-in-set', intruder);
    });

    it("another host's parameters presented for our peer's ULID are refused (ulid-not-secured)", () => {
      const ulid = hbaAddr[0] as string;
      const theirs = otherHba.addresses.map((a) => formatIPv6(a));
      // Their set verifies on its own terms, but it is not the set of this ULID.
      assertOk(verifyPeerLocators({ peerUlid: theirs[0] as string, locatorList: list(1, theirs.map((a) => [a, HBA])), parameters: otherHba.encoded }));
      assertRejected(verifyPeerLocators({ peerUlid: ulid, locatorList: list(1, theirs.map((a) => [a, HBA])), parameters: otherHba.encoded }), 'ulid-not-secured');
      assertRejected(verifyPeerLocators({ peerUlid: ulid, locatorList: list(1, [[ulid, HBA]]), parameters: cga.encoded }), 'ulid-not-secured');
      assertRejected(verifyPeerLocators({ peerUlid: cgaAddr, locatorList: list(1, [[cgaAddr, CGA]]), parameters: otherCga.encoded }), 'ulid-not-secured');
    });

    it('a locator equal to the ULID needs nothing more, whatever its method', () => {
      const ulid = hbaAddr[0] as string;
      const r = assertOk(verifyPeerLocators({ peerUlid: ulid, locatorList: list(1, [[ulid, CGA], [hbaAddr[1] as string, HBA]]), parameters: hba.encoded }));
      assert.deepEqual(r.locators, [{ address: ulid, method: 'cga' }, { address: hbaAddr[1], method: 'hba' }]);
      assertOk(verifyPeerLocators({ peerUlid: cgaAddr, locatorList: list(1, [[cgaAddr, HBA]]), parameters: cga.encoded }));
    });

    it('an HBA-marked locator with the parameters of a CGA is not in any set', () => {
      assertRejected(verifyPeerLocators({ peerUlid: cgaAddr, locatorList: list(1, [[cgaAddr, CGA], [OUTSIDE, HBA]]), parameters: cga.encoded }), 'hba-not-in-set', OUTSIDE);
    });

    it('an empty list verifies (with parameters that secure the ULID)', () => {
      assert.deepEqual(assertOk(verifyPeerLocators({ peerUlid: hbaAddr[0] as string, locatorList: list(1, []), parameters: hba.encoded })).locators, []);
    });
  });

  describe('peer side: parameters and methods', () => {
    it('no parameters (neither in the message nor remembered): no-parameters', () => {
      const ulid = hbaAddr[0] as string;
      assertRejected(verifyPeerLocators({ peerUlid: ulid, locatorList: list(1, [[ulid, HBA]]) }), 'no-parameters');
      assertRejected(verifyPeerLocators({ peerUlid: ulid, locatorList: list(1, [[ulid, HBA]]), parameters: Buffer.alloc(0) }), 'no-parameters');
    });

    it('parameters that do not decode: bad-parameters', () => {
      const ulid = hbaAddr[0] as string;
      assertRejected(verifyPeerLocators({ peerUlid: ulid, locatorList: list(1, [[ulid, HBA]]), parameters: hba.encoded.subarray(0, 30) }), 'bad-parameters');
      assertRejected(verifyPeerLocators({ peerUlid: ulid, locatorList: list(1, [[ulid, HBA]]), parameters: Buffer.concat([hba.encoded, Buffer.from([0, 0x12, 0])]) }), 'bad-parameters');
    });

    it('tampered parameters no longer secure the ULID', () => {
      const ulid = hbaAddr[0] as string;
      const entries: Array<[string, number]> = hbaAddr.map((a) => [a, HBA]);
      const tamper = (at: number): Buffer => {
        const t = Buffer.from(hba.encoded);
        t[at] = (t[at] as number) ^ 0x01;
        return t;
      };
      // Modifier, collision count, public key, and the last prefix of the Multi-Prefix extension.
      for (const at of [0, 24, 40, hba.encoded.length - 1]) {
        assertRejected(verifyPeerLocators({ peerUlid: ulid, locatorList: list(1, entries), parameters: tamper(at) }), 'ulid-not-secured');
      }
      // Another prefix put in the set (the attacker's): Hash1 and Hash2 cover the extension.
      const withP4 = Buffer.from(hba.encoded);
      P4.copy(withP4, withP4.length - 8);
      assertRejected(verifyPeerLocators({ peerUlid: ulid, locatorList: list(1, [[ulid, HBA], [formatIPv6(Buffer.concat([P4, Buffer.alloc(8, 1)])), HBA]]), parameters: withP4 }), 'ulid-not-secured');
    });

    it('an unknown verification method is refused, named, before the parameters are looked at', () => {
      const ulid = hbaAddr[0] as string;
      assertRejected(verifyPeerLocators({ peerUlid: ulid, locatorList: list(1, [[ulid, HBA], [hbaAddr[1] as string, 3]]), parameters: hba.encoded }), 'unknown-method', hbaAddr[1]);
      assertRejected(verifyPeerLocators({ peerUlid: ulid, locatorList: list(1, [[ulid, 0]]) }), 'unknown-method', ulid);
    });

    it('a peer ULID or locator that is not an address is refused, not thrown', () => {
      assertRejected(verifyPeerLocators({ peerUlid: 'not-an-address', locatorList: list(1, []), parameters: hba.encoded }), 'ulid-not-secured');
      assertRejected(verifyPeerLocators({ peerUlid: hbaAddr[0] as string, locatorList: list(1, [['2001:db8::zz', HBA]]), parameters: hba.encoded }), 'bad-locator', '2001:db8::zz');
    });
  });

  describe('peer side: CGA', () => {
    let cgaList: LocatorListOption;
    before(() => {
      cgaList = list(7, [[cgaAddr, CGA], [OUTSIDE, CGA], [OUTSIDE2, CGA]]);
    });

    it('CGA-marked locators verify with a good signature', () => {
      const r = assertOk(verifyPeerLocators({ peerUlid: cgaAddr, locatorList: cgaList, parameters: cga.encoded, signature: sign(key, cgaList) }));
      assert.deepEqual(r.locators, [cgaAddr, OUTSIDE, OUTSIDE2].map((address) => ({ address, method: 'cga' })));
    });

    it('a signature over a different list is invalid', () => {
      const fewer = list(7, [[cgaAddr, CGA], [OUTSIDE, CGA]]);
      const reordered = list(7, [[cgaAddr, CGA], [OUTSIDE2, CGA], [OUTSIDE, CGA]]);
      for (const signed of [fewer, reordered]) {
        assertRejected(verifyPeerLocators({ peerUlid: cgaAddr, locatorList: cgaList, parameters: cga.encoded, signature: sign(key, signed) }), 'cga-signature-invalid', OUTSIDE);
      }
    });

    it('a signature over another generation is invalid (no replay of an old list under a new generation)', () => {
      const old = list(6, cgaList.locators.map((l) => [l.address, l.verificationMethod]));
      assertRejected(verifyPeerLocators({ peerUlid: cgaAddr, locatorList: cgaList, parameters: cga.encoded, signature: sign(key, old) }), 'cga-signature-invalid', OUTSIDE);
    });

    it('a signature by another key, or mangled, is invalid', () => {
      const good = sign(key, cgaList);
      const flipped = Buffer.from(good);
      flipped[10] = (flipped[10] as number) ^ 0x80;
      for (const signature of [sign(otherKey, cgaList), flipped, good.subarray(1), Buffer.from([1])]) {
        assertRejected(verifyPeerLocators({ peerUlid: cgaAddr, locatorList: cgaList, parameters: cga.encoded, signature }), 'cga-signature-invalid', OUTSIDE);
      }
    });

    it('CGA-marked locators without a signature: cga-signature-missing, naming the first', () => {
      assertRejected(verifyPeerLocators({ peerUlid: cgaAddr, locatorList: cgaList, parameters: cga.encoded }), 'cga-signature-missing', OUTSIDE);
      assertRejected(verifyPeerLocators({ peerUlid: cgaAddr, locatorList: cgaList, parameters: cga.encoded, signature: Buffer.alloc(0) }), 'cga-signature-missing', OUTSIDE);
    });

    it("another host's CGA parameters with its own valid signature do not secure our peer's ULID", () => {
      assertRejected(verifyPeerLocators({ peerUlid: cgaAddr, locatorList: cgaList, parameters: otherCga.encoded, signature: sign(otherKey, cgaList) }), 'ulid-not-secured');
    });

    it('CGA-marked locators with an HBA-only set: there is no key (ulid-not-cga)', () => {
      const ulid = hbaAddr[0] as string;
      const l = list(1, [[ulid, HBA], [OUTSIDE, CGA]]);
      assertRejected(verifyPeerLocators({ peerUlid: ulid, locatorList: l, parameters: hba.encoded, signature: sign(key, l) }), 'ulid-not-cga', OUTSIDE);
    });

    it('the key is checked against the minimum modulus (options pass through)', () => {
      const r = verifyPeerLocators({ peerUlid: cgaAddr, locatorList: cgaList, parameters: cga.encoded, signature: sign(key, cgaList), options: { minModulusBits: KEY_BITS + 1024 } });
      assertRejected(r, 'cga-signature-invalid', OUTSIDE);
    });
  });

  describe('peer side: mixed HBA and CGA (HBA/CGA-compatible set)', () => {
    it('set members as HBA and other locators as CGA verify together', () => {
      const l = list(42, [[compatAddr[0] as string, HBA], [compatAddr[1] as string, HBA], [OUTSIDE, CGA]]);
      const r = assertOk(verifyPeerLocators({ peerUlid: compatAddr[0] as string, locatorList: l, parameters: compat.encoded, signature: sign(key, l) }));
      assert.deepEqual(r.locators, [
        { address: compatAddr[0], method: 'hba' },
        { address: compatAddr[1], method: 'hba' },
        { address: OUTSIDE, method: 'cga' },
      ]);
    });

    it('with a ULID from the second prefix too (not the CGA of the parameters as generated)', () => {
      const l = list(43, [[compatAddr[1] as string, HBA], [OUTSIDE, CGA], [compatAddr[0] as string, HBA]]);
      assertOk(verifyPeerLocators({ peerUlid: compatAddr[1] as string, locatorList: l, parameters: compat.encoded, signature: sign(key, l) }));
    });

    it('the CGA part still needs its signature, by the key of the set', () => {
      const l = list(44, [[compatAddr[0] as string, HBA], [OUTSIDE, CGA]]);
      assertRejected(verifyPeerLocators({ peerUlid: compatAddr[0] as string, locatorList: l, parameters: compat.encoded }), 'cga-signature-missing', OUTSIDE);
      assertRejected(verifyPeerLocators({ peerUlid: compatAddr[0] as string, locatorList: l, parameters: compat.encoded, signature: sign(otherKey, l) }), 'cga-signature-invalid', OUTSIDE);
    });

    it('the HBA part is still checked when the list is signed', () => {
      const l = list(45, [[compatAddr[0] as string, HBA], [OUTSIDE2, HBA], [OUTSIDE, CGA]]);
      assertRejected(verifyPeerLocators({ peerUlid: compatAddr[0] as string, locatorList: l, parameters: compat.encoded, signature: sign(key, l) }), 'hba-not-in-set', OUTSIDE2);
    });

    it('verifyUpdate is the same check', () => {
      assert.equal(verifyUpdate, verifyPeerLocators);
    });
  });

  describe('local side: LocalIdentity', () => {
    it('an HBA-only set: its members are the secured ULIDs and are announced as HBA, unsigned', () => {
      const id = LocalIdentity.fromGenerated(hba);
      assert.equal(id.kind, 'hba');
      assert.equal(id.sec, 0);
      assert.equal(id.ulid, hbaAddr[0]);
      assert.deepEqual(id.securedUlids(), hbaAddr);
      assert.equal(id.canSign, false);
      assert.ok(id.parameters.equals(hba.encoded));
      const without = id.locatorOptions(hbaAddr, 5, { includeParameters: false });
      assert.deepEqual(without.map((o) => o.kind), ['LocatorList']);
      const opts = id.locatorOptions(hbaAddr, 5, { includeParameters: true });
      assert.deepEqual(opts.map((o) => o.kind), ['LocatorList', 'CgaParameterDataStructure']);
      assert.deepEqual(findOption(opts, 'LocatorList')?.locators, hbaAddr.map((address) => ({ address, verificationMethod: HBA })));
      assert.deepEqual(id.provableLocators([OUTSIDE, hbaAddr[1] as string, hbaAddr[1] as string]), [hbaAddr[1]]);
    });

    it('an HBA-only set cannot announce a locator outside it: a typed error naming the locator', () => {
      const id = LocalIdentity.fromGenerated(hba);
      assert.throws(
        () => id.locatorOptions([hbaAddr[0] as string, OUTSIDE], 1, { includeParameters: true }),
        (e: unknown) => e instanceof LocalIdentityError && e.code === 'unprovable-locator' && e.locator === OUTSIDE && e.message.includes(OUTSIDE),
      );
      assert.throws(() => id.locatorOptions(['nonsense'], 1, { includeParameters: false }), (e: unknown) => e instanceof LocalIdentityError && e.code === 'bad-locator');
      assert.throws(() => id.locatorOptions(hbaAddr, 2 ** 32, { includeParameters: false }), RangeError);
      assert.throws(() => id.locatorOptions(hbaAddr, -1, { includeParameters: false }), RangeError);
    });

    it('a CGA announces every locator as CGA, signed', () => {
      const id = LocalIdentity.fromGenerated(cga, key);
      assert.equal(id.kind, 'cga');
      assert.deepEqual(id.securedUlids(), [cgaAddr]);
      assert.deepEqual(id.hbaSet, []);
      assert.ok(id.canSign);
      const opts = id.locatorOptions([cgaAddr, OUTSIDE], 9, { includeParameters: false });
      assert.deepEqual(opts.map((o) => o.kind), ['LocatorList', 'CgaSignature']);
      assert.deepEqual(findOption(opts, 'LocatorList')?.locators.map((l: LocatorEntry) => l.verificationMethod), [CGA, CGA]);
      assert.equal(findOption(opts, 'CgaSignature')?.signature.length, KEY_BITS / 8);
    });

    it('an HBA/CGA-compatible set with its key: members as HBA, others as CGA, signed', () => {
      const id = LocalIdentity.fromGenerated(compat, privateKeyPem(key));
      assert.ok(id.canSign);
      const opts = id.locatorOptions([compatAddr[0] as string, OUTSIDE, compatAddr[1] as string], 3, { includeParameters: true });
      assert.deepEqual(opts.map((o) => o.kind), ['LocatorList', 'CgaParameterDataStructure', 'CgaSignature']);
      assert.deepEqual(findOption(opts, 'LocatorList')?.locators.map((l: LocatorEntry) => l.verificationMethod), [HBA, CGA, HBA]);
      // Without its key, the same set is as limited as an HBA-only one.
      const keyless = LocalIdentity.fromGenerated(compat);
      assert.equal(keyless.canSign, false);
      assert.throws(() => keyless.locatorOptions([OUTSIDE], 3, { includeParameters: false }), LocalIdentityError);
    });

    it('refuses identities whose parts do not agree', () => {
      const bad = (f: () => unknown): void => {
        assert.throws(f, (e: unknown) => e instanceof LocalIdentityError && e.code === 'bad-identity');
      };
      bad(() => LocalIdentity.fromGenerated(cga)); // a CGA without its key
      bad(() => LocalIdentity.fromGenerated(cga, otherKey)); // another key
      bad(() => LocalIdentity.fromGenerated(hba, key)); // HBA-only sets have no key
      bad(() => LocalIdentity.fromGenerated(compat, otherKey));
      bad(() => LocalIdentity.fromGenerated({ ...cga, address: otherCga.address }, key)); // address of other parameters
      bad(() => LocalIdentity.fromGenerated({ ...hba, addresses: [...hba.addresses, otherHba.addresses[0] as Buffer] }));
      bad(() => LocalIdentity.fromGenerated(cga, 'not a key'));
    });

    for (const kind of ['HBA-only set', 'CGA', 'HBA/CGA-compatible set'] as const) {
      it(`${kind}: locatorOptions → encode → decode → verifyPeerLocators, then an update with the remembered parameters`, () => {
        const [id, locators] = kind === 'HBA-only set'
          ? [LocalIdentity.fromGenerated(hba), hbaAddr]
          : kind === 'CGA'
            ? [LocalIdentity.fromGenerated(cga, key), [cgaAddr, OUTSIDE]]
            : [LocalIdentity.fromGenerated(compat, key), [...compatAddr, OUTSIDE]];
        const first = wireRoundTrip(id.locatorOptions(locators, 0xfffffffe, { includeParameters: true }));
        const r1 = assertOk(receive(id.ulid, first));
        assert.deepEqual(r1.locators.map((l) => l.address), locators);
        // An Update Request: new list and generation, no parameters (sent once per context).
        const next = locators.slice(1).concat(locators[0] as string).reverse();
        const update = wireRoundTrip(id.locatorOptions(next, 1, { includeParameters: false }));
        assert.equal(findOption(update, 'CgaParameterDataStructure'), undefined);
        assertRejected(receive(id.ulid, update), 'no-parameters');
        const r2 = assertOk(receive(id.ulid, update, r1.parameters));
        assert.deepEqual(r2.locators.map((l) => l.address), next);
        assert.ok(isNewerGeneration(1, 0xfffffffe));
        // Another ULID of ours secured by the same parameters also verifies.
        for (const u of id.securedUlids()) assertOk(receive(u, first));
      });
    }

    it('a signed list decoded from the wire and then altered no longer verifies', () => {
      const id = LocalIdentity.fromGenerated(cga, key);
      const opts = wireRoundTrip(id.locatorOptions([cgaAddr, OUTSIDE], 100, { includeParameters: true }));
      const l = findOption(opts, 'LocatorList') as LocatorListOption;
      l.locators[1] = { address: OUTSIDE2, verificationMethod: CGA };
      assertRejected(receive(cgaAddr, opts), 'cga-signature-invalid', OUTSIDE2);
    });
  });

  describe('local side: LocalIdentity.load from `shim6-cga generate` output', function () {
    this.timeout(120000);
    let tmp: string;

    function generate(dir: string, ...args: string[]): CgaConfig {
      const tsx = require.resolve('tsx/cli');
      const r = spawnSync(process.execPath, [tsx, 'protocol/cga/cli.ts', 'generate', ...args, '--sec', '0', '--out', join(tmp, dir)], { cwd: ROOT, encoding: 'utf8' });
      assert.equal(r.status, 0, `shim6-cga generate: ${r.stderr}`);
      const config = JSON.parse(readFileSync(join(tmp, dir, 'shim6-cga.json'), 'utf8')) as CgaConfig;
      assert.deepEqual(r.stdout.trim().split('\n'), config.locators);
      return config;
    }

    let hbaConfig: CgaConfig;
    let cgaConfig: CgaConfig;
    let compatConfig: CgaConfig;

    before(() => {
      tmp = mkdtempSync(join(tmpdir(), 'shim6-locsec-'));
      hbaConfig = generate('hba', '--prefix', '2001:db8:a::/64', '--prefix', '2001:db8:b::/64', '--prefix', '2001:db8:c::/64');
      cgaConfig = generate('cga', '--prefix', '2001:db8:d::/64', '--key-bits', String(KEY_BITS));
      compatConfig = generate('compat', '--prefix', '2001:db8:e::/64', '--prefix', '2001:db8:f::/64', '--cga-compatible', '--key-bits', String(KEY_BITS));
    });

    after(() => {
      rmSync(tmp, { recursive: true, force: true });
    });

    it('an HBA-only set', () => {
      const id = LocalIdentity.load(join(tmp, 'hba'));
      assert.equal(id.kind, 'hba');
      assert.equal(id.ulid, hbaConfig.ulid);
      assert.deepEqual(id.securedUlids(), hbaConfig.locators);
      assert.equal(id.canSign, false);
      assert.ok(id.parameters.equals(readFileSync(join(tmp, 'hba', 'cga-params.bin'))));
      assertOk(receive(id.ulid, wireRoundTrip(id.locatorOptions(hbaConfig.locators, 1, { includeParameters: true }))));
    });

    it('a CGA with its generated key (loaded from the JSON file path too)', () => {
      for (const path of [join(tmp, 'cga'), join(tmp, 'cga', 'shim6-cga.json')]) {
        const id = LocalIdentity.load(path);
        assert.equal(id.kind, 'cga');
        assert.deepEqual(id.securedUlids(), [cgaConfig.ulid]);
        assert.ok(id.canSign);
        const r = assertOk(receive(cgaConfig.ulid, wireRoundTrip(id.locatorOptions([cgaConfig.ulid, OUTSIDE], 2, { includeParameters: true }))));
        assert.deepEqual(r.locators.map((l) => l.method), ['cga', 'cga']);
      }
    });

    it('an HBA/CGA-compatible set', () => {
      const id = LocalIdentity.load(join(tmp, 'compat'));
      assert.equal(id.kind, 'hba');
      assert.ok(id.canSign);
      assert.deepEqual(id.hbaSet, compatConfig.locators);
      const r = assertOk(receive(compatConfig.locators[1] as string, wireRoundTrip(id.locatorOptions([...compatConfig.locators, OUTSIDE], 3, { includeParameters: true }))));
      assert.deepEqual(r.locators.map((l) => l.method), ['hba', 'hba', 'cga']);
    });

    it('a directory without a config, or with a key that is not the one of the parameters, is refused', () => {
      assert.throws(() => LocalIdentity.load(join(tmp, 'missing')), (e: unknown) => e instanceof LocalIdentityError && e.code === 'bad-identity');
      const swapped = join(tmp, 'swapped');
      mkdirSync(swapped);
      for (const f of readdirSync(join(tmp, 'cga'))) copyFileSync(join(tmp, 'cga', f), join(swapped, f));
      writeFileSync(join(swapped, 'key.pem'), privateKeyPem(otherKey));
      assert.throws(() => LocalIdentity.load(swapped), (e: unknown) => e instanceof LocalIdentityError && e.code === 'bad-identity' && /private key/.test(e.message));
    });
  });

  describe('HostLocatorSecurity', () => {
    it('routes each local ULID to the identity that secures it', () => {
      const host = new HostLocatorSecurity([LocalIdentity.fromGenerated(hba), LocalIdentity.fromGenerated(cga, key)]);
      assert.deepEqual(host.securedUlids().sort(), [...hbaAddr, cgaAddr].sort());
      assert.equal(host.identityFor((hbaAddr[1] as string).toUpperCase())?.kind, 'hba');
      assert.deepEqual(host.securableLocators(hbaAddr[1] as string, [OUTSIDE, ...hbaAddr]), hbaAddr);
      assert.deepEqual(host.securableLocators(cgaAddr, [OUTSIDE, cgaAddr]), [OUTSIDE, cgaAddr]);
      assert.deepEqual(host.securableLocators(OUTSIDE, [OUTSIDE]), []);
      const opts = host.localLocatorOptions(cgaAddr, [cgaAddr, OUTSIDE], 8, true);
      assertOk(receive(cgaAddr, opts));
      const l = findOption(opts, 'LocatorList') as LocatorListOption;
      assertOk(host.verifyPeerLocators(cgaAddr, l, findOption(opts, 'CgaParameterDataStructure')?.data, findOption(opts, 'CgaSignature')?.signature));
      assertRejected(host.verifyPeerLocators(cgaAddr, l, cga.encoded, undefined), 'cga-signature-missing', OUTSIDE);
    });

    it('an unsecured ULID: no Locator List for the ULID alone, an error for more', () => {
      const host = new HostLocatorSecurity([LocalIdentity.fromGenerated(hba)]);
      assert.deepEqual(host.localLocatorOptions(OUTSIDE, [OUTSIDE], 1, true), []);
      assert.deepEqual(host.localLocatorOptions(OUTSIDE, [], 1, true), []);
      assert.throws(() => host.localLocatorOptions(OUTSIDE, [OUTSIDE, OUTSIDE2], 1, true), (e: unknown) => e instanceof LocalIdentityError && e.code === 'no-identity' && e.locator === OUTSIDE2);
    });
  });

  describe('isNewerGeneration (RFC 1982 serial numbers, 32 bits)', () => {
    const cases: Array<[number, number, boolean]> = [
      [1, 0, true],
      [0, 1, false],
      [5, 5, false],
      [0, 0xffffffff, true], // wrap-around
      [0xffffffff, 0, false],
      [3, 0xfffffff0, true],
      [0xfffffff0, 3, false],
      [0x7fffffff, 0, true], // the farthest still newer
      [0x80000000, 0, false], // exactly half way: undefined in RFC 1982, not newer
      [0, 0x80000000, false],
      [0x80000001, 1, false],
      [0x80000000, 1, true],
      [0xffffffff, 0x80000000, true],
      [0x7fffffff, 0x80000000, false],
    ];
    for (const [received, current, want] of cases) {
      it(`${received.toString(16)} after ${current.toString(16)}: ${want}`, () => {
        assert.equal(isNewerGeneration(received, current), want);
      });
    }

    it('values that are not 32-bit unsigned integers are a RangeError', () => {
      for (const [a, b] of [[-1, 0], [0, 2 ** 32], [1.5, 0], [0, Number.NaN]]) {
        assert.throws(() => isNewerGeneration(a as number, b as number), RangeError);
      }
    });
  });
});
