/**
 * reapd end to end on one testbed (scripts/testbed) with the real daemons (reapd and shim6d
 * in hosts A and B), in two parts:
 *
 * 1. Failover time. HBA identities on both hosts (scripts/lib/shim6d.ts hbaIdentity) and two
 *    TCP counter streams A → B (scripts/lib/counter-stream.ts: 8 octets every 10 ms), one
 *    between the HBA addresses on path 1 and one between those on path 2; the stream's traffic
 *    makes shim6d negotiate a context for each. Cuts alternate: path 1 (the first stream's
 *    ULID pair fails, REAP moves it to path 2), then path 2 (the second stream's, moved to
 *    path 1), ... Each cut starts from a steady state: the other path restored, every context
 *    back on its ULID pair with REAP operational, both streams flowing. Failover time = from
 *    the cut (tb.cut() resolved: the routers drop) to the first counter the receiver gets after
 *    it (its arrival time; the namespaces share the machine's clock). Beside it: the stream's
 *    silence (last counter before the cut to the first after), REAP's own repair time (cut to
 *    both hosts' "context moved" log lines) and TCP's retransmission timer when REAP had
 *    repaired (ss -ti in A). The baseline, measured first in the same run: the streams'
 *    largest gap between two arrivals without a cut. Once with RFC 5534's default timers
 *    (send timeout 15 s), once with aggressive ones.
 *
 * 2. Idle cost. 1,000 static ESTABLISHED contexts per host between A and B (distinct ULID
 *    pairs: 1,000 extra addresses in each host's path-1 /64, reached through R1 by one /112
 *    route, not 2,000 neighbour entries), no traffic: REAP sends no Keepalive (they only go
 *    while payload is received and none is sent) and no Probe. Over 20 s: Keepalives and
 *    Probes on the wire (ip6tables counters in OUTPUT), every IPv6 packet sent
 *    (Ip6OutRequests), CPU and RSS of reapd and shim6d, REAP explorations and drops at
 *    shim6d's inbound queue; against the same daemons with no context. Then the same 1,000
 *    contexts with one datagram per context per second from B to A only (A receives without
 *    sending: a Keepalive every third of 10 s per context, about 300 per second).
 *
 * About 10 minutes, most of it the ten default-timer cuts (about 45 s each). Needs root;
 * without it, it says so and returns. Whatever happens, the streams and daemons are stopped
 * and the testbed destroyed.
 *
 * Environment: SHIM6_BENCH_REAPD_CUTS (default 10, at least 2) cuts per timer set;
 * SHIM6_BENCH_REAPD_PARTS (default "failover,idle"; also "failover-default",
 * "failover-aggressive") what to run; SHIM6_BENCH_REAPD_LOGS=DIR copies the daemons' logs of
 * each part there before they are removed.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultShim6Config } from '../common/config';
import { formatIPv6, parseIPv6 } from '../protocol/address';
import { CounterStream } from '../scripts/lib/counter-stream';
import { hbaIdentity, ReapdProcess, runDirOf, Shim6dProcess, type ConfigDocument, type DumpContext, type HbaIdentity } from '../scripts/lib/shim6d';
import { Testbed, type PathId } from '../scripts/lib/testbed';
import { waitFor } from '../scripts/lib/wait';
import { cpuSeconds as cpuSecondsOf, formatValue, pause, reportValues, rssBytes as rssBytesOf } from './harness';

export const title = 'reapd on the testbed: failover time under a TCP stream, idle cost of 1,000 quiet contexts';

type Side = 'a' | 'b';
const SIDES: readonly Side[] = ['a', 'b'];

function envCuts(): number {
  const text = process.env['SHIM6_BENCH_REAPD_CUTS'];
  if (text === undefined || text === '') return 10;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 2) throw new RangeError(`SHIM6_BENCH_REAPD_CUTS must be a whole number of at least 2, not '${text}'`);
  return n;
}

function envParts(): Set<string> {
  const text = process.env['SHIM6_BENCH_REAPD_PARTS'] ?? '';
  const known = ['failover', 'failover-default', 'failover-aggressive', 'idle'];
  const parts = text.split(',').map((p) => p.trim()).filter((p) => p !== '');
  for (const p of parts) if (!known.includes(p)) throw new RangeError(`SHIM6_BENCH_REAPD_PARTS: unknown part '${p}' (expected ${known.join(', ')})`);
  const out = new Set(parts.length === 0 ? ['failover', 'idle'] : parts);
  if (out.has('failover')) {
    out.add('failover-default');
    out.add('failover-aggressive');
  }
  return out;
}

/** The streams' baseline window, without a cut. */
const BASELINE_MS = 10_000;
/** Idle measurement window, and the settling time before it. */
const IDLE_WINDOW_MS = 20_000;
const IDLE_SETTLE_MS = 5_000;
/** At most 65,536: the extra addresses are ::c:0 + i, inside one /112. */
const IDLE_CONTEXTS = 1000;
const ONE_WAY_PORT = 9999;
const ONE_WAY_SETTLE_MS = 15_000;

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((x, y) => x - y);
  const m = Math.floor(s.length / 2);
  return s.length === 0 ? NaN : s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const max = (xs: readonly number[]): number => (xs.length === 0 ? NaN : Math.max(...xs));
const secs = (ms: number | undefined): string => (ms === undefined || !Number.isFinite(ms) ? '-' : `${(ms / 1000).toFixed(2)} s`);

