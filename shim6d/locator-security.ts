/**
 * Locator security for shim6d (RFC 5533 sections 5.15 and 7.2, RFC 5535, RFC 3972): the
 * locator list options we send, and the check of the locator lists a peer sends (I2, R2,
 * I2bis, Update Request). Pure apart from node:crypto; `LocalIdentity.load` is the only
 * function that reads files (synchronously, at start-up). Nothing is cached here: the
 * caller keeps, per context, the peer's verified locators and its CGA Parameter Data
 * Structure (sent once per context, then remembered).
 *
 * Exported API
 *
 *   class LocalIdentity                 what this host can prove about its own addresses
 *     LocalIdentity.load(path)          from `shim6-cga generate --out DIR`: DIR, or the
 *                                       shim6-cga.json in it (throws LocalIdentityError)
 *     LocalIdentity.fromGenerated(g, privateKey?)
 *                                       from generateCga / generateHbaSet (and the key)
 *     .kind ('hba' | 'cga'), .sec, .ulid (the preferred ULID), .hbaSet, .parameters, .canSign
 *     .securedUlids()                   the addresses a peer can verify as our ULID
 *     .provableLocators(locators)
 *     .verificationMethodFor(locator)   VerificationMethod.HBA / .CGA, or throws
 *     .locatorOptions(locators, generation, { includeParameters })
 *                                       Locator List (+ CGA Parameter Data Structure when
 *                                       asked, + CGA Signature when a locator is CGA)
 *   class LocalIdentityError            code: 'unprovable-locator' | 'bad-locator' |
 *                                       'bad-identity' | 'no-identity'; `locator` when one
 *   verifyPeerLocators({ peerUlid, locatorList, parameters?, signature?, options? })
 *                                       → LocatorVerificationResult; never throws
 *   verifyUpdate                        the same function, for Update Requests
 *   isNewerGeneration(received, current)
 *                                       RFC 1982 serial-number comparison of 32-bit
 *                                       Locator List Generations (replay protection itself
 *                                       belongs to the context state machine)
 *   class HostLocatorSecurity           all our identities behind the three calls the
 *                                       context machine makes (securableLocators,
 *                                       localLocatorOptions, verifyPeerLocators)
 *
 * Verification rules (peer side), first failure wins:
 *   1. every entry is an IPv6 address ('bad-locator') with method 1 (HBA) or 2 (CGA)
 *      ('unknown-method'), checked before any crypto;
 *   2. CGA Parameter Data Structure present ('no-parameters') and decodable ('bad-parameters');
 *   3. the peer ULID is bound to those parameters: a member of their HBA set when they carry
 *      a Multi-Prefix extension, else their CGA ('ulid-not-secured'). Without this anyone
 *      could present their own parameters;
 *   4. every HBA-marked locator other than the ULID is in that HBA set ('hba-not-in-set');
 *   5. if a locator other than the ULID is CGA-marked: the parameters carry a real public
 *      key, i.e. a plain CGA or an HBA/CGA-compatible set with the P flag ('ulid-not-cga'),
 *      a CGA Signature is present ('cga-signature-missing') and verifies, with that key,
 *      over the generation and the CGA-marked locators of the list ('cga-signature-invalid').
 *   A locator equal to the ULID needs no proof beyond step 3 (whatever its method), so a
 *   CGA Signature is only required for CGA-marked locators other than the ULID.
 *
 * HBA/CGA-compatible sets: the ULID may be any member of the set, not only the CGA of the
 * parameters as generated (the first prefix's address). The ULID check of
 * verifySignedLocatorList is made with the ULID's prefix in the Subnet Prefix field, which
 * is exactly the HBA check of step 3; the signature is then checked with the set's key.
 */
