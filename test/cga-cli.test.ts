/**
 * The shim6-cga tool, run as installed: protocol/cga is compiled with tsc (rootDir ".")
 * into a temporary dist/, bin/shim6-cga is copied beside it, and the launcher is
 * spawned. Checks exit codes 0/1/2, the one-line errors, and the files generate writes.
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ipv6 } from '../protocol/address';
import { generateHbaSet, readCgaConfig, type CgaConfig } from '../protocol/cga';
import { HBA_VECTOR } from './support/hba-vector';
import { prefix64 } from './support/prefix';


const ROOT = resolve(__dirname, '..');

interface Run { status: number | null; stdout: string; stderr: string }

describe('shim6-cga (CLI)', function () {
  this.timeout(120000);
  let tmp: string;
  let launcher: string;

  function cli(...args: string[]): Run {
    const r = spawnSync(process.execPath, [launcher, ...args], { encoding: 'utf8', cwd: tmp });
    if (r.error) throw r.error;
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  /** Exit 2 with exactly one line on stderr, no stack trace, matching `pattern`. */
  function assertUsageError(r: Run, pattern: RegExp): void {
    assert.equal(r.status, 2, `exit status (stderr: ${r.stderr})`);
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, `one line: ${r.stderr}`);
    assert.match(lines[0] as string, /^shim6-cga: /);
    assert.match(lines[0] as string, pattern);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
    assert.equal(r.stdout, '');
  }

  function config(dir: string): CgaConfig {
    return JSON.parse(readFileSync(join(dir, 'shim6-cga.json'), 'utf8')) as CgaConfig;
  }

  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'shim6-cga-cli-'));
    const tsc = require.resolve('typescript/bin/tsc');
    const build = spawnSync(process.execPath, [
      tsc, '--outDir', join(tmp, 'dist'), '--rootDir', ROOT,
      '--target', 'ES2022', '--module', 'commonjs', '--moduleResolution', 'node10', '--strict',
      '--esModuleInterop', '--skipLibCheck', '--types', 'node',
      'protocol/cga/cli.ts', 'protocol/cga/worker-main.ts', 'protocol/cga/index.ts',
    ], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(build.status, 0, `tsc: ${build.stdout}${build.stderr}`);
    // The layout the launcher expects: bin/ next to dist/, dist/protocol/cga/cli.js.
    assert.ok(existsSync(join(tmp, 'dist', 'protocol', 'cga', 'cli.js')));
    mkdirSync(join(tmp, 'bin'));
    launcher = join(tmp, 'bin', 'shim6-cga');
    copyFileSync(join(ROOT, 'bin', 'shim6-cga'), launcher);
    const key = crypto.generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
    mkdirSync(join(tmp, 'keys'));
    writeFileSync(join(tmp, 'keys', 'rsa.pem'), key.export({ format: 'pem', type: 'pkcs1' }), { mode: 0o600 });
  });

  after(() => {
    rmSync(tmp, { recursive: true, force: true });
  });

  describe('--help', () => {
    it('the tool and each subcommand print usage on stdout and exit 0', () => {
      const main = cli('--help');
      assert.equal(main.status, 0);
      assert.match(main.stdout, /usage: shim6-cga <command>/);
      for (const [cmd, option] of [['generate', '--prefix'], ['address', '--sec'], ['verify', '--address']] as const) {
        const r = cli(cmd, '--help');
        assert.equal(r.status, 0, cmd);
        assert.match(r.stdout, new RegExp(`usage: shim6-cga ${cmd}`));
        assert.ok(r.stdout.includes(option), `${cmd} --help mentions ${option}`);
      }
    });

    it('no command prints the usage on stderr and exits 2; an unknown command is one line, exit 2', () => {
      const r = cli();
      assert.equal(r.status, 2);
      assert.match(r.stderr, /usage: shim6-cga/);
      assertUsageError(cli('frobnicate'), /unknown command 'frobnicate'/);
    });
  });

  describe('generate', () => {
    it('one prefix: a CGA, a new RSA key (0600), parameters in hex and binary, the config; progress on stderr', () => {
      const out = join(tmp, 'cga');
      const r = cli('generate', '--prefix', '2001:db8:1::/64', '--sec', '1', '--key-bits', '1024', '--out', out);
      assert.equal(r.status, 0, r.stderr);
      const lines = r.stdout.trim().split('\n');
      assert.equal(lines.length, 1);
      const address = ipv6(lines[0] as string);
      assert.equal(address.subarray(0, 8).toString('hex'), '20010db800010000');
      assert.match(r.stderr, /Sec 1: searching for a modifier/);
      assert.match(r.stderr, /modifier found after/);
      assert.equal(statSync(join(out, 'key.pem')).mode & 0o777, 0o600);
      const key = crypto.createPrivateKey(readFileSync(join(out, 'key.pem')));
      assert.equal(key.asymmetricKeyDetails?.modulusLength, 1024);
      const bin = readFileSync(join(out, 'cga-params.bin'));
      assert.equal(readFileSync(join(out, 'cga-params.hex'), 'utf8').trim(), bin.toString('hex'));
      const c = config(out);
      assert.deepEqual(
        { ...c },
        {
          format: 'shim6-cga/1', method: 'cga', sec: 1, ulid: lines[0], locators: [lines[0]], prefixes: ['2001:db8:1::/64'],
          cgaCompatible: true, cgaParamsFile: 'cga-params.bin', cgaParamsHexFile: 'cga-params.hex', keyFile: 'key.pem',
        },
      );
      const loaded = readCgaConfig(join(out, 'shim6-cga.json'));
      assert.ok(loaded.ok, loaded.ok ? '' : loaded.message);
      assert.equal(loaded.config.keyFile, join(out, 'key.pem'));
    });

    it('several prefixes without a key: an HBA-only set, addresses in the prefixes order, no key file', () => {
      const out = join(tmp, 'hba');
      const prefixes = ['2001:db8:b::/64', '2001:db8:a::/64', '2001:db8:c::/64'];
      const r = cli('generate', ...prefixes.flatMap((p) => ['--prefix', p]), '--sec', '0', '--out', out);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr, '', 'Sec 0 reports nothing');
      const lines = r.stdout.trim().split('\n');
      assert.deepEqual(lines.map((l) => ipv6(l).subarray(0, 8).toString('hex')), ['20010db8000b0000', '20010db8000a0000', '20010db8000c0000']);
      assert.equal(existsSync(join(out, 'key.pem')), false);
      const c = config(out);
      assert.equal(c.method, 'hba');
      assert.equal(c.cgaCompatible, false);
      assert.equal(c.keyFile, null);
      assert.deepEqual(c.locators, lines);
      assert.equal(c.ulid, lines[0]);
      assert.ok(readCgaConfig(join(out, 'shim6-cga.json')).ok);
      for (const a of lines) {
        const v = cli('verify', '--address', a, '--params-file', join(out, 'cga-params.hex'));
        assert.equal(v.status, 0, v.stderr);
        assert.match(v.stdout, /HBA, Sec 0/);
      }
    });

    it('several prefixes with --key: an HBA/CGA-compatible set whose config points at that key', () => {
      const out = join(tmp, 'hba-cga');
      const keyFile = join(tmp, 'keys', 'rsa.pem');
      const r = cli('generate', '--prefix', '2001:db8:1::/64', '--prefix', '2001:db8:2::/64', '--sec', '1', '--key', keyFile, '--out', out);
      assert.equal(r.status, 0, r.stderr);
      const c = config(out);
      assert.equal(c.cgaCompatible, true);
      assert.equal(c.keyFile, '../keys/rsa.pem');
      assert.equal(existsSync(join(out, 'key.pem')), false);
      const loaded = readCgaConfig(join(out, 'shim6-cga.json'));
      assert.ok(loaded.ok);
      assert.equal(loaded.config.keyFile, keyFile);
    });

    it('refuses to overwrite existing output (before any work) unless --force', () => {
      const out = join(tmp, 'again');
      assert.equal(cli('generate', '--prefix', '2001:db8:1::/64', '--sec', '1', '--key-bits', '1024', '--out', out).status, 0);
      assertUsageError(cli('generate', '--prefix', '2001:db8:1::/64', '--sec', '0', '--out', out), /already exists \(use --force/);
      const r = cli('generate', '--prefix', '2001:db8:1::/64', '--sec', '0', '--key', join(out, 'key.pem'), '--out', out, '--force');
      assert.equal(r.status, 0, r.stderr);
      assert.equal(config(out).sec, 0);
    });

    describe('bad input: one line on stderr, exit 2', () => {
      const out = (): string => join(tmp, 'never');
      const cases: [string, () => string[], RegExp][] = [
        ['a /48 prefix', () => ['--prefix', '2001:db8::/48', '--out', out()], /is a \/48; CGAs and HBAs need a \/64/],
        ['a prefix without length', () => ['--prefix', '2001:db8::', '--out', out()], /has no length/],
        ['a prefix that is not IPv6', () => ['--prefix', '2001:zz8::/64', '--out', out()], /not an IPv6 prefix/],
        ['bits past /64', () => ['--prefix', '2001:db8::1/64', '--out', out()], /bits set after the first 64/],
        ['Sec 8', () => ['--prefix', '2001:db8::/64', '--sec', '8', '--out', out()], /Sec must be an integer 0\.\.7, got '8'/],
        ['Sec -1', () => ['--prefix', '2001:db8::/64', '--sec=-1', '--out', out()], /Sec must be an integer 0\.\.7/],
        ['Sec x', () => ['--prefix', '2001:db8::/64', '--sec', 'x', '--out', out()], /Sec must be an integer/],
        ['no --out', () => ['--prefix', '2001:db8::/64'], /--out is required/],
        ['no --prefix', () => ['--out', out()], /--prefix is required/],
        ['a prefix twice', () => ['--prefix', '2001:db8::/64', '--prefix', '2001:db8:0::/64', '--out', out()], /twice/],
        ['an unknown option', () => ['--prefix', '2001:db8::/64', '--colour', 'x', '--out', out()], /Unknown option '--colour'/],
        ['--key-bits 512', () => ['--prefix', '2001:db8::/64', '--key-bits', '512', '--out', out()], /--key-bits must be 1024 or 2048/],
        ['a missing key file', () => ['--prefix', '2001:db8::/64', '--key', join(tmp, 'nope.pem'), '--out', out()], /cannot read .*nope\.pem: ENOENT/],
        ['a key file that is not RSA', () => ['--prefix', '2001:db8::/64', '--key', join(tmp, 'ec.pem'), '--out', out()], /not an RSA key/],
        ['a key file that is not a key', () => ['--prefix', '2001:db8::/64', '--key', join(tmp, 'junk.pem'), '--out', out()], /not a usable PEM private key/],
      ];
      before(() => {
        const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
        writeFileSync(join(tmp, 'ec.pem'), ec.privateKey.export({ format: 'pem', type: 'pkcs8' }));
        writeFileSync(join(tmp, 'junk.pem'), 'hello\n');
      });
      for (const [name, args, pattern] of cases) {
        it(name, () => {
          assertUsageError(cli('generate', ...args()), pattern);
          assert.equal(existsSync(out()), false);
        });
      }
    });
  });

  describe('address and verify', () => {
    let hex: string;
    let address: string;
    let hbaHex: string;
    before(() => {
      const hbaDir = join(tmp, 'hba2');
      const h = cli('generate', '--prefix', '2001:db8:1::/64', '--prefix', '2001:db8:2::/64', '--sec', '0', '--out', hbaDir);
      assert.equal(h.status, 0, h.stderr);
      hbaHex = readFileSync(join(hbaDir, 'cga-params.hex'), 'utf8').trim();
      const dir = join(tmp, 'cga2');
      const r = cli('generate', '--prefix', '2001:db8:5::/64', '--sec', '1', '--key-bits', '1024', '--out', dir);
      assert.equal(r.status, 0, r.stderr);
      address = r.stdout.trim();
      hex = readFileSync(join(dir, 'cga-params.hex'), 'utf8').trim();
    });

    it('address prints the address the parameters give with that Sec', () => {
      const r = cli('address', '--params', hex, '--sec', '1');
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, `${address}\n`);
      const sec0 = cli('address', '--params', hex, '--sec', '0');
      assert.equal(ipv6(sec0.stdout.trim()).subarray(9).toString('hex'), ipv6(address).subarray(9).toString('hex'));
      const other = cli('address', '--params', hex, '--sec', '1', '--prefix', '2001:db8:6::/64');
      assert.equal(other.status, 0);
      assert.ok(other.stdout.startsWith('2001:db8:6:0:'));
    });

    it('verify exits 0 for the CGA', () => {
      const r = cli('verify', '--address', address, '--params', hex);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, `${address}: CGA, Sec 1\n`);
    });

    it('verify exits 1 and names the failing step', () => {
      const check = (addr: string, params: string, step: string): void => {
        const r = cli('verify', '--address', addr, '--params', params);
        assert.equal(r.status, 1, r.stderr);
        const lines = r.stderr.trimEnd().split('\n');
        assert.equal(lines.length, 1);
        assert.match(lines[0] as string, new RegExp(`^shim6-cga: .* does not verify: step ${step}: `));
        assert.equal(r.stdout, '');
      };
      const a = ipv6(address);
      const flipped = Buffer.from(a);
      flipped[15] = (flipped[15] as number) ^ 1;
      check(ipv6ToText(flipped), hex, 'hash1');
      check('2001:db8:7::1', hex, 'subnet-prefix');
      check(address, `${hex.slice(0, 48)}03${hex.slice(50)}`, 'collision-count');
      const sec7 = Buffer.from(a);
      sec7[8] = ((sec7[8] as number) & 0x1f) | 0xe0;
      check(ipv6ToText(sec7), hex, 'sec-hash2');
      const ug = Buffer.from(a);
      ug[8] = (ug[8] as number) | 0x01;
      assert.equal(cli('verify', '--address', ipv6ToText(ug), '--params', hex).status, 0);
      assert.equal(cli('verify', '--address', ipv6ToText(ug), '--params', hex, '--strict-ug').status, 1);
      check('2001:db8:ff::1', hbaHex, 'hba-set-membership');
    });

    it('the third-party HBA vector (LinShim6 / F. Dupont): address gives each of its addresses, verify accepts each', () => {
      const encoded = generateHbaSet({
        prefixes: HBA_VECTOR.set.map((s) => prefix64(s.prefix)),
        sec: HBA_VECTOR.sec,
        modifier: Buffer.from(HBA_VECTOR.modifierFinal, 'hex'),
        random: Buffer.from(HBA_VECTOR.pseudoKey, 'hex'),
      }).encoded.toString('hex');
      for (const s of HBA_VECTOR.set) {
        const a = cli('address', '--params', encoded, '--sec', '1', '--prefix', s.prefix);
        assert.equal(a.status, 0, a.stderr);
        assert.equal(a.stdout, `${s.address}\n`);
        const v = cli('verify', '--address', s.address, '--params', encoded);
        assert.equal(v.status, 0, v.stderr);
        assert.equal(v.stdout, `${s.address}: HBA, Sec 1\n`);
      }
    });

    describe('bad input: one line on stderr, exit 2', () => {
      const cases: [string, () => string[], RegExp][] = [
        ['wrong hex', () => ['verify', '--address', address, '--params', 'zz'], /--params: not a hex digit 'z'/],
        ['odd hex', () => ['verify', '--address', address, '--params', hex.slice(0, -1)], /odd number of hex digits/],
        ['truncated DER', () => ['verify', '--address', address, '--params', hex.slice(0, 120)], /bad CGA Parameters: .*der-truncated at octet 25/],
        ['too short', () => ['address', '--params', '0011', '--sec', '1'], /too-short/],
        ['not an address', () => ['verify', '--address', '2001:db8::g', '--params', hex], /not an IPv6 address/],
        ['no params', () => ['verify', '--address', address], /exactly one of --params/],
        ['both params', () => ['verify', '--address', address, '--params', hex, '--params-file', 'x'], /exactly one of --params/],
        ['a missing params file', () => ['verify', '--address', address, '--params-file', join(tmp, 'nope.bin')], /cannot read .*ENOENT/],
        ['Sec 9', () => ['address', '--params', hex, '--sec', '9'], /Sec must be an integer 0\.\.7, got '9'/],
        ['no Sec', () => ['address', '--params', hex], /--sec is required/],
        ['a bad --prefix', () => ['address', '--params', hex, '--sec', '1', '--prefix', '2001:db8::/56'], /need a \/64/],
      ];
      for (const [name, args, pattern] of cases) it(name, () => assertUsageError(cli(...args()), pattern));
    });
  });
});

function ipv6ToText(b: Buffer): string {
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push(b.readUInt16BE(i).toString(16));
  return words.join(':');
}
