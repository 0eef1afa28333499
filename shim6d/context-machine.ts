/**
 * The Shim6 context state machine (RFC 5533 sections 6 and 7), pure: every input is a call
 * (a received control message, a timer tick, an unknown tag from the data plane, a start
 * request), every effect goes out through the injected `MachineEffects`, and time comes from
 * the injected clock. No sockets, no timers of its own: the daemon calls tick() at
 * nextDeadline().
 *
 * What it does:
 * - initiator: I1 (ULID Pair option when the locators are not the ULIDs, Forked Instance
 *   Identifier for forks) with randomised exponential backoff; R1 → I2 with the validator
 *   echoed and our locator list; R2 → ESTABLISHED. No answer after the retries: NO-SUPPORT
 *   with a hold-down, the traffic stays plain unicast; I2 unanswered: back to I1.
 * - responder: R1 without state, protected by a Responder Validator (rotating secret); I2
 *   verified (validator, nonce epoch, the peer's locators by HBA/CGA) → context, R2. An I1 for
 *   a pair we are already initiating or have (simultaneous I1s, a peer that restarted) → R2.
 * - recovery: a payload packet or control message with a tag we do not know → R1bis (no
 *   state); R1bis for one of our contexts → I2bis; I2bis verified → the context is rebuilt,
 *   reusing the tag the peer still uses when it is free.
 * - updates: our locators changed → Update Request with a new generation (backoff up to
 *   maxUpdateTimeout) until acknowledged; an Update Request is accepted only with a newer
 *   generation and a verified list, then acknowledged.
 * - Error messages: unknown message type or unknown critical option → Error (rate-limited);
 *   received Errors are counted and logged, and "locator verification failed" for our list
 *   resends the CGA parameters.
 * - context confusion: a new context whose peer tag equals another context's peer tag for
 *   an overlapping peer locator set: the older one is stale and goes.
 * - garbage collection: established contexts idle for idleTeardownMs; contexts that never got
 *   established once their hold-down ends.
 *
 * No input scans the contexts (but localLocatorsChanged(), which updates every one): the
 * lookups by nonce, peer tag, peer locator and (for I1-SENT and hold-downs) peer ULID go
 * through a ContextIndex, and each context's earliest timer sits in a DeadlineQueue, so that
 * nextDeadline() reads it and tick() visits only the contexts that are due. Lookups still
 * take the first match in the table's order, and tick() handles the due contexts in it.
 */
import { canonicalIPv6, formatIPv6 } from '../protocol/address';
import { ErrorCode } from '../protocol/constants';
import { decodeControlMessage, errorMessageFor, optionsOffset, type ControlMessage, type ErrorMessage, type I1Message, type I2bisMessage, type I2Message, type R1bisMessage, type R1Message, type R2Message, type UpdateAcknowledgementMessage, type UpdateRequestMessage } from '../protocol/control-message';
import { locateShim6Header, PacketError, type HeaderPosition } from '../protocol/ipv6-packet';
import { findOption, optionTotalLength, type LocatorListOption, type LocatorPreferencesOption, type Shim6Option } from '../protocol/options';
import { contextKey, isShimmed, locator, refreshLocatorKeys, type ShimContext } from './context';
import { ContextIndex } from './context-index';
import type { ContextTable } from './context-table';
import { DeadlineQueue } from './deadline-queue';
import { ResponderValidator, type ValidatorFields } from './responder-validator';
import { isNewerGeneration } from './locator-security';

export interface MachineTimers {
  i1TimeoutMs: number;
  i1Retries: number;
  i2TimeoutMs: number;
  i2Retries: number;
  noR1HoldDownMs: number;
  icmpHoldDownMs: number;
  updateTimeoutMs: number;
  maxUpdateTimeoutMs: number;
  validatorRotationMs: number;
  idleTeardownMs: number;
  /** At most this many Error and R1bis messages per second, all peers together. */
  errorsPerSecond: number;
}

/** RFC 5533 section 16, and LinShim6's choices where the RFC leaves them open. */
export const DEFAULT_TIMERS: Readonly<MachineTimers> = Object.freeze({
  i1TimeoutMs: 4000,
  i1Retries: 4,
  i2TimeoutMs: 4000,
  i2Retries: 2,
  noR1HoldDownMs: 60_000,
  icmpHoldDownMs: 600_000,
  updateTimeoutMs: 4000,
  maxUpdateTimeoutMs: 120_000,
  validatorRotationMs: 30_000,
  idleTeardownMs: 600_000,
  errorsPerSecond: 10,
});

export type PeerLocatorCheck =
  | { ok: true; locators: Array<{ address: string; method: 'hba' | 'cga' }>; parameters: Buffer }
  | { ok: false; reason: string; detail: string };

/** HBA/CGA: our locator list options, and the check of a peer's (shim6d/locator-security.ts). */
export interface LocatorSecurity {
  /** Which of `locators` we can prove for `localUlid` (at least the ULID itself, if we can). */
  securableLocators(localUlid: string, locators: readonly string[]): string[];
  /** Locator List (+ CGA Parameter Data Structure when asked, + CGA Signature when needed). */
  localLocatorOptions(localUlid: string, locators: readonly string[], generation: number, includeParameters: boolean): Shim6Option[];
  verifyPeerLocators(peerUlid: string, list: LocatorListOption, parameters: Buffer | undefined, signature: Buffer | undefined): PeerLocatorCheck;
}

/** Everything the machine counts; each also goes to the log through effects.event. */
export type MachineEvent =
  | 'i1-sent'
  | 'i1-retransmitted'
  | 'r1-sent'
  | 'i2-sent'
  | 'r2-sent'
  | 'r1bis-sent'
  | 'i2bis-sent'
  | 'established'
  | 'no-support'
  | 'update-sent'
  | 'update-accepted'
  | 'update-acknowledged'
  | 'error-sent'
  | 'error-received'
  | 'context-confusion'
  | 'context-removed'
  | 'rejected-validator'
  | 'rejected-locators'
  | 'rejected-replay'
  | 'rejected-not-ours'
  | 'rejected-no-context'
  | 'rejected-nonce'
  | 'rejected-malformed'
  | 'rate-limited';

