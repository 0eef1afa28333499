/**
 * shim6d's data plane end to end, on one testbed (scripts/testbed) with the real daemons:
 * iperf3 between the ULIDs a1 → b1 while the contexts sit on their ULID pair (the kernel alone:
 * nothing is queued) and once they are moved to the path-2 pair with path 1 cut (every packet
 * through NFQUEUE and shim6d on both hosts); then the same UDP flood with 5,000 shimmed static
 * contexts installed, and what 5,000 contexts cost at start-up (time, RSS).
 *
 * Needs root (namespaces, ip6tables, NFQUEUE) and iperf3; without them it says so and returns.
 * Whatever happens, the daemons are stopped and the testbed destroyed.
 */
import { defaultShim6Config } from '../common/config';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MAX_CONFIG_FILE_BYTES } from '../common/config';
import { CONSOLE_CLIENT, Shim6dProcess, testbedContexts } from '../scripts/lib/shim6d';
import { Testbed, type Host } from '../scripts/lib/testbed';
import { waitFor } from '../scripts/lib/wait';
import { reportValues } from './harness';

export const title = 'shim6d data plane on the testbed: iperf3 through NFQUEUE, 1 vs 5,000 contexts';

/** Seconds per iperf3 run. */
const SECONDS = 4;
const UDP_LENGTH = 64;
const IPERF_PORT = 5201;
const EXTRA_CONTEXTS = 4999;
const TAG_A = 0x0a0a0a0a01;
const TAG_B = 0x0b0b0b0b01;
/** The console port shim6d listens on by default. */
const CONSOLE_PORT = defaultShim6Config().shim6d.console.port;
const BIN = join(__dirname, '..', 'bin', 'shim6d');

// -- iperf3 ---------------------------------------------------------------------------------------

interface IperfSum {
  seconds?: number;
  bytes?: number;
  bits_per_second?: number;
  packets?: number;
  lost_packets?: number;
}
interface IperfJson {
  error?: string;
  end?: { sum?: IperfSum; sum_sent?: IperfSum; sum_received?: IperfSum };
}

async function iperf(tb: Testbed, extra: readonly string[]): Promise<IperfJson> {
  const [a1] = tb.a.locators as [string, string];
  const [b1] = tb.b.locators as [string, string];
  const argv = ['iperf3', '-c', b1, '-B', a1, '-p', String(IPERF_PORT), '-t', String(SECONDS), '-J', '--connect-timeout', '5000', ...extra];
  const r = await tb.exec('a', argv, { check: false, timeoutMs: (SECONDS + 30) * 1000 });
  let doc: IperfJson;
  try {
    doc = JSON.parse(r.stdout) as IperfJson;
  } catch {
    throw new Error(`${argv.join(' ')}: exit ${String(r.code ?? r.signal)}, no JSON: ${r.stderr.trim() || r.stdout.slice(0, 300)}`);
  }
  if (doc.error !== undefined || r.code !== 0) throw new Error(`${argv.join(' ')}: ${doc.error ?? `exit ${String(r.code ?? r.signal)}`}`);
  return doc;
}

/** TCP a1 → b1: the receiver's bits per second. */
async function tcpThroughput(tb: Testbed): Promise<number> {
  const bps = (await iperf(tb, [])).end?.sum_received?.bits_per_second;
  if (typeof bps !== 'number') throw new Error('iperf3 TCP: no end.sum_received.bits_per_second');
  return bps;
}

interface UdpResult {
  /** Datagrams the server received, per second. */
  receivedPerSecond: number;
  sentPerSecond: number;
  lostPercent: number;
}

/** UDP a1 → b1, 64-octet datagrams as fast as the sender goes (-b 0). */
async function udpRate(tb: Testbed): Promise<UdpResult> {
  const sum = (await iperf(tb, ['-u', '-b', '0', '-l', String(UDP_LENGTH)])).end?.sum;
  const { packets, lost_packets: lost, seconds } = sum ?? {};
  if (typeof packets !== 'number' || typeof lost !== 'number' || typeof seconds !== 'number' || seconds <= 0) {
    throw new Error(`iperf3 UDP: no end.sum packets/lost_packets/seconds: ${JSON.stringify(sum)}`);
  }
  return { receivedPerSecond: (packets - lost) / seconds, sentPerSecond: packets / seconds, lostPercent: packets > 0 ? (100 * lost) / packets : 0 };
}

