/**
 * The REAP machine (reapd/reap-machine.ts) and its timer arithmetic (reapd/reap-timers.ts),
 * driven through a small simulated network: two hosts A and B, each with a ReapMachine, a
 * fake clock, a fake link that delivers every message after a fixed latency unless a drop
 * rule says otherwise (any direction of any locator pair can be cut), payload traffic whose
 * counters reach the machines through activity() once a second, and a stand-in for shim6d
 * that moves a context when pairChosen() asks and upserts it again. Every message crosses the
 * wire codec (encode, decode) on its way.
 *
 * The locators follow the testbed (README): a packet from a_i or b_i crosses router R_i, so
 * cutting path 1 both ways drops everything sent from a1 or b1.
 */
import { strict as assert } from 'node:assert';
import { ReapState } from '../protocol/constants';
import { decodeControlMessage, encodeControlMessage, type KeepaliveMessage, type ProbeMessage } from '../protocol/control-message';
import { DEFAULT_REAP_TIMERS, ReapMachine, type ReapContext, type ReapEvent, type ReapStatus, type ReapTimers } from '../reapd/reap-machine';
import { jitteredMs, keepaliveIntervalFor, nominalProbeInterval, PROBE_JITTER, reapTimers } from '../reapd/reap-timers';
import { seededRandom32 } from './support/shim6-network';

const A1 = '2001:db8:a1::a';
const A2 = '2001:db8:a2::a';
const B1 = '2001:db8:b1::b';
const B2 = '2001:db8:b2::b';
/** Nobody's address. */
const X = '2001:db8:ee::9';
const TAG_A = 0x1234_5678_9a;
const TAG_B = 0x2345_6789_ab;
const T0 = 1_000_000;
const LATENCY = 20;
const POLL = 1000;

type Reap = KeepaliveMessage | ProbeMessage;

interface WireRecord {
  at: number;
  host: 'A' | 'B';
  from: string;
  to: string;
  message: Reap;
  dropped: boolean;
}

interface Scheduled {
  at: number;
  seq: number;
  run: () => void;
}

class Host {
  readonly machine: ReapMachine;
  ctx: ReapContext;
  peer!: Host;
  /** Sources send() refuses (no such address, no route). */
  readonly unusable = new Set<string>();
  readonly events: Array<{ at: number; event: ReapEvent; detail: Record<string, unknown> }> = [];
  readonly chosen: Array<{ at: number; id: number; pair: { local: string; peer: string } }> = [];
  readonly statuses: ReapStatus[] = [];
  sending = false;
  payloadSent = 0;
  payloadReceived = 0;

  constructor(
    readonly name: 'A' | 'B',
    readonly sim: Sim,
    ctx: ReapContext,
    seed: number,
    timers: Partial<ReapTimers>,
    random?: () => number,
  ) {
    this.ctx = ctx;
    const random32 = seededRandom32(seed);
    this.machine = new ReapMachine(
      {
        send: (message, from, to) => this.send(message, from, to),
        pairChosen: (id, pair) => {
          this.chosen.push({ at: sim.now(), id, pair });
          // shim6d moves the context a little later and announces it again.
          sim.at(sim.now() + 5, () => {
            this.ctx = { ...this.ctx, current: { ...pair } };
            this.machine.upsert(this.ctx);
          });
        },
        statusChanged: (s) => this.statuses.push(s),
        event: (event, detail) => this.events.push({ at: sim.now(), event, detail }),
      },
      { now: sim.now, random: random ?? (() => random32() / 0x1_0000_0000), random32: seededRandom32(seed + 1), timers },
    );
    this.machine.upsert(ctx);
    this.machine.activity(ctx.id, 0, 0);
  }

  private send(message: Reap, from: string, to: string): boolean {
    if (!this.ctx.localLocators.includes(from) || this.unusable.has(from)) return false;
    const wire = encodeControlMessage(message);
    const decoded = decodeControlMessage(wire, { strictReserved: true });
    assert.ok(decoded.ok, `our ${message.type} does not decode`);
    const copy = decoded.value.message as Reap;
    const dropped = this.sim.drop(from, to);
    this.sim.wire.push({ at: this.sim.now(), host: this.name, from, to, message: copy, dropped });
    if (!dropped && this.peer.ctx.localLocators.includes(to)) this.sim.at(this.sim.now() + LATENCY, () => this.peer.machine.receive(copy, from, to));
    return true;
  }

  count(event: ReapEvent): number {
    return this.events.filter((e) => e.event === event).length;
  }

  status(): ReapStatus {
    const s = this.machine.status(this.ctx.id);
    assert.ok(s);
    return s;
  }
}

interface SimOptions {
  timers?: Partial<ReapTimers>;
  seed?: number;
  a?: Partial<ReapContext>;
  b?: Partial<ReapContext>;
  random?: () => number;
}

class Sim {
  t = T0;
  readonly now = (): number => this.t;
  readonly wire: WireRecord[] = [];
  drop: (from: string, to: string) => boolean = () => false;
  private queue: Scheduled[] = [];
  private seq = 0;
  private nextPoll = T0 + POLL;
  readonly a: Host;
  readonly b: Host;

  constructor(options: SimOptions = {}) {
    const seed = options.seed ?? 7;
    const timers = options.timers ?? {};
    this.a = new Host('A', this, {
      id: 1, localContextTag: TAG_A, peerContextTag: TAG_B, localUlid: A1, peerUlid: B1,
      localLocators: [A1, A2], peerLocators: [B1, B2], current: { local: A1, peer: B1 }, ...options.a,
    }, seed, timers, options.random);
    this.b = new Host('B', this, {
      id: 7, localContextTag: TAG_B, peerContextTag: TAG_A, localUlid: B1, peerUlid: A1,
      localLocators: [B1, B2], peerLocators: [A1, A2], current: { local: B1, peer: A1 }, ...options.b,
    }, seed + 100, timers, options.random);
    this.a.peer = this.b;
    this.b.peer = this.a;
  }

  at(t: number, run: () => void): void {
    this.queue.push({ at: t, seq: this.seq++, run });
    this.queue.sort((x, y) => x.at - y.at || x.seq - y.seq);
  }