export interface MachineEffects {
  send(message: ControlMessage, from: string, to: string): void;
  /** The context reached ESTABLISHED (or was rebuilt): the data plane and reapd may use it. */
  established(ctx: ShimContext): void;
  /** The peer's locator set changed; `currentPairBroken` when the pair in use left it. */
  peerLocatorsChanged(ctx: ShimContext, currentPairBroken: boolean): void;
  removed(ctx: ShimContext, reason: string): void;
  event(event: MachineEvent, detail: Record<string, unknown>): void;
}

export interface MachineOptions {
  now: () => number;
  /** Uniform random integer in [0, 2^32). */
  random32: () => number;
  timers?: Partial<MachineTimers>;
  /** Our usable locators now (from rtnetlink), canonical text (RFC 5952). */
  localLocators: () => readonly string[];
  /**
   * Last data-plane or conntrack activity of a context (ms), for idle teardown. Read when the
   * context is due (the deadline queue holds the teardown time it gave then), so a value that
   * goes back takes effect at that time, not before.
   */
  lastActivity?: (ctx: ShimContext) => number;
  /** Retransmission jitter in [0.5, 1.5) of the nominal timeout; injected for tests. */
  jitter?: () => number;
  /**
   * Our REAP Keepalive Timeout (seconds), announced in I2, I2bis, R2 and Update Request with
   * the Keepalive Timeout option (RFC 5534 section 5.2); undefined: not announced.
   */
  keepaliveTimeout?: number;
}

/**
 * How many contexts nextDeadline() re-reads at most when the earliest idle teardown it holds
 * turns out to have moved (lastActivity() went on, which the machine is not told). Beyond them
 * it answers the earliest time it holds: a bound that may be early (tick() then finds nothing
 * due and files the context at its real time), never late.
 */
const NEXT_DEADLINE_CHECKS = 8;

type Pending =
  | { kind: 'i1'; nonce: number }
  | { kind: 'i2'; nonce: number; responderNonce: number; validator: Buffer }
  | { kind: 'i2bis'; nonce: number; responderNonce: number; validator: Buffer; packetTag: number };

/** What the machine keeps per context, beside the ShimContext the data plane sees. */
interface Control {
  readonly ctx: ShimContext;
  /** Order of creation: the table's order among the machine's contexts, which lookups and tick() keep. */
  readonly order: number;
  pending: Pending | undefined;
  retries: number;
  timeoutMs: number;
  deadline: number | undefined;
  holdDownUntil: number | undefined;
  /** Peer's CGA Parameter Data Structure, once verified. */
  peerParameters: Buffer | undefined;
  peerGeneration: number | undefined;
  localGeneration: number;
  parametersSent: boolean;
  update: { nonce: number; timeoutMs: number; deadline: number } | undefined;
  /** Request Nonce of the last Update Request accepted: its retransmissions are acknowledged again. */
  lastUpdateNonce: number | undefined;
  establishedAt: number;
}

/** True when the list names exactly the context's peer locators. */
function sameAddresses(list: LocatorListOption, ctx: ShimContext): boolean {
  const keys = new Set(list.locators.map((l) => locator(l.address, 'unverified').key));
  return keys.size === ctx.peerLocators.length && ctx.peerLocators.every((l) => keys.has(l.key));
}

/** The earlier of two optional times. */
function earliest(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || (b !== undefined && b < a) ? b : a;
}


export class ContextMachine {
  readonly timers: MachineTimers;
  private readonly control = new Map<number, Control>();
  /** The contexts by nonce, peer tag, peer locator and peer ULID (I1-SENT, hold-down). */
  private readonly index = new ContextIndex<Control>();
  /** Each context's earliest timer (dueAt()). */
  private readonly deadlines = new DeadlineQueue<Control>();
  private created = 0;
  private readonly validator: ResponderValidator;
  private readonly jitter: () => number;
  private errorBudget = { second: -1, left: 0 };
  /** The packet receive() is handling: the packet in error of an Error it may send. */
  private inFlight: { packet: Buffer; shimOffset: number } | undefined;

  constructor(
    readonly table: ContextTable,
    private readonly security: LocatorSecurity,
    private readonly effects: MachineEffects,
    private readonly options: MachineOptions,
  ) {
    this.timers = { ...DEFAULT_TIMERS, ...options.timers };
    this.validator = new ResponderValidator({ rotationMs: this.timers.validatorRotationMs, now: options.now });
    this.jitter = options.jitter ?? (() => 0.5 + options.random32() / 0x1_0000_0000);
  }

  // -- queries ---------------------------------------------------------------------------------

  /** True while a peer that did not answer (or said it has no Shim6) is in its hold-down. */
  inHoldDown(peerUlid: string): boolean {
    const now = this.options.now();
    const peer = canonicalIPv6(peerUlid);
    if (peer === undefined) return false;
    for (const c of this.index.heldDown(peer)) {
      if (this.live(c) && c.ctx.peerUlid.text === peer && c.holdDownUntil !== undefined && c.holdDownUntil > now) return true;
    }
    return false;
  }

  /**
   * The earliest time tick() has something to do: the head of the deadline queue, re-read
   * when it is an idle teardown that activity has pushed back (see NEXT_DEADLINE_CHECKS).
   */
  nextDeadline(): number | undefined {
    for (let checks = 0; ; checks++) {
      const c = this.deadlines.peek();
      const at = this.deadlines.peekAt();
      if (c === undefined || at === undefined || checks === NEXT_DEADLINE_CHECKS) return at;
      const exact = this.dueAt(c);
      if (exact === at) return at;
      if (exact === undefined) this.deadlines.delete(c);
      else this.deadlines.set(c, exact);
    }
  }

  /** Debug view of a context's control state (console `dump`). */
  describe(id: number): Record<string, unknown> | undefined {
    const c = this.control.get(id);
    if (!c) return undefined;
    return {
      pending: c.pending?.kind,
      retries: c.retries,
      retransmitAt: c.deadline,
      holdDownUntil: c.holdDownUntil,
      peerGeneration: c.peerGeneration,
      localGeneration: c.localGeneration,
      updatePending: c.update !== undefined,
    };
  }

  // -- inputs ----------------------------------------------------------------------------------

