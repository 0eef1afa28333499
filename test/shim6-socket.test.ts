/**
 * Raw protocol-140 sockets between the testbed's hosts: a Shim6 message leaves from the
 * exact source locator asked for (and so on that locator's path), and arrives decodable.
 */
import { strict as assert } from 'node:assert';
import { Shim6Sender, Shim6SocketError } from '../protocol/shim6-socket';
import { Testbed } from '../scripts/lib/testbed';
import { sendShim6, startShim6Listener } from '../scripts/lib/shim6-wire';

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
    const l = await startShim6Listener(tb, 'b', 1, 15_000);
    await sendShim6(tb, 'a', a1, b1, 'UpdateRequest', 77);
    await l.finished();
    assert.equal(l.lines.length, 1);
    assert.deepEqual([l.lines[0]?.['source'], l.lines[0]?.['type'], l.lines[0]?.['receiverContextTag']], [a1, 'UpdateRequest', 77]);
  });

  it('routes by the source locator: with path 1 cut, only the message sent from a2 arrives', async () => {
    const [a1, a2] = tb.a.locators as [string, string];
    const [, b2] = tb.b.locators as [string, string];
    await tb.cut(1, 'both');
    try {
      const l = await startShim6Listener(tb, 'b', 1, 15_000);
      await sendShim6(tb, 'a', a1, b2, 'Keepalive', 1); // leaves on path 1: dropped
      await sendShim6(tb, 'a', a2, b2, 'Keepalive', 2); // leaves on path 2
      await l.finished();
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