  /** Payload: each sending host sends 10 packets a poll on its current pair; then both report their counters. */
  private poll(): void {
    for (const h of [this.a, this.b]) {
      if (!h.sending) continue;
      h.payloadSent += 10;
      const { local, peer } = h.ctx.current;
      if (!this.drop(local, peer)) this.at(this.t + LATENCY, () => { h.peer.payloadReceived += 10; });
    }
    for (const h of [this.a, this.b]) h.machine.activity(h.ctx.id, h.payloadSent, h.payloadReceived);
  }

  advance(ms: number): void {
    const end = this.t + ms;
    for (let guard = 0; ; guard++) {
      if (guard > 200_000) throw new Error('the simulation does not advance: a deadline that tick() does not clear?');
      const candidates = [this.queue[0]?.at, this.a.machine.nextDeadline(), this.b.machine.nextDeadline(), this.nextPoll].filter((x): x is number => x !== undefined);
      const next = Math.min(...candidates);
      if (next > end) break;
      this.t = Math.max(this.t, next);
      while (this.queue.length > 0 && (this.queue[0] as Scheduled).at <= this.t) (this.queue.shift() as Scheduled).run();
      if (this.nextPoll <= this.t) {
        this.poll();
        this.nextPoll += POLL;
      }
      this.a.machine.tick();
      this.b.machine.tick();
    }
    this.t = end;
  }

  probes(host: 'A' | 'B', since = 0): Array<WireRecord & { message: ProbeMessage }> {
    return this.wire.filter((w): w is WireRecord & { message: ProbeMessage } => w.host === host && w.message.type === 'Probe' && w.at >= since);
  }

  keepalives(host: 'A' | 'B'): WireRecord[] {
    return this.wire.filter((w) => w.host === host && w.message.type === 'Keepalive');
  }
}

/** The testbed's path 1 cut both ways: nothing sent from a1 or b1 arrives. */
const path1Cut = (from: string): boolean => from === A1 || from === B1;
const gaps = (ts: number[]): number[] => ts.slice(1).map((t, i) => t - (ts[i] as number));
const pairOf = (w: WireRecord): string => `${w.from}|${w.to}`;

/** A bare machine with recorded effects, for tests that call it directly. */
function bare(timers: Partial<ReapTimers> = {}, refuse: (from: string) => boolean = () => false): {
  m: ReapMachine;
  clock: { t: number };
  sent: Array<{ message: Reap; from: string; to: string }>;
  events: Array<{ event: ReapEvent; detail: Record<string, unknown> }>;
  chosen: Array<{ id: number; pair: { local: string; peer: string } }>;
  statuses: ReapStatus[];
} {
  const clock = { t: T0 };
  const sent: Array<{ message: Reap; from: string; to: string }> = [];
  const events: Array<{ event: ReapEvent; detail: Record<string, unknown> }> = [];
  const chosen: Array<{ id: number; pair: { local: string; peer: string } }> = [];
  const statuses: ReapStatus[] = [];
  let n = 0;
  const m = new ReapMachine(
    {
      send: (message, from, to) => {
        if (refuse(from)) return false;
        sent.push({ message, from, to });
        return true;
      },
      pairChosen: (id, pair) => chosen.push({ id, pair }),
      statusChanged: (s) => statuses.push(s),
      event: (event, detail) => events.push({ event, detail }),
    },
    { now: () => clock.t, random: () => 0.5, random32: () => 1000 + n++, timers },
  );
  return { m, clock, sent, events, chosen, statuses };
}

const ctxA = (over: Partial<ReapContext> = {}): ReapContext => ({
  id: 1, localContextTag: TAG_A, peerContextTag: TAG_B, localUlid: A1, peerUlid: B1,
  localLocators: [A1, A2], peerLocators: [B1, B2], current: { local: A1, peer: B1 }, ...over,
});

function probe(reapState: number, sent: Array<[string, string, number]>, received: Array<[string, string, number]> = [], tag = TAG_A): ProbeMessage {
  const r = ([source, destination, nonce]: [string, string, number]): { source: string; destination: string; nonce: number; data: number } => ({ source, destination, nonce, data: 0 });
  return { type: 'Probe', receiverContextTag: tag, reapState, sentProbes: sent.map(r), receivedProbes: received.map(r), options: [] };
}

describe('reap-timers', () => {
  it('RFC 5534 defaults: Keepalive Timeout 10 s, Send Timeout 15 s, 4 probes 0.5 s apart, backoff to 60 s', () => {
    assert.equal(DEFAULT_REAP_TIMERS.keepaliveTimeout, 10);
    assert.equal(DEFAULT_REAP_TIMERS.sendTimeout, 15);
    assert.equal(DEFAULT_REAP_TIMERS.initialProbes, 4);
    assert.equal(DEFAULT_REAP_TIMERS.initialProbeInterval, 0.5);
    assert.equal(DEFAULT_REAP_TIMERS.maxProbeInterval, 60);
    assert.ok(Object.isFrozen(DEFAULT_REAP_TIMERS));
  });

  it('the backoff: the burst, then doubling, capped', () => {
    const t = reapTimers();
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 5000].map((n) => nominalProbeInterval(t, n)), [0.5, 0.5, 0.5, 1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
  });

  it('jitter within ±20 %, never over the cap', () => {
    assert.equal(PROBE_JITTER, 0.2);
    assert.equal(jitteredMs(10, 0, 60), 8000);
    assert.equal(jitteredMs(10, 0.5, 60), 10000);
    assert.equal(jitteredMs(10, 0.999999, 60), 12000);
    assert.equal(jitteredMs(60, 0.999999, 60), 60000);
    assert.equal(jitteredMs(60, 0, 60), 48000);
  });

  it('Keepalive interval: a third of the peer Keepalive Timeout, ours by default, a configured one only if shorter', () => {
    const t = reapTimers();
    assert.equal(keepaliveIntervalFor(t, undefined), 10 / 3);
    assert.equal(keepaliveIntervalFor(t, 3), 1);
    assert.equal(keepaliveIntervalFor(t, 0), 10 / 3);
    assert.equal(keepaliveIntervalFor(reapTimers({ keepaliveInterval: 0.5 }), 3), 0.5);
    assert.equal(keepaliveIntervalFor(reapTimers({ keepaliveInterval: 5 }), 3), 1);
  });

  it('checks its overrides and names the key', () => {
    assert.throws(() => reapTimers({ sendTimeout: 0 }), /sendTimeout/);
    assert.throws(() => reapTimers({ initialProbes: 1.5 }), /initialProbes/);
    assert.throws(() => reapTimers({ keepaliveTimeout: 20 }), /sendTimeout \(15 s\) must not be shorter than keepaliveTimeout/);
    assert.throws(() => reapTimers({ maxProbeInterval: 0.1 }), /maxProbeInterval/);
    assert.throws(() => reapTimers({ keepaliveTimeout: 70_000, sendTimeout: 80_000 }), /16 bits/);
    assert.throws(() => reapTimers({ historyLength: -1 }), /historyLength/);
    assert.deepEqual(reapTimers({ sendTimeout: 30, keepaliveInterval: undefined }), { ...DEFAULT_REAP_TIMERS, sendTimeout: 30 });
    assert.throws(() => new ReapMachine({ send: () => true, pairChosen: () => undefined, statusChanged: () => undefined, event: () => undefined }, { now: () => 0, random: () => 0, random32: () => 0, timers: { ulidRetryInterval: -1 } }), /ulidRetryInterval/);
  });
});

