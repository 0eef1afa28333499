/**
 * When a ULID pair deserves a Shim6 context (pure; the clock is injected): once the flows
 * between a local address and a peer have carried `packetThreshold` packets (default 50,
 * counted both ways, summed over all flows of the pair since its first one), or have been
 * active for `activeSeconds` (default 10 s). Never for link-local, loopback, multicast,
 * unspecified or IPv4-mapped addresses, never for Shim6's own messages (protocol 140), never
 * while the peer is in hold-down or the pair already has a context.
 *
 * Input: observations of flows, as the conntrack adapter (shim6d/conntrack.ts) reports
 * them, events and poll() samples alike: a flow's `packets` is its cumulative counter.
 * - A flow is identified by `flow` (conntrack: protocol, tuple and id; default: source,
 *   destination and protocol). The pair's count is the sum over its flows of what each
 *   counted since the pair was first seen (or last forgotten): repeated reports of a flow
 *   add only their growth; a flow that ends ('destroy', or not reported for idleSeconds)
 *   keeps what it contributed: removal subtracts nothing. A counter that goes backwards is
 *   a new flow under a reused identity.
 * - `counted: false` (conntrack NEW/UPDATE events carry no counters) says only that the flow
 *   exists: its packets are not read.
 * - Orientation: the local address is the one for which isLocal() is true, whichever side
 *   opened the flow; a flow with neither or both addresses local is ignored.
 * - Activity: an observation that shows new packets, or a flow not seen before, is
 *   activity. A run of activity with no pause longer than activityGapSeconds (default 5 s)
 *   makes the pair active; it starts when its first observation is made (or when the
 *   flow that opened it began, if the sample says: firstSeenAt). The time criterion is met
 *   once a run has lasted activeSeconds. A flow that merely exists (an idle TCP connection)
 *   is not activity.
 *
 * Reporting: a pair is returned once, by the observe() or check() call in which it first
 * qualifies and is not suppressed; then not again until forget(pair), which restarts its
 * count and activity from that moment (flows that still exist count only their new packets).
 * A pair that qualifies while its peer is in hold-down or while it has a context is not
 * reported, and is reconsidered on each later observation and by check().
 *
 * Memory: pairs not observed for idleSeconds (default 600 s) are forgotten, at most
 * maxPairs (default 65536) are kept (the least recently observed is dropped first), and at
 * most maxFlowsPerPair flows per pair (the oldest one is retired, keeping its count).
 */
import { excludedAddressClass, formatIPv6, parseIPv6, type ExcludedClass } from '../protocol/address';
import { IPPROTO_SHIM6 } from '../protocol/constants';

export interface ContextHeuristicOptions {
  /** Packets (both ways, all flows of the pair) that qualify a pair; default 50; 0 disables. */
  packetThreshold?: number;
  /** Seconds of activity that qualify a pair; default 10; 0 disables. */
  activeSeconds?: number;
  /** Longest pause, seconds, that does not end a run of activity; default 5. */
  activityGapSeconds?: number;
  /** Pairs not observed for this long, seconds, are forgotten; default 600. */
  idleSeconds?: number;
  /** Most pairs kept (default 65536). */
  maxPairs?: number;
  /** Most flows tracked per pair (default 1024). */
  maxFlowsPerPair?: number;
  /** True while the peer is in hold-down (it did not answer an I1): no context. */
  holdDownCheck: (peer: string) => boolean;
  /** True if a context exists (or is being set up) for this ULID pair. */
  hasContext: (local: string, peer: string) => boolean;
  /** True for this host's own addresses (canonical RFC 5952 text is passed). */
  isLocal: (address: string) => boolean;
  /** Milliseconds, wall clock (conntrack's firstSeenAt is wall clock); default Date.now. */
  clock?: () => number;
}

/** One report of one flow (a ConntrackEvent or FlowSample fits). */
export interface FlowObservation {
  source: string;
  destination: string;
  /** The flow's cumulative packet counter, both ways. */
  packets: number;
  /** False when the report carries no counters (packets is then not read); default true. */
  counted?: boolean;
  /** Identity of the flow; default source, destination and protocol. */
  flow?: string;
  protocol?: number;
  /** When the flow began, ms (same clock as `now`). */
  firstSeenAt?: number;
  /** 'destroy' ends the flow (its count stays with the pair). */
  kind?: 'new' | 'update' | 'destroy' | 'sample';
}

export interface UlidPair {
  local: string;
  peer: string;
}

export interface ContextCandidate extends UlidPair {
  /** Which criterion was met first. */
  reason: 'packets' | 'active';
  /** The pair's packet count when reported. */
  packets: number;
  /** Length of the current run of activity when reported, seconds. */
  activeSeconds: number;
}

