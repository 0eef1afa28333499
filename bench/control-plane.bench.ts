/**
 * shim6d's control plane end to end, on one testbed (scripts/testbed) with the real daemons:
 * how many contexts per second A establishes with B when N `context` commands arrive on A's
 * admin console as fast as it answers them (N = 100 and 1,000, three runs each with fresh
 * daemons, the median reported: the result is bimodal, see the note), how that rate falls as the
 * table grows towards 10,000, and what 1,000 and 10,000 contexts cost in resident memory.
 *
 * Contexts are per ULID pair, so both hosts get K = 100 extra addresses (`nodad`) in their
 * path-1 /64 (R1 routes each host's as one /112 through its path-1 locator, so that they cost
 * no neighbour entries: the kernel's IPv6 neighbour table is shared by every namespace, 1,024
 * entries by default) and the pairs come from the K × K grid: 10,000 distinct pairs from
 * 2 × 100 addresses. No identities: every context is its ULID pair alone (no Locator List, no HBA/CGA
 * verification). The conntrack heuristic is off, so only console commands start contexts, and so
 * is the link to reapd when the build has one (no reapd runs; its conntrack polling would weigh on
 * every figure); the control timers are the defaults. Both hosts' conntrack tables are flushed
 * before each daemon starts.
 *
 * Baselines measured in the same run: the pure ContextMachine (the compiled classes the daemon
 * runs: table, machine, HostLocatorSecurity without identities, real encoding and decoding of
 * every message) establishing the same contexts in one process; the console's own round-trip
 * rate (`help`); each daemon's RSS with 0 contexts.
 *
 * Memory (VmRSS, and the live JS heap from a V8 heap snapshot): 1,000 ESTABLISHED negotiated
 * contexts; then the run tries to grow them to 10,000 within GROW_DEADLINE_MS (and stops early
 * once A puts a peer in hold-down: its later commands are refused) and, if the daemons do not
 * get there, measures 10,000 static contexts from the configuration file instead (pathMtu fixed:
 * no route lookups), next to 1,000 static ones to compare with the negotiated ones.
 *
 * Note: nothing paces the exchanges but the console. When A falls behind (its per-message cost
 * grows with the table, and the machine may be busy), R1s and R2s pile up in its inbound NFQUEUE
 * (1,024 packets), the excess is dropped, I1s and I2s wait for their retransmission timers (2 to
 * 6 s at first) and the retransmissions add more R1s: a run then takes several times longer,
 * and a large enough batch never completes (peers end in NO-SUPPORT hold-down). The notes give
 * the retransmissions and the queue drops of each measurement.
 *
 * Needs root; without it, it says so and returns. Runs dist/, built first if a source is newer
 * (scripts/lib/shim6d.ts ensureBuilt).
 * Whatever happens, the daemons and the console drivers are stopped and the testbed destroyed.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { defaultShim6Config } from '../common/config';
import { canonicalIPv6 } from '../protocol/address';
import { ensureBuilt, runDirOf, Shim6dProcess } from '../scripts/lib/shim6d';
import { Testbed, type Host } from '../scripts/lib/testbed';
import { waitFor } from '../scripts/lib/wait';
import { cpuSeconds, pause, report, reportValues, rssBytes, type Measurement, type Value } from './harness';

export const title = 'shim6d control plane on the testbed: contexts established per second, memory per context';

const ROOT = join(__dirname, '..');
/** Extra addresses per host; the K × K grid gives the ULID pairs. */
const K = 100;
/** The context counts whose establishment rate is measured, each from an empty table. */
const RATE_N = [100, 1000] as const;
/** Runs per count (fresh daemons each time); the median is reported. An odd number. */
const REPEATS = 3;
/** The context counts whose memory is measured (the second grown on top of the first). */
const SMALL = 1000;
const LARGE = 10_000;
/** The pure baseline's table growth, 1,000 at a time (beyond this it takes minutes). */
const PURE_GROWTH = 5000;
/** `context` commands in flight on the console at once (one datagram each, one socket each). */
const WINDOW = 16;
/** `help` round trips for the console baseline. */
const CONSOLE_ROUNDS = 3000;
/** Time the daemons get to grow from SMALL to LARGE negotiated contexts. */
const GROW_DEADLINE_MS = 120_000;
/** Time a burst of RATE_N contexts may take before the run fails. */
const BURST_TIMEOUT_MS = 60_000;
/** Pause before reading VmRSS, so that the burst's garbage has a chance to be collected. */
const SETTLE_MS = 3000;
const PATH_MTU = 1500;
const CONSOLE_PORT = 19384;
/**
 * Whether this build has shim6d's link to reapd (`shim6d.reap`): it is turned off, since no
 * reapd runs here and its conntrack polling would add to every measurement.
 */
const REAP_LINK = 'reap' in defaultShim6Config().shim6d;

const secondsBetween = (t0: bigint, t1: bigint): number => Number(t1 - t0) / 1e9;
const plural = (n: number): string => n.toLocaleString('en-US');

function canon(address: string): string {
  const c = canonicalIPv6(address);
  if (c === undefined) throw new RangeError(`not an IPv6 address: ${address}`);
  return c;
}

/** Where the extra addresses live: a /112 inside each host's path-1 /64. */
const EXTRA_PREFIX = { a: '2001:db8:a1::1:0/112', b: '2001:db8:b1::1:0/112' } as const;

/** The K extra addresses of a host: 2001:db8:<a1|b1>::1:<i>. */
function extraAddresses(prefix: 'a1' | 'b1'): string[] {
  return Array.from({ length: K }, (_, i) => canon(`2001:db8:${prefix}::1:${i.toString(16)}`));
}

