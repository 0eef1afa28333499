/**
 * A small benchmark harness: operations per second of a synchronous function, measured
 * after a warm-up, and printed beside a baseline measured in the same run.
 */

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