export interface PairSnapshot extends UlidPair {
  packets: number;
  flows: number;
  firstSeen: number;
  lastSeen: number;
  /** Current run of activity, seconds (0 if none). */
  activeSeconds: number;
  /** Criterion met (and when), if any. */
  qualified?: { reason: 'packets' | 'active'; at: number };
  reported: boolean;
}

export interface HeuristicStats {
  observations: number;
  pairs: number;
  /** Observations ignored: an address that does not parse. */
  invalid: number;
  /** Observations ignored per excluded address class. */
  excluded: Record<ExcludedClass, number>;
  /** Observations ignored: Shim6's own messages (protocol 140: I1s, R1s, probes). */
  shim6Messages: number;
  /** Observations ignored: neither address is local / both are. */
  notLocal: number;
  bothLocal: number;
  /** Pairs reported. */
  reported: number;
  /** Evaluations of a qualified pair that were suppressed. */
  suppressedHoldDown: number;
  suppressedHasContext: number;
  /** Pairs forgotten for idleness, dropped for maxPairs, forgotten by forget(). */
  forgottenIdle: number;
  evicted: number;
  forgotten: number;
}

interface FlowState {
  packets: number;
  /** What the counter stood at when counting (re)started for the pair. */
  base: number;
  lastSeen: number;
}

interface PairState extends UlidPair {
  key: string;
  /** Least recently seen first. */
  flows: Map<string, FlowState>;
  /** Packets of flows no longer tracked. */
  retired: number;
  firstSeen: number;
  lastSeen: number;
  runStart: number | undefined;
  lastActivity: number | undefined;
  qualified: { reason: 'packets' | 'active'; at: number } | undefined;
  reported: boolean;
}

const pairKey = (local: string, peer: string): string => `${local} ${peer}`;

function positive(name: string, value: number, allowZero: boolean): number {
  if (!Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    throw new RangeError(`ContextHeuristic: ${name} must be a ${allowZero ? 'non-negative' : 'positive'} number, not ${value}`);
  }
  return value;
}

export class ContextHeuristic {
  readonly packetThreshold: number;
  readonly activeSeconds: number;
  readonly activityGapSeconds: number;
  readonly idleSeconds: number;
  readonly maxPairs: number;
  readonly maxFlowsPerPair: number;
  private readonly holdDownCheck: (peer: string) => boolean;
  private readonly hasContext: (local: string, peer: string) => boolean;
  private readonly isLocal: (address: string) => boolean;
  private readonly clock: () => number;
  /** Least recently observed first. */
  private readonly pairsByKey = new Map<string, PairState>();
  /** Keys of pairs that qualified but were suppressed (hold-down, existing context). */
  private readonly waiting = new Set<string>();
  private readonly counters: Omit<HeuristicStats, 'pairs' | 'excluded'> = {
    observations: 0,
    invalid: 0,
    shim6Messages: 0,
    notLocal: 0,
    bothLocal: 0,
    reported: 0,
    suppressedHoldDown: 0,
    suppressedHasContext: 0,
    forgottenIdle: 0,
    evicted: 0,
    forgotten: 0,
  };
  private readonly excluded: Record<ExcludedClass, number> = { unspecified: 0, loopback: 0, 'ipv4-mapped': 0, 'link-local': 0, multicast: 0 };

  constructor(options: ContextHeuristicOptions) {
    this.packetThreshold = positive('packetThreshold', options.packetThreshold ?? 50, true);
    this.activeSeconds = positive('activeSeconds', options.activeSeconds ?? 10, true);
    this.activityGapSeconds = positive('activityGapSeconds', options.activityGapSeconds ?? 5, true);
    this.idleSeconds = positive('idleSeconds', options.idleSeconds ?? 600, false);
    this.maxPairs = positive('maxPairs', options.maxPairs ?? 65536, false);
    this.maxFlowsPerPair = positive('maxFlowsPerPair', options.maxFlowsPerPair ?? 1024, false);
    this.holdDownCheck = options.holdDownCheck;
    this.hasContext = options.hasContext;
    this.isLocal = options.isLocal;
    this.clock = options.clock ?? Date.now;
  }

