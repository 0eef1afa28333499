/**
 * reapd/pair-order: the order in which REAP explores candidate locator pairs (pairs that
 * differ from the failed one in both locators, then in one, the failed pair last).
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { orderCandidatePairs, pairClass, pairText, samePair, type LocatorPair } from '../reapd/pair-order';

const A1 = '2001:db8:a1::a';
const A2 = '2001:db8:a2::a';
const A3 = '2001:db8:a3::a';
const B1 = '2001:db8:b1::b';
const B2 = '2001:db8:b2::b';
const B3 = '2001:db8:b3::b';

const texts = (ps: LocatorPair[]): string[] => ps.map((p) => `${p.local}|${p.peer}`);
const p = (local: string, peer: string): string => `${local}|${peer}`;

describe('pair-order', () => {
  it('two hosts with two locators each: the pair differing in both first, the failed pair last', () => {
    assert.deepEqual(texts(orderCandidatePairs([A1, A2], [B1, B2], { local: A1, peer: B1 })), [p(A2, B2), p(A1, B2), p(A2, B1), p(A1, B1)]);
    assert.deepEqual(texts(orderCandidatePairs([A1, A2], [B1, B2], { local: A2, peer: B2 })), [p(A1, B1), p(A1, B2), p(A2, B1), p(A2, B2)]);
    assert.deepEqual(texts(orderCandidatePairs([A1, A2], [B1, B2], { local: A1, peer: B2 })), [p(A2, B1), p(A1, B1), p(A2, B2), p(A1, B2)]);
  });

  it('three by three: the four pairs avoiding both failed locators, then the four sharing one, then the failed pair', () => {
    const order = orderCandidatePairs([A1, A2, A3], [B1, B2, B3], { local: A2, peer: B2 });
    assert.equal(order.length, 9);
    assert.deepEqual(texts(order.slice(0, 4)), [p(A1, B1), p(A1, B3), p(A3, B1), p(A3, B3)]);
    assert.deepEqual(order.slice(0, 4).map((x) => pairClass(x, { local: A2, peer: B2 })), [0, 0, 0, 0]);
    assert.deepEqual(order.slice(4, 8).map((x) => pairClass(x, { local: A2, peer: B2 })), [1, 1, 1, 1]);
    assert.deepEqual(texts(order.slice(8)), [p(A2, B2)]);
    // Within a class, earlier locators first (the caller lists its preferred ones first).
    assert.deepEqual(texts(order.slice(4, 8)), [p(A1, B2), p(A2, B1), p(A2, B3), p(A3, B2)]);
  });

  it('without a failed pair: every pair, the first locators of both lists first', () => {
    assert.deepEqual(texts(orderCandidatePairs([A1, A2], [B1, B2])), [p(A1, B1), p(A1, B2), p(A2, B1), p(A2, B2)]);
    assert.deepEqual(texts(orderCandidatePairs([A1, A2, A3], [B1])), [p(A1, B1), p(A2, B1), p(A3, B1)]);
  });

  it('a failed pair whose local locator is gone: pairs avoiding its peer locator first, nothing counted as the failed pair', () => {
    const order = orderCandidatePairs([A2, A3], [B1, B2], { local: A1, peer: B1 });
    assert.deepEqual(texts(order), [p(A2, B2), p(A3, B2), p(A2, B1), p(A3, B1)]);
    assert.ok(order.every((x) => pairClass(x, { local: A1, peer: B1 }) < 2));
  });

  it('one locator on each side: only the failed pair, which is still worth retrying', () => {
    assert.deepEqual(texts(orderCandidatePairs([A1], [B1], { local: A1, peer: B1 })), [p(A1, B1)]);
  });

  it('duplicates count once; no locators, no pairs', () => {
    assert.deepEqual(texts(orderCandidatePairs([A1, A1, A2], [B1, B1], { local: A1, peer: B1 })), [p(A2, B1), p(A1, B1)]);
    assert.deepEqual(orderCandidatePairs([], [B1, B2], { local: A1, peer: B1 }), []);
    assert.deepEqual(orderCandidatePairs([A1], []), []);
  });

  it('samePair, pairClass and pairText', () => {
    assert.ok(samePair({ local: A1, peer: B1 }, { local: A1, peer: B1 }));
    assert.ok(!samePair({ local: A1, peer: B1 }, { local: B1, peer: A1 }));
    assert.equal(pairClass({ local: A1, peer: B1 }, undefined), 0);
    assert.equal(pairClass({ local: A2, peer: B2 }, { local: A1, peer: B1 }), 0);
    assert.equal(pairClass({ local: A1, peer: B2 }, { local: A1, peer: B1 }), 1);
    assert.equal(pairClass({ local: A1, peer: B1 }, { local: A1, peer: B1 }), 2);
    assert.equal(pairText({ local: A1, peer: B1 }), `${A1} -> ${B1}`);
  });

  it('property: every pair of the two sets exactly once, classes never decreasing, the input lists untouched', () => {
    const locals = fc.uniqueArray(fc.constantFrom<string>('l0', 'l1', 'l2', 'l3', 'l4'), { maxLength: 5 });
    const peers = fc.uniqueArray(fc.constantFrom<string>('p0', 'p1', 'p2', 'p3'), { maxLength: 4 });
    fc.assert(
      fc.property(locals, peers, fc.option(fc.record({ local: fc.constantFrom<string>('l0', 'l1', 'lx'), peer: fc.constantFrom<string>('p0', 'p3', 'px') }), { nil: undefined }), (ls, ps, failed) => {
        const before = [JSON.stringify(ls), JSON.stringify(ps)];
        const order = orderCandidatePairs(ls, ps, failed);
        assert.deepEqual([JSON.stringify(ls), JSON.stringify(ps)], before);
        assert.equal(order.length, ls.length * ps.length);
        assert.equal(new Set(texts(order)).size, order.length);
        for (const x of order) assert.ok(ls.includes(x.local) && ps.includes(x.peer));
        const classes = order.map((x) => pairClass(x, failed));
        for (let i = 1; i < classes.length; i++) assert.ok((classes[i] as number) >= (classes[i - 1] as number), `classes ${classes.join(',')}`);
        if (failed && ls.includes(failed.local) && ps.includes(failed.peer)) assert.ok(samePair(order[order.length - 1] as LocatorPair, failed));
      }),
      { numRuns: 300, seed: 5534 },
    );
  });
});
