/**
 * CGA/HBA costs: generation at Sec 0 and Sec 1 (mean over several runs; the Sec 1 search
 * length is random, 2^16 Hash2 computations on average), and verifications per second.
 * Every group's baseline is a bare SHA-1 of the same CGA Parameters (2048-bit RSA key).
 */
import * as crypto from 'node:crypto';
import { opsPerSecond, report, type Measurement } from './harness';
import {
  generateCga,
  generateCgaAsync,
  generateHbaSet,
  generateRsaKey,
  publicKeyDer,
  sha1,
  signLocatorList,
  verifyCga,
  verifyHbaLocator,
  verifyLocatorListSignature,
  verifySignedLocatorList,
} from '../protocol/cga';

export const title = 'CGA (RFC 3972), HBA (RFC 5535) and CGA Signature (RFC 5533)';

const PREFIXES = ['20010db800010000', '20010db800020000', '20010db800030000'].map((h) => Buffer.from(h, 'hex'));

/** Mean seconds of `fn` over `runs` runs. */
async function meanSeconds(runs: number, fn: () => unknown): Promise<number> {
  let total = 0n;
  for (let i = 0; i < runs; i++) {
    const t = process.hrtime.bigint();
    await fn();
    total += process.hrtime.bigint() - t;
  }
  return Number(total) / 1e9 / runs;
}

interface TimedRow { name: string; seconds: number; note?: string }

function formatTime(seconds: number): string {
  if (seconds >= 1) return `${seconds.toFixed(2)} s`;
  if (seconds >= 1e-3) return `${(seconds * 1e3).toFixed(2)} ms`;
  return `${(seconds * 1e6).toFixed(2)} µs`;
}

/**
 * Like harness.report, for operations too slow to print as k/s: mean time per
 * operation and its ratio to the baseline's time per operation.
 */
function reportTimes(heading: string, baseline: TimedRow, rows: TimedRow[]): void {
  console.log(`\n## ${heading}`);
  for (const r of [baseline, ...rows]) {
    const ratio = r.seconds / baseline.seconds;
    const times = ratio >= 100 ? Math.round(ratio).toLocaleString('en-US') : ratio.toFixed(2);
    console.log(`${r.name.padEnd(58)} ${formatTime(r.seconds).padStart(12)}   x${times} the baseline time${r.note ? `   (${r.note})` : ''}`);
  }
}

export async function run(): Promise<void> {
  const key = generateRsaKey(2048);
  const publicKey = publicKeyDer(key);
  const subnetPrefix = PREFIXES[0] as Buffer;
  const cga = generateCga({ subnetPrefix, publicKey, sec: 1 });
  const hba = generateHbaSet({ prefixes: PREFIXES, sec: 1, publicKey });
  const baseline = (): Measurement => ({ name: `baseline: SHA-1 of the CGA Parameters (${cga.encoded.length} octets)`, opsPerSecond: opsPerSecond(() => sha1(cga.encoded)) });

  // Generation.
  const sha1PerSecond = opsPerSecond(() => sha1(cga.encoded));
  const runs1 = 40;
  let attempts = 0;
  const sec1 = await meanSeconds(runs1, () => { attempts += generateCga({ subnetPrefix, publicKey, sec: 1 }).attempts; });
  const hbaRuns = 20;
  const hba1 = await meanSeconds(hbaRuns, () => generateHbaSet({ prefixes: PREFIXES, sec: 1, publicKey }));
  const asyncRuns = 10;
  const async1 = await meanSeconds(asyncRuns, () => generateCgaAsync({ subnetPrefix, publicKey, sec: 1 }));
  const meanTries = attempts / runs1;
  reportTimes('generation, mean time per CGA or set (2048-bit RSA key given; key generation not included)', {
    name: `baseline: SHA-1 of the CGA Parameters (${cga.encoded.length} octets)`,
    seconds: 1 / sha1PerSecond,
  }, [
    { name: 'CGA Sec 0', seconds: 1 / opsPerSecond(() => generateCga({ subnetPrefix, publicKey, sec: 0 }), 1000, 200) },
    {
      name: 'CGA Sec 1, synchronous',
      seconds: sec1,
      note: `${runs1} runs, ${Math.round(meanTries).toLocaleString('en-US')} Hash2 tries on average (2^16 expected), ${(meanTries / sec1 / 1e3).toFixed(0)} k tries/s`,
    },
    { name: 'CGA Sec 1, worker thread (generateCgaAsync)', seconds: async1, note: `${asyncRuns} runs, includes starting the worker` },
    { name: 'HBA/CGA-compatible set of 3 prefixes, Sec 1', seconds: hba1, note: `${hbaRuns} runs` },
  ]);

  // Verification.
  const signedData = crypto.randomBytes(60);
  const signature = signLocatorList(key, signedData);
  const member = hba.addresses[2] as Buffer;
  report('verification', [
    baseline(),
    { name: 'verifyCga (decode + RFC 3972 section 5, Sec 1)', opsPerSecond: opsPerSecond(() => verifyCga(cga.address, cga.encoded)) },
    { name: 'verifyHbaLocator (HBA set membership, Sec 1)', opsPerSecond: opsPerSecond(() => verifyHbaLocator(member, hba.encoded)) },
    { name: 'verifyLocatorListSignature (RSA-2048, SHA-1)', opsPerSecond: opsPerSecond(() => verifyLocatorListSignature(publicKey, signedData, signature), 1000, 100) },
    { name: 'verifySignedLocatorList (ULID CGA + signature)', opsPerSecond: opsPerSecond(() => verifySignedLocatorList(cga.address, cga.encoded, signedData, signature), 1000, 100) },
    { name: 'signLocatorList (RSA-2048, SHA-1)', opsPerSecond: opsPerSecond(() => signLocatorList(key, signedData), 1000, 20) },
  ]);
}
