/**
 * The REAP state machine (RFC 5534), pure: every input is a call (a context announced by
 * shim6d, the data plane's packet counters, a received Keepalive or Probe, a request to
 * explore, a timer tick), every output goes through the injected `ReapEffects`, and time and
 * randomness come from the injected `ReapOptions`. No sockets and no timers of its own: the
 * daemon calls tick() at nextDeadline(), like shim6d/context-machine.ts. As there, each
 * context's earliest timer sits in a DeadlineQueue, so that nextDeadline() reads it and tick()
 * visits only the contexts that are due (in the order they were created), not every context.
 *
 * Per context, three states (RFC 5534 section 6):
 * - operational: failure detection (sections 4.1, 6.1-6.4). Payload received and none sent:
 *   a Keepalive every keepalive interval (a third of the PEER's Keepalive Timeout) on the
 *   current pair. Payload sent: the Send timer runs until anything is heard from the peer
 *   (payload, Keepalive or Probe); when it expires, the context starts exploring.
 * - exploring: we hear nothing. Probes (Sta = Exploring) go out over the candidate pairs
 *   (reapd/pair-order.ts: the failed pair last), an initial burst then exponential backoff
 *   with jitter (reapd/reap-timers.ts). Each Probe carries our recent probes (sent reports,
 *   itself first) and the peer's probes we received (received reports), at most 15 each.
 * - inbound-ok: we hear the peer (a Probe, a Keepalive or payload arrived) but it has not
 *   reported any of our probes yet. The probes go on, now with Sta = InboundOk, and every new
 *   probe of the peer is answered at once on the reverse of the pair it came on. If nothing
 *   is heard for a Send Timeout, back to exploring with a new burst.
 * A Probe whose received reports include one of our probes proves that our probe's pair works
 * from us to the peer: the context takes that pair (preferring one also proven in the other
 * direction), tells shim6d through pairChosen() when it differs from the current one, goes
 * back to operational, and reports the peer's probe in a Probe (Sta = Operational) so that
 * the peer can finish too. A peer that starts exploring while we are operational (a Probe with
 * Sta = Exploring) makes us inbound-ok: it does not hear us, so we explore as well.
 *
 * Our addition, the return to the ULIDs: while an operational context is off its ULID pair,
 * one Probe (Sta = Operational) goes on the ULID pair every ulidRetryInterval, backed off
 * while it stays unanswered. An operational peer answers a Probe with Sta = Operational that
 * reports none of its own probes, on the reverse of the pair it came on; when that answer
 * (reporting our ULID probe) arrives on the ULID pair, both directions of the ULID pair work:
 * pairChosen(ULID pair) and 'ulid-pair-restored'. Answers report the peer's probe and are not
 * answered again, so no exchange loops.
 *
 * Everything is bounded: probe reports (15 each way), history (historyLength), and nothing
 * else grows with traffic. Messages for unknown context tags and from sources that are not
 * among the context's peer locators are counted through events and otherwise ignored.
 */
import { canonicalIPv6 } from '../protocol/address';
import { ReapState } from '../protocol/constants';
import type { KeepaliveMessage, ProbeMessage, ProbeReport } from '../protocol/control-message';
import type { IpcReapStatus, ProbeRecord, ReapStateName } from '../ipc/messages';
import { orderCandidatePairs, samePair, type LocatorPair } from './pair-order';
import { jitteredMs, keepaliveIntervalFor, MAX_PROBE_REPORTS, nominalProbeInterval, reapTimers, type ReapTimers } from './reap-timers';
import { DeadlineQueue } from '../shim6d/deadline-queue';

export { DEFAULT_REAP_TIMERS, type ReapTimers } from './reap-timers';
export type { LocatorPair } from './pair-order';

/** A context as shim6d announces it. Addresses in any valid IPv6 text; kept canonical. */
export interface ReapContext {
  id: number;
  localContextTag: number;
  peerContextTag: number;
  localUlid: string;
  peerUlid: string;
  localLocators: string[];
  peerLocators: string[];
  current: { local: string; peer: string };
  /** Seconds, from the peer's Keepalive Timeout option; ours (timers.keepaliveTimeout) when absent. */
  peerKeepaliveTimeout?: number;
}

