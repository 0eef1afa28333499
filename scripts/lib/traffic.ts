/**
 * Traffic between testbed hosts, checked end to end: a TCP bulk transfer whose SHA-256 the
 * receiver computes, UDP datagrams of given sizes echoed back byte-exact, and a UDP sequence
 * stream whose receiver reports every gap. Each side is a small Node program run inside a
 * host's namespace, bound to an exact address (a ULID).
 */
import { jsonLines } from './json-lines';
import type { Host, Testbed } from './testbed';
import { waitFor } from './wait';

// Prints {"ready":port}; on the first connection reads to the end, then prints
// {"bytes":n,"sha256":hex} and exits.
const TCP_SINK = `
const net = require('node:net');
const crypto = require('node:crypto');
const [addr, port] = process.argv.slice(1);
const srv = net.createServer((c) => {
  const h = crypto.createHash('sha256');
  let n = 0;
  c.on('data', (d) => { n += d.length; h.update(d); });
  c.on('error', (e) => { process.stdout.write(JSON.stringify({ error: e.message, bytes: n }) + '\\n'); process.exit(1); });
  c.on('end', () => { process.stdout.write(JSON.stringify({ bytes: n, sha256: h.digest('hex') }) + '\\n'); c.end(); srv.close(); process.exit(0); });
});
srv.listen(Number(port), addr, () => process.stdout.write(JSON.stringify({ ready: srv.address().port }) + '\\n'));
`;

// Connects from a bound address, sends n random octets, prints {"bytes","sha256","ms"}.
const TCP_SOURCE = `
const net = require('node:net');
const crypto = require('node:crypto');
const [from, to, port, total] = process.argv.slice(1);
const h = crypto.createHash('sha256');
const t0 = process.hrtime.bigint();
let left = Number(total);
const c = net.connect({ host: to, port: Number(port), localAddress: from });
c.on('error', (e) => { process.stderr.write(e.message + '\\n'); process.exit(1); });
function pump() {
  while (left > 0) {
    const chunk = crypto.randomBytes(Math.min(left, 65536));
    left -= chunk.length;
    h.update(chunk);
    if (!c.write(chunk)) return c.once('drain', pump);
  }
  c.end();
}
c.on('connect', pump);
c.on('close', () => {
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  process.stdout.write(JSON.stringify({ bytes: Number(total), sha256: h.digest('hex'), ms }) + '\\n');
  process.exit(0);
});
c.resume();
`;

// For each size: a random payload, re-sent every intervalMs until the same octets come back
// or timeoutMs pass. Prints one {"size","attempts","ok"} per size.
const UDP_ECHO_CHECK = `
const dgram = require('node:dgram');
const crypto = require('node:crypto');
const [from, to, port, timeoutMs, intervalMs, ...sizes] = process.argv.slice(1);
const s = dgram.createSocket({ type: 'udp6', ipv6Only: true });
s.on('error', (e) => { process.stderr.write(e.message + '\\n'); process.exit(2); });
s.bind(0, from, async () => {
  for (const size of sizes.map(Number)) {
    const payload = crypto.randomBytes(size);
    let attempts = 0;
    const ok = await new Promise((resolve) => {
      const onMessage = (m) => { if (m.equals(payload)) done(true); };
      const send = () => { attempts++; s.send(payload, Number(port), to, () => undefined); };
      const timer = setInterval(send, Number(intervalMs));
      const deadline = setTimeout(() => done(false), Number(timeoutMs));
      function done(v) { clearInterval(timer); clearTimeout(deadline); s.off('message', onMessage); resolve(v); }
      s.on('message', onMessage);
      send();
    });
    process.stdout.write(JSON.stringify({ size, attempts, ok }) + '\\n');
  }
  process.exit(0);
});
`;

// Receives sequence-numbered datagrams; on stdin end prints {"received","highest","missing"}.
const UDP_SEQ_SINK = `
const dgram = require('node:dgram');
const [addr, port] = process.argv.slice(1);
const seen = new Set();
let highest = -1;
const s = dgram.createSocket({ type: 'udp6', ipv6Only: true });
s.on('message', (m) => { const n = m.readUInt32BE(0); seen.add(n); if (n > highest) highest = n; });
s.bind(Number(port), addr, () => process.stdout.write(JSON.stringify({ ready: s.address().port }) + '\\n'));
process.stdin.resume();
process.stdin.on('end', () => {
  const missing = [];
  for (let i = 0; i <= highest; i++) if (!seen.has(i)) missing.push(i);
  process.stdout.write(JSON.stringify({ received: seen.size, highest, missing: missing.slice(0, 100), missingCount: missing.length }) + '\\n');
  process.exit(0);
});
`;

