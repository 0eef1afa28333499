/**
 * A small benchmark harness: operations per second of a synchronous function, measured
 * after a warm-up, and printed beside a baseline measured in the same run; and what the
 * testbed benchmarks read about a process (RSS, CPU time).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface Measurement {
  name: string;
  opsPerSecond: number;
  /** Ratio against the baseline of the same group (1 for the baseline itself). */
  ratio?: number;
  note?: string;
}

/** Runs fn in batches until at least `ms` milliseconds have passed; returns operations per second. */
export function opsPerSecond(fn: () => unknown, ms = 1000, batch = 1000): number {
  for (let i = 0; i < batch; i++) fn(); // warm-up
  let ops = 0;
  const start = process.hrtime.bigint();
  const limit = BigInt(ms) * 1_000_000n;
  let elapsed = 0n;
  while (elapsed < limit) {
    for (let i = 0; i < batch; i++) fn();
    ops += batch;
    elapsed = process.hrtime.bigint() - start;
  }
  return ops / (Number(elapsed) / 1e9);
}

/** Prints one group of measurements, the first being the baseline. */
export function report(title: string, rows: Measurement[]): void {
  const base = rows[0]?.opsPerSecond ?? 1;
  console.log(`\n## ${title}`);
  for (const r of rows) {
    r.ratio = r.opsPerSecond / base;
    const ops = r.opsPerSecond >= 1e6 ? `${(r.opsPerSecond / 1e6).toFixed(2)} M/s` : `${(r.opsPerSecond / 1e3).toFixed(1)} k/s`;
    console.log(`${r.name.padEnd(58)} ${ops.padStart(12)}   x${r.ratio.toFixed(3)} of baseline${r.note ? `   (${r.note})` : ''}`);
  }
}

/** A measured value that is not operations per second (throughput, packet rate, time, memory). */
export interface Value {
  name: string;
  /** In the unit's base: bit/s, packets/s, s, bytes or % (see formatValue). */
  value: number;
  unit: 'bit/s' | 'packets/s' | 's' | 'bytes' | '%';
  /** Printed instead of formatValue(value, unit). */
  text?: string;
  /** Ratio against the baseline of the same group (1 for the baseline itself). */
  ratio?: number;
  note?: string;
}

/** A value with a readable unit: Gbit/s or Mbit/s, k packets/s, s or ms, MiB, % with two decimals. */
export function formatValue(value: number, unit: Value['unit']): string {
  switch (unit) {
    case '%':
      return `${value.toFixed(2)} %`;
    case 'bit/s':
      return value >= 1e9 ? `${(value / 1e9).toFixed(2)} Gbit/s` : `${(value / 1e6).toFixed(1)} Mbit/s`;
    case 'packets/s':
      return `${(value / 1e3).toFixed(1)} k packets/s`;
    case 's':
      return value >= 1 ? `${value.toFixed(2)} s` : `${(value * 1e3).toFixed(0)} ms`;
    case 'bytes':
      return `${(value / 2 ** 20).toFixed(1)} MiB`;
  }
}

/**
 * Prints one group of values, the first being the baseline, as report() does; a row whose unit
 * is not the baseline's, or whose value or baseline is not finite, gets no ratio.
 */
export function reportValues(title: string, rows: Value[]): void {
  const base = rows[0];
  console.log(`\n## ${title}`);
  for (const r of rows) {
    const comparable = base !== undefined && r.unit === base.unit && base.value !== 0 && Number.isFinite(base.value) && Number.isFinite(r.value);
    if (comparable) r.ratio = r.value / base.value;
    const ratio = r.ratio === undefined ? ''.padEnd(18) : `x${r.ratio.toFixed(3)} of baseline`;
    const line = `${r.name.padEnd(58)} ${(r.text ?? formatValue(r.value, r.unit)).padStart(17)}   ${ratio}${r.note ? `   (${r.note})` : ''}`;
    console.log(line.trimEnd());
  }
}

export const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Resident set size of a process (VmRSS), in bytes; throws without a pid or a VmRSS line. */
export function rssBytes(pid: number | undefined): number {
  if (pid === undefined) throw new Error('no pid: the process was not started');
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  if (kb === undefined) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(kb) * 1024;
}

let clockTicks: number | undefined;

/** CPU time (user + system) a process has used, in seconds; NaN without a pid. */
export function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  clockTicks ??= Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
  return (Number(f[11]) + Number(f[12])) / clockTicks;
}