import type { KeyObject } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { formatIPv6, parseIPv6 } from '../protocol/address';
import { VerificationMethod } from '../protocol/constants';
import type { LocatorEntry, LocatorListOption, Shim6Option } from '../protocol/options';
import { CGA_CONFIG_FILE, readCgaConfig } from '../protocol/cga/config';
import type { GeneratedCga } from '../protocol/cga/generate';
import { verifyHbaLocator, type GeneratedHbaSet } from '../protocol/cga/hba';
import { loadRsaPrivateKey, publicKeyDer, type KeyInput } from '../protocol/cga/keys';
import { findMultiPrefixExtension } from '../protocol/cga/multi-prefix';
import { decodeCgaParameters, type CgaParameters } from '../protocol/cga/params';
import { locatorListSignedData, signLocatorList, verifySignedLocatorList, type SignatureVerifyOptions } from '../protocol/cga/signature';
import { verifyCga, type CgaVerifyOptions } from '../protocol/cga/verify';

/** RFC 5533 section 5.15.2: a Locator List holds at most 255 locators (8-bit Num Locators). */
const MAX_LOCATORS = 255;

// ---------------------------------------------------------------------------------------
// Local side
// ---------------------------------------------------------------------------------------

export type LocalIdentityErrorCode =
  /** A locator we were asked to announce is outside our HBA set and we have no key to sign it. */
  | 'unprovable-locator'
  /** A locator (or ULID) is not an IPv6 address. */
  | 'bad-locator'
  /** The identity itself is unusable: files, parameters, addresses or key do not agree. */
  | 'bad-identity'
  /** HostLocatorSecurity: no identity secures this ULID. */
  | 'no-identity';

/** A configuration or programming error on the local side (never caused by a peer). */
export class LocalIdentityError extends Error {
  override readonly name = 'LocalIdentityError';
  constructor(
    readonly code: LocalIdentityErrorCode,
    message: string,
    /** The locator concerned, canonical text when it parsed. */
    readonly locator?: string,
  ) {
    super(message);
  }
}

/** The octets and canonical text of an IPv6 address; undefined for anything else, a scoped address (`%zone`) included. */
function parseAddress(text: string): { octets: Buffer; text: string } | undefined {
  const octets = text.includes('%') ? undefined : parseIPv6(text);
  return octets ? { octets, text: formatIPv6(octets) } : undefined;
}

/** parseAddress(), or LocalIdentityError('bad-locator') naming `what`. */
function canonical(text: string, what: string): { octets: Buffer; text: string } {
  const a = parseAddress(text);
  if (!a) throw new LocalIdentityError('bad-locator', `${what} '${text}' is not an IPv6 address`, text);
  return a;
}

/**
 * What this host can prove about its addresses: an HBA set (RFC 5535; each member can be
 * the ULID, and the set's members need no signature) or a CGA (RFC 3972; with the private
 * key, which also signs locators outside any set). An HBA/CGA-compatible set with its key
 * can do both.
 */
export class LocalIdentity {
  /** 'hba': the parameters carry a Multi-Prefix extension; 'cga': a plain CGA. */
  readonly kind: 'hba' | 'cga';
  readonly sec: number;
  /** The preferred ULID: the CGA, or the HBA of the first prefix (the config's `ulid`). */
  readonly ulid: string;
  /** The HBA set, canonical text, in the prefixes' order; empty for a CGA. */
  readonly hbaSet: readonly string[];
  private readonly encoded: Buffer;
  private readonly addresses: readonly string[];
  private readonly hbaMembers: ReadonlySet<string>;
  private readonly privateKey: KeyObject | undefined;

  private constructor(fields: {
    kind: 'hba' | 'cga';
    sec: number;
    ulid: string;
    addresses: string[];
    encoded: Buffer;
    privateKey: KeyObject | undefined;
  }) {
    this.kind = fields.kind;
    this.sec = fields.sec;
    this.ulid = fields.ulid;
    this.addresses = Object.freeze([...fields.addresses]);
    this.hbaSet = fields.kind === 'hba' ? this.addresses : Object.freeze([]);
    this.hbaMembers = new Set(this.hbaSet);
    this.encoded = fields.encoded;
    this.privateKey = fields.privateKey;
  }

