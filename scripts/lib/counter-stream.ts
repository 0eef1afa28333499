/**
 * A long-lived TCP stream between two testbed hosts that shows whether a connection survives
 * a path failure: the sender writes an 8-octet counter every `intervalMs` (10 ms) from an
 * exact address (a ULID), the receiver checks that each counter is the next one, and reports
 * every 100 ms how far it got, the longest silence, and any reset or out-of-order octet.
 *
 *   const s = await CounterStream.start(tb, { from: ['a', ulidA], to: ['b', ulidB] });
 *   await s.waitForMore(100);            // 100 more counters arrived in order
 *   const r = s.report();                // { received, errors, closed, maxGapMs, ... }
 *   const at = await s.firstArrivalAfter(Date.now());   // when octets next arrive (receiver's clock)
 *   const end = await s.finish();        // FIN after the last counter: { sent, received, bytes, leftover }
 *   s.stop();                            // kills both ends (for finally and after hooks)
 *
 * The receiver accepts one connection only, so a stream that finishes with sent === received
 * went through one and the same connection.
 *
 * The testbed's namespaces share the machine's clock, so the receiver's times compare with
 * Date.now() in the test.
 */
import type { ChildProcess } from 'node:child_process';
import { jsonLines, type JsonLines } from './json-lines';
import type { Host, Testbed } from './testbed';
import { waitFor } from './wait';

// Listens, accepts one connection (then stops listening), checks counters; prints {"ready":port},
// {"connected":{endpoints}}, then a report {"received","errors","closed","bytes","lastAt",
// "maxGapMs","gaps":[{at,ms}]} every 100 ms; when the sender ends the connection, a last report
// with "done":true and "leftover" (octets after the last whole counter).
// A line {"mark":T} on stdin (T: ms since the epoch, usually a moment just past) adds "mark":
// {at,lastBefore,firstAfter,maxGapMs,arrivals} to the reports: the last arrival at or before T,
// the first after it, the longest silence ending after it and how many arrivals came after it
// (computed from the recent arrival times kept, then kept up to date). A new mark replaces it.
const RECEIVER = `
const net = require('node:net');
const [addr, port] = process.argv.slice(1);
const st = { received: 0, errors: 0, closed: false, error: null, bytes: 0, lastAt: 0, maxGapMs: 0, gaps: [] };
let buf = Buffer.alloc(0);
const RECENT = 4096;
const recent = [];
let mark = null;
function arrived(now, gap) {
  recent.push(now);
  if (recent.length > RECENT) recent.splice(0, recent.length - RECENT);
  if (mark === null) return;
  if (now <= mark.at) { mark.lastBefore = now; return; }
  if (mark.firstAfter === null) mark.firstAfter = now;
  if (gap > mark.maxGapMs) mark.maxGapMs = gap;
  mark.arrivals++;
}
function setMark(at) {
  mark = { at, lastBefore: null, firstAfter: null, maxGapMs: 0, arrivals: 0 };
  for (let i = 0; i < recent.length; i++) {
    const t = recent[i];
    if (t <= at) { mark.lastBefore = t; continue; }
    if (mark.firstAfter === null) mark.firstAfter = t;
    const gap = i > 0 ? t - recent[i - 1] : 0;
    if (gap > mark.maxGapMs) mark.maxGapMs = gap;
    mark.arrivals++;
  }
}
let commands = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => {
  commands += d;
  let nl;
  while ((nl = commands.indexOf('\\n')) >= 0) {
    const line = commands.slice(0, nl);
    commands = commands.slice(nl + 1);
    try { const m = JSON.parse(line); if (typeof m.mark === 'number') setMark(m.mark); } catch {}
  }
});
process.stdin.on('error', () => undefined);
const srv = net.createServer((c) => {
  srv.close();
  st.lastAt = Date.now();
  process.stdout.write(JSON.stringify({ connected: { localAddress: c.localAddress, localPort: c.localPort, remoteAddress: c.remoteAddress, remotePort: c.remotePort } }) + '\\n');
  c.on('data', (d) => {
    st.bytes += d.length;
    const now = Date.now();
    const gap = now - st.lastAt;
    if (gap > st.maxGapMs) st.maxGapMs = gap;
    if (gap >= 200) st.gaps.push({ at: now, ms: gap });
    st.lastAt = now;
    arrived(now, gap);
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 8) {
      const v = Number(buf.readBigUInt64BE(0));
      buf = buf.subarray(8);
      if (v !== st.received) st.errors++;
      st.received = v + 1;
    }
  });
  c.on('error', (e) => { st.error = e.message; });
  c.on('end', () => { st.done = true; st.leftover = buf.length; c.end(); });
  c.on('close', () => { st.closed = true; report(); });
});
function report() { process.stdout.write(JSON.stringify({ ...st, gaps: st.gaps.slice(-20), now: Date.now(), ...(mark ? { mark } : {}) }) + '\\n'); }
srv.listen(Number(port), addr, () => {
  process.stdout.write(JSON.stringify({ ready: srv.address().port }) + '\\n');
  setInterval(report, 100);
});
`;

