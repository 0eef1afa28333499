/**
 * The deadline queue (shim6d/deadline-queue): a binary min-heap with positions, as the context
 * machine keeps its contexts' earliest timers. Ordering, equal deadlines (in the order they
 * were set), moving and removing keys, the empty queue, and a randomized comparison with a
 * sorted array (seeded PRNG: the same run every time).
 */
import { strict as assert } from 'node:assert';
import { DeadlineQueue } from '../shim6d/deadline-queue';
import { seededRandom32 } from './support/shim6-network';

/** Pops everything: [key, deadline] pairs in the order they come out. */
function drain<K>(q: DeadlineQueue<K>): Array<[K, number]> {
  const out: Array<[K, number]> = [];
  for (;;) {
    const at = q.peekAt();
    const key = q.pop();
    if (key === undefined || at === undefined) return out;
    out.push([key, at]);
  }
}

describe('DeadlineQueue', () => {
  it('is empty at first: no key, no deadline, pop and popDue give nothing', () => {
    const q = new DeadlineQueue<string>();
    assert.equal(q.size, 0);
    assert.equal(q.peek(), undefined);
    assert.equal(q.peekAt(), undefined);
    assert.equal(q.pop(), undefined);
    assert.deepEqual(q.popDue(Infinity), []);
    assert.equal(q.delete('a'), false);
    assert.equal(q.get('a'), undefined);
    assert.equal(q.has('a'), false);
  });

  it('gives the keys earliest first, whatever order they were set in', () => {
    const q = new DeadlineQueue<string>();
    for (const [k, at] of [['e', 50], ['b', 20], ['d', 40], ['a', 10], ['c', 30], ['f', -5]] as const) q.set(k, at);
    assert.equal(q.size, 6);
    assert.equal(q.peek(), 'f');
    assert.equal(q.peekAt(), -5);
    assert.deepEqual(drain(q), [['f', -5], ['a', 10], ['b', 20], ['c', 30], ['d', 40], ['e', 50]]);
    assert.equal(q.size, 0);
  });

  it('gives keys with equal deadlines in the order their deadlines were set', () => {
    const q = new DeadlineQueue<number>();
    for (let k = 0; k < 20; k++) q.set(k, k % 2 === 0 ? 100 : 200);
    q.set(0, 200); // moved: now the last of the 200s
    q.set(3, 200); // unchanged: keeps its place
    assert.deepEqual(drain(q).map(([k]) => k), [2, 4, 6, 8, 10, 12, 14, 16, 18, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 0]);
  });

  it('moves a key when its deadline is set again, earlier or later', () => {
    const q = new DeadlineQueue<string>();
    q.set('a', 10);
    q.set('b', 20);
    q.set('c', 30);
    q.set('c', 5);
    assert.equal(q.peek(), 'c');
    q.set('c', 25);
    q.set('a', 40);
    assert.equal(q.size, 3);
    assert.equal(q.get('a'), 40);
    assert.deepEqual(drain(q), [['b', 20], ['c', 25], ['a', 40]]);
  });

  it('removes a key from the head, the middle or the end', () => {
    const q = new DeadlineQueue<string>();
    for (const [k, at] of [['a', 1], ['b', 2], ['c', 3], ['d', 4], ['e', 5], ['f', 6], ['g', 7]] as const) q.set(k, at);
    assert.equal(q.delete('a'), true);
    assert.equal(q.delete('d'), true);
    assert.equal(q.delete('g'), true);
    assert.equal(q.delete('g'), false);
    assert.equal(q.has('d'), false);
    assert.equal(q.size, 4);
    assert.deepEqual(drain(q), [['b', 2], ['c', 3], ['e', 5], ['f', 6]]);
  });

  it('popDue takes the keys due by then, earliest first, and leaves the others', () => {
    const q = new DeadlineQueue<string>();
    q.set('late', 300);
    q.set('now', 200);
    q.set('early', 100);
    assert.deepEqual(q.popDue(99), []);
    assert.deepEqual(q.popDue(200), ['early', 'now']);
    assert.equal(q.peek(), 'late');
    assert.equal(q.size, 1);
    q.clear();
    assert.equal(q.size, 0);
    assert.equal(q.peek(), undefined);
    q.set('late', 1);
    assert.deepEqual(q.popDue(1), ['late']);
  });

  it('refuses NaN', () => {
    const q = new DeadlineQueue<string>();
    assert.throws(() => q.set('a', Number.NaN), RangeError);
    assert.equal(q.size, 0);
  });

  it('agrees with a sorted array through 20,000 random sets, moves, removals and pops', () => {
    const random = seededRandom32(0x5eed);
    const q = new DeadlineQueue<number>();
    // The model: key → [deadline, when it was set]; the queue's order is (deadline, when set).
    const model = new Map<number, [number, number]>();
    let setCount = 0;
    const sorted = (): Array<[number, number]> => [...model].sort((x, y) => x[1][0] - y[1][0] || x[1][1] - y[1][1]).map(([k, [at]]) => [k, at]);
    for (let step = 0; step < 20_000; step++) {
      const op = random() % 10;
      const key = random() % 300;
      // Few distinct deadlines, so that ties are common.
      const at = random() % 500;
      if (op < 5) {
        q.set(key, at);
        const had = model.get(key);
        if (had?.[0] !== at) model.set(key, [at, setCount++]);
      } else if (op < 7) {
        assert.equal(q.delete(key), model.delete(key));
      } else if (op < 8) {
        const expected = sorted()[0];
        assert.deepEqual([q.peek(), q.peekAt()], expected ?? [undefined, undefined]);
        const popped = q.pop();
        assert.equal(popped, expected?.[0]);
        if (popped !== undefined) model.delete(popped);
      } else if (op < 9) {
        const now = random() % 100;
        const expected = sorted().filter(([, t]) => t <= now);
        assert.deepEqual(q.popDue(now), expected.map(([k]) => k));
        for (const [k] of expected) model.delete(k);
      } else {
        assert.equal(q.get(key), model.get(key)?.[0]);
        assert.equal(q.has(key), model.has(key));
      }
      assert.equal(q.size, model.size);
    }
    assert.deepEqual(drain(q), sorted());
  });
});
