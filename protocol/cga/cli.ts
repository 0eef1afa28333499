/**
 * shim6-cga: make and check CGAs (RFC 3972) and HBA sets (RFC 5535) for shim6d.
 * Run by bin/shim6-cga (built: dist/protocol/cga/cli.js) or `npx tsx protocol/cga/cli.ts`.
 *
 * Exit status: 0 success; 1 the address does not verify (verify) or a file could not
 * be written; 2 bad usage or unusable input. Errors are one line on stderr.
 */
import type { KeyObject } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { formatIPv6, parseIPv6 } from '../address';
import {
  CGA_CONFIG_FILE,
  CGA_CONFIG_FORMAT,
  CGA_PARAMS_FILE,
  CGA_PARAMS_HEX_FILE,
  KEY_FILE,
  type CgaConfig,
} from './config';
import { computeCgaAddress, generateCga } from './generate';
import { expectedAttempts, isValidSec } from './hash';
import { generateHbaSet, hbaAddress, verifyHbaLocator } from './hba';
import { parseHex } from './hex';
import { generateRsaKey, loadRsaPrivateKey, privateKeyPem, publicKeyDer } from './keys';
import type { ModifierSearchOptions, ModifierSearchProgress } from './modifier-search';
import { findMultiPrefixExtension } from './multi-prefix';
import { decodeCgaParameters, type CgaParameters } from './params';
import { formatPrefix64, parsePrefix64 } from './prefix';
import { verifyCga } from './verify';

const PROG = 'shim6-cga';

export interface CliIO {
  out: (line: string) => void;
  err: (line: string) => void;
}

/** A clear one-line failure with its exit status. */
class CliError extends Error {
  constructor(message: string, readonly status: 1 | 2 = 2) {
    super(message);
  }
}

const MAIN_HELP = `usage: ${PROG} <command> [options]

Secure Shim6 locator sets: CGAs (RFC 3972) and HBA sets (RFC 5535).

commands:
  generate   make a CGA or an HBA set, with its key, parameter and config files
  address    print the address that CGA Parameters give
  verify     check that an address is the CGA (or an HBA) of CGA Parameters

'${PROG} <command> --help' describes each command.
Exit status: 0 success, 1 does not verify / cannot write, 2 bad usage or input.`;

const GENERATE_HELP = `usage: ${PROG} generate --prefix P [--prefix P ...] [--sec N] [--key FILE]
                 [--cga-compatible] [--key-bits N] [--force] --out DIR

One prefix makes a CGA (an RSA key is generated unless --key is given). Several
prefixes make an HBA set: HBA-only without a key, HBA/CGA-compatible with --key
or --cga-compatible. Prints the addresses, one per line, in the prefixes' order.

  --prefix P        a /64 prefix such as 2001:db8:1::/64 (repeat for an HBA set)
  --sec N           security parameter 0..7 (default 1); costs about 2^(16*N)
                    SHA-1 computations: instant for 1, hours for 2, impractical above
  --key FILE        the RSA private key (PEM) to use; the config refers to it
  --cga-compatible  several prefixes without --key: generate a key as well
  --key-bits N      size of a generated key, 1024 or 2048 (default 2048)
  --out DIR         writes ${KEY_FILE} (mode 0600, when generated), ${CGA_PARAMS_FILE},
                    ${CGA_PARAMS_HEX_FILE} and ${CGA_CONFIG_FILE} (for shim6d)
  --force           overwrite those files if DIR already has them

Sec > 0 reports the modifier search on stderr.`;

const ADDRESS_HELP = `usage: ${PROG} address (--params HEX | --params-file FILE) --sec N [--prefix P]

Prints the address that the CGA Parameters give with security parameter N (0..7):
the subnet prefix in the parameters followed by the interface identifier made from
Hash1. With --prefix, the address for that /64 instead (a member of an HBA set).

  --params HEX        the CGA Parameters data structure in hex
  --params-file FILE  the same, binary (or hex if FILE ends in .hex)
  --sec N             security parameter 0..7
  --prefix P          compute for this /64 prefix`;

