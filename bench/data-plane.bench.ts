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
import { spawnSync, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { runDirOf, Shim6dProcess, testbedContexts } from '../scripts/lib/shim6d';
import { Testbed, type Host } from '../scripts/lib/testbed';
import { waitFor } from '../scripts/lib/wait';
import { cpuSeconds, reportValues, rssBytes } from './harness';

export const title = 'shim6d data plane on the testbed: iperf3 through NFQUEUE, 1 vs 5,000 contexts';

/** Seconds per iperf3 run. */
const SECONDS = 4;
const UDP_LENGTH = 64;
const IPERF_PORT = 5201;
const EXTRA_CONTEXTS = 4999;
const TAG_A = 0x0a0a0a0a01;
const TAG_B = 0x0b0b0b0b01;

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

/**
 * shim6d with these static contexts (the first Shim6dProcess.start of the run has built dist/),
 * its console asked every 20 ms until it answers: startSeconds (spawn to the first console
 * reply) is known to about that. 5,000 contexts take about 0.85 MB of the 1 MiB configuration
 * file (writeHostConfig writes it on one line).
 */
function startShim6d(tb: Testbed, host: Host, contexts: readonly Record<string, unknown>[], options: { pathMtu?: number } = {}): Promise<Shim6dProcess> {
  const dataPlane = options.pathMtu === undefined ? {} : { dataPlane: { pathMtu: options.pathMtu } };
  return Shim6dProcess.start(tb, host, { shim6d: { ...dataPlane, contexts } }, { logLevel: 'info', timeoutMs: 180_000, readyPollMs: 20 });
}

/** Stops each daemon (SIGTERM; SIGKILL if that takes over 60 s) and removes its run directory. */
async function stopAll(daemons: Shim6dProcess[]): Promise<void> {
  for (const d of daemons.splice(0)) {
    await d.stop(20_000, { killAfterMs: 60_000 }).catch((e: unknown) => console.error(`stopping shim6d in ${d.host}: ${String(e)}`));
    d.cleanup();
  }
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

const stats = async (d: Shim6dProcess): Promise<Stats> => parseStats(await d.console('stats'));

interface Shimmed<T> {
  value: T;
  /** "shim6d CPU A 97 %, B 64 %": each daemon's CPU time over the run's wall time. */
  cpu: string;
}

/** Runs fn and checks that A shimmed and B deshimmed (at least) `least` packets meanwhile. */
async function throughShim<T>(a: Shim6dProcess, b: Shim6dProcess, least: number, fn: () => Promise<T>): Promise<Shimmed<T>> {
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
  const daemons: Shim6dProcess[] = [];
  let server: ChildProcess | undefined;
  try {
    tb = await Testbed.create();
    const bed = tb;
    const [a1, a2] = tb.a.locators as [string, string];
    const [b1, b2] = tb.b.locators as [string, string];
    console.log(`\ntestbed ${tb.id}; iperf3 ${a1} → ${b1}, ${SECONDS} s per run; UDP: ${UDP_LENGTH}-octet datagrams, -b 0`);

    const ctx = testbedContexts(tb, { a: TAG_A, b: TAG_B });
    const a = await Shim6dProcess.start(tb, 'a', { shim6d: { contexts: [ctx.a] } }, { logLevel: 'info' });
    daemons.push(a);
    const b = await Shim6dProcess.start(tb, 'b', { shim6d: { contexts: [ctx.b] } }, { logLevel: 'info' });
    daemons.push(b);

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
    await stopAll(daemons);
    const one = manyContexts(tb, 0);
    const oneA = await startShim6d(tb, 'a', one.a);
    daemons.push(oneA);
    const oneRss = rssBytes(oneA.pid);
    await stopAll(daemons);

    const many = manyContexts(tb, EXTRA_CONTEXTS);
    // The same with a fixed path MTU: no lookup per shimmed pair (one command run each).
    const fixedA = await startShim6d(tb, 'a', many.a, { pathMtu: 1500 });
    daemons.push(fixedA);
    await stopAll(daemons);
    const manyA = await startShim6d(tb, 'a', many.a);
    daemons.push(manyA);
    const manyRss = rssBytes(manyA.pid);
    const manyB = await startShim6d(tb, 'b', many.b);
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
    await stopAll(daemons);
    await tb?.destroy();
    // A daemon that failed to start leaves its run directory; destroy() has killed it.
    if (tb) for (const host of ['a', 'b'] as const) rmSync(runDirOf(tb, host), { recursive: true, force: true });
  }
}