  /**
   * Starts the context exchange for (localUlid, peerUlid) now: console `context`, or the
   * heuristic. Returns the context, or undefined when one exists or the peer is in hold-down.
   */
  start(localUlid: string, peerUlid: string, forkedInstanceId = 0): ShimContext | undefined {
    const local = locator(localUlid, 'unverified', 'local ULID');
    const peer = locator(peerUlid, 'unverified', 'peer ULID');
    if (this.table.byUlidPairKey(contextKey(local, peer, forkedInstanceId))) return undefined;
    if (this.inHoldDown(peer.text)) return undefined;
    const ctx = this.table.add({
      id: this.table.allocateId(),
      origin: 'negotiated',
      state: 'I1-SENT',
      forkedInstanceId,
      localUlid: local.text,
      peerUlid: peer.text,
      localContextTag: this.newTag(),
      peerContextTag: 0,
      localLocators: this.ourLocators(local.text),
      verification: 'unverified',
    });
    const c = this.attach(ctx);
    c.pending = { kind: 'i1', nonce: this.options.random32() };
    c.timeoutMs = this.timers.i1TimeoutMs;
    this.changed(c);
    this.sendI1(ctx, c);
    this.effects.event('i1-sent', { id: ctx.id, peer: peer.text });
    return ctx;
  }

  /**
   * A control message, as the inbound queue saw it: the whole IPv6 packet, so the locators it
   * came on are known. `shimOffset`: where its Shim6 header starts, when the caller already
   * walked the header chain to find it (the data plane does); else the machine looks for it.
   */
  receive(packet: Buffer, shimOffset?: number): void {
    if (packet.length < 40) return this.reject('rejected-malformed', { why: 'shorter than an IPv6 header' });
    let offset = shimOffset;
    if (offset === undefined) {
      const at: HeaderPosition = { offset: 0, nextHeaderOffset: 0 };
      const found = locateShim6Header(packet, at);
      if (found instanceof PacketError || !found) return this.reject('rejected-malformed', { why: found instanceof PacketError ? found.toString() : 'no Shim6 header' });
      offset = at.offset;
    }
    const src = formatIPv6(packet.subarray(8, 24));
    const dst = formatIPv6(packet.subarray(24, 40));
    const decoded = decodeControlMessage(packet.subarray(offset), { strictReserved: false });
    if (!decoded.ok) {
      const e = decoded.error;
      if (e.code === 'UNKNOWN_MESSAGE_TYPE' || e.code === 'UNKNOWN_CRITICAL_OPTION') {
        const code = e.code === 'UNKNOWN_MESSAGE_TYPE' ? ErrorCode.UnknownMessageType : ErrorCode.CriticalOptionNotRecognized;
        // The packet in error starts at the IPv6 header, and the Pointer indexes into it.
        this.sendError(errorMessageFor(code, offset + e.offset, packet), dst, src, { why: e.message });
      }
      return this.reject('rejected-malformed', { from: src, code: e.code, why: e.message });
    }
    const m = decoded.value.message;
    this.inFlight = { packet, shimOffset: offset };
    try {
      this.dispatch(m, src, dst);
    } finally {
      this.inFlight = undefined;
    }
  }

  private dispatch(m: ControlMessage, src: string, dst: string): void {
    switch (m.type) {
      case 'I1':
        return this.onI1(m, src, dst);
      case 'R1':
        return this.onR1(m, src, dst);
      case 'I2':
        return this.onI2(m, src, dst);
      case 'R2':
        return this.onR2(m, src, dst);
      case 'R1bis':
        return this.onR1bis(m, src, dst);
      case 'I2bis':
        return this.onI2bis(m, src, dst);
      case 'UpdateRequest':
        return this.onUpdateRequest(m, src, dst);
      case 'UpdateAcknowledgement':
        return this.onUpdateAck(m, src);
      case 'Error':
        return this.onError(m, src);
      case 'Keepalive':
      case 'Probe':
        return; // REAP's (reapd)
    }
  }

  /** The data plane saw a payload packet with a tag no context has: R1bis, without state. */
  unknownContextTag(tag: number, localLocator: string, peerLocator: string): void {
    if (!this.errorAllowed()) return;
    const { responderNonce, validator } = this.validator.issue(this.r1bisFields(tag, peerLocator, localLocator));
    const r1bis: R1bisMessage = { type: 'R1bis', packetContextTag: tag, responderNonce, options: [{ kind: 'ResponderValidator', validator }] };
    this.effects.send(r1bis, localLocator, peerLocator);
    this.effects.event('r1bis-sent', { tag, peer: peerLocator });
  }

  /** Our locator set changed: every established negotiated context gets an Update Request. */
  localLocatorsChanged(): void {
    for (const ctx of this.table.values()) {
      if (ctx.origin === 'negotiated' && ctx.state === 'ESTABLISHED') this.sendUpdate(ctx.id);
    }
  }

  /** Sends (or restarts) an Update Request with our current locators. Console `update`. */
  sendUpdate(id: number): boolean {
    const ctx = this.table.byId(id);
    const c = this.control.get(id);
    if (!ctx || !c || ctx.state !== 'ESTABLISHED') return false;
    const locators = this.ourLocators(ctx.localUlid.text);
    c.localGeneration = (c.localGeneration + 1) >>> 0;
    c.update = { nonce: this.options.random32(), timeoutMs: this.timers.updateTimeoutMs, deadline: 0 };
    ctx.localLocators = locators.map((l) => locator(l, 'unverified'));
    this.refreshKeys(c);
    this.transmitUpdate(ctx, c);
    this.effects.event('update-sent', { id, generation: c.localGeneration, locators });
    return true;
  }

  /** ICMPv6 Parameter Problem (unrecognised Next Header 140) from the peer: it has no Shim6. */
  peerHasNoShim6(peerUlid: string): void {
    const peer = canonicalIPv6(peerUlid);
    if (peer === undefined) return;
    for (const c of this.inOrder(this.index.awaitingR1(peer))) {
      if (this.live(c) && c.ctx.peerUlid.text === peer && c.ctx.state === 'I1-SENT') this.noSupport(c.ctx, this.timers.icmpHoldDownMs, 'ICMPv6 Parameter Problem');
    }
  }

  /** Tears a negotiated context down (console `delete`, garbage collection). */
  remove(id: number, reason: string): ShimContext | undefined {
    const ctx = this.table.remove(id);
    if (!ctx) return undefined;
    this.detach(id);
    this.effects.removed(ctx, reason);
    this.effects.event('context-removed', { id, reason });
    return ctx;
  }