/**
 * What the machine reports of a context is what reapd sends shim6d (ipc/messages.ts), under
 * the machine's names; here `history` holds at most timers.historyLength records.
 */
export type { ProbeRecord, ReapStateName };
export type ReapStatus = IpcReapStatus;

/** Everything the machine counts or logs; each comes with a detail object naming the context. */
export type ReapEvent =
  | 'context-added'
  | 'context-reset'
  | 'context-removed'
  | 'keepalive-sent'
  | 'keepalive-received'
  | 'keepalive-unsent'
  | 'probe-sent'
  | 'probe-received'
  | 'send-timeout'
  | 'exploration-started'
  | 'inbound-ok'
  | 'pair-found'
  | 'exploration-ended'
  | 'ulid-probe-unsent'
  | 'ulid-pair-restored'
  | 'source-unusable'
  | 'no-usable-source'
  | 'counters-reset'
  | 'rejected-unknown-context'
  | 'rejected-locator'
  | 'rejected-duplicate';

export interface ReapEffects {
  /** False: the source could not be used (no such address, no route); the machine skips that source this round. */
  send(message: KeepaliveMessage | ProbeMessage, from: string, to: string): boolean;
  /** Exploration (or the ULID return) found a working pair; shim6d moves the context and later upserts it with this current pair. */
  pairChosen(id: number, pair: { local: string; peer: string }): void;
  /** On every state change and every probe sent or received. */
  statusChanged(status: ReapStatus): void;
  event(event: ReapEvent, detail: Record<string, unknown>): void;
}

export interface ReapOptions {
  /** ms */
  now(): number;
  /** Uniform in [0, 1): the jitter. */
  random(): number;
  /** Uniform integer in [0, 2^32): probe nonces. */
  random32(): number;
  timers?: Partial<ReapTimers>;
}

type Purpose = 'explore' | 'answer' | 'ulid';

/** One of our probes, as we sent it. */
interface SentProbe {
  nonce: number;
  data: number;
  local: string;
  peer: string;
  at: number;
  purpose: Purpose;
}

/** One of the peer's probes, as its first sent report described it. */
interface ReceivedProbe extends ProbeReport {
  at: number;
}

/** A context's record: the values of its status (whose id and current pair are the context's), and the machine's own. */
interface Reap extends Omit<ReapStatus, 'id' | 'current'> {
  ctx: ReapContext;
  /** Order of creation: the contexts' order (the map's), which tick() keeps among due contexts. */
  readonly order: number;
  /** Newest first, at most MAX_PROBE_REPORTS. */
  sent: SentProbe[];
  /** Newest first, at most MAX_PROBE_REPORTS. */
  received: ReceivedProbe[];
  /** Data-plane counters last seen; undefined until the first activity() call. */
  baseline: { sent: number; received: number } | undefined;
  /** Payload arrived since we last sent payload or a Keepalive. */
  pendingInbound: boolean;
  keepaliveAt: number | undefined;
  sendAt: number | undefined;
  /** The probe stream of exploring / inbound-ok. */
  probeAt: number | undefined;
  streamCount: number;
  candidates: LocatorPair[];
  cursor: number;
  cycle: number;
  /** Source → the candidate cycle in which send() refused it. */
  unusable: Map<string, number>;
  ulidAt: number | undefined;
  /** Seconds until the next ULID probe after this one. */
  ulidBackoff: number;
  /** Data field of our next probe report: a per-context sequence number. */
  seq: number;
}

function canon(address: string): string {
  return canonicalIPv6(address) ?? address;
}

function normalise(c: ReapContext): ReapContext {
  const out: ReapContext = {
    id: c.id,
    localContextTag: c.localContextTag,
    peerContextTag: c.peerContextTag,
    localUlid: canon(c.localUlid),
    peerUlid: canon(c.peerUlid),
    localLocators: [...new Set(c.localLocators.map(canon))],
    peerLocators: [...new Set(c.peerLocators.map(canon))],
    current: { local: canon(c.current.local), peer: canon(c.current.peer) },
  };
  if (c.peerKeepaliveTimeout !== undefined) out.peerKeepaliveTimeout = c.peerKeepaliveTimeout;
  return out;
}