/** Pairs from..to-1 of the grid: pair k is A's address k mod K with B's (k mod K + k div K) mod K; all K² are distinct. */
function gridPairs(a: readonly string[], b: readonly string[], from: number, to: number): Array<[string, string]> {
  if (to > K * K) throw new RangeError(`only ${K * K} distinct pairs`);
  const out: Array<[string, string]> = [];
  for (let k = from; k < to; k++) out.push([a[k % K] as string, b[((k % K) + Math.floor(k / K)) % K] as string]);
  return out;
}

// -- the pure baseline: two ContextMachines in one process ----------------------------------------

/*
 * Runs in a plain `node` (argv: repository root, JSON spec), on the compiled dist/ the daemon
 * runs (not the TypeScript through tsx, whose transform adds its own cost). Establishes the
 * grid's first phases[0] pairs, then the next phases[1], ... between two ContextMachines wired as
 * the daemon wires its own (HostLocatorSecurity without identities, randomBytes for random32,
 * the data plane's lastActivity), over an in-memory FIFO network that carries whole encoded IPv6
 * packets, after a warm-up with other machines. With `reschedule`, nextDeadline() is called
 * after every input, as the daemon's DeadlineTimer does. Prints { seconds: [per phase] }.
 */
const PURE = `
const { randomBytes } = require('node:crypto');
const { join } = require('node:path');
const [root, spec] = process.argv.slice(1);
const { aAddrs, bAddrs, phases, reschedule, warmUp } = JSON.parse(spec);
const dist = (f) => require(join(root, 'dist', f));
const { ContextMachine } = dist('shim6d/context-machine.js');
const { ContextTable } = dist('shim6d/context-table.js');
const { HostLocatorSecurity } = dist('shim6d/locator-security.js');
const { encodeControlMessage } = dist('protocol/control-message.js');
const { ipv6 } = dist('protocol/address.js');
const K = aAddrs.length;
const pair = (k) => [aAddrs[k % K], bAddrs[((k % K) + Math.floor(k / K)) % K]];
function establish(phases) {
  const queue = [];
  const owners = new Map();
  let establishedAtA = 0;
  const counters = {};
  const machine = (addrs, isA) => {
    const m = new ContextMachine(new ContextTable(), new HostLocatorSecurity([]), {
      send: (message, from, to) => {
        const payload = encodeControlMessage(message);
        const h = Buffer.alloc(40);
        h.writeUInt32BE(0x60000000, 0);
        h.writeUInt16BE(payload.length, 4);
        h[6] = 140;
        h[7] = 64;
        ipv6(from).copy(h, 8);
        ipv6(to).copy(h, 24);
        const dst = owners.get(to);
        if (!dst) throw new Error('nobody owns ' + to);
        queue.push({ dst, packet: Buffer.concat([h, payload]) });
      },
      established: () => { if (isA) establishedAtA++; },
      peerLocatorsChanged: () => undefined,
      removed: () => undefined,
      event: (e) => { counters[e] = (counters[e] || 0) + 1; },
    }, {
      now: Date.now,
      random32: () => randomBytes(4).readUInt32BE(0),
      localLocators: () => addrs,
      lastActivity: (ctx) => Math.max(ctx.counters.lastShimmedAt, ctx.counters.lastDeshimmedAt),
    });
    for (const x of addrs) owners.set(x, m);
    return m;
  };
  const a = machine(aAddrs, true);
  machine(bAddrs, false);
  const seconds = [];
  let done = 0;
  for (const n of phases) {
    const target = establishedAtA + n;
    const t0 = process.hrtime.bigint();
    for (let k = done; k < done + n; k++) {
      const [local, peer] = pair(k);
      if (!a.start(local, peer)) throw new Error('could not start ' + local + ' -> ' + peer);
      if (reschedule) a.nextDeadline();
    }
    for (let head = 0; head < queue.length; head++) {
      const p = queue[head];
      p.dst.receive(p.packet);
      if (reschedule) p.dst.nextDeadline();
    }
    queue.length = 0;
    seconds.push(Number(process.hrtime.bigint() - t0) / 1e9);
    if (establishedAtA !== target) throw new Error(establishedAtA + ' established at A, expected ' + target + ': ' + JSON.stringify(counters));
    done += n;
  }
  return seconds;
}
establish([warmUp]);
process.stdout.write(JSON.stringify({ seconds: establish(phases) }) + '\\n');
`;

/** Seconds per phase of the pure baseline (see PURE), in a child `node`. */
function pureEstablish(aAddrs: readonly string[], bAddrs: readonly string[], phases: readonly number[], reschedule: boolean): number[] {
  const spec = JSON.stringify({ aAddrs, bAddrs, phases, reschedule, warmUp: 300 });
  const r = spawnSync(process.execPath, ['-e', PURE, ROOT, spec], { encoding: 'utf8', timeout: 900_000 });
  if (r.status !== 0) throw new Error(`pure baseline ${JSON.stringify(phases)}: exit ${String(r.status ?? r.signal)}: ${r.stderr.trim()}`);
  const seconds = (JSON.parse(r.stdout) as { seconds: number[] }).seconds;
  if (seconds.length !== phases.length) throw new Error(`pure baseline: ${r.stdout}`);
  return seconds;
}

// -- the console driver: one Node process per host, inside its namespace --------------------------

/*
 * Reads jobs as JSON lines on stdin: { id, commands, window, timeoutMs, expect?, replies? }.
 * Sends the commands to the console (127.0.0.1), one datagram each, with `window` sockets each
 * keeping one command in flight, and writes one JSON line per job: { id, firstSentNs,
 * lastReplyNs, matched, mismatches, replies?, error? } (process.hrtime.bigint() readings:
 * CLOCK_MONOTONIC, the same clock as the bench's).
 */
