/**
 * common/pidfile: acquire and release, the directory and file modes, a stale or garbage file
 * replaced, and a live process (a spawned `sleep 30`, and pid 1) refused with
 * AlreadyRunningError.
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { acquirePidFile, AlreadyRunningError, processAlive, readPidFile } from '../common/pidfile';

describe('pidfile', function () {
  let dir: string;
  let sleeper: ChildProcess | undefined;
  let n = 0;
  const nextPath = (): string => join(dir, `run${++n}`, 'daemon.pid');

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'shim6-pidfile-'));
  });

  after(() => {
    if (sleeper?.pid !== undefined && sleeper.exitCode === null && sleeper.signalCode === null) sleeper.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  /** A pid that belonged to a process that has exited and been reaped. */
  function deadPid(): number {
    const r = spawnSync('true');
    assert.equal(r.status, 0);
    assert.ok(r.pid > 0);
    return r.pid;
  }

  it('writes our pid with a newline (0644) in a new directory (0755), and release removes it', () => {
    const path = nextPath();
    const pidFile = acquirePidFile(path);
    assert.equal(pidFile.pid, process.pid);
    assert.equal(pidFile.path, path);
    assert.equal(readFileSync(path, 'utf8'), `${process.pid}\n`);
    assert.equal(statSync(path).mode & 0o777, 0o644);
    assert.equal(statSync(join(path, '..')).mode & 0o777, 0o755);
    assert.equal(readPidFile(path), process.pid);
    assert.equal(pidFile.release(), true);
    assert.equal(existsSync(path), false);
    assert.equal(pidFile.release(), false);
  });

  it('release leaves a file that no longer holds our pid', () => {
    const path = nextPath();
    const pidFile = acquirePidFile(path);
    writeFileSync(path, '4242\n');
    assert.equal(pidFile.release(), false);
    assert.equal(readFileSync(path, 'utf8'), '4242\n');
  });

  it('replaces a stale file', () => {
    const path = nextPath();
    acquirePidFile(path); // left behind, as by a crash
    const stale = deadPid();
    assert.equal(processAlive(stale), false);
    writeFileSync(path, `${stale}\n`);
    const pidFile = acquirePidFile(path);
    assert.equal(readFileSync(path, 'utf8'), `${process.pid}\n`);
    assert.equal(statSync(path).mode & 0o777, 0o644);
    pidFile.release();
  });

  it('replaces a file holding our own pid (a restart in place)', () => {
    const path = nextPath();
    acquirePidFile(path);
    const again = acquirePidFile(path);
    assert.equal(readPidFile(path), process.pid);
    assert.equal(again.release(), true);
  });

  it('replaces garbage', () => {
    const path = nextPath();
    acquirePidFile(path).release();
    for (const garbage of ['', '\n', 'hello\n', '0\n', '-1\n', '12abc\n', '1 2\n', '99999999999\n', '0123\n', '\u0000\u0001']) {
      writeFileSync(path, garbage);
      assert.equal(readPidFile(path), undefined, JSON.stringify(garbage));
      const pidFile = acquirePidFile(path);
      assert.equal(readFileSync(path, 'utf8'), `${process.pid}\n`, JSON.stringify(garbage));
      pidFile.release();
    }
  });

  it('reads a pid file', () => {
    const path = nextPath();
    assert.equal(readPidFile(path), undefined); // no directory, no file
    acquirePidFile(path).release();
    writeFileSync(path, '1234\n');
    assert.equal(readPidFile(path), 1234);
    writeFileSync(path, ' 1234');
    assert.equal(readPidFile(path), 1234);
    assert.throws(() => readPidFile(join(path, '..')), { code: 'EISDIR' });
  });

  it('refuses to start when the file names a live process', async () => {
    const path = nextPath();
    sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
    await new Promise<void>((resolve, reject) => {
      sleeper?.once('spawn', () => resolve());
      sleeper?.once('error', reject);
    });
    const pid = sleeper.pid;
    assert.ok(pid !== undefined && processAlive(pid));
    acquirePidFile(path);
    writeFileSync(path, `${pid}\n`);
    assert.throws(() => acquirePidFile(path), (err: unknown) => {
      assert.ok(err instanceof AlreadyRunningError);
      assert.equal(err.pid, pid);
      assert.equal(err.path, path);
      assert.equal(err.message, `already running: ${path} names live process ${pid}`);
      return true;
    });
    assert.equal(readFileSync(path, 'utf8'), `${pid}\n`, 'the live holder keeps its file');

    // pid 1 always exists (kill(1, 0) succeeds as root and fails with EPERM otherwise).
    writeFileSync(path, '1\n');
    assert.throws(() => acquirePidFile(path), { name: 'AlreadyRunningError', pid: 1 });
  });

  it('processAlive never signals a process group', () => {
    assert.equal(processAlive(0), false);
    assert.equal(processAlive(-1), false);
    assert.equal(processAlive(1.5), false);
    assert.equal(processAlive(process.pid), true);
  });
});
