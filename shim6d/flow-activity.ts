/**
 * Per ULID pair, how many packets this host sent to the peer and received from it, as
 * monotonic counters built from conntrack's per-flow, per-direction counters. reapd only
 * needs to know that they moved (REAP section 3: "data is being sent", "data is being
 * received"), and this gives it that for contexts on their ULID pair without any per-packet
 * work in user space.
 *
 * Only payload counts: flows of protocol 140 (Shim6's own messages) are ignored.
 *
 * Pure: fed with conntrack samples (a full dump between beginDump() and endDump(), and
 * events), asked for a pair's counters. Flows that leave the table stop contributing; what
 * they counted stays in the pair's totals, so the totals never go down.
 */
import { IPPROTO_SHIM6 } from '../protocol/constants';
import type { FlowSample } from './conntrack';

export interface PairActivity {
  /** Packets from the local ULID to the peer's, over all of the pair's flows so far. */
  sent: number;
  /** Packets from the peer's ULID to ours. */
  received: number;
}

interface FlowState {
  pair: string;
  local: string;
  peer: string;
  /** Whether the local host is the flow's original-direction source. */
  localIsOriginal: boolean;
  original: number;
  reply: number;
  /** The dump that last saw it. */
  dump: number;
}

/** A pair's totals, and the pair (prune() asks about it without taking its key apart). */
interface PairState extends PairActivity {
  local: string;
  peer: string;
}

export class FlowActivity {
  private readonly flows = new Map<string, FlowState>();
  private readonly pairs = new Map<string, PairState>();
  private dump = 0;

  constructor(
    /** Whether an address is one of this host's (a ULID or locator). */
    private readonly isLocal: (address: string) => boolean,
    /** Whether a (local, peer) ULID pair is worth tracking (it has a context). */
    private readonly wanted: (local: string, peer: string) => boolean,
  ) {}

  static key(local: string, peer: string): string {
    return `${local} ${peer}`;
  }

  beginDump(): void {
    this.dump++;
  }

  /** Forgets the flows the dump since beginDump() did not list (they ended). */
  endDump(): void {
    for (const [k, f] of this.flows) if (f.dump !== this.dump) this.flows.delete(k);
  }

  /** One flow's counters: from a dump, or from an event (a 'destroy' ends the flow). */
  observe(sample: FlowSample & { kind?: string }): void {
    // Shim6's own messages (protocol 140: Keepalives, Probes, the context exchange) are not
    // payload. Counting our own Keepalive as data sent would end the wait for the next one.
    if (sample.protocol === IPPROTO_SHIM6) return;
    if (!sample.counted || sample.originalPackets === undefined || sample.replyPackets === undefined) {
      if (sample.kind === 'destroy') this.flows.delete(sample.flow);
      return;
    }
    let f = this.flows.get(sample.flow);
    if (f === undefined) {
      let localIsOriginal: boolean;
      if (this.isLocal(sample.source)) localIsOriginal = true;
      else if (this.isLocal(sample.destination)) localIsOriginal = false;
      else return;
      const local = localIsOriginal ? sample.source : sample.destination;
      const peer = localIsOriginal ? sample.destination : sample.source;
      if (!this.wanted(local, peer)) return;
      f = { pair: FlowActivity.key(local, peer), local, peer, localIsOriginal, original: 0, reply: 0, dump: this.dump };
      this.flows.set(sample.flow, f);
    }
    // Counters of one conntrack entry only grow; a smaller value is a new entry under a reused key.
    const dOriginal = sample.originalPackets >= f.original ? sample.originalPackets - f.original : sample.originalPackets;
    const dReply = sample.replyPackets >= f.reply ? sample.replyPackets - f.reply : sample.replyPackets;
    f.original = sample.originalPackets;
    f.reply = sample.replyPackets;
    f.dump = this.dump;
    if (dOriginal + dReply > 0) {
      let p = this.pairs.get(f.pair);
      if (p === undefined) this.pairs.set(f.pair, (p = { local: f.local, peer: f.peer, sent: 0, received: 0 }));
      p.sent += f.localIsOriginal ? dOriginal : dReply;
      p.received += f.localIsOriginal ? dReply : dOriginal;
    }
    if (sample.kind === 'destroy') this.flows.delete(sample.flow);
  }

  /** The pair's totals (zeros if nothing was seen). */
  activity(local: string, peer: string): PairActivity {
    const p = this.pairs.get(FlowActivity.key(local, peer));
    return p ? { sent: p.sent, received: p.received } : { sent: 0, received: 0 };
  }

  /** Drops the totals of pairs that are no longer wanted (their context went away). */
  prune(): void {
    for (const [k, p] of this.pairs) if (!this.wanted(p.local, p.peer)) this.pairs.delete(k);
  }

  get flowCount(): number {
    return this.flows.size;
  }
}
