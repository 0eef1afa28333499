/**
 * The conntrack heuristic (shim6d/heuristic): when a ULID pair deserves a context. Pure: the
 * clock and the daemon's predicates are fakes.
 */
import { strict as assert } from 'node:assert';
import { excludedAddressClass } from '../protocol/address';
import { ContextHeuristic, type ContextHeuristicOptions, type FlowObservation } from '../shim6d/heuristic';

const LOCAL = '2001:db8:a1::a';
const LOCAL_2 = '2001:db8:a2::a';
const PEER = '2001:db8:b1::b';
const PEER_2 = '2001:db8:b2::b';
const T0 = 1_800_000_000_000;

interface Fixture {
  h: ContextHeuristic;
  holdDown: Set<string>;
  contexts: Set<string>;
  locals: Set<string>;
}

function fixture(over: Partial<ContextHeuristicOptions> = {}): Fixture {
  const holdDown = new Set<string>();
  const contexts = new Set<string>();
  const locals = new Set([LOCAL, LOCAL_2]);
  const h = new ContextHeuristic({
    holdDownCheck: (peer) => holdDown.has(peer),
    hasContext: (local, peer) => contexts.has(`${local} ${peer}`),
    isLocal: (a) => locals.has(a),
    clock: () => {
      throw new Error('tests pass now explicitly');
    },
    ...over,
  });
  return { h, holdDown, contexts, locals };
}

/** One report of flow `flow` (cumulative packets) from LOCAL to PEER unless said otherwise. */
function obs(packets: number, over: Partial<FlowObservation> = {}): FlowObservation {
  return { source: LOCAL, destination: PEER, packets, flow: 'f1', ...over };
}