// -- processes ------------------------------------------------------------------------------------

/** harness.ts's reading of a process, NaN when it cannot be read (the process has gone). */
function orNaN(read: (pid: number | undefined) => number): (pid: number | undefined) => number {
  return (pid) => {
    try {
      return read(pid);
    } catch {
      return NaN;
    }
  };
}

/** CPU time (user + system) a process has used, in seconds; NaN if unknown. */
const cpuSeconds = orNaN(cpuSecondsOf);

/** Resident set size of a process, in bytes; NaN if unknown. */
const rssBytes = orNaN(rssBytesOf);

interface Daemons {
  reapd: Partial<Record<Side, ReapdProcess>>;
  shim6d: Partial<Record<Side, Shim6dProcess>>;
}

const shim6dOf = (d: Daemons, h: Side): Shim6dProcess => {
  const x = d.shim6d[h];
  if (!x) throw new Error(`shim6d in ${h} not started`);
  return x;
};

/** reapd, then shim6d, in A then in B (log level info: the REAP events, not every packet). */
async function startDaemons(tb: Testbed, d: Daemons, config: (h: Side) => ConfigDocument, timeoutMs = 20_000): Promise<void> {
  for (const h of SIDES) {
    d.reapd[h] = await ReapdProcess.start(tb, h, config(h), { logLevel: 'info', timeoutMs });
    d.shim6d[h] = await Shim6dProcess.start(tb, h, config(h), { logLevel: 'info', timeoutMs });
  }
}

/** Copies the logs (SHIM6_BENCH_REAPD_LOGS), stops shim6d then reapd (SIGKILL if SIGTERM fails), removes the run directories. */
async function stopDaemons(tb: Testbed, d: Daemons, label: string): Promise<void> {
  const keep = process.env['SHIM6_BENCH_REAPD_LOGS'];
  for (const h of SIDES) {
    for (const p of [d.shim6d[h], d.reapd[h]]) {
      if (!p) continue;
      await p.stop().catch(() => p.kill());
      if (keep && existsSync(p.logFile)) {
        mkdirSync(keep, { recursive: true });
        copyFileSync(p.logFile, join(keep, `${label}-${h}-${p.name}.log`));
      }
    }
    d.shim6d[h] = undefined;
    d.reapd[h] = undefined;
    rmSync(runDirOf(tb, h), { recursive: true, force: true });
  }
}

// -- logs -----------------------------------------------------------------------------------------

/** Times (ms) of the log lines that match `pattern`, at or after `after`. */
function logTimes(text: string, pattern: RegExp, after: number): number[] {
  const out: number[] = [];
  for (const line of text.split('\n')) {
    if (!pattern.test(line)) continue;
    const t = Date.parse(line.slice(0, line.indexOf(' ')));
    if (Number.isFinite(t) && t >= after) out.push(t);
  }
  return out;
}

/** The log lines of both daemons of both hosts about context ids, at or after `after`, time-ordered. */
function reapLines(d: Daemons, ids: Record<Side, number>, after: number): string[] {
  const lines: Array<{ t: number; line: string }> = [];
  for (const h of SIDES) {
    for (const p of [d.reapd[h], d.shim6d[h]]) {
      if (!p) continue;
      const idPattern = new RegExp(`REAP.* id=${ids[h]}(\\s|$)`);
      for (const line of p.log().split('\n')) {
        if (!idPattern.test(line)) continue;
        const t = Date.parse(line.slice(0, line.indexOf(' ')));
        if (Number.isFinite(t) && t >= after) lines.push({ t, line: `${h.toUpperCase()} ${line}` });
      }
    }
  }
  return lines.sort((x, y) => x.t - y.t).map((x) => x.line);
}

// -- part 1: failover -----------------------------------------------------------------------------

/** shim6d's line when it has applied the pair reapd chose for context `id`. */
const movedPattern = (id: number): RegExp => new RegExp(`REAP: context moved to a working pair id=${id}(\\s|$)`);

interface TimerSet {
  label: string;
  /** The file's name of the set (logs). */
  key: string;
  /** reapd.timers as given in the configuration file ({} = the defaults). */
  timers: Record<string, number>;
  /** shim6d.reap.intervalMs, when not the default. */
  reapIntervalMs?: number;
}

const DEFAULTS = defaultShim6Config();
const DEFAULT_SET: TimerSet = { label: 'default timers', key: 'default', timers: {} };
const AGGRESSIVE_SET: TimerSet = {
  label: 'aggressive timers',
  key: 'aggressive',
  timers: { keepaliveTimeout: 1, sendTimeoutMs: 1000, initialProbes: 4, initialProbeIntervalMs: 100, maxProbeIntervalMs: 1000, ulidRetryIntervalMs: 1000 },
  reapIntervalMs: 100,
};

function describeSet(set: TimerSet): string {
  const t = { ...DEFAULTS.reapd.timers, ...set.timers } as Record<string, unknown>;
  const interval = set.reapIntervalMs ?? DEFAULTS.shim6d.reap.intervalMs;
  return `keepaliveTimeout ${String(t['keepaliveTimeout'])} s, sendTimeoutMs ${String(t['sendTimeoutMs'])}, initialProbes ${String(t['initialProbes'])} × ${String(t['initialProbeIntervalMs'])} ms, maxProbeIntervalMs ${String(t['maxProbeIntervalMs'])}, ulidRetryIntervalMs ${String(t['ulidRetryIntervalMs'])}; shim6d.reap.intervalMs ${interval}`;
}

