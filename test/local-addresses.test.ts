/**
 * The host's locators through rtnetlink. Pure: which addresses are locators and how the set
 * follows address messages and dumps (LocatorTracker). Kernel: a monitor in this process
 * (initial dump, close() waking the blocked recv), and shim6d/local-addresses-cli.ts run
 * inside a fresh network namespace while addresses come and go there: nodad, DAD, DAD
 * failure, deprecation, deletion, interface down; link-local and loopback never reported.
 */
import { strict as assert } from 'node:assert';
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { run } from '../scripts/lib/testbed';
import { waitFor } from '../scripts/lib/wait';
import { excludedAddressClass } from '../protocol/address';
import { isUsableLocator, LocalAddress, LocalAddressMonitor, LocatorChange, LocatorTracker, RtnetlinkError } from '../shim6d/local-addresses';
import {
  AddressMessage,
  AF_INET,
  AF_INET6,
  decodeAddressFlags,
  IFA_F_DADFAILED,
  IFA_F_DEPRECATED,
  IFA_F_NODAD,
  IFA_F_OPTIMISTIC,
  IFA_F_PERMANENT,
  IFA_F_TENTATIVE,
  RT_SCOPE_HOST,
  RT_SCOPE_LINK,
  RT_SCOPE_SITE,
  RT_SCOPE_UNIVERSE,
} from '../shim6d/rtnetlink';

const ROOT = path.join(__dirname, '..');
const TSX = path.join(ROOT, 'node_modules', '.bin', 'tsx');
const CLI = path.join(ROOT, 'shim6d', 'local-addresses-cli.ts');

function msg(address: string, fields: { kind?: 'new' | 'del'; flags?: number; scope?: number; ifindex?: number; prefixLength?: number; family?: number } = {}): AddressMessage {
  return {
    kind: fields.kind ?? 'new',
    header: { length: 0, type: fields.kind === 'del' ? 21 : 20, flags: 0, seq: 0, pid: 0 },
    family: fields.family ?? AF_INET6,
    prefixLength: fields.prefixLength ?? 64,
    flags: decodeAddressFlags(fields.flags ?? IFA_F_PERMANENT),
    scope: fields.scope ?? RT_SCOPE_UNIVERSE,
    ifindex: fields.ifindex ?? 2,
    address,
  };
}

const changes = (cs: LocatorChange[]): string[] => cs.map((c) => `${c.type} ${c.locator.address}%${c.locator.ifindex}/${c.locator.prefixLength}`);

describe('local addresses: which are locators (pure)', () => {
  it('a global, settled IPv6 address is a locator (ULA too); deprecated only when asked', () => {
    assert.equal(isUsableLocator(msg('2001:db8::1')), true);
    assert.equal(isUsableLocator(msg('fd00::1')), true);
    assert.equal(isUsableLocator(msg('2001:db8::1', { flags: IFA_F_NODAD })), true);
    assert.equal(isUsableLocator(msg('2001:db8::1', { flags: IFA_F_DEPRECATED })), false);
    assert.equal(isUsableLocator(msg('2001:db8::1', { flags: IFA_F_DEPRECATED }), { includeDeprecated: true }), true);
  });

  it('tentative (also optimistic) and dadfailed addresses are not', () => {
    assert.equal(isUsableLocator(msg('2001:db8::1', { flags: IFA_F_TENTATIVE })), false);
    assert.equal(isUsableLocator(msg('2001:db8::1', { flags: IFA_F_TENTATIVE | IFA_F_OPTIMISTIC })), false);
    assert.equal(isUsableLocator(msg('2001:db8::1', { flags: IFA_F_TENTATIVE | IFA_F_DADFAILED })), false);
    assert.equal(isUsableLocator(msg('2001:db8::1', { flags: IFA_F_DADFAILED })), false);
  });

  it('link-local, site-local, loopback, unspecified, IPv4-mapped, multicast, non-global scope, IPv4 and deletions never are', () => {
    for (const a of ['fe80::1', 'febf::1', 'fec0::1', '::1', '::', '::ffff:192.0.2.1', 'ff02::1', 'ff0e::1']) {
      assert.equal(isUsableLocator(msg(a)), false, a); // even if the scope said global
    }
    assert.equal(isUsableLocator(msg('fe80::1', { scope: RT_SCOPE_LINK })), false);
    assert.equal(isUsableLocator(msg('2001:db8::1', { scope: RT_SCOPE_SITE })), false);
    assert.equal(isUsableLocator(msg('2001:db8::1', { scope: RT_SCOPE_HOST })), false);
    assert.equal(isUsableLocator(msg('192.0.2.1', { family: AF_INET })), false);
    assert.equal(isUsableLocator(msg('2001:db8::1', { kind: 'del' })), false);
    assert.equal(isUsableLocator(msg('not an address')), false);
  });

  it('refuses exactly the classes the heuristic excludes, and site-local fec0::/10 besides', () => {
    for (const a of ['2001:db8::1', 'fd00::1', 'fe7f::1', 'fe00::1', 'fec0::1', 'feff::1', 'febf:ffff::1', 'fe80::1', '::', '::1', '::2', '::ffff:192.0.2.1', '::ffff:0:0:1', '::fffe:c000:201', 'ff02::1', '64:ff9b::c000:201']) {
      const siteLocal = /^fe[c-f]/.test(a);
      assert.equal(isUsableLocator(msg(a)), excludedAddressClass(a) === undefined && !siteLocal, a);
    }
  });
});