/** The earlier of two optional times. */
function earliest(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || (b !== undefined && b < a) ? b : a;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

const STATE_CODE: Record<ReapStateName, number> = {
  operational: ReapState.Operational,
  exploring: ReapState.Exploring,
  'inbound-ok': ReapState.InboundOk,
};

export class ReapMachine {
  readonly timers: ReapTimers;
  private readonly contexts = new Map<number, Reap>();
  private readonly byTag = new Map<number, Reap>();
  /** Each context's earliest timer (dueAt()): filed after every input that may move one. */
  private readonly deadlines = new DeadlineQueue<Reap>();
  private created = 0;
  /** statusChanged() calls so far: lets an input that must report make sure it did once. */
  private reported = 0;

  constructor(
    private readonly effects: ReapEffects,
    private readonly options: ReapOptions,
  ) {
    this.timers = reapTimers(options.timers);
  }

  get size(): number {
    return this.contexts.size;
  }

  // -- queries ---------------------------------------------------------------------------------

  status(id: number): ReapStatus | undefined {
    const r = this.contexts.get(id);
    return r ? this.describe(r) : undefined;
  }

  statuses(): ReapStatus[] {
    return [...this.contexts.values()].map((r) => this.describe(r));
  }

  /** The earliest time (ms) tick() has something to do: the head of the deadline queue. */
  nextDeadline(): number | undefined {
    return this.deadlines.peekAt();
  }

  // -- the context set (from shim6d) -----------------------------------------------------------

  /** A context was added or changed. A changed current pair while exploring means shim6d moved it. */
  upsert(announced: ReapContext): void {
    const ctx = normalise(announced);
    const now = this.options.now();
    const r = this.contexts.get(ctx.id);
    if (!r || r.ctx.localContextTag !== ctx.localContextTag || r.ctx.peerContextTag !== ctx.peerContextTag) {
      if (r) this.forget(r);
      const fresh = this.create(ctx, now);
      this.effects.event(r ? 'context-reset' : 'context-added', { id: ctx.id, current: ctx.current });
      this.changed(fresh);
      return;
    }
    const before = r.ctx;
    r.ctx = ctx;
    if (!samePair(before.current, ctx.current)) {
      if (r.state !== 'operational') {
        this.stopStream(r);
        r.sendAt = undefined;
        this.enter(r, 'operational', now);
        this.effects.event('exploration-ended', { id: r.ctx.id, reason: 'moved by shim6d', current: ctx.current });
      }
      r.ulidAt = undefined;
      this.scheduleUlid(r, now);
      this.schedule(r);
      return;
    }
    if (r.state !== 'operational' && (!sameSet(before.localLocators, ctx.localLocators) || !sameSet(before.peerLocators, ctx.peerLocators))) {
      // New candidates; start the cycle over (the probe schedule goes on).
      r.candidates = orderCandidatePairs(ctx.localLocators, ctx.peerLocators, ctx.current);
      r.cursor = 0;
      r.cycle++;
    }
    this.schedule(r);
  }

  remove(id: number): void {
    const r = this.contexts.get(id);
    if (!r) return;
    this.forget(r);
    this.effects.event('context-removed', { id });
  }

  /** Replaces the whole set (shim6d reconnected): ids that stay with the same tags keep their REAP state. */
  sync(contexts: ReapContext[]): void {
    const keep = new Set(contexts.map((c) => c.id));
    for (const id of [...this.contexts.keys()]) if (!keep.has(id)) this.remove(id);
    for (const c of contexts) this.upsert(c);
  }

  // -- inputs ----------------------------------------------------------------------------------

  /**
   * Cumulative packet counters of a context (data plane or conntrack): an increase of `sent`
   * is payload sent, of `received` payload received. A counter that went down (shim6d
   * restarted) is a new baseline, not traffic; so is the first report of a context.
   */
  activity(id: number, sent: number, received: number): void {
    const r = this.contexts.get(id);
    if (!r || !Number.isFinite(sent) || !Number.isFinite(received)) return;
    const now = this.options.now();
    const base = r.baseline;
    r.baseline = { sent, received };
    if (!base) return;
    const dSent = sent - base.sent;
    const dReceived = received - base.received;
    if (dSent < 0 || dReceived < 0) {
      this.effects.event('counters-reset', { id, sent, received, before: base });
    }
    if (dReceived > 0) this.payloadReceived(r, now);
    if (dSent > 0) this.payloadSent(r, now);
    this.schedule(r);
  }

  /** A received Keepalive or Probe and the locators it came on (source: the peer's). */
  receive(message: KeepaliveMessage | ProbeMessage, source: string, destination: string): void {
    const src = canon(source);
    const dst = canon(destination);
    const r = this.byTag.get(message.receiverContextTag);
    if (!r) {
      this.effects.event('rejected-unknown-context', { tag: message.receiverContextTag, type: message.type, from: src, to: dst });
      return;
    }
    if (!r.ctx.peerLocators.includes(src)) {
      this.effects.event('rejected-locator', { id: r.ctx.id, type: message.type, from: src, to: dst });
      return;
    }
    const now = this.options.now();
    if (message.type === 'Keepalive') this.keepaliveReceived(r, src, dst, now);
    else this.probeReceived(r, message, src, dst, now);
    this.schedule(r);
  }

  /** Start exploring now (the locator in use went away). Nothing if already exploring. */
  explore(id: number, reason: string): void {
    const r = this.contexts.get(id);
    if (!r || r.state === 'exploring') return;
    this.startExploring(r, this.options.now(), reason);
    this.schedule(r);
  }

  /**
   * Timers due by now: only the contexts whose earliest timer has passed, in the order they
   * were created. Returns how many contexts were due (0: it visited none).
   */
  tick(): number {
    const now = this.options.now();
    const due = this.deadlines.popDue(now).sort((x, y) => x.order - y.order);
    let i = 0;
    try {
      for (; i < due.length; i++) {
        const r = due[i] as Reap;
        if (this.contexts.get(r.ctx.id) !== r) continue; // removed by one handled before it
        if (r.keepaliveAt !== undefined && r.keepaliveAt <= now) this.keepaliveTimer(r, now);
        if (r.sendAt !== undefined && r.sendAt <= now) this.sendTimer(r, now);
        if (r.probeAt !== undefined && r.probeAt <= now) this.probeTimer(r, now);
        if (r.ulidAt !== undefined && r.ulidAt <= now) this.ulidTimer(r, now);
        this.schedule(r);
      }
    } finally {
      // An effect threw: the contexts not handled yet keep their timers for the next tick.
      for (; i < due.length; i++) this.schedule(due[i] as Reap);
    }
    return due.length;
  }

  // -- the context record ----------------------------------------------------------------------

  private create(ctx: ReapContext, now: number): Reap {
    const r: Reap = {
      ctx,
      order: this.created++,
      state: 'operational',
      since: now,
      probesSent: 0,
      probesReceived: 0,
      keepalivesSent: 0,
      keepalivesReceived: 0,
      history: [],
      sent: [],
      received: [],
      baseline: undefined,
      pendingInbound: false,
      keepaliveAt: undefined,
      sendAt: undefined,
      probeAt: undefined,
      streamCount: 0,
      candidates: [],
      cursor: 0,
      cycle: 0,
      unusable: new Map(),
      ulidAt: undefined,
      ulidBackoff: this.timers.ulidRetryInterval,
      seq: 0,
    };
    this.contexts.set(ctx.id, r);
    this.byTag.set(ctx.localContextTag, r);
    this.scheduleUlid(r, now);
    this.schedule(r);
    return r;
  }

  private forget(r: Reap): void {
    this.contexts.delete(r.ctx.id);
    if (this.byTag.get(r.ctx.localContextTag) === r) this.byTag.delete(r.ctx.localContextTag);
    this.deadlines.delete(r);
  }

  /** When tick() has something to do for this context: the earliest of its four timers. */
  private dueAt(r: Reap): number | undefined {
    return earliest(earliest(r.keepaliveAt, r.sendAt), earliest(r.probeAt, r.ulidAt));
  }

  /**
   * Files the context in the deadline queue at dueAt(): at the end of every input that may
   * move one of its timers (create, upsert, activity, receive, explore, and tick's own visit).
   */
  private schedule(r: Reap): void {
    if (this.contexts.get(r.ctx.id) !== r) return;
    const at = this.dueAt(r);
    if (at === undefined) this.deadlines.delete(r);
    else this.deadlines.set(r, at);
  }

  private describe(r: Reap): ReapStatus {
    return {
      id: r.ctx.id,
      state: r.state,
      since: r.since,
      probesSent: r.probesSent,
      probesReceived: r.probesReceived,
      keepalivesSent: r.keepalivesSent,
      keepalivesReceived: r.keepalivesReceived,
      current: { ...r.ctx.current },
      history: r.history.map((h) => ({ ...h })),
    };
  }

  private changed(r: Reap): void {
    this.reported++;
    this.effects.statusChanged(this.describe(r));
  }

  private enter(r: Reap, state: ReapStateName, now: number): void {
    if (r.state === state) return;
    r.state = state;
    r.since = now;
    this.changed(r);
  }

  private remember(r: Reap, record: ProbeRecord): void {
    if (this.timers.historyLength === 0) return;
    r.history.push(record);
    if (r.history.length > this.timers.historyLength) r.history.splice(0, r.history.length - this.timers.historyLength);
  }

  private onUlidPair(r: Reap): boolean {
    return r.ctx.current.local === r.ctx.localUlid && r.ctx.current.peer === r.ctx.peerUlid;
  }

  // -- failure detection (operational) ---------------------------------------------------------

  /** Anything from the peer: the Send timer stops (operational) or restarts (inbound-ok, on probes). */
  private heard(r: Reap, how: 'payload' | 'keepalive' | 'probe', now: number): void {
    if (r.state === 'operational') r.sendAt = undefined;
    else if (r.state === 'inbound-ok' && how === 'probe') r.sendAt = now + this.timers.sendTimeout * 1000;
  }

  private payloadReceived(r: Reap, now: number): void {
    this.heard(r, 'payload', now);
    if (r.state === 'operational') {
      r.pendingInbound = true;
      r.keepaliveAt ??= now + this.keepaliveIntervalMs(r);
    } else if (r.state === 'exploring') {
      this.becomeInboundOk(r, now, 'payload received');
      this.streamProbe(r, now);
    }
  }

  private payloadSent(r: Reap, now: number): void {
    if (r.state !== 'operational') return;
    // Our payload answers the peer: no Keepalive needed.
    r.pendingInbound = false;
    r.keepaliveAt = undefined;
    r.sendAt ??= now + this.timers.sendTimeout * 1000;
  }

  private keepaliveIntervalMs(r: Reap): number {
    return Math.max(1, Math.round(keepaliveIntervalFor(this.timers, r.ctx.peerKeepaliveTimeout) * 1000));
  }

  private keepaliveTimer(r: Reap, now: number): void {
    if (r.state !== 'operational' || !r.pendingInbound) {
      r.keepaliveAt = undefined;
      return;
    }
    r.pendingInbound = false;
    // Checked again one interval later: another Keepalive only if more payload came meanwhile.
    r.keepaliveAt = now + this.keepaliveIntervalMs(r);
    const { local, peer } = r.ctx.current;
    const keepalive: KeepaliveMessage = { type: 'Keepalive', receiverContextTag: r.ctx.peerContextTag, options: [] };
    if (this.effects.send(keepalive, local, peer)) {
      r.keepalivesSent++;
      this.effects.event('keepalive-sent', { id: r.ctx.id, from: local, to: peer });
    } else {
      this.effects.event('keepalive-unsent', { id: r.ctx.id, from: local, to: peer });
    }
  }

  private sendTimer(r: Reap, now: number): void {
    r.sendAt = undefined;
    if (r.state === 'exploring') return;
    this.effects.event('send-timeout', { id: r.ctx.id, state: r.state, current: { ...r.ctx.current } });
    this.startExploring(r, now, r.state === 'operational' ? 'send timeout' : 'send timeout in inbound-ok');
  }

  private keepaliveReceived(r: Reap, src: string, dst: string, now: number): void {
    r.keepalivesReceived++;
    this.effects.event('keepalive-received', { id: r.ctx.id, from: src, to: dst });
    this.heard(r, 'keepalive', now);
    if (r.state === 'exploring') {
      this.becomeInboundOk(r, now, 'keepalive received');
      this.sendProbe(r, { local: dst, peer: src }, 'answer', now);
    }
  }

  // -- exploration ------------------------------------------------------------------------------

  private startExploring(r: Reap, now: number, reason: string): void {
    const from = r.state;
    r.pendingInbound = false;
    r.keepaliveAt = undefined;
    r.sendAt = undefined;
    r.ulidAt = undefined;
    if (from === 'operational') {
      // Reports of an earlier exploration or of ULID checks prove nothing now.
      r.sent = [];
      r.received = [];
    }
    this.enter(r, 'exploring', now);
    this.effects.event('exploration-started', { id: r.ctx.id, reason, from, failed: { ...r.ctx.current } });
    this.startStream(r, now, true);
  }

  private becomeInboundOk(r: Reap, now: number, reason: string): void {
    const from = r.state;
    r.pendingInbound = false;
    r.keepaliveAt = undefined;
    r.ulidAt = undefined;
    r.sendAt = now + this.timers.sendTimeout * 1000;
    this.enter(r, 'inbound-ok', now);
    this.effects.event('inbound-ok', { id: r.ctx.id, reason, from });
  }

  /** A new cycle over the candidate pairs and a new burst; the first probe now unless `sendNow` is false. */
  private startStream(r: Reap, now: number, sendNow: boolean): void {
    r.candidates = orderCandidatePairs(r.ctx.localLocators, r.ctx.peerLocators, r.ctx.current);
    r.cursor = 0;
    r.cycle++;
    r.streamCount = 0;
    if (sendNow) {
      this.probeTimer(r, now);
    } else {
      // The caller has just sent the first probe of the burst.
      r.streamCount = 1;
      r.probeAt = now + this.probeDelayMs(0);
    }
  }

  private stopStream(r: Reap): void {
    r.probeAt = undefined;
    r.streamCount = 0;
  }

  private probeDelayMs(sent: number): number {
    return Math.max(1, jitteredMs(nominalProbeInterval(this.timers, sent), this.options.random(), this.timers.maxProbeInterval));
  }

  private probeTimer(r: Reap, now: number): void {
    if (r.state === 'operational') {
      this.stopStream(r);
      return;
    }
    this.streamProbe(r, now);
    r.probeAt = now + this.probeDelayMs(r.streamCount);
    r.streamCount++;
  }

  /** One probe to the next usable candidate pair; a source send() refused is skipped for the rest of the cycle. */
  private streamProbe(r: Reap, now: number): boolean {
    const n = r.candidates.length;
    const refusedNow = new Set<string>();
    for (let tries = 0; tries < n; tries++) {
      if (r.cursor >= n) {
        r.cursor = 0;
        r.cycle++;
      }
      const pair = r.candidates[r.cursor++] as LocatorPair;
      if (refusedNow.has(pair.local) || r.unusable.get(pair.local) === r.cycle) continue;
      if (this.sendProbe(r, pair, 'explore', now)) return true;
      refusedNow.add(pair.local);
      r.unusable.set(pair.local, r.cycle);
      this.effects.event('source-unusable', { id: r.ctx.id, source: pair.local, peer: pair.peer });
    }
    this.effects.event('no-usable-source', { id: r.ctx.id, candidates: n });
    return false;
  }

  /**
   * Sends one Probe on `pair` in our current state. Exploring / inbound-ok: all our recent
   * reports. Operational: only this probe, and `answering` (the probe it answers) if any.
   */
  private sendProbe(r: Reap, pair: LocatorPair, purpose: Purpose, now: number, answering?: ProbeReport): boolean {
    const self: SentProbe = { nonce: this.options.random32() >>> 0, data: r.seq, local: pair.local, peer: pair.peer, at: now, purpose };
    r.seq = (r.seq + 1) >>> 0;
    const report = (p: SentProbe): ProbeReport => ({ source: p.local, destination: p.peer, nonce: p.nonce, data: p.data });
    const reportOf = (p: ReceivedProbe): ProbeReport => ({ source: p.source, destination: p.destination, nonce: p.nonce, data: p.data });
    const operational = r.state === 'operational';
    const probe: ProbeMessage = {
      type: 'Probe',
      receiverContextTag: r.ctx.peerContextTag,
      reapState: STATE_CODE[r.state],
      sentProbes: operational ? [report(self)] : [self, ...r.sent.slice(0, MAX_PROBE_REPORTS - 1)].map(report),
      receivedProbes: operational ? (answering ? [answering] : []) : r.received.slice(0, MAX_PROBE_REPORTS).map(reportOf),
      options: [],
    };
    // Recorded before send(): an answer may come back before send() returns.
    r.sent.unshift(self);
    if (r.sent.length > MAX_PROBE_REPORTS) r.sent.length = MAX_PROBE_REPORTS;
    if (!this.effects.send(probe, pair.local, pair.peer)) {
      const i = r.sent.indexOf(self);
      if (i >= 0) r.sent.splice(i, 1);
      return false;
    }
    r.probesSent++;
    this.remember(r, { at: now, direction: 'sent', local: pair.local, peer: pair.peer, nonce: self.nonce });
    this.effects.event('probe-sent', { id: r.ctx.id, from: pair.local, to: pair.peer, nonce: self.nonce, state: r.state, purpose });
    this.changed(r);
    return true;
  }

  private probeReceived(r: Reap, m: ProbeMessage, src: string, dst: string, now: number): void {
    const before = this.reported;
    this.handleProbe(r, m, src, dst, now);
    // Every probe received shows on the console, whatever it led to.
    if (this.reported === before) this.changed(r);
  }

  private handleProbe(r: Reap, m: ProbeMessage, src: string, dst: string, now: number): void {
    const own = m.sentProbes[0];
    const duplicate = own !== undefined && r.received.some((p) => p.nonce === own.nonce && p.source === own.source && p.destination === own.destination);
    r.probesReceived++;
    this.remember(r, { at: now, direction: 'received', local: dst, peer: src, nonce: own?.nonce ?? 0 });
    this.effects.event('probe-received', { id: r.ctx.id, from: src, to: dst, nonce: own?.nonce, peerState: m.reapState, duplicate });
    if (duplicate) this.effects.event('rejected-duplicate', { id: r.ctx.id, from: src, nonce: own.nonce });
    if (r.state === 'operational' && m.reapState === ReapState.Exploring && !duplicate) {
      // The peer starts an exploration: old reports prove nothing.
      r.sent = [];
      r.received = [];
    }
    if (own && !duplicate) {
      r.received.unshift({ source: own.source, destination: own.destination, nonce: own.nonce, data: own.data, at: now });
      if (r.received.length > MAX_PROBE_REPORTS) r.received.length = MAX_PROBE_REPORTS;
    }
    this.heard(r, 'probe', now);
    const arrival: LocatorPair = { local: dst, peer: src };
    const answer = own && !duplicate ? { source: own.source, destination: own.destination, nonce: own.nonce, data: own.data } : undefined;

    if (r.state === 'operational') {
      this.ulidConfirmed(r, m, arrival);
      if (m.reapState === ReapState.Exploring) {
        if (duplicate) return;
        // The peer does not hear us: explore as well, starting with an answer on the reverse pair.
        this.becomeInboundOk(r, now, 'peer exploring');
        this.sendProbe(r, arrival, 'answer', now);
        this.startStream(r, now, false);
        return;
      }
      if (answer && m.reapState === ReapState.InboundOk) {
        // The peer waits for a report of its probe.
        this.sendProbe(r, r.ctx.current, 'answer', now, answer);
      } else if (answer && m.reapState === ReapState.Operational && !this.reportsOurs(r, m)) {
        // A check (such as the peer's ULID probe): answer on the reverse pair, so that the answer proves both directions.
        this.sendProbe(r, arrival, 'answer', now, answer);
      }
      return;
    }

    const found = this.bestReported(r, m, arrival);
    if (found) {
      this.finish(r, found, m.reapState, answer, now);
      return;
    }
    if (r.state === 'exploring') this.becomeInboundOk(r, now, 'probe received');
    if (answer) this.sendProbe(r, arrival, 'answer', now);
  }

  /** True if `m` reports any probe of ours. */
  private reportsOurs(r: Reap, m: ProbeMessage): boolean {
    return m.receivedProbes.some((rep) => r.sent.some((s) => s.nonce === rep.nonce && s.local === rep.source && s.peer === rep.destination));
  }

  /**
   * Of our probes that `m` reports as received, the pair to move to: first one also proven in
   * the other direction (`m` came on its reverse, or another probe of the peer did), then the
   * current pair, then the most recent.
   */
  private bestReported(r: Reap, m: ProbeMessage, arrival: LocatorPair): SentProbe | undefined {
    let best: SentProbe | undefined;
    let bestScore = -1;
    for (const s of r.sent) {
      if (!m.receivedProbes.some((rep) => rep.nonce === s.nonce && rep.source === s.local && rep.destination === s.peer)) continue;
      const reverse = samePair(s, arrival) || r.received.some((p) => p.source === s.peer && p.destination === s.local);
      const score = (reverse ? 2 : 0) + (samePair(s, r.ctx.current) ? 1 : 0);
      if (score > bestScore) {
        best = s;
        bestScore = score;
      }
    }
    return best;
  }

  /** Exploration over: `found`'s pair works from us to the peer. */
  private finish(r: Reap, found: SentProbe, peerState: number, answer: ProbeReport | undefined, now: number): void {
    const pair = { local: found.local, peer: found.peer };
    const changed = !samePair(pair, r.ctx.current);
    this.stopStream(r);
    r.sendAt = undefined;
    r.keepaliveAt = undefined;
    r.pendingInbound = false;
    r.ctx.current = { ...pair };
    this.enter(r, 'operational', now);
    this.effects.event('pair-found', { id: r.ctx.id, pair, changed, peerState });
    if (changed) this.effects.pairChosen(r.ctx.id, { ...pair });
    r.ulidAt = undefined;
    r.ulidBackoff = this.timers.ulidRetryInterval;
    this.scheduleUlid(r, now);
    // The peer is still exploring or waiting: report its probe so that it can finish too.
    if (peerState !== ReapState.Operational && answer) this.sendProbe(r, pair, 'answer', now, answer);
  }

  // -- the return to the ULID pair (our addition) ---------------------------------------------

  private scheduleUlid(r: Reap, now: number): void {
    if (r.state !== 'operational' || this.onUlidPair(r)) {
      r.ulidAt = undefined;
      return;
    }
    if (r.ulidAt !== undefined) return;
    r.ulidBackoff = this.timers.ulidRetryInterval;
    r.ulidAt = now + this.ulidDelayMs(r.ulidBackoff);
  }

  private ulidDelayMs(seconds: number): number {
    return Math.max(1, jitteredMs(seconds, this.options.random(), Math.max(this.timers.maxProbeInterval, this.timers.ulidRetryInterval)));
  }

  private ulidTimer(r: Reap, now: number): void {
    r.ulidAt = undefined;
    if (r.state !== 'operational' || this.onUlidPair(r)) return;
    const ulids = { local: r.ctx.localUlid, peer: r.ctx.peerUlid };
    if (!this.sendProbe(r, ulids, 'ulid', now)) this.effects.event('ulid-probe-unsent', { id: r.ctx.id, from: ulids.local, to: ulids.peer });
    // Backed off until an answer comes (which moves the context and stops this).
    const cap = Math.max(this.timers.maxProbeInterval, this.timers.ulidRetryInterval);
    r.ulidBackoff = Math.min(r.ulidBackoff * 2, cap);
    r.ulidAt = now + this.ulidDelayMs(r.ulidBackoff);
  }

  /** `m`, arrived on the ULID pair, reports our ULID probe: back to the ULIDs. */
  private ulidConfirmed(r: Reap, m: ProbeMessage, arrival: LocatorPair): boolean {
    if (this.onUlidPair(r)) return false;
    const ulids = { local: r.ctx.localUlid, peer: r.ctx.peerUlid };
    if (!samePair(arrival, ulids)) return false;
    const reported = r.sent.some((s) => s.purpose === 'ulid' && samePair(s, ulids) && m.receivedProbes.some((rep) => rep.nonce === s.nonce && rep.source === s.local && rep.destination === s.peer));
    if (!reported) return false;
    r.ctx.current = { ...ulids };
    r.ulidAt = undefined;
    r.ulidBackoff = this.timers.ulidRetryInterval;
    this.effects.event('ulid-pair-restored', { id: r.ctx.id, pair: ulids });
    this.effects.pairChosen(r.ctx.id, { ...ulids });
    this.changed(r);
    return true;
  }
}
