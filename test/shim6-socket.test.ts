/**
 * Raw protocol-140 sockets between the testbed's hosts: a Shim6 message leaves from the
 * exact source locator asked for (and so on that locator's path), and arrives decodable.
 */
import { strict as assert } from 'node:assert';
import { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Shim6Sender, Shim6SocketError } from '../protocol/shim6-socket';
import { Testbed } from '../scripts/lib/testbed';
import { waitFor } from '../scripts/lib/wait';

const TSX = join(__dirname, '..', 'node_modules', '.bin', 'tsx');
const WIRE = join(__dirname, '..', 'scripts', 'shim6-wire.ts');

interface Listener {
  lines: Array<Record<string, unknown>>;
  child: ChildProcess;
  exited: () => boolean;
}

async function listen(tb: Testbed, count: number, timeoutMs: number): Promise<Listener> {
  const child = tb.spawn('b', TSX, [WIRE, 'listen', '--count', String(count), '--timeout-ms', String(timeoutMs)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Array<Record<string, unknown>> = [];
  let out = '';
  let ready = false;
  let done = false;
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    let nl: number;
    while ((nl = out.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(out.slice(0, nl)) as Record<string, unknown>);
      out = out.slice(nl + 1);
    }
  });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (ready ||= d.includes('listening')));
  child.once('exit', () => (done = true));
  await waitFor(() => ready || done, { what: 'the listener on B', timeoutMs: 20_000 });
  return { lines, child, exited: () => done };
}

async function send(tb: Testbed, from: string, to: string, type: string, tag: number): Promise<void> {
  await tb.exec('a', [TSX, WIRE, 'send', '--from', from, '--to', to, '--type', type, '--tag', String(tag)]);
}

describe('Shim6 raw sockets on the testbed', function () {
  this.timeout(90_000);
  let tb: Testbed;
  before(async () => {
    tb = await Testbed.create();
  });
  after(async () => {
    await tb?.destroy();
  });

  it('delivers a message from the exact source locator, decodable at the far end', async () => {
    const [a1] = tb.a.locators as [string, string];
    const [b1] = tb.b.locators as [string, string];
    const l = await listen(tb, 1, 15_000);
    await send(tb, a1, b1, 'UpdateRequest', 77);
    await waitFor(() => l.exited(), { what: 'the listener to finish', timeoutMs: 20_000 });
    assert.equal(l.lines.length, 1);
    assert.deepEqual([l.lines[0]?.['source'], l.lines[0]?.['type'], l.lines[0]?.['receiverContextTag']], [a1, 'UpdateRequest', 77]);
  });

  it('routes by the source locator: with path 1 cut, only the message sent from a2 arrives', async () => {
    const [a1, a2] = tb.a.locators as [string, string];
    const [, b2] = tb.b.locators as [string, string];
    await tb.cut(1, 'both');
    try {
      const l = await listen(tb, 1, 15_000);
      await send(tb, a1, b2, 'Keepalive', 1); // leaves on path 1: dropped
      await send(tb, a2, b2, 'Keepalive', 2); // leaves on path 2
      await waitFor(() => l.exited(), { what: 'the listener to finish', timeoutMs: 20_000 });
      assert.deepEqual(l.lines.map((x) => [x['source'], x['receiverContextTag']]), [[a2, 2]]);
    } finally {
      await tb.restore(1, 'both');
    }
  });

  it('refuses a source that is not a local address, with a typed error', () => {
    const s = new Shim6Sender();
    try {
      assert.throws(() => s.send(Buffer.alloc(8), '2001:db8:ffff::1', '::1'), (e: unknown) => e instanceof Shim6SocketError && e.call === 'bind');
      assert.throws(() => s.send(Buffer.alloc(8), 'nonsense', '::1'), RangeError);
    } finally {
      s.close();
    }
  });
});
