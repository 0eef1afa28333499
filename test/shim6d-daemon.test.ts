/**
 * shim6d as a program: its command line, exit statuses, pid file, signals, and that bad
 * input (console commands, packets) is answered or counted while the daemon carries on.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sendRawShim6 } from '../scripts/lib/shim6-wire';
import { ensureBuilt, Shim6dProcess, testbedContexts } from '../scripts/lib/shim6d';
import { Testbed } from '../scripts/lib/testbed';
import { waitFor } from '../scripts/lib/wait';

const ROOT = join(__dirname, '..');
const BIN = join(ROOT, 'bin', 'shim6d');

function shim6d(args: string[], options: { netns?: string; asNobody?: boolean } = {}): { status: number | null; stdout: string; stderr: string } {
  const argv = [process.execPath, BIN, ...args];
  const wrapped = options.asNobody ? ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', ...argv] : argv;
  const full = options.netns ? ['ip', 'netns', 'exec', options.netns, ...wrapped] : wrapped;
  const r = spawnSync(full[0] as string, full.slice(1), { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('shim6d, the program', function () {
  this.timeout(120_000);
  let dir = '';

  before(() => {
    ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'shim6d-cli-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const config = (name: string, doc: unknown): string => {
    const file = join(dir, name);
    writeFileSync(file, typeof doc === 'string' ? doc : JSON.stringify(doc));
    return file;
  };

  describe('command line (no kernel)', () => {
    it('--help prints the usage, the signals and the exit statuses, and exits 0', () => {
      const r = shim6d(['--help']);
      assert.equal(r.status, 0);
      assert.match(r.stdout, /^usage: shim6d /);
      assert.match(r.stdout, /SIGTERM/);
      assert.match(r.stdout, /3 another shim6d/);
    });

    it('--version prints the package version', () => {
      const r = shim6d(['--version']);
      assert.equal(r.status, 0);
      assert.match(r.stdout, /^shim6d \d+\.\d+\.\d+\n$/);
    });

    it('an unknown option or a bad --log-level exits 2 with a message', () => {
      const a = shim6d(['--bogus']);
      assert.equal(a.status, 2);
      assert.match(a.stderr, /bogus/);
      const b = shim6d(['--log-level', 'loud', '--check-config', '--config', config('ok.json', {})]);
      assert.equal(b.status, 2);
      assert.match(b.stderr, /--log-level: 'loud'/);
    });

    it('--check-config: 0 for a valid file; 2 and the key for an invalid one; 2 for a missing file', () => {
      assert.equal(shim6d(['--check-config', '--config', config('valid.json', { shim6d: { console: { port: 20000 } } })]).status, 0);
      const bad = shim6d(['--check-config', '--config', config('bad.json', { shim6d: { dataPlane: { pathMtu: 1000 } } })]);
      assert.equal(bad.status, 2);
      assert.match(bad.stderr, /config key 'shim6d\.dataPlane\.pathMtu'/);
      const syntax = shim6d(['--check-config', '--config', config('syntax.json', '{"shim6d": {')]);
      assert.equal(syntax.status, 2);
      assert.match(syntax.stderr, /syntax\.json/);
      const missing = shim6d(['--check-config', '--config', join(dir, 'nope.json')]);
      assert.equal(missing.status, 2);
      assert.match(missing.stderr, /nope\.json/);
    });
  });

  describe('running in a testbed host', () => {
    let tb: Testbed | undefined;
    let d: Shim6dProcess | undefined;
    const bed = (): Testbed => {
      if (!tb) throw new Error('no testbed');
      return tb;
    };
    const daemon = (): Shim6dProcess => {
      if (!d) throw new Error('shim6d not started');
      return d;
    };

    before(async () => {
      tb = await Testbed.create();
      d = await Shim6dProcess.start(tb, 'a', { shim6d: { contexts: [testbedContexts(tb).a] } });
    });
    after(async () => {
      await d?.kill();
      d?.cleanup();
      await tb?.destroy();
    });

    it('a second instance with the same pid file exits 3 and leaves the first running', async () => {
      const r = shim6d(['--config', daemon().configFile], { netns: bed().namespaces.a });
      assert.equal(r.status, 3, r.stderr);
      assert.match(r.stderr + daemon().log(), new RegExp(String(daemon().pid)));
      assert.match(await daemon().console('stats'), /^uptime/);
    });

    it('not root: exits 4', () => {
      const open = mkdtempSync(join(tmpdir(), 'shim6d-nobody-'));
      try {
        chmodSync(open, 0o777);
        const file = join(open, 'shim6.json');
        writeFileSync(file, JSON.stringify({ runDir: open, shim6d: { log: { level: 'error', stderr: true } } }));
        chmodSync(file, 0o644);
        const r = shim6d(['--config', file], { netns: bed().namespaces.b, asNobody: true });
        assert.equal(r.status, 4, r.stderr);
      } finally {
        rmSync(open, { recursive: true, force: true });
      }
    });

    it('answers malformed or impossible console commands with one error line and keeps serving', async () => {
      const replies = await Promise.all(
        ['bogus', 'shim', 'shim 99 2001:db8:a2::a 2001:db8:b2::b', `shim 1 ${bed().a.locators[1]} 2001:db8:ff::1`, 'deshim 0', 'delete ::1 ::2', `context 2001:db8:ff::1 ${bed().b.locators[0]}`, '\u0001\u0002'].map((c) => daemon().console(c)),
      );
      for (const r of replies) assert.match(r, /^error: /, r);
      assert.match(replies[2] ?? '', /no context 99/);
      assert.match(replies[3] ?? '', /not one of context 1's verified peer locators/);
      const stats = await daemon().console('stats');
      assert.match(stats, /^uptime/);
      assert.match(stats, /console +\d+ requests, [1-9]\d* errors/);
    });

    it('counts malformed Shim6 packets as drops and carries on', async () => {
      const before = await daemon().dumpJson();
      // payload header cut short; Hdr Ext Len 1 with P = 1; garbage; a lone octet
      await sendRawShim6(bed(), 'b', bed().b.locators[0] as string, bed().a.locators[0] as string, ['1100800b0b', '1101800b0b0b0b01', 'ffffffffffffffffffff', '00']);
      const after = await waitFor(
        async () => {
          const j = await daemon().dumpJson();
          return (j.dataPlane.drops['malformed'] ?? 0) + (j.dataPlane.controlMessages ?? 0) >= (before.dataPlane.drops['malformed'] ?? 0) + before.dataPlane.controlMessages + 4 ? j : undefined;
        },
        { what: 'shim6d to count the four bad packets' },
      );
      assert.ok((after.dataPlane.drops['malformed'] ?? 0) >= 3, JSON.stringify(after.dataPlane));
      assert.ok(daemon().running);
    });

    it('SIGHUP re-reads the log level and keeps running', async () => {
      daemon().child.kill('SIGHUP');
      await waitFor(() => /configuration re-read \(SIGHUP\)/.test(daemon().log()), { what: 'the SIGHUP log line' });
      assert.match(await daemon().console('stats'), /^uptime/);
    });

    it('dump and dump json answer 400 contexts in pages that follow on from each other', async () => {
      // A second shim6d, in host B, with 400 static contexts (toward addresses nobody has).
      const contexts = Array.from({ length: 400 }, (_, i) => {
        const n = (i + 1).toString(16);
        return { id: i + 1, localUlid: bed().b.locators[0], peerUlid: `2001:db8:ff::${n}`, localContextTag: 0x3000 + i, peerContextTag: 0x4000 + i, localLocators: bed().b.locators, peerLocators: [`2001:db8:ff::${n}`, `2001:db8:fe::${n}`] };
      });
      const big = await Shim6dProcess.start(bed(), 'b', { shim6d: { contexts } });
      try {
        const dump = await big.dumpJson();
        assert.equal(dump.total, 400);
        assert.deepEqual(dump.contexts.map((c) => c.id), contexts.map((c) => c.id));
        const first = JSON.parse(await big.console('dump json')) as { contexts: unknown[]; next: number | null };
        assert.ok(first.contexts.length < 400 && first.next === first.contexts.length + 1, `first page: ${first.contexts.length}, next ${first.next}`);
        const text = await big.console('dump');
        const shown = [...text.matchAll(/^context (\d+)/gm)].length;
        assert.ok(text.trimEnd().endsWith(`... ${400 - shown} more of 400 contexts: dump from ${shown + 1}`), text.slice(-200));
        assert.match(await big.console(`dump from ${shown + 1}`), new RegExp(`^context ${shown + 1} `));
      } finally {
        await big.kill();
        big.cleanup();
      }
    });

    it('SIGTERM: exits 0, removes its rules and its pid file', async () => {
      const pidFile = join(daemon().runDir, 'shim6d.pid');
      const status = await daemon().stop();
      assert.deepEqual(status, { code: 0, signal: null });
      const save = (await bed().exec('a', ['ip6tables-save'])).stdout;
      assert.doesNotMatch(save, /SHIM6/);
      assert.equal(spawnSync('test', ['-e', pidFile]).status, 1, 'pid file removed');
    });
  });
});
