import { strict as assert } from 'node:assert';
import { FlowActivity } from '../shim6d/flow-activity';
import type { FlowSample } from '../shim6d/conntrack';

const A = '2001:db8:a1::a';
const B = '2001:db8:b1::b';
const C = '2001:db8:c1::c';

function sample(flow: string, source: string, destination: string, original: number, reply: number, kind?: string): FlowSample & { kind?: string } {
  return { flow, source, destination, protocol: 6, packets: original + reply, originalPackets: original, replyPackets: reply, counted: true, ...(kind ? { kind } : {}) };
}

describe('FlowActivity (per ULID pair sent/received from conntrack)', () => {
  let wanted: Set<string>;
  let fa: FlowActivity;
  beforeEach(() => {
    wanted = new Set([FlowActivity.key(A, B)]);
    fa = new FlowActivity((a) => a === A, (l, p) => wanted.has(FlowActivity.key(l, p)));
  });

  it('counts the original direction as sent when we opened the flow, the reply as received', () => {
    fa.observe(sample('f1', A, B, 10, 7));
    assert.deepEqual(fa.activity(A, B), { sent: 10, received: 7 });
  });

  it("ignores Shim6's own messages (protocol 140): our Keepalives are not payload sent", () => {
    fa.observe(sample('udp', B, A, 5, 0));
    fa.observe({ ...sample('shim6', A, B, 3, 0), protocol: 140 });
    assert.deepEqual(fa.activity(A, B), { sent: 0, received: 5 });
  });

  it('counts the reply direction as sent when the peer opened the flow', () => {
    fa.observe(sample('f1', B, A, 10, 7));
    assert.deepEqual(fa.activity(A, B), { sent: 7, received: 10 });
  });

  it('adds only the growth of a flow between samples, over several flows', () => {
    fa.observe(sample('f1', A, B, 10, 7));
    fa.observe(sample('f1', A, B, 15, 7));
    fa.observe(sample('f2', B, A, 3, 4));
    assert.deepEqual(fa.activity(A, B), { sent: 19, received: 10 });
  });

  it('never goes down when a flow ends, and a reused key starts from zero', () => {
    fa.observe(sample('f1', A, B, 10, 7));
    fa.observe(sample('f1', A, B, 12, 8, 'destroy'));
    assert.equal(fa.flowCount, 0);
    fa.observe(sample('f1', A, B, 1, 1));
    assert.deepEqual(fa.activity(A, B), { sent: 13, received: 9 });
  });

  it('ignores pairs without a context, flows of other hosts and uncounted samples', () => {
    fa.observe(sample('f1', A, C, 10, 7));
    fa.observe(sample('f2', C, B, 10, 7));
    fa.observe({ flow: 'f3', source: A, destination: B, protocol: 6, packets: 0, counted: false });
    assert.deepEqual(fa.activity(A, C), { sent: 0, received: 0 });
    assert.deepEqual(fa.activity(A, B), { sent: 0, received: 0 });
    assert.equal(fa.flowCount, 0);
  });

  it('forgets flows a full dump no longer lists, and pairs no longer wanted', () => {
    fa.beginDump();
    fa.observe(sample('f1', A, B, 10, 7));
    fa.endDump();
    fa.beginDump();
    fa.endDump();
    assert.equal(fa.flowCount, 0);
    assert.deepEqual(fa.activity(A, B), { sent: 10, received: 7 });
    wanted.clear();
    fa.prune();
    assert.deepEqual(fa.activity(A, B), { sent: 0, received: 0 });
  });

  it('prune asks about each pair by its local and peer address, and keeps the wanted ones', () => {
    const asked: string[] = [];
    wanted.add(FlowActivity.key(A, C));
    const f = new FlowActivity((a) => a === A, (l, p) => {
      asked.push(`${l} → ${p}`);
      return wanted.has(FlowActivity.key(l, p));
    });
    f.observe(sample('f1', A, B, 1, 2));
    f.observe(sample('f2', C, A, 3, 4));
    asked.length = 0;
    wanted.delete(FlowActivity.key(A, C));
    f.prune();
    assert.deepEqual(asked, [`${A} → ${B}`, `${A} → ${C}`]);
    assert.deepEqual(f.activity(A, B), { sent: 1, received: 2 });
    assert.deepEqual(f.activity(A, C), { sent: 0, received: 0 });
  });
});