  /**
   * Retransmissions, hold-downs and garbage collection due by now: the contexts whose
   * earliest timer has passed, in the order they were created.
   */
  tick(): void {
    const now = this.options.now();
    const due = this.deadlines.popDue(now).sort((x, y) => x.order - y.order);
    for (const c of due) {
      const id = c.ctx.id;
      if (this.control.get(id) !== c) continue; // removed by one handled before it
      const ctx = this.table.byId(id);
      if (ctx !== c.ctx) {
        this.detach(id); // left the table without the machine
        continue;
      }
      this.runTimers(ctx, c, now);
      if (this.control.get(id) === c) this.schedule(c);
    }
  }

  private runTimers(ctx: ShimContext, c: Control, now: number): void {
    const id = ctx.id;
    if (c.deadline !== undefined && c.deadline <= now) this.retransmit(ctx, c);
    if (!this.table.byId(id)) return; // gave up and removed it
    if (c.update && c.update.deadline <= now) {
      c.update.timeoutMs = Math.min(c.update.timeoutMs * 2, this.timers.maxUpdateTimeoutMs);
      this.transmitUpdate(ctx, c);
    }
    if (c.holdDownUntil !== undefined && c.holdDownUntil <= now && (ctx.state === 'NO-SUPPORT' || ctx.state === 'E-FAILED')) {
      this.remove(id, 'hold-down over');
      return;
    }
    if (ctx.state === 'ESTABLISHED' && this.options.lastActivity) {
      const last = Math.max(this.options.lastActivity(ctx), c.establishedAt);
      if (now - last >= this.timers.idleTeardownMs) this.remove(id, `idle for ${Math.round((now - last) / 1000)} s`);
    }
  }

  // -- initiator -------------------------------------------------------------------------------

  private sendI1(ctx: ShimContext, c: Control): void {
    if (c.pending?.kind !== 'i1') return;
    const options: Shim6Option[] = [];
    this.addPairAndFork(ctx, options);
    const i1: I1Message = { type: 'I1', initiatorContextTag: ctx.localContextTag, initiatorNonce: c.pending.nonce, options };
    this.effects.send(i1, ctx.current.local.text, ctx.current.peer.text);
    this.arm(c);
  }

  private onR1(m: R1Message, src: string, dst: string): void {
    const c = this.first(this.index.byPendingNonce(m.initiatorNonce), (x, xc) => x.state === 'I1-SENT' && xc.pending?.nonce === m.initiatorNonce && x.current.peer.text === src && x.current.local.text === dst);
    if (!c) return this.reject('rejected-nonce', { type: 'R1', from: src });
    const ctx = c.ctx;
    const validator = findOption(m.options, 'ResponderValidator')?.validator;
    if (!validator) return this.reject('rejected-malformed', { type: 'R1', from: src, why: 'no Responder Validator' });
    c.pending = { kind: 'i2', nonce: m.initiatorNonce, responderNonce: m.responderNonce, validator };
    c.retries = 0;
    c.timeoutMs = this.timers.i2TimeoutMs;
    ctx.state = 'I2-SENT';
    this.changed(c);
    this.sendI2(ctx, c);
    this.effects.event('i2-sent', { id: ctx.id, peer: src });
  }

  /** I2, or I2bis in a recovery: the validator echoed, our locators, the ULID pair and fork. */
  private sendI2(ctx: ShimContext, c: Control): void {
    const p = c.pending;
    if (p?.kind !== 'i2' && p?.kind !== 'i2bis') return;
    this.refreshOurLocators(c);
    const options: Shim6Option[] = [{ kind: 'ResponderValidator', validator: p.validator }, ...this.locatorOptions(ctx, c, true)];
    // I2bis always names the ULIDs: the locators in use may be any pair.
    this.addPairAndFork(ctx, options, p.kind === 'i2bis');
    const fields = { initiatorContextTag: ctx.localContextTag, initiatorNonce: p.nonce, responderNonce: p.responderNonce, options };
    const message: I2Message | I2bisMessage = p.kind === 'i2' ? { type: 'I2', ...fields } : { type: 'I2bis', ...fields, packetContextTag: p.packetTag };
    this.effects.send(message, ctx.current.local.text, ctx.current.peer.text);
    this.arm(c);
  }

  private onR2(m: R2Message, src: string, dst: string): void {
    const c = this.first(this.index.byPendingNonce(m.initiatorNonce), (x, xc) => (x.state === 'I1-SENT' || x.state === 'I2-SENT' || x.state === 'I2BIS-SENT') && xc.pending?.nonce === m.initiatorNonce && x.current.local.text === dst);
    if (!c) return this.reject('rejected-nonce', { type: 'R2', from: src });
    const ctx = c.ctx;
    if (!this.acceptPeerLocators(ctx, c, m.options, 'R2', src)) return;
    ctx.peerContextTag = m.responderContextTag;
    this.index.refile(c);
    this.confusionCheck(ctx, m.responderContextTag);
    this.establish(ctx, c);
  }

  private onR1bis(m: R1bisMessage, src: string, dst: string): void {
    // The peer lost the context we know by the tag it gave us: our peer tag.
    const srcKey = locator(src, 'unverified').key;
    const dstKey = locator(dst, 'unverified').key;
    const c = this.first(this.index.byPeerTag(m.packetContextTag), (x) => x.origin === 'negotiated' && x.state === 'ESTABLISHED' && x.peerContextTag === m.packetContextTag && x.peerLocatorKeys.has(srcKey) && x.localLocatorKeys.has(dstKey));
    if (!c) return this.reject('rejected-no-context', { type: 'R1bis', from: src, tag: m.packetContextTag });
    const ctx = c.ctx;
    const validator = findOption(m.options, 'ResponderValidator')?.validator;
    if (!validator) return this.reject('rejected-malformed', { type: 'R1bis', from: src, why: 'no Responder Validator' });
    c.pending = { kind: 'i2bis', nonce: this.options.random32(), responderNonce: m.responderNonce, validator, packetTag: m.packetContextTag };
    c.retries = 0;
    c.timeoutMs = this.timers.i2TimeoutMs;
    c.parametersSent = false;
    ctx.state = 'I2BIS-SENT';
    this.changed(c);
    // Answer on the pair the R1bis came on: it works.
    ctx.current = { local: ctx.localLocators.find((l) => l.text === dst) ?? ctx.current.local, peer: ctx.peerLocators.find((l) => l.text === src) ?? ctx.current.peer };
    this.sendI2(ctx, c);
    this.effects.event('i2bis-sent', { id: ctx.id, peer: src });
  }

