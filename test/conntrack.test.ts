/**
 * The conntrack adapter (shim6d/conntrack) on the real kernel. Two fresh network namespaces
 * joined by a veth pair; a conntrack rule in the first makes the kernel track its flows; the
 * monitor runs inside it (a process's namespace is fixed, so it is a child,
 * shim6d/conntrack-cli.ts, printing JSON lines). UDP and TCP traffic between the namespaces
 * must come out as IPv6 events and poll() samples with the right addresses, protocol and
 * packet counts, and `conntrack -D` as a destroy event. Needs root.
 */
import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../scripts/lib/testbed';
import { waitFor } from '../scripts/lib/wait';
import { ConntrackError, ConntrackMonitor, type ConntrackEvent } from '../shim6d/conntrack';
import { ContextHeuristic, type ContextCandidate } from '../shim6d/heuristic';

const ROOT = join(__dirname, '..');
const TSX = join(ROOT, 'node_modules', '.bin', 'tsx');
const CLI = join(ROOT, 'shim6d', 'conntrack-cli.ts');

const ADDR_A = '2001:db8:c7::a';
const ADDR_B = '2001:db8:c7::b';
const UDP_PORT = 41_234;
const PRE_PORT = 41_235;
const TCP_PORT = 41_236;
const DATAGRAMS = 60;

/** A line of conntrack-cli (an event, a poll sample, ready/closed, an error) or of a helper. */
type Line = Partial<Omit<ConntrackEvent, 'kind'>> & {
  kind?: ConntrackEvent['kind'] | 'sample';
  ready?: boolean;
  closed?: boolean;
  error?: string;
  errno?: number;
  code?: string;
};

/** A child process printing JSON lines, collected as they come. */
interface LineChild {
  child: ChildProcess;
  lines: Line[];
  stderr: () => string;
  exit: () => { code: number | null; signal: NodeJS.Signals | null } | undefined;
}

function startLines(argv: readonly string[]): LineChild {
  const [cmd, ...args] = argv as [string, ...string[]];
  // Own process group: the after hook can kill it with whatever it started.
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const lines: Line[] = [];
  let out = '';
  let err = '';
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    let nl: number;
    while ((nl = out.indexOf('\n')) >= 0) {
      const text = out.slice(0, nl);
      out = out.slice(nl + 1);
      try {
        lines.push(JSON.parse(text) as Line);
      } catch {
        lines.push({ error: `not JSON: ${text}` });
      }
    }
  });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
  child.on('exit', (code, signal) => (exited = { code, signal }));
  child.on('error', (e) => (err += String(e)));
  return { child, lines, stderr: () => err, exit: () => exited };
}

