/**
 * The README's first command, as CI runs it: scripts/demo must exit 0 (the stream survived
 * the cut and came back), print the failover time, and leave nothing behind.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { run } from '../scripts/lib/testbed';

const ROOT = join(__dirname, '..');

describe('scripts/demo (the main job)', function () {
  this.timeout(600_000);

  it('exits 0, prints the failover time, and leaves no testbed behind', async () => {
    const { code, out } = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(join(ROOT, 'scripts', 'demo'), [], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
      child.on('exit', (c) => resolve({ code: c, out }));
    });
    assert.equal(code, 0, out);
    assert.match(out, /failover time \(cut → first counter delivered after it\): \d+\.\d\d s/);
    assert.match(out, /A moved the context to 2001:db8:a2:/);
    assert.match(out, /A is back on its ULID pair/);
    assert.match(out, /demo: OK/);
    const id = /testbed ([a-z0-9]+)/.exec(out)?.[1];
    assert.ok(id, 'the demo names its testbed');
    const after = (await run([join(ROOT, 'scripts', 'testbed'), 'list'])).stdout;
    assert.ok(!after.split('\n').some((l) => l.split('\t')[0] === id), `the demo destroyed its testbed ${id}`);
  });
});
