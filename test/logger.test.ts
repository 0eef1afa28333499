/**
 * common/logger: the line format (ISO time, level, component, message, key=value meta), the
 * file (directory created, appended, flushed by close), stderr, level filtering and setLevel,
 * and the rate limit the daemons put on per-packet records.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, formatLine, formatMeta, LOG_LEVELS, nullLogger, rateLimitedLogger, type Logger, type LogMeta } from '../common/logger';

const LINE_RE = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (error|warn|info|verbose|debug) ([a-z0-9]+): (.*)$/;

function lines(path: string): string[] {
  return readFileSync(path, 'utf8').split('\n').filter((l) => l !== '');
}

/** The part of each line after "component: ". */
function messages(path: string): string[] {
  return lines(path).map((l) => {
    const m = LINE_RE.exec(l);
    assert.ok(m, `bad line: ${l}`);
    return `${m[2]} ${m[4]}`;
  });
}

describe('logger', function () {
  let dir: string;
  let n = 0;
  const nextFile = (): string => join(dir, `logs${++n}`, 'sub', 'test.log');

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'shim6-logger-'));
  });

  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('lists the levels from most to least severe', () => {
    assert.deepEqual(LOG_LEVELS, ['error', 'warn', 'info', 'verbose', 'debug']);
  });

  it('formats a line: ISO time, level, component, message, meta as key=value', () => {
    const t = new Date('2026-11-21T10:00:00.123Z');
    assert.equal(formatLine(t, 'info', 'shim6d', 'message', { key: 'value', key2: 'with space' }), '2026-11-21T10:00:00.123Z info shim6d: message key=value key2="with space"');
    assert.equal(formatLine(t, 'debug', 'reapd', 'two\nlines\u0007'), '2026-11-21T10:00:00.123Z debug reapd: two\\nlines\\x07');
  });

  it('formats meta values unambiguously', () => {
    assert.equal(formatMeta(undefined), '');
    assert.equal(formatMeta({}), '');
    assert.equal(
      formatMeta({ n: 42, b: true, z: null, u: undefined, big: 10n, e: '', q: 'say "hi"', eq: 'a=b', nl: 'a\nb', err: new Error('it broke'), buf: Buffer.from([1, 0xab]), obj: { x: [1, 2] }, spaced: { s: 'a b' } }),
      ' n=42 b=true z=null big=10 e="" q="say \\"hi\\"" eq="a=b" nl="a\\nb" err="it broke" buf=01ab obj={"x":[1,2]} spaced="{\\"s\\":\\"a b\\"}"',
    );
    assert.equal(formatMeta({ addr: '2001:db8::1', path: '/run/shim6/ipc.sock' }), ' addr=2001:db8::1 path=/run/shim6/ipc.sock');
  });

  it('creates the directory and appends lines to the file; close() flushes', async () => {
    const file = nextFile();
    const log = createLogger({ level: 'info', file, stderr: false }, 'shim6d');
    assert.equal(statSync(join(file, '..')).mode & 0o777, 0o755);
    assert.equal(statSync(join(file, '..', '..')).mode & 0o777, 0o755);
    assert.equal(statSync(file).mode & 0o777, 0o644);
    log.info('context established', { peer: '2001:db8:b1::b', tag: 42, note: 'with space' });
    log.error('boom');
    await log.close();
    const got = lines(file);
    assert.equal(got.length, 2);
    for (const l of got) {
      const m = LINE_RE.exec(l);
      assert.ok(m, l);
      assert.ok(Math.abs(Date.parse(m[1] ?? '') - Date.now()) < 60_000, l);
      assert.equal(m[3], 'shim6d');
    }
    assert.match(got[0] ?? '', / info shim6d: context established peer=2001:db8:b1::b tag=42 note="with space"$/);
    assert.match(got[1] ?? '', / error shim6d: boom$/);

    // A second logger appends to the same file.
    const again = createLogger({ level: 'info', file, stderr: false }, 'reapd');
    again.warn('second');
    await again.close();
    assert.deepEqual(messages(file), ['info context established peer=2001:db8:b1::b tag=42 note="with space"', 'error boom', 'warn second']);
  });

  it('filters by level, and setLevel changes it', async () => {
    const file = nextFile();
    const log = createLogger({ level: 'info', file, stderr: false }, 'shim6d');
    const all = (tag: string): void => {
      log.error(tag);
      log.warn(tag);
      log.info(tag);
      log.verbose(tag);
      log.debug(tag);
    };
    all('a');
    log.setLevel('debug');
    all('b');
    log.setLevel('error');
    all('c');
    log.setLevel('warn');
    all('d');
    assert.throws(() => log.setLevel('trace' as 'info'), RangeError);
    await log.close();
    assert.deepEqual(messages(file), ['error a', 'warn a', 'info a', 'error b', 'warn b', 'info b', 'verbose b', 'debug b', 'error c', 'error d', 'warn d']);
  });

  it('drops records after close, and close is idempotent', async () => {
    const file = nextFile();
    const log = createLogger({ level: 'debug', file, stderr: false }, 'shim6d');
    log.info('before');
    const closing = log.close();
    log.info('after');
    await closing;
    await log.close();
    log.error('later');
    assert.deepEqual(messages(file), ['info before']);
  });

  it('writes to stderr when asked, and only then', async () => {
    const written: string[] = [];
    const original = process.stderr.write;
    const capture = (chunk: string | Uint8Array): boolean => {
      written.push(String(chunk));
      return true;
    };
    process.stderr.write = capture as typeof process.stderr.write;
    try {
      const quiet = createLogger({ level: 'info', stderr: false }, 'quiet');
      quiet.error('not shown');
      await quiet.close();
      const loud = createLogger({ level: 'info', stderr: true }, 'loud');
      loud.info('shown', { k: 'v' });
      loud.debug('filtered');
      await loud.close();
    } finally {
      process.stderr.write = original;
    }
    assert.equal(written.length, 1, written.join(''));
    assert.match(written[0] ?? '', /^\S+Z info loud: shown k=v\n$/);
  });

  it('throws at creation when the file cannot be created', () => {
    const blocker = join(dir, 'a-file');
    writeFileSync(blocker, '');
    assert.throws(() => createLogger({ level: 'info', file: join(blocker, 'x.log'), stderr: false }, 'shim6d'), (err: NodeJS.ErrnoException) => err.code === 'EEXIST' || err.code === 'ENOTDIR');
    assert.throws(() => createLogger({ level: 'info', file: dir, stderr: false }, 'shim6d'), { code: 'EISDIR' });
  });

  it('rate limits: at most perSecond records in each second of the clock, meta functions built only for those', () => {
    const written: Array<[string, string, LogMeta | undefined]> = [];
    const record = (level: string) => (msg: string, meta?: LogMeta): void => {
      written.push([level, msg, meta]);
    };
    const log: Logger = { ...nullLogger, error: record('error'), warn: record('warn'), info: record('info'), verbose: record('verbose'), debug: record('debug') };
    let t = 5_000;
    const limited = rateLimitedLogger(log, 3, () => t);
    let built = 0;
    const meta = (): LogMeta => ({ n: ++built });
    for (let i = 0; i < 10; i++) limited('debug', `lazy ${i}`, meta);
    assert.equal(built, 3, 'a dropped record builds no meta');
    assert.deepEqual(written, [['debug', 'lazy 0', { n: 1 }], ['debug', 'lazy 1', { n: 2 }], ['debug', 'lazy 2', { n: 3 }]]);
    t = 5_999;
    limited('error', 'same second: dropped', { k: 'v' });
    assert.equal(written.length, 3);
    // A new second, a new budget, shared by every level; plain meta objects and none at all.
    t = 6_000;
    limited('warn', 'plain', { k: 'v' });
    limited('error', 'bare');
    limited('info', 'third', meta);
    limited('debug', 'fourth', meta);
    assert.deepEqual(written.slice(3), [['warn', 'plain', { k: 'v' }], ['error', 'bare', undefined], ['info', 'third', { n: 4 }]]);
    assert.equal(built, 4);

    // The default: 20 a second.
    const lines: string[] = [];
    const byDefault = rateLimitedLogger({ ...nullLogger, debug: (msg) => lines.push(msg) }, undefined, () => 0);
    for (let i = 0; i < 25; i++) byDefault('debug', `m${i}`);
    assert.equal(lines.length, 20);
  });

  it('has a null logger that discards everything', async () => {
    nullLogger.error('x', { a: 1 });
    nullLogger.debug('x');
    nullLogger.setLevel('debug');
    await nullLogger.close();
  });
});