function killGroup(c: LineChild | undefined): void {
  if (!c || c.exit() || c.child.pid === undefined) return;
  try {
    process.kill(-c.child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

// Counts datagrams on [addr]:port; prints {"ready":true}, then {"received":n} when n reach the goal.
const UDP_SINK = `
const s = require('node:dgram').createSocket({ type: 'udp6', ipv6Only: true });
const [addr, port, goal] = process.argv.slice(1);
let n = 0;
s.on('message', () => { if (++n === Number(goal)) { console.log(JSON.stringify({ received: n })); process.exit(0); } });
s.bind(Number(port), addr, () => console.log(JSON.stringify({ ready: true })));
setTimeout(() => { console.log(JSON.stringify({ received: n })); process.exit(1); }, 20000);
`;

// Sends n datagrams from [from] to [to]:port, one after the other.
const UDP_SEND = `
const s = require('node:dgram').createSocket({ type: 'udp6', ipv6Only: true });
const [from, to, port, count] = process.argv.slice(1);
s.bind(0, from, async () => {
  for (let i = 0; i < Number(count); i++) {
    await new Promise((resolve, reject) => s.send(Buffer.from('datagram ' + i), Number(port), to, (e) => (e ? reject(e) : resolve())));
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  s.close();
});
`;

// Echoes one TCP connection on [addr]:port, then exits.
const TCP_ECHO = `
const net = require('node:net');
const [addr, port] = process.argv.slice(1);
const srv = net.createServer((c) => { c.pipe(c); c.on('close', () => { srv.close(); process.exit(0); }); });
srv.listen(Number(port), addr, () => console.log(JSON.stringify({ ready: true })));
setTimeout(() => process.exit(1), 20000);
`;

// Connects from [from] to [to]:port, sends ten messages, waits for all of them back, closes.
const TCP_CLIENT = `
const net = require('node:net');
const [from, to, port] = process.argv.slice(1);
const c = net.connect({ host: to, port: Number(port), localAddress: from });
let want = 0; let got = 0;
c.on('connect', () => { for (let i = 0; i < 10; i++) { const m = 'message ' + i + '\\n'; want += m.length; c.write(m); } });
c.on('data', (d) => { got += d.length; if (got >= want) c.end(); });
c.on('close', () => { console.log(JSON.stringify({ echoed: got })); process.exit(got >= want && want > 0 ? 0 : 1); });
c.on('error', (e) => { console.error(e.message); process.exit(2); });
`;

describe('ConntrackMonitor', function () {
  this.timeout(60_000);

  describe('without a kernel (errors)', () => {
    it('refuses bad options', () => {
      assert.throws(() => new ConntrackMonitor({ receiveSliceMs: 0 }), RangeError);
      assert.throws(() => new ConntrackMonitor({ eventBatch: 0 }), RangeError);
    });

    it('throws ConntrackError (dlopen, ENOENT) when the library is missing', () => {
      const m = new ConntrackMonitor({ library: 'libnetfilter_conntrack_missing.so.99' });
      assert.throws(() => m.start(), (e: unknown) => e instanceof ConntrackError && e.call === 'dlopen' && e.code === 'ENOENT' && /libnetfilter-conntrack3/.test(e.message));
      assert.equal(m.running, false);
    });

    it('throws ConntrackError (sysctl, ENOENT) and closes what it opened when the conntrack sysctls are missing', () => {
      const dir = mkdtempSync(join(tmpdir(), 's6ct-sysctl-'));
      try {
        const m = new ConntrackMonitor({ sysctlDir: dir });
        assert.throws(() => m.start(), (e: unknown) => e instanceof ConntrackError && e.call === 'sysctl' && e.errno === 2);
        assert.throws(() => m.poll(), /poll\(\) when closed/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('poll() before start() is an error; close() before start() resolves', async () => {
      const m = new ConntrackMonitor();
      assert.throws(() => m.poll(), /poll\(\) when idle/);
      await m.close();
      await m.close();
    });
  });

  describe('in a network namespace', () => {
    const tag = randomBytes(3).toString('hex');
    const NS = `s6ct-${tag}`;
    const PEER_NS = `s6ct-${tag}-p`;
    const started: LineChild[] = [];
    let monitor: LineChild;

    const inNs = (ns: string, ...argv: string[]): string[] => ['ip', 'netns', 'exec', ns, ...argv];
    const node = (ns: string, script: string, ...args: string[]): string[] => inNs(ns, process.execPath, '-e', script, ...args);
    const events = (): Line[] => monitor.lines.filter((l) => l.kind === 'new' || l.kind === 'update' || l.kind === 'destroy');
    const samples = (): Line[] => monitor.lines.filter((l) => l.kind === 'sample');
    const startChild = (argv: readonly string[]): LineChild => {
      const c = startLines(argv);
      started.push(c);
      return c;
    };
    const ready = (c: LineChild, what: string): Promise<unknown> =>
      waitFor(() => c.lines.some((l) => l.ready === true) || (c.exit() && Promise.reject(new Error(`${what} exited: ${c.stderr()}`))), { what, timeoutMs: 20_000 });

    /** 60 datagrams from A to B:port, counted by a sink in B. */
    async function sendDatagrams(port: number, count: number): Promise<void> {
      const sink = startChild(node(PEER_NS, UDP_SINK, ADDR_B, String(port), String(count)));
      await ready(sink, 'the UDP sink in the peer namespace');
      await run(node(NS, UDP_SEND, ADDR_A, ADDR_B, String(port), String(count)), { timeoutMs: 20_000 });
      await waitFor(() => sink.lines.find((l) => (l as { received?: number }).received === count), { what: `${count} datagrams at the sink`, timeoutMs: 10_000 });
    }

    before(async function () {
      this.timeout(60_000);
      await run(['ip', 'netns', 'add', NS]);
      await run(['ip', 'netns', 'add', PEER_NS]);
      await run(['ip', '-n', NS, 'link', 'add', 'ct0', 'type', 'veth', 'peer', 'name', 'ct1', 'netns', PEER_NS]);
      for (const [ns, dev, addr] of [[NS, 'ct0', ADDR_A], [PEER_NS, 'ct1', ADDR_B]] as const) {
        await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
        await run(['ip', '-n', ns, '-6', 'addr', 'add', `${addr}/64`, 'dev', dev, 'nodad']);
        await run(['ip', '-n', ns, 'link', 'set', dev, 'up']);
      }
      // Conntrack tracks nothing in a namespace until a rule uses it.
      await run(inNs(NS, 'ip6tables', '-w', '10', '-A', 'INPUT', '-m', 'conntrack', '--ctstate', 'NEW,ESTABLISHED', '-j', 'ACCEPT'));
      // A flow that exists before the monitor: seen by the dump at start only.
      await sendDatagrams(PRE_PORT, 3);
      monitor = startChild(inNs(NS, TSX, CLI, '--poll-ms', '200'));
      await ready(monitor, 'the conntrack monitor in the namespace');
    });

    after(async function () {
      this.timeout(30_000);
      for (const c of started) killGroup(c);
      await run(['ip', 'netns', 'del', NS], { check: false });
      await run(['ip', 'netns', 'del', PEER_NS], { check: false });
    });

    it('turned on nf_conntrack_acct in the namespace', async () => {
      const r = await run(inNs(NS, 'cat', '/proc/sys/net/netfilter/nf_conntrack_acct'));
      assert.equal(r.stdout.trim(), '1');
    });

    it('reports the flow that existed before it started (the dump at start), as "new"', async () => {
      const pre = await waitFor(() => events().find((l) => l.destinationPort === PRE_PORT), { what: 'the pre-existing flow', timeoutMs: 10_000 });
      assert.deepEqual([pre.kind, pre.source, pre.destination, pre.protocol], ['new', ADDR_A, ADDR_B, 17]);
    });

    it('reports a UDP flow: a "new" event, then poll() samples with both addresses, protocol 17 and ≥ 60 packets', async () => {
      await sendDatagrams(UDP_PORT, DATAGRAMS);
      const sample = await waitFor(() => samples().find((l) => l.destinationPort === UDP_PORT && (l.packets ?? 0) >= DATAGRAMS), {
        what: `a poll sample of the UDP flow with ≥ ${DATAGRAMS} packets`,
        timeoutMs: 10_000,
      });
      assert.deepEqual([sample.source, sample.destination, sample.protocol, sample.counted], [ADDR_A, ADDR_B, 17, true]);
      assert.ok((sample.octets ?? 0) >= DATAGRAMS * 48, `octets ${sample.octets}`); // 40 IPv6 + 8 UDP each, at least
      assert.equal(typeof sample.id, 'number');
      assert.ok(typeof sample.firstSeenAt === 'number' && Math.abs(sample.firstSeenAt - Date.now()) < 60_000, `firstSeenAt ${sample.firstSeenAt}`);
      const created = events().find((l) => l.kind === 'new' && l.destinationPort === UDP_PORT);
      assert.ok(created, 'a new event for the UDP flow');
      assert.deepEqual([created.source, created.destination, created.protocol, created.id, created.flow], [ADDR_A, ADDR_B, 17, sample.id, sample.flow]);
      assert.equal(created.counted, false, 'NEW events carry no counters');
    });

    it('feeds the heuristic: the samples make (A, B) a context candidate', async () => {
      const h = new ContextHeuristic({ holdDownCheck: () => false, hasContext: () => false, isLocal: (a) => a === ADDR_A, activeSeconds: 0 });
      const got: ContextCandidate[] = [];
      for (const l of monitor.lines) if (l.kind) got.push(...h.observe(l as ConntrackEvent));
      assert.deepEqual(got.map((c) => [c.local, c.peer, c.reason]), [[ADDR_A, ADDR_B, 'packets']]);
      // Reported when a sample first passed the threshold (50 by default), which may be mid-stream.
      assert.ok((got[0]?.packets ?? 0) >= 50, `packets ${got[0]?.packets}`);
    });

    it('reports a TCP exchange: new and update events, and samples with protocol 6', async () => {
      const server = startChild(node(PEER_NS, TCP_ECHO, ADDR_B, String(TCP_PORT)));
      await ready(server, 'the TCP echo server');
      const r = await run(node(NS, TCP_CLIENT, ADDR_A, ADDR_B, String(TCP_PORT)), { timeoutMs: 20_000 });
      assert.match(r.stdout, /"echoed":\d+/);
      const sample = await waitFor(() => samples().find((l) => l.protocol === 6 && l.destinationPort === TCP_PORT && (l.packets ?? 0) >= 6), {
        what: 'a poll sample of the TCP flow',
        timeoutMs: 10_000,
      });
      assert.deepEqual([sample.source, sample.destination], [ADDR_A, ADDR_B]);
      const tcpEvents = events().filter((l) => l.protocol === 6 && l.destinationPort === TCP_PORT);
      assert.equal(tcpEvents[0]?.kind, 'new');
      assert.ok(tcpEvents.some((l) => l.kind === 'update'), `state changes: ${tcpEvents.map((l) => l.kind).join(',')}`);
    });

    it('reports a destroy event, with the final counters, after conntrack -D', async () => {
      await run(inNs(NS, 'conntrack', '-D', '-f', 'ipv6', '-p', 'udp', '--orig-port-dst', String(UDP_PORT)));
      const gone = await waitFor(() => events().find((l) => l.kind === 'destroy' && l.destinationPort === UDP_PORT), { what: 'the destroy event', timeoutMs: 10_000 });
      assert.deepEqual([gone.source, gone.destination, gone.protocol, gone.counted], [ADDR_A, ADDR_B, 17, true]);
      assert.ok((gone.packets ?? 0) >= DATAGRAMS);
      // And the flow is no longer in the samples of a later poll round.
      const mark = monitor.lines.length;
      await waitFor(() => monitor.lines.slice(mark).some((l) => l.kind === 'sample' && l.destinationPort === TCP_PORT), { what: 'a later poll round', timeoutMs: 10_000 });
      const after = monitor.lines.slice(mark).filter((l) => l.kind === 'sample' && l.destinationPort === UDP_PORT);
      assert.deepEqual(after, []);
    });

    it('never reports another family, and counted nothing malformed', () => {
      for (const l of monitor.lines) if (l.kind) assert.ok(l.source?.includes(':') && l.destination?.includes(':'), JSON.stringify(l));
      assert.equal(monitor.lines.filter((l) => l.error !== undefined).length, 0, monitor.stderr());
    });

    it('refuses to start without root, with ConntrackError EPERM', async () => {
      // The sysctls are already 1 here (the monitor set them), so start() gets as far as
      // netlink, which wants CAP_NET_ADMIN. In a fresh namespace it would stop earlier, at
      // writing nf_conntrack_acct (EACCES).
      const r = await run(inNs(NS, 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', TSX, CLI), { check: false, timeoutMs: 30_000 });
      assert.equal(r.code, 1, r.stdout + r.stderr);
      const line = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as Line;
      assert.deepEqual([line.code, line.errno], ['EPERM', 1], r.stdout);
    });

    it('closes cleanly on SIGTERM: exit status 0, within a second or so', async () => {
      const t0 = Date.now();
      process.kill(monitor.child.pid as number, 'SIGTERM');
      const exit = await waitFor(() => monitor.exit(), { what: 'the monitor to exit', timeoutMs: 10_000 });
      assert.deepEqual(exit, { code: 0, signal: null }, monitor.stderr());
      assert.ok(monitor.lines.some((l) => l.closed === true));
      assert.ok(Date.now() - t0 < 5000);
      const closed = monitor.lines.find((l) => l.closed === true) as { stats?: { malformed?: number; destroyEvents?: number } };
      assert.equal(closed.stats?.malformed, 0);
      assert.ok((closed.stats?.destroyEvents ?? 0) >= 1);
    });
  });

  describe('in this process (the event loop stays free)', () => {
    it('keeps the main thread responsive while the worker waits for events', async function () {
      let m: ConntrackMonitor | undefined;
      try {
        // This process's namespace is the host's: leave its sysctls alone.
        m = new ConntrackMonitor({ initialDump: false, receiveSliceMs: 100, enableAccounting: false, enableTimestamps: false });
        m.start();
      } catch (e) {
        if (e instanceof ConntrackError) this.skip();
        throw e;
      }
      try {
        // Timers keep firing on time while the event socket is waited for.
        const t0 = Date.now();
        let ticks = 0;
        await waitFor(() => ++ticks >= 20, { what: '20 timer ticks', intervalMs: 10, timeoutMs: 2000 });
        assert.ok(Date.now() - t0 < 1500);
        assert.ok(Array.isArray(m.poll()));
      } finally {
        const t1 = Date.now();
        await m.close();
        assert.ok(Date.now() - t1 < 1000, 'close waits one slice at most');
        assert.equal(m.running, false);
      }
    });
  });
});

