/**
 * File-system helpers of the daemons' plumbing.
 */
import { chmodSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

/** mkdir -p with mode `mode` on every directory it creates (whatever the umask). */
export function makeParentDir(path: string, mode: number): void {
  const dir = dirname(path);
  const first = mkdirSync(dir, { recursive: true, mode });
  if (first === undefined) return;
  for (let d = dir; ; d = dirname(d)) {
    chmodSync(d, mode);
    if (d === first || d === dirname(d)) break;
  }
}
