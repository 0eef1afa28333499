/**
 * The two-host testbed: isolation between testbeds, the routing model (a_i -> b_j crosses R_i,
 * the reply crosses R_j), path cuts both ways and one way, and clean destruction.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBuilt } from '../scripts/lib/shim6d';
import { run, Testbed, TESTBED_SCRIPT, type Host } from '../scripts/lib/testbed';

/** Namespaces in `ip netns list`. */
async function netnsList(): Promise<string[]> {
  const out = await run(['ip', 'netns', 'list']);
  return out.stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n !== '');
}

const hosts: Host[] = ['a', 'b', 'r1', 'r2'];
/** Time a broken pair gets to prove it is broken (a working one answers in milliseconds). */
const BROKEN_MS = 1000;

describe('testbed (scripts/testbed)', function () {
  this.timeout(60_000);
  let tb1: Testbed | undefined;
  let tb2: Testbed | undefined;

  before(async () => {
    // Two at once, as parallel test files would.
    const made = await Promise.allSettled([Testbed.create(), Testbed.create()]);
    tb1 = made[0].status === 'fulfilled' ? made[0].value : undefined;
    tb2 = made[1].status === 'fulfilled' ? made[1].value : undefined;
    for (const m of made) if (m.status === 'rejected') throw m.reason;
  });

  after(async () => {
    const results = await Promise.allSettled([tb1?.destroy(), tb2?.destroy()]);
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  });

  afterEach(async () => {
    // Whatever a failed test left cut, the next one starts with both paths up.
    if (tb1) await Promise.all([tb1.restore(1), tb1.restore(2)]);
  });

  const one = (): Testbed => {
    assert.ok(tb1, 'testbed 1 was not created');
    return tb1;
  };
  const two = (): Testbed => {
    assert.ok(tb2, 'testbed 2 was not created');
    return tb2;
  };

  /** Which of the four pairs (a_i, b_j) answer a UDP probe from A, as "a1-b1" ... */
  async function workingPairs(tb: Testbed): Promise<string[]> {
    const echo = await tb.udpServer('b', tb.b.locators, { echo: true });
    try {
      const pairs = tb.a.locators.flatMap((src, i) => tb.b.locators.map((dst, j) => ({ src, dst, name: `a${i + 1}-b${j + 1}` })));
      const ok = await Promise.all(pairs.map((p) => tb.udpRoundTrip('a', p.src, p.dst, echo.port, { timeoutMs: BROKEN_MS })));
      return pairs.filter((_, k) => ok[k]).map((p) => p.name);
    } finally {
      await echo.close();
    }
  }

  it('builds two testbeds at once without a name collision', async () => {
    const [t1, t2] = [one(), two()];
    assert.notEqual(t1.id, t2.id);
    const names1 = hosts.map((h) => t1.namespaces[h]);
    const names2 = hosts.map((h) => t2.namespaces[h]);
    assert.equal(new Set([...names1, ...names2]).size, 8, 'eight distinct namespaces');
    const listed = await netnsList();
    for (const n of [...names1, ...names2]) assert.ok(listed.includes(n), `${n} in ip netns list`);
    for (const t of [t1, t2]) {
      assert.deepEqual(t.a.locators, ['2001:db8:a1::a', '2001:db8:a2::a']);
      assert.deepEqual(t.b.locators, ['2001:db8:b1::b', '2001:db8:b2::b']);
      for (const h of hosts) {
        const out = await t.exec(h, ['ip', '-o', 'link', 'show']);
        const names = out.stdout
          .split('\n')
          .map((l) => /^\d+:\s+([^:@]+)/.exec(l)?.[1])
          .filter((n): n is string => n !== undefined && n !== 'lo');
        assert.equal(names.length, 2, `two links in ${h}: ${names.join(' ')}`);
        for (const n of names) {
          assert.ok(n.length <= 15, `${n} is at most 15 characters`);
          assert.ok(n.includes(t.id), `${n} derives from the ID ${t.id}`);
        }
      }
      const st = await t.status();
      assert.deepEqual(st, { complete: true, missing: [], cut: { 1: [], 2: [] } });
    }
    // The hosts have conntrack accounting on.
    const acct = await t1.exec('a', ['sysctl', '-n', 'net.netfilter.nf_conntrack_acct']);
    assert.equal(acct.stdout.trim(), '1');
  });

  it('carries UDP on all four locator pairs while both paths are up (in both testbeds)', async () => {
    const [w1, w2] = await Promise.all([workingPairs(one()), workingPairs(two())]);
    assert.deepEqual(w1, ['a1-b1', 'a1-b2', 'a2-b1', 'a2-b2']);
    assert.deepEqual(w2, ['a1-b1', 'a1-b2', 'a2-b1', 'a2-b2']);
  });

  it('leaves an unspecified-source connection to b1 on path 1', async () => {
    const tb = one();
    const out = await tb.exec('a', ['ip', '-6', 'route', 'get', tb.b.locators[0] ?? '']);
    assert.match(out.stdout, new RegExp(`dev ${tb.a.interfaces[0] ?? '?'} .*src ${tb.a.locators[0] ?? '?'}`));
  });

  it('cutting path 1 both ways breaks exactly the pairs that cross R1, restore repairs them', async () => {
    const tb = one();
    await tb.cut(1);
    assert.deepEqual((await tb.status()).cut, { 1: ['a-to-b', 'b-to-a'], 2: [] });
    // a_i -> b_j crosses R_i, the reply crosses R_j: only (a2, b2) avoids R1.
    assert.deepEqual(await workingPairs(tb), ['a2-b2']);
    // The other testbed does not notice.
    assert.deepEqual(await workingPairs(two()), ['a1-b1', 'a1-b2', 'a2-b1', 'a2-b2']);
    await tb.restore(1);
    assert.deepEqual((await tb.status()).cut, { 1: [], 2: [] });
    assert.deepEqual(await workingPairs(tb), ['a1-b1', 'a1-b2', 'a2-b1', 'a2-b2']);
  });

  it('cutting path 2 leaves only (a1, b1)', async () => {
    const tb = one();
    await tb.cut(2);
    assert.deepEqual(await workingPairs(tb), ['a1-b1']);
    await tb.restore(2);
    assert.deepEqual(await workingPairs(tb), ['a1-b1', 'a1-b2', 'a2-b1', 'a2-b2']);
  });

  it('cut and restore are idempotent, and restore removes exactly what cut added', async () => {
    const tb = one();
    const drops = async (): Promise<string[]> =>
      (await tb.exec('r1', ['ip6tables-save', '-t', 'filter'])).stdout.split('\n').filter((l) => l.startsWith('-A '));
    const before = await drops();
    await tb.cut(1);
    await tb.cut(1);
    await tb.cut(1, 'a-to-b');
    const during = await drops();
    assert.equal(during.length, before.length + 2, during.join('\n'));
    assert.ok(during.every((l) => /^-A FORWARD -i \S+ -j DROP$/.test(l)));
    await tb.restore(1, 'b-to-a');
    assert.equal((await drops()).length, before.length + 1);
    await tb.restore(1);
    await tb.restore(1);
    assert.deepEqual(await drops(), before);
  });

  it('a one-way cut (path 1, a-to-b) stops exactly the packets sourced from a1', async () => {
    const tb = one();
    const [a1, a2] = tb.a.locators as [string, string];
    const [b1, b2] = tb.b.locators as [string, string];
    await tb.cut(1, 'a-to-b');
    assert.deepEqual((await tb.status()).cut, { 1: ['a-to-b'], 2: [] });
    const atB = await tb.udpServer('b', [b1, b2]);
    const atA = await tb.udpServer('a', [a1, a2]);
    try {
      // A -> B from a1 (crosses R1 from A's side): dropped. The marker from a2 (path 2), sent
      // after them, proves the earlier datagrams had their chance.
      await tb.udpSend('a', a1, b1, atB.port, ['lost-a1-b1']);
      await tb.udpSend('a', a1, b2, atB.port, ['lost-a1-b2']);
      await tb.udpSend('a', a2, b1, atB.port, ['marker']);
      await atB.waitForDatagram((d) => d.data === 'marker', { what: 'the marker from a2 at B' });
      assert.deepEqual(
        atB.received.map((d) => d.data),
        ['marker'],
      );
      // B -> A from b1 crosses R1 from B's side, which still forwards.
      await tb.udpSend('b', b1, a1, atA.port, ['b1-a1']);
      await tb.udpSend('b', b1, a2, atA.port, ['b1-a2']);
      await atA.waitForDatagram((d) => d.data === 'b1-a1' && d.from === b1 && d.to === a1, { what: 'b1 -> a1 at A' });
      await atA.waitForDatagram((d) => d.data === 'b1-a2' && d.from === b1 && d.to === a2, { what: 'b1 -> a2 at A' });
      // Repaired: a1 -> b1 arrives again.
      await tb.restore(1, 'a-to-b');
      await tb.udpSend('a', a1, b1, atB.port, ['back-a1-b1']);
      await atB.waitForDatagram((d) => d.data === 'back-a1-b1' && d.from === a1 && d.to === b1, { what: 'a1 -> b1 after restore' });
    } finally {
      await Promise.all([atA.close(), atB.close()]);
    }
  });

  it('reports errors with documented exit codes', async () => {
    const tb = one();
    const tool = async (...args: string[]): Promise<number | null> => (await run([TESTBED_SCRIPT, ...args], { check: false })).code;
    assert.equal(await tool('frobnicate'), 2);
    assert.equal(await tool('cut', tb.id, '3'), 2);
    assert.equal(await tool('cut', tb.id, '1', '--dir', 'sideways'), 2);
    assert.equal(await tool('create', '--name', 'Not_Valid'), 2);
    assert.equal(await tool('exec', tb.id, 'c', '--', 'true'), 2);
    assert.equal(await tool('status', 'zz0nope'), 3);
    assert.equal(await tool('cut', 'zz0nope', '1'), 3);
    assert.equal(await tool('create', '--name', tb.id), 5);
    assert.equal(await tool('exec', tb.id, 'b', '--', 'sh', '-c', 'exit 7'), 7);
    const asNobody = await run(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', TESTBED_SCRIPT, 'list'], { check: false });
    assert.equal(asNobody.code, 4);
    assert.match(asNobody.stderr, /must run as root/);
    const help = await run([TESTBED_SCRIPT, 'cut', '--help']);
    assert.match(help.stdout, /Usage: scripts\/testbed cut/);
  });

  it('destroy removes every namespace of that testbed and leaves the other alone', async () => {
    const [t1, t2] = [one(), two()];
    await t2.destroy();
    const listed = await netnsList();
    for (const h of hosts) {
      assert.ok(!listed.includes(t2.namespaces[h]), `${t2.namespaces[h]} is gone`);
      assert.ok(listed.includes(t1.namespaces[h]), `${t1.namespaces[h]} is still there`);
    }
    assert.ok(!(await Testbed.list()).includes(t2.id));
    // Idempotent, from the wrapper and from the tool.
    await t2.destroy();
    assert.equal((await run([TESTBED_SCRIPT, 'destroy', t2.id], { check: false })).code, 0);
    assert.equal((await run([TESTBED_SCRIPT, 'status', t2.id], { check: false })).code, 3);
    assert.deepEqual(await workingPairs(t1), ['a1-b1', 'a1-b2', 'a2-b1', 'a2-b2']);
  });
});

describe('testbed --hba (HBA ULIDs and daemon configurations)', function () {
  this.timeout(60_000);
  const beds: Testbed[] = [];
  let plain: Testbed | undefined;

  before(async () => {
    ensureBuilt(); // bin/shim6-cga and bin/shim6-config run dist/
    const made = await Promise.allSettled([Testbed.create({ hba: true }), Testbed.create({ hba: true }), Testbed.create()]);
    for (const m of made.slice(0, 2)) if (m.status === 'fulfilled') beds.push(m.value);
    if (made[2]?.status === 'fulfilled') plain = made[2].value;
    for (const m of made) if (m.status === 'rejected') throw m.reason;
  });
  after(async () => {
    const results = await Promise.allSettled([...beds, ...(plain ? [plain] : [])].map((t) => t.destroy()));
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  });

  it('two at once: each host has its own HBA set on its interfaces and its own configuration', async () => {
    assert.equal(beds.length, 2);
    const runDirs = new Set<string>();
    for (const t of beds) {
      assert.ok(t.files !== undefined && existsSync(t.files), 'the testbed has a files directory');
      for (const h of ['a', 'b'] as const) {
        const info = t[h];
        const hba = info.hba;
        assert.ok(hba, `${t.id}/${h} has an HBA set`);
        assert.equal(hba.locators.length, 2);
        assert.equal(hba.ulid, hba.locators[0]);
        // Each HBA address is in the prefix of the host's locator on that path, on that interface.
        for (const [i, addr] of hba.locators.entries()) {
          const prefix = (info.locators[i] ?? '').split('::')[0] ?? '';
          assert.ok(addr.startsWith(`${prefix}:`), `${addr} is in ${prefix}::/64`);
          const shown = await t.exec(h, ['ip', '-6', 'addr', 'show', 'dev', info.interfaces[i] ?? '']);
          assert.match(shown.stdout, new RegExp(`inet6 ${addr}/64 .*nodad`));
        }
        const doc = JSON.parse(readFileSync(join(hba.identity, 'shim6-cga.json'), 'utf8')) as { ulid: string; method: string };
        assert.equal(doc.ulid, hba.ulid);
        assert.equal(doc.method, 'hba');
        // The configuration, read as the daemons read it.
        assert.ok(info.config !== undefined && info.runDir !== undefined);
        const got = spawnSync(process.execPath, [join(__dirname, '..', 'bin', 'shim6-config'), '--config', info.config, 'get', 'runDir', 'shim6d.identities[0]', 'ipcSocket'], { encoding: 'utf8' });
        assert.equal(got.status, 0, got.stderr);
        assert.equal(got.stdout, `${info.runDir}\n${hba.identity}\n${info.runDir}/ipc.sock\n`);
        runDirs.add(info.runDir);
      }
    }
    assert.equal(runDirs.size, 4, 'four run directories: nothing shared');
    // status --json describes the same files.
    const st = await run([TESTBED_SCRIPT, 'status', beds[0]?.id ?? '', '--json']);
    assert.equal((JSON.parse(st.stdout) as { a: { hba: { ulid: string } } }).a.hba.ulid, beds[0]?.a.hba?.ulid);
  });

  it('start and stop check their arguments: 2 usage, 3 no testbed or no configuration', async () => {
    const tool = async (...args: string[]): Promise<number | null> => (await run([TESTBED_SCRIPT, ...args], { check: false })).code;
    const id = beds[0]?.id ?? '';
    assert.equal(await tool('start', id), 2);
    assert.equal(await tool('start', id, 'r1'), 2);
    assert.equal(await tool('stop', id, 'a', 'b'), 2);
    assert.equal(await tool('start', 'zz0nope', 'a'), 3);
    assert.equal(await tool('start', plain?.id ?? '', 'all'), 3);
    assert.equal(await tool('stop', plain?.id ?? '', 'a'), 3);
    const help = await run([TESTBED_SCRIPT, 'start', '--help']);
    assert.match(help.stdout, /Usage: scripts\/testbed start ID HOST\|all/);
  });

  it('destroy removes the namespaces and every generated file, and only those of that testbed', async () => {
    const [t1, t2] = beds;
    assert.ok(t1 && t2);
    const files1 = t1.files ?? '';
    const files2 = t2.files ?? '';
    await t1.destroy();
    assert.ok(!existsSync(files1), `${files1} removed`);
    assert.ok(existsSync(files2), `${files2} still there`);
    const listed = await netnsList();
    for (const h of hosts) {
      assert.ok(!listed.includes(t1.namespaces[h]), `${t1.namespaces[h]} is gone`);
      assert.ok(listed.includes(t2.namespaces[h]), `${t2.namespaces[h]} is still there`);
    }
    await t2.destroy();
    assert.ok(!existsSync(files2), `${files2} removed`);
    // Idempotent.
    assert.equal((await run([TESTBED_SCRIPT, 'destroy', t1.id], { check: false })).code, 0);
  });
});
