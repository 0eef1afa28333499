/**
 * The init script (scripts/shim6) with the real daemons (bin/reapd, bin/shim6d) in the hosts of
 * --hba testbeds, and shim6-config, the tool it reads the configuration with: the LSB actions
 * and exit statuses, readiness (IPC socket, console), clean stops, and several instances on one
 * machine that never collide.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { consoleCommand, ensureBuilt } from '../scripts/lib/shim6d';
import { run, Testbed, type ExecResult } from '../scripts/lib/testbed';
import { waitFor } from '../scripts/lib/wait';

const ROOT = join(__dirname, '..');
const INIT = join(ROOT, 'scripts', 'shim6');
const CONFIG_TOOL = join(ROOT, 'bin', 'shim6-config');

/** scripts/shim6 ACTION in host's namespace with that host's configuration. */
function initScript(tb: Testbed, host: 'a' | 'b', action: string): Promise<ExecResult> {
  const config = tb[host].config;
  if (config === undefined) throw new Error(`testbed ${tb.id} has no configuration for ${host} (create it with hba: true)`);
  return run(['ip', 'netns', 'exec', tb.namespaces[host], 'env', `SHIM6_CONFIG=${config}`, INIT, action], { check: false, timeoutMs: 120_000 });
}

function shim6Config(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CONFIG_TOOL, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A live process (a zombie is dead: nobody may reap the orphaned daemons here). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function readPid(file: string): number {
  const pid = Number(readFileSync(file, 'utf8').trim());
  assert.ok(Number.isInteger(pid) && pid > 0, `${file} holds a pid`);
  return pid;
}

function isSocket(path: string): boolean {
  try {
    return statSync(path).isSocket();
  } catch {
    return false;
  }
}

/** Live processes in host's namespace. */
async function namespacePids(tb: Testbed, host: 'a' | 'b'): Promise<number[]> {
  const r = await run(['ip', 'netns', 'pids', tb.namespaces[host]]);
  return r.stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map(Number)
    .filter(alive);
}

const show = (r: ExecResult): string => `exit ${String(r.code)}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

describe('shim6-config (the configuration for shell scripts)', function () {
  this.timeout(60_000);
  let dir = '';
  before(() => {
    ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'shim6-config-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, doc: unknown): string => {
    const f = join(dir, name);
    writeFileSync(f, typeof doc === 'string' ? doc : JSON.stringify(doc));
    return f;
  };

  it('prints resolved values, one per line: paths derived from runDir, defaults, JSON for arrays', () => {
    const f = file('run.json', { runDir: '/tmp/x', shim6d: { console: { port: 20001 } } });
    const r = shim6Config(['--config', f, 'get', 'reapd.pidFile', 'ipcSocket', 'shim6d.pidFile', 'shim6d.console.port', 'shim6d.console.enabled', 'shim6d.console.addresses', 'runDir']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, '/tmp/x/reapd.pid\n/tmp/x/ipc.sock\n/tmp/x/shim6d.pid\n20001\ntrue\n["127.0.0.1","::1"]\n/tmp/x\n');
    const json = shim6Config(['--config', f, '--json', 'get', 'runDir', 'shim6d.console.addresses[1]']);
    assert.equal(json.stdout, '"/tmp/x"\n"::1"\n');
    const dump = shim6Config(['--config', f, 'dump']);
    assert.equal((JSON.parse(dump.stdout) as { ipcSocket: string }).ipcSocket, '/tmp/x/ipc.sock');
  });

  it('exits 1 for a key the file leaves unset, 2 for a key that does not exist', () => {
    const f = file('empty.json', {});
    const unset = shim6Config(['--config', f, 'get', 'runDir', 'shim6d.log.file']);
    assert.equal(unset.status, 1);
    assert.equal(unset.stdout, '');
    assert.match(unset.stderr, /'shim6d\.log\.file': not set/);
    for (const key of ['shim6d.bogus', 'runDir.x', 'shim6d.contexts[0].nope', 'a..b', '']) {
      const r = shim6Config(['--config', f, 'get', key]);
      assert.equal(r.status, 2, `${key}: ${r.stderr}`);
    }
    assert.equal(shim6Config(['--config', f, 'get', 'shim6d.contexts[0].locatorPair.local']).status, 1, 'a key of a context that is not there: unset');
  });

  it('exits 2 with the message that names the key for an invalid or missing file', () => {
    const bad = shim6Config(['--config', file('bad.json', { shim6d: { console: { port: 70000 } } }), 'get', 'runDir']);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /config key 'shim6d\.console\.port'/);
    const missing = shim6Config(['--config', join(dir, 'nope.json'), 'get', 'runDir']);
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /nope\.json/);
    assert.equal(shim6Config(['get']).status, 2);
    assert.equal(shim6Config(['frob']).status, 2);
    const help = shim6Config(['--help']);
    assert.equal(help.status, 0);
    assert.match(help.stdout, /^usage: shim6-config/);
  });
});

describe('scripts/shim6 (the init script)', function () {
  this.timeout(240_000);

  describe('without daemons', () => {
    let dir = '';
    before(() => {
      ensureBuilt();
      dir = mkdtempSync(join(tmpdir(), 'shim6-init-'));
      chmodSync(dir, 0o755);
    });
    after(() => rmSync(dir, { recursive: true, force: true }));
    const init = (args: string[], env: Record<string, string> = {}, asNobody = false): Promise<ExecResult> => {
      const argv = asNobody ? ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', INIT, ...args] : [INIT, ...args];
      return run(['env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...argv], { check: false });
    };

    it('has an LSB header and --help, and exits 2 for a bad action', async () => {
      assert.match(readFileSync(INIT, 'utf8'), /^### BEGIN INIT INFO\n# Provides: +shim6\n[\s\S]*^### END INIT INFO$/m);
      const help = await init(['--help']);
      assert.equal(help.code, 0);
      assert.match(help.stdout, /start\|stop\|restart/);
      assert.match(help.stdout, /SHIM6_CONFIG/);
      assert.equal((await init([])).code, 2);
      assert.equal((await init(['frobnicate'])).code, 2);
      assert.equal((await init(['start', 'extra'])).code, 2);
    });

    it('exits 6 for a missing or invalid configuration (naming the key), 4 when not root; status says 4', async () => {
      const missing = await init(['start'], { SHIM6_CONFIG: join(dir, 'nope.json') });
      assert.equal(missing.code, 6, show(missing));
      const bad = join(dir, 'bad.json');
      writeFileSync(bad, JSON.stringify({ shim6d: { consol: {} } }));
      const invalid = await init(['start'], { SHIM6_CONFIG: bad });
      assert.equal(invalid.code, 6, show(invalid));
      assert.match(invalid.stderr, /'shim6d\.consol'/);
      assert.equal((await init(['status'], { SHIM6_CONFIG: bad })).code, 4);
      const good = join(dir, 'good.json');
      writeFileSync(good, JSON.stringify({ runDir: join(dir, 'run') }));
      chmodSync(good, 0o644);
      const nobody = await init(['start'], { SHIM6_CONFIG: good }, true);
      assert.equal(nobody.code, 4, show(nobody));
      const status = await init(['status'], { SHIM6_CONFIG: good }, true);
      assert.equal(status.code, 3, show(status));
      const reload = await init(['reload'], { SHIM6_CONFIG: good });
      assert.equal(reload.code, 7, show(reload));
    });
  });

  describe('in a testbed host, with the real reapd and shim6d', () => {
    let tb: Testbed | undefined;
    const bed = (): Testbed => {
      if (!tb) throw new Error('no testbed');
      return tb;
    };
    const runDir = (): string => bed().a.runDir ?? '';
    const pids: Record<'reapd' | 'shim6d', number> = { reapd: 0, shim6d: 0 };

    before(async () => {
      ensureBuilt();
      tb = await Testbed.create({ hba: true });
    });
    after(async () => {
      if (tb) {
        await initScript(tb, 'a', 'stop');
        await initScript(tb, 'b', 'stop');
        await tb.destroy();
      }
    });

    it('start: reapd then shim6d, both ready (IPC socket, console, SHIM6 chains)', async () => {
      const r = await initScript(bed(), 'a', 'start');
      assert.equal(r.code, 0, show(r));
      pids.reapd = readPid(join(runDir(), 'reapd.pid'));
      pids.shim6d = readPid(join(runDir(), 'shim6d.pid'));
      assert.ok(alive(pids.reapd), 'reapd runs');
      assert.ok(alive(pids.shim6d), 'shim6d runs');
      assert.match(r.stdout, new RegExp(`reapd started \\(pid ${pids.reapd}\\)[\\s\\S]*shim6d started \\(pid ${pids.shim6d}\\)`));
      assert.ok(isSocket(join(runDir(), 'ipc.sock')), 'the IPC socket exists');
      assert.ok((await consoleCommand(bed(), 'a', 'help', { timeoutMs: 2000 })) !== undefined, 'the console answers help');
      const save = (await bed().exec('a', ['ip6tables-save'])).stdout;
      assert.match(save, /^:SHIM6-OUT /m);
      assert.match(save, /^:SHIM6-IN /m);
      // The other host of the testbed is untouched.
      assert.doesNotMatch((await bed().exec('b', ['ip6tables-save'])).stdout, /SHIM6/);
    });

    it('status exits 0 and names both pids', async () => {
      const r = await initScript(bed(), 'a', 'status');
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, new RegExp(`reapd is running \\(pid ${pids.reapd}\\)`));
      assert.match(r.stdout, new RegExp(`shim6d is running \\(pid ${pids.shim6d}\\)`));
    });

    it('a second start says it runs already, exits 0 and starts nothing', async () => {
      const r = await initScript(bed(), 'a', 'start');
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, /already running/);
      assert.equal(readPid(join(runDir(), 'reapd.pid')), pids.reapd);
      assert.equal(readPid(join(runDir(), 'shim6d.pid')), pids.shim6d);
    });

    it('reload sends SIGHUP to both; they re-read the configuration and keep running', async () => {
      const r = await initScript(bed(), 'a', 'reload');
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, /reapd reloaded/);
      assert.match(r.stdout, /shim6d reloaded/);
      await waitFor(() => /SIGHUP/.test(readFileSync(join(runDir(), 'shim6d.stderr.log'), 'utf8')), { what: "shim6d's SIGHUP log line", timeoutMs: 10_000 });
      assert.ok(alive(pids.reapd) && alive(pids.shim6d), 'both still run');
      assert.ok((await consoleCommand(bed(), 'a', 'help', { timeoutMs: 2000 })) !== undefined, 'the console still answers');
    });

    it('stop: no daemon, no SHIM6 rule or set, no pid file, no IPC socket left', async () => {
      const r = await initScript(bed(), 'a', 'stop');
      assert.equal(r.code, 0, show(r));
      assert.ok(!alive(pids.shim6d), 'shim6d is gone');
      assert.ok(!alive(pids.reapd), 'reapd is gone');
      assert.deepEqual(await namespacePids(bed(), 'a'), [], 'nothing runs in host a');
      assert.doesNotMatch((await bed().exec('a', ['ip6tables-save'])).stdout, /SHIM6/);
      assert.doesNotMatch((await bed().exec('a', ['ipset', 'list', '-n'])).stdout, /shim6/);
      for (const f of ['reapd.pid', 'shim6d.pid', 'ipc.sock']) assert.ok(!existsSync(join(runDir(), f)), `${f} removed`);
    });

    it('stop when stopped exits 0; status then exits 3', async () => {
      const stop = await initScript(bed(), 'a', 'stop');
      assert.equal(stop.code, 0, show(stop));
      const status = await initScript(bed(), 'a', 'status');
      assert.equal(status.code, 3, show(status));
    });

    it('restart starts them again; a daemon killed hard leaves status 1 until the next start', async () => {
      const r = await initScript(bed(), 'a', 'restart');
      assert.equal(r.code, 0, show(r));
      const shim6d = readPid(join(runDir(), 'shim6d.pid'));
      process.kill(shim6d, 'SIGKILL');
      await waitFor(() => !alive(shim6d), { what: 'shim6d to die' });
      const status = await initScript(bed(), 'a', 'status');
      assert.equal(status.code, 1, show(status));
      assert.match(status.stdout, /shim6d is dead/);
      const again = await initScript(bed(), 'a', 'start');
      assert.equal(again.code, 0, show(again));
      assert.match(again.stdout, /reapd already running/);
      assert.equal((await initScript(bed(), 'a', 'status')).code, 0);
      assert.equal((await initScript(bed(), 'a', 'stop')).code, 0);
      assert.deepEqual(await namespacePids(bed(), 'a'), []);
    });

    it('when shim6d cannot start (its console port is taken), stops the reapd it started and fails', async () => {
      const squatter = await bed().udpServer('b', ['::1'], { port: 19384 });
      try {
        const r = await initScript(bed(), 'b', 'start');
        assert.notEqual(r.code, 0, show(r));
        assert.match(r.stderr, /shim6d did not start/);
        const status = await initScript(bed(), 'b', 'status');
        assert.equal(status.code, 3, show(status));
        const runDirB = bed().b.runDir ?? '';
        assert.ok(!existsSync(join(runDirB, 'reapd.pid')), 'no reapd pid file');
      } finally {
        await squatter.close();
      }
      assert.deepEqual(await namespacePids(bed(), 'b'), [], 'nothing runs in host b');
    });
  });

  describe('two --hba testbeds, daemons in all four hosts at once', () => {
    const beds: Testbed[] = [];
    before(async () => {
      ensureBuilt();
      const made = await Promise.allSettled([Testbed.create({ hba: true }), Testbed.create({ hba: true })]);
      for (const m of made) if (m.status === 'fulfilled') beds.push(m.value);
      for (const m of made) if (m.status === 'rejected') throw m.reason;
    });
    after(async () => {
      await Promise.allSettled(beds.map((t) => t.destroy()));
    });

    it('scripts/testbed start ID all runs both daemons in every host; destroy stops them and removes every file', async () => {
      const started = await Promise.all(beds.map((t) => t.startDaemons('all', { check: false })));
      for (const r of started) assert.equal(r.code, 0, show(r));
      const daemonPids: number[] = [];
      for (const t of beds) {
        for (const h of ['a', 'b'] as const) {
          const dir = t[h].runDir ?? '';
          for (const d of ['reapd', 'shim6d']) {
            const pid = readPid(join(dir, `${d}.pid`));
            assert.ok(alive(pid), `${d} runs in ${t.id}/${h}`);
            daemonPids.push(pid);
          }
          assert.ok((await consoleCommand(t, h, 'help', { timeoutMs: 2000 })) !== undefined, `the console of ${t.id}/${h} answers`);
        }
      }
      assert.equal(new Set(daemonPids).size, 8, 'eight daemons');
      // Idempotent through the testbed, too.
      const again = await beds[0]?.startDaemons('a', { check: false });
      assert.equal(again?.code, 0);
      assert.match(again?.stdout ?? '', /already running/);

      const files = beds.map((t) => t.files ?? '');
      await Promise.all(beds.map((t) => t.destroy()));
      for (const pid of daemonPids) assert.ok(!alive(pid), `daemon ${pid} is gone`);
      for (const f of files) assert.ok(f !== '' && !existsSync(f), `${f} removed`);
      const listed = (await run(['ip', 'netns', 'list'])).stdout;
      for (const t of beds) for (const ns of Object.values(t.namespaces)) assert.ok(!listed.includes(ns), `${ns} deleted`);
    });
  });
});