const VERIFY_HELP = `usage: ${PROG} verify --address ADDR (--params HEX | --params-file FILE) [--strict-ug]

Checks ADDR against the CGA Parameters as RFC 3972 section 5 says (Sec is read from
ADDR). If the parameters carry a Multi-Prefix extension (RFC 5535), ADDR's prefix
must also be in it and ADDR is checked as a member of that HBA set.
Exit 0 when it verifies, 1 when not (the failing step on stderr), 2 on unusable input.

  --address ADDR      the IPv6 address
  --params HEX        the CGA Parameters data structure in hex
  --params-file FILE  the same, binary (or hex if FILE ends in .hex)
  --strict-ug         also fail when the address has the u or g bit set`;

type OptionSpec = Record<string, { type: 'string' | 'boolean'; multiple?: boolean }>;

function parse(args: string[], options: OptionSpec): Record<string, string | boolean | string[] | undefined> {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values as Record<string, string | boolean | string[] | undefined>;
  } catch (e) {
    const msg = e instanceof Error ? e.message.split('\n')[0] ?? e.message : String(e);
    throw new CliError(msg.replace(/\. To specify a positional argument.*$/, ''));
  }
}

function stringOpt(v: Record<string, string | boolean | string[] | undefined>, name: string): string | undefined {
  const x = v[name];
  return typeof x === 'string' ? x : undefined;
}

function requireOpt(v: Record<string, string | boolean | string[] | undefined>, name: string): string {
  const x = stringOpt(v, name);
  if (x === undefined) throw new CliError(`--${name} is required`);
  return x;
}

function parseSec(text: string): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!isValidSec(n)) throw new CliError(`Sec must be an integer 0..7, got '${text}'`);
  return n;
}

function parsePrefixOpt(text: string): Buffer {
  const p = parsePrefix64(text);
  if (!p.ok) throw new CliError(p.message);
  return p.prefix;
}

