/**
 * common/config and common/config-schema: the defaults of `{}`, paths derived from runDir, and
 * every kind of error with the exact key it names (types, ranges, unknown keys, netfilter names
 * through iptables-rules, static contexts and their cross checks, JSON syntax, file errors).
 */
import { strict as assert } from 'node:assert';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DEFAULT_CONFIG_PATH,
  defaultShim6Config,
  loadShim6Config,
  MAX_CONTEXT_TAG,
  parseShim6Config,
  type Shim6Config,
} from '../common/config';
import {
  absolutePath,
  arrayOf,
  childKey,
  ConfigError,
  int,
  loadConfigFile,
  object,
  oneOf,
  optional,
  parseJsonConfig,
  str,
  union,
  withDefault,
  type Infer,
} from '../common/config-schema';

const SRC = '/etc/shim6/test.json';

function parse(value: unknown): Shim6Config {
  return parseShim6Config(JSON.stringify(value), SRC);
}

/** Asserts that parsing `value` fails at `key`, with a message matching `message` (string: exact). */
function rejects(value: unknown, key: string, message?: string | RegExp): ConfigError {
  let caught: unknown;
  try {
    parse(value);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${String(caught)}`);
  assert.equal(caught.key, key, caught.message);
  assert.ok(caught.message.includes(key === '' ? 'config: ' : `config key '${key}': `), caught.message);
  if (typeof message === 'string') assert.equal(caught.message, message);
  else if (message) assert.match(caught.message, message);
  return caught;
}

const CTX = {
  localUlid: '2001:db8:a1::a',
  peerUlid: '2001:db8:b1::b',
  localContextTag: 1,
  peerContextTag: 2,
};

function withContexts(...contexts: unknown[]): unknown {
  return { shim6d: { contexts } };
}

describe('config', function () {
  let dir: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'shim6-config-'));
  });

  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  describe('defaults and derived paths', () => {
    it('parses {} to every default', () => {
      assert.deepEqual(parse({}), {
        runDir: '/run/shim6',
        ipcSocket: '/run/shim6/ipc.sock',
        shim6d: {
          pidFile: '/run/shim6/shim6d.pid',
          identities: [],
          control: {
            i1TimeoutMs: 4000,
            i1Retries: 4,
            i2TimeoutMs: 4000,
            i2Retries: 2,
            noR1HoldDownMs: 60000,
            icmpHoldDownMs: 600000,
            updateTimeoutMs: 4000,
            maxUpdateTimeoutMs: 120000,
            validatorRotationMs: 30000,
            idleTeardownMs: 600000,
            errorsPerSecond: 10,
          },
          heuristic: { enabled: true, packets: 50, activeSeconds: 10, pollMs: 1000 },
          reap: { enabled: true, intervalMs: 500 },
          log: { level: 'info', stderr: true },
          console: { enabled: true, port: 19384, addresses: ['127.0.0.1', '::1'] },
          netfilter: { outChain: 'SHIM6-OUT', inChain: 'SHIM6-IN', pairSet: 'shim6-pairs', outQueue: 141, inQueue: 140, pairMatch: 'auto', maxPairs: 65536 },
          dataPlane: { pathMtu: 'auto', ptbPerSecond: 10, queueBufferBytes: 8388608 },
          contexts: [],
        },
        reapd: {
          pidFile: '/run/shim6/reapd.pid',
          log: { level: 'info', stderr: true },
          timers: { keepaliveTimeout: 10, sendTimeoutMs: 15000, initialProbes: 4, initialProbeIntervalMs: 500, maxProbeIntervalMs: 60000, ulidRetryIntervalMs: 10000, historyLength: 32 },
        },
      });
      assert.deepEqual(defaultShim6Config(), parse({}));
      assert.equal(DEFAULT_CONFIG_PATH, '/etc/shim6/shim6.json');
    });

    it('checks REAP timers against each other, naming the key', () => {
      rejects({ reapd: { timers: { keepaliveTimeout: 10, sendTimeoutMs: 5000 } } }, 'reapd.timers.sendTimeoutMs');
      rejects({ reapd: { timers: { initialProbeIntervalMs: 5000, maxProbeIntervalMs: 1000 } } }, 'reapd.timers.maxProbeIntervalMs');
      rejects({ reapd: { timers: { keepaliveTimeout: 0 } } }, 'reapd.timers.keepaliveTimeout');
      assert.equal(parse({ reapd: { timers: { keepaliveTimeout: 1, sendTimeoutMs: 1000 } } }).reapd.timers.sendTimeoutMs, 1000);
    });

    it('gives every parse its own copy of the defaults', () => {
      const a = defaultShim6Config();
      a.shim6d.console.addresses.push('::2');
      a.shim6d.log.level = 'debug';
      const b = defaultShim6Config();
      assert.deepEqual(b.shim6d.console.addresses, ['127.0.0.1', '::1']);
      assert.equal(b.shim6d.log.level, 'info');
    });

    it('derives the IPC socket and PID files from runDir unless given', () => {
      const c = parse({ runDir: '/tmp/s6' });
      assert.equal(c.ipcSocket, '/tmp/s6/ipc.sock');
      assert.equal(c.shim6d.pidFile, '/tmp/s6/shim6d.pid');
      assert.equal(c.reapd.pidFile, '/tmp/s6/reapd.pid');
      const d = parse({ runDir: '/tmp/s6/', ipcSocket: '/var/run/x.sock', shim6d: { pidFile: '/var/run/a.pid' } });
      assert.equal(d.ipcSocket, '/var/run/x.sock');
      assert.equal(d.shim6d.pidFile, '/var/run/a.pid');
      assert.equal(d.reapd.pidFile, '/tmp/s6/reapd.pid');
    });

    it('keeps given values and fills the rest of a partial object', () => {
      const c = parse({
        shim6d: { log: { level: 'debug', file: '/var/log/shim6d.log' }, console: { port: 2000 } },
        reapd: { log: { stderr: false } },
      });
      assert.deepEqual(c.shim6d.log, { level: 'debug', file: '/var/log/shim6d.log', stderr: true });
      assert.deepEqual(c.shim6d.console, { enabled: true, port: 2000, addresses: ['127.0.0.1', '::1'] });
      assert.deepEqual(c.reapd.log, { level: 'info', stderr: false });
    });

    it('accepts a byte-order mark and white space around the value', () => {
      assert.equal(parseShim6Config('\uFEFF \n{ "runDir": "/r" }\n\n', SRC).runDir, '/r');
    });
  });

  describe('types, ranges and unknown keys', () => {
    it('names the key of a value out of range', () => {
      rejects({ shim6d: { console: { port: 70000 } } }, 'shim6d.console.port', "config key 'shim6d.console.port': expected an integer from 1 to 65535, got 70000");
      rejects({ shim6d: { console: { port: 0 } } }, 'shim6d.console.port');
      rejects({ shim6d: { console: { port: 80.5 } } }, 'shim6d.console.port', /got 80\.5$/);
      rejects({ shim6d: { console: { port: '19384' } } }, 'shim6d.console.port', /got "19384"$/);
    });

    it('refuses unknown keys at every level, listing the known ones', () => {
      rejects({ shim6d: { consol: {} } }, 'shim6d.consol', "config key 'shim6d.consol': unknown key (expected one of: pidFile, identities, control, heuristic, reap, log, console, netfilter, dataPlane, contexts)");
      rejects({ shim6d: { log: { lvl: 'debug' } } }, 'shim6d.log.lvl', /unknown key \(expected one of: level, file, stderr\)$/);
      rejects({ runDirectory: '/x' }, 'runDirectory', /expected one of: runDir, ipcSocket, shim6d, reapd/);
      rejects(withContexts({ ...CTX, tag: 3 }), 'shim6d.contexts[0].tag');
      rejects({ __proto__x: 1 }, '__proto__x');
      rejects(JSON.parse('{"__proto__": {"runDir": "/x"}}'), '__proto__');
    });

    it('refuses wrong JSON types, null included', () => {
      rejects([], '', 'config: expected an object, got an array');
      rejects(null, '', 'config: expected an object, got null');
      rejects({ shim6d: [] }, 'shim6d', "config key 'shim6d': expected an object, got an array");
      rejects({ shim6d: { log: null } }, 'shim6d.log', /expected an object, got null$/);
      rejects({ shim6d: { console: { enabled: 'yes' } } }, 'shim6d.console.enabled', /expected true or false, got "yes"$/);
    });

    it('wants absolute paths', () => {
      rejects({ runDir: 'run/shim6' }, 'runDir', /expected an absolute path, got "run\/shim6"$/);
      rejects({ runDir: '' }, 'runDir');
      rejects({ ipcSocket: '/a\u0000b' }, 'ipcSocket');
      rejects({ reapd: { log: { file: 'reapd.log' } } }, 'reapd.log.file');
      rejects({ reapd: { pidFile: 7 } }, 'reapd.pidFile');
    });

    it('refuses an IPC socket path beyond the Unix socket limit and shared runtime files', () => {
      rejects({ runDir: `/${'r'.repeat(100)}` }, 'runDir', /longer than 107 bytes/);
      rejects({ ipcSocket: `/${'s'.repeat(107)}` }, 'ipcSocket', /longer than 107 bytes/);
      rejects({ reapd: { pidFile: '/run/shim6/shim6d.pid' } }, 'reapd.pidFile', /same file as shim6d\.pidFile/);
      rejects({ ipcSocket: '/run/shim6/reapd.pid' }, 'reapd.pidFile', /same file as ipcSocket/);
    });

    it('checks log levels', () => {
      for (const level of ['error', 'warn', 'info', 'verbose', 'debug']) assert.equal(parse({ reapd: { log: { level } } }).reapd.log.level, level);
      rejects({ reapd: { log: { level: 'trace' } } }, 'reapd.log.level', /expected one of "error", "warn", "info", "verbose", "debug", got "trace"$/);
    });

    it('checks console addresses: IPv4 or IPv6 literals, 1 to 4, no duplicates, IPv6 canonical', () => {
      assert.deepEqual(parse({ shim6d: { console: { addresses: ['0:0::1', '192.0.2.1', '2001:DB8::A'] } } }).shim6d.console.addresses, ['::1', '192.0.2.1', '2001:db8::a']);
      rejects({ shim6d: { console: { addresses: [] } } }, 'shim6d.console.addresses', /expected an array of 1 to 4 an IPv4 address or an IPv6 address, got 0 elements$/);
      rejects({ shim6d: { console: { addresses: ['::1', '::2', '::3', '::4', '::5'] } } }, 'shim6d.console.addresses', /got 5 elements$/);
      rejects({ shim6d: { console: { addresses: ['::1', 'localhost'] } } }, 'shim6d.console.addresses[1]', /expected an IPv4 address or an IPv6 address, got "localhost"$/);
      rejects({ shim6d: { console: { addresses: ['127.000.0.1'] } } }, 'shim6d.console.addresses[0]');
      rejects({ shim6d: { console: { addresses: ['::1', '0::1'] } } }, 'shim6d.console.addresses[1]', /duplicate of addresses\[0\] \(::1\)$/);
    });
  });

  describe('netfilter', () => {
    it('accepts the values iptables-rules accepts', () => {
      const n = parse({ shim6d: { netfilter: { outChain: 'T-OUT', inChain: 'T-IN', pairSet: 'tset', outQueue: 0, inQueue: 65535, pairMatch: 'per-ulid', maxPairs: 2 ** 31 } } }).shim6d.netfilter;
      assert.deepEqual(n, { outChain: 'T-OUT', inChain: 'T-IN', pairSet: 'tset', outQueue: 0, inQueue: 65535, pairMatch: 'per-ulid', maxPairs: 2 ** 31 });
    });

    it("turns iptables-rules' RangeError into a ConfigError naming the field", () => {
      rejects({ shim6d: { netfilter: { outChain: 'INPUT' } } }, 'shim6d.netfilter.outChain', /^config key 'shim6d\.netfilter\.outChain': 'INPUT' is not a usable chain name/);
      rejects({ shim6d: { netfilter: { inChain: 'bad chain' } } }, 'shim6d.netfilter.inChain', /is not a usable chain name/);
      rejects({ shim6d: { netfilter: { inChain: 'X'.repeat(29) } } }, 'shim6d.netfilter.inChain');
      rejects({ shim6d: { netfilter: { pairSet: 's'.repeat(23) } } }, 'shim6d.netfilter.pairSet', /is not a usable set name/);
      rejects({ shim6d: { netfilter: { inChain: 'SHIM6-OUT' } } }, 'shim6d.netfilter.outChain', /outChain and inChain must differ/);
    });

    it('checks queue numbers, pairMatch and maxPairs', () => {
      rejects({ shim6d: { netfilter: { outQueue: 65536 } } }, 'shim6d.netfilter.outQueue', /expected an integer from 0 to 65535, got 65536$/);
      rejects({ shim6d: { netfilter: { inQueue: -1 } } }, 'shim6d.netfilter.inQueue');
      rejects({ shim6d: { netfilter: { inQueue: 141 } } }, 'shim6d.netfilter.inQueue', /must differ from outQueue/);
      rejects({ shim6d: { netfilter: { pairMatch: 'both' } } }, 'shim6d.netfilter.pairMatch', /expected one of "auto", "pair-set", "per-ulid", got "both"$/);
      rejects({ shim6d: { netfilter: { maxPairs: 0 } } }, 'shim6d.netfilter.maxPairs');
      rejects({ shim6d: { netfilter: { maxPairs: 2 ** 31 + 1 } } }, 'shim6d.netfilter.maxPairs');
    });
  });

  describe('dataPlane', () => {
    it("takes pathMtu 'auto' or 1280..65535", () => {
      assert.equal(parse({ shim6d: { dataPlane: { pathMtu: 'auto' } } }).shim6d.dataPlane.pathMtu, 'auto');
      assert.equal(parse({ shim6d: { dataPlane: { pathMtu: 1400 } } }).shim6d.dataPlane.pathMtu, 1400);
      assert.equal(parse({ shim6d: { dataPlane: { pathMtu: 1280 } } }).shim6d.dataPlane.pathMtu, 1280);
      rejects({ shim6d: { dataPlane: { pathMtu: 1000 } } }, 'shim6d.dataPlane.pathMtu', "config key 'shim6d.dataPlane.pathMtu': expected \"auto\" or an integer from 1280 to 65535, got 1000");
      rejects({ shim6d: { dataPlane: { pathMtu: 'AUTO' } } }, 'shim6d.dataPlane.pathMtu');
      rejects({ shim6d: { dataPlane: { pathMtu: 65536 } } }, 'shim6d.dataPlane.pathMtu');
    });

    it('checks ptbPerSecond and queueBufferBytes', () => {
      assert.equal(parse({ shim6d: { dataPlane: { ptbPerSecond: 0 } } }).shim6d.dataPlane.ptbPerSecond, 0);
      rejects({ shim6d: { dataPlane: { ptbPerSecond: -1 } } }, 'shim6d.dataPlane.ptbPerSecond');
      rejects({ shim6d: { dataPlane: { ptbPerSecond: 10001 } } }, 'shim6d.dataPlane.ptbPerSecond');
      rejects({ shim6d: { dataPlane: { queueBufferBytes: 1024 } } }, 'shim6d.dataPlane.queueBufferBytes', /from 65536 to 268435456, got 1024$/);
      rejects({ shim6d: { dataPlane: { queueBufferBytes: 268435457 } } }, 'shim6d.dataPlane.queueBufferBytes');
    });
  });

  describe('static contexts', () => {
    it('fills in locator lists and the locator pair, in canonical text', () => {
      const [c] = parse(withContexts({ ...CTX, localUlid: '2001:DB8:A1:0::A' })).shim6d.contexts;
      assert.deepEqual(c, {
        localUlid: '2001:db8:a1::a',
        peerUlid: '2001:db8:b1::b',
        localContextTag: 1,
        peerContextTag: 2,
        localLocators: ['2001:db8:a1::a'],
        peerLocators: ['2001:db8:b1::b'],
        locatorPair: { local: '2001:db8:a1::a', peer: '2001:db8:b1::b' },
      });
    });

    it('keeps given locators and pair; without a pair, uses the ULIDs if listed, else the first locators', () => {
      const full = { ...CTX, id: 7, localLocators: ['2001:db8:a1::a', '2001:db8:a2::a'], peerLocators: ['2001:db8:b2::b', '2001:db8:b1::b'], locatorPair: { local: '2001:db8:a2::a', peer: '2001:db8:b2::b' } };
      const [c] = parse(withContexts(full)).shim6d.contexts;
      assert.deepEqual(c, full);
      const [d] = parse(withContexts({ ...CTX, localLocators: ['2001:db8:a2::a'], peerLocators: ['2001:db8:b2::b', '2001:db8:b1::b'] })).shim6d.contexts;
      assert.deepEqual(d?.locatorPair, { local: '2001:db8:a2::a', peer: '2001:db8:b1::b' });
    });

    it('checks the fields of a context', () => {
      const { localUlid: _omit, ...noLocal } = CTX;
      rejects(withContexts(noLocal), 'shim6d.contexts[0].localUlid', "config key 'shim6d.contexts[0].localUlid': missing (expected an IPv6 address)");
      rejects(withContexts({ ...CTX, peerUlid: '192.0.2.1' }), 'shim6d.contexts[0].peerUlid', /expected an IPv6 address, got "192\.0\.2\.1"$/);
      rejects(withContexts({ ...CTX, peerUlid: 'fe80::1%eth0' }), 'shim6d.contexts[0].peerUlid');
      rejects(withContexts({ ...CTX, id: 0 }), 'shim6d.contexts[0].id');
      rejects(withContexts({ ...CTX, id: 2 ** 31 }), 'shim6d.contexts[0].id');
      assert.equal(parse(withContexts({ ...CTX, localContextTag: MAX_CONTEXT_TAG, peerContextTag: 0 })).shim6d.contexts[0]?.localContextTag, 140737488355327);
      rejects(withContexts({ ...CTX, peerContextTag: 2 ** 47 }), 'shim6d.contexts[0].peerContextTag', /expected an integer from 0 to 140737488355327, got 140737488355328$/);
      rejects(withContexts({ ...CTX, localContextTag: -1 }), 'shim6d.contexts[0].localContextTag');
      rejects(withContexts({ ...CTX, localLocators: [] }), 'shim6d.contexts[0].localLocators');
      rejects(withContexts({ ...CTX, peerLocators: ['2001:db8:b1::b', 'nope'] }), 'shim6d.contexts[0].peerLocators[1]');
      rejects(withContexts(CTX, { ...CTX, localContextTag: 3, locatorPair: { local: '2001:db8:a1::a' } }), 'shim6d.contexts[1].locatorPair.peer', /missing/);
      rejects({ shim6d: { contexts: {} } }, 'shim6d.contexts', /expected an array of an object, got an object$/);
    });

    it('wants the locator pair in the locator lists', () => {
      rejects(
        withContexts({ ...CTX, locatorPair: { local: '2001:db8:a2::a', peer: '2001:db8:b1::b' } }),
        'shim6d.contexts[0].locatorPair.local',
        "config key 'shim6d.contexts[0].locatorPair.local': 2001:db8:a2::a is not in localLocators (2001:db8:a1::a)",
      );
      rejects(
        withContexts({ ...CTX, peerLocators: ['2001:db8:b1::b', '2001:db8:b2::b'], locatorPair: { local: '2001:db8:a1::a', peer: '2001:db8:b3::b' } }),
        'shim6d.contexts[0].locatorPair.peer',
        /2001:db8:b3::b is not in peerLocators \(2001:db8:b1::b, 2001:db8:b2::b\)$/,
      );
    });

    it('refuses duplicate addresses in a locator list (compared in canonical form)', () => {
      rejects(withContexts({ ...CTX, localLocators: ['2001:db8:a1::a', '2001:db8:a2::a', '2001:DB8:A1::A'] }), 'shim6d.contexts[0].localLocators[2]', /duplicate of localLocators\[0\] \(2001:db8:a1::a\)$/);
      rejects(withContexts({ ...CTX, peerLocators: ['2001:db8:b1::b', '2001:db8:b1:0::b'] }), 'shim6d.contexts[0].peerLocators[1]');
    });

    it('wants ids, local context tags and ULID pairs unique across contexts', () => {
      const second = { ...CTX, peerUlid: '2001:db8:c1::c', localContextTag: 9 };
      assert.equal(parse(withContexts(CTX, second)).shim6d.contexts.length, 2);
      rejects(withContexts(CTX, { ...second, localContextTag: 1 }), 'shim6d.contexts[1].localContextTag', "config key 'shim6d.contexts[1].localContextTag': duplicate of contexts[0].localContextTag (1)");
      rejects(withContexts({ ...CTX, id: 5 }, { ...second, id: 5 }), 'shim6d.contexts[1].id', /duplicate of contexts\[0\]\.id \(5\)$/);
      rejects(withContexts(CTX, second, { ...CTX, localContextTag: 10, peerUlid: '2001:DB8:B1::B' }), 'shim6d.contexts[2].peerUlid', /contexts\[0\] already has the ULID pair \(2001:db8:a1::a, 2001:db8:b1::b\)$/);
      // The same peer context tag towards two peers is fine: the peers chose them.
      assert.equal(parse(withContexts(CTX, { ...second, peerContextTag: CTX.peerContextTag })).shim6d.contexts.length, 2);
    });
  });

  describe('JSON text and files', () => {
    it('names the file, line and column of a JSON syntax error, with key ""', () => {
      const cases: [string, RegExp][] = [
        ['{"runDir": }', /^config: \/etc\/shim6\/test\.json: invalid JSON at line 1, column 12: unexpected character "}"$/],
        ['{\n  "runDir": "/x",\n}', /^config: \/etc\/shim6\/test\.json: invalid JSON at line 3, column 1: unexpected character "}"$/],
        ['{"runDir": "/x"', /at line 1, column 16: unexpected end of input$/],
        ['', /at line 1, column 1: unexpected end of input$/],
        ['{} {}', /at line 1, column 4: unexpected "{" after the end of the JSON value$/],
        ['{"runDir": "/x\ny"}', /at line 1, column 15: control character in string$/],
        ["{'runDir': '/x'}", /at line 1, column 2: unexpected character "'"$/],
        ['{"shim6d": {"console": {"port": 01}}}', /at line 1, column 34: unexpected character "1"$/],
      ];
      for (const [text, message] of cases) {
        assert.throws(() => parseShim6Config(text, SRC), (err: unknown) => {
          assert.ok(err instanceof ConfigError);
          assert.equal(err.key, '');
          assert.equal(err.source, SRC);
          assert.match(err.message, message);
          return true;
        }, text);
      }
    });

    it('refuses duplicate keys, naming them', () => {
      assert.throws(() => parseShim6Config('{"shim6d": {"console": {"port": 1, "port": 2}}}', SRC), (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.key, 'shim6d.console.port');
        assert.equal(err.message, "config key 'shim6d.console.port': duplicate key (/etc/shim6/test.json line 1, column 36)");
        return true;
      });
    });

    it('tells which file a schema error came from without changing its message', () => {
      assert.throws(() => parseShim6Config('{"runDir": 1}', SRC), (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.source, SRC);
        assert.equal(err.message, "config key 'runDir': expected an absolute path, got 1");
        return true;
      });
    });

    it('loads a file', () => {
      const path = join(dir, 'ok.json');
      writeFileSync(path, JSON.stringify({ runDir: '/tmp/x', shim6d: { console: { enabled: false } } }, null, 2));
      const c = loadShim6Config(path);
      assert.equal(c.shim6d.pidFile, '/tmp/x/shim6d.pid');
      assert.equal(c.shim6d.console.enabled, false);
    });

    it('names a missing file, a directory and an unreadable file', function () {
      const missing = join(dir, 'missing.json');
      assert.throws(() => loadShim6Config(missing), (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.key, '');
        assert.equal(err.message, `config: cannot read config file ${missing}: no such file`);
        return true;
      });
      assert.throws(() => loadShim6Config(dir), { name: 'ConfigError', message: `config: cannot read config file ${dir}: is a directory` });
      if (process.getuid?.() === 0) return; // root reads whatever the mode
      const secret = join(dir, 'secret.json');
      writeFileSync(secret, '{}');
      chmodSync(secret, 0o000);
      assert.throws(() => loadShim6Config(secret), { name: 'ConfigError', message: `config: cannot read config file ${secret}: permission denied` });
    });

    it('refuses files over 1 MiB', () => {
      const path = join(dir, 'big.json');
      const text = `{"runDir": "/x"}${' '.repeat(1024 * 1024 - 16 + 1)}`;
      assert.equal(Buffer.byteLength(text), 1024 * 1024 + 1);
      writeFileSync(path, text);
      assert.throws(() => loadShim6Config(path), { name: 'ConfigError', message: `config: cannot read config file ${path}: larger than 1048576 bytes (1048577)` });
      assert.throws(() => parseShim6Config(text, SRC), { name: 'ConfigError', message: `config: ${SRC}: larger than 1048576 bytes (1048577)` });
      writeFileSync(path, text.slice(0, -1));
      assert.equal(loadShim6Config(path).runDir, '/x');
    });

    it('refuses a file that is not UTF-8', () => {
      const path = join(dir, 'latin1.json');
      writeFileSync(path, Buffer.from('{"runDir": "/caf\xe9"}', 'latin1'));
      assert.throws(() => loadShim6Config(path), { name: 'ConfigError', message: `config: ${path}: not valid UTF-8 text` });
    });
  });

  describe('schema combinators', () => {
    const s = object(
      {
        name: str({ minLength: 1, maxLength: 8, pattern: /^[a-z]+$/ }),
        mode: withDefault(oneOf(['a', 'b'] as const), 'a'),
        limit: withDefault(union(oneOf(['none'] as const), int({ min: 1, max: 9 })), 'none'),
        paths: optional(arrayOf(absolutePath(), { max: 2 })),
        inner: optional(union(int({ min: 0, max: 1 }), object({ x: int({ min: 0, max: 1 }) }))),
      },
      {
        check(v, key) {
          if (v.mode === 'b' && v.paths === undefined) throw new ConfigError(childKey(key, 'paths'), "required when mode is 'b'");
        },
      },
    );

    it('infers the parsed type', () => {
      const v: Infer<typeof s> = parseJsonConfig('{"name": "x"}', s, 'mem');
      // Compile-time checks: required, defaulted and optional fields and literal unions.
      const name: string = v.name;
      const mode: 'a' | 'b' = v.mode;
      const limit: 'none' | number = v.limit;
      const paths: string[] | undefined = v.paths;
      assert.deepEqual({ name, mode, limit, paths }, { name: 'x', mode: 'a', limit: 'none', paths: undefined });
      assert.equal('paths' in v, false);
    });

    it('describes strings, arrays and unions in errors, and runs the check hook', () => {
      const err = (text: string): string => {
        try {
          parseJsonConfig(text, s, 'mem');
        } catch (e) {
          assert.ok(e instanceof ConfigError);
          return `${e.key} | ${e.detail}`;
        }
        return 'no error';
      };
      assert.equal(err('{"name": "ABC"}'), 'name | expected a string of 1 to 8 characters matching /^[a-z]+$/, got "ABC"');
      assert.equal(err(`{"name": "${'x'.repeat(70)}"}`), `name | expected a string of 1 to 8 characters matching /^[a-z]+$/, got "${'x'.repeat(57)}..."`);
      assert.equal(err('{"name": "x", "paths": ["/a", "/b", "/c"]}'), 'paths | expected an array of at most 2 an absolute path, got 3 elements');
      assert.equal(err('{"name": "x", "inner": {"x": 2}}'), 'inner.x | expected an integer from 0 to 1, got 2');
      assert.equal(err('{"name": "x", "inner": "y"}'), 'inner | expected an integer from 0 to 1 or an object, got "y"');
      assert.equal(err('{"name": "x", "mode": "b"}'), "paths | required when mode is 'b'");
      assert.equal(err('{"name": "x", "mode": "b", "paths": []}'), 'no error');
    });

    it('loadConfigFile applies its own size bound', () => {
      const path = join(dir, 'small.json');
      writeFileSync(path, '{"name": "abc"}');
      assert.equal(loadConfigFile(path, s).name, 'abc');
      assert.throws(() => loadConfigFile(path, s, { maxBytes: 10 }), /larger than 10 bytes/);
    });
  });
});