  private retransmit(ctx: ShimContext, c: Control): void {
    c.deadline = undefined;
    const p = c.pending;
    if (!p) return;
    const limit = p.kind === 'i1' ? this.timers.i1Retries : this.timers.i2Retries;
    if (c.retries < limit) {
      c.retries++;
      c.timeoutMs *= 2;
      if (p.kind === 'i1') {
        this.sendI1(ctx, c);
        this.effects.event('i1-retransmitted', { id: ctx.id, retry: c.retries });
      } else this.sendI2(ctx, c);
      return;
    }
    if (p.kind === 'i1') return this.noSupport(ctx, this.timers.noR1HoldDownMs, `no R1 after ${c.retries + 1} I1s`);
    if (p.kind === 'i2bis') {
      // The peer does not complete the recovery: drop the context; traffic will restart one.
      this.remove(ctx.id, 'I2bis unanswered');
      return;
    }
    // I2 unanswered: start over with I1 (the R1 state may have expired at the responder).
    ctx.state = 'I1-SENT';
    c.pending = { kind: 'i1', nonce: this.options.random32() };
    c.retries = 0;
    c.timeoutMs = this.timers.i1TimeoutMs;
    this.changed(c);
    this.sendI1(ctx, c);
  }

  private noSupport(ctx: ShimContext, holdDownMs: number, why: string): void {
    const c = this.control.get(ctx.id);
    if (!c) return;
    ctx.state = 'NO-SUPPORT';
    c.pending = undefined;
    c.deadline = undefined;
    c.holdDownUntil = this.options.now() + holdDownMs;
    this.changed(c);
    this.effects.event('no-support', { id: ctx.id, peer: ctx.peerUlid.text, why, holdDownMs });
  }

  // -- responder -------------------------------------------------------------------------------

  /** The ULIDs of a received I1/I2/I2bis: from its ULID Pair option, else its addresses. */
  private ulidsOf(m: { options: Shim6Option[] }, src: string, dst: string): { peer: string; local: string; fork: number } {
    const pair = findOption(m.options, 'UlidPair');
    const fork = findOption(m.options, 'ForkedInstanceIdentifier')?.forkedInstanceId ?? 0;
    return pair ? { peer: pair.senderUlid, local: pair.receiverUlid, fork } : { peer: src, local: dst, fork };
  }

  private isOurs(ulid: string): boolean {
    const text = canonicalIPv6(ulid);
    return text !== undefined && this.options.localLocators().includes(text);
  }

  private onI1(m: I1Message, src: string, dst: string): void {
    const u = this.ulidsOf(m, src, dst);
    if (!this.isOurs(u.local)) return this.reject('rejected-not-ours', { type: 'I1', ulid: u.local });
    const ctx = this.table.byUlidPairKey(contextKey(locator(u.local, 'unverified'), locator(u.peer, 'unverified'), u.fork));
    const fromPeer = ctx !== undefined && ctx.peerLocatorKeys.has(locator(src, 'unverified').key);
    if (ctx && fromPeer && ctx.origin === 'negotiated' && (ctx.state === 'I1-SENT' || ctx.state === 'I2-SENT' || ctx.state === 'I2BIS-SENT' || ctx.state === 'ESTABLISHED')) {
      // Simultaneous I1s, or a peer that lost its context: R2 with what we have.
      const c = this.control.get(ctx.id) as Control;
      if (ctx.state === 'ESTABLISHED' && ctx.peerContextTag !== m.initiatorContextTag) this.confusionCheck(ctx, m.initiatorContextTag);
      ctx.peerContextTag = m.initiatorContextTag;
      this.index.refile(c);
      c.parametersSent = false;
      this.sendR2(ctx, c, m.initiatorNonce, dst, src);
      return;
    }
    if (ctx && ctx.state === 'NO-SUPPORT') this.remove(ctx.id, 'the peer speaks Shim6 after all');
    const { responderNonce, validator } = this.validator.issue(this.i2Fields(m.initiatorContextTag, u, src, dst));
    const r1: R1Message = { type: 'R1', initiatorNonce: m.initiatorNonce, responderNonce, options: [{ kind: 'ResponderValidator', validator }] };
    this.effects.send(r1, dst, src);
    this.effects.event('r1-sent', { peer: src });
  }

  private onI2(m: I2Message, src: string, dst: string): void {
    const u = this.ulidsOf(m, src, dst);
    if (!this.isOurs(u.local)) return this.reject('rejected-not-ours', { type: 'I2', ulid: u.local });
    const validator = findOption(m.options, 'ResponderValidator')?.validator;
    if (!validator || !this.validator.check(m.responderNonce, validator, this.i2Fields(m.initiatorContextTag, u, src, dst))) {
      return this.reject('rejected-validator', { type: 'I2', from: src });
    }
    const existing = this.table.byUlidPairKey(contextKey(locator(u.local, 'unverified'), locator(u.peer, 'unverified'), u.fork));
    if (existing && existing.state === 'ESTABLISHED' && existing.peerContextTag === m.initiatorContextTag && existing.origin === 'negotiated') {
      // A retransmitted I2: the R2 was lost.
      this.sendR2(existing, this.control.get(existing.id) as Control, m.initiatorNonce, dst, src);
      return;
    }
    this.respondWithContext(m, u, src, dst, undefined);
  }

  private onI2bis(m: I2bisMessage, src: string, dst: string): void {
    const u = this.ulidsOf(m, src, dst);
    if (!this.isOurs(u.local)) return this.reject('rejected-not-ours', { type: 'I2bis', ulid: u.local });
    const validator = findOption(m.options, 'ResponderValidator')?.validator;
    if (!validator || !this.validator.check(m.responderNonce, validator, this.r1bisFields(m.packetContextTag, src, dst))) {
      return this.reject('rejected-validator', { type: 'I2bis', from: src });
    }
    this.respondWithContext(m, u, src, dst, m.packetContextTag);
  }

