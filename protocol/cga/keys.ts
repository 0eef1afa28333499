/**
 * RSA keys for CGAs: RFC 3972 section 3 puts the public key in the CGA Parameters as a
 * DER-encoded SubjectPublicKeyInfo; RFC 5533's CGA Signature is RSASSA-PKCS1-v1_5.
 * node:crypto only.
 */
import * as crypto from 'node:crypto';

export type KeyInput = string | Buffer | crypto.KeyObject;

export type KeyLoad = { ok: true; key: crypto.KeyObject } | { ok: false; message: string };

/** Generates an RSA key pair (public exponent 65537). */
export function generateRsaKey(modulusLength: number): crypto.KeyObject {
  return crypto.generateKeyPairSync('rsa', { modulusLength, publicExponent: 0x10001 }).privateKey;
}

/** Loads an RSA private key (PEM, PKCS#1 or PKCS#8, unencrypted); never throws. */
export function loadRsaPrivateKey(input: KeyInput): KeyLoad {
  let key: crypto.KeyObject;
  try {
    key = typeof input === 'string' || Buffer.isBuffer(input) ? crypto.createPrivateKey(input) : input;
  } catch (e) {
    return { ok: false, message: `not a usable PEM private key (${e instanceof Error ? e.message : String(e)})` };
  }
  if (key.type !== 'private') return { ok: false, message: 'not a private key' };
  if (key.asymmetricKeyType !== 'rsa') return { ok: false, message: `not an RSA key (${key.asymmetricKeyType ?? 'unknown type'})` };
  return { ok: true, key };
}

/** Loads an RSA public key from DER SubjectPublicKeyInfo; never throws. */
export function loadRsaPublicKey(spkiDer: Uint8Array): KeyLoad {
  let key: crypto.KeyObject;
  try {
    key = crypto.createPublicKey({ key: Buffer.from(spkiDer), format: 'der', type: 'spki' });
  } catch (e) {
    return { ok: false, message: `not a DER SubjectPublicKeyInfo (${e instanceof Error ? e.message : String(e)})` };
  }
  if (key.asymmetricKeyType !== 'rsa') return { ok: false, message: `not an RSA key (${key.asymmetricKeyType ?? 'unknown type'})` };
  return { ok: true, key };
}

/** The DER SubjectPublicKeyInfo of a private or public key (the CGA Public Key field). */
export function publicKeyDer(key: crypto.KeyObject): Buffer {
  const pub = key.type === 'private' ? crypto.createPublicKey(key) : key;
  return pub.export({ format: 'der', type: 'spki' });
}

/** PKCS#8 PEM of a private key. */
export function privateKeyPem(key: crypto.KeyObject): string {
  return key.export({ format: 'pem', type: 'pkcs8' }).toString();
}

/** PEM ("PUBLIC KEY") of a DER SubjectPublicKeyInfo. */
export function publicKeyPem(spkiDer: Uint8Array): string {
  const b64 = Buffer.from(spkiDer).toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN PUBLIC KEY-----\n${b64}\n-----END PUBLIC KEY-----\n`;
}

/** RSA modulus length in bits, or undefined for other keys. */
export function rsaModulusBits(key: crypto.KeyObject): number | undefined {
  return key.asymmetricKeyType === 'rsa' ? key.asymmetricKeyDetails?.modulusLength : undefined;
}
