/**
 * ShimControl (shim6d/shim-control) with fake netfilter rules, a fake path-MTU lookup and a
 * recording logger: which moves add or remove the ULID pair's rule, in which order the
 * table and the rules change, what a failure leaves behind, and that operations queue; and
 * installMany, the batch of the static contexts at start-up.
 */
import { strict as assert } from 'node:assert';
import { ContextError, isShimmed, type ContextSpec, type LocatorPair, type ShimContext } from '../shim6d/context';
import { ContextTable } from '../shim6d/context-table';
import { PATH_MTU_LOOKUPS_AT_ONCE, ShimControl, type PairRules, type ShimControlLogger } from '../shim6d/shim-control';

const A1 = '2001:db8:a1::a';
const A2 = '2001:db8:a2::a';
const A3 = '2001:db8:a3::a';
const B1 = '2001:db8:b1::b';
const B2 = '2001:db8:b2::b';
const B3 = '2001:db8:b3::b';

function spec(over: Partial<ContextSpec> = {}): ContextSpec {
  return {
    id: 1,
    origin: 'static',
    localUlid: A1,
    peerUlid: B1,
    localContextTag: 0x1001,
    peerContextTag: 0x2002,
    localLocators: [A1, A2, A3],
    peerLocators: [B1, B2, B3],
    verification: 'static',
    ...over,
  };
}

/** A promise and its resolve, to hold a fake until the test lets it go. */
class Gate {
  readonly promise: Promise<void>;
  open!: () => void;
  constructor() {
    this.promise = new Promise((resolve) => {
      this.open = resolve;
    });
  }
}

/** Every fake call, in order, as one line: 'add A1 B1', 'mtu A2 B2', ... */
type Events = string[];

/** Rules that record their calls, can fail on demand, and let the test look inside at call time. */
class FakeRules implements PairRules {
  failAdd: Error | undefined;
  failRemove: Error | undefined;
  /** Called synchronously when a call starts (to inspect the context at that moment). */
  onAdd: (() => void) | undefined;
  onRemove: (() => void) | undefined;
  /** When set, a call waits for it before it completes. */
  gate: Gate | undefined;
  readonly calls: string[] = [];
  constructor(private readonly events: Events) {}

  async addShimmedPair(src: string, dst: string): Promise<void> {
    this.calls.push(`add ${src} ${dst}`);
    this.events.push(`add ${src} ${dst}`);
    this.onAdd?.();
    await this.gate?.promise;
    await Promise.resolve();
    this.events.push('add done');
    if (this.failAdd) throw this.failAdd;
  }

  /** Recorded as one call: 'addMany A1 B1, A1 C1, ...'. */
  async addShimmedPairs(pairs: readonly { src: string; dst: string }[]): Promise<void> {
    const line = `addMany ${pairs.map((p) => `${p.src} ${p.dst}`).join(', ')}`;
    this.calls.push(line);
    this.events.push(line);
    this.onAdd?.();
    await this.gate?.promise;
    await Promise.resolve();
    this.events.push('addMany done');
    if (this.failAdd) throw this.failAdd;
  }

  async removeShimmedPair(src: string, dst: string): Promise<void> {
    this.calls.push(`remove ${src} ${dst}`);
    this.events.push(`remove ${src} ${dst}`);
    this.onRemove?.();
    await this.gate?.promise;
    await Promise.resolve();
    this.events.push('remove done');
    if (this.failRemove) throw this.failRemove;
  }
}

/** A path-MTU lookup from a table of pairs; a missing pair or an Error rejects. */
class FakeMtu {
  readonly mtus = new Map<string, number | Error>();
  readonly calls: string[] = [];
  gate: Gate | undefined;
  constructor(private readonly events: Events) {}

  readonly lookup = async (local: string, peer: string): Promise<number> => {
    this.calls.push(`${local} ${peer}`);
    this.events.push(`mtu ${local} ${peer}`);
    await this.gate?.promise;
    const m = this.mtus.get(`${local} ${peer}`);
    if (m === undefined) throw new Error(`no route to ${peer}`);
    if (m instanceof Error) throw m;
    return m;
  };
}