const udpNote = (u: UdpResult): string => `sent ${(u.sentPerSecond / 1e3).toFixed(1)} k/s, ${u.lostPercent.toFixed(1)} % lost`;

// -- shim6d, started and asked directly ----------------------------------------------------------


// Asks 'stats' every intervalMs until the console answers; exits 0 then.
const CONSOLE_WAIT = `
const dgram = require('node:dgram');
const [port, intervalMs] = process.argv.slice(1);
const s = dgram.createSocket('udp4');
s.on('message', (m) => { if (m.toString().startsWith('uptime')) process.exit(0); });
s.on('error', () => undefined);
const ask = () => s.send('stats', Number(port), '127.0.0.1', () => undefined);
ask();
setInterval(ask, Number(intervalMs));
`;

/**
 * shim6d started from a compact (one-line) configuration file. Shim6dProcess.start writes its
 * file indented, and 5,000 contexts indented are about 1.4 MB: over the 1 MiB the daemon reads
 * (MAX_CONFIG_FILE_BYTES); on one line they are about 0.85 MB.
 */
class Daemon {
  private exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private stderr = '';
  /** From the spawn to the first console reply. */
  startSeconds = NaN;

  private constructor(
    readonly tb: Testbed,
    readonly host: Host,
    readonly child: ChildProcess,
    readonly runDir: string,
  ) {
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.stderr = (this.stderr + d).slice(-65536)));
    child.once('exit', (code, signal) => (this.exit = { code, signal }));
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error(`shim6d in ${this.host} has no pid`);
    return this.child.pid;
  }

  private lastLines(n: number): string {
    return this.stderr.trim().split('\n').slice(-n).join('\n');
  }

  /** Runs dist/ as it is: the first Shim6dProcess.start of the run has built it (ensureBuilt). */
  static async start(tb: Testbed, host: Host, contexts: readonly Record<string, unknown>[], options: { pathMtu?: number; timeoutMs?: number } = {}): Promise<Daemon> {
    const timeoutMs = options.timeoutMs ?? 180_000;
    const runDir = Shim6dProcess.runDirOf(tb, host);
    mkdirSync(runDir, { recursive: true, mode: 0o700 });
    const doc = {
      runDir,
      shim6d: {
        log: { level: 'info', file: join(runDir, 'shim6d.log'), stderr: true },
        console: { port: CONSOLE_PORT },
        ...(options.pathMtu === undefined ? {} : { dataPlane: { pathMtu: options.pathMtu } }),
        contexts,
      },
    };
    const text = `${JSON.stringify(doc)}\n`;
    const size = Buffer.byteLength(text);
    if (size > MAX_CONFIG_FILE_BYTES) throw new Error(`the configuration of ${contexts.length} contexts is ${size} bytes, over ${MAX_CONFIG_FILE_BYTES}`);
    const configFile = join(runDir, 'shim6.json');
    writeFileSync(configFile, text);
    const poller = tb.spawn(host, process.execPath, ['-e', CONSOLE_WAIT, String(CONSOLE_PORT), '20'], { stdio: 'ignore' });
    const polled = new Promise<void>((resolve) => poller.once('exit', () => resolve()));
    const t0 = process.hrtime.bigint();
    const d = new Daemon(tb, host, tb.spawn(host, process.execPath, [BIN, '--config', configFile], { stdio: ['ignore', 'ignore', 'pipe'] }), runDir);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        polled,
        new Promise<never>((_, reject) => d.child.once('exit', (code, signal) => reject(new Error(`shim6d in ${host} exited (${String(code ?? signal)}): ${d.lastLines(5)}`)))),
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`shim6d in ${host}: no console reply within ${timeoutMs} ms`)), timeoutMs))),
      ]);
      d.startSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
      if (d.exit) throw new Error(`shim6d in ${host} exited (${String(d.exit.code ?? d.exit.signal)}): ${d.lastLines(5)}`);
    } catch (e) {
      poller.kill('SIGKILL');
      await d.stop();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    return d;
  }

  async console(command: string): Promise<string> {
    const r = await this.tb.exec(this.host, [process.execPath, '-e', CONSOLE_CLIENT, String(CONSOLE_PORT), '5000', command], { check: false, timeoutMs: 15_000 });
    if (r.code !== 0) throw new Error(`no console reply from shim6d in ${this.host} to '${command}'${this.exit ? ' (it exited)' : ''}: ${this.lastLines(3)}`);
    return r.stdout;
  }

  /** SIGTERM (SIGKILL if that takes over 60 s), then the run directory goes. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const gone = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
      this.child.kill('SIGTERM');
      const late = setTimeout(() => this.child.kill('SIGKILL'), 60_000);
      await gone;
      clearTimeout(late);
    }
    rmSync(this.runDir, { recursive: true, force: true });
  }
}

/** Resident set size of a process, in bytes. */
function rssBytes(pid: number): number {
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  if (kb === undefined) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(kb) * 1024;
}