/** The CGA Parameters octets from --params or --params-file, decoded. */
function readParams(v: Record<string, string | boolean | string[] | undefined>): { encoded: Buffer; params: CgaParameters } {
  const hexText = stringOpt(v, 'params');
  const file = stringOpt(v, 'params-file');
  if ((hexText === undefined) === (file === undefined)) throw new CliError('give exactly one of --params HEX and --params-file FILE');
  let encoded: Buffer;
  if (hexText !== undefined) {
    const h = parseHex(hexText);
    if (!h.ok) throw new CliError(`--params: ${h.message}`);
    encoded = h.value;
  } else {
    const f = file as string;
    let raw: Buffer;
    try {
      raw = readFileSync(f);
    } catch (e) {
      throw new CliError(`cannot read ${f}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
    if (f.endsWith('.hex')) {
      const h = parseHex(raw.toString('utf8'));
      if (!h.ok) throw new CliError(`${f}: ${h.message}`);
      encoded = h.value;
    } else {
      encoded = raw;
    }
  }
  const d = decodeCgaParameters(encoded);
  if (!d.ok) throw new CliError(`bad CGA Parameters: ${d.error.message} (${d.error.code} at octet ${d.error.offset})`);
  return { encoded, params: d.value };
}

function formatDuration(seconds: number): string {
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 3 * 86400) return `${(seconds / 3600).toFixed(1)} h`;
  if (seconds < 730 * 86400) return `${Math.round(seconds / 86400)} days`;
  return `${(seconds / (365.25 * 86400)).toPrecision(3)} years`;
}

/** Progress of the modifier search on stderr: a first line, then at most one per second. */
function progressReporter(io: CliIO, sec: number): { search: ModifierSearchOptions; done: (attempts: number) => void } {
  const start = Date.now();
  let last = start;
  const expected = expectedAttempts(sec);
  io.err(`${PROG}: Sec ${sec}: searching for a modifier (about ${expected.toLocaleString('en-US')} SHA-1 computations expected)`);
  const onProgress = (p: ModifierSearchProgress): void => {
    const now = Date.now();
    if (now - last < 1000) return;
    last = now;
    const rate = p.attempts / ((now - start) / 1000);
    const pct = ((100 * p.attempts) / expected).toFixed(expected > 1e9 ? 4 : 1);
    io.err(`${PROG}: ${p.attempts.toLocaleString('en-US')} tried (${pct}% of the expected), `
      + `${Math.round(rate).toLocaleString('en-US')}/s, about ${formatDuration(expected / rate)} on average in all`);
  };
  const done = (attempts: number): void => {
    io.err(`${PROG}: modifier found after ${attempts.toLocaleString('en-US')} computations in ${((Date.now() - start) / 1000).toFixed(2)} s`);
  };
  return { search: { onProgress, progressEvery: 16384 }, done };
}

/** Fails (before any work is done) if DIR already has one of `names`, unless forced. */
function checkOutputsFree(outDir: string, names: string[], force: boolean): void {
  if (force) return;
  const existing = names.map((n) => join(outDir, n)).filter((p) => existsSync(p));
  if (existing.length > 0) throw new CliError(`${existing[0] as string} already exists (use --force to overwrite)`);
}

function writeOutputs(outDir: string, files: { name: string; data: string | Buffer; mode?: number }[]): void {
  try {
    mkdirSync(outDir, { recursive: true });
  } catch (e) {
    throw new CliError(`cannot create ${outDir}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, 1);
  }
  for (const f of files) {
    const path = join(outDir, f.name);
    try {
      writeFileSync(path, f.data, f.mode === undefined ? {} : { mode: f.mode });
      if (f.mode !== undefined) chmodSync(path, f.mode);
    } catch (e) {
      throw new CliError(`cannot write ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, 1);
    }
  }
}

function cmdGenerate(args: string[], io: CliIO): number {
  const v = parse(args, {
    prefix: { type: 'string', multiple: true },
    sec: { type: 'string' },
    key: { type: 'string' },
    'cga-compatible': { type: 'boolean' },
    'key-bits': { type: 'string' },
    out: { type: 'string' },
    force: { type: 'boolean' },
  });
  const prefixTexts = Array.isArray(v.prefix) ? v.prefix : [];
  if (prefixTexts.length === 0) throw new CliError('--prefix is required');
  const prefixes = prefixTexts.map(parsePrefixOpt);
  const seen = new Set(prefixes.map((p) => p.toString('hex')));
  if (seen.size !== prefixes.length) throw new CliError('the same prefix is given twice');
  const sec = parseSec(stringOpt(v, 'sec') ?? '1');
  const outDir = resolve(requireOpt(v, 'out'));
  const keyBitsText = stringOpt(v, 'key-bits') ?? '2048';
  if (keyBitsText !== '1024' && keyBitsText !== '2048') throw new CliError(`--key-bits must be 1024 or 2048, got '${keyBitsText}'`);
  const keyFileArg = stringOpt(v, 'key');
  const isHba = prefixes.length > 1;
  if (!isHba && v['cga-compatible'] === true) throw new CliError('--cga-compatible is for several prefixes (an HBA set)');

  const generatedKey = keyFileArg === undefined && (!isHba || v['cga-compatible'] === true);
  const outputNames = [CGA_PARAMS_FILE, CGA_PARAMS_HEX_FILE, CGA_CONFIG_FILE, ...(generatedKey ? [KEY_FILE] : [])];
  checkOutputsFree(outDir, outputNames, v.force === true);

  let privateKey: KeyObject | undefined;
  if (keyFileArg !== undefined) {
    let pem: Buffer;
    try {
      pem = readFileSync(keyFileArg);
    } catch (e) {
      throw new CliError(`cannot read ${keyFileArg}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
    const k = loadRsaPrivateKey(pem);
    if (!k.ok) throw new CliError(`${keyFileArg}: ${k.message}`);
    privateKey = k.key;
  } else if (generatedKey) {
    privateKey = generateRsaKey(Number(keyBitsText));
  }

  const progress = sec > 0 ? progressReporter(io, sec) : undefined;
  const search = progress?.search ?? {};
  let encoded: Buffer;
  let addresses: Buffer[];
  let attempts: number;
  if (isHba) {
    const set = generateHbaSet({ prefixes, sec, publicKey: privateKey ? publicKeyDer(privateKey) : undefined }, search);
    encoded = set.encoded;
    addresses = set.addresses;
    attempts = set.attempts;
  } else {
    const cga = generateCga({ subnetPrefix: prefixes[0] as Buffer, publicKey: publicKeyDer(privateKey as KeyObject), sec }, search);
    encoded = cga.encoded;
    addresses = [cga.address];
    attempts = cga.attempts;
  }
  progress?.done(attempts);

  let keyFile: string | null = null;
  if (generatedKey) keyFile = KEY_FILE;
  else if (keyFileArg !== undefined) keyFile = relative(outDir, resolve(keyFileArg)) || resolve(keyFileArg);
  const locators = addresses.map((a) => formatIPv6(a));
  const config: CgaConfig = {
    format: CGA_CONFIG_FORMAT,
    method: isHba ? 'hba' : 'cga',
    sec,
    ulid: locators[0] as string,
    locators,
    prefixes: prefixes.map(formatPrefix64),
    cgaCompatible: privateKey !== undefined,
    cgaParamsFile: CGA_PARAMS_FILE,
    cgaParamsHexFile: CGA_PARAMS_HEX_FILE,
    keyFile,
  };
  const files: { name: string; data: string | Buffer; mode?: number }[] = [
    { name: CGA_PARAMS_FILE, data: encoded },
    { name: CGA_PARAMS_HEX_FILE, data: `${encoded.toString('hex')}\n` },
  ];
  if (generatedKey && privateKey) files.push({ name: KEY_FILE, data: privateKeyPem(privateKey), mode: 0o600 });
  files.push({ name: CGA_CONFIG_FILE, data: `${JSON.stringify(config, null, 2)}\n` });
  writeOutputs(outDir, files);
  for (const l of locators) io.out(l);
  return 0;
}

function cmdAddress(args: string[], io: CliIO): number {
  const v = parse(args, {
    params: { type: 'string' },
    'params-file': { type: 'string' },
    sec: { type: 'string' },
    prefix: { type: 'string' },
  });
  const sec = parseSec(requireOpt(v, 'sec'));
  const prefixText = stringOpt(v, 'prefix');
  const prefix = prefixText === undefined ? undefined : parsePrefixOpt(prefixText);
  const { encoded, params } = readParams(v);
  const address = prefix ? hbaAddress(params, prefix, sec) : computeCgaAddress(encoded, sec);
  io.out(formatIPv6(address));
  return 0;
}

function cmdVerify(args: string[], io: CliIO): number {
  const v = parse(args, {
    address: { type: 'string' },
    params: { type: 'string' },
    'params-file': { type: 'string' },
    'strict-ug': { type: 'boolean' },
  });
  const addressText = requireOpt(v, 'address');
  const address = parseIPv6(addressText);
  if (!address || addressText.includes('%')) throw new CliError(`not an IPv6 address: '${addressText}'`);
  const { encoded, params } = readParams(v);
  const options = { rejectUgBits: v['strict-ug'] === true };
  const isHba = findMultiPrefixExtension(params) !== undefined;
  const result = isHba ? verifyHbaLocator(address, encoded, options) : verifyCga(address, encoded, options);
  if (!result.ok) {
    io.err(`${PROG}: ${formatIPv6(address)} does not verify: step ${result.step}: ${result.message}`);
    return 1;
  }
  io.out(`${formatIPv6(address)}: ${isHba ? 'HBA' : 'CGA'}, Sec ${result.sec}`);
  return 0;
}

const COMMANDS: Record<string, { help: string; run: (args: string[], io: CliIO) => number }> = {
  generate: { help: GENERATE_HELP, run: cmdGenerate },
  address: { help: ADDRESS_HELP, run: cmdAddress },
  verify: { help: VERIFY_HELP, run: cmdVerify },
};

/** Runs the CLI on `args` (without node and script); returns the exit status. */
export function main(args: string[], io: CliIO): number {
  const [command, ...rest] = args;
  if (command === undefined) {
    io.err(MAIN_HELP);
    return 2;
  }
  if (command === '--help' || command === '-h' || command === 'help') {
    io.out(MAIN_HELP);
    return 0;
  }
  const cmd = COMMANDS[command];
  if (!cmd) {
    io.err(`${PROG}: unknown command '${command}' (try '${PROG} --help')`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.out(cmd.help);
    return 0;
  }
  try {
    return cmd.run(rest, io);
  } catch (e) {
    if (e instanceof CliError) {
      io.err(`${PROG}: ${e.message}`);
      return e.status;
    }
    io.err(`${PROG}: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

process.exitCode = main(process.argv.slice(2), {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
});
