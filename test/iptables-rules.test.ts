/**
 * iptables-rules: the pure rule shapes and error classification, then the real kernel inside
 * the namespaces of a testbed (install idempotence, pairs in ipset, 5,000 pairs, removeAll,
 * stale state, names from the config, and fail-open through --queue-bypass).
 */
import { strict as assert } from 'node:assert';
import {
  chainRules,
  classify,
  CommandNotFoundError,
  hookRules,
  KernelSupportError,
  NetnsNotFoundError,
  NotPermittedError,
  resolveConfig,
  Shim6Rules,
  type PairMatch,
  type RulesConfig,
  type Runner,
} from '../iptables-rules';
import { Testbed, type Host } from '../scripts/lib/testbed';
import { waitFor } from '../scripts/lib/wait';

const A1 = '2001:db8:a1::a';
const A2 = '2001:db8:a2::a';
const B1 = '2001:db8:b1::b';
const B2 = '2001:db8:b2::b';

describe('iptables-rules', function () {
  describe('rule shapes and errors (no kernel)', () => {
    it('takes chain, set and queue names from the config and validates them', () => {
      const c = resolveConfig({ outChain: 'T-OUT', inChain: 'T-IN', pairSet: 'tset', outQueue: 7, inQueue: 8 });
      assert.deepEqual(hookRules(c), [
        { table: 'mangle', chain: 'OUTPUT', args: ['-j', 'T-OUT'] },
        { table: 'raw', chain: 'PREROUTING', args: ['-j', 'T-IN'] },
      ]);
      assert.deepEqual(
        chainRules(c, 'pair-set').map((r) => `${r.table} ${r.chain} ${r.args.join(' ')}`),
        [
          'mangle T-OUT -p 140 -j RETURN',
          'mangle T-OUT -m set --match-set tset src,dst -j NFQUEUE --queue-num 7 --queue-bypass',
          'raw T-IN -p 140 -j NFQUEUE --queue-num 8 --queue-bypass',
          'raw T-IN -m conntrack --ctstate UNTRACKED -m comment --comment shim6:reassemble-before-SHIM6-IN -j RETURN',
        ],
      );
      assert.equal(chainRules(c, 'per-ulid').length, 3, 'per-ulid: the pair rules come with the local ULIDs');
      const bad: Array<Partial<RulesConfig>> = [
        { outChain: 'OUTPUT' },
        { outChain: 'has space' },
        { inChain: 'X'.repeat(29) },
        { inChain: 'SHIM6-OUT' },
        { pairSet: 'a'.repeat(23) },
        { pairSet: 'new\nline' },
        { outQueue: 65536 },
        { inQueue: -1 },
        { netns: 'a b' },
        { maxPairs: 0 },
      ];
      for (const b of bad) assert.throws(() => resolveConfig(b), RangeError, JSON.stringify(b));
    });

    it('classifies failures into typed errors', () => {
      const enoent = Object.assign(new Error('spawn ip6tables ENOENT'), { code: 'ENOENT' });
      assert.ok(classify(['ip6tables'], enoent) instanceof CommandNotFoundError);
      const r = (stderr: string, code = 1) => ({ code, signal: null, stdout: '', stderr });
      assert.ok(classify(['ip', 'netns', 'exec', 'x', 'ipset'], r('exec of "ipset" failed: No such file or directory', 255)) instanceof CommandNotFoundError);
      assert.ok(classify(['ip6tables-save'], r('ip6tables-save v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)', 4)) instanceof NotPermittedError);
      assert.ok(classify(['ipset', 'list'], r('ipset v7.17: Kernel error received: Operation not permitted')) instanceof NotPermittedError);
      assert.ok(classify(['ipset', 'create'], r('ipset v7.17: Kernel error received: set type not supported')) instanceof KernelSupportError);
      assert.ok(classify(['ip', 'netns', 'exec', 'nope'], r('Cannot open network namespace "nope": No such file or directory')) instanceof NetnsNotFoundError);
      const other = classify(['ip6tables-restore'], r('Error occurred at line: 3', 2));
      assert.equal(other.name, 'CommandFailedError');
      assert.match(other.message, /ip6tables-restore: exit status 2: Error occurred at line: 3/);
    });

    it('rejects a bad address before running anything, and never uses a shell', async () => {
      const calls: string[][] = [];
      const runner: Runner = (argv) => {
        calls.push([...argv]);
        return Promise.resolve({ code: 0, signal: null, stdout: '', stderr: '' });
      };
      const rules = new Shim6Rules({ pairMatch: 'pair-set', netns: 'ns1' }, runner);
      await assert.rejects(rules.addShimmedPair('2001:db8::1', 'not-an-address'), RangeError);
      await assert.rejects(rules.addShimmedPair('192.0.2.1;rm', '2001:db8::2'), RangeError);
      await assert.rejects(rules.removeShimmedPairs([{ src: '', dst: '2001:db8::2' }]), RangeError);
      assert.equal(calls.length, 0);
      await rules.addShimmedPair('2001:DB8:0::1', '2001:db8::2');
      assert.deepEqual(calls, [['ip', 'netns', 'exec', 'ns1', 'ipset', '-exist', 'restore']]);
    });

    it('pair-set: the batches it hands to ip6tables-restore and ipset restore, and how it reads ipset save', async () => {
      // The kernel of the CI machine lacks hash:net,net, so this part is checked on the command level.
      const calls: Array<{ argv: string[]; input: string | undefined }> = [];
      const runner: Runner = (argv, input) => {
        calls.push({ argv: [...argv], input });
        const stdout =
          argv.join(' ') === 'ipset save shim6-pairs'
            ? 'create shim6-pairs hash:net,net family inet6 hashsize 1024 maxelem 65536\n' +
              'add shim6-pairs 2001:db8:a2::a/128,2001:db8:b2::b/128\n' +
              'add shim6-pairs 2001:db8:a1::a,2001:0db8:b1:0:0:0:0:b\n'
            : '';
        return Promise.resolve({ code: 0, signal: null, stdout, stderr: '' });
      };
      const rules = new Shim6Rules({ pairMatch: 'pair-set' }, runner);
      await rules.install();
      assert.deepEqual(
        calls.map((c) => c.argv.join(' ')),
        ['ip6tables-save', 'ipset list -n', 'ipset create shim6-pairs hash:net,net family inet6 maxelem 65536', 'ip6tables-restore -w 10 --noflush'],
      );
      assert.equal(
        calls[3]?.input,
        [
          '*mangle',
          ':SHIM6-OUT - [0:0]',
          '-A SHIM6-OUT -p 140 -j RETURN',
          '-A SHIM6-OUT -m set --match-set shim6-pairs src,dst -j NFQUEUE --queue-num 141 --queue-bypass',
          '-I OUTPUT 1 -j SHIM6-OUT',
          'COMMIT',
          '*raw',
          ':SHIM6-IN - [0:0]',
          '-A SHIM6-IN -p 140 -j NFQUEUE --queue-num 140 --queue-bypass',
          '-A SHIM6-IN -m conntrack --ctstate UNTRACKED -m comment --comment shim6:reassemble-before-SHIM6-IN -j RETURN',
          '-I PREROUTING 1 -j SHIM6-IN',
          'COMMIT',
          '',
        ].join('\n'),
      );
      calls.length = 0;
      await rules.addShimmedPairs([
        { src: A1, dst: B1 },
        { src: A2, dst: B2 },
      ]);
      await rules.removeShimmedPair(A1, B1);
      assert.deepEqual(calls, [
        { argv: ['ipset', '-exist', 'restore'], input: `add shim6-pairs ${A1}/128,${B1}/128\nadd shim6-pairs ${A2}/128,${B2}/128\n` },
        { argv: ['ipset', '-exist', 'restore'], input: `del shim6-pairs ${A1}/128,${B1}/128\n` },
      ]);
      assert.deepEqual(await rules.listShimmedPairs(), [
        { src: A1, dst: B1 },
        { src: A2, dst: B2 },
      ]);
    });
  });

  describe('in a testbed', function () {
    this.timeout(60_000);
    let tb: Testbed | undefined;
    const made: Shim6Rules[] = [];
    let pairSetSupported = false;

    const bed = (): Testbed => {
      assert.ok(tb, 'testbed not created');
      return tb;
    };
    const rulesIn = (host: Host, config: Partial<RulesConfig> = {}): Shim6Rules => {
      const r = new Shim6Rules({ netns: bed().namespaces[host], ...config });
      made.push(r);
      return r;
    };
    const save = async (host: Host, counters = false): Promise<string> =>
      (await bed().exec(host, ['ip6tables-save', ...(counters ? ['-c'] : [])])).stdout;
    const ruleLines = (text: string): string[] =>
      text
        .split('\n')
        .map((l) => l.replace(/^\[\d+:\d+\] /, ''))
        .filter((l) => l.startsWith('-A '));
    const setNames = async (host: Host): Promise<string[]> =>
      (await bed().exec(host, ['ipset', 'list', '-n'])).stdout.split('\n').filter((s) => s !== '');
    /** Sum of "Number of entries" over the sets whose name starts with prefix. */
    const setEntries = async (host: Host, prefix: string): Promise<number> => {
      const out = (await bed().exec(host, ['ipset', 'list', '-t'])).stdout;
      let n = 0;
      let mine = false;
      for (const line of out.split('\n')) {
        const name = /^Name: (\S+)/.exec(line)?.[1];
        if (name !== undefined) mine = name.startsWith(prefix);
        const c = /^Number of entries: (\d+)/.exec(line)?.[1];
        if (mine && c !== undefined) n += Number(c);
      }
      return n;
    };

    before(async () => {
      tb = await Testbed.create();
      pairSetSupported = (await new Shim6Rules({ netns: tb.namespaces.a }).pairMatch()) === 'pair-set';
    });

    afterEach(async () => {
      // Each test starts from clean namespaces, whatever the last one left.
      for (const r of made.splice(0)) await r.removeAll();
    });

    after(async () => {
      await tb?.destroy();
    });

    it("'auto' picks hash:net,net exactly when the kernel has it", async () => {
      const probe = await bed().exec('a', ['ipset', 'create', 'probe-netnet', 'hash:net,net', 'family', 'inet6'], { check: false });
      if (probe.code === 0) await bed().exec('a', ['ipset', 'destroy', 'probe-netnet']);
      else assert.match(probe.stderr, /not supported/);
      assert.equal(await rulesIn('a').pairMatch(), probe.code === 0 ? 'pair-set' : 'per-ulid');
    });

    it("asking for 'pair-set' on a kernel without hash:net,net fails with KernelSupportError", async function () {
      if (pairSetSupported) this.skip();
      await assert.rejects(rulesIn('a', { pairMatch: 'pair-set' }).install(), KernelSupportError);
      assert.deepEqual(ruleLines(await save('a')), []);
    });

    it('reports a missing program, a missing namespace and a non-root caller with typed errors', async () => {
      await assert.rejects(new Shim6Rules({ netns: bed().namespaces.a, commands: { ip6tablesSave: '/nonexistent/ip6tables-save' } as RulesConfig['commands'] }).removeAll(), CommandNotFoundError);
      await assert.rejects(new Shim6Rules({ commands: { ipset: '/nonexistent/ipset' } as RulesConfig['commands'] }).check(), (e: unknown) => {
        assert.ok(e instanceof CommandNotFoundError, String(e));
        assert.match(e.message, /'\/nonexistent\/ipset' is not installed.*package ipset/);
        return true;
      });
      await assert.rejects(new Shim6Rules({ netns: `s6-no-such-${process.pid}` }).check(), NetnsNotFoundError);
      const nobody = new Shim6Rules({ prefix: ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] });
      await assert.rejects(nobody.check(), (e: unknown) => {
        assert.ok(e instanceof NotPermittedError, String(e));
        assert.match(e.message, /must run as root/);
        return true;
      });
    });

    for (const match of ['per-ulid', 'pair-set'] as PairMatch[]) {
      describe(`with ${match} matching`, function () {
        before(function () {
          if (match === 'pair-set' && !pairSetSupported) this.skip(); // the kernel lacks hash:net,net
        });
        const rules = (host: Host = 'a', config: Partial<RulesConfig> = {}): Shim6Rules => rulesIn(host, { pairMatch: match, ...config });

        it('install twice leaves each rule exactly once, and check() agrees', async () => {
          const r = rules();
          const first = await r.install();
          assert.equal(first.match, match);
          await r.install();
          const lines = ruleLines(await save('a'));
          const expected = [
            '-A OUTPUT -j SHIM6-OUT',
            '-A PREROUTING -j SHIM6-IN',
            '-A SHIM6-OUT -p shim6 -j RETURN',
            '-A SHIM6-IN -p shim6 -j NFQUEUE --queue-num 140 --queue-bypass',
            '-A SHIM6-IN -m conntrack --ctstate UNTRACKED -m comment --comment "shim6:reassemble-before-SHIM6-IN" -j RETURN',
            ...(match === 'pair-set' ? ['-A SHIM6-OUT -m set --match-set shim6-pairs src,dst -j NFQUEUE --queue-num 141 --queue-bypass'] : []),
          ];
          for (const e of expected) assert.equal(lines.filter((l) => l === e).length, 1, `${e} once in:\n${lines.join('\n')}`);
          assert.equal(lines.filter((l) => /SHIM6/.test(l)).length, expected.length);
          assert.deepEqual(await r.check(), { ok: true, missing: [], unexpected: [] });
        });

        it('check() names a missing rule, a duplicate jump and a foreign rule; install repairs them', async () => {
          const r = rules();
          await r.install();
          await bed().exec('a', ['ip6tables', '-w', '-t', 'raw', '-D', 'SHIM6-IN', '-p', '140', '-j', 'NFQUEUE', '--queue-num', '140', '--queue-bypass']);
          await bed().exec('a', ['ip6tables', '-w', '-t', 'mangle', '-A', 'OUTPUT', '-j', 'SHIM6-OUT']);
          await bed().exec('a', ['ip6tables', '-w', '-t', 'mangle', '-A', 'SHIM6-OUT', '-p', 'udp', '-j', 'ACCEPT']);
          const bad = await r.check();
          assert.equal(bad.ok, false);
          assert.deepEqual(bad.missing, ['rule: raw -A SHIM6-IN -p 140 -j NFQUEUE --queue-num 140 --queue-bypass']);
          assert.equal(bad.unexpected.length, 2, bad.unexpected.join('\n'));
          assert.match(bad.unexpected[0] ?? '', /OUTPUT -j SHIM6-OUT appears 2 times/);
          assert.match(bad.unexpected[1] ?? '', /-A SHIM6-OUT -p udp/);
          await r.install();
          assert.equal((await r.check()).ok, true);
        });

        it('adds and removes pairs, as ipset list shows', async () => {
          const r = rules();
          await r.install();
          await r.addShimmedPair(A1, B1);
          await r.addShimmedPair('2001:DB8:A1:0:0::A', B1); // same pair, other spelling: idempotent
          await r.addShimmedPairs([
            { src: A1, dst: B2 },
            { src: A2, dst: B1 },
          ]);
          const listed = (await bed().exec('a', ['ipset', 'list'])).stdout;
          for (const addr of [B1, B2]) assert.ok(listed.includes(addr), `${addr} in ipset list`);
          assert.equal(await setEntries('a', 'shim6-pairs'), 3);
          assert.deepEqual(await r.listShimmedPairs(), [
            { src: A1, dst: B1 },
            { src: A1, dst: B2 },
            { src: A2, dst: B1 },
          ]);
          await r.removeShimmedPair(A1, B2);
          await r.removeShimmedPair(A1, B2); // idempotent
          await r.removeShimmedPair('2001:db8:ff::1', B2); // never added
          assert.equal(await setEntries('a', 'shim6-pairs'), 2);
          assert.doesNotMatch((await bed().exec('a', ['ipset', 'list'])).stdout, /2001:db8:b2::b/);
          await r.setShimmedPairs([
            { src: A2, dst: B1 },
            { src: A2, dst: B2 },
          ]);
          assert.deepEqual(await r.listShimmedPairs(), [
            { src: A2, dst: B1 },
            { src: A2, dst: B2 },
          ]);
          // Another instance (a restarted daemon) reads the same state from the kernel.
          assert.deepEqual(await rules().listShimmedPairs(), await r.listShimmedPairs());
          assert.equal((await r.check()).ok, true);
        });

        it('adds 5,000 pairs in one batch with a constant number of rules', async () => {
          const r = rules();
          await r.install();
          const before = ruleLines(await save('a')).length;
          const locals = ['2001:db8:a1::a', '2001:db8:a2::a', '2001:db8:a1::10', '2001:db8:a2::10'];
          const pairs = Array.from({ length: 5000 }, (_, i) => ({
            src: locals[i % locals.length] ?? A1,
            dst: `2001:db8:${(0x1000 + Math.floor(i / 256)).toString(16)}::${(i % 256).toString(16)}`,
          }));
          await r.addShimmedPairs(pairs);
          assert.equal(await setEntries('a', 'shim6-pairs'), 5000);
          assert.equal(await r.countShimmedPairs(), 5000);
          // pair-set: no new rule at all; per-ulid: one per local ULID, whatever the number of pairs.
          assert.equal(ruleLines(await save('a')).length, before + (match === 'pair-set' ? 0 : locals.length));
          await r.removeShimmedPairs(pairs);
          assert.equal(await r.countShimmedPairs(), 0);
        });

        it('removeAll leaves no SHIM6 rule, chain or set, and is idempotent', async () => {
          const r = rules();
          await r.install();
          await r.addShimmedPairs([
            { src: A1, dst: B1 },
            { src: A2, dst: B2 },
          ]);
          const report = await r.removeAll();
          assert.equal(report.jumps, 2);
          assert.deepEqual(report.chains.sort(), ['mangle/SHIM6-OUT', 'raw/SHIM6-IN']);
          assert.equal(report.sets.length, match === 'pair-set' ? 1 : 2);
          assert.doesNotMatch(await save('a'), /shim6/i);
          assert.deepEqual(await setNames('a'), []);
          assert.deepEqual(await r.removeAll(), { jumps: 0, chains: [], sets: [] });
          assert.equal((await r.check()).ok, false);
        });

        it('install cleans what a crashed run left behind', async () => {
          const crashed = rules();
          await crashed.install();
          await crashed.addShimmedPairs([
            { src: A1, dst: B1 },
            { src: A2, dst: B2 },
          ]);
          // The crash happened half-way through a second install: a second jump is there too.
          await bed().exec('a', ['ip6tables', '-w', '-t', 'raw', '-I', 'PREROUTING', '-j', 'SHIM6-IN']);
          const fresh = new Shim6Rules({ netns: bed().namespaces.a, pairMatch: match });
          made.push(fresh);
          const report = await fresh.install();
          assert.equal(report.removed.jumps, 3);
          assert.equal(report.removed.sets.length, match === 'pair-set' ? 1 : 2);
          const lines = ruleLines(await save('a'));
          assert.equal(lines.filter((l) => l === '-A PREROUTING -j SHIM6-IN').length, 1);
          assert.equal(lines.filter((l) => l === '-A OUTPUT -j SHIM6-OUT').length, 1);
          assert.deepEqual(await fresh.listShimmedPairs(), []);
          assert.equal((await fresh.check()).ok, true);
        });

        it('takes every name and queue number from the config: two instances side by side', async () => {
          const mine = rules('b');
          const other = rules('b', { outChain: 'S6T-OUT', inChain: 'S6T-IN', pairSet: 's6t', outQueue: 7, inQueue: 8 });
          await Promise.all([mine.install(), other.install()]);
          await Promise.all([mine.addShimmedPair(B1, A1), other.addShimmedPair(B2, A2)]);
          const text = await save('b');
          assert.match(text, /-A OUTPUT -j S6T-OUT/);
          assert.match(text, /-A S6T-IN -p shim6 -j NFQUEUE --queue-num 8 --queue-bypass/);
          assert.match(text, /--queue-num 7 --queue-bypass/);
          assert.deepEqual(await other.listShimmedPairs(), [{ src: B2, dst: A2 }]);
          assert.deepEqual(await mine.listShimmedPairs(), [{ src: B1, dst: A1 }]);
          await other.removeAll();
          assert.doesNotMatch(await save('b'), /S6T/);
          assert.ok((await setNames('b')).every((s) => !s.startsWith('s6t')));
          assert.equal((await mine.check()).ok, true);
          // Host A saw none of it.
          assert.doesNotMatch(await save('a'), /SHIM6|S6T/);
        });

        it('fails open: with no NFQUEUE listener, shimmed pairs still talk (--queue-bypass)', async () => {
          const t = bed();
          const r = rules();
          await r.install();
          await r.addShimmedPair(A1, B1);
          /** Packets counted by the NFQUEUE rules of a chain in A. */
          const queued = async (chain: string): Promise<number> =>
            (await save('a', true))
              .split('\n')
              .map((l) => new RegExp(`^\\[(\\d+):\\d+\\] -A ${chain} .*-j NFQUEUE`).exec(l)?.[1])
              .reduce((sum, n) => sum + (n === undefined ? 0 : Number(n)), 0);
          const echo = await t.udpServer('b', [B1, B2], { echo: true });
          try {
            const before = await queued('SHIM6-OUT');
            assert.equal(await t.udpRoundTrip('a', A1, B1, echo.port), true, 'a1 -> b1 answered');
            const after = await queued('SHIM6-OUT');
            assert.ok(after > before, `the pair's packets went through the NFQUEUE rule (${before} -> ${after})`);
            // A pair not in the set is not queued at all.
            assert.equal(await t.udpRoundTrip('a', A2, B2, echo.port), true);
            assert.equal(await queued('SHIM6-OUT'), after);
          } finally {
            await echo.close();
          }
          // Inbound: a protocol-140 packet passes SHIM6-IN's queue and reaches INPUT.
          await t.exec('a', ['ip6tables', '-w', '-A', 'INPUT', '-p', '140', '-j', 'ACCEPT']);
          const send140 = [
            'import socket, sys',
            's = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 140)',
            's.bind((sys.argv[1], 0))',
            // Payload extension header: Next Header 59, Hdr Ext Len 0, P=1, context tag 1.
            's.sendto(bytes([59, 0, 0x80, 0, 0, 0, 0, 1]), (sys.argv[2], 0))',
          ].join('\n');
          await t.exec('b', ['python3', '-c', send140, B1, A1]);
          const inputCount = async (): Promise<number> =>
            Number(/^\[(\d+):\d+\] -A INPUT -p shim6 -j ACCEPT$/m.exec(await save('a', true))?.[1] ?? 0);
          await waitFor(async () => (await queued('SHIM6-IN')) >= 1 && (await inputCount()) >= 1, {
            what: 'the Shim6 packet to pass SHIM6-IN and reach INPUT',
          });
          await t.exec('a', ['ip6tables', '-w', '-D', 'INPUT', '-p', '140', '-j', 'ACCEPT']);
        });
      });
    }
  });
});
