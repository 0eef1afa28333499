/**
 * npm run bench — runs every bench/*.bench.ts in name order (or those named on the
 * command line: `npm run bench -- wire`), each printing its own groups.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

interface BenchModule { title: string; run(): Promise<void> | void }

async function main(): Promise<void> {
  const filters = process.argv.slice(2);
  if (filters.includes('--help') || filters.includes('-h')) {
    console.log('usage: npm run bench [-- NAME ...]   run bench/NAME*.bench.ts (all when none given)');
    console.log('data-plane and reapd need root and start the daemons on a testbed (minutes); see bench/README.md');
    return;
  }
  const files = readdirSync(__dirname).filter((f) => f.endsWith('.bench.ts')).sort()
    .filter((f) => filters.length === 0 || filters.some((x) => f.startsWith(x)));
  console.log(`# shim6 benchmarks — node ${process.version}, ${new Date().toISOString()}`);
  for (const f of files) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require(join(__dirname, f)) as BenchModule;
    console.log(`\n# ${mod.title} (${f})`);
    await mod.run();
  }
}

main().catch((e: unknown) => { console.error(e); process.exit(1); });