describe('local addresses: LocatorTracker (pure)', () => {
  it('follows DAD, deprecation and deletion, reporting each change of the usable set once', () => {
    const t = new LocatorTracker();
    assert.deepEqual(changes(t.apply(msg('2001:db8::1', { flags: IFA_F_TENTATIVE }))), []);
    assert.deepEqual(changes(t.apply(msg('2001:db8::1'))), ['added 2001:db8::1%2/64']);
    assert.deepEqual(changes(t.apply(msg('2001:db8::1'))), []); // a refresh (lifetimes) changes nothing
    assert.deepEqual(changes(t.apply(msg('2001:db8::1', { flags: IFA_F_DEPRECATED }))), ['removed 2001:db8::1%2/64']);
    assert.deepEqual(changes(t.apply(msg('2001:db8::1'))), ['added 2001:db8::1%2/64']);
    assert.deepEqual(changes(t.apply(msg('2001:db8::1', { kind: 'del' }))), ['removed 2001:db8::1%2/64']);
    assert.deepEqual(changes(t.apply(msg('2001:db8::1', { kind: 'del' }))), []);
    assert.deepEqual(changes(t.apply(msg('fe80::1', { scope: RT_SCOPE_LINK }))), []);
    assert.deepEqual(t.addresses(), []);
  });

  it('keeps one entry per interface for an address on two interfaces', () => {
    const t = new LocatorTracker();
    t.apply(msg('2001:db8::1', { ifindex: 2 }));
    t.apply(msg('2001:db8::1', { ifindex: 3, prefixLength: 48 }));
    assert.deepEqual(t.addresses(), [
      { address: '2001:db8::1', ifindex: 2, prefixLength: 64 },
      { address: '2001:db8::1', ifindex: 3, prefixLength: 48 },
    ]);
    assert.deepEqual(changes(t.apply(msg('2001:db8::1', { ifindex: 2, kind: 'del' }))), ['removed 2001:db8::1%2/64']);
    assert.deepEqual(t.addresses(), [{ address: '2001:db8::1', ifindex: 3, prefixLength: 48 }]);
    assert.equal(t.has('2001:db8::1'), true, 'still a locator on the other interface');
    t.apply(msg('2001:db8::1', { ifindex: 3, kind: 'del' }));
    assert.equal(t.has('2001:db8::1'), false);
  });

  it('includeDeprecated keeps deprecated addresses', () => {
    const t = new LocatorTracker({ includeDeprecated: true });
    assert.deepEqual(changes(t.apply(msg('2001:db8::1', { flags: IFA_F_DEPRECATED }))), ['added 2001:db8::1%2/64']);
  });

  it('a complete dump removes what it did not list, but not what a notification added during it', () => {
    const t = new LocatorTracker();
    for (const a of ['2001:db8::a', '2001:db8::b', '2001:db8::c']) t.apply(msg(a));
    t.beginDump();
    assert.equal(t.dumping, true);
    assert.deepEqual(changes(t.apply(msg('2001:db8::a'))), []); // listed
    assert.deepEqual(changes(t.apply(msg('2001:db8::d'))), ['added 2001:db8::d%2/64']); // notification during the dump
    assert.deepEqual(changes(t.apply(msg('2001:db8::c', { kind: 'del' }))), ['removed 2001:db8::c%2/64']);
    assert.deepEqual(changes(t.endDump(true)), ['removed 2001:db8::b%2/64']);
    assert.equal(t.dumping, false);
    assert.deepEqual(t.addresses().map((l) => l.address), ['2001:db8::a', '2001:db8::d']);
  });

  it('an incomplete dump (interrupted, notifications lost) removes nothing', () => {
    const t = new LocatorTracker();
    t.apply(msg('2001:db8::a'));
    t.beginDump();
    assert.deepEqual(changes(t.endDump(false)), []);
    assert.deepEqual(changes(t.endDump(true)), []); // no dump running: nothing to reconcile
    assert.equal(t.addresses().length, 1);
  });
});