interface StreamInfo {
  /** Path of its ULID pair. */
  path: PathId;
  stream: CounterStream;
  /** ULIDs: A's and B's addresses on `path`. */
  a: string;
  b: string;
  /** The same hosts' addresses on the other path: where REAP moves it. */
  otherA: string;
  otherB: string;
}

interface CutResult {
  n: number;
  path: PathId;
  /** How long tb.cut() took (the DROP rules go in somewhere inside). */
  cutCallMs: number;
  failoverMs: number;
  silenceMs: number | undefined;
  /** From the cut (tb.cut resolved) to the host's first send-timeout, and to its context moving. */
  sendTimeout: Partial<Record<Side, number>>;
  moved: Partial<Record<Side, number>>;
  /** The other stream's longest gap meanwhile (it must not notice). */
  otherGapMs: number | undefined;
  /** A's TCP socket once both hosts had moved and no counter had come through yet (ss -ti). */
  tcpAtRepair: string | undefined;
  log: string[];
}

interface SetResult {
  set: TimerSet;
  baselineGapMs: number;
  baselineNote: string;
  cuts: CutResult[];
  seconds: number;
}

/** The ESTABLISHED context of host h for the ULID pair (local, peer), if any. */
function contextOf(dump: { contexts: DumpContext[] }, local: string, peer: string): DumpContext | undefined {
  return dump.contexts.find((c) => c.state === 'ESTABLISHED' && c.localUlid === local && c.peerUlid === peer);
}

/** rto, backoff, retransmissions and lastsnd of A's TCP socket from `from` to `to` (ss -tin). */
async function tcpTimer(tb: Testbed, from: string, to: string): Promise<string | undefined> {
  const r = await tb.exec('a', ['ss', '-tinH'], { check: false });
  const lines = r.stdout.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i] as string;
    if (!l.includes(`[${from}]:`) || !l.includes(`[${to}]:`)) continue;
    const info = `${l} ${lines[i + 1] ?? ''}`;
    const pick = (key: string): string | undefined => new RegExp(`\\b${key}:(\\S+)`).exec(info)?.[1];
    return ['rto', 'backoff', 'retrans', 'lastsnd', 'unacked'].flatMap((k) => (pick(k) === undefined ? [] : [`${k}:${pick(k) as string}`])).join(' ');
  }
  return undefined;
}