interface Stats {
  contexts: number;
  shimmedContexts: number;
  shimmed: number;
  deshimmed: number;
}

function parseStats(text: string): Stats {
  const num = (re: RegExp, i = 1): number => Number(re.exec(text)?.[i] ?? NaN);
  return {
    contexts: num(/^contexts\s+(\d+) \((\d+) shimmed\)/m),
    shimmedContexts: num(/^contexts\s+(\d+) \((\d+) shimmed\)/m, 2),
    shimmed: num(/^outbound\s+\d+ packets queued, (\d+) shimmed/m),
    deshimmed: num(/^inbound\s+\d+ packets queued, (\d+) deshimmed/m),
  };
}

interface Console {
  readonly pid: number | undefined;
  console(command: string): Promise<string>;
}
const stats = async (d: Console): Promise<Stats> => parseStats(await d.console('stats'));

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;

/** CPU time (user + system) a process has used, in seconds. */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
  return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
}

interface Shimmed<T> {
  value: T;
  /** "shim6d CPU A 97 %, B 64 %": each daemon's CPU time over the run's wall time. */
  cpu: string;
}

/** Runs fn and checks that A shimmed and B deshimmed (at least) `least` packets meanwhile. */
async function throughShim<T>(a: Console, b: Console, least: number, fn: () => Promise<T>): Promise<Shimmed<T>> {
  const [a0, b0] = [await stats(a), await stats(b)];
  const [ca, cb, t0] = [cpuSeconds(a.pid), cpuSeconds(b.pid), process.hrtime.bigint()];
  const value = await fn();
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = `shim6d CPU A ${((100 * (cpuSeconds(a.pid) - ca)) / wall).toFixed(0)} %, B ${((100 * (cpuSeconds(b.pid) - cb)) / wall).toFixed(0)} %`;
  const [a1, b1] = [await stats(a), await stats(b)];
  if (!(a1.shimmed - a0.shimmed >= least && b1.deshimmed - b0.deshimmed >= least)) {
    throw new Error(`the traffic did not go through shim6d: A shimmed ${a1.shimmed - a0.shimmed}, B deshimmed ${b1.deshimmed - b0.deshimmed} packets`);
  }
  return { value, cpu };
}

/** Each host's real context plus `extra` shimmed ones toward made-up peers. */
function manyContexts(tb: Testbed, extra: number): Record<'a' | 'b', Record<string, unknown>[]> {
  const real = testbedContexts(tb, { a: TAG_A, b: TAG_B });
  const out: Record<'a' | 'b', Record<string, unknown>[]> = { a: [real.a], b: [real.b] };
  for (const host of ['a', 'b'] as const) {
    const [x1, x2] = tb[host].locators as [string, string];
    for (let i = 0; i < extra; i++) {
      const n = (i + 2).toString(16);
      // Peer ULID 2001:db8:ffNN::n (NN: a or b), its one locator 2001:db8:feNN::n. Our locator
      // is x2 only, so the default pair (x2, fe..) differs from the ULIDs: the context is
      // shimmed and its ULID pair goes into the set. No locatorPair key: it keeps the file small.
      out[host].push({
        id: i + 2,
        localUlid: x1,
        peerUlid: `2001:db8:ff${host}::${n}`,
        localContextTag: 0x10000 + i,
        peerContextTag: 0x20000 + i,
        localLocators: [x2],
        peerLocators: [`2001:db8:fe${host}::${n}`],
      });
    }
  }
  return out;
}