describe('local addresses: LocalAddressMonitor in this process', function () {
  this.timeout(30_000);
  const open: LocalAddressMonitor[] = [];
  after(async () => {
    await Promise.all(open.map((m) => m.close()));
  });

  it('completes its initial dump, lists only locators, and close() wakes the blocked recv at once', async () => {
    const m = new LocalAddressMonitor({ receiveTimeoutMs: 20_000 });
    open.push(m);
    const added: LocalAddress[] = [];
    m.on('added', (a) => added.push(a));
    await m.ready;
    assert.deepEqual(m.addresses(), added);
    for (const a of m.addresses()) assert.ok(!a.address.startsWith('fe80:') && a.address !== '::1', a.address);
    const t0 = Date.now();
    await m.close();
    // With the wake-up message the recv returns now, not after its 20 s SO_RCVTIMEO.
    assert.ok(Date.now() - t0 < 3000, `close() took ${Date.now() - t0} ms`);
    assert.strictEqual(m.close(), m.close(), 'close() is idempotent');
  });

  it('close() before the initial dump completes rejects ready with RtnetlinkError "closed"', async () => {
    const m = new LocalAddressMonitor();
    open.push(m);
    const closing = m.close();
    await assert.rejects(m.ready, (e: unknown) => e instanceof RtnetlinkError && e.call === 'closed' && e.errno > 0);
    await closing;
  });
});

// ---------------------------------------------------------------------------------------------
// The CLI inside a network namespace.

type Line = { event: string } & Record<string, unknown>;

/** shim6d/local-addresses-cli.ts running in a namespace; its JSON lines as they arrive. */
class CliChild {
  readonly lines: Line[] = [];
  stderr = '';
  exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private readonly child: ChildProcessWithoutNullStreams;