// Sends count datagrams numbered 0.., one every intervalMs; prints {"sent"} at the end.
const UDP_SEQ_SOURCE = `
const dgram = require('node:dgram');
const [from, to, port, count, intervalMs] = process.argv.slice(1);
const s = dgram.createSocket({ type: 'udp6', ipv6Only: true });
s.bind(0, from, () => {
  let i = 0;
  const t = setInterval(() => {
    const b = Buffer.alloc(64);
    b.writeUInt32BE(i, 0);
    s.send(b, Number(port), to);
    if (++i >= Number(count)) { clearInterval(t); setTimeout(() => { process.stdout.write(JSON.stringify({ sent: i }) + '\\n'); process.exit(0); }, 50); }
  }, Number(intervalMs));
});
`;

export interface TransferResult {
  bytes: number;
  sentSha256: string;
  receivedBytes: number;
  receivedSha256: string;
  ms: number;
}

/** Sends `bytes` random octets over TCP from host `from` (address fromAddr) to toHost's toAddr. */
export async function tcpTransfer(tb: Testbed, from: Host, fromAddr: string, to: Host, toAddr: string, bytes: number, timeoutMs = 120_000): Promise<TransferResult> {
  const sink = tb.spawn(to, process.execPath, ['-e', TCP_SINK, toAddr, '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const s = jsonLines(sink);
  try {
    const port = await waitFor(() => {
      if (s.exited()) throw new Error(`TCP sink exited: ${s.stderr()}`);
      return s.lines[0]?.['ready'] as number | undefined;
    }, { what: 'the TCP sink to listen', timeoutMs: 10_000, intervalMs: 10 });
    const r = await tb.exec(from, [process.execPath, '-e', TCP_SOURCE, fromAddr, toAddr, String(port), String(bytes)], { timeoutMs });
    const sent = JSON.parse(r.stdout) as { bytes: number; sha256: string; ms: number };
    const got = await waitFor(() => s.lines[1], { what: 'the TCP sink to report', timeoutMs: 10_000, intervalMs: 10 });
    return { bytes: sent.bytes, sentSha256: sent.sha256, receivedBytes: Number(got['bytes']), receivedSha256: String(got['sha256']), ms: sent.ms };
  } finally {
    if (!s.exited()) sink.kill('SIGKILL');
  }
}

export interface EchoResult {
  size: number;
  attempts: number;
  ok: boolean;
}

/** Sends one datagram of each size to a UDP echo server, re-sending until it comes back intact. */
export async function udpEchoCheck(tb: Testbed, host: Host, from: string, to: string, port: number, sizes: readonly number[], options: { timeoutMs?: number; intervalMs?: number } = {}): Promise<EchoResult[]> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const r = await tb.exec(host, [process.execPath, '-e', UDP_ECHO_CHECK, from, to, String(port), String(timeoutMs), String(options.intervalMs ?? 250), ...sizes.map(String)], {
    timeoutMs: sizes.length * timeoutMs + 10_000,
  });
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as EchoResult);
}

export interface SequenceStream {
  port: number;
  /** Starts the sender: count datagrams, one per intervalMs; resolves when all are sent. */
  send(count: number, intervalMs: number): Promise<void>;
  /** Stops the receiver and returns what it saw. */
  finish(): Promise<{ received: number; highest: number; missing: number[]; missingCount: number }>;
}

/** A numbered UDP stream from (from, fromAddr) to (to, toAddr) that reports every lost datagram. */
export async function udpSequenceStream(tb: Testbed, from: Host, fromAddr: string, to: Host, toAddr: string): Promise<SequenceStream> {
  const sink = tb.spawn(to, process.execPath, ['-e', UDP_SEQ_SINK, toAddr, '0'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const s = jsonLines(sink);
  const port = await waitFor(() => {
    if (s.exited()) throw new Error(`UDP sink exited: ${s.stderr()}`);
    return s.lines[0]?.['ready'] as number | undefined;
  }, { what: 'the UDP sequence sink', timeoutMs: 10_000, intervalMs: 10 });
  return {
    port,
    send: async (count, intervalMs) => {
      await tb.exec(from, [process.execPath, '-e', UDP_SEQ_SOURCE, fromAddr, toAddr, String(port), String(count), String(intervalMs)], { timeoutMs: count * intervalMs + 30_000 });
    },
    finish: async () => {
      sink.stdin?.end();
      const r = await waitFor(() => s.lines[1], { what: 'the UDP sequence sink to report', timeoutMs: 10_000, intervalMs: 10 });
      return r as { received: number; highest: number; missing: number[]; missingCount: number };
    },
  };
}