class FakeLog implements ShimControlLogger {
  readonly infos: { message: string; meta: Record<string, unknown> | undefined }[] = [];
  readonly warns: { message: string; meta: Record<string, unknown> | undefined }[] = [];
  info(message: string, meta?: Record<string, unknown>): void {
    this.infos.push({ message, meta });
  }
  warn(message: string, meta?: Record<string, unknown>): void {
    this.warns.push({ message, meta });
  }
}

interface Rig {
  table: ContextTable;
  rules: FakeRules;
  mtu: FakeMtu;
  log: FakeLog;
  control: ShimControl;
  events: Events;
}

function rig(): Rig {
  const events: Events = [];
  const table = new ContextTable();
  const rules = new FakeRules(events);
  const mtu = new FakeMtu(events);
  mtu.mtus.set(`${A2} ${B2}`, 1400);
  mtu.mtus.set(`${A3} ${B3}`, 1300);
  mtu.mtus.set(`${A1} ${B2}`, 1450);
  mtu.mtus.set(`${A2} ${B3}`, 1350);
  const log = new FakeLog();
  return { table, rules, mtu, log, control: new ShimControl(table, rules, mtu.lookup, log), events };
}

const pairOf = (ctx: ShimContext): string => `${ctx.current.local.text} ${ctx.current.peer.text}`;

function isContextError(pattern: RegExp): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof ContextError, `a ContextError, not ${String(e)}`);
    assert.match(e.message, pattern);
    return true;
  };
}