  constructor(ns: string, args: string[]) {
    this.child = spawn('ip', ['netns', 'exec', ns, TSX, CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'], cwd: ROOT });
    createInterface({ input: this.child.stdout }).on('line', (l) => {
      try {
        this.lines.push(JSON.parse(l) as Line);
      } catch {
        this.lines.push({ event: 'unparsed', text: l });
      }
    });
    this.child.stderr.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.child.on('exit', (code, signal) => (this.exited = { code, signal }));
    this.child.stdin.on('error', () => undefined);
  }

  /** The first line at or after `from` that satisfies `pred`, waited for. */
  async next(pred: (l: Line) => boolean, what: string, from = 0, timeoutMs = 15_000): Promise<number> {
    return waitFor(
      () => {
        const i = this.lines.findIndex((l, k) => k >= from && pred(l));
        if (i >= 0) return i + 1; // (index + 1: truthy even for line 0)
        if (this.exited) throw new Error(`the CLI exited (${JSON.stringify(this.exited)}): ${this.stderr}`);
        return undefined;
      },
      { what, timeoutMs },
    ).then((i) => i - 1);
  }

  /** Ends it by closing its stdin (--until-stdin-closes); SIGKILL if it does not exit in time. */
  async stop(): Promise<void> {
    if (this.exited) return;
    this.child.stdin.end();
    try {
      await waitFor(() => this.exited, { what: 'the CLI to exit', timeoutMs: 10_000 });
    } catch {
      this.child.kill('SIGKILL');
      await waitFor(() => this.exited, { what: 'the CLI to die', timeoutMs: 5000 }).catch(() => undefined);
    }
  }
}

const isAddr = (event: string, address: string, ifindex?: number) => (l: Line): boolean =>
  l.event === event && l['address'] === address && (ifindex === undefined || l['ifindex'] === ifindex);
const flagsOf = (l: Line): Record<string, boolean> => l['flags'] as Record<string, boolean>;

describe('local addresses: the monitor in a network namespace', function () {
  this.timeout(90_000);
  const ns = `s6la-${process.pid}-${randomBytes(3).toString('hex')}`;
  const ip = (...args: string[]): Promise<unknown> => run(['ip', '-n', ns, ...args]);
  let cli: CliChild | undefined;
  let flooded: CliChild | undefined;
  let v0 = 0;
  let v1 = 0;
  let markers = 0;
  const c = (): CliChild => {
    if (!cli) throw new Error('the CLI did not start');
    return cli;
  };
  const ifindex = async (dev: string): Promise<number> => {
    const r = await run(['ip', '-n', ns, '-j', 'link', 'show', 'dev', dev]);
    return (JSON.parse(r.stdout) as Array<{ ifindex: number }>)[0]?.ifindex ?? -1;
  };
  /** Adds a fresh nodad address on v1 and waits for it: every event before it has been printed. */
  const marker = async (): Promise<number> => {
    const a = `2001:db8:ff::${++markers}`;
    await ip('-6', 'addr', 'add', `${a}/128`, 'dev', 'v1', 'nodad');
    return c().next(isAddr('added', a), `marker ${a}`);
  };
  const events = (until: number, address: string, ifi?: number): string[] =>
    c().lines.slice(0, until).filter((l) => (l.event === 'added' || l.event === 'removed') && l['address'] === address && (ifi === undefined || l['ifindex'] === ifi)).map((l) => l.event);

  // Should this process die before `after`, do not leave the namespace behind (the CLIs see
  // their stdin close and exit by themselves).
  const removeNamespace = (): void => {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  };

  before(async () => {
    process.once('exit', removeNamespace);
    await run(['ip', 'netns', 'add', ns]);
    await ip('link', 'set', 'lo', 'up');
    await ip('link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1');
    await ip('link', 'set', 'v0', 'up');
    await ip('link', 'set', 'v1', 'up');
    v0 = await ifindex('v0');
    v1 = await ifindex('v1');
    await ip('-6', 'addr', 'add', '2001:db8:99::1/64', 'dev', 'v1', 'nodad'); // before the monitor starts
    cli = new CliChild(ns, ['--raw', '--until-stdin-closes']);
    await cli.next((l) => l.event === 'ready', 'the initial dump');
  });

  after(async () => {
    try {
      await Promise.all([cli?.stop(), flooded?.stop()]);
    } finally {
      await run(['ip', 'netns', 'del', ns], { check: false });
      process.removeListener('exit', removeNamespace);
    }
  });

  it('the initial dump lists the addresses that existed before the start (added, then ready)', async () => {
    const ready = await c().next((l) => l.event === 'ready', 'ready');
    const added = await c().next(isAddr('added', '2001:db8:99::1', v1), 'the pre-existing address');
    assert.ok(added < ready);
    assert.deepEqual(c().lines[ready]?.['addresses'], [{ address: '2001:db8:99::1', ifindex: v1, prefixLength: 64 }]);
    assert.equal(c().lines.filter((l) => l.event === 'error').length, 0, c().stderr);
  });

  it('an address added with nodad is added at once, with its interface and prefix length', async () => {
    await ip('-6', 'addr', 'add', '2001:db8:1::1/64', 'dev', 'v0', 'nodad');
    const i = await c().next(isAddr('added', '2001:db8:1::1'), "'added' 2001:db8:1::1");
    assert.deepEqual(c().lines[i], { event: 'added', address: '2001:db8:1::1', ifindex: v0, prefixLength: 64 });
  });

  it('an address under DAD is reported only once DAD completes (tentative → settled)', async () => {
    const from = c().lines.length;
    await ip('-6', 'addr', 'add', '2001:db8:2::1/64', 'dev', 'v0');
    const tentative = await c().next((l) => isAddr('message', '2001:db8:2::1')(l) && flagsOf(l)['tentative'] === true, 'the tentative RTM_NEWADDR', from);
    const added = await c().next(isAddr('added', '2001:db8:2::1', v0), 'DAD to complete', from, 20_000);
    assert.ok(tentative < added, 'reported while tentative');
    const before = c().lines.slice(from, added).filter(isAddr('message', '2001:db8:2::1'));
    assert.equal(flagsOf(before[before.length - 1] as Line)['tentative'], false, 'added on a settled message');
    assert.ok(before.slice(0, -1).every((l) => flagsOf(l)['tentative'] === true));
    const shown = await run(['ip', '-n', ns, '-j', '-6', 'addr', 'show', 'dev', 'v0']);
    const info = (JSON.parse(shown.stdout) as Array<{ addr_info: Array<{ local: string; tentative?: boolean }> }>)[0]?.addr_info ?? [];
    const entry = info.find((x) => x.local === '2001:db8:2::1');
    assert.ok(entry && entry.tentative !== true, `the kernel disagrees: ${shown.stdout}`);
  });

  it('an address whose DAD fails is never reported', async () => {
    const from = c().lines.length;
    await ip('-6', 'addr', 'add', '2001:db8:1::1/64', 'dev', 'v1'); // v0 has it: v1's DAD hears v0's answer
    await c().next((l) => isAddr('message', '2001:db8:1::1', v1)(l) && flagsOf(l)['dadfailed'] === true, 'DAD to fail on v1', from, 20_000);
    const m = await marker();
    assert.deepEqual(events(m, '2001:db8:1::1', v1), []);
    await ip('-6', 'addr', 'del', '2001:db8:1::1/64', 'dev', 'v1');
  });

  it('a deprecated address is not a locator until its preferred lifetime is renewed', async () => {
    const from = c().lines.length;
    await ip('-6', 'addr', 'add', '2001:db8:3::1/64', 'dev', 'v0', 'nodad', 'preferred_lft', '0');
    await c().next((l) => isAddr('message', '2001:db8:3::1')(l) && flagsOf(l)['deprecated'] === true, 'the deprecated RTM_NEWADDR', from);
    const m = await marker();
    assert.deepEqual(events(m, '2001:db8:3::1'), []);
    await ip('-6', 'addr', 'change', '2001:db8:3::1/64', 'dev', 'v0', 'preferred_lft', 'forever');
    await c().next(isAddr('added', '2001:db8:3::1', v0), "'added' once preferred again", m);
  });

  it('ip -6 addr del gives removed', async () => {
    const from = c().lines.length;
    await ip('-6', 'addr', 'del', '2001:db8:1::1/64', 'dev', 'v0');
    const i = await c().next(isAddr('removed', '2001:db8:1::1'), "'removed' 2001:db8:1::1", from);
    assert.deepEqual(c().lines[i], { event: 'removed', address: '2001:db8:1::1', ifindex: v0, prefixLength: 64 });
  });

  it('notifications lost to a full receive buffer (ENOBUFS) are recovered by dumping again', async () => {
    // A second monitor with the smallest receive buffer the kernel allows: 300 addresses added
    // in one batch overflow it, and only the new dumps can tell it what it missed.
    const f = (flooded = new CliChild(ns, ['--receive-buffer', '1', '--until-stdin-closes']));
    await f.next((l) => l.event === 'ready', 'the small-buffer monitor to start');
    const all = Array.from({ length: 300 }, (_, i) => `2001:db8:7::${(i + 1).toString(16)}`);
    const batch = (verb: string): string => all.map((a) => `addr ${verb} ${a}/64 dev v1${verb === 'add' ? ' nodad' : ''}\n`).join('');
    const ours = (event: string) => (l: Line): boolean => l.event === event && String(l['address']).startsWith('2001:db8:7::');
    const net = (): Map<string, number> => {
      const n = new Map<string, number>();
      for (const l of f.lines) {
        if ((l.event === 'added' || l.event === 'removed') && String(l['address']).startsWith('2001:db8:7::')) {
          n.set(String(l['address']), (n.get(String(l['address'])) ?? 0) + (l.event === 'added' ? 1 : -1));
        }
      }
      return n;
    };
    await run(['ip', '-n', ns, '-6', '-batch', '-'], { input: batch('add') });
    await waitFor(() => all.every((a) => net().get(a) === 1), { what: 'all 300 addresses added', timeoutMs: 30_000, intervalMs: 100 });
    assert.equal(f.lines.filter(ours('added')).length, 300, 'each added exactly once');
    const overruns = f.lines.filter((l) => l.event === 'resync').length;
    assert.ok(overruns > 0, 'the receive buffer never overflowed: this test did not test the recovery');
    await run(['ip', '-n', ns, '-6', '-batch', '-'], { input: batch('del') });
    await waitFor(() => all.every((a) => net().get(a) === 0), { what: 'all 300 addresses removed', timeoutMs: 30_000, intervalMs: 100 });
    assert.equal(f.lines.filter(ours('removed')).length, 300, 'each removed exactly once');
    assert.deepEqual(f.lines.filter((l) => l.event === 'resync').map((l) => l['reason']).filter((r) => r !== 'overrun'), []);
    assert.deepEqual(f.lines.filter((l) => l.event === 'error'), []);
    await f.stop();
    assert.deepEqual(f.exited, { code: 0, signal: null }, f.stderr);
  });

  it("taking the interface down removes its addresses, and only its", async () => {
    const from = c().lines.length;
    await ip('link', 'set', 'v0', 'down');
    await c().next(isAddr('removed', '2001:db8:2::1', v0), "'removed' 2001:db8:2::1", from);
    await c().next(isAddr('removed', '2001:db8:3::1', v0), "'removed' 2001:db8:3::1", from);
    const m = await marker();
    assert.deepEqual(c().lines.slice(from, m).filter((l) => l.event === 'removed').map((l) => l['address']).sort(), ['2001:db8:2::1', '2001:db8:3::1']);
  });

  it('link-local and loopback addresses are seen but never reported', () => {
    const seen = c().lines.filter((l) => l.event === 'message').map((l) => String(l['address']));
    assert.ok(seen.some((a) => a.startsWith('fe80:')), 'no link-local RTM_NEWADDR seen');
    assert.ok(seen.includes('::1'), 'no loopback RTM_NEWADDR seen');
    const reported = c().lines.filter((l) => l.event === 'added' || l.event === 'removed').map((l) => String(l['address']));
    assert.ok(reported.every((a) => a.startsWith('2001:db8:')), reported.join(' '));
    assert.equal(c().lines.filter((l) => l.event === 'error').length, 0, JSON.stringify(c().lines.filter((l) => l.event === 'error')));
  });

  it('stops when its input ends: closed, exit status 0', async () => {
    await c().stop();
    assert.deepEqual(c().exited, { code: 0, signal: null }, c().stderr);
    assert.equal(c().lines[c().lines.length - 1]?.event, 'closed');
  });
});