async function failoverSet(tb: Testbed, ids: Record<Side, HbaIdentity>, set: TimerSet, cuts: number, d: Daemons, streams: CounterStream[]): Promise<SetResult> {
  const started = Date.now();
  const config = (h: Side): ConfigDocument => ({
    shim6d: { identities: [ids[h].dir], ...(set.reapIntervalMs === undefined ? {} : { reap: { intervalMs: set.reapIntervalMs } }) },
    reapd: { timers: set.timers },
  });
  const sendTimeoutMs = Number((set.timers['sendTimeoutMs'] as number | undefined) ?? DEFAULTS.reapd.timers.sendTimeoutMs);
  await startDaemons(tb, d, config);

  const infos: StreamInfo[] = [];
  for (const path of [1, 2] as const) {
    const i = path - 1;
    const o = 1 - i;
    const stream = await CounterStream.start(tb, { from: ['a', ids.a.locators[i] as string], to: ['b', ids.b.locators[i] as string] });
    streams.push(stream);
    infos.push({ path, stream, a: ids.a.locators[i] as string, b: ids.b.locators[i] as string, otherA: ids.a.locators[o] as string, otherB: ids.b.locators[o] as string });
  }
  const pairOf = (s: StreamInfo, h: Side): [string, string] => (h === 'a' ? [s.a, s.b] : [s.b, s.a]);

  /** Every context on its ULID pair, REAP operational, on both hosts; both streams flowing. Returns the context ids. */
  const steady = async (what: string): Promise<Array<Record<Side, number>>> => {
    const found = await waitFor(
      async () => {
        const out: Array<Partial<Record<Side, number>>> = infos.map(() => ({}));
        for (const h of SIDES) {
          const dump = await shim6dOf(d, h).dumpJson();
          for (const [k, s] of infos.entries()) {
            const [local, peer] = pairOf(s, h);
            const c = contextOf(dump, local, peer);
            if (!c || c.shimmed || c.currentPair.local !== local || c.currentPair.peer !== peer || c.reap?.state !== 'operational') return undefined;
            (out[k] as Partial<Record<Side, number>>)[h] = c.id;
          }
        }
        return out as Array<Record<Side, number>>;
      },
      { what: `every context on its ULID pair with REAP operational (${what})`, timeoutMs: 180_000, intervalMs: 200 },
    );
    for (const s of infos) await s.stream.waitForMore(100);
    return found;
  };

  let ctxIds = await steady('after the start');

  // Baseline: the largest gap between two arrivals, no cut, on both streams.
  const at = Date.now();
  for (const s of infos) s.stream.mark(at);
  await pause(BASELINE_MS);
  const marks = infos.map((s) => s.stream.sinceMark(at));
  if (marks.some((m) => m === undefined || m.arrivals === 0)) throw new Error(`the streams' receivers did not report on the baseline mark: ${JSON.stringify(marks)}`);
  const gaps = marks.map((m) => m?.maxGapMs ?? NaN);
  const baselineGapMs = max(gaps);
  const baselineNote = `${BASELINE_MS / 1000} s, path-1 stream ${gaps[0]} ms, path-2 stream ${gaps[1]} ms; ${marks.map((m) => m?.arrivals ?? 0).join(' + ')} arrivals`;

  const results: CutResult[] = [];
  for (let n = 1; n <= cuts; n++) {
    const path: PathId = n % 2 === 1 ? 1 : 2;
    const s = infos[path - 1] as StreamInfo;
    const other = infos[2 - path] as StreamInfo;
    if (n > 1) ctxIds = await steady(`before cut ${n}`);
    const id = ctxIds[path - 1] as Record<Side, number>;

    const t0 = Date.now();
    await tb.cut(path, 'both');
    const t1 = Date.now();
    other.stream.mark(t1);
    const arrival = s.stream.firstArrivalAfter(t1, sendTimeoutMs + 120_000);
    let arrived: number | undefined;
    let failed: unknown;
    arrival.then(
      (t) => (arrived = t),
      (e: unknown) => (failed = e ?? new Error('no arrival')),
    );
    // Meanwhile: when both hosts have moved the context (shim6d's log) and nothing has come
    // through yet, look at A's TCP retransmission timer once.
    const movedAt = (h: Side): number | undefined => logTimes(shim6dOf(d, h).log(), movedPattern(id[h]), t0)[0];
    let tcpAtRepair: string | undefined;
    while (arrived === undefined && failed === undefined) {
      if (tcpAtRepair === undefined && movedAt('a') !== undefined && movedAt('b') !== undefined) {
        tcpAtRepair = (await tcpTimer(tb, s.a, s.b)) ?? 'no socket';
        continue;
      }
      await pause(100);
    }
    if (failed !== undefined) throw failed instanceof Error ? failed : new Error(String(failed));
    const first = arrived as number;
    // REAP moved both ends to the other path (not something else): wait for it, then read the logs.
    for (const h of SIDES) {
      const [, otherLocal] = h === 'a' ? [s.a, s.otherA] : [s.b, s.otherB];
      await waitFor(
        async () => {
          const [local, peer] = pairOf(s, h);
          const c = contextOf(await shim6dOf(d, h).dumpJson(), local, peer);
          return c !== undefined && c.shimmed && c.currentPair.local === otherLocal;
        },
        { what: `${h}: the context of the path-${path} stream on the other path after cut ${n}`, timeoutMs: 30_000, intervalMs: 200 },
      );
    }
    const mark = s.stream.sinceMark(t1);
    const res: CutResult = {
      n,
      path,
      cutCallMs: t1 - t0,
      failoverMs: first - t1,
      silenceMs: mark?.lastBefore === null || mark?.lastBefore === undefined ? undefined : first - mark.lastBefore,
      sendTimeout: {},
      moved: {},
      otherGapMs: other.stream.sinceMark(t1)?.maxGapMs,
      tcpAtRepair,
      log: reapLines(d, id, t0),
    };
    for (const h of SIDES) {
      const st = logTimes((d.reapd[h] as ReapdProcess).log(), new RegExp(`REAP: send-timeout id=${id[h]}(\\s|$)`), t0)[0];
      const mv = movedAt(h);
      if (st !== undefined) res.sendTimeout[h] = st - t1;
      if (mv !== undefined) res.moved[h] = mv - t1;
    }
    results.push(res);
    console.log(
      `cut ${String(n).padStart(2)} path ${path}: failover ${secs(res.failoverMs)} (silence ${secs(res.silenceMs)}); ` +
        `send timeout A ${secs(res.sendTimeout.a)} B ${secs(res.sendTimeout.b)}; moved A ${secs(res.moved.a)} B ${secs(res.moved.b)}; ` +
        `other stream's longest gap ${res.otherGapMs ?? '-'} ms; A's TCP at repair: ${res.tcpAtRepair ?? 'a counter had already come'}`,
    );
    await tb.restore(path, 'both');
  }
  for (const s of infos) s.stream.stop();
  streams.splice(0);
  await stopDaemons(tb, d, `failover-${set.key}`);
  return { set, baselineGapMs, baselineNote, cuts: results, seconds: (Date.now() - started) / 1000 };
}