describe('ShimControl (shim6d/shim-control)', () => {
  describe('install', () => {
    it('a context on its ULID pair: in the table, no rule, no path MTU lookup', async () => {
      const r = rig();
      const ctx = await r.control.install(spec());
      assert.equal(r.table.byId(1), ctx);
      assert.equal(isShimmed(ctx), false);
      assert.deepEqual(r.rules.calls, []);
      assert.deepEqual(r.mtu.calls, []);
      assert.equal(ctx.pathMtu, undefined);
      assert.deepEqual(r.log.infos.map((i) => i.message), ['context installed']);
      assert.equal(r.log.infos[0]?.meta?.id, 1);
    });

    it('with a locatorPair: exactly one rule, for the ULID pair, and the pair\'s path MTU', async () => {
      const r = rig();
      r.rules.onAdd = () => {
        // The table is ready before the first packet is queued.
        const ctx = r.table.byId(1);
        assert.ok(ctx);
        assert.equal(pairOf(ctx), `${A2} ${B2}`);
        assert.equal(ctx.pathMtu, 1400);
      };
      const ctx = await r.control.install(spec({ locatorPair: { local: A2, peer: B2 } }));
      assert.deepEqual(r.rules.calls, [`add ${A1} ${B1}`]);
      assert.deepEqual(r.mtu.calls, [`${A2} ${B2}`]);
      assert.equal(ctx.pathMtu, 1400);
      assert.equal(pairOf(ctx), `${A2} ${B2}`);
      assert.equal(r.table.byId(1), ctx);
      assert.deepEqual(r.events, [`mtu ${A2} ${B2}`, `add ${A1} ${B1}`, 'add done']);
      assert.equal(r.log.warns.length, 0);
    });

    it('a failing path-MTU lookup: a warning, pathMtu undefined, the rule is still added', async () => {
      const r = rig();
      r.mtu.mtus.set(`${A2} ${B2}`, new Error('RTNETLINK answers: Network is unreachable'));
      const ctx = await r.control.install(spec({ locatorPair: { local: A2, peer: B2 } }));
      assert.equal(ctx.pathMtu, undefined);
      assert.deepEqual(r.rules.calls, [`add ${A1} ${B1}`]);
      assert.equal(r.log.warns.length, 1);
      assert.match(r.log.warns[0]?.message ?? '', /path MTU unknown/);
      assert.deepEqual(r.log.warns[0]?.meta, { local: A2, peer: B2, error: 'RTNETLINK answers: Network is unreachable' });
    });

    it('a failing addShimmedPair: the error propagates and the context leaves the table', async () => {
      const r = rig();
      const boom = new Error('ip6tables: Resource temporarily unavailable');
      r.rules.failAdd = boom;
      await assert.rejects(r.control.install(spec({ locatorPair: { local: A2, peer: B2 } })), (e) => e === boom);
      assert.equal(r.table.size, 0);
      assert.equal(r.table.byLocalTag(0x1001), undefined);
      assert.deepEqual(r.log.infos, []);
      // Installable again once the rules work.
      r.rules.failAdd = undefined;
      const ctx = await r.control.install(spec({ locatorPair: { local: A2, peer: B2 } }));
      assert.equal(r.table.byId(1), ctx);
    });

    it('an invalid or duplicate spec: the ContextError propagates, no rule', async () => {
      const r = rig();
      await r.control.install(spec());
      await assert.rejects(r.control.install(spec({ localContextTag: 5 })), isContextError(/context id 1 is in use/));
      await assert.rejects(r.control.install(spec({ id: 2, locatorPair: { local: A2, peer: '2001:db8:b9::b' } })), isContextError(/peer locator 2001:db8:b9::b/));
      assert.deepEqual(r.rules.calls, []);
      assert.equal(r.table.size, 1);
    });
  });

  describe('installMany', () => {
    const C1 = '2001:db8:c1::c';
    const D1 = '2001:db8:d1::d';
    const E1 = '2001:db8:e1::e';
    /** Peer ULID `peer`, whose locators include B2 and B3 so that pairs can be shared. */
    const to = (id: number, peer: string, over: Partial<ContextSpec> = {}): ContextSpec =>
      spec({ id, peerUlid: peer, localContextTag: 0x1000 + id, peerContextTag: 0x2000 + id, peerLocators: [peer, B2, B3], ...over });

    it('the table first (every context, pair and path MTU), then ONE rule batch for the shimmed ones; one lookup per distinct pair', async () => {
      const r = rig();
      let seen: string[] | undefined;
      r.rules.onAdd = () => {
        seen = r.table.all().map((c) => `${c.id} ${pairOf(c)} ${String(c.pathMtu)}`);
      };
      const list = await r.control.installMany([
        spec(), // on its ULIDs
        to(2, C1, { locatorPair: { local: A2, peer: B2 } }),
        to(3, D1, { locatorPair: { local: A2, peer: B2 } }), // the same locator pair as 2
        to(4, E1, { locatorPair: { local: A3, peer: B3 } }),
      ]);
      assert.deepEqual(list.map((c) => c.id), [1, 2, 3, 4]);
      assert.deepEqual(list.map((c) => r.table.byId(c.id) === c), [true, true, true, true]);
      assert.deepEqual(r.rules.calls, [`addMany ${A1} ${C1}, ${A1} ${D1}, ${A1} ${E1}`]);
      assert.deepEqual(r.mtu.calls, [`${A2} ${B2}`, `${A3} ${B3}`]);
      assert.deepEqual(seen, [`1 ${A1} ${B1} undefined`, `2 ${A2} ${B2} 1400`, `3 ${A2} ${B2} 1400`, `4 ${A3} ${B3} 1300`], 'all in the table, with their path MTU, before the rules');
      assert.deepEqual(r.events.slice(-2), [`addMany ${A1} ${C1}, ${A1} ${D1}, ${A1} ${E1}`, 'addMany done']);
      assert.deepEqual(r.log.infos.map((i) => [i.message, i.meta?.id]), [1, 2, 3, 4].map((id) => ['context installed', id]));
      // They behave like contexts install() added: deshim removes the one rule.
      await r.control.returnToUlids(3);
      assert.deepEqual(r.rules.calls.slice(1), [`remove ${A1} ${D1}`]);
    });

    it('none shimmed: no rule call, no lookup; an empty list: nothing at all', async () => {
      const r = rig();
      assert.deepEqual(await r.control.installMany([]), []);
      const list = await r.control.installMany([spec(), to(2, C1)]);
      assert.equal(list.length, 2);
      assert.deepEqual(r.rules.calls, []);
      assert.deepEqual(r.mtu.calls, []);
    });

    it('a refused spec: the ContextError propagates, none of the batch stays, no lookup, no rule', async () => {
      const r = rig();
      await r.control.install(to(9, E1));
      await assert.rejects(
        r.control.installMany([to(2, C1, { locatorPair: { local: A2, peer: B2 } }), to(3, D1, { localContextTag: 0x1009 })]),
        isContextError(/local context tag 4105 is in use by context 9/),
      );
      assert.deepEqual(r.table.all().map((c) => c.id), [9], 'only the earlier context');
      assert.deepEqual(r.rules.calls, []);
      assert.deepEqual(r.mtu.calls, []);
    });

    it('failing rules: the error propagates, none of the batch stays, nothing logged as installed; a retry works', async () => {
      const r = rig();
      const boom = new Error('ipset restore: Kernel error');
      r.rules.failAdd = boom;
      const batch = [spec(), to(2, C1, { locatorPair: { local: A2, peer: B2 } })];
      await assert.rejects(r.control.installMany(batch), (e) => e === boom);
      assert.equal(r.table.size, 0);
      assert.equal(r.table.byLocalTag(0x1002), undefined);
      assert.deepEqual(r.log.infos, []);
      r.rules.failAdd = undefined;
      assert.equal((await r.control.installMany(batch)).length, 2);
      assert.equal(r.table.size, 2);
    });

    it('a failing lookup: a warning per pair, pathMtu undefined, the rule still added', async () => {
      const r = rig();
      const list = await r.control.installMany([to(2, C1, { locatorPair: { local: A1, peer: B3 } }), to(3, D1, { locatorPair: { local: A1, peer: B3 } })]);
      assert.deepEqual(list.map((c) => c.pathMtu), [undefined, undefined]);
      assert.equal(r.log.warns.length, 1);
      assert.deepEqual(r.log.warns[0]?.meta, { local: A1, peer: B3, error: `no route to ${B3}` });
      assert.deepEqual(r.rules.calls, [`addMany ${A1} ${C1}, ${A1} ${D1}`]);
    });

    it(`runs at most ${PATH_MTU_LOOKUPS_AT_ONCE} lookups at once`, async () => {
      const r = rig();
      const n = PATH_MTU_LOOKUPS_AT_ONCE * 3 + 1;
      const specs = Array.from({ length: n }, (_, i) => {
        const peer = `2001:db8:f1::${(i + 1).toString(16)}`;
        const loc = `2001:db8:f2::${(i + 1).toString(16)}`;
        r.mtu.mtus.set(`${A2} ${loc}`, 1280 + i);
        return spec({ id: i + 1, peerUlid: peer, localContextTag: i + 1, peerLocators: [peer, loc], locatorPair: { local: A2, peer: loc } });
      });
      const gate = new Gate();
      r.mtu.gate = gate;
      const many = r.control.installMany(specs);
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
      assert.equal(r.mtu.calls.length, PATH_MTU_LOOKUPS_AT_ONCE, 'the others wait for one of these to finish');
      assert.deepEqual(r.rules.calls, []);
      gate.open();
      const list = await many;
      assert.equal(r.mtu.calls.length, n);
      assert.deepEqual(list.map((c) => c.pathMtu), specs.map((_, i) => 1280 + i));
      assert.equal(r.rules.calls.length, 1);
    });

    it('queues behind an operation under way, like the others', async () => {
      const r = rig();
      const gate = new Gate();
      r.mtu.gate = gate;
      const first = r.control.install(to(9, E1, { locatorPair: { local: A2, peer: B2 } }));
      const many = r.control.installMany([to(2, C1, { locatorPair: { local: A3, peer: B3 } })]);
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(r.mtu.calls, [`${A2} ${B2}`]);
      gate.open();
      await Promise.all([first, many]);
      assert.deepEqual(r.events, [`mtu ${A2} ${B2}`, `add ${A1} ${E1}`, 'add done', `mtu ${A3} ${B3}`, `addMany ${A1} ${C1}`, 'addMany done']);
    });
  });

  describe('moveTo / returnToUlids', () => {
    it('from the ULIDs to a new pair: the table first (pair and path MTU), then the rule, once', async () => {
      const r = rig();
      const ctx = await r.control.install(spec());
      let seen: { pair: string; mtu: number | undefined } | undefined;
      r.rules.onAdd = () => {
        seen = { pair: pairOf(ctx), mtu: ctx.pathMtu };
      };
      const moved = await r.control.moveTo(1, A2, B2);
      assert.equal(moved, ctx);
      assert.deepEqual(seen, { pair: `${A2} ${B2}`, mtu: 1400 });
      assert.deepEqual(r.rules.calls, [`add ${A1} ${B1}`]);
      assert.equal(ctx.pathMtu, 1400);
      assert.equal(ctx.current.local, ctx.localLocators[1]);
      assert.equal(ctx.current.peer, ctx.peerLocators[1]);
      assert.equal(isShimmed(ctx), true);
      const info = r.log.infos.at(-1);
      assert.equal(info?.message, 'context moved');
      assert.equal(info?.meta?.from, `${A1} → ${B1}`);
      assert.equal(info?.meta?.pair, `${A2} → ${B2}`);
    });

    it('a pair that changes one side only is shimmed too: the rule is added', async () => {
      const r = rig();
      const ctx = await r.control.install(spec());
      await r.control.moveTo(1, A1, B2);
      assert.deepEqual(r.rules.calls, [`add ${A1} ${B1}`]);
      assert.equal(ctx.pathMtu, 1450);
    });

    it('between two non-ULID pairs: the table only (new path MTU), no further rule', async () => {
      const r = rig();
      const ctx = await r.control.install(spec({ locatorPair: { local: A2, peer: B2 } }));
      await r.control.moveTo(1, A3, B3);
      assert.equal(pairOf(ctx), `${A3} ${B3}`);
      assert.equal(ctx.pathMtu, 1300);
      await r.control.moveTo(1, A2, B3);
      assert.equal(ctx.pathMtu, 1350);
      await r.control.moveTo(1, A2, B3); // the same pair again
      assert.deepEqual(r.rules.calls, [`add ${A1} ${B1}`], 'only the install added one');
      assert.deepEqual(r.mtu.calls, [`${A2} ${B2}`, `${A3} ${B3}`, `${A2} ${B3}`, `${A2} ${B3}`]);
    });

    it('returnToUlids: the rule is removed BEFORE the pair is reset; then no rewriting, pathMtu undefined', async () => {
      const r = rig();
      const ctx = await r.control.install(spec({ locatorPair: { local: A2, peer: B2 } }));
      let seen: { pair: string; shimmed: boolean; mtu: number | undefined } | undefined;
      r.rules.onRemove = () => {
        seen = { pair: pairOf(ctx), shimmed: isShimmed(ctx), mtu: ctx.pathMtu };
      };
      const back = await r.control.returnToUlids(1);
      assert.equal(back, ctx);
      assert.deepEqual(seen, { pair: `${A2} ${B2}`, shimmed: true, mtu: 1400 }, 'still shimmed while the rule goes');
      assert.deepEqual(r.rules.calls, [`add ${A1} ${B1}`, `remove ${A1} ${B1}`]);
      assert.equal(ctx.current.local, ctx.localUlid);
      assert.equal(ctx.current.peer, ctx.peerUlid);
      assert.equal(isShimmed(ctx), false);
      assert.equal(ctx.pathMtu, undefined);
      assert.deepEqual(r.mtu.calls, [`${A2} ${B2}`], 'no lookup for the ULID pair');
    });

    it('moveTo the ULID pair by its addresses is returnToUlids', async () => {
      const r = rig();
      const ctx = await r.control.install(spec({ locatorPair: { local: A2, peer: B2 } }));
      await r.control.moveTo(1, '2001:DB8:A1:0::A', B1);
      assert.equal(isShimmed(ctx), false);
      assert.deepEqual(r.rules.calls, [`add ${A1} ${B1}`, `remove ${A1} ${B1}`]);
    });

    it('returnToUlids on a context already on its ULIDs: no rule change', async () => {
      const r = rig();
      const ctx = await r.control.install(spec());
      await r.control.returnToUlids(1);
      assert.deepEqual(r.rules.calls, []);
      assert.equal(isShimmed(ctx), false);
    });

    it('a failing addShimmedPair: the context stays on its previous pair and path MTU, the error propagates', async () => {
      const r = rig();
      const ctx = await r.control.install(spec());
      const before: LocatorPair = ctx.current;
      const boom = new Error('ip6tables failed');
      r.rules.failAdd = boom;
      await assert.rejects(r.control.moveTo(1, A2, B2), (e) => e === boom);
      assert.equal(ctx.current, before);
      assert.equal(isShimmed(ctx), false);
      assert.equal(ctx.pathMtu, undefined);
      assert.equal(r.table.byId(1), ctx, 'still in the table');
      assert.equal(r.log.infos.filter((i) => i.message === 'context moved').length, 0);
      // The queue is not stuck, and the next attempt adds the rule.
      r.rules.failAdd = undefined;
      await r.control.moveTo(1, A2, B2);
      assert.deepEqual(r.rules.calls, [`add ${A1} ${B1}`, `add ${A1} ${B1}`]);
      assert.equal(isShimmed(ctx), true);
    });

    it('a failing removeShimmedPair: the context stays shimmed on its pair, the error propagates', async () => {
      const r = rig();
      const ctx = await r.control.install(spec({ locatorPair: { local: A2, peer: B2 } }));
      const boom = new Error('ip6tables -D failed');
      r.rules.failRemove = boom;
      await assert.rejects(r.control.returnToUlids(1), (e) => e === boom);
      assert.equal(pairOf(ctx), `${A2} ${B2}`);
      assert.equal(ctx.pathMtu, 1400);
    });

    it('a failing path-MTU lookup on moveTo: a warning, pathMtu undefined, the move and the rule happen', async () => {
      const r = rig();
      const ctx = await r.control.install(spec());
      r.mtu.mtus.delete(`${A2} ${B2}`);
      await r.control.moveTo(1, A2, B2);
      assert.equal(pairOf(ctx), `${A2} ${B2}`);
      assert.equal(ctx.pathMtu, undefined);
      assert.deepEqual(r.rules.calls, [`add ${A1} ${B1}`]);
      assert.equal(r.log.warns.length, 1);
      assert.deepEqual(r.log.warns[0]?.meta, { local: A2, peer: B2, error: `no route to ${B2}` });
      // A known MTU afterwards replaces the stale one; an unknown one clears it.
      await r.control.moveTo(1, A3, B3);
      assert.equal(ctx.pathMtu, 1300);
      r.mtu.mtus.set(`${A2} ${B2}`, new Error('again'));
      await r.control.moveTo(1, A2, B2);
      assert.equal(ctx.pathMtu, undefined);
    });

    it('errors: unknown id, a local or peer locator not in the set, an unverified peer locator; nothing changes', async () => {
      const r = rig();
      const ctx = await r.control.install(spec({ locatorPair: { local: A2, peer: B2 } }));
      await assert.rejects(r.control.moveTo(99, A2, B2), isContextError(/no context 99/));
      await assert.rejects(r.control.moveTo(1, '2001:db8:a9::a', B2), isContextError(/local locator 2001:db8:a9::a is not one of context 1's local locators/));
      await assert.rejects(r.control.moveTo(1, A2, '2001:db8:b9::b'), isContextError(/peer locator 2001:db8:b9::b is not one of context 1's verified peer locators/));
      await assert.rejects(r.control.moveTo(1, 'not-an-address', B2), isContextError(/local locator: 'not-an-address'/));
      const b3 = ctx.peerLocators[2];
      assert.ok(b3);
      b3.verification = 'unverified';
      await assert.rejects(r.control.moveTo(1, A3, B3), isContextError(/peer locator 2001:db8:b3::b of context 1 is not verified/));
      assert.equal(pairOf(ctx), `${A2} ${B2}`);
      assert.equal(ctx.pathMtu, 1400);
      assert.deepEqual(r.rules.calls, [`add ${A1} ${B1}`]);
      assert.deepEqual(r.mtu.calls, [`${A2} ${B2}`], 'no lookup for a refused pair');
      await assert.rejects(async () => r.control.returnToUlids(99), isContextError(/no context 99/));
    });

    it('returnToUlids of an unknown id returns a rejected promise (it does not throw synchronously)', async () => {
      const r = rig();
      let p: Promise<ShimContext> | undefined;
      assert.doesNotThrow(() => {
        p = r.control.returnToUlids(99);
      }, 'returnToUlids threw synchronously instead of rejecting');
      await assert.rejects(p ?? Promise.resolve(), isContextError(/no context 99/));
    });

    it('returnToUlids works when the ULIDs were created unverified (the ULID pair is always allowed)', async () => {
      const r = rig();
      // A negotiated context whose locators are not verified yet; one is verified later.
      const ctx = await r.control.install(spec({ origin: 'negotiated', verification: 'unverified' }));
      const b2 = ctx.peerLocators[1];
      assert.ok(b2);
      b2.verification = 'hba';
      await r.control.moveTo(1, A2, B2);
      assert.equal(isShimmed(ctx), true);
      await r.control.returnToUlids(1);
      assert.equal(isShimmed(ctx), false);
      assert.deepEqual(r.rules.calls, [`add ${A1} ${B1}`, `remove ${A1} ${B1}`]);
    });
  });

  describe('remove', () => {
    it('a shimmed context: its rule and its table entry go', async () => {
      const r = rig();
      const ctx = await r.control.install(spec({ locatorPair: { local: A2, peer: B2 } }));
      let inTable: boolean | undefined;
      r.rules.onRemove = () => {
        inTable = r.table.byId(1) !== undefined;
      };
      assert.equal(await r.control.remove(1), ctx);
      assert.deepEqual(r.rules.calls, [`add ${A1} ${B1}`, `remove ${A1} ${B1}`]);
      assert.equal(inTable, true, 'the rule goes first');
      assert.equal(r.table.size, 0);
      assert.equal(r.table.byLocalTag(0x1001), undefined);
      assert.equal(r.log.infos.at(-1)?.message, 'context removed');
    });

    it('a context on its ULIDs: the table entry only', async () => {
      const r = rig();
      await r.control.install(spec());
      await r.control.remove(1);
      assert.deepEqual(r.rules.calls, []);
      assert.equal(r.table.size, 0);
    });

    it('a failing removeShimmedPair keeps the context in the table; an unknown id is a ContextError', async () => {
      const r = rig();
      await r.control.install(spec({ locatorPair: { local: A2, peer: B2 } }));
      r.rules.failRemove = new Error('nope');
      await assert.rejects(r.control.remove(1), /nope/);
      assert.equal(r.table.size, 1);
      await assert.rejects(r.control.remove(42), isContextError(/no context 42/));
    });
  });

  describe('serialisation', () => {
    it('two moveTo started together: one runs after the other, and the rule is added once', async () => {
      const r = rig();
      const ctx = await r.control.install(spec());
      const gate = new Gate();
      r.mtu.gate = gate;
      const first = r.control.moveTo(1, A2, B2);
      const second = r.control.moveTo(1, A3, B3);
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(r.events, [`mtu ${A2} ${B2}`], 'the second waits for the first');
      gate.open();
      await Promise.all([first, second]);
      assert.deepEqual(r.rules.calls, [`add ${A1} ${B1}`]);
      assert.deepEqual(r.events, [`mtu ${A2} ${B2}`, `add ${A1} ${B1}`, 'add done', `mtu ${A3} ${B3}`]);
      assert.equal(pairOf(ctx), `${A3} ${B3}`);
      assert.equal(ctx.pathMtu, 1300);
    });

    it('moveTo then returnToUlids started together: add, then remove, ending on the ULIDs', async () => {
      const r = rig();
      const ctx = await r.control.install(spec());
      const gate = new Gate();
      r.rules.gate = gate;
      const a = r.control.moveTo(1, A2, B2);
      const b = r.control.returnToUlids(1);
      const c = r.control.remove(1);
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(r.rules.calls, [`add ${A1} ${B1}`]);
      gate.open();
      await Promise.all([a, b, c]);
      assert.deepEqual(r.events, [`mtu ${A2} ${B2}`, `add ${A1} ${B1}`, 'add done', `remove ${A1} ${B1}`, 'remove done']);
      assert.equal(isShimmed(ctx), false);
      assert.equal(r.table.size, 0);
    });

    it('a failed operation does not stop the ones queued behind it', async () => {
      const r = rig();
      await r.control.install(spec());
      r.rules.failAdd = new Error('first add fails');
      const gate = new Gate();
      r.rules.gate = gate;
      const failing = r.control.moveTo(1, A2, B2);
      const bad = r.control.moveTo(7, A2, B2);
      const next = r.control.install(spec({ id: 2, localContextTag: 0x3003, peerUlid: '2001:db8:c1::c', peerLocators: undefined }));
      const failed = assert.rejects(failing, /first add fails/);
      const unknown = assert.rejects(bad, isContextError(/no context 7/));
      gate.open();
      await failed;
      r.rules.failAdd = undefined;
      await unknown;
      assert.equal((await next).id, 2);
      assert.equal(isShimmed(r.table.byId(1) as ShimContext), false);
    });
  });
});