const DRIVER = `
const dgram = require('node:dgram');
const port = Number(process.argv[1]);
let buf = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => {
  buf += d;
  for (let i = buf.indexOf('\\n'); i >= 0; i = buf.indexOf('\\n')) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    if (line.trim()) run(JSON.parse(line));
  }
});
process.stdin.on('end', () => process.exit(0));
function run(job) {
  const { id, commands, window, timeoutMs } = job;
  const expect = job.expect ? new RegExp(job.expect) : undefined;
  const replies = job.replies ? new Array(commands.length) : undefined;
  const sockets = [];
  let next = 0, done = 0, matched = 0, finished = false, firstSentNs, lastReplyNs;
  const mismatches = [];
  const finish = (error) => {
    if (finished) return;
    finished = true;
    for (const s of sockets) { clearTimeout(s.timer); try { s.close(); } catch {} }
    process.stdout.write(JSON.stringify({ id, firstSentNs, lastReplyNs, matched, mismatches, replies, error }) + '\\n');
  };
  if (commands.length === 0) return finish();
  for (let k = 0; k < Math.min(window, commands.length); k++) {
    const s = dgram.createSocket('udp4');
    sockets.push(s);
    let current = -1;
    const sendNext = () => {
      if (finished || next >= commands.length) return;
      current = next++;
      if (firstSentNs === undefined) firstSentNs = process.hrtime.bigint().toString();
      s.send(commands[current], port, '127.0.0.1');
      s.timer = setTimeout(() => finish('no reply to "' + commands[current] + '" within ' + timeoutMs + ' ms'), timeoutMs);
    };
    s.on('message', (m) => {
      clearTimeout(s.timer);
      const text = m.toString();
      lastReplyNs = process.hrtime.bigint().toString();
      if (replies) replies[current] = text;
      if (!expect || expect.test(text)) matched++;
      else if (mismatches.length < 5) mismatches.push(commands[current] + ' -> ' + text.trim());
      if (++done === commands.length) finish();
      else sendNext();
    });
    s.on('error', (e) => finish(e.message));
    sendNext();
  }
}
`;

interface JobResult {
  id: number;
  firstSentNs?: string;
  lastReplyNs?: string;
  matched: number;
  mismatches: string[];
  replies?: string[];
  error?: string;
}

interface Batch {
  /** process.hrtime.bigint() of the first datagram sent and of the last reply received. */
  firstSent: bigint;
  lastReply: bigint;
  matched: number;
  mismatches: string[];
  replies: string[];
}

class ConsoleDriver {
  private nextId = 1;
  private readonly pending = new Map<number, (r: JobResult) => void>();
  private stderr = '';
  private exited = false;

  private constructor(
    private readonly host: Host,
    private readonly child: ChildProcess,
  ) {
    let buf = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const r = JSON.parse(buf.slice(0, i)) as JobResult;
        buf = buf.slice(i + 1);
        this.pending.get(r.id)?.(r);
        this.pending.delete(r.id);
      }
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.stderr = (this.stderr + d).slice(-4096)));
    child.stdin?.on('error', () => undefined);
    child.once('exit', (code, signal) => {
      this.exited = true;
      for (const [id, resolve] of this.pending) resolve({ id, matched: 0, mismatches: [], error: `the console driver in ${host} exited (${String(code ?? signal)}) ${this.stderr.trim()}` });
      this.pending.clear();
    });
  }

  static start(tb: Testbed, host: Host, port: number): ConsoleDriver {
    return new ConsoleDriver(host, tb.spawn(host, process.execPath, ['-e', DRIVER, String(port)], { stdio: ['pipe', 'pipe', 'pipe'] }));
  }

  /** Sends every command (at most `window` in flight) and resolves once each has its reply. */
  async run(commands: readonly string[], options: { window?: number; timeoutMs?: number; expect?: RegExp; replies?: boolean } = {}): Promise<Batch> {
    if (this.exited) throw new Error(`the console driver in ${this.host} is not running: ${this.stderr.trim()}`);
    const id = this.nextId++;
    const result = new Promise<JobResult>((resolve) => this.pending.set(id, resolve));
    const job = { id, commands, window: options.window ?? 1, timeoutMs: options.timeoutMs ?? 30_000, expect: options.expect?.source, replies: options.replies ?? false };
    this.child.stdin?.write(`${JSON.stringify(job)}\n`);
    const r = await result;
    if (r.error !== undefined) throw new Error(`console of shim6d in ${this.host}: ${r.error}`);
    if (r.firstSentNs === undefined || r.lastReplyNs === undefined) throw new Error(`console of shim6d in ${this.host}: job ${id} has no timings`);
    return { firstSent: BigInt(r.firstSentNs), lastReply: BigInt(r.lastReplyNs), matched: r.matched, mismatches: r.mismatches, replies: r.replies ?? [] };
  }

  /** One command; its reply and when it came. */
  async one(command: string, timeoutMs = 30_000): Promise<{ text: string; at: bigint }> {
    const b = await this.run([command], { replies: true, timeoutMs });
    return { text: b.replies[0] ?? '', at: b.lastReply };
  }

  close(): void {
    if (!this.exited) this.child.stdin?.end();
  }
}

// -- shim6d with a console driver -----------------------------------------------------------------

/**
 * shim6d in a host of the testbed (Shim6dProcess), with a console driver in the same namespace
 * and node's heap snapshot on SIGUSR2 (written to its run directory).
 */
class Daemon {
  private constructor(
    readonly proc: Shim6dProcess,
    readonly console: ConsoleDriver,
  ) {}

