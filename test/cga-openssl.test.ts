/**
 * Independent cross-check with the openssl command: the SHA-1 digests of the Hash1 and
 * Hash2 inputs, and the CGA Signature in both directions (openssl verifies ours, we
 * verify openssl's).
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import type { KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  cgaSignatureInput,
  generateCga,
  generateHbaSet,
  generateRsaKey,
  hash1,
  hash2,
  hash2Input,
  privateKeyPem,
  publicKeyDer,
  publicKeyPem,
  signLocatorList,
  verifyLocatorListSignature,
  type GeneratedCga,
  type GeneratedHbaSet,
} from '../protocol/cga';

function openssl(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `openssl dgst -sha1` of a file, as hex. */
function opensslSha1(file: string): string {
  const r = openssl(['dgst', '-sha1', '-r', file]);
  assert.equal(r.status, 0, r.stderr);
  const hex = r.stdout.trim().split(/\s+/)[0] ?? '';
  assert.match(hex, /^[0-9a-f]{40}$/);
  return hex;
}

describe('cross-check with openssl', () => {
  let dir: string;
  let key: KeyObject;
  let cga: GeneratedCga;
  let hba: GeneratedHbaSet;
  const signedData = Buffer.from('00040024000000020102' + '20010db8000a00000123456789abcdef' + '20010db8000b00000123456789abcdef', 'hex');

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'shim6-cga-openssl-'));
    key = generateRsaKey(2048);
    cga = generateCga({ subnetPrefix: Buffer.from('20010db8000a0000', 'hex'), publicKey: publicKeyDer(key), sec: 1, collisionCount: 1 });
    hba = generateHbaSet({ prefixes: [Buffer.from('20010db8000a0000', 'hex'), Buffer.from('20010db8000b0000', 'hex')], sec: 1 });
  });

  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('Hash1 is the first 64 bits of openssl dgst -sha1 of the CGA Parameters', () => {
    for (const [name, encoded] of [['cga', cga.encoded], ['hba', hba.encoded]] as const) {
      const f = join(dir, `${name}-params.bin`);
      writeFileSync(f, encoded);
      assert.equal(hash1(encoded).toString('hex'), opensslSha1(f).slice(0, 16));
    }
  });

  it('Hash2 is the first 112 bits of openssl dgst -sha1 of modifier | 9 zero octets | key | extensions', () => {
    for (const [name, gen] of [['cga', cga], ['hba', hba]] as const) {
      const input = Buffer.concat([gen.params.modifier, Buffer.alloc(9), gen.params.publicKey, gen.encoded.subarray(25 + gen.params.publicKey.length)]);
      assert.ok(input.equals(hash2Input(gen.encoded)));
      const f = join(dir, `${name}-hash2-input.bin`);
      writeFileSync(f, input);
      const digest = opensslSha1(f);
      assert.equal(hash2(gen.encoded).toString('hex'), digest.slice(0, 28));
      assert.equal(digest.slice(0, 4), '0000', 'Sec 1: 16 leading zero bits');
    }
  });

  it('openssl dgst -sha1 -verify accepts our signature over tag | data, and rejects changed data', () => {
    const pub = join(dir, 'pubkey.pem');
    const sig = join(dir, 'sig.bin');
    const data = join(dir, 'data.bin');
    writeFileSync(pub, publicKeyPem(cga.params.publicKey));
    writeFileSync(sig, signLocatorList(key, signedData));
    writeFileSync(data, cgaSignatureInput(signedData));
    const ok = openssl(['dgst', '-sha1', '-verify', pub, '-signature', sig, data]);
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /Verified OK/);
    const changed = Buffer.from(cgaSignatureInput(signedData));
    changed[changed.length - 1] = (changed[changed.length - 1] as number) ^ 1;
    writeFileSync(data, changed);
    const bad = openssl(['dgst', '-sha1', '-verify', pub, '-signature', sig, data]);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stdout, /Verification failure/);
  });

  it('we verify a signature made by openssl dgst -sha1 -sign', () => {
    const keyFile = join(dir, 'key.pem');
    const data = join(dir, 'data2.bin');
    const sig = join(dir, 'sig2.bin');
    writeFileSync(keyFile, privateKeyPem(key), { mode: 0o600 });
    writeFileSync(data, cgaSignatureInput(signedData));
    const r = openssl(['dgst', '-sha1', '-sign', keyFile, '-out', sig, data]);
    assert.equal(r.status, 0, r.stderr);
    const signature = readFileSync(sig);
    assert.equal(verifyLocatorListSignature(publicKeyDer(key), signedData, signature), true);
    assert.equal(verifyLocatorListSignature(publicKeyDer(key), signedData.subarray(1), signature), false);
  });
});