// Connects from a bound address and writes the next counter every intervalMs; prints
// {"connected":{endpoints}}, and {"error"} or {"closed"} if the connection ends. When its stdin
// ends it stops writing, ends the connection (FIN) and prints {"done":true,"sent":n} once closed.
const SENDER = `
const net = require('node:net');
const [from, to, port, intervalMs] = process.argv.slice(1);
let n = 0n, timer, finishing = false;
const c = net.connect({ host: to, port: Number(port), localAddress: from });
c.setNoDelay(true);
c.on('connect', () => {
  process.stdout.write(JSON.stringify({ connected: { localAddress: c.localAddress, localPort: c.localPort, remoteAddress: c.remoteAddress, remotePort: c.remotePort } }) + '\\n');
  timer = setInterval(() => { const b = Buffer.alloc(8); b.writeBigUInt64BE(n++); c.write(b); }, Number(intervalMs));
});
c.on('error', (e) => { process.stdout.write(JSON.stringify({ error: e.message }) + '\\n'); process.exit(1); });
c.on('close', (hadError) => {
  process.stdout.write(JSON.stringify(finishing && !hadError ? { done: true, sent: Number(n) } : { closed: true }) + '\\n');
  process.exit(finishing && !hadError ? 0 : 1);
});
c.resume();
process.stdin.on('end', () => { finishing = true; clearInterval(timer); c.end(); });
process.stdin.on('error', () => undefined);
process.stdin.resume();
`;

export interface CounterReport {
  /** Counters received in order so far (the next expected value). */
  received: number;
  /** Counters that were not the next one (lost, duplicated or reordered octets). */
  errors: number;
  /** The connection ended (reset or close). */
  closed: boolean;
  error: string | null;
  /** Octets received. */
  bytes: number;
  /** The sender ended the connection (finish()); then `leftover` octets followed the last whole counter. */
  done?: boolean;
  leftover?: number;
  /** When the last octets arrived (ms since the epoch, the receiver's clock). */
  lastAt: number;
  /** The longest silence between two arrivals, and the silences of 200 ms or more. */
  maxGapMs: number;
  gaps: Array<{ at: number; ms: number }>;
  /** What arrived after the latest mark() (once the receiver has taken it). */
  mark?: CounterMark;
}

/** The receiver's view of the arrivals around one moment (CounterStream.mark). */
export interface CounterMark {
  /** The marked moment (ms since the epoch). */
  at: number;
  /** The last arrival at or before `at`, if the receiver still remembers one (its last 4,096 arrivals). */
  lastBefore: number | null;
  /** The first arrival after `at`; null while none has come. */
  firstAfter: number | null;
  /** The longest silence that ended after `at` (it may have begun before). */
  maxGapMs: number;
  /** Arrivals (data events, each one or more counters) after `at`. */
  arrivals: number;
}

/** One end of the connection, as that end's socket sees it. */
export interface TcpEndpoints {
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
}

export interface CounterStreamOptions {
  from: [Host, string];
  to: [Host, string];
  port?: number;
  intervalMs?: number;
}

export class CounterStream {
  /** The connection as the sender (source) and the receiver (sink) see it. */
  source!: TcpEndpoints;
  sink!: TcpEndpoints;

  private constructor(
    private readonly receiver: ChildProcess,
    private readonly sender: ChildProcess,
    private readonly rx: JsonLines,
    private readonly tx: JsonLines,
  ) {}

  static async start(tb: Testbed, o: CounterStreamOptions): Promise<CounterStream> {
    const [toHost, toAddr] = o.to;
    const [fromHost, fromAddr] = o.from;
    const receiver = tb.spawn(toHost, process.execPath, ['-e', RECEIVER, toAddr, String(o.port ?? 0)], { stdio: ['pipe', 'pipe', 'pipe'] });
    // mark() writes here; a receiver that has gone must not turn into an unhandled EPIPE.
    receiver.stdin?.on('error', () => undefined);
    const rx = jsonLines(receiver);
    const ready = await waitFor(() => rx.lines.find((l) => typeof l['ready'] === 'number'), { what: 'the counter receiver to listen', timeoutMs: 10_000 });
    // finish() ends the sender's stdin.
    const sender = tb.spawn(fromHost, process.execPath, ['-e', SENDER, fromAddr, toAddr, String(ready['ready']), String(o.intervalMs ?? 10)], { stdio: ['pipe', 'pipe', 'pipe'] });
    sender.stdin?.on('error', () => undefined);
    const tx = jsonLines(sender);
    const s = new CounterStream(receiver, sender, rx, tx);
    const connected = (l: JsonLines): TcpEndpoints | undefined => l.lines.find((x) => x['connected'] !== undefined)?.['connected'] as TcpEndpoints | undefined;
    const ends = await s.until('the counter stream to connect', 10_000, () => {
      const source = connected(tx);
      const sink = connected(rx);
      return source && sink ? { source, sink } : undefined;
    });
    s.source = ends.source;
    s.sink = ends.sink;
    return s;
  }

