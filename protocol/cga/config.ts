/**
 * The configuration fragment `shim6-cga generate` writes (shim6-cga.json) and shim6d
 * reads: which ULID and locators the host owns, how they are secured, and where the CGA
 * Parameters and the private key are. File names in it are relative to the JSON file.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { canonicalIPv6, ipv6 } from '../address';
import { verifyHbaLocator } from './hba';
import { findMultiPrefixExtension } from './multi-prefix';
import { decodeCgaParameters, type CgaParameters } from './params';
import { verifyCga } from './verify';

export const CGA_CONFIG_FORMAT = 'shim6-cga/1';
export const CGA_CONFIG_FILE = 'shim6-cga.json';
export const CGA_PARAMS_FILE = 'cga-params.bin';
export const CGA_PARAMS_HEX_FILE = 'cga-params.hex';
export const KEY_FILE = 'key.pem';

export interface CgaConfig {
  format: typeof CGA_CONFIG_FORMAT;
  /** "cga": one CGA (ULID = the only locator); "hba": an HBA set (RFC 5535). */
  method: 'cga' | 'hba';
  sec: number;
  /** The address to use as ULID: the CGA, or the HBA of the first prefix. */
  ulid: string;
  /** The addresses, one per prefix, in the prefixes' order (canonical text). */
  locators: string[];
  /** The /64 prefixes ("2001:db8:1::/64"). */
  prefixes: string[];
  /** A real public key is in the parameters (always for "cga"; the P flag for "hba"). */
  cgaCompatible: boolean;
  /** The CGA Parameters data structure, binary. */
  cgaParamsFile: string;
  /** The same, as hex text. */
  cgaParamsHexFile: string;
  /** The RSA private key (PEM), or null for an HBA-only set. */
  keyFile: string | null;
}

export type CgaConfigParse = { ok: true; config: CgaConfig } | { ok: false; message: string };

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

/** Checks the shape of a parsed JSON config and makes its file names absolute (against baseDir). */
export function parseCgaConfig(json: unknown, baseDir: string): CgaConfigParse {
  if (typeof json !== 'object' || json === null) return { ok: false, message: 'config is not a JSON object' };
  const c = json as Record<string, unknown>;
  if (c.format !== CGA_CONFIG_FORMAT) return { ok: false, message: `config format is not '${CGA_CONFIG_FORMAT}'` };
  if (c.method !== 'cga' && c.method !== 'hba') return { ok: false, message: "config method must be 'cga' or 'hba'" };
  if (typeof c.sec !== 'number' || !Number.isInteger(c.sec) || c.sec < 0 || c.sec > 7) return { ok: false, message: 'config sec must be 0..7' };
  if (typeof c.ulid !== 'string' || !canonicalIPv6(c.ulid)) return { ok: false, message: 'config ulid is not an IPv6 address' };
  if (!isStringArray(c.locators) || c.locators.length === 0 || !c.locators.every((l) => canonicalIPv6(l))) {
    return { ok: false, message: 'config locators must be a non-empty list of IPv6 addresses' };
  }
  const locators = c.locators.map((l) => canonicalIPv6(l) as string);
  if (!locators.includes(canonicalIPv6(c.ulid) as string)) return { ok: false, message: 'config ulid is not one of the locators' };
  if (!isStringArray(c.prefixes) || c.prefixes.length !== c.locators.length) return { ok: false, message: 'config prefixes must match the locators' };
  if (typeof c.cgaCompatible !== 'boolean') return { ok: false, message: 'config cgaCompatible must be a boolean' };
  if (typeof c.cgaParamsFile !== 'string' || typeof c.cgaParamsHexFile !== 'string') return { ok: false, message: 'config cgaParamsFile missing' };
  if (c.keyFile !== null && typeof c.keyFile !== 'string') return { ok: false, message: 'config keyFile must be a file name or null' };
  const abs = (f: string): string => (isAbsolute(f) ? f : resolve(baseDir, f));
  return {
    ok: true,
    config: {
      format: CGA_CONFIG_FORMAT,
      method: c.method,
      sec: c.sec,
      ulid: c.ulid,
      locators: c.locators,
      prefixes: c.prefixes,
      cgaCompatible: c.cgaCompatible,
      cgaParamsFile: abs(c.cgaParamsFile),
      cgaParamsHexFile: abs(c.cgaParamsHexFile),
      keyFile: c.keyFile === null ? null : abs(c.keyFile),
    },
  };
}

export type CgaConfigLoad =
  | { ok: true; config: CgaConfig; params: CgaParameters; encoded: Buffer }
  | { ok: false; message: string };

/**
 * Reads a shim6-cga.json, its CGA Parameters file, and checks that every locator
 * verifies against them (as a CGA or as a member of the HBA set). Never throws.
 */
export function readCgaConfig(file: string): CgaConfigLoad {
  let json: unknown;
  let encoded: Buffer;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    return { ok: false, message: `${file}: ${e instanceof Error ? e.message : String(e)}` };
  }
  const parsed = parseCgaConfig(json, dirname(resolve(file)));
  if (!parsed.ok) return { ok: false, message: `${file}: ${parsed.message}` };
  const { config } = parsed;
  try {
    encoded = readFileSync(config.cgaParamsFile);
  } catch (e) {
    return { ok: false, message: `${config.cgaParamsFile}: ${e instanceof Error ? e.message : String(e)}` };
  }
  const d = decodeCgaParameters(encoded);
  if (!d.ok) return { ok: false, message: `${config.cgaParamsFile}: ${d.error.message} (at octet ${d.error.offset})` };
  const isHba = findMultiPrefixExtension(d.value) !== undefined;
  if (isHba !== (config.method === 'hba')) return { ok: false, message: `${file}: method '${config.method}' does not match the CGA Parameters` };
  for (const locator of config.locators) {
    const v = isHba ? verifyHbaLocator(ipv6(locator), encoded) : verifyCga(ipv6(locator), encoded);
    if (!v.ok) return { ok: false, message: `${file}: locator ${locator} does not verify (step ${v.step}: ${v.message})` };
    if (v.sec !== config.sec) return { ok: false, message: `${file}: locator ${locator} has Sec ${v.sec}, the config says ${config.sec}` };
  }
  return { ok: true, config, params: d.value, encoded };
}