function reportSet(r: SetResult): void {
  const fo = r.cuts.map((c) => c.failoverMs / 1000);
  const silence = r.cuts.flatMap((c) => (c.silenceMs === undefined ? [] : [c.silenceMs / 1000]));
  const repair = r.cuts.flatMap((c) => (c.moved.a === undefined || c.moved.b === undefined ? [] : [Math.max(c.moved.a, c.moved.b) / 1000]));
  const detect = r.cuts.flatMap((c) => {
    const ts = [c.sendTimeout.a, c.sendTimeout.b].filter((x): x is number => x !== undefined);
    return ts.length === 0 ? [] : [Math.min(...ts) / 1000];
  });
  const cutCall = median(r.cuts.map((c) => c.cutCallMs));
  const paths = `${r.cuts.filter((c) => c.path === 1).length} of path 1, ${r.cuts.filter((c) => c.path === 2).length} of path 2`;
  reportValues(`Failover, ${r.set.label} (${r.cuts.length} cuts, ${paths}; ${describeSet(r.set)})`, [
    { name: 'baseline: largest gap between arrivals, no cut', value: r.baselineGapMs / 1000, unit: 's', note: r.baselineNote },
    { name: 'failover, median (cut → first counter after it)', value: median(fo), unit: 's', note: `tb.cut() took ${cutCall.toFixed(0)} ms (median); failover counted from its end` },
    { name: 'failover, max', value: max(fo), unit: 's' },
    { name: 'stream silence, median (last counter → first after)', value: median(silence), unit: 's', note: `max ${formatValue(max(silence), 's')}` },
    { name: 'REAP repair, median (cut → both ends moved, shim6d logs)', value: median(repair), unit: 's', note: `max ${formatValue(max(repair), 's')}; ${repair.length} of ${r.cuts.length} cuts logged` },
    { name: 'REAP detection, median (cut → 1st send timeout, reapd)', value: median(detect), unit: 's', note: `max ${formatValue(max(detect), 's')}` },
  ]);
  console.log(`(${r.set.label}: ${(r.seconds / 60).toFixed(1)} min with start-up and the returns to the ULID pairs)`);
  const slow = r.cuts.filter((c) => c.moved.a !== undefined && c.moved.b !== undefined && c.failoverMs - Math.max(c.moved.a, c.moved.b) > 500);
  if (slow.length > 0) {
    console.log(
      `note: in ${slow.length} of ${r.cuts.length} cuts the first counter came more than 0.5 s after REAP had moved both ends; ` +
        `the stream waits for TCP's next retransmission (its timer backs off: 0.2, 0.4, 0.8 ... s after the loss), see "A's TCP at repair" above.`,
    );
  }
}

// -- part 2: idle cost ----------------------------------------------------------------------------

/** An address in the /64 of `locator` with interface identifier ::c:0 + i (distinct from the testbed's ::a, ::b and the HBA addresses). */
function extraAddress(locator: string, i: number): string {
  const octets = Buffer.alloc(16);
  const parsed = parseIPv6(locator);
  if (!parsed) throw new Error(`not an address: ${locator}`);
  parsed.copy(octets, 0, 0, 8);
  octets.writeUInt32BE(0x000c0000 + i, 12);
  return formatIPv6(octets);
}

function idleContexts(tb: Testbed, n: number): Record<Side, Array<Record<string, unknown>>> {
  const [, a2] = tb.a.locators as [string, string];
  const [, b2] = tb.b.locators as [string, string];
  const out: Record<Side, Array<Record<string, unknown>>> = { a: [], b: [] };
  for (let i = 0; i < n; i++) {
    const ai = extraAddress(tb.a.locators[0] as string, i);
    const bi = extraAddress(tb.b.locators[0] as string, i);
    const tagA = 0x0a000000 + i;
    const tagB = 0x0b000000 + i;
    out.a.push({ id: i + 1, localUlid: ai, peerUlid: bi, localContextTag: tagA, peerContextTag: tagB, localLocators: [ai, a2], peerLocators: [bi, b2] });
    out.b.push({ id: i + 1, localUlid: bi, peerUlid: ai, localContextTag: tagB, peerContextTag: tagA, localLocators: [bi, b2], peerLocators: [ai, a2] });
  }
  return out;
}

const COUNTERS = [
  { name: 'bench-shim6', match: ['-p', '140'] },
  { name: 'bench-keepalive', match: ['-p', '140', '-m', 'u32', '--u32', '40&0x7F00=0x4200'] },
  { name: 'bench-probe', match: ['-p', '140', '-m', 'u32', '--u32', '40&0x7F00=0x4300'] },
] as const;
type CounterName = (typeof COUNTERS)[number]['name'];

/** Counting rules (no target) at the top of filter OUTPUT: protocol 140, and Keepalives and Probes by their type octet (offset 42: no extension header before Shim6's). */
async function addCounters(tb: Testbed, h: Side): Promise<CounterName[]> {
  const ok: CounterName[] = [];
  for (const c of COUNTERS) {
    const r = await tb.exec(h, ['ip6tables', '-w', '-I', 'OUTPUT', '1', ...c.match, '-m', 'comment', '--comment', c.name], { check: false });
    if (r.code === 0) ok.push(c.name);
    else console.log(`(${h}: no ${c.name} counter: ${r.stderr.trim()})`);
  }
  return ok;
}

async function readCounters(tb: Testbed, h: Side): Promise<Record<string, number>> {
  const out = (await tb.exec(h, ['ip6tables', '-w', '-L', 'OUTPUT', '-v', '-n', '-x'])).stdout;
  const counts: Record<string, number> = {};
  for (const line of out.split('\n')) {
    const name = /\/\* (bench-[a-z0-9]+) \*\//.exec(line)?.[1];
    const pkts = /^\s*(\d+)\s/.exec(line)?.[1];
    if (name !== undefined && pkts !== undefined) counts[name] = Number(pkts);
  }
  const snmp = (await tb.exec(h, ['cat', '/proc/net/snmp6'])).stdout;
  counts['Ip6OutRequests'] = Number(/^Ip6OutRequests\s+(\d+)/m.exec(snmp)?.[1] ?? NaN);
  // shim6d's inbound queue (Keepalives and Probes come in there): packets the kernel dropped
  // because the queue was full (queue_dropped) or could not be passed to shim6d (user_dropped).
  const queues = (await tb.exec(h, ['cat', '/proc/net/netfilter/nfnetlink_queue'], { check: false })).stdout;
  const inQueue = String(DEFAULTS.shim6d.netfilter.inQueue);
  for (const line of queues.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[0] === inQueue) counts['inboundQueueDropped'] = Number(f[5]) + Number(f[6]);
  }
  counts['inboundQueueDropped'] ??= 0;
  return counts;
}