  /**
   * Takes one report of one flow. Returns the pair if this report makes it qualify (and it
   * is not suppressed): at most one candidate.
   */
  observe(sample: FlowObservation, now: number = this.clock()): ContextCandidate[] {
    this.counters.observations++;
    if (sample.protocol === IPPROTO_SHIM6) {
      // A context's own signalling must not make the pair ask for another context.
      this.counters.shim6Messages++;
      return [];
    }
    const src = parseIPv6(sample.source);
    const dst = parseIPv6(sample.destination);
    if (!src || !dst) {
      this.counters.invalid++;
      return [];
    }
    const excluded = excludedAddressClass(src) ?? excludedAddressClass(dst);
    if (excluded) {
      this.excluded[excluded]++;
      return [];
    }
    const source = formatIPv6(src);
    const destination = formatIPv6(dst);
    const srcLocal = this.isLocal(source);
    const dstLocal = this.isLocal(destination);
    if (srcLocal && dstLocal) {
      this.counters.bothLocal++;
      return [];
    }
    if (!srcLocal && !dstLocal) {
      this.counters.notLocal++;
      return [];
    }
    const local = srcLocal ? source : destination;
    const peer = srcLocal ? destination : source;
    const pair = this.touchPair(local, peer, now);
    this.account(pair, sample, source, destination, now);
    this.pruneFlows(pair, now);
    this.sweep(now);
    const c = this.evaluate(pair, now);
    return c ? [c] : [];
  }

  /**
   * Forgets idle pairs, then reconsiders the qualified pairs that were suppressed (hold-down
   * over, context gone). Call it now and then (every few seconds).
   */
  check(now: number = this.clock()): ContextCandidate[] {
    this.sweep(now);
    const out: ContextCandidate[] = [];
    for (const key of [...this.waiting]) {
      const pair = this.pairsByKey.get(key);
      if (!pair) {
        this.waiting.delete(key);
        continue;
      }
      const c = this.evaluate(pair, now);
      if (c) out.push(c);
    }
    return out;
  }

  /**
   * Restarts the pair: its count and activity start again from now (packets its flows
   * carried so far no longer count) and it may be reported again. False if unknown.
   */
  forget(pair: UlidPair): boolean {
    const key = this.keyOf(pair);
    const p = key === undefined ? undefined : this.pairsByKey.get(key);
    if (!p || key === undefined) return false;
    for (const f of p.flows.values()) f.base = f.packets;
    p.retired = 0;
    p.runStart = p.lastActivity = undefined;
    p.qualified = undefined;
    p.reported = false;
    this.waiting.delete(key);
    this.counters.forgotten++;
    return true;
  }

  /** Drops pairs not observed for idleSeconds. Returns how many. */
  sweep(now: number = this.clock()): number {
    const limit = now - this.idleSeconds * 1000;
    let n = 0;
    for (const [key, p] of this.pairsByKey) {
      if (p.lastSeen > limit) break; // least recently observed first
      this.dropPair(key);
      n++;
    }
    this.counters.forgottenIdle += n;
    return n;
  }

  /** What is known about one pair, if anything. */
  pair(pair: UlidPair, now: number = this.clock()): PairSnapshot | undefined {
    const key = this.keyOf(pair);
    const p = key === undefined ? undefined : this.pairsByKey.get(key);
    return p ? this.snapshot(p, now) : undefined;
  }

  /**
   * When the pair was last observed (ms), if it is known: pair()'s lastSeen without the
   * snapshot, for callers that ask often. `local` and `peer` must be canonical text (RFC 5952),
   * as a context's ULIDs are.
   */
  lastSeen(local: string, peer: string): number | undefined {
    return this.pairsByKey.get(pairKey(local, peer))?.lastSeen;
  }

  /** Every pair, least recently observed first. */
  pairs(now: number = this.clock()): PairSnapshot[] {
    return [...this.pairsByKey.values()].map((p) => this.snapshot(p, now));
  }

  stats(): HeuristicStats {
    return { ...this.counters, pairs: this.pairsByKey.size, excluded: { ...this.excluded } };
  }

  private keyOf(pair: UlidPair): string | undefined {
    const l = parseIPv6(pair.local);
    const r = parseIPv6(pair.peer);
    return l && r ? pairKey(formatIPv6(l), formatIPv6(r)) : undefined;
  }

  private touchPair(local: string, peer: string, now: number): PairState {
    const key = pairKey(local, peer);
    let p = this.pairsByKey.get(key);
    if (p) {
      this.pairsByKey.delete(key); // re-inserted last: most recently observed
    } else {
      while (this.pairsByKey.size >= this.maxPairs) {
        const oldest = this.pairsByKey.keys().next().value as string;
        this.dropPair(oldest);
        this.counters.evicted++;
      }
      p = { key, local, peer, flows: new Map(), retired: 0, firstSeen: now, lastSeen: now, runStart: undefined, lastActivity: undefined, qualified: undefined, reported: false };
    }
    p.lastSeen = Math.max(p.lastSeen, now);
    this.pairsByKey.set(key, p);
    return p;
  }