  /**
   * Checks that the addresses verify against the parameters and the key (if any) is the
   * one whose public key they carry. Throws LocalIdentityError('bad-identity').
   */
  private static create(encoded: Buffer, addressTexts: readonly string[], preferredUlid: string | undefined, keyInput: KeyInput | undefined, source: string): LocalIdentity {
    const bad = (why: string): LocalIdentityError => new LocalIdentityError('bad-identity', `${source}: ${why}`);
    const d = decodeCgaParameters(encoded);
    if (!d.ok) throw bad(`CGA Parameters: ${d.error.message} (${d.error.code} at octet ${d.error.offset})`);
    const params: CgaParameters = d.value;
    const mp = findMultiPrefixExtension(params);
    const kind = mp ? 'hba' : 'cga';
    if (addressTexts.length === 0) throw bad('no addresses');
    if (kind === 'cga' && addressTexts.length !== 1) throw bad(`a CGA has one address, not ${addressTexts.length}`);
    const addresses: string[] = [];
    let sec: number | undefined;
    for (const a of addressTexts) {
      const { octets, text } = canonical(a, 'address');
      const v = kind === 'hba' ? verifyHbaLocator(octets, encoded) : verifyCga(octets, encoded);
      if (!v.ok) throw bad(`${text} does not verify against the CGA Parameters (step ${v.step}: ${v.message})`);
      if (sec !== undefined && v.sec !== sec) throw bad(`${text} has Sec ${v.sec}, the others ${sec}`);
      sec = v.sec;
      if (!addresses.includes(text)) addresses.push(text);
    }
    const ulid = preferredUlid === undefined ? (addresses[0] as string) : canonical(preferredUlid, 'ULID').text;
    if (!addresses.includes(ulid)) throw bad(`the ULID ${ulid} is not one of the addresses`);

    let privateKey: KeyObject | undefined;
    if (keyInput !== undefined) {
      const k = loadRsaPrivateKey(keyInput);
      if (!k.ok) throw bad(`private key: ${k.message}`);
      if (mp && !mp.publicKeyIncluded) throw bad('an HBA-only set (P flag clear) has no public key: a private key does not belong with it');
      if (!publicKeyDer(k.key).equals(params.publicKey)) throw bad('the private key is not the one whose public key is in the CGA Parameters');
      privateKey = k.key;
    } else if (kind === 'cga') {
      throw bad('a CGA needs its private key (to sign its locator list)');
    }
    return new LocalIdentity({ kind, sec: sec ?? 0, ulid, addresses, encoded: Buffer.from(encoded), privateKey });
  }

  /**
   * From what generateCga or generateHbaSet returned (and the private key: required for a
   * CGA, optional for an HBA/CGA-compatible set, refused for an HBA-only set).
   */
  static fromGenerated(generated: GeneratedCga | GeneratedHbaSet, privateKey?: KeyInput): LocalIdentity {
    const addresses = 'addresses' in generated ? generated.addresses : [generated.address];
    return LocalIdentity.create(generated.encoded, addresses.map((a) => formatIPv6(a)), undefined, privateKey, 'generated identity');
  }

  /**
   * From the output of `shim6-cga generate --out DIR`: `path` is DIR or its shim6-cga.json.
   * readCgaConfig checks the config and every locator; the key file, when the config names
   * one, must hold the private key of the parameters. Throws LocalIdentityError('bad-identity').
   */
  static load(path: string): LocalIdentity {
    let file = path;
    try {
      if (statSync(path).isDirectory()) file = join(path, CGA_CONFIG_FILE);
    } catch (e) {
      throw new LocalIdentityError('bad-identity', `${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
    const c = readCgaConfig(file);
    if (!c.ok) throw new LocalIdentityError('bad-identity', c.message);
    let key: Buffer | undefined;
    if (c.config.keyFile !== null) {
      try {
        key = readFileSync(c.config.keyFile);
      } catch (e) {
        throw new LocalIdentityError('bad-identity', `${c.config.keyFile}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      }
    }
    const identity = LocalIdentity.create(c.encoded, c.config.locators, c.config.ulid, key, file);
    if (identity.kind !== c.config.method) throw new LocalIdentityError('bad-identity', `${file}: method '${c.config.method}' does not match the CGA Parameters`);
    return identity;
  }

  /** The encoded CGA Parameter Data Structure (a copy): the contents of the option. */
  get parameters(): Buffer {
    return Buffer.from(this.encoded);
  }

  /** We have the private key: locators outside the HBA set can be announced, CGA-signed. */
  get canSign(): boolean {
    return this.privateKey !== undefined;
  }