interface Sample {
  at: number;
  cpu: Record<Side, { shim6d: number; reapd: number }>;
  counters: Record<Side, Record<string, number>>;
}

async function sample(tb: Testbed, d: Daemons): Promise<Sample> {
  const counters = { a: await readCounters(tb, 'a'), b: await readCounters(tb, 'b') };
  const at = Date.now();
  const cpu = {
    a: { shim6d: cpuSeconds(d.shim6d.a?.pid), reapd: cpuSeconds(d.reapd.a?.pid) },
    b: { shim6d: cpuSeconds(d.shim6d.b?.pid), reapd: cpuSeconds(d.reapd.b?.pid) },
  };
  return { at, cpu, counters };
}

interface Window {
  label: string;
  seconds: number;
  /** % of one core. */
  cpu: Record<Side, { shim6d: number; reapd: number }>;
  /** Packets per second sent by each host. */
  rate: Record<Side, Record<string, number>>;
  count: Record<Side, Record<string, number>>;
  rss: Record<Side, { shim6d: number; reapd: number }>;
}

async function measureWindow(tb: Testbed, d: Daemons, label: string): Promise<Window> {
  const s0 = await sample(tb, d);
  await pause(IDLE_WINDOW_MS);
  const s1 = await sample(tb, d);
  const seconds = (s1.at - s0.at) / 1000;
  const w: Window = { label, seconds, cpu: { a: { shim6d: 0, reapd: 0 }, b: { shim6d: 0, reapd: 0 } }, rate: { a: {}, b: {} }, count: { a: {}, b: {} }, rss: { a: { shim6d: 0, reapd: 0 }, b: { shim6d: 0, reapd: 0 } } };
  for (const h of SIDES) {
    for (const p of ['shim6d', 'reapd'] as const) w.cpu[h][p] = (100 * (s1.cpu[h][p] - s0.cpu[h][p])) / seconds;
    for (const k of Object.keys(s1.counters[h])) {
      w.count[h][k] = (s1.counters[h][k] ?? NaN) - (s0.counters[h][k] ?? NaN);
      w.rate[h][k] = (w.count[h][k] as number) / seconds;
    }
    w.rss[h] = { shim6d: rssBytes(d.shim6d[h]?.pid), reapd: rssBytes(d.reapd[h]?.pid) };
    w.count[h]['explorations'] = logTimes(d.reapd[h]?.log() ?? '', /REAP: exploration-started /, s0.at).length;
    if (!d.shim6d[h]?.running || !d.reapd[h]?.running) throw new Error(`a daemon in ${h} exited during "${label}"`);
  }
  return w;
}

// B → A, one datagram per context per second from each extra address of B to A's (argv: port;
// stdin: JSON [[from, to], ...]). Prints {"ready":n} once every socket is bound.
const ONE_WAY_SENDER = `
const dgram = require('node:dgram');
const port = Number(process.argv[1]);
let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => (input += d));
process.stdin.on('end', async () => {
  const pairs = JSON.parse(input);
  const sockets = await Promise.all(pairs.map(([from]) => new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp6');
    s.once('error', reject);
    s.bind(0, from, () => resolve(s));
  })));
  process.stdout.write(JSON.stringify({ ready: sockets.length }) + '\\n');
  const payload = Buffer.alloc(32, 0x2e);
  const perTick = Math.max(1, Math.ceil(sockets.length / 100));
  let next = 0;
  setInterval(() => {
    for (let k = 0; k < perTick; k++) {
      const i = next++ % sockets.length;
      sockets[i].send(payload, port, pairs[i][1], () => undefined);
    }
  }, 10);
});
`;

// A UDP socket on [::]:port that takes every datagram and answers none (no ICMP either).
const SINK = `
const s = require('node:dgram').createSocket('udp6');
s.on('message', () => undefined);
s.bind(Number(process.argv[1]), '::', () => process.stdout.write(JSON.stringify({ ready: true }) + '\\n'));
`;