  /** I2 or I2bis verified: verify the locators, then (re)build the context, R2. */
  private respondWithContext(m: I2Message | I2bisMessage, u: { peer: string; local: string; fork: number }, src: string, dst: string, reuseTag: number | undefined): void {
    const key = contextKey(locator(u.local, 'unverified'), locator(u.peer, 'unverified'), u.fork);
    const old = this.table.byUlidPairKey(key);
    if (old?.origin === 'static') return this.reject('rejected-not-ours', { type: m.type, why: `ULID pair has static context ${old.id}` });
    // A context that works is only replaced from where its peer is known to be: otherwise
    // anyone who can get an R1 (or an R1bis) could take it over.
    if (old?.state === 'ESTABLISHED' && !old.peerLocatorKeys.has(locator(src, 'unverified').key)) {
      return this.reject('rejected-locators', { id: old.id, type: m.type, from: src, reason: 'source-not-a-peer-locator', detail: `${src} is not a locator of ${old.peerUlid.text}` });
    }
    const check = this.checkPeerLocators(u.peer, m.options, undefined);
    if (check && !check.ok) return this.refuseLocators(check, m.type, src, dst, old?.id);
    if (old) {
      this.table.remove(old.id);
      this.detach(old.id);
      this.effects.removed(old, `replaced by a new context from ${m.type}`);
    }
    const tag = reuseTag !== undefined && !this.table.hasLocalTag(reuseTag) ? reuseTag : old && !this.table.hasLocalTag(old.localContextTag) ? old.localContextTag : this.newTag();
    const ctx = this.table.add({
      id: old?.id ?? this.table.allocateId(),
      origin: 'negotiated',
      state: 'I2-SENT',
      forkedInstanceId: u.fork,
      localUlid: u.local,
      peerUlid: u.peer,
      localContextTag: tag,
      peerContextTag: m.initiatorContextTag,
      localLocators: this.ourLocators(u.local),
      verification: 'unverified',
    });
    const c = this.attach(ctx);
    this.installPeerLocators(ctx, c, check, m.options);
    ctx.current = { local: ctx.localLocators.find((l) => l.text === dst) ?? ctx.localUlid, peer: ctx.peerLocators.find((l) => l.text === src) ?? ctx.peerUlid };
    this.confusionCheck(ctx, m.initiatorContextTag);
    this.sendR2(ctx, c, m.initiatorNonce, dst, src);
    this.establish(ctx, c);
  }

  private sendR2(ctx: ShimContext, c: Control, initiatorNonce: number, from: string, to: string): void {
    const r2: R2Message = { type: 'R2', responderContextTag: ctx.localContextTag, initiatorNonce, options: this.locatorOptions(ctx, c, true) };
    this.effects.send(r2, from, to);
    this.effects.event('r2-sent', { id: ctx.id, peer: to });
  }

  // -- updates ---------------------------------------------------------------------------------

  private transmitUpdate(ctx: ShimContext, c: Control): void {
    const u = c.update;
    if (!u) return;
    const ur: UpdateRequestMessage = { type: 'UpdateRequest', receiverContextTag: ctx.peerContextTag, requestNonce: u.nonce, options: this.locatorOptions(ctx, c, !c.parametersSent) };
    // The locator in use may be the one that just went away: then send from one we still have
    // (the ULID if it is still ours), on the pair's peer locator.
    const ours = new Set(this.options.localLocators());
    const from = ours.has(ctx.current.local.text) ? ctx.current.local.text : ours.has(ctx.localUlid.text) ? ctx.localUlid.text : (ctx.localLocators.find((l) => ours.has(l.text))?.text ?? ctx.current.local.text);
    this.effects.send(ur, from, ctx.current.peer.text);
    u.deadline = this.options.now() + u.timeoutMs * this.jitter();
    this.schedule(c);
  }

  private onUpdateRequest(m: UpdateRequestMessage, src: string, dst: string): void {
    const ctx = this.table.byLocalTag(m.receiverContextTag);
    if (!ctx || ctx.origin !== 'negotiated' || ctx.state !== 'ESTABLISHED') {
      if (!ctx) this.unknownContextTag(m.receiverContextTag, dst, src);
      return this.reject('rejected-no-context', { type: 'UpdateRequest', from: src, tag: m.receiverContextTag });
    }
    // The source may be a locator the peer only now announces (its others may be broken):
    // what protects the context is the tag and the HBA/CGA proof of the list.
    const c = this.control.get(ctx.id) as Control;
    const list = findOption(m.options, 'LocatorList');
    if (list) {
      // A retransmission (its acknowledgement was lost), or the update the I2bis of a
      // recovery already carried: acknowledged again, nothing changes.
      const repeat = c.peerGeneration === list.generation && (c.lastUpdateNonce === m.requestNonce || sameAddresses(list, ctx));
      if (!repeat) {
        if (c.peerGeneration !== undefined && !isNewerGeneration(list.generation, c.peerGeneration)) {
          return this.reject('rejected-replay', { id: ctx.id, from: src, generation: list.generation, current: c.peerGeneration });
        }
        const before = ctx.current.peer.key;
        if (!this.acceptPeerLocators(ctx, c, m.options, 'UpdateRequest', src, dst)) return;
        c.lastUpdateNonce = m.requestNonce;
        const stillThere = ctx.peerLocators.some((l) => l.key === before);
        this.effects.event('update-accepted', { id: ctx.id, generation: list.generation, locators: ctx.peerLocators.map((l) => l.text) });
        this.effects.peerLocatorsChanged(ctx, !stillThere);
      }
    } else {
      const prefs = findOption(m.options, 'LocatorPreferences');
      if (prefs) this.applyPreferences(ctx, prefs);
    }
    this.notePeerKeepaliveTimeout(ctx, m.options);
    const ua: UpdateAcknowledgementMessage = { type: 'UpdateAcknowledgement', receiverContextTag: ctx.peerContextTag, requestNonce: m.requestNonce, options: [] };
    this.effects.send(ua, dst, src);
  }

  private onUpdateAck(m: UpdateAcknowledgementMessage, src: string): void {
    const ctx = this.table.byLocalTag(m.receiverContextTag);
    const c = ctx && this.control.get(ctx.id);
    if (!ctx || !c?.update || c.update.nonce !== m.requestNonce) return this.reject('rejected-nonce', { type: 'UpdateAcknowledgement', from: src });
    c.update = undefined;
    this.schedule(c);
    c.parametersSent = true;
    this.effects.event('update-acknowledged', { id: ctx.id, generation: c.localGeneration });
  }

  // -- errors ----------------------------------------------------------------------------------