describe('reap-machine', () => {
  describe('failure detection (operational)', () => {
    it('sends Keepalives on the current pair while it only receives, every third of the Keepalive Timeout', () => {
      const sim = new Sim();
      sim.a.sending = true;
      sim.advance(30_000);
      const kas = sim.keepalives('B');
      assert.ok(kas.length >= 7 && kas.length <= 9, `${kas.length} Keepalives`);
      assert.deepEqual(new Set(gaps(kas.map((k) => k.at))), new Set([3333]));
      for (const k of kas) {
        assert.equal(pairOf(k), `${B1}|${A1}`);
        assert.equal(k.message.receiverContextTag, TAG_A);
      }
      // The first one a Keepalive interval after the first payload B saw.
      assert.equal((kas[0] as WireRecord).at, T0 + 2 * POLL + 3333);
      assert.equal(sim.keepalives('A').length, 0);
      assert.equal(sim.a.count('send-timeout'), 0);
      assert.equal(sim.a.status().state, 'operational');
      assert.equal(sim.a.status().keepalivesReceived, kas.length);
      assert.equal(sim.b.status().keepalivesSent, kas.length);
      assert.equal(sim.wire.filter((w) => w.message.type === 'Probe').length, 0);
    });

    it('stops sending Keepalives once the payload stops', () => {
      const sim = new Sim();
      sim.a.sending = true;
      sim.advance(10_000);
      sim.a.sending = false;
      sim.advance(2_000);
      const n = sim.keepalives('B').length;
      sim.advance(60_000);
      assert.ok(sim.keepalives('B').length <= n + 1);
      assert.equal(sim.a.machine.nextDeadline(), undefined);
      assert.equal(sim.b.machine.nextDeadline(), undefined);
    });

    it('sends no Keepalives when both sides send payload', () => {
      const sim = new Sim();
      sim.a.sending = true;
      sim.b.sending = true;
      sim.advance(60_000);
      assert.equal(sim.wire.length, 0, JSON.stringify(sim.wire[0]));
      assert.equal(sim.a.status().state, 'operational');
      assert.equal(sim.b.status().state, 'operational');
    });

    it('respects the peer Keepalive Timeout: 3 s means a Keepalive every second', () => {
      const sim = new Sim({ b: { peerKeepaliveTimeout: 3 } });
      sim.a.sending = true;
      sim.advance(20_000);
      const kas = sim.keepalives('B');
      assert.ok(kas.length >= 16, `${kas.length} Keepalives`);
      assert.deepEqual(new Set(gaps(kas.map((k) => k.at))), new Set([1000]));
    });

    it('a counter going down is a new baseline, not traffic', () => {
      const { m, clock, events } = bare();
      m.upsert(ctxA());
      m.activity(1, 50, 50); // the first report: a baseline
      assert.equal(m.nextDeadline(), undefined);
      clock.t += 1000;
      m.activity(1, 3, 2); // shim6d restarted: both went down
      assert.equal(m.nextDeadline(), undefined);
      assert.equal(events.filter((e) => e.event === 'counters-reset').length, 1);
      clock.t += 1000;
      m.activity(1, 3, 4); // two packets received: a Keepalive will be due
      assert.equal(m.nextDeadline(), clock.t + 3333);
      clock.t += 100;
      m.activity(1, 4, 4); // one sent: the Send timer instead
      assert.equal(m.nextDeadline(), clock.t + 15_000);
      clock.t += 100;
      m.activity(1, 0, 9); // sent went down (baseline), received up: the Send timer stops
      assert.equal(m.nextDeadline(), clock.t + 3333);
      m.activity(99, 1000, 1000); // an unknown context: nothing
      m.activity(1, Number.NaN, 1);
      assert.equal(m.nextDeadline(), clock.t + 3333);
    });
  });

  describe('exploration', () => {
    it('a Send Timeout starts exploring: a burst of 4 probes, then backoff with jitter up to 60 s, over the pairs in order', () => {
      const sim = new Sim();
      sim.drop = () => true;
      sim.a.sending = true;
      sim.advance(15_000 + POLL - 1);
      assert.equal(sim.a.count('send-timeout'), 0);
      sim.advance(1);
      assert.equal(sim.a.count('send-timeout'), 1);
      assert.equal(sim.a.status().state, 'exploring');
      assert.equal(sim.a.status().since, T0 + POLL + 15_000);
      sim.advance(400_000);
      const ps = sim.probes('A');
      assert.equal((ps[0] as WireRecord).at, T0 + POLL + 15_000);
      const g = gaps(ps.map((p) => p.at));
      const nominal = [500, 500, 500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000];
      nominal.forEach((n, i) => {
        const gap = g[i] as number;
        assert.ok(gap >= n * 0.8 && gap <= Math.min(n * 1.2, 60000), `gap ${i}: ${gap} for ${n}`);
      });
      // The pairs differing from the failed a1-b1 in both locators first, the failed one last.
      assert.deepEqual(ps.slice(0, 5).map(pairOf), [`${A2}|${B2}`, `${A1}|${B2}`, `${A2}|${B1}`, `${A1}|${B1}`, `${A2}|${B2}`]);
      const nonces = new Set<number>();
      for (const p of ps) {
        assert.equal(p.message.reapState, ReapState.Exploring);
        assert.equal(p.message.receiverContextTag, TAG_B);
        const self = p.message.sentProbes[0];
        assert.ok(self);
        assert.deepEqual([self.source, self.destination], [p.from, p.to]);
        assert.ok(!nonces.has(self.nonce));
        nonces.add(self.nonce);
        assert.ok(p.message.sentProbes.length <= 15);
      }
      assert.equal((ps[ps.length - 1] as WireRecord & { message: ProbeMessage }).message.sentProbes.length, 15);
      assert.equal(sim.a.status().probesSent, ps.length);
    });

    it('the jitter is the injected random: 0.8 × at 0, 1.2 × (capped at 60 s) near 1', () => {
      for (const [random, expected] of [
        [() => 0, [400, 400, 400, 800, 1600, 3200, 6400, 12800, 25600, 48000, 48000]],
        [() => 0.9999999, [600, 600, 600, 1200, 2400, 4800, 9600, 19200, 38400, 60000, 60000]],
      ] as Array<[() => number, number[]]>) {
        const sim = new Sim({ random });
        sim.drop = () => true;
        sim.a.sending = true;
        sim.advance(16_000 + 300_000);
        assert.deepEqual(gaps(sim.probes('A').map((p) => p.at)).slice(0, expected.length), expected);
      }
    });

    it('a two-way cut of the current pair: both sides converge on the pair that differs in both locators, pairChosen once each', () => {
      const sim = new Sim();
      sim.a.sending = true;
      sim.b.sending = true;
      sim.advance(5_500);
      sim.drop = path1Cut;
      sim.advance(60_000);
      assert.deepEqual(sim.a.chosen.map((c) => c.pair), [{ local: A2, peer: B2 }]);
      assert.deepEqual(sim.b.chosen.map((c) => c.pair), [{ local: B2, peer: A2 }]);
      assert.equal(sim.a.chosen[0]?.id, 1);
      assert.equal(sim.b.chosen[0]?.id, 7);
      for (const h of [sim.a, sim.b]) {
        assert.equal(h.status().state, 'operational');
        assert.equal(h.count('exploration-started'), 1);
        assert.ok(h.count('pair-found') >= 1);
      }
      assert.deepEqual(sim.a.status().current, { local: A2, peer: B2 });
      // It stays repaired: payload flows both ways, no new exploration.
      const before = [sim.a.payloadReceived, sim.b.payloadReceived];
      sim.advance(120_000);
      assert.ok(sim.a.payloadReceived > (before[0] as number) + 1000 && sim.b.payloadReceived > (before[1] as number) + 1000);
      assert.equal(sim.a.count('exploration-started') + sim.b.count('exploration-started'), 2);
      assert.equal(sim.a.chosen.length + sim.b.chosen.length, 2);
      // Exploration was fast: within a few seconds of the Send Timeout.
      assert.ok((sim.a.chosen[0]?.at as number) - T0 < 5_500 + 15_000 + POLL * 2 + 3_000);
    });

    it('a one-way failure (only b1 → a1 broken) is detected by A and repaired on both sides', () => {
      const sim = new Sim();
      sim.a.sending = true;
      sim.b.sending = true;
      sim.advance(3_500);
      sim.drop = (from, to) => from === B1 && to === A1;
      sim.advance(60_000);
      assert.equal(sim.a.count('send-timeout'), 1);
      assert.equal(sim.a.status().state, 'operational');
      assert.equal(sim.b.status().state, 'operational');
      assert.ok(sim.a.chosen.length >= 1 && sim.b.chosen.length >= 1);
      assert.ok(!sim.drop(sim.a.ctx.current.local, sim.a.ctx.current.peer));
      assert.ok(!sim.drop(sim.b.ctx.current.local, sim.b.ctx.current.peer));
      assert.notDeepEqual(sim.b.ctx.current, { local: B1, peer: A1 });
      const before = [sim.a.payloadReceived, sim.b.payloadReceived];
      const explorations = sim.a.count('exploration-started') + sim.b.count('exploration-started');
      sim.advance(120_000);
      assert.ok(sim.a.payloadReceived > (before[0] as number) + 1000 && sim.b.payloadReceived > (before[1] as number) + 1000);
      assert.equal(sim.a.count('exploration-started') + sim.b.count('exploration-started'), explorations);
    });

    it('skips a source that send() refuses for the rest of the cycle, and finds a pair without it', () => {
      const sim = new Sim();
      sim.a.unusable.add(A2);
      sim.a.sending = true;
      sim.b.sending = true;
      sim.advance(2_500);
      sim.drop = (from, to) => to === B1 || from === B1;
      sim.advance(60_000);
      assert.equal(sim.probes('A').filter((p) => p.from === A2).length, 0);
      const refused = sim.a.events.filter((e) => e.event === 'source-unusable');
      assert.ok(refused.length >= 1);
      assert.ok(refused.every((e) => e.detail.source === A2));
      assert.equal(sim.a.count('no-usable-source'), 0);
      // In a cycle (A2-B2, A1-B2, A2-B1, A1-B1) A2 is refused once, then skipped.
      assert.ok(refused.length <= sim.a.count('exploration-started') + Math.ceil(sim.probes('A').length / 2));
      assert.deepEqual(sim.a.chosen.map((c) => c.pair), [{ local: A1, peer: B2 }]);
      assert.equal(sim.a.status().state, 'operational');
      assert.equal(sim.b.status().state, 'operational');
    });

    it('with no usable source at all: counted, and the schedule goes on', () => {
      const sim = new Sim();
      sim.a.unusable.add(A1);
      sim.a.unusable.add(A2);
      sim.a.machine.explore(1, 'test');
      sim.advance(5_000);
      assert.ok(sim.a.count('no-usable-source') >= 4);
      assert.equal(sim.probes('A').length, 0);
      assert.equal(sim.a.status().state, 'exploring');
      assert.ok((sim.a.machine.nextDeadline() as number) > sim.t);
    });

    it('a refused source is tried once per cycle over the candidates, not once per pair', () => {
      const refusals: string[] = [];
      const { m, clock, sent, events } = bare({}, (from) => {
        if (from !== A2) return false;
        refusals.push(from);
        return true;
      });
      m.upsert(ctxA());
      m.explore(1, 'test');
      while (sent.length < 6) {
        clock.t = m.nextDeadline() as number;
        m.tick();
      }
      // Cycles of (a2-b2, a1-b2, a2-b1, a1-b1): a2 refused at the start of each cycle, then skipped.
      assert.deepEqual(sent.map((x) => `${x.from}|${x.to}`), [`${A1}|${B2}`, `${A1}|${B1}`, `${A1}|${B2}`, `${A1}|${B1}`, `${A1}|${B2}`, `${A1}|${B1}`]);
      assert.equal(refusals.length, 3);
      assert.equal(events.filter((e) => e.event === 'source-unusable').length, 3);
    });

    it('of several of our probes reported, takes the pair proven in both directions over the newest', () => {
      const { m, clock, sent, chosen } = bare();
      m.upsert(ctxA());
      m.explore(1, 'test');
      clock.t = m.nextDeadline() as number;
      m.tick();
      const [first, second] = sent as Array<{ message: ProbeMessage; from: string; to: string }>;
      assert.deepEqual([first?.from, first?.to, second?.from, second?.to], [A2, B2, A1, B2]);
      const n1 = first?.message.sentProbes[0]?.nonce as number;
      const n2 = second?.message.sentProbes[0]?.nonce as number;
      // Arrived on b2 -> a2, the reverse of our first probe's pair.
      m.receive(probe(ReapState.InboundOk, [[B2, A2, 40]], [[A1, B2, n2], [A2, B2, n1]]), B2, A2);
      assert.deepEqual(chosen, [{ id: 1, pair: { local: A2, peer: B2 } }]);
    });

    it('a probe from an exploring peer makes an operational host inbound-ok and answers it; a report of that answer ends it', () => {
      const { m, sent, chosen, events } = bare();
      m.upsert(ctxA());
      m.receive(probe(ReapState.Exploring, [[B2, A2, 77]]), B2, A2);
      assert.equal(m.status(1)?.state, 'inbound-ok');
      assert.equal(sent.length, 1);
      const answer = sent[0] as { message: ProbeMessage; from: string; to: string };
      assert.deepEqual([answer.from, answer.to], [A2, B2]);
      assert.equal(answer.message.reapState, ReapState.InboundOk);
      assert.deepEqual(answer.message.receivedProbes.map((r) => r.nonce), [77]);
      const ours = answer.message.sentProbes[0]?.nonce as number;
      // The same probe again (a duplicate, or a replay): counted, not answered again.
      m.receive(probe(ReapState.Exploring, [[B2, A2, 77]]), B2, A2);
      assert.equal(sent.length, 1);
      assert.equal(events.filter((e) => e.event === 'rejected-duplicate').length, 1);
      // The operational peer reports our answer: A moves to the pair of its answer.
      m.receive(probe(ReapState.Operational, [[B2, A2, 78]], [[A2, B2, ours]]), B2, A2);
      assert.equal(m.status(1)?.state, 'operational');
      assert.deepEqual(chosen, [{ id: 1, pair: { local: A2, peer: B2 } }]);
      assert.deepEqual(m.status(1)?.current, { local: A2, peer: B2 });
      // The peer is operational: no answer to its report.
      assert.equal(sent.length, 1);
      // A late copy of the peer's first probe (Sta = Exploring) changes nothing now.
      m.receive(probe(ReapState.Exploring, [[B2, A2, 77]]), B2, A2);
      assert.equal(m.status(1)?.state, 'operational');
      assert.equal(sent.length, 1);
    });

    it('an inbound-ok peer reporting our probe ends the exploration, and its probe gets reported back', () => {
      const { m, sent, chosen } = bare();
      m.upsert(ctxA());
      m.explore(1, 'locator gone');
      assert.equal(m.status(1)?.state, 'exploring');
      const first = sent[0] as { message: ProbeMessage; from: string; to: string };
      assert.deepEqual([first.from, first.to], [A2, B2]);
      const nonce = first.message.sentProbes[0]?.nonce as number;
      // A report with a wrong address is no proof.
      m.receive(probe(ReapState.InboundOk, [[B1, A1, 5]], [[A1, B2, nonce]]), B1, A1);
      assert.equal(m.status(1)?.state, 'inbound-ok');
      m.receive(probe(ReapState.InboundOk, [[B2, A2, 6]], [[A2, B2, nonce]]), B2, A2);
      assert.equal(m.status(1)?.state, 'operational');
      assert.deepEqual(chosen, [{ id: 1, pair: { local: A2, peer: B2 } }]);
      const last = sent[sent.length - 1] as { message: ProbeMessage; from: string; to: string };
      assert.deepEqual([last.from, last.to, last.message.reapState], [A2, B2, ReapState.Operational]);
      assert.deepEqual(last.message.receivedProbes.map((r) => r.nonce), [6]);
      assert.equal(last.message.sentProbes.length, 1);
      assert.equal(m.nextDeadline() !== undefined, true); // the ULID return is scheduled
    });

    it('a pair found equal to the current one: operational again, no pairChosen', () => {
      const { m, clock, sent, chosen, events } = bare();
      m.upsert(ctxA());
      m.explore(1, 'test');
      const probes = (): Array<{ message: ProbeMessage; from: string; to: string }> => sent.filter((s): s is { message: ProbeMessage; from: string; to: string } => s.message.type === 'Probe');
      // Through the cycle to its last candidate, the failed pair itself.
      while (probes().length < 4) {
        clock.t = m.nextDeadline() as number;
        m.tick();
      }
      const last = probes()[3] as { message: ProbeMessage; from: string; to: string };
      assert.deepEqual([last.from, last.to], [A1, B1]);
      m.receive(probe(ReapState.InboundOk, [[B1, A1, 31]], [[A1, B1, last.message.sentProbes[0]?.nonce as number]]), B1, A1);
      assert.equal(m.status(1)?.state, 'operational');
      assert.deepEqual(chosen, []);
      assert.deepEqual(events.filter((e) => e.event === 'pair-found').map((e) => e.detail.changed), [false]);
      // The inbound-ok peer gets its probe reported on that pair.
      const answer = probes()[4] as { message: ProbeMessage; from: string; to: string };
      assert.deepEqual([answer.from, answer.to, answer.message.reapState], [A1, B1, ReapState.Operational]);
      assert.deepEqual(answer.message.receivedProbes.map((r) => r.nonce), [31]);
      assert.equal(m.nextDeadline(), undefined); // on the ULIDs, nothing pending
    });

    it('a new current pair announced while exploring means shim6d moved the context: operational, no probes', () => {
      const { m, clock, sent, events } = bare();
      m.upsert(ctxA());
      m.explore(1, 'test');
      m.upsert(ctxA({ current: { local: A2, peer: B2 } }));
      assert.equal(m.status(1)?.state, 'operational');
      assert.deepEqual(events.filter((e) => e.event === 'exploration-ended').map((e) => e.detail.reason), ['moved by shim6d']);
      const n = sent.length;
      // Off the ULIDs now: only the ULID probe is pending, in 10 s (the jitter is 0.5 here).
      assert.equal(m.nextDeadline(), clock.t + 10_000);
      clock.t += 10_000;
      m.tick();
      assert.equal(sent.length, n + 1);
      const p = sent[n] as { message: ProbeMessage; from: string; to: string };
      assert.deepEqual([p.from, p.to, p.message.reapState], [A1, B1, ReapState.Operational]);
      // Exploring again from a2-b2: a1-b1 first.
      m.explore(1, 'again');
      assert.deepEqual([sent[n + 1]?.from, sent[n + 1]?.to], [A1, B1]);
      assert.equal((sent[n + 1]?.message as ProbeMessage).reapState, ReapState.Exploring);
    });

    it('reports of probes sent before the exploration started prove nothing', () => {
      const { m, clock, sent, chosen } = bare();
      m.upsert(ctxA({ current: { local: A2, peer: B2 } }));
      clock.t = m.nextDeadline() as number;
      m.tick(); // the ULID probe, a1 -> b1
      const old = sent[0]?.message as ProbeMessage;
      assert.deepEqual([sent[0]?.from, old.reapState], [A1, ReapState.Operational]);
      m.explore(1, 'a2 gone');
      m.receive(probe(ReapState.InboundOk, [[B1, A1, 60]], [[A1, B1, old.sentProbes[0]?.nonce as number]]), B1, A1);
      assert.equal(m.status(1)?.state, 'inbound-ok');
      assert.deepEqual(chosen, []);
    });

    it('inbound-ok lasts while the peer keeps probing, and turns into exploring a Send Timeout after it stops', () => {
      const { m, clock } = bare();
      m.upsert(ctxA());
      m.explore(1, 'test');
      m.receive({ type: 'Keepalive', receiverContextTag: TAG_A, options: [] }, B1, A1);
      const runUntil = (t: number): void => {
        while ((m.nextDeadline() as number) <= t) {
          clock.t = m.nextDeadline() as number;
          m.tick();
        }
        clock.t = t;
      };
      for (let i = 1; i <= 7; i++) {
        runUntil(T0 + i * 4_000);
        m.receive(probe(ReapState.Exploring, [[B2, A2, 100 + i]]), B2, A2);
        assert.equal(m.status(1)?.state, 'inbound-ok');
        assert.equal(m.status(1)?.since, T0);
      }
      runUntil(T0 + 28_000 + 14_999);
      assert.equal(m.status(1)?.state, 'inbound-ok');
      runUntil(T0 + 28_000 + 15_000);
      assert.equal(m.status(1)?.state, 'exploring');
    });

    it('a Keepalive or payload heard while exploring means inbound-ok; a Send Timeout there starts a new burst', () => {
      const { m, clock, sent } = bare();
      m.upsert(ctxA());
      m.activity(1, 0, 0);
      m.explore(1, 'test');
      m.receive({ type: 'Keepalive', receiverContextTag: TAG_A, options: [] }, B1, A1);
      assert.equal(m.status(1)?.state, 'inbound-ok');
      const answer = sent[sent.length - 1] as { message: ProbeMessage; from: string; to: string };
      assert.deepEqual([answer.from, answer.to, answer.message.reapState], [A1, B1, ReapState.InboundOk]);
      // Nothing more from the peer for a Send Timeout: exploring again, from a new burst.
      for (let i = 0; i < 100 && m.status(1)?.state === 'inbound-ok'; i++) {
        clock.t = m.nextDeadline() as number;
        m.tick();
      }
      assert.equal(m.status(1)?.state, 'exploring');
      assert.equal(m.status(1)?.since, T0 + 15_000);
      const { m: m2 } = bare();
      m2.upsert(ctxA());
      m2.activity(1, 0, 0);
      m2.explore(1, 'test');
      m2.activity(1, 0, 5);
      assert.equal(m2.status(1)?.state, 'inbound-ok');
    });
  });

  describe('the return to the ULID pair', () => {
    it('probes the ULID pair with backoff while it is broken, and returns once it heals', () => {
      const sim = new Sim();
      sim.a.sending = true;
      sim.b.sending = true;
      sim.advance(5_500);
      sim.drop = path1Cut;
      sim.advance(40_000);
      assert.equal(sim.a.chosen.length, 1);
      const movedAt = sim.a.chosen[0]?.at as number;
      sim.advance(200_000);
      const ulidProbes = sim.probes('A', movedAt).filter((p) => p.from === A1 && p.to === B1);
      assert.ok(ulidProbes.length >= 4);
      for (const p of ulidProbes) {
        assert.equal(p.message.reapState, ReapState.Operational);
        assert.equal(p.message.sentProbes.length, 1);
        assert.equal(p.message.receivedProbes.length, 0);
      }
      const g = gaps(ulidProbes.map((p) => p.at));
      [20_000, 40_000, 60_000].forEach((n, i) => assert.ok((g[i] as number) >= n * 0.8 && (g[i] as number) <= Math.min(n * 1.2, 60_000), `gap ${i}: ${g[i]}`));
      assert.ok((ulidProbes[0]?.at as number) - movedAt >= 8_000 && (ulidProbes[0]?.at as number) - movedAt <= 12_000);
      // Path 1 heals.
      sim.drop = () => false;
      sim.advance(75_000);
      assert.deepEqual(sim.a.chosen.map((c) => c.pair), [{ local: A2, peer: B2 }, { local: A1, peer: B1 }]);
      assert.deepEqual(sim.b.chosen.map((c) => c.pair), [{ local: B2, peer: A2 }, { local: B1, peer: A1 }]);
      assert.equal(sim.a.count('ulid-pair-restored'), 1);
      assert.equal(sim.b.count('ulid-pair-restored'), 1);
      assert.deepEqual(sim.a.status().current, { local: A1, peer: B1 });
      assert.equal(sim.a.status().state, 'operational');
      // On the ULIDs: no more ULID probes, and nothing else on the wire while both send.
      const n = sim.wire.length;
      sim.advance(300_000);
      assert.equal(sim.wire.length, n);
      assert.equal(sim.a.count('exploration-started') + sim.b.count('exploration-started'), 2);
    });

    it('does not probe the ULID pair while exploring', () => {
      const { m, clock, sent } = bare();
      m.upsert(ctxA({ current: { local: A2, peer: B2 } }));
      assert.equal(m.nextDeadline(), clock.t + 10_000);
      m.explore(1, 'test');
      const end = clock.t + 120_000;
      while ((m.nextDeadline() as number) <= end) {
        clock.t = m.nextDeadline() as number;
        m.tick();
      }
      assert.ok(sent.length > 8);
      assert.ok(sent.every((s) => s.message.type === 'Probe' && s.message.reapState === ReapState.Exploring));
      assert.equal(m.status(1)?.state, 'exploring');
    });
    it('an answer to the ULID probe that did not come back on the ULID pair proves nothing', () => {
      const { m, clock, sent, chosen } = bare();
      m.upsert(ctxA({ current: { local: A2, peer: B2 } }));
      clock.t = m.nextDeadline() as number;
      m.tick();
      const ulidProbe = sent[0] as { message: ProbeMessage; from: string; to: string };
      assert.deepEqual([ulidProbe.from, ulidProbe.to], [A1, B1]);
      const nonce = ulidProbe.message.sentProbes[0]?.nonce as number;
      m.receive(probe(ReapState.Operational, [[B2, A2, 50]], [[A1, B1, nonce]]), B2, A2);
      assert.deepEqual(chosen, []);
      assert.deepEqual(m.status(1)?.current, { local: A2, peer: B2 });
      m.receive(probe(ReapState.Operational, [[B1, A1, 51]], [[A1, B1, nonce]]), B1, A1);
      assert.deepEqual(chosen, [{ id: 1, pair: { local: A1, peer: B1 } }]);
      // Neither answer is answered again.
      assert.equal(sent.length, 1);
    });

    it('does not return to a ULID pair that works in one direction only', () => {
      const sim = new Sim();
      sim.a.sending = true;
      sim.b.sending = true;
      sim.advance(3_500);
      sim.drop = (from, to) => from === B1 && to === A1;
      sim.advance(300_000);
      assert.ok(sim.probes('A').filter((p) => p.from === A1 && p.to === B1 && p.message.reapState === ReapState.Operational).length >= 4);
      assert.equal(sim.a.count('ulid-pair-restored') + sim.b.count('ulid-pair-restored'), 0);
      assert.notDeepEqual(sim.a.ctx.current, { local: A1, peer: B1 });
      assert.equal(sim.a.chosen.length + sim.b.chosen.length, 2);
    });
  });

  describe('robustness', () => {
    it('ignores and counts messages for unknown context tags and from sources that are not the peer locators', () => {
      const { m, sent, events, statuses } = bare();
      m.upsert(ctxA());
      const nStatuses = statuses.length;
      m.receive({ type: 'Keepalive', receiverContextTag: 0x9999, options: [] }, B1, A1);
      m.receive(probe(ReapState.Exploring, [[B1, A1, 1]], [], 0x9999), B1, A1);
      m.receive(probe(ReapState.Exploring, [[X, A1, 2]]), X, A1);
      m.receive({ type: 'Keepalive', receiverContextTag: TAG_A, options: [] }, X, A1);
      // The peer's own ULID, spelled differently, is the peer.
      m.receive({ type: 'Keepalive', receiverContextTag: TAG_A, options: [] }, '2001:DB8:B1:0:0:0:0:B', A1);
      assert.deepEqual(events.map((e) => e.event), ['context-added', 'rejected-unknown-context', 'rejected-unknown-context', 'rejected-locator', 'rejected-locator', 'keepalive-received']);
      assert.deepEqual(events[3]?.detail, { id: 1, type: 'Probe', from: X, to: A1 });
      assert.equal(sent.length, 0);
      const s = m.status(1);
      assert.equal(s?.state, 'operational');
      assert.equal(s?.probesReceived, 0);
      assert.equal(s?.keepalivesReceived, 1);
      assert.equal(statuses.length, nStatuses);
    });

    it('bounds the history and the probe reports', () => {
      const sim = new Sim({ timers: { historyLength: 5 } });
      sim.a.sending = true;
      sim.b.sending = true;
      sim.advance(1_500);
      // A's packets never arrive; B's do. B explores, A hears its probes and answers in vain.
      sim.drop = (from) => from === A1 || from === A2;
      sim.advance(30 * 60_000);
      const a = sim.probes('A');
      const b = sim.probes('B');
      assert.ok(a.length > 30 && b.length > 30, `${a.length} and ${b.length} probes`);
      for (const p of [...a, ...b]) {
        assert.ok(p.message.sentProbes.length <= 15 && p.message.receivedProbes.length <= 15);
      }
      assert.ok(a.some((p) => p.message.receivedProbes.length === 15));
      assert.ok(a.some((p) => p.message.sentProbes.length === 15));
      for (const h of [sim.a, sim.b]) {
        const s = h.status();
        assert.equal(s.history.length, 5);
        assert.ok(s.history.every((r, i) => i === 0 || r.at >= (s.history[i - 1] as { at: number }).at));
      }
      assert.equal(sim.a.status().state, 'inbound-ok');
      assert.equal(sim.b.status().state, 'exploring');
      assert.ok(sim.a.statuses.every((s) => s.history.length <= 5));
    });

    it('sync keeps the REAP state of contexts that stay with the same tags, resets changed ones, drops the rest', () => {
      const { m, clock, events } = bare();
      m.upsert(ctxA());
      m.upsert(ctxA({ id: 2, localContextTag: 0x22, peerContextTag: 0x23 }));
      m.explore(1, 'test');
      const since = m.status(1)?.since;
      clock.t += 5_000;
      m.sync([ctxA({ localLocators: [A1, A2, '2001:db8:a3::a'] }), ctxA({ id: 3, localContextTag: 0x33, peerContextTag: 0x34 })]);
      assert.equal(m.size, 2);
      assert.equal(m.status(1)?.state, 'exploring');
      assert.equal(m.status(1)?.since, since);
      assert.equal(m.status(2), undefined);
      assert.equal(m.status(3)?.state, 'operational');
      assert.deepEqual(m.statuses().map((s) => s.id), [1, 3]);
      assert.ok(events.some((e) => e.event === 'context-removed' && e.detail.id === 2));
      // The same id with new tags: a new context.
      m.sync([ctxA({ localContextTag: 0x44 }), ctxA({ id: 3, localContextTag: 0x33, peerContextTag: 0x34 })]);
      assert.equal(m.status(1)?.state, 'operational');
      assert.equal(m.status(1)?.since, clock.t);
      assert.ok(events.some((e) => e.event === 'context-reset' && e.detail.id === 1));
      m.receive({ type: 'Keepalive', receiverContextTag: TAG_A, options: [] }, B1, A1);
      assert.equal(events[events.length - 1]?.event, 'rejected-unknown-context');
      m.remove(3);
      m.remove(3);
      assert.equal(m.size, 1);
      m.sync([]);
      assert.equal(m.size, 0);
      assert.equal(m.nextDeadline(), undefined);
    });

    it('reports its status on every state change and every probe, even one whose answer could not be sent', () => {
      const { m, sent, statuses } = bare({}, (from) => from === A2);
      m.upsert(ctxA());
      assert.deepEqual(statuses.map((s) => s.state), ['operational']);
      m.explore(1, 'test'); // exploring, then its first probe (a2 refused, a1-b2 sent)
      assert.deepEqual(statuses.slice(1).map((s) => [s.state, s.probesSent]), [['exploring', 0], ['exploring', 1]]);
      m.receive({ type: 'Keepalive', receiverContextTag: TAG_A, options: [] }, B1, A1); // inbound-ok, answer on a1-b1
      assert.deepEqual(statuses.slice(3).map((s) => [s.state, s.probesSent]), [['inbound-ok', 1], ['inbound-ok', 2]]);
      const n = statuses.length;
      m.receive(probe(ReapState.Exploring, [[B2, A2, 5]]), B2, A2); // its answer from a2 is refused
      assert.equal(sent.length, 2);
      assert.equal(statuses.length, n + 1);
      assert.equal(statuses[n]?.probesReceived, 1);
      assert.deepEqual(statuses[n]?.history.map((h) => [h.direction, h.local, h.peer, h.nonce]).slice(-1), [['received', A2, B2, 5]]);
    });

    it('idle contexts on their ULID pair have nothing to do; status copies do not alias the machine', () => {
      const { m, sent } = bare();
      assert.equal(m.nextDeadline(), undefined);
      m.upsert(ctxA());
      assert.equal(m.nextDeadline(), undefined);
      m.tick();
      assert.equal(sent.length, 0);
      const s = m.status(1) as ReapStatus;
      s.current.local = X;
      assert.equal(m.status(1)?.current.local, A1);
      assert.equal(m.status(42), undefined);
      m.explore(42, 'no such context');
    });

    it('with 5,000 idle contexts, tick() visits only the due ones: by deadline, equal ones in creation order', () => {
      const { m, clock, sent } = bare();
      const N = 5000;
      const PEER_TAGS = 0x20_0000;
      const ctxN = (id: number, over: Partial<ReapContext> = {}): ReapContext => ctxA({ id, localContextTag: 0x10_0000 + id, peerContextTag: PEER_TAGS + id, ...over });
      for (let id = 1; id <= N; id++) {
        m.upsert(ctxN(id));
        m.activity(id, 0, 0);
      }
      assert.equal(m.size, N);
      assert.equal(m.nextDeadline(), undefined);
      for (let i = 0; i < 100; i++) {
        clock.t += 1000;
        assert.equal(m.tick(), 0, 'idle contexts on their ULID pair are never visited');
      }
      assert.equal(sent.length, 0);
      // A few get timers (random 0.5: no jitter): a Keepalive, a Send timer, a ULID probe, and
      // three explorations started in the reverse of their creation order.
      const start = clock.t;
      m.activity(4000, 0, 1); // Keepalive at +3333, checked again at +6666
      m.activity(2500, 1, 0); // Send timeout at +15 s
      m.upsert(ctxN(3000, { current: { local: A2, peer: B2 } })); // off the ULID pair: a ULID probe at +10 s
      for (const id of [300, 200, 100]) m.explore(id, 'test'); // a probe now, the next at +0.5 s
      const label = (s: { message: Reap }): string => `${s.message.type[0] as string}${s.message.receiverContextTag - PEER_TAGS}`;
      assert.deepEqual(sent.map(label), ['P300', 'P200', 'P100']);
      sent.length = 0;
      const log: string[] = [];
      for (;;) {
        const at = m.nextDeadline();
        assert.ok(at !== undefined);
        if (at > start + 15_000) break;
        clock.t = at - 1;
        assert.equal(m.tick(), 0, 'nothing is due a millisecond before nextDeadline()');
        assert.equal(sent.length, 0);
        clock.t = at;
        const visited = m.tick();
        log.push([`+${at - start}:`, visited, ...sent.map(label)].join(' '));
        sent.length = 0;
      }
      const probes = 'P100 P200 P300';
      assert.deepEqual(log, [
        `+500: 3 ${probes}`,
        `+1000: 3 ${probes}`,
        `+1500: 3 ${probes}`,
        `+2500: 3 ${probes}`,
        '+3333: 1 K4000',
        `+4500: 3 ${probes}`,
        '+6666: 1', // no payload since: no Keepalive, and the timer stops
        `+8500: 3 ${probes}`,
        '+10000: 1 P3000',
        '+15000: 1 P2500', // the Send timeout: context 2500 starts exploring
      ]);
    });

    it('an effect that throws in tick() loses no timer: the contexts due then fire at the next tick', () => {
      let broken = false;
      const { m, clock, sent } = bare({}, () => {
        if (broken) throw new Error('send broke');
        return false;
      });
      m.upsert(ctxA());
      m.upsert(ctxA({ id: 2, localContextTag: 0x22, peerContextTag: 0x23 }));
      m.explore(1, 'test');
      m.explore(2, 'test');
      sent.length = 0;
      const due = m.nextDeadline() as number;
      clock.t = due;
      broken = true;
      assert.throws(() => m.tick(), /send broke/);
      assert.equal(m.nextDeadline(), due, 'both contexts are still due');
      broken = false;
      assert.equal(m.tick(), 2);
      assert.deepEqual(sent.map((s) => s.message.receiverContextTag), [TAG_B, 0x23]);
    });

    it('is deterministic under the injected clock and random sources', () => {
      const run = (): string => {
        const sim = new Sim({ seed: 99 });
        sim.a.sending = true;
        sim.b.sending = true;
        sim.advance(4_000);
        sim.drop = path1Cut;
        sim.advance(90_000);
        sim.drop = () => false;
        sim.advance(90_000);
        return JSON.stringify(sim.wire) + JSON.stringify([sim.a.events, sim.b.events, sim.a.chosen, sim.b.chosen]);
      };
      assert.equal(run(), run());
    });
  });
});