  static async start(tb: Testbed, host: Host, contexts: readonly Record<string, unknown>[] = []): Promise<Daemon> {
    const config = {
      shim6d: {
        console: { port: CONSOLE_PORT },
        heuristic: { enabled: false },
        ...(REAP_LINK ? { reap: { enabled: false } } : {}),
        dataPlane: { pathMtu: PATH_MTU },
        contexts,
      },
    };
    const nodeArgs = ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${runDirOf(tb, host)}`];
    const proc = await Shim6dProcess.start(tb, host, config, { logLevel: 'info', timeoutMs: 60_000, nodeArgs });
    return new Daemon(proc, ConsoleDriver.start(tb, host, CONSOLE_PORT));
  }

  get host(): Host {
    return this.proc.host;
  }

  get pid(): number {
    const pid = this.proc.pid;
    if (pid === undefined) throw new Error(`shim6d in ${this.host} has no pid`);
    return pid;
  }

  async stats(): Promise<Stats> {
    return parseStats((await this.console.one('stats')).text);
  }

  /**
   * The live JS heap, in bytes: the sum of the self sizes in a heap snapshot, which V8 takes
   * after a full garbage collection (node --heapsnapshot-signal). The daemon is busy meanwhile.
   */
  async liveHeapBytes(): Promise<number> {
    const runDir = this.proc.runDir;
    const snapshots = (): string[] => readdirSync(runDir).filter((f) => f.endsWith('.heapsnapshot'));
    const before = new Set(snapshots());
    this.proc.child.kill('SIGUSR2');
    let size = -1;
    const file = await waitFor(
      () => {
        const f = snapshots().find((x) => !before.has(x));
        if (f === undefined) return undefined;
        const path = join(runDir, f);
        const now = statSync(path).size;
        const stable = now > 0 && now === size;
        size = now;
        return stable && endsWithBrace(path, now) ? path : undefined;
      },
      { what: `a heap snapshot of shim6d in ${this.host}`, timeoutMs: 120_000, intervalMs: 500 },
    );
    try {
      return liveHeapBytes(readFileSync(file, 'latin1'));
    } finally {
      rmSync(file, { force: true });
    }
  }

  log(): string {
    return this.proc.log();
  }

  /** SIGTERM (SIGKILL if that takes over 60 s); then the run directory goes. */
  async stop(): Promise<void> {
    this.console.close();
    try {
      await this.proc.stop(20_000, { killAfterMs: 60_000 });
    } finally {
      this.proc.cleanup();
    }
  }
}

// -- what the daemons say ---------------------------------------------------------------------------

interface Stats {
  contexts: number;
  /** The `control` line's counters (i1-sent, established, ...). */
  control: Record<string, number>;
}

function parseStats(text: string): Stats {
  const contexts = /^contexts\s+(\d+)/m.exec(text)?.[1];
  if (contexts === undefined) throw new Error(`not a stats reply: ${text.slice(0, 200)}`);
  const control: Record<string, number> = {};
  for (const part of (/^control\s+(.*)$/m.exec(text)?.[1] ?? '').split(', ')) {
    const m = /^(\S+) (\d+)$/.exec(part.trim());
    if (m) control[m[1] as string] = Number(m[2]);
  }
  return { contexts: Number(contexts), control };
}

const counter = (s: Stats, name: string): number => s.control[name] ?? 0;

/** Counters that grew between two stats, except the expected ones; "none" when nothing else moved. */
function unexpected(before: Stats, after: Stats, expected: readonly string[]): string {
  const out: string[] = [];
  for (const [k, v] of Object.entries(after.control)) {
    const d = v - counter(before, k);
    if (d > 0 && !expected.includes(k)) out.push(`${k} ${d}`);
  }
  return out.length ? out.join(', ') : 'none';
}

/** True when the last non-blank octet of the file (of this size) is '}': V8 has finished writing the snapshot. */
function endsWithBrace(path: string, size: number): boolean {
  const tail = Buffer.alloc(Math.min(64, size));
  const fd = openSync(path, 'r');
  try {
    readSync(fd, tail, 0, tail.length, size - tail.length);
  } finally {
    closeSync(fd);
  }
  return tail.toString('latin1').trimEnd().endsWith('}');
}

/** The sum of the nodes' self_size in a V8 heap snapshot (its "nodes" array, scanned in place). */
function liveHeapBytes(text: string): number {
  const fields = JSON.parse(/"node_fields":(\[[^\]]*\])/.exec(text.slice(0, 4096))?.[1] ?? '[]') as string[];
  const width = fields.length;
  const at = fields.indexOf('self_size');
  const start = text.indexOf('"nodes":[');
  if (width === 0 || at < 0 || start < 0) throw new Error('not a V8 heap snapshot');
  let sum = 0;
  let field = 0;
  let num = 0;
  let inNumber = false;
  for (let i = start + 9; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      num = num * 10 + (c - 48);
      inNumber = true;
      continue;
    }
    if (inNumber) {
      if (field === at) sum += num;
      field = (field + 1) % width;
      num = 0;
      inNumber = false;
    }
    if (c === 93) break; // ']'
  }
  return sum;
}

/** The 1-minute load average: other work on the machine competes with the daemons for the CPUs. */
const loadAverage = (): string => loadavg()[0]?.toFixed(2) ?? '?';

/** Packets NFQUEUE `queue` dropped in host's namespace: [queue_dropped (queue full), user_dropped (netlink socket buffer full)]. */
async function queueDrops(tb: Testbed, host: Host, queue: number): Promise<[number, number]> {
  const r = await tb.exec(host, ['cat', '/proc/net/netfilter/nfnetlink_queue'], { check: false });
  for (const line of r.stdout.split('\n')) {
    const f = line.trim().split(/\s+/).map(Number);
    if (f[0] === queue) return [f[5] ?? 0, f[6] ?? 0];
  }
  return [0, 0];
}

/** Control messages shim6d could not send (raw socket errors), from its log. */
const sendFailures = (d: Daemon): number => (d.log().match(/cannot send a control message/g) ?? []).length;

// -- the testbed ------------------------------------------------------------------------------------

async function addAddresses(tb: Testbed, host: 'a' | 'b', addrs: readonly string[]): Promise<void> {
  const dev = tb[host].interfaces[0] as string;
  const lines = addrs.map((x) => `addr add ${x}/64 dev ${dev} nodad`).join('\n');
  await tb.exec(host, ['ip', '-6', '-batch', '-'], { input: `${lines}\n` });
}

/**
 * R1 routes each host's extra addresses (one /112) through that host's path-1 locator: one
 * neighbour entry per host instead of one per address. The IPv6 neighbour table is shared by
 * every namespace on the machine (net.ipv6.neigh.default.gc_thresh3, 1,024 by default), and other
 * testbeds use it too. Then one datagram each way resolves the two locators.
 */
async function routeExtraAddresses(tb: Testbed, aAddrs: readonly string[], bAddrs: readonly string[]): Promise<void> {
  const [r1a, r1b] = tb.r1.interfaces as [string, string];
  const [a1] = tb.a.locators as [string, string];
  const [b1] = tb.b.locators as [string, string];
  await tb.exec('r1', ['ip', '-6', 'route', 'add', EXTRA_PREFIX.a, 'via', a1, 'dev', r1a]);
  await tb.exec('r1', ['ip', '-6', 'route', 'add', EXTRA_PREFIX.b, 'via', b1, 'dev', r1b]);
  const ends = (x: readonly string[]): string[] => [x[0] as string, x[x.length - 1] as string];
  const echo = await tb.udpServer('b', ends(bAddrs), { echo: true });
  try {
    for (const from of ends(aAddrs)) {
      for (const to of ends(bAddrs)) {
        if (!(await tb.udpRoundTrip('a', from, to, echo.port, { timeoutMs: 3000 }))) throw new Error(`no UDP round trip ${from} → ${to}: the extra addresses are not routed`);
      }
    }
  } finally {
    await echo.close();
  }
}

// -- one burst of `context` commands ----------------------------------------------------------------

interface Burst {
  n: number;
  /** A reached base + n established contexts before the deadline. */
  complete: boolean;
  /** From the first `context` command sent to the `stats` reply showing all established (or to the deadline). */
  seconds: number;
  /** From the first `context` command sent to the last reply (every I1 sent); NaN if not all were answered. */
  commandSeconds: number;
  /** Contexts A had established in this burst when it ended. */
  established: number;
  /** Why the burst ended before its deadline without all N ('' otherwise). */
  gaveUp: string;
  /** (seconds since the first command, contexts established in this burst), from each poll. */
  trajectory: Array<[number, number]>;
  note: string;
}

/**
 * Sends a `context` command for each pair from A's console (WINDOW in flight) and polls A's
 * `stats` (cheaper than following `dump json`'s pages for every poll) until
 * A has established them all, or the deadline passes.
 */
async function burst(tb: Testbed, a: Daemon, b: Daemon, pairs: ReadonlyArray<[string, string]>, o: { deadlineMs: number; intervalMs: number; failLate: boolean }): Promise<Burst> {
  const n = pairs.length;
  const [beforeA, beforeB] = [await a.stats(), await b.stats()];
  const drops0 = { a: await queueDrops(tb, 'a', 140), b: await queueDrops(tb, 'b', 140) };
  const [cpuA0, cpuB0] = [cpuSeconds(a.pid), cpuSeconds(b.pid)];
  const base = counter(beforeA, 'established');
  const t0 = process.hrtime.bigint();
  let sent: Batch | undefined;
  let sendError: unknown;
  const sending = a.console
    .run(pairs.map(([l, p]) => `context ${l} ${p}`), { window: WINDOW, expect: /^context \d+: I1 sent/, timeoutMs: o.deadlineMs + 60_000 })
    .then((r) => (sent = r))
    .catch((e: unknown) => (sendError = e));
  void sending;
  const trajectory: Array<[number, number]> = [];
  let last: Stats;
  let end: bigint;
  let gaveUp = '';
  const deadline = t0 + BigInt(o.deadlineMs) * 1_000_000n;
  for (;;) {
    if (sendError !== undefined) throw sendError;
    if (o.failLate && sent !== undefined && sent.matched !== n) throw new Error(`${n - sent.matched} of ${n} context commands refused, e.g. ${sent.mismatches.join(' | ')}`);
    const r = await a.console.one('stats', 60_000);
    last = parseStats(r.text);
    end = r.at;
    const done = counter(last, 'established') - base;
    trajectory.push([secondsBetween(t0, r.at), done]);
    // Every accepted command has its context (refused ones only when failLate is off).
    if (sent !== undefined && done >= sent.matched) break;
    // A peer in hold-down refuses every later command for it: N can no longer be reached.
    if (!o.failLate && counter(last, 'no-support') > counter(beforeA, 'no-support')) {
      gaveUp = `stopped after ${secondsBetween(t0, r.at).toFixed(1)} s: A gave up on a peer (no R1 after every I1 retry: NO-SUPPORT, hold-down), so not all ${n} can be established`;
      break;
    }
    if (process.hrtime.bigint() > deadline) {
      if (o.failLate) throw new Error(`A did not establish ${n} contexts within ${o.deadlineMs} ms: ${done} established, ${last.contexts} contexts, ${JSON.stringify(last.control)}`);
      break;
    }
    await pause(o.intervalMs);
  }
  const start = sent?.firstSent ?? t0;
  const wall = secondsBetween(start, end);
  const established = counter(last, 'established') - base;
  const complete = established >= n && sent?.matched === n && gaveUp === '';
  const refused = sent === undefined || sent.matched === n ? '' : `; ${n - sent.matched} commands refused, e.g. "${sent.mismatches[0] ?? ''}"`;
  const cpu = `shim6d CPU A ${((100 * (cpuSeconds(a.pid) - cpuA0)) / wall).toFixed(0)} %, B ${((100 * (cpuSeconds(b.pid) - cpuB0)) / wall).toFixed(0)} %`;
  const afterA = await a.stats();
  const afterB = await b.stats();
  if (complete && afterA.contexts !== beforeA.contexts + n) throw new Error(`A has ${afterA.contexts} contexts after the burst, expected ${beforeA.contexts + n}`);
  if (complete && afterB.contexts !== beforeB.contexts + n) throw new Error(`B has ${afterB.contexts} contexts after the burst, expected ${beforeB.contexts + n}`);
  const dropsOf = async (host: 'a' | 'b'): Promise<string> => {
    const [full, buffer] = await queueDrops(tb, host, 140);
    const [full0, buffer0] = drops0[host];
    return full + buffer === full0 + buffer0 ? `${host.toUpperCase()} 0` : `${host.toUpperCase()} ${full - full0} (queue full) + ${buffer - buffer0} (socket buffer full)`;
  };
  const drops = `${await dropsOf('a')}, ${await dropsOf('b')}`;
  const noteA = unexpected(beforeA, afterA, ['i1-sent', 'i2-sent', 'established']);
  const noteB = unexpected(beforeB, afterB, ['r1-sent', 'r2-sent', 'established']);
  return {
    n,
    complete,
    seconds: wall,
    commandSeconds: sent ? secondsBetween(sent.firstSent, sent.lastReply) : NaN,
    established,
    gaveUp,
    trajectory,
    note: `${cpu}; A sent I1 ${counter(afterA, 'i1-sent') - counter(beforeA, 'i1-sent')} (first ones), I2 ${counter(afterA, 'i2-sent') - counter(beforeA, 'i2-sent')}; other counters: A ${noteA}, B ${noteB}; inbound NFQUEUE drops ${drops}${refused}`,
  };
}

function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((x, y) => x - y);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

/** The run whose time is the median (an odd number of runs). */
function medianRun(runs: readonly Burst[]): Burst {
  return [...runs].sort((x, y) => x.seconds - y.seconds)[Math.floor(runs.length / 2)] as Burst;
}

/** Seconds since the burst's start when `count` contexts were established (first poll that saw it). */
function reachedAt(b: Burst, count: number): number | undefined {
  return b.trajectory.find(([, n]) => n >= count)?.[0];
}

// -- the run --------------------------------------------------------------------------------------

/** Empties both hosts' conntrack tables: each phase starts without the flows of the one before. */
async function flushConntrack(tb: Testbed): Promise<void> {
  for (const host of ['a', 'b'] as const) await tb.exec(host, ['conntrack', '-F'], { check: false });
}

async function startPair(tb: Testbed, daemons: Daemon[]): Promise<{ a: Daemon; b: Daemon }> {
  await flushConntrack(tb);
  const a = await Daemon.start(tb, 'a');
  daemons.push(a);
  const b = await Daemon.start(tb, 'b');
  daemons.push(b);
  return { a, b };
}

async function stopAll(daemons: Daemon[]): Promise<void> {
  for (const d of daemons.splice(0)) await d.stop().catch((e: unknown) => console.error(`stopping shim6d in ${d.host}: ${String(e)}`));
}

/** The same console load before every RSS reading, then a pause. */
async function warmUpConsole(d: Daemon): Promise<void> {
  await d.console.run(Array.from({ length: 300 }, () => 'help'), { window: WINDOW });
  await d.console.run(Array.from({ length: 50 }, () => 'stats'), { window: 1 });
}

/**
 * n static contexts on their ULID pairs (nothing shimmed: no rules, no path MTU), from A's grid
 * addresses to made-up peers fd00::<k>: short enough for 10,000 to fit the 1 MiB file.
 */
function staticContexts(aAddrs: readonly string[], n: number): Record<string, unknown>[] {
  return Array.from({ length: n }, (_, k) => ({ localUlid: aAddrs[k % K], peerUlid: `fd00::${k.toString(16)}`, localContextTag: k + 1, peerContextTag: k + 1 }));
}

interface Memory {
  rss: number;
  /** Live JS heap (heap snapshot). */
  heap: number;
}

/**
 * VmRSS, then the live heap. The snapshot leaves the process hundreds of MiB larger, so it is the
 * last thing measured on a daemon.
 */
async function memoryOf(d: Daemon): Promise<Memory> {
  const rss = rssBytes(d.pid);
  return { rss, heap: await d.liveHeapBytes() };
}

/** Memory of a fresh shim6d in A started with n static contexts (0: the baseline), after the console warm-up and a pause. */
async function staticMemory(tb: Testbed, daemons: Daemon[], aAddrs: readonly string[], n: number): Promise<Memory> {
  await flushConntrack(tb);
  const d = await Daemon.start(tb, 'a', staticContexts(aAddrs, n));
  daemons.push(d);
  await warmUpConsole(d);
  await pause(SETTLE_MS);
  const { contexts } = await d.stats();
  if (contexts !== n) throw new Error(`shim6d started with ${contexts} of ${n} static contexts`);
  const m = await memoryOf(d);
  await stopAll(daemons);
  return m;
}

export async function run(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log('\n(skipped: needs root (network namespaces, ip6tables, NFQUEUE))');
    return;
  }
  ensureBuilt(); // before the pure baseline, which runs dist/ too
  const started = process.hrtime.bigint();
  const load0 = loadAverage();
  let tb: Testbed | undefined;
  const daemons: Daemon[] = [];
  try {
    const aAddrs = extraAddresses('a1');
    const bAddrs = extraAddresses('b1');

    // 1. The pure baseline first, while nothing else runs.
    const pure = new Map<number, { plain: number; reschedule: number }>();
    const pureRate = (n: number, reschedule: boolean): number => n / median(Array.from({ length: REPEATS }, () => pureEstablish(aAddrs, bAddrs, [n], reschedule)[0] as number));
    for (const n of RATE_N) pure.set(n, { plain: pureRate(n, false), reschedule: pureRate(n, true) });
    const pureGrowth = pureEstablish(aAddrs, bAddrs, Array.from({ length: PURE_GROWTH / SMALL }, () => SMALL), false);

    // 2. The testbed: K extra addresses on each host's path-1 interface, routed by R1.
    tb = await Testbed.create();
    const bed = tb;
    await addAddresses(tb, 'a', aAddrs);
    await addAddresses(tb, 'b', bAddrs);
    await routeExtraAddresses(tb, aAddrs, bAddrs);
    console.log(
      `\ntestbed ${tb.id}: ${K} extra addresses per host in the path-1 /64s (${aAddrs[0]} .., ${bAddrs[0]} ..), one context per ULID pair of that grid, ` +
        `no identities (ULID-only contexts); shim6d with the heuristic off${REAP_LINK ? ' and the reapd link off' : ''}, default control timers, log level info; ` +
        `${WINDOW} console commands in flight`,
    );

    // 3. Per N, REPEATS times: fresh daemons, the console baseline (the first time), the burst.
    //    After the last SMALL one, the live heap of both daemons (the last thing done to them).
    const consoleRates: Measurement[] = [];
    const bursts = new Map<number, Burst[]>();
    let heapSmall: { a: number; b: number } | undefined;
    for (const n of RATE_N) {
      const runs: Burst[] = [];
      bursts.set(n, runs);
      for (let i = 0; i < REPEATS; i++) {
        const { a, b } = await startPair(bed, daemons);
        if (consoleRates.length === 0) {
          await a.console.run(Array.from({ length: 2000 }, () => 'help'), { window: WINDOW }); // warm-up
          const many = await a.console.run(Array.from({ length: CONSOLE_ROUNDS }, () => 'help'), { window: WINDOW, expect: /^help/m });
          const one = await a.console.run(Array.from({ length: CONSOLE_ROUNDS / 3 }, () => 'help'), { window: 1, expect: /^help/m });
          consoleRates.push(
            { name: `baseline: \`help\` round trips, ${WINDOW} in flight`, opsPerSecond: CONSOLE_ROUNDS / secondsBetween(many.firstSent, many.lastReply), note: `${CONSOLE_ROUNDS} commands, 0 contexts` },
            { name: '`help` round trips, one at a time', opsPerSecond: CONSOLE_ROUNDS / 3 / secondsBetween(one.firstSent, one.lastReply) },
          );
        }
        const r = await burst(bed, a, b, gridPairs(aAddrs, bAddrs, 0, n), { deadlineMs: BURST_TIMEOUT_MS, intervalMs: n <= 100 ? 2 : 10, failLate: true });
        runs.push(r);
        const failures = sendFailures(a) + sendFailures(b);
        if (failures > 0) r.note += `; ${failures} control messages not sent (raw socket errors in the logs)`;
        if (n === SMALL && i === REPEATS - 1) {
          await pause(SETTLE_MS);
          heapSmall = { a: await a.liveHeapBytes(), b: await b.liveHeapBytes() };
        }
        await stopAll(daemons);
      }
      const m = medianRun(runs);
      consoleRates.push({ name: `\`context\` commands, ${WINDOW} in flight, ${plural(n)} from an empty table`, opsPerSecond: n / m.commandSeconds, note: `while the exchanges run; the median run of ${REPEATS}` });
    }

    // 4. Memory: fresh daemons; RSS with 0 contexts and SMALL ESTABLISHED ones, then the growth
    //    to LARGE within GROW_DEADLINE_MS (its rate as the table fills is reported too).
    const { a, b } = await startPair(bed, daemons);
    await warmUpConsole(a);
    await warmUpConsole(b);
    await pause(SETTLE_MS);
    const rss0 = { a: rssBytes(a.pid), b: rssBytes(b.pid) };
    const small = await burst(bed, a, b, gridPairs(aAddrs, bAddrs, 0, SMALL), { deadlineMs: BURST_TIMEOUT_MS, intervalMs: 10, failLate: true });
    await pause(SETTLE_MS);
    const rssSmall = { a: rssBytes(a.pid), b: rssBytes(b.pid) };
    const grow = await burst(bed, a, b, gridPairs(aAddrs, bAddrs, SMALL, LARGE), { deadlineMs: GROW_DEADLINE_MS, intervalMs: 250, failLate: false });
    let large: { a: Memory; b: Memory } | undefined;
    if (grow.complete) {
      await pause(SETTLE_MS);
      const rss = { a: rssBytes(a.pid), b: rssBytes(b.pid) };
      large = { a: { rss: rss.a, heap: await a.liveHeapBytes() }, b: { rss: rss.b, heap: await b.liveHeapBytes() } };
    }
    const failures = sendFailures(a) + sendFailures(b);
    if (failures > 0) grow.note += `; ${failures} control messages not sent (raw socket errors in the logs)`;
    await stopAll(daemons);

    // 5. Fresh daemons with 0 contexts: the live heap's baseline (and a fresh start's RSS). Static
    //    contexts when the negotiated ones did not reach LARGE, and SMALL static ones to compare.
    const fresh = await startPair(bed, daemons);
    await warmUpConsole(fresh.a);
    await warmUpConsole(fresh.b);
    await pause(SETTLE_MS);
    const zero = { a: await memoryOf(fresh.a), b: await memoryOf(fresh.b) };
    await stopAll(daemons);
    const staticSmall = grow.complete ? undefined : await staticMemory(bed, daemons, aAddrs, SMALL);
    const staticLarge = grow.complete ? undefined : await staticMemory(bed, daemons, aAddrs, LARGE);

    // -- the report ------------------------------------------------------------------------------
    for (const n of RATE_N) {
      const runs = bursts.get(n) as Burst[];
      const r = medianRun(runs);
      const p = pure.get(n) as { plain: number; reschedule: number };
      report(`Contexts established per second, N = ${plural(n)} from an empty table (first command on A's console to A's stats showing all N established; medians of ${REPEATS} runs)`, [
        { name: `baseline: pure ContextMachine pair in one process`, opsPerSecond: p.plain, note: 'compiled dist/: table, machine, HostLocatorSecurity, wire encoding; no kernel, no console' },
        { name: '  the same, nextDeadline() after every input', opsPerSecond: p.reschedule, note: "as the daemon's DeadlineTimer does" },
        {
          name: `real shim6d A and B on the testbed`,
          opsPerSecond: n / r.seconds,
          note: `runs ${runs.map((x) => `${x.seconds.toFixed(2)} s`).join(', ')}; the median one: commands answered in ${r.commandSeconds.toFixed(2)} s, ${r.note}`,
        },
      ]);
    }

    // The rate per SMALL as the table fills: pure from PURE_GROWTH's phases, real from the polls.
    const rows: Measurement[] = [];
    const at = (count: number): number | undefined => (count === SMALL ? 0 : reachedAt(grow, count - SMALL));
    const reached = SMALL + grow.established;
    for (let from = 0; from < LARGE; from += SMALL) {
      const pureSeconds = pureGrowth[from / SMALL];
      const span = (to: number): string => `${plural(from)} → ${plural(to)}`;
      if (pureSeconds !== undefined) rows.push({ name: `pure ContextMachine, ${span(from + SMALL)}`, opsPerSecond: SMALL / pureSeconds });
      const vsPure = (rate: number): string => (pureSeconds !== undefined ? `x${((rate * pureSeconds) / SMALL).toFixed(3)} of pure at this size` : 'pure not run this far');
      if (from === 0) {
        const rate = SMALL / small.seconds;
        rows.push({ name: `real shim6d, ${span(SMALL)}`, opsPerSecond: rate, note: vsPure(rate) });
        continue;
      }
      const t0 = at(from);
      const t1 = at(Math.min(from + SMALL, reached));
      if (t0 === undefined || t1 === undefined || reached <= from || t1 <= t0) continue;
      const rate = (Math.min(from + SMALL, reached) - from) / (t1 - t0);
      const partial = reached < from + SMALL ? ` (then no more)` : '';
      rows.push({ name: `real shim6d, ${span(Math.min(from + SMALL, reached))}${partial}`, opsPerSecond: rate, note: vsPure(rate) });
    }
    const growNote = grow.complete
      ? `all ${plural(LARGE)} established in ${(small.seconds + grow.seconds).toFixed(1)} s`
      : `only ${plural(reached)} of ${plural(LARGE)} established (${grow.gaveUp || `deadline of ${GROW_DEADLINE_MS / 1000} s after the first ${plural(SMALL)}`})`;
    report(`Contexts established per second as A's table grows, per ${plural(SMALL)}; ${growNote}`, rows);
    console.log(`   growth ${plural(SMALL)} → ${plural(LARGE)}: ${grow.note}`);
    report('shim6d admin console on A: commands answered per second (one datagram per command)', consoleRates);

    const per = (value: number, base: number, n: number): string => `+${((value - base) / 2 ** 20).toFixed(1)} MiB, ${Math.round((value - base) / n)} bytes per context`;
    for (const host of ['a', 'b'] as const) {
      const role = host === 'a' ? 'initiator' : 'responder';
      const rss: Value[] = [
        { name: '0 contexts (the daemon below, before its bursts)', value: rss0[host], unit: 'bytes' },
        { name: `${plural(SMALL)} ESTABLISHED negotiated contexts`, value: rssSmall[host], unit: 'bytes', note: per(rssSmall[host], rss0[host], SMALL) },
      ];
      if (large) rss.push({ name: `${plural(LARGE)} ESTABLISHED negotiated contexts`, value: large[host].rss, unit: 'bytes', note: per(large[host].rss, rss0[host], LARGE) });
      rss.push({ name: '0 contexts, a fresh daemon', value: zero[host].rss, unit: 'bytes' });
      if (host === 'a' && staticSmall && staticLarge) {
        rss.push(
          { name: `${plural(SMALL)} static contexts, a fresh daemon (from the file)`, value: staticSmall.rss, unit: 'bytes', note: `${per(staticSmall.rss, zero.a.rss, SMALL)} over the fresh 0` },
          { name: `${plural(LARGE)} static contexts, a fresh daemon (from the file)`, value: staticLarge.rss, unit: 'bytes', note: `${per(staticLarge.rss, zero.a.rss, LARGE)} over the fresh 0` },
        );
      }
      reportValues(`shim6d resident set size on ${host.toUpperCase()} (${role}), VmRSS ${SETTLE_MS / 1000} s after the contexts came`, rss);

      const heap: Value[] = [{ name: '0 contexts (a fresh daemon)', value: zero[host].heap, unit: 'bytes' }];
      if (heapSmall) heap.push({ name: `${plural(SMALL)} ESTABLISHED negotiated contexts`, value: heapSmall[host], unit: 'bytes', note: per(heapSmall[host], zero[host].heap, SMALL) });
      if (large) heap.push({ name: `${plural(LARGE)} ESTABLISHED negotiated contexts`, value: large[host].heap, unit: 'bytes', note: per(large[host].heap, zero[host].heap, LARGE) });
      if (host === 'a' && staticSmall && staticLarge) {
        heap.push(
          { name: `${plural(SMALL)} static contexts (from the file)`, value: staticSmall.heap, unit: 'bytes', note: per(staticSmall.heap, zero.a.heap, SMALL) },
          { name: `${plural(LARGE)} static contexts (from the file)`, value: staticLarge.heap, unit: 'bytes', note: per(staticLarge.heap, zero.a.heap, LARGE) },
        );
      }
      reportValues(`shim6d live JS heap on ${host.toUpperCase()} (${role}): a heap snapshot's self sizes, after the full GC it makes`, heap);
    }
    if (!grow.complete) console.log(`   (${plural(LARGE)} negotiated contexts were not reached within ${GROW_DEADLINE_MS / 1000} s: the ${plural(LARGE)}-context figures are static contexts)`);
    console.log(`\n(the whole run took ${secondsBetween(started, process.hrtime.bigint()).toFixed(0)} s; load average at its start ${load0}, at its end ${loadAverage()}, on ${cpus().length} CPUs)`);
  } finally {
    await stopAll(daemons);
    await tb?.destroy();
    // A daemon that failed to start leaves its run directory; destroy() has killed it.
    if (tb) for (const host of ['a', 'b'] as const) rmSync(runDirOf(tb, host), { recursive: true, force: true });
  }
}