async function idleCost(tb: Testbed, d: Daemons): Promise<number> {
  const started = Date.now();
  const ctx = idleContexts(tb, IDLE_CONTEXTS);
  // The extra addresses first, for both runs: the only difference between them is the contexts.
  for (const h of SIDES) {
    const iface = tb[h].interfaces[0] as string;
    const lines = ctx[h].map((c) => `addr add ${String(c['localUlid'])}/64 dev ${iface} nodad`);
    await tb.exec(h, ['ip', '-6', '-batch', '-'], { input: `${lines.join('\n')}\n`, timeoutMs: 60_000 });
    // R1 has the hosts' path-1 /64s on its links, so it would resolve each extra address with
    // neighbour discovery: 2,000 entries, over the neighbour table's limit (gc_thresh3, 1024,
    // shared by every namespace of the machine): 'neighbor table overflow', and packets to the
    // extra addresses dropped. A route for them via the host's path-1 address needs one entry.
    await tb.exec('r1', ['ip', '-6', 'route', 'add', `${extraAddress(tb[h].locators[0] as string, 0)}/112`, 'via', tb[h].locators[0] as string]);
  }
  const counted = { a: await addCounters(tb, 'a'), b: await addCounters(tb, 'b') };
  const config = (contexts: Record<Side, Array<Record<string, unknown>>>) => (h: Side): ConfigDocument => ({
    shim6d: { dataPlane: { pathMtu: 1500 }, contexts: contexts[h] },
  });
  const stats = async (h: Side): Promise<string> => shim6dOf(d, h).console('stats');

  // 0 contexts.
  await startDaemons(tb, d, config({ a: [], b: [] }));
  await pause(IDLE_SETTLE_MS);
  const none = await measureWindow(tb, d, 'no context');
  await stopDaemons(tb, d, 'idle-none');

  // 1,000 contexts, no traffic.
  const t0 = Date.now();
  await startDaemons(tb, d, config(ctx), 180_000);
  const startSeconds = (Date.now() - t0) / 1000;
  for (const h of SIDES) {
    await waitFor(async () => new RegExp(`^contexts\\s+${IDLE_CONTEXTS} `, 'm').test(await stats(h)), { what: `${h}: shim6d to hold ${IDLE_CONTEXTS} contexts`, timeoutMs: 60_000, intervalMs: 500 });
    await waitFor(() => new RegExp(`contexts synchronised from shim6d contexts=${IDLE_CONTEXTS}\\b`).test((d.reapd[h] as ReapdProcess).log()), { what: `${h}: reapd to get the ${IDLE_CONTEXTS} contexts`, timeoutMs: 60_000, intervalMs: 200 });
  }
  await pause(IDLE_SETTLE_MS);
  const quiet = await measureWindow(tb, d, `${IDLE_CONTEXTS} quiet contexts`);

  // The same contexts, one datagram per context per second from B to A.
  const sink = tb.spawn('a', process.execPath, ['-e', SINK, String(ONE_WAY_PORT)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const sender = tb.spawn('b', process.execPath, ['-e', ONE_WAY_SENDER, String(ONE_WAY_PORT)], { stdio: ['pipe', 'pipe', 'pipe'] });
  try {
    const ready = (child: typeof sink, what: string): Promise<boolean> => {
      let out = '';
      let err = '';
      child.stdout?.setEncoding('utf8').on('data', (x: string) => (out += x));
      child.stderr?.setEncoding('utf8').on('data', (x: string) => (err += x));
      return waitFor(
        () => {
          if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what} exited: ${err.trim()}`);
          return out.includes('"ready"');
        },
        { what, timeoutMs: 20_000, intervalMs: 50 },
      );
    };
    await ready(sink, 'the UDP sink in A');
    sender.stdin?.end(JSON.stringify(ctx.b.map((c) => [c['localUlid'], c['peerUlid']])));
    await ready(sender, 'the one-way sender in B');
    // Past the heuristic's activeSeconds (10 s): the window shows the steady state.
    await pause(ONE_WAY_SETTLE_MS);
    const oneWay = await measureWindow(tb, d, `${IDLE_CONTEXTS} contexts, B → A only`);
    const statsB = await stats('b').catch(() => 'no reply from B\'s console within 5 s');
    reportIdle([none, quiet, oneWay], counted, startSeconds, statsB);
  } finally {
    sender.kill('SIGKILL');
    sink.kill('SIGKILL');
  }
  await stopDaemons(tb, d, 'idle-many');
  return (Date.now() - started) / 1000;
}

function reportIdle(w: Window[], counted: Record<Side, CounterName[]>, startSeconds: number, statsB: string): void {
  const windows = `${(IDLE_WINDOW_MS / 1000).toFixed(0)} s each`;
  const sum = (x: Window, k: string): number => (x.rate.a[k] ?? NaN) + (x.rate.b[k] ?? NaN);
  const split = (x: Window, k: string): string => `A ${x.count.a[k] ?? '-'}, B ${x.count.b[k] ?? '-'} in ${x.seconds.toFixed(1)} s`;
  const typed = counted.a.includes('bench-keepalive') && counted.b.includes('bench-keepalive');
  const rate = (v: number): string => `${v.toFixed(2)} packets/s`;
  reportValues(`Idle: REAP messages sent by A and B, ${windows} (ip6tables OUTPUT counters, protocol 140)`, [
    ...w.map((x) => ({
      name: `${x.label}: Keepalives + Probes`,
      value: sum(x, 'bench-shim6'),
      unit: 'packets/s' as const,
      text: rate(sum(x, 'bench-shim6')),
      note: `${split(x, 'bench-shim6')}${typed ? `; Keepalives ${split(x, 'bench-keepalive')}; Probes ${split(x, 'bench-probe')}` : ''}`,
    })),
  ]);
  reportValues(`Idle: every IPv6 packet sent by A and B (Ip6OutRequests), ${windows}`, [
    ...w.map((x) => ({ name: x.label, value: sum(x, 'Ip6OutRequests'), unit: 'packets/s' as const, text: rate(sum(x, 'Ip6OutRequests')), note: split(x, 'Ip6OutRequests') })),
  ]);
  for (const p of ['reapd', 'shim6d'] as const) {
    reportValues(`Idle: ${p} CPU, % of one core (utime + stime, mean of A and B), ${windows}`, [
      ...w.map((x) => {
        const v = (x.cpu.a[p] + x.cpu.b[p]) / 2;
        return { name: x.label, value: v, unit: '%' as const, note: `A ${x.cpu.a[p].toFixed(2)} %, B ${x.cpu.b[p].toFixed(2)} %` };
      }),
    ]);
  }
  for (const p of ['reapd', 'shim6d'] as const) {
    reportValues(`Idle: ${p} resident set size (VmRSS, mean of A and B, at the end of each window)`, [
      ...w.map((x) => ({ name: x.label, value: (x.rss.a[p] + x.rss.b[p]) / 2, unit: 'bytes' as const, note: `A ${formatValue(x.rss.a[p], 'bytes')}, B ${formatValue(x.rss.b[p], 'bytes')}` })),
    ]);
  }
  console.log('\n## Idle: what should stay at zero (REAP explorations started, reapd logs; packets dropped at shim6d\'s inbound queue, nfnetlink_queue)');
  for (const x of w) {
    const line = `${x.label}: explorations A ${x.count.a['explorations'] ?? '-'}, B ${x.count.b['explorations'] ?? '-'}; inbound queue drops A ${x.count.a['inboundQueueDropped'] ?? '-'}, B ${x.count.b['inboundQueueDropped'] ?? '-'}`;
    const bad = (['a', 'b'] as const).some((h) => (x.count[h]['explorations'] ?? 0) > 0 || (x.count[h]['inboundQueueDropped'] ?? 0) > 0);
    console.log(`${line}${bad ? '   <- not zero' : ''}`);
  }
  const reapdLine = /^reapd\s+.*$/m.exec(statsB)?.[0] ?? statsB.split('\n')[0] ?? '';
  console.log(`(${IDLE_CONTEXTS} static contexts per host, pathMtu 1500, default timers; the ${IDLE_CONTEXTS} extra addresses are on both hosts in every run; start-up with ${IDLE_CONTEXTS} contexts: ${startSeconds.toFixed(1)} s for both hosts' daemons)`);
  console.log(`(B's console after the one-way run: ${reapdLine.replace(/\s+/g, ' ')})`);
}

// -- the run --------------------------------------------------------------------------------------

function missingPrerequisite(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, ip6tables, NFQUEUE)';
  if (spawnSync('ss', ['-V'], { stdio: 'ignore' }).status !== 0) return 'needs ss (iproute2)';
  return undefined;
}

export async function run(): Promise<void> {
  const missing = missingPrerequisite();
  if (missing !== undefined) {
    console.log(`\n(skipped: ${missing})`);
    return;
  }
  const cuts = envCuts();
  const parts = envParts();
  const started = Date.now();
  /** The testbed in use: one for the failover part, a fresh one for the idle part. */
  let tb: Testbed | undefined;
  let keys: string | undefined;
  const d: Daemons = { reapd: {}, shim6d: {} };
  const streams: CounterStream[] = [];
  const removeFiles = (): void => {
    if (tb) for (const h of SIDES) rmSync(runDirOf(tb, h), { recursive: true, force: true });
    if (keys) rmSync(keys, { recursive: true, force: true });
  };
  /** Streams, daemons, testbed and files gone; idempotent. */
  const release = async (): Promise<void> => {
    for (const s of streams.splice(0)) s.stop();
    if (tb) {
      const bed = tb;
      await stopDaemons(bed, d, 'cleanup').catch((e: unknown) => console.error(`stopping the daemons: ${String(e)}`));
      await bed.destroy();
    }
    removeFiles();
    tb = undefined;
    keys = undefined;
  };
  // Ctrl-C: leave through process.exit, whose hook (scripts/lib/testbed.ts) destroys the testbed
  // (killing everything in it); the run directories and keys go in our own exit hook.
  const onSignal = (): void => process.exit(130);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.on('exit', removeFiles);
  try {
    console.log(`
${cuts} cuts per timer set; parts: ${[...parts].join(', ')}`);
    if (parts.has('failover-default') || parts.has('failover-aggressive')) {
      tb = await Testbed.create();
      keys = mkdtempSync(join(tmpdir(), 'shim6-bench-reapd-'));
      const ids = { a: await hbaIdentity(tb, 'a', join(keys, 'a')), b: await hbaIdentity(tb, 'b', join(keys, 'b')) };
      console.log(`testbed ${tb.id}; HBA addresses: A ${ids.a.locators.join(', ')}; B ${ids.b.locators.join(', ')}; streams A → B on each path, a counter every 10 ms`);
      for (const set of [DEFAULT_SET, AGGRESSIVE_SET]) {
        if (!parts.has(`failover-${set.key}`)) continue;
        console.log(`
${set.label}: ${describeSet(set)}`);
        reportSet(await failoverSet(tb, ids, set, cuts, d, streams));
      }
      await release();
    }
    if (parts.has('idle')) {
      // A fresh testbed: no HBA addresses, and no conntrack entries of the streams for the heuristic to act on.
      tb = await Testbed.create();
      console.log(`
idle part: testbed ${tb.id}`);
      const s = await idleCost(tb, d);
      console.log(`(idle part: ${(s / 60).toFixed(1)} min)`);
      await release();
    }
    console.log(`
(reapd bench: ${((Date.now() - started) / 60_000).toFixed(1)} min in all)`);
  } finally {
    await release();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    process.removeListener('exit', removeFiles);
  }
}
