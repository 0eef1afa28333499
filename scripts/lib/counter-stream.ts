/**
 * A long-lived TCP stream between two testbed hosts that shows whether a connection survives
 * a path failure: the sender writes an 8-octet counter every `intervalMs` (10 ms) from an
 * exact address (a ULID), the receiver checks that each counter is the next one, and reports
 * every 100 ms how far it got, the longest silence, and any reset or out-of-order octet.
 *
 *   const s = await CounterStream.start(tb, { from: ['a', ulidA], to: ['b', ulidB] });
 *   await s.waitForMore(100);            // 100 more counters arrived in order
 *   const r = s.report();                // { received, errors, closed, maxGapMs, ... }
 *   s.stop();
 */
import type { ChildProcess } from 'node:child_process';
import { jsonLines, type JsonLines } from './json-lines';
import type { Host, Testbed } from './testbed';
import { waitFor } from './wait';

// Listens, accepts one connection, checks counters; prints {"ready":port} then a report
// {"received","expected","errors","closed","lastAt","maxGapMs","gaps":[{at,ms}]} every 100 ms.
const RECEIVER = `
const net = require('node:net');
const [addr, port] = process.argv.slice(1);
const st = { received: 0, errors: 0, closed: false, error: null, lastAt: 0, maxGapMs: 0, gaps: [] };
let buf = Buffer.alloc(0);
const srv = net.createServer((c) => {
  srv.close();
  st.lastAt = Date.now();
  c.on('data', (d) => {
    const now = Date.now();
    const gap = now - st.lastAt;
    if (gap > st.maxGapMs) st.maxGapMs = gap;
    if (gap >= 200) st.gaps.push({ at: now, ms: gap });
    st.lastAt = now;
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 8) {
      const v = Number(buf.readBigUInt64BE(0));
      buf = buf.subarray(8);
      if (v !== st.received) st.errors++;
      st.received = v + 1;
    }
  });
  c.on('error', (e) => { st.error = e.message; });
  c.on('close', () => { st.closed = true; report(); });
});
function report() { process.stdout.write(JSON.stringify({ ...st, gaps: st.gaps.slice(-20), now: Date.now() }) + '\\n'); }
srv.listen(Number(port), addr, () => {
  process.stdout.write(JSON.stringify({ ready: srv.address().port }) + '\\n');
  setInterval(report, 100);
});
`;

// Connects from a bound address and writes the next counter every intervalMs; prints
// {"connected":true}, and {"error"} or {"closed"} if the connection ends.
const SENDER = `
const net = require('node:net');
const [from, to, port, intervalMs] = process.argv.slice(1);
let n = 0n;
const c = net.connect({ host: to, port: Number(port), localAddress: from });
c.setNoDelay(true);
c.on('connect', () => {
  process.stdout.write(JSON.stringify({ connected: true }) + '\\n');
  setInterval(() => { const b = Buffer.alloc(8); b.writeBigUInt64BE(n++); c.write(b); }, Number(intervalMs));
});
c.on('error', (e) => { process.stdout.write(JSON.stringify({ error: e.message }) + '\\n'); process.exit(1); });
c.on('close', () => { process.stdout.write(JSON.stringify({ closed: true }) + '\\n'); process.exit(1); });
c.resume();
`;

export interface CounterReport {
  /** Counters received in order so far (the next expected value). */
  received: number;
  /** Counters that were not the next one (lost, duplicated or reordered octets). */
  errors: number;
  /** The connection ended (reset or close). */
  closed: boolean;
  error: string | null;
  /** When the last octets arrived (ms since the epoch, the receiver's clock). */
  lastAt: number;
  /** The longest silence between two arrivals, and the silences of 200 ms or more. */
  maxGapMs: number;
  gaps: Array<{ at: number; ms: number }>;
}

export interface CounterStreamOptions {
  from: [Host, string];
  to: [Host, string];
  port?: number;
  intervalMs?: number;
}

export class CounterStream {
  private constructor(
    private readonly receiver: ChildProcess,
    private readonly sender: ChildProcess,
    private readonly rx: JsonLines,
    private readonly tx: JsonLines,
  ) {}

  static async start(tb: Testbed, o: CounterStreamOptions): Promise<CounterStream> {
    const [toHost, toAddr] = o.to;
    const [fromHost, fromAddr] = o.from;
    const receiver = tb.spawn(toHost, process.execPath, ['-e', RECEIVER, toAddr, String(o.port ?? 0)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const rx = jsonLines(receiver);
    const ready = await waitFor(() => rx.lines.find((l) => typeof l['ready'] === 'number'), { what: 'the counter receiver to listen', timeoutMs: 10_000 });
    const sender = tb.spawn(fromHost, process.execPath, ['-e', SENDER, fromAddr, toAddr, String(ready['ready']), String(o.intervalMs ?? 10)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const tx = jsonLines(sender);
    const s = new CounterStream(receiver, sender, rx, tx);
    await waitFor(
      () => {
        const bad = tx.lines.find((l) => l['error'] !== undefined || l['closed'] !== undefined);
        if (bad) throw new Error(`counter sender: ${JSON.stringify(bad)} ${tx.stderr()}`);
        return tx.lines.some((l) => l['connected'] === true);
      },
      { what: 'the counter stream to connect', timeoutMs: 10_000 },
    );
    return s;
  }

  /** The receiver's latest report. */
  report(): CounterReport {
    const last = [...this.rx.lines].reverse().find((l) => typeof l['received'] === 'number');
    if (!last) return { received: 0, errors: 0, closed: false, error: null, lastAt: 0, maxGapMs: 0, gaps: [] };
    return last as unknown as CounterReport;
  }

  /** The sender's trouble, if any (an error or the connection closing). */
  senderProblem(): string | undefined {
    const bad = this.tx.lines.find((l) => l['error'] !== undefined || l['closed'] !== undefined);
    return bad ? JSON.stringify(bad) : undefined;
  }

  /**
   * Waits until `count` more counters than now have arrived in order; throws at once if the
   * connection breaks or a counter is out of order. Resolves with the report at that point.
   */
  async waitForMore(count: number, timeoutMs = 60_000): Promise<CounterReport> {
    const target = this.report().received + count;
    return waitFor(
      () => {
        const r = this.report();
        const problem = this.senderProblem();
        if (problem) throw new Error(`the stream broke at the sender: ${problem}`);
        if (r.closed || r.errors > 0) throw new Error(`the stream broke at the receiver: ${JSON.stringify(r)}`);
        return r.received >= target ? r : undefined;
      },
      { what: `${count} more counters on the stream`, timeoutMs, intervalMs: 50 },
    );
  }

  stop(): void {
    this.sender.kill('SIGKILL');
    this.receiver.kill('SIGKILL');
  }
}