  /**
   * The addresses a peer can verify as our ULID against our parameters: every member of
   * the HBA set, or the CGA. The preferred one (`ulid`) comes first.
   */
  securedUlids(): string[] {
    return [this.ulid, ...this.addresses.filter((a) => a !== this.ulid)];
  }

  /** The locators we can prove, canonical text, in the given order (duplicates dropped). */
  provableLocators(locators: readonly string[]): string[] {
    const out: string[] = [];
    for (const l of locators) {
      const text = parseAddress(l)?.text;
      if (text !== undefined && (this.hbaMembers.has(text) || this.canSign) && !out.includes(text)) out.push(text);
    }
    return out;
  }

  /** HBA for members of our HBA set, CGA for anything else when we can sign; else throws. */
  verificationMethodFor(locator: string): number {
    return this.methodOf(canonical(locator, 'locator').text);
  }

  /** verificationMethodFor a locator already in canonical text. */
  private methodOf(text: string): number {
    if (this.hbaMembers.has(text)) return VerificationMethod.HBA;
    if (this.canSign) return VerificationMethod.CGA;
    throw new LocalIdentityError(
      'unprovable-locator',
      `locator ${text} is not in our HBA set (${this.hbaSet.join(', ') || 'none'}) and we have no private key to sign it`,
      text,
    );
  }