/** Shimmed ULID pairs in host's sets (one hash:net,net set, or one set per local ULID). */
async function setEntries(tb: Testbed, host: Host): Promise<number> {
  const out = (await tb.exec(host, ['ipset', 'list', '-t'])).stdout;
  let n = 0;
  let ours = false;
  for (const line of out.split('\n')) {
    const name = /^Name: (\S+)/.exec(line)?.[1];
    if (name !== undefined) ours = name === 'shim6-pairs' || name.startsWith('shim6-pairs-');
    const count = /^Number of entries: (\d+)/.exec(line)?.[1];
    if (ours && count !== undefined) n += Number(count);
  }
  return n;
}

// -- the run --------------------------------------------------------------------------------------

function missingPrerequisite(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, ip6tables, NFQUEUE)';
  if (spawnSync('iperf3', ['--version'], { stdio: 'ignore' }).status !== 0) return 'needs iperf3';
  return undefined;
}

export async function run(): Promise<void> {
  const missing = missingPrerequisite();
  if (missing !== undefined) {
    console.log(`\n(skipped: ${missing})`);
    return;
  }
  let tb: Testbed | undefined;
  const procs: Shim6dProcess[] = [];
  const daemons: Daemon[] = [];
  let server: ChildProcess | undefined;
  try {
    tb = await Testbed.create();
    const bed = tb;
    const [a1, a2] = tb.a.locators as [string, string];
    const [b1, b2] = tb.b.locators as [string, string];
    console.log(`\ntestbed ${tb.id}; iperf3 ${a1} → ${b1}, ${SECONDS} s per run; UDP: ${UDP_LENGTH}-octet datagrams, -b 0`);

    const ctx = testbedContexts(tb, { a: TAG_A, b: TAG_B });
    const a = await Shim6dProcess.start(tb, 'a', { shim6d: { contexts: [ctx.a] } }, { logLevel: 'info' });
    procs.push(a);
    const b = await Shim6dProcess.start(tb, 'b', { shim6d: { contexts: [ctx.b] } }, { logLevel: 'info' });
    procs.push(b);

    server = tb.spawn('b', 'iperf3', ['-s', '-B', b1, '-p', String(IPERF_PORT)], { stdio: 'ignore' });
    await waitFor(async () => (await bed.exec('b', ['ss', '-Hltn', `sport = :${IPERF_PORT}`])).stdout.trim() !== '', { what: 'iperf3 to listen in B' });

    // 1-2 (a): both daemons running, contexts on their ULID pair: nothing is queued.
    const tcpBase = await tcpThroughput(tb);
    const udpBase = await udpRate(tb);

    // 1-2 (b): both contexts on the path-2 pair, path 1 cut: every packet through shim6d.
    await a.console(`shim 1 ${a2} ${b2}`);
    await b.console(`shim 1 ${b2} ${a2}`);
    await tb.cut(1);
    const tcpShim = await throughShim(a, b, 1000, () => tcpThroughput(bed));
    const udpShim = await throughShim(a, b, 1000, () => udpRate(bed));

    reportValues(`TCP throughput a1 → b1 (iperf3, ${SECONDS} s)`, [
      { name: 'baseline: contexts on the ULID pair (kernel only)', value: tcpBase, unit: 'bit/s' },
      { name: 'shimmed: path-2 pair, path 1 cut (NFQUEUE both ends)', value: tcpShim.value, unit: 'bit/s', note: tcpShim.cpu },
    ]);
    reportValues(`UDP packets per second a1 → b1 (iperf3 -u -b 0 -l ${UDP_LENGTH}, ${SECONDS} s; received)`, [
      { name: 'baseline: contexts on the ULID pair (kernel only)', value: udpBase.receivedPerSecond, unit: 'packets/s', note: udpNote(udpBase) },
      { name: 'shimmed: path-2 pair, path 1 cut (NFQUEUE both ends)', value: udpShim.value.receivedPerSecond, unit: 'packets/s', note: `${udpNote(udpShim.value)}; ${udpShim.cpu}` },
    ]);

    // 3: start-up and memory with 1 and with 5,000 contexts, each a fresh start.
    for (const p of procs.splice(0)) {
      await p.stop();
      p.cleanup();
    }
    const one = manyContexts(tb, 0);
    const oneA = await Daemon.start(tb, 'a', one.a);
    daemons.push(oneA);
    const oneRss = rssBytes(oneA.pid);
    await oneA.stop();
    daemons.splice(0);

    const many = manyContexts(tb, EXTRA_CONTEXTS);
    // The same with a fixed path MTU: no lookup per shimmed pair (one command run each).
    const fixedA = await Daemon.start(tb, 'a', many.a, { pathMtu: 1500 });
    daemons.push(fixedA);
    await fixedA.stop();
    daemons.splice(0);
    const manyA = await Daemon.start(tb, 'a', many.a);
    daemons.push(manyA);
    const manyRss = rssBytes(manyA.pid);
    const manyB = await Daemon.start(tb, 'b', many.b);
    daemons.push(manyB);
    const installed = await stats(manyA);
    await manyA.console(`shim 1 ${a2} ${b2}`);
    await manyB.console(`shim 1 ${b2} ${a2}`);
    const entries = await setEntries(tb, 'a');
    const udpMany = await throughShim(manyA, manyB, 1000, () => udpRate(bed));
    const tcpMany = await throughShim(manyA, manyB, 1000, () => tcpThroughput(bed));
    const manyRssAfter = rssBytes(manyA.pid);
    const total = EXTRA_CONTEXTS + 1;

    reportValues(`Per-packet cost: 1 vs ${total} shimmed contexts on each host (UDP as above, path 1 cut)`, [
      { name: '1 context (the shimmed run above)', value: udpShim.value.receivedPerSecond, unit: 'packets/s', note: `${udpNote(udpShim.value)}; ${udpShim.cpu}` },
      {
        name: `${total} contexts (${entries} ULID pairs in A's sets)`,
        value: udpMany.value.receivedPerSecond,
        unit: 'packets/s',
        note: `${udpNote(udpMany.value)}; ${udpMany.cpu}`,
      },
    ]);
    reportValues(`TCP throughput: 1 vs ${total} shimmed contexts on each host`, [
      { name: '1 context (the shimmed run above)', value: tcpShim.value, unit: 'bit/s', note: tcpShim.cpu },
      { name: `${total} contexts`, value: tcpMany.value, unit: 'bit/s', note: tcpMany.cpu },
    ]);
    reportValues('shim6d start-up (spawn to first console reply)', [
      { name: 'A, 1 static context (on its ULID pair)', value: oneA.startSeconds, unit: 's' },
      {
        name: `A, ${total} static contexts (${EXTRA_CONTEXTS} shimmed)`,
        value: manyA.startSeconds,
        unit: 's',
        note: `its console: ${installed.contexts} contexts, ${installed.shimmedContexts} shimmed`,
      },
      { name: `B, ${total} static contexts (${EXTRA_CONTEXTS} shimmed)`, value: manyB.startSeconds, unit: 's' },
      { name: `A, ${total} contexts, pathMtu fixed at 1500 (no lookups)`, value: fixedA.startSeconds, unit: 's' },
    ]);
    reportValues('shim6d resident set size on A (VmRSS)', [
      { name: '1 static context, after start', value: oneRss, unit: 'bytes' },
      { name: `${total} static contexts, after start`, value: manyRss, unit: 'bytes' },
      { name: `${total} static contexts, after the UDP and TCP runs`, value: manyRssAfter, unit: 'bytes' },
    ]);
  } finally {
    if (server && server.exitCode === null && server.signalCode === null) server.kill('SIGTERM');
    for (const d of daemons) await d.stop().catch((e: unknown) => console.error(`stopping shim6d in ${d.host}: ${String(e)}`));
    for (const p of procs) {
      await p.stop().catch(() => p.kill());
      p.cleanup();
    }
    await tb?.destroy();
    // A daemon that failed to start leaves its run directory; destroy() has killed it.
    if (tb) for (const host of ['a', 'b'] as const) rmSync(Shim6dProcess.runDirOf(tb, host), { recursive: true, force: true });
  }
}