  private onError(m: ErrorMessage, src: string): void {
    this.effects.event('error-received', { from: src, code: m.errorCode, pointer: m.pointer });
    if (m.errorCode === ErrorCode.LocatorVerificationMethodFailed || m.errorCode === ErrorCode.LocatorListGenerationOutOfSync) {
      // The peer could not verify our list: send the parameters again with the next update.
      const key = locator(src, 'unverified').key;
      for (const c of this.index.byPeerLocator(key)) {
        if (this.live(c) && c.ctx.peerLocatorKeys.has(key)) c.parametersSent = false;
      }
    }
  }

  private sendError(error: ErrorMessage, from: string, to: string, detail: Record<string, unknown>): void {
    if (!this.errorAllowed()) return;
    this.effects.send(error, from, to);
    this.effects.event('error-sent', { to, code: error.errorCode, ...detail });
  }

  private errorAllowed(): boolean {
    const second = Math.floor(this.options.now() / 1000);
    if (second !== this.errorBudget.second) this.errorBudget = { second, left: this.timers.errorsPerSecond };
    if (this.errorBudget.left <= 0) {
      this.effects.event('rate-limited', {});
      return false;
    }
    this.errorBudget.left--;
    return true;
  }

  // -- shared ----------------------------------------------------------------------------------

  private establish(ctx: ShimContext, c: Control): void {
    ctx.state = 'ESTABLISHED';
    c.pending = undefined;
    c.deadline = undefined;
    c.holdDownUntil = undefined;
    c.establishedAt = this.options.now();
    this.changed(c);
    this.effects.established(ctx);
    this.effects.event('established', { id: ctx.id, ulids: `${ctx.localUlid.text} → ${ctx.peerUlid.text}`, peerTag: ctx.peerContextTag, localTag: ctx.localContextTag });
    // Our locators changed while the exchange ran: tell the peer now.
    const now = this.ourLocators(ctx.localUlid.text);
    if (now.length !== ctx.localLocators.length || now.some((l, i) => ctx.localLocators[i]?.text !== l)) this.sendUpdate(ctx.id);
  }

  /** The HBA/CGA check of the Locator List in these options (none: the ULID alone, trivially fine). */
  private checkPeerLocators(peerUlid: string, options: Shim6Option[], remembered: Buffer | undefined): PeerLocatorCheck | undefined {
    const list = findOption(options, 'LocatorList');
    if (!list) return undefined;
    return this.security.verifyPeerLocators(peerUlid, list, findOption(options, 'CgaParameterDataStructure')?.data ?? remembered, findOption(options, 'CgaSignature')?.signature);
  }

  /** Installs a verified list (or, with none, the ULID as the peer's only locator, RFC 5533 section 7.2). */
  private installPeerLocators(ctx: ShimContext, c: Control, check: PeerLocatorCheck | undefined, options: Shim6Option[]): void {
    this.notePeerKeepaliveTimeout(ctx, options);
    if (!check || !check.ok) {
      ctx.peerLocators = [{ ...ctx.peerUlid }];
      this.refreshKeys(c);
      return;
    }
    const list = findOption(options, 'LocatorList');
    c.peerParameters = check.parameters;
    c.peerGeneration = list?.generation;
    ctx.peerLocators = check.locators.map((l) => locator(l.address, l.method));
    this.refreshKeys(c);
    const prefs = findOption(options, 'LocatorPreferences');
    if (prefs) this.applyPreferences(ctx, prefs);
  }

  /** A list that does not verify: counted, and the sender gets Error code 2 (rate-limited). */
  private refuseLocators(check: Extract<PeerLocatorCheck, { ok: false }>, type: string, src: string, dst: string, id: number | undefined): void {
    this.reject('rejected-locators', { id, type, from: src, reason: check.reason, detail: check.detail });
    const f = this.inFlight;
    if (f) this.sendError(errorMessageFor(ErrorCode.LocatorVerificationMethodFailed, this.optionPointer(f, 2), f.packet), dst, src, { why: check.reason });
  }

  /** Offset (from the IPv6 header) of the first option of this type in the packet being handled; the Shim6 header's if none. */
  private optionPointer(f: { packet: Buffer; shimOffset: number }, optionType: number): number {
    const shim = f.packet.subarray(f.shimOffset);
    const end = Math.min(shim.length, ((shim[1] ?? 0) + 1) * 8);
    let o = optionsOffset((shim[2] ?? 0) & 0x7f) ?? end;
    while (o + 4 <= end) {
      if (shim.readUInt16BE(o) >>> 1 === optionType) return f.shimOffset + o;
      o += optionTotalLength(shim.readUInt16BE(o + 2));
    }
    return f.shimOffset;
  }

  /** Verifies and installs the peer's locator list from these options; false (counted, Error sent) if it does not verify. */
  private acceptPeerLocators(ctx: ShimContext, c: Control, options: Shim6Option[], type: string, src: string, dst = ctx.current.local.text): boolean {
    const check = this.checkPeerLocators(ctx.peerUlid.text, options, c.peerParameters);
    if (check && !check.ok) {
      this.refuseLocators(check, type, src, dst, ctx.id);
      return false;
    }
    this.installPeerLocators(ctx, c, check, options);
    return true;
  }

  /** Locator Preferences of the current generation: the BROKEN flag takes a locator out of use. */
  private applyPreferences(ctx: ShimContext, prefs: LocatorPreferencesOption): void {
    const c = this.control.get(ctx.id);
    if (!c || prefs.generation !== c.peerGeneration || prefs.elements.length !== ctx.peerLocators.length) return;
    ctx.peerPreferences = ctx.peerLocators.map((l, i) => {
      const e = prefs.elements[i];
      return { locator: l.text, flags: e?.flags ?? 0, priority: e?.priority, weight: e?.weight };
    });
  }

  /** Context confusion: another context with the same peer tag and an overlapping peer set is stale. */
  private confusionCheck(ctx: ShimContext, peerTag: number): void {
    for (const oc of this.inOrder(this.index.byPeerTag(peerTag))) {
      const other = oc.ctx;
      if (!this.live(oc) || other === ctx || other.origin !== 'negotiated' || other.peerContextTag !== peerTag) continue;
      const overlap = other.peerLocators.some((l) => ctx.peerLocatorKeys.has(l.key)) || other.peerUlid.key === ctx.peerUlid.key;
      if (overlap) {
        this.effects.event('context-confusion', { stale: other.id, fresh: ctx.id, peerTag });
        this.remove(other.id, `context confusion: context ${ctx.id} took peer tag ${peerTag}`);
      }
    }
  }