describe('ContextHeuristic', () => {
  describe('options', () => {
    it('has the documented defaults', () => {
      const { h } = fixture();
      assert.deepEqual(
        [h.packetThreshold, h.activeSeconds, h.activityGapSeconds, h.idleSeconds, h.maxPairs, h.maxFlowsPerPair],
        [50, 10, 5, 600, 65536, 1024],
      );
    });

    it('refuses negative, non-finite and (where it matters) zero values', () => {
      for (const bad of [{ packetThreshold: -1 }, { activeSeconds: Number.NaN }, { idleSeconds: 0 }, { maxPairs: 0 }, { activityGapSeconds: Infinity }, { maxFlowsPerPair: -3 }]) {
        assert.throws(() => fixture(bad), RangeError, JSON.stringify(bad));
      }
    });

    it('uses the injected clock when no time is passed', () => {
      let now = T0;
      const { h } = fixture({ clock: () => now, activeSeconds: 0 });
      assert.deepEqual(h.observe(obs(10)), []);
      now += 1000;
      assert.equal(h.observe(obs(50)).length, 1);
      assert.equal(h.pair({ local: LOCAL, peer: PEER })?.lastSeen, T0 + 1000);
    });
  });

  describe('the packet threshold', () => {
    it('reports a pair when its packets reach the threshold, not before', () => {
      const { h } = fixture({ activeSeconds: 0 });
      assert.deepEqual(h.observe(obs(1), T0), []);
      assert.deepEqual(h.observe(obs(49), T0 + 1000), []);
      assert.deepEqual(h.observe(obs(50), T0 + 2000), [{ local: LOCAL, peer: PEER, reason: 'packets', packets: 50, activeSeconds: 2 }]);
    });

    it('honours a configured threshold', () => {
      const { h } = fixture({ packetThreshold: 5, activeSeconds: 0 });
      assert.deepEqual(h.observe(obs(4), T0), []);
      assert.equal(h.observe(obs(5), T0 + 1)[0]?.reason, 'packets');
    });

    it('reports at once a first report already past the threshold', () => {
      const { h } = fixture({ activeSeconds: 0 });
      assert.equal(h.observe(obs(500), T0)[0]?.packets, 500);
    });

    it('sums many flows of one pair', () => {
      const { h } = fixture({ activeSeconds: 0 });
      for (let i = 0; i < 9; i++) assert.deepEqual(h.observe(obs(5, { flow: `f${i}` }), T0 + i), []);
      assert.equal(h.pair({ local: LOCAL, peer: PEER }, T0 + 9)?.packets, 45);
      assert.equal(h.pair({ local: LOCAL, peer: PEER }, T0 + 9)?.flows, 9);
      assert.deepEqual(h.observe(obs(5, { flow: 'f9' }), T0 + 9).map((c) => c.packets), [50]);
    });

    it('counts a repeated report of one flow by its growth only (counters are cumulative)', () => {
      const { h } = fixture({ activeSeconds: 0 });
      for (let t = 0; t < 10; t++) h.observe(obs(30), T0 + t * 1000);
      assert.equal(h.pair({ local: LOCAL, peer: PEER }, T0 + 10_000)?.packets, 30);
    });

    it('keeps the count of a flow that ended: removal subtracts nothing', () => {
      const { h } = fixture({ activeSeconds: 0 });
      h.observe(obs(30, { flow: 'a' }), T0);
      h.observe(obs(31, { flow: 'a', kind: 'destroy' }), T0 + 100);
      assert.deepEqual(h.pair({ local: LOCAL, peer: PEER }, T0 + 100), {
        local: LOCAL, peer: PEER, packets: 31, flows: 0, firstSeen: T0, lastSeen: T0 + 100, activeSeconds: 0.1, reported: false,
      });
      assert.deepEqual(h.observe(obs(19, { flow: 'b' }), T0 + 200).map((c) => c.packets), [50]);
    });

    it('treats a counter that goes back as a new flow under a reused identity', () => {
      const { h } = fixture({ activeSeconds: 0 });
      h.observe(obs(40, { flow: 'x' }), T0);
      assert.deepEqual(h.observe(obs(3, { flow: 'x' }), T0 + 1), []);
      assert.equal(h.pair({ local: LOCAL, peer: PEER }, T0 + 1)?.packets, 43);
      assert.equal(h.observe(obs(10, { flow: 'x' }), T0 + 2)[0]?.packets, 50);
    });

    it('does not read the packets of a report without counters (an event)', () => {
      const { h } = fixture({ activeSeconds: 0 });
      h.observe(obs(20), T0);
      assert.deepEqual(h.observe(obs(0, { counted: false, kind: 'update' }), T0 + 1), []);
      assert.equal(h.pair({ local: LOCAL, peer: PEER }, T0 + 1)?.packets, 20);
      assert.deepEqual(h.observe(obs(999, { counted: false, kind: 'update' }), T0 + 2), []);
      assert.equal(h.observe(obs(50), T0 + 3).length, 1);
    });

    it('keeps a flow that ends without counters at what it had', () => {
      const { h } = fixture({ activeSeconds: 0 });
      h.observe(obs(20, { flow: 'a' }), T0);
      h.observe(obs(0, { flow: 'a', counted: false, kind: 'destroy' }), T0 + 1);
      assert.equal(h.pair({ local: LOCAL, peer: PEER }, T0 + 1)?.packets, 20);
    });

    it('identifies a flow by source, destination and protocol when the report names none', () => {
      const { h } = fixture({ activeSeconds: 0 });
      h.observe({ source: LOCAL, destination: PEER, packets: 20, protocol: 17 }, T0);
      h.observe({ source: LOCAL, destination: PEER, packets: 25, protocol: 17 }, T0 + 1);
      h.observe({ source: LOCAL, destination: PEER, packets: 10, protocol: 6 }, T0 + 2);
      assert.equal(h.pair({ local: LOCAL, peer: PEER }, T0 + 2)?.packets, 35);
    });

    it('can be disabled (0), leaving the time criterion', () => {
      const { h } = fixture({ packetThreshold: 0, activeSeconds: 10 });
      assert.deepEqual(h.observe(obs(1_000_000), T0), []);
      assert.deepEqual(h.observe(obs(1_000_001), T0 + 5000), []);
      assert.equal(h.observe(obs(1_000_002), T0 + 10_000)[0]?.reason, 'active');
    });
  });

  describe('the time criterion', () => {
    /** Reports flow f1 growing by one packet every `stepMs` from `from` to `to` (inclusive). */
    function feed(h: ContextHeuristic, from: number, to: number, stepMs: number, startPackets = 1) {
      const out = [];
      let p = startPackets;
      for (let t = from; t <= to; t += stepMs) out.push(...h.observe(obs(p++), t).map((c) => ({ ...c, t })));
      return out;
    }

    it('reports a pair active for activeSeconds (default 10 s) with few packets', () => {
      const { h } = fixture();
      const got = feed(h, T0, T0 + 20_000, 1000);
      assert.deepEqual(got, [{ local: LOCAL, peer: PEER, reason: 'active', packets: 11, activeSeconds: 10, t: T0 + 10_000 }]);
    });

    it('honours a configured duration', () => {
      const { h } = fixture({ activeSeconds: 3 });
      assert.equal(feed(h, T0, T0 + 10_000, 500)[0]?.t, T0 + 3000);
    });

    it('is off with activeSeconds 0', () => {
      const { h } = fixture({ activeSeconds: 0 });
      assert.deepEqual(feed(h, T0, T0 + 45_000, 1000), []);
    });

    it('is not met by a flow that only exists: an idle connection is not activity', () => {
      const { h } = fixture();
      h.observe(obs(3), T0);
      for (let t = 1; t <= 60; t++) assert.deepEqual(h.observe(obs(3), T0 + t * 1000), []);
      assert.equal(h.pair({ local: LOCAL, peer: PEER }, T0 + 60_000)?.activeSeconds, 0);
    });

    it('starts the run again after a pause longer than activityGapSeconds', () => {
      const { h } = fixture({ activityGapSeconds: 5, packetThreshold: 0 });
      assert.deepEqual(feed(h, T0, T0 + 8000, 1000), []); // 8 s of activity, then 6 s of nothing
      assert.equal(h.pair({ local: LOCAL, peer: PEER }, T0 + 13_999)?.activeSeconds, 0);
      const got = feed(h, T0 + 14_000, T0 + 30_000, 1000, 100);
      assert.deepEqual(got.map((c) => [c.t - T0, c.activeSeconds]), [[24_000, 10]]);
    });

    it('bridges pauses no longer than activityGapSeconds', () => {
      const { h } = fixture({ activityGapSeconds: 5, packetThreshold: 0 });
      let p = 1;
      const got = [];
      for (let t = 0; t <= 12_000; t += 4000) got.push(...h.observe(obs(p++), T0 + t));
      assert.deepEqual(got.map((c) => [c.reason, c.activeSeconds]), [['active', 12]]);
    });

    it('counts a new flow as activity, and a flow known to have begun earlier (firstSeenAt) from then', () => {
      const { h } = fixture({ packetThreshold: 0 });
      assert.deepEqual(h.observe(obs(0, { counted: false, kind: 'new', flow: 'a' }), T0), []);
      assert.equal(h.pair({ local: LOCAL, peer: PEER }, T0)?.activeSeconds, 0);
      const { h: h2 } = fixture({ packetThreshold: 0 });
      assert.deepEqual(h2.observe(obs(4, { firstSeenAt: T0 - 12_000 }), T0).map((c) => [c.reason, c.activeSeconds]), [['active', 12]]);
      const { h: h3 } = fixture({ packetThreshold: 0 });
      assert.deepEqual(h3.observe(obs(4, { firstSeenAt: T0 - 4000 }), T0), []);
      assert.equal(h3.pair({ local: LOCAL, peer: PEER }, T0)?.activeSeconds, 4);
    });

    it('ignores a firstSeenAt in the future', () => {
      const { h } = fixture({ packetThreshold: 0 });
      h.observe(obs(4, { firstSeenAt: T0 + 60_000 }), T0);
      assert.equal(h.pair({ local: LOCAL, peer: PEER }, T0)?.activeSeconds, 0);
    });

    it('reports packets as the reason when both criteria are met at once', () => {
      const { h } = fixture();
      assert.equal(h.observe(obs(80, { firstSeenAt: T0 - 30_000 }), T0)[0]?.reason, 'packets');
    });
  });

  describe('addresses that never get a context', () => {
    const cases: Array<[string, string, ReturnType<typeof excludedAddressClass>]> = [
      ['link-local', 'fe80::1', 'link-local'],
      ['link-local (top of fe80::/10)', 'febf:ffff::1', 'link-local'],
      ['loopback', '::1', 'loopback'],
      ['multicast', 'ff02::1', 'multicast'],
      ['multicast (global scope)', 'ff0e::101', 'multicast'],
      ['unspecified', '::', 'unspecified'],
      ['IPv4-mapped', '::ffff:192.0.2.1', 'ipv4-mapped'],
    ];

    for (const [what, address, cls] of cases) {
      it(`classifies ${what} (${address}) and never reports it, as peer or as local address`, () => {
        assert.equal(excludedAddressClass(address), cls);
        const { h, locals } = fixture({ packetThreshold: 1, activeSeconds: 0 });
        locals.add(address);
        assert.deepEqual(h.observe({ source: LOCAL, destination: address, packets: 1000, flow: 'a' }, T0), []);
        assert.deepEqual(h.observe({ source: address, destination: LOCAL, packets: 1000, flow: 'b' }, T0), []);
        assert.deepEqual(h.observe({ source: address, destination: PEER, packets: 1000, flow: 'c' }, T0), []);
        assert.deepEqual(h.observe({ source: PEER, destination: address, packets: 1000, flow: 'd' }, T0), []);
        assert.equal(h.stats().excluded[cls as NonNullable<typeof cls>], 4);
        assert.equal(h.stats().pairs, 0);
        assert.deepEqual(h.check(T0 + 1), []);
      });
    }

    it('lets ordinary unicast through: global, ULA, documentation, fec0::, and ::/96 neighbours of the excluded ones', () => {
      for (const a of ['2001:db8::1', 'fd00::1', 'fec0::1', 'fe7f::1', 'fec0::', '::2', '::ffff:0:0:1', '::fffe:c000:201', '64:ff9b::c000:201', 'fe00::1']) {
        assert.equal(excludedAddressClass(a), undefined, a);
      }
    });

    it('rejects text that is not an address, and ignores (counts) observations carrying one', () => {
      assert.throws(() => excludedAddressClass('nonsense'), RangeError);
      const { h } = fixture({ packetThreshold: 1 });
      assert.deepEqual(h.observe({ source: 'nonsense', destination: PEER, packets: 100 }, T0), []);
      assert.deepEqual(h.observe({ source: LOCAL, destination: '1.2.3.4', packets: 100 }, T0), []);
      assert.equal(h.stats().invalid, 2);
    });
  });

  describe('orientation', () => {
    it('takes the local address from isLocal, whichever side opened the flow, and sums both directions', () => {
      const { h } = fixture({ activeSeconds: 0 });
      h.observe({ source: PEER, destination: LOCAL, packets: 30, flow: 'in' }, T0);
      const got = h.observe({ source: LOCAL, destination: PEER, packets: 20, flow: 'out' }, T0 + 1);
      assert.deepEqual(got.map((c) => [c.local, c.peer, c.packets]), [[LOCAL, PEER, 50]]);
    });

    it('keeps different local addresses and different peers apart', () => {
      const { h } = fixture({ activeSeconds: 0 });
      h.observe({ source: LOCAL, destination: PEER, packets: 30, flow: '1' }, T0);
      h.observe({ source: LOCAL_2, destination: PEER, packets: 30, flow: '2' }, T0);
      h.observe({ source: LOCAL, destination: PEER_2, packets: 30, flow: '3' }, T0);
      assert.deepEqual(h.pairs(T0).map((p) => [p.local, p.peer, p.packets]), [[LOCAL, PEER, 30], [LOCAL_2, PEER, 30], [LOCAL, PEER_2, 30]]);
    });

    it('ignores flows where neither address is local, or both are', () => {
      const { h } = fixture({ packetThreshold: 1, activeSeconds: 0 });
      assert.deepEqual(h.observe({ source: PEER, destination: PEER_2, packets: 100 }, T0), []);
      assert.deepEqual(h.observe({ source: LOCAL, destination: LOCAL_2, packets: 100 }, T0), []);
      assert.deepEqual([h.stats().notLocal, h.stats().bothLocal, h.stats().pairs], [1, 1, 0]);
    });

    it('canonicalises address spellings (RFC 5952) before isLocal and in what it reports', () => {
      const { h } = fixture({ activeSeconds: 0 });
      h.observe({ source: '2001:DB8:A1:0:0:0:0:A', destination: '2001:0db8:b1::000b', packets: 25, flow: 'x' }, T0);
      const got = h.observe({ source: '2001:db8:b1::b', destination: '2001:db8:a1::a', packets: 25, flow: 'y' }, T0 + 1);
      assert.deepEqual(got.map((c) => [c.local, c.peer, c.packets]), [[LOCAL, PEER, 50]]);
    });
  });

  describe('hold-down and existing contexts', () => {
    it('never reports a pair whose peer is in hold-down; reports it once the hold-down is over (check or next observation)', () => {
      const { h, holdDown } = fixture({ activeSeconds: 0 });
      holdDown.add(PEER);
      assert.deepEqual(h.observe(obs(60), T0), []);
      assert.deepEqual(h.check(T0 + 1000), []);
      assert.ok(h.stats().suppressedHoldDown >= 2);
      holdDown.delete(PEER);
      assert.deepEqual(h.check(T0 + 2000).map((c) => [c.peer, c.reason, c.packets]), [[PEER, 'packets', 60]]);
      assert.deepEqual(h.check(T0 + 3000), []);
      assert.deepEqual(h.observe(obs(70), T0 + 4000), []);

      const { h: h2, holdDown: hd2 } = fixture({ activeSeconds: 0 });
      hd2.add(PEER);
      h2.observe(obs(60), T0);
      hd2.clear();
      assert.equal(h2.observe(obs(61), T0 + 1).length, 1);
    });

    it('holds down by peer only: the same local address reaches another peer', () => {
      const { h, holdDown } = fixture({ activeSeconds: 0 });
      holdDown.add(PEER);
      assert.deepEqual(h.observe(obs(60), T0), []);
      assert.equal(h.observe({ source: LOCAL, destination: PEER_2, packets: 60 }, T0).length, 1);
    });

    it('never reports a pair that already has a context; reports it if the context goes away', () => {
      const { h, contexts } = fixture({ activeSeconds: 0 });
      contexts.add(`${LOCAL} ${PEER}`);
      assert.deepEqual(h.observe(obs(60), T0), []);
      assert.deepEqual(h.observe(obs(90), T0 + 1), []);
      assert.equal(h.stats().suppressedHasContext, 2);
      contexts.clear();
      assert.equal(h.check(T0 + 2).length, 1);
    });

    it('asks the predicates only about qualified pairs, with canonical addresses', () => {
      const asked: string[] = [];
      const { h } = fixture({
        activeSeconds: 0,
        holdDownCheck: (p) => (asked.push(`hold ${p}`), false),
        hasContext: (l, p) => (asked.push(`ctx ${l} ${p}`), false),
      });
      h.observe(obs(10), T0);
      assert.deepEqual(asked, []);
      h.observe({ source: '2001:db8:b1:0::b', destination: LOCAL, packets: 40, flow: 'z' }, T0 + 1);
      assert.deepEqual(asked, [`ctx ${LOCAL} ${PEER}`, `hold ${PEER}`]);
    });
  });

  describe('reporting once, and forget', () => {
    it('reports a pair once, however much more traffic follows', () => {
      const { h } = fixture();
      const got = [];
      for (let t = 0; t < 30; t++) got.push(...h.observe(obs(20 * (t + 1)), T0 + t * 1000));
      got.push(...h.check(T0 + 31_000));
      assert.equal(got.length, 1);
      assert.equal(h.stats().reported, 1);
      assert.equal(h.pair({ local: LOCAL, peer: PEER }, T0 + 31_000)?.reported, true);
    });

    it('after forget(pair), counts again from zero: only new packets count, then reports again', () => {
      const { h } = fixture({ activeSeconds: 0 });
      const [c] = h.observe(obs(60), T0);
      assert.ok(c);
      assert.equal(h.forget(c), true);
      assert.equal(h.pair(c, T0)?.packets, 0);
      assert.equal(h.pair(c, T0)?.reported, false);
      assert.deepEqual(h.observe(obs(100), T0 + 1000), []); // 40 new packets
      assert.deepEqual(h.observe(obs(110), T0 + 2000).map((x) => x.packets), [50]);
    });

    it('forget() of an unknown pair, or a spelling variant of a known one', () => {
      const { h } = fixture({ activeSeconds: 0 });
      assert.equal(h.forget({ local: LOCAL, peer: PEER }), false);
      assert.equal(h.forget({ local: 'bad', peer: PEER }), false);
      h.observe(obs(60), T0);
      assert.equal(h.forget({ local: '2001:db8:a1:0::a', peer: '2001:DB8:B1::B' }), true);
      assert.equal(h.stats().forgotten, 1);
    });

    it('forget() also clears a suppressed qualification (the pair must qualify anew)', () => {
      const { h, holdDown } = fixture({ activeSeconds: 0 });
      holdDown.add(PEER);
      h.observe(obs(60), T0);
      h.forget({ local: LOCAL, peer: PEER });
      holdDown.clear();
      assert.deepEqual(h.check(T0 + 1), []);
    });
  });

  describe('memory', () => {
    it('forgets pairs not observed for idleSeconds (default 600 s), and starts them afresh', () => {
      const { h } = fixture({ activeSeconds: 0 });
      h.observe(obs(40), T0);
      h.observe({ source: LOCAL, destination: PEER_2, packets: 1 }, T0 + 300_000);
      assert.equal(h.sweep(T0 + 599_999), 0);
      assert.equal(h.sweep(T0 + 600_000), 1);
      assert.equal(h.pair({ local: LOCAL, peer: PEER }, T0 + 600_000), undefined);
      assert.equal(h.stats().pairs, 1);
      assert.equal(h.stats().forgottenIdle, 1);
      // A later flow of the pair starts from nothing.
      assert.deepEqual(h.observe(obs(15, { flow: 'new' }), T0 + 700_000), []);
      assert.equal(h.pair({ local: LOCAL, peer: PEER }, T0 + 700_000)?.packets, 15);
    });

    it('honours a configured idle time, and sweeps as a side effect of observe and check', () => {
      const { h } = fixture({ idleSeconds: 30 });
      h.observe(obs(10), T0);
      h.observe({ source: LOCAL, destination: PEER_2, packets: 1 }, T0 + 31_000);
      assert.equal(h.stats().pairs, 1);
      h.check(T0 + 62_000);
      assert.equal(h.stats().pairs, 0);
    });

    it('lastSeen(local, peer) is the snapshot lastSeen, by canonical text, and forgets with the pair', () => {
      const { h } = fixture({ idleSeconds: 30, activeSeconds: 0 });
      assert.equal(h.lastSeen(LOCAL, PEER), undefined);
      h.observe(obs(1), T0);
      h.observe(obs(2, { source: PEER, destination: LOCAL }), T0 + 5_000);
      assert.equal(h.lastSeen(LOCAL, PEER), T0 + 5_000);
      assert.equal(h.lastSeen(LOCAL, PEER), h.pair({ local: LOCAL, peer: PEER }, T0 + 5_000)?.lastSeen);
      assert.equal(h.lastSeen(PEER, LOCAL), undefined, 'the pair is (local, peer)');
      assert.equal(h.lastSeen(LOCAL, PEER_2), undefined);
      h.sweep(T0 + 35_000);
      assert.equal(h.lastSeen(LOCAL, PEER), undefined);
    });

    it('keeps a pair whose flows are still reported, however idle its traffic', () => {
      const { h } = fixture({ idleSeconds: 30 });
      for (let t = 0; t <= 120; t += 10) h.observe(obs(10), T0 + t * 1000);
      h.check(T0 + 121_000);
      assert.equal(h.pair({ local: LOCAL, peer: PEER }, T0 + 121_000)?.packets, 10);
    });

    it('retires flows not reported for idleSeconds, keeping their packets', () => {
      const { h } = fixture({ idleSeconds: 30, activeSeconds: 0 });
      h.observe(obs(10, { flow: 'old' }), T0);
      for (let t = 10; t <= 40; t += 10) h.observe(obs(t, { flow: 'live' }), T0 + t * 1000);
      const p = h.pair({ local: LOCAL, peer: PEER }, T0 + 40_000);
      assert.deepEqual([p?.flows, p?.packets], [1, 10 + 40]); // 'old' retired at T0 + 30 s
    });

    it('keeps at most maxPairs pairs, dropping the least recently observed', () => {
      const { h } = fixture({ maxPairs: 3, packetThreshold: 0, activeSeconds: 0 });
      const peers = ['2001:db8:b::1', '2001:db8:b::2', '2001:db8:b::3', '2001:db8:b::4'];
      h.observe({ source: LOCAL, destination: peers[0] as string, packets: 1 }, T0);
      h.observe({ source: LOCAL, destination: peers[1] as string, packets: 1 }, T0 + 1);
      h.observe({ source: LOCAL, destination: peers[2] as string, packets: 1 }, T0 + 2);
      h.observe({ source: LOCAL, destination: peers[0] as string, packets: 2 }, T0 + 3); // most recent now
      h.observe({ source: LOCAL, destination: peers[3] as string, packets: 1 }, T0 + 4);
      assert.deepEqual(h.pairs(T0 + 4).map((p) => p.peer), [peers[2], peers[0], peers[3]]);
      assert.equal(h.stats().evicted, 1);
    });

    it('tracks at most maxFlowsPerPair flows per pair, retiring the oldest with its count', () => {
      const { h } = fixture({ maxFlowsPerPair: 4, activeSeconds: 0 });
      for (let i = 0; i < 10; i++) h.observe(obs(4, { flow: `f${i}` }), T0 + i);
      const p = h.pair({ local: LOCAL, peer: PEER }, T0 + 10);
      assert.deepEqual([p?.flows, p?.packets], [4, 40]);
      assert.equal(h.observe(obs(14, { flow: 'f9' }), T0 + 11)[0]?.packets, 50);
    });
  });

  describe('conntrack-shaped input', () => {
    it('takes ConntrackEvents and poll samples as they come: new (no counters), samples, destroy', () => {
      const { h } = fixture();
      const base = { source: PEER, destination: LOCAL, protocol: 17, sourcePort: 5000, destinationPort: 53, id: 7, flow: '17 [..]:5000 [..]:53 #7' };
      assert.deepEqual(h.observe({ ...base, kind: 'new', packets: 0, counted: false }, T0), []);
      assert.deepEqual(h.observe({ ...base, kind: 'sample', packets: 2, counted: true, octets: 200, firstSeenAt: T0 - 10 } as FlowObservation, T0 + 1000), []);
      assert.deepEqual(h.observe({ ...base, kind: 'destroy', packets: 2, counted: true } as FlowObservation, T0 + 30_000), []);
      const p = h.pair({ local: LOCAL, peer: PEER }, T0 + 30_000);
      assert.deepEqual([p?.packets, p?.flows], [2, 0]);
    });
  });
});