  private dropPair(key: string): void {
    this.pairsByKey.delete(key);
    this.waiting.delete(key);
  }

  /** Folds one report into the pair's count and activity. */
  private account(p: PairState, s: FlowObservation, source: string, destination: string, now: number): void {
    const id = s.flow ?? `${source} ${destination} ${s.protocol ?? '-'}`;
    const counted = s.counted !== false && Number.isFinite(s.packets) && s.packets >= 0;
    let f = p.flows.get(id);
    let active = false;
    let opened = false;
    if (f && counted && s.packets < f.packets) {
      // The counter went back: another flow under the same identity. The old one keeps its count.
      p.retired += f.packets - f.base;
      f = undefined;
    }
    if (!f) {
      f = { packets: 0, base: 0, lastSeen: now };
      opened = active = true;
      if (p.flows.size >= this.maxFlowsPerPair) {
        const oldest = p.flows.keys().next().value as string;
        this.retireFlow(p, oldest);
      }
    } else {
      p.flows.delete(id); // re-inserted last: most recently seen
    }
    if (counted && s.packets > f.packets) {
      f.packets = s.packets;
      active = true;
    }
    f.lastSeen = Math.max(f.lastSeen, now);
    p.flows.set(id, f);
    if (s.kind === 'destroy') this.retireFlow(p, id);
    if (!active) return;
    const gapMs = this.activityGapSeconds * 1000;
    if (p.runStart === undefined || p.lastActivity === undefined || now - p.lastActivity > gapMs) {
      let start = now;
      if (opened && s.firstSeenAt !== undefined && Number.isFinite(s.firstSeenAt) && s.firstSeenAt < now) {
        // The flow began before it was seen: the run began then (not before the last activity).
        start = Math.max(s.firstSeenAt, p.lastActivity ?? -Infinity);
      }
      p.runStart = start;
    }
    p.lastActivity = Math.max(p.lastActivity ?? now, now);
  }

  private retireFlow(p: PairState, id: string): void {
    const f = p.flows.get(id);
    if (!f) return;
    p.retired += f.packets - f.base;
    p.flows.delete(id);
  }

  /** Retires the flows of a pair not reported for idleSeconds (oldest first). */
  private pruneFlows(p: PairState, now: number): void {
    const limit = now - this.idleSeconds * 1000;
    for (const [id, f] of p.flows) {
      if (f.lastSeen > limit) break;
      this.retireFlow(p, id);
    }
  }

  private count(p: PairState): number {
    let n = p.retired;
    for (const f of p.flows.values()) n += f.packets - f.base;
    return n;
  }

  /** Length of the current run of activity, ms (0 if the pair is not active now). */
  private activeMs(p: PairState, now: number): number {
    if (p.runStart === undefined || p.lastActivity === undefined) return 0;
    if (now - p.lastActivity > this.activityGapSeconds * 1000) return 0;
    return Math.max(0, p.lastActivity - p.runStart);
  }

  private evaluate(p: PairState, now: number): ContextCandidate | undefined {
    if (p.reported) return undefined;
    const packets = this.count(p);
    const activeMs = this.activeMs(p, now);
    if (!p.qualified) {
      if (this.packetThreshold > 0 && packets >= this.packetThreshold) p.qualified = { reason: 'packets', at: now };
      else if (this.activeSeconds > 0 && activeMs >= this.activeSeconds * 1000) p.qualified = { reason: 'active', at: now };
      else return undefined;
    }
    // The context lookup is one map access; the hold-down check may look at every context of the peer.
    if (this.hasContext(p.local, p.peer)) {
      this.counters.suppressedHasContext++;
      this.waiting.add(p.key);
      return undefined;
    }
    if (this.holdDownCheck(p.peer)) {
      this.counters.suppressedHoldDown++;
      this.waiting.add(p.key);
      return undefined;
    }
    this.waiting.delete(p.key);
    p.reported = true;
    this.counters.reported++;
    return { local: p.local, peer: p.peer, reason: p.qualified.reason, packets, activeSeconds: activeMs / 1000 };
  }

  private snapshot(p: PairState, now: number): PairSnapshot {
    const s: PairSnapshot = {
      local: p.local,
      peer: p.peer,
      packets: this.count(p),
      flows: p.flows.size,
      firstSeen: p.firstSeen,
      lastSeen: p.lastSeen,
      activeSeconds: this.activeMs(p, now) / 1000,
      reported: p.reported,
    };
    if (p.qualified) s.qualified = { ...p.qualified };
    return s;
  }
}