  /** The receiver's latest report. */
  report(): CounterReport {
    const last = [...this.rx.lines].reverse().find((l) => typeof l['received'] === 'number');
    if (!last) return { received: 0, errors: 0, closed: false, error: null, bytes: 0, lastAt: 0, maxGapMs: 0, gaps: [] };
    return last as unknown as CounterReport;
  }

  /** The sender's trouble, if any (an error or the connection closing). */
  senderProblem(): string | undefined {
    const bad = this.tx.lines.find((l) => l['error'] !== undefined || l['closed'] !== undefined);
    return bad ? JSON.stringify(bad) : undefined;
  }

  /** Why the stream is broken (a sender error or close, a reset, an out-of-order counter), if it is. */
  private broken(): string | undefined {
    const problem = this.senderProblem();
    if (problem) return `the stream broke at the sender: ${problem} ${this.tx.stderr().trim()}`;
    const r = this.report();
    if ((r.closed && !r.done) || r.errors > 0) return `the stream broke at the receiver: ${JSON.stringify(r)} ${this.rx.stderr().trim()}`;
    return undefined;
  }

  /**
   * Polls `cond` until it holds; a broken stream ends the wait at once with its reason
   * (waitFor itself would retry a condition that throws until the deadline).
   */
  private async until<T>(what: string, timeoutMs: number, cond: () => T | undefined): Promise<T> {
    const outcome = await waitFor((): { value: T } | { broken: string } | undefined => {
      const broken = this.broken();
      if (broken !== undefined) return { broken };
      const value = cond();
      return value === undefined ? undefined : { value };
    }, { what, timeoutMs, intervalMs: 20 });
    if ('broken' in outcome) throw new Error(outcome.broken);
    return outcome.value;
  }

  /** Waits until `target` counters in all have arrived in order; throws at once if the stream breaks. */
  waitForReceived(target: number, timeoutMs = 60_000, what = `${target} counters on the stream`): Promise<CounterReport> {
    return this.until(what, timeoutMs, () => {
      const r = this.report();
      return r.received >= target ? r : undefined;
    });
  }

  /** Waits until `count` more counters than now have arrived in order; throws at once if the stream breaks. */
  waitForMore(count: number, timeoutMs = 60_000): Promise<CounterReport> {
    return this.waitForReceived(this.report().received + count, timeoutMs, `${count} more counters on the stream`);
  }

  /**
   * Stops the sender (FIN after its last counter) and waits for both ends' final word: how many
   * counters were sent, and how many the receiver got in order, in how many octets.
   */
  async finish(timeoutMs = 30_000): Promise<{ sent: number; received: number; bytes: number; leftover: number }> {
    this.sender.stdin?.end();
    return this.until('both ends of the counter stream to finish', timeoutMs, () => {
      const sent = this.tx.lines.find((l) => l['done'] === true)?.['sent'];
      const r = this.report();
      return typeof sent === 'number' && r.done ? { sent, received: r.received, bytes: r.bytes, leftover: r.leftover ?? 0 } : undefined;
    });
  }

  /**
   * Asks the receiver to describe the arrivals after `at` (ms since the epoch; default now):
   * see CounterMark, in report().mark once the receiver has taken it. Replaces any earlier mark.
   */
  mark(at: number = Date.now()): void {
    this.receiver.stdin?.write(`${JSON.stringify({ mark: at })}\n`);
  }

  /** The receiver's latest report on the mark at `at` (undefined until it has taken that mark). */
  sinceMark(at: number): CounterMark | undefined {
    const m = this.report().mark;
    return m !== undefined && m.at === at ? m : undefined;
  }

  /**
   * Marks `at` and waits for the first octets to arrive after it; resolves with their arrival
   * time (the receiver's clock, ms since the epoch). Throws at once if the connection breaks
   * or a counter is out of order, and after `timeoutMs` without an arrival.
   */
  async firstArrivalAfter(at: number, timeoutMs = 120_000): Promise<number> {
    this.mark(at);
    return this.until(`the first counter after ${new Date(at).toISOString()}`, timeoutMs, () => {
      const first = this.sinceMark(at)?.firstAfter;
      return typeof first === 'number' ? first : undefined;
    });
  }

  stop(): void {
    this.sender.kill('SIGKILL');
    this.receiver.kill('SIGKILL');
  }
}