  private locatorOptions(ctx: ShimContext, c: Control, includeParameters: boolean): Shim6Option[] {
    const locators = ctx.localLocators.map((l) => l.text);
    const options = this.security.localLocatorOptions(ctx.localUlid.text, locators, c.localGeneration, includeParameters);
    const keepaliveTimeout = this.options.keepaliveTimeout;
    if (keepaliveTimeout !== undefined) options.push({ kind: 'KeepaliveTimeout', keepaliveTimeout });
    return options;
  }

  /** The peer's Keepalive Timeout option (RFC 5534 section 5.2), when the message has one: reapd paces its Keepalives by it. */
  private notePeerKeepaliveTimeout(ctx: ShimContext, options: Shim6Option[]): void {
    const ka = findOption(options, 'KeepaliveTimeout');
    if (ka && ka.keepaliveTimeout > 0) ctx.peerKeepaliveTimeout = ka.keepaliveTimeout;
  }

  /** The ULID Pair option when the locators in use are not the ULIDs (or `always`), and the fork's identifier. */
  private addPairAndFork(ctx: ShimContext, options: Shim6Option[], always = false): void {
    if (always || isShimmed(ctx)) {
      options.push({ kind: 'UlidPair', senderUlid: ctx.localUlid.text, receiverUlid: ctx.peerUlid.text });
    }
    if (ctx.forkedInstanceId !== 0) options.push({ kind: 'ForkedInstanceIdentifier', forkedInstanceId: ctx.forkedInstanceId });
  }

  private refreshOurLocators(c: Control): void {
    c.ctx.localLocators = this.ourLocators(c.ctx.localUlid.text).map((l) => locator(l, 'unverified'));
    this.refreshKeys(c);
  }

  /** refreshLocatorKeys, and the context re-filed under its peer locators. */
  private refreshKeys(c: Control): void {
    refreshLocatorKeys(c.ctx);
    this.index.refile(c);
  }

  private ourLocators(localUlid: string): string[] {
    const all = this.options.localLocators();
    const secured = this.security.securableLocators(localUlid, all);
    return secured.length > 0 ? secured : [localUlid];
  }

  private i2Fields(tag: number, u: { peer: string; local: string }, src: string, dst: string): ValidatorFields {
    return { tag, kind: 0, initiatorUlid: u.peer, responderUlid: u.local, initiatorLocator: src, responderLocator: dst };
  }

  private r1bisFields(tag: number, peerLocator: string, localLocator: string): ValidatorFields {
    // The ULIDs are unknown to a host without the context: the locators stand in for them.
    return { tag, kind: 1, initiatorUlid: peerLocator, responderUlid: localLocator, initiatorLocator: peerLocator, responderLocator: localLocator };
  }

  private arm(c: Control): void {
    c.deadline = this.options.now() + c.timeoutMs * this.jitter();
    this.schedule(c);
  }

  /** After a transition (state, pending exchange, timers): the index and the deadline queue follow. */
  private changed(c: Control): void {
    this.index.refile(c);
    this.schedule(c);
  }

  /**
   * When tick() has something to do for this context: its retransmission, Update Request or
   * hold-down deadline, or its idle teardown (from lastActivity() now: activity only pushes
   * it back, so a time filed earlier is never late).
   */
  private dueAt(c: Control): number | undefined {
    let at = earliest(earliest(c.deadline, c.update?.deadline), c.holdDownUntil);
    const ctx = c.ctx;
    const lastActivity = this.options.lastActivity;
    if (ctx.state === 'ESTABLISHED' && lastActivity && this.table.byId(ctx.id) === ctx) at = earliest(at, Math.max(lastActivity(ctx), c.establishedAt) + this.timers.idleTeardownMs);
    return at;
  }

  /** Files the context in the deadline queue at dueAt(): after every change of a timer, or of the state. */
  private schedule(c: Control): void {
    if (this.control.get(c.ctx.id) !== c) return;
    const at = this.dueAt(c);
    if (at === undefined) this.deadlines.delete(c);
    else this.deadlines.set(c, at);
  }

  /** The control state of a context the machine just added to the table, filed in the index. */
  private attach(ctx: ShimContext): Control {
    this.detach(ctx.id);
    const c = this.newControl(ctx);
    this.control.set(ctx.id, c);
    this.index.refile(c);
    return c;
  }

  /** Forgets the control state of this id: the map, the index and the deadline queue. */
  private detach(id: number): void {
    const c = this.control.get(id);
    if (!c) return;
    this.control.delete(id);
    this.index.unfile(c);
    this.deadlines.delete(c);
  }

  /** True while c is the control state of a context in the table: lookups take nothing else. */
  private live(c: Control): boolean {
    return this.control.get(c.ctx.id) === c && this.table.byId(c.ctx.id) === c.ctx;
  }

  /** Of these candidates, the first (in the table's order) that is live and matches. */
  private first(candidates: readonly Control[], match: (ctx: ShimContext, c: Control) => boolean): Control | undefined {
    let found: Control | undefined;
    for (const c of candidates) if ((found === undefined || c.order < found.order) && this.live(c) && match(c.ctx, c)) found = c;
    return found;
  }

  /** These candidates in the table's order (callers check live() before acting on each). */
  private inOrder(candidates: readonly Control[]): Control[] {
    return [...candidates].sort((x, y) => x.order - y.order);
  }

  private newControl(ctx: ShimContext): Control {
    return {
      ctx,
      order: this.created++,
      pending: undefined,
      retries: 0,
      timeoutMs: this.timers.i1TimeoutMs,
      deadline: undefined,
      holdDownUntil: undefined,
      peerParameters: undefined,
      peerGeneration: undefined,
      localGeneration: this.options.random32(),
      parametersSent: false,
      update: undefined,
      lastUpdateNonce: undefined,
      establishedAt: this.options.now(),
    };
  }

  /** A random 47-bit tag no context has (RFC 5533 section 5: tags are random and unique). */
  private newTag(): number {
    for (;;) {
      const tag = (this.options.random32() & 0x7fff) * 0x1_0000_0000 + this.options.random32();
      if (tag !== 0 && !this.table.hasLocalTag(tag)) return tag;
    }
  }

  private reject(event: MachineEvent, detail: Record<string, unknown>): void {
    this.effects.event(event, detail);
  }
}