  /**
   * The options that announce `locators` with `generation`: the Locator List option, the
   * CGA Parameter Data Structure option when `includeParameters` (once per context, or
   * again when the peer reports a verification failure), and the CGA Signature option when
   * a locator is CGA-verified. Throws LocalIdentityError for a locator we cannot prove or
   * that is not an address, RangeError for a generation outside 32 bits or over 255 locators.
   */
  locatorOptions(locators: readonly string[], generation: number, options: { includeParameters: boolean }): Shim6Option[] {
    if (!Number.isInteger(generation) || generation < 0 || generation > 0xffffffff) {
      throw new RangeError(`locator list generation ${generation} does not fit 32 bits`);
    }
    if (locators.length > MAX_LOCATORS) throw new RangeError(`a Locator List holds at most ${MAX_LOCATORS} locators: ${locators.length}`);
    const entries: LocatorEntry[] = locators.map((l) => {
      const { text } = canonical(l, 'locator');
      return { address: text, verificationMethod: this.methodOf(text) };
    });
    const out: Shim6Option[] = [{ kind: 'LocatorList', generation, locators: entries }];
    if (options.includeParameters) out.push({ kind: 'CgaParameterDataStructure', data: Buffer.from(this.encoded) });
    if (entries.some((e) => e.verificationMethod === VerificationMethod.CGA)) {
      const signedData = locatorListSignedData(generation, entries);
      // Every address was parsed above; the key exists (methodOf gave CGA).
      if (!signedData || !this.privateKey) throw new Error('internal: CGA locators without signed data or key');
      out.push({ kind: 'CgaSignature', signature: signLocatorList(this.privateKey, signedData) });
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------
// Peer side
// ---------------------------------------------------------------------------------------

export type LocatorRejectReason =
  | 'no-parameters'
  | 'bad-parameters'
  | 'ulid-not-secured'
  | 'hba-not-in-set'
  | 'ulid-not-cga'
  | 'cga-signature-missing'
  | 'cga-signature-invalid'
  | 'unknown-method'
  | 'bad-locator';

export interface VerifiedLocator {
  /** Canonical text. */
  address: string;
  /** The verification method the peer marked it with (and that was checked). */
  method: 'hba' | 'cga';
}

export type LocatorVerificationResult =
  | {
      ok: true;
      /** The list's locators in order, canonical text. */
      locators: VerifiedLocator[];
      /** The CGA Parameter Data Structure they were verified with: remember it for the context. */
      parameters: Buffer;
    }
  | {
      ok: false;
      reason: LocatorRejectReason;
      /** The locator that failed, when one did (canonical text when it parsed). */
      locator?: string;
      detail: string;
    };

/** Strictness knobs passed to protocol/cga (u/g bits, minimum RSA modulus). */
export type PeerVerifyOptions = CgaVerifyOptions & SignatureVerifyOptions;

export interface PeerLocatorInput {
  /** The peer's ULID of the context. */
  peerUlid: string;
  locatorList: LocatorListOption;
  /** CGA Parameter Data Structure octets: from this message, or remembered for the context. */
  parameters?: Buffer;
  /** CGA Signature option contents, from this message. */
  signature?: Buffer;
  options?: PeerVerifyOptions;
}

function reject(reason: LocatorRejectReason, detail: string, locator?: string): LocatorVerificationResult {
  return locator === undefined ? { ok: false, reason, detail } : { ok: false, reason, locator, detail };
}

function methodName(m: number): 'hba' | 'cga' | undefined {
  if (m === VerificationMethod.HBA) return 'hba';
  if (m === VerificationMethod.CGA) return 'cga';
  return undefined;
}

/**
 * Verifies a peer's Locator List against its ULID, its CGA Parameter Data Structure and
 * the CGA Signature (rules in the file header). Never throws.
 */
export function verifyPeerLocators(input: PeerLocatorInput): LocatorVerificationResult {
  const opts = input.options ?? {};
  const peerUlid = parseAddress(input.peerUlid);
  if (!peerUlid) return reject('ulid-not-secured', `the peer ULID '${input.peerUlid}' is not an IPv6 address`);
  const { octets: ulid, text: ulidText } = peerUlid;

  // 1. Shape: addresses and methods, before any crypto.
  const entries: Array<{ octets: Buffer; address: string; method: 'hba' | 'cga'; isUlid: boolean }> = [];
  for (const l of input.locatorList.locators) {
    const octets = parseIPv6(l.address);
    if (!octets) return reject('bad-locator', `locator '${l.address}' is not an IPv6 address`, l.address);
    const address = formatIPv6(octets);
    const method = methodName(l.verificationMethod);
    if (!method) {
      return reject('unknown-method', `locator ${address} has verification method ${l.verificationMethod} (known: 1 HBA, 2 CGA)`, address);
    }
    entries.push({ octets, address, method, isUlid: octets.equals(ulid) });
  }

  // 2. The parameters.
  if (!input.parameters || input.parameters.length === 0) {
    return reject('no-parameters', 'no CGA Parameter Data Structure in this message and none remembered for the context');
  }
  const params = Buffer.from(input.parameters);
  const decoded = decodeCgaParameters(params);
  if (!decoded.ok) {
    return reject('bad-parameters', `CGA Parameters: ${decoded.error.message} (${decoded.error.code} at octet ${decoded.error.offset})`);
  }
  const mp = findMultiPrefixExtension(decoded.value);

  // 3. The ULID is bound to them.
  const u = mp ? verifyHbaLocator(ulid, params, opts) : verifyCga(ulid, params, opts);
  if (!u.ok) {
    const what = mp ? 'a member of the HBA set of' : 'the CGA of';
    return reject('ulid-not-secured', `the peer ULID ${ulidText} is not ${what} these CGA Parameters (step ${u.step}: ${u.message})`);
  }

  // 4. HBA-marked locators are in the set.
  for (const e of entries) {
    if (e.isUlid || e.method !== 'hba') continue;
    const v = verifyHbaLocator(e.octets, params, opts);
    if (!v.ok) return reject('hba-not-in-set', `locator ${e.address} is not in the HBA set of ${ulidText} (step ${v.step}: ${v.message})`, e.address);
  }

  // 5. CGA-marked locators: the signature.
  const firstCga = entries.find((e) => e.method === 'cga' && !e.isUlid);
  if (firstCga) {
    if (mp && !mp.publicKeyIncluded) {
      return reject('ulid-not-cga', `locator ${firstCga.address} is marked CGA but ${ulidText} is an HBA-only set (P flag clear): there is no public key to check a signature with`, firstCga.address);
    }
    if (!input.signature || input.signature.length === 0) {
      return reject('cga-signature-missing', `locator ${firstCga.address} is marked CGA and there is no CGA Signature`, firstCga.address);
    }
    const signedData = locatorListSignedData(input.locatorList.generation, input.locatorList.locators);
    if (!signedData) return reject('bad-locator', 'a locator of the list is not an IPv6 address');
    const s = verifySignedLocatorList(ulid, params, signedData, input.signature, opts);
    if (!s.ok) {
      const reason = s.step === 'signature' ? 'cga-signature-invalid' : 'ulid-not-cga';
      const signed = entries.filter((e) => e.method === 'cga').map((e) => e.address).join(', ');
      return reject(reason, `CGA Signature over generation ${input.locatorList.generation} and the CGA-marked locators ${signed} (step ${s.step}: ${s.message})`, firstCga.address);
    }
  }

  return { ok: true, locators: entries.map((e) => ({ address: e.address, method: e.method })), parameters: params };
}

/**
 * An Update Request's locator list is checked exactly as the one of an I2, R2 or I2bis
 * (with the parameters remembered for the context when the Update carries none). Whether
 * its generation is newer is the state machine's check (isNewerGeneration).
 */
export const verifyUpdate = verifyPeerLocators;

const GENERATION_HALF = 0x80000000;

/**
 * RFC 1982 serial-number arithmetic on the 32-bit Locator List Generation: true when
 * `received` is after `current` (0 follows 0xffffffff). Equal, older, and the undefined
 * case of a distance of exactly 2^31 are all false. Throws RangeError on values that are
 * not 32-bit unsigned integers (decoded generations always are).
 */
export function isNewerGeneration(received: number, current: number): boolean {
  for (const [name, v] of [['received', received], ['current', current]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`${name} generation ${v} is not a 32-bit unsigned integer`);
  }
  const distance = (received - current + 0x100000000) % 0x100000000;
  return distance !== 0 && distance < GENERATION_HALF;
}

// ---------------------------------------------------------------------------------------
// The host: every identity, as the context machine asks
// ---------------------------------------------------------------------------------------

/**
 * All of this host's identities behind the calls the context state machine makes
 * (the `LocatorSecurity` interface of context-machine.ts, matched structurally).
 */
export class HostLocatorSecurity {
  private readonly byUlid = new Map<string, LocalIdentity>();

  constructor(
    identities: readonly LocalIdentity[],
    private readonly verifyOptions: PeerVerifyOptions = {},
  ) {
    for (const id of identities) {
      for (const u of id.securedUlids()) if (!this.byUlid.has(u)) this.byUlid.set(u, id);
    }
  }

  /** The identity whose parameters secure `localUlid`, if any. */
  identityFor(localUlid: string): LocalIdentity | undefined {
    const ulid = parseAddress(localUlid)?.text;
    return ulid === undefined ? undefined : this.byUlid.get(ulid);
  }

  /** Every ULID some identity secures. */
  securedUlids(): string[] {
    return [...this.byUlid.keys()];
  }

  /**
   * The locators of `locators` we can prove for `localUlid`, in order (canonical text);
   * empty when no identity secures that ULID.
   */
  securableLocators(localUlid: string, locators: readonly string[]): string[] {
    return this.identityFor(localUlid)?.provableLocators(locators) ?? [];
  }

  /**
   * LocalIdentity.locatorOptions of the identity securing `localUlid`. Without one, no
   * option at all when `locators` is only the ULID (RFC 5533: no Locator List means the
   * ULID is the only locator); anything more throws LocalIdentityError('no-identity').
   */
  localLocatorOptions(localUlid: string, locators: readonly string[], generation: number, includeParameters: boolean): Shim6Option[] {
    const id = this.identityFor(localUlid);
    if (id) return id.locatorOptions(locators, generation, { includeParameters });
    const { text: ulid } = canonical(localUlid, 'ULID');
    for (const l of locators) {
      const { text } = canonical(l, 'locator');
      if (text !== ulid) throw new LocalIdentityError('no-identity', `no HBA set or CGA secures the ULID ${ulid}: locator ${l} cannot be announced`, text);
    }
    return [];
  }

  verifyPeerLocators(peerUlid: string, locatorList: LocatorListOption, parameters: Buffer | undefined, signature: Buffer | undefined): LocatorVerificationResult {
    return verifyPeerLocators({ peerUlid, locatorList, parameters, signature, options: this.verifyOptions });
  }
}
