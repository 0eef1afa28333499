/**
 * shim6d's control plane wiring: the pure ContextMachine with its real inputs and outputs.
 *
 * - in: control messages from the inbound NFQUEUE (whole IPv6 packets: the locators they
 *   came on), unknown tags from the data plane, console commands, the heuristic;
 * - out: control messages through raw protocol-140 sockets bound to the exact source
 *   locator (protocol/shim6-socket.ts), context removals to the netfilter rules, counters
 *   and log lines;
 * - our locators: rtnetlink (local-addresses.ts); a change sends Update Requests;
 * - our identities: HBA sets and CGAs from `shim6-cga generate` (locator-security.ts);
 * - time: one DeadlineTimer (timers.ts) at the machine's next deadline.
 */
import { randomBytes } from 'node:crypto';
import { encodeControlMessage } from '../protocol/control-message';
import { formatIPv6 } from '../protocol/address';
import { Shim6Sender } from '../protocol/shim6-socket';
import type { Logger } from '../common/logger';
import { isShimmed, type ShimContext } from './context';
import type { ContextTable } from './context-table';
import { ContextMachine, type MachineEvent, type MachineTimers } from './context-machine';
import { HostLocatorSecurity, LocalIdentity } from './locator-security';
import { LocalAddressMonitor } from './local-addresses';
import type { ShimControl } from './shim-control';
import { DeadlineTimer } from '../common/deadline-timer';
import { ConntrackMonitor } from './conntrack';
import { ContextHeuristic } from './heuristic';
import { FlowActivity } from './flow-activity';
import { ReapLink } from './reap-link';
import { Icmpv6Monitor } from './icmpv6-monitor';
import { applyPathMtuReport } from './path-mtu-report';
import { MessageType } from '../protocol/constants';

export interface HeuristicConfig {
  enabled: boolean;
  packets: number;
  activeSeconds: number;
  pollMs: number;
}

export interface ControlPlaneOptions {
  table: ContextTable;
  control: ShimControl;
  /** Takes a removed context's ULID pair out of the rules (it is no longer in the table). */
  removeShimmedPair: (src: string, dst: string) => Promise<void>;
  /** Puts an established context's ULID pair into the rules when its pair is not the ULIDs (I2bis recovery). */
  addShimmedPair: (src: string, dst: string) => Promise<void>;
  identities: readonly string[];
  timers: Partial<MachineTimers>;
  log: Logger;
  /** Last time the data plane saw a context's traffic (ms); conntrack's view is added here. */
  lastActivity: (ctx: ShimContext) => number;
  heuristic: HeuristicConfig;
  /** The IPC link to reapd; undefined: REAP disabled. */
  reap?: { socket: string; intervalMs: number; keepaliveTimeout: number };
}

/** Events worth an info line; the rest are debug (and all are counted). */
const NOTABLE = new Set<MachineEvent>(['established', 'no-support', 'update-accepted', 'context-confusion', 'context-removed', 'rejected-locators', 'rejected-replay', 'error-received']);

export class ControlPlane {
  readonly machine: ContextMachine;
  readonly counters = new Map<MachineEvent, number>();
  private readonly sender = new Shim6Sender();
  private readonly addresses: LocalAddressMonitor;
  private readonly timer: DeadlineTimer;
  private conntrack: ConntrackMonitor | undefined;
  private heuristic: ContextHeuristic | undefined;
  private poller: NodeJS.Timeout | undefined;
  private flowActivity: FlowActivity | undefined;
  readonly reap: ReapLink | undefined;
  private icmp: Icmpv6Monitor | undefined;
  /** Packet Too Big reports about shimmed packets: received, and those that lowered a path MTU. */
  readonly pathMtuReports = { received: 0, applied: 0 };

  constructor(private readonly o: ControlPlaneOptions) {
    const identities = o.identities.map((dir) => LocalIdentity.load(dir));
    const security = new HostLocatorSecurity(identities);
    for (const id of identities) o.log.info('identity loaded', { kind: id.kind, ulids: id.securedUlids().join(',') });
    this.addresses = new LocalAddressMonitor();
    this.machine = new ContextMachine(
      o.table,
      security,
      {
        send: (message, from, to) => {
          try {
            this.sender.send(encodeControlMessage(message), from, to);
          } catch (e) {
            o.log.warn('cannot send a control message', { type: message.type, from, to, error: e instanceof Error ? e.message : String(e) });
          }
        },
        established: (ctx) => {
          o.log.info('context established', { id: ctx.id, ulids: `${ctx.localUlid.text} → ${ctx.peerUlid.text}`, pair: `${ctx.current.local.text} → ${ctx.current.peer.text}`, peerLocators: ctx.peerLocators.map((l) => `${l.text}[${l.verification}]`).join(',') });
          // A context rebuilt by I2bis starts on the pair the recovery used, which is not always the ULIDs.
          if (isShimmed(ctx)) void o.addShimmedPair(ctx.localUlid.text, ctx.peerUlid.text).catch((e: unknown) => o.log.warn('could not add the rule of an established context', { id: ctx.id, error: String(e) }));
          // One round for every context established before the next turn of the event loop.
          this.reap?.flush();
        },
        peerLocatorsChanged: (ctx, currentPairBroken) => {
          o.log.info('peer locators changed', { id: ctx.id, locators: ctx.peerLocators.map((l) => l.text).join(','), currentPairBroken });
          // Until reapd explores, a context whose pair lost its peer locator goes back to its ULIDs.
          if (currentPairBroken && isShimmed(ctx)) void o.control.returnToUlids(ctx.id).catch((e: unknown) => o.log.warn('could not move the context back to its ULIDs', { id: ctx.id, error: String(e) }));
        },
        removed: (ctx, reason) => {
          if (isShimmed(ctx)) void o.removeShimmedPair(ctx.localUlid.text, ctx.peerUlid.text).catch((e: unknown) => o.log.warn('could not remove the rule of a removed context', { id: ctx.id, error: String(e) }));
          o.log.info('context removed', { id: ctx.id, reason });
        },
        event: (event, detail) => {
          this.counters.set(event, (this.counters.get(event) ?? 0) + 1);
          o.log[NOTABLE.has(event) ? 'info' : 'debug'](`control: ${event}`, detail);
        },
      },
      {
        now: Date.now,
        random32: () => randomBytes(4).readUInt32BE(0),
        timers: o.timers,
        localLocators: () => this.localLocators(),
        lastActivity: (ctx) => Math.max(o.lastActivity(ctx), this.heuristic?.lastSeen(ctx.localUlid.text, ctx.peerUlid.text) ?? 0),
        ...(o.reap ? { keepaliveTimeout: o.reap.keepaliveTimeout } : {}),
      },
    );
    this.timer = new DeadlineTimer(
      () => this.machine.nextDeadline(),
      () => this.machine.tick(),
    );
    let pending: NodeJS.Timeout | undefined;
    const changed = (what: string) => (a: { address: string }) => {
      o.log.info(`local locator ${what}`, { address: a.address });
      // A burst of changes (an interface coming up) makes one round of Update Requests.
      if (pending) clearTimeout(pending);
      pending = setTimeout(() => {
        pending = undefined;
        this.input(() => this.machine.localLocatorsChanged());
      }, 200);
    };
    this.addresses.on('added', changed('added'));
    this.addresses.on('removed', changed('removed'));
    // The locator in use went away: REAP explores now instead of waiting for a send timeout.
    this.addresses.on('removed', (a: { address: string }) => {
      if (!this.reap) return;
      const affected: ShimContext[] = [];
      for (const ctx of o.table.values()) {
        if (ctx.state === 'ESTABLISHED' && ctx.current.local.text === a.address) affected.push(ctx);
      }
      this.reap.explore(affected, `local locator ${a.address} removed`);
    });
    if (o.reap) {
      this.reap = new ReapLink({
        path: o.reap.socket,
        table: o.table,
        control: o.control,
        log: o.log,
        intervalMs: o.reap.intervalMs,
        activity: (ctx) => {
          const flows = this.flowActivity?.activity(ctx.localUlid.text, ctx.peerUlid.text) ?? { sent: 0, received: 0 };
          return { sent: flows.sent + ctx.counters.shimmedPackets, received: flows.received + ctx.counters.deshimmedPackets };
        },
      });
    }
    this.addresses.on('error', (e: Error) => o.log.warn('rtnetlink', { error: e.message }));
  }

  async start(): Promise<void> {
    await this.addresses.ready;
    this.o.log.info('local locators', { addresses: this.addresses.addresses().map((a) => a.address).join(',') });
    // A peer without Shim6 answers our I1 with an ICMPv6 Parameter Problem: NO-SUPPORT at once.
    // A router on a shimmed path that cannot forward a packet sends a Packet Too Big about it.
    try {
      this.icmp = new Icmpv6Monitor();
      this.icmp.on('noShim6', (p) => {
        this.o.log.info('ICMPv6 Parameter Problem: the peer has no Shim6', { peer: p.peer, from: p.from });
        this.input(() => this.machine.peerHasNoShim6(p.peer));
      });
      this.icmp.on('pathMtu', (r) => {
        this.pathMtuReports.received++;
        const outcome = applyPathMtuReport(this.o.table, r);
        const detail = { from: r.from, mtu: r.mtu, pair: `${r.local} → ${r.peer}`, peerContextTag: r.peerContextTag, packetLength: r.packetLength };
        if (outcome.applied) {
          this.pathMtuReports.applied++;
          this.o.log.info('ICMPv6 Packet Too Big on a shimmed path: path MTU lowered', { ...detail, id: outcome.ctx.id, before: outcome.before ?? 'default', after: outcome.after });
        } else {
          this.o.log.debug('ICMPv6 Packet Too Big on a shimmed path: ignored', { ...detail, reason: outcome.reason, id: outcome.ctx?.id });
        }
      });
      this.icmp.on('error', (e: Error) => this.o.log.warn('ICMPv6 socket', { error: e.message }));
    } catch (e) {
      this.o.log.warn('no ICMPv6 socket: peers without Shim6 are found by I1 timeouts only, and Packet Too Big from routers on shimmed paths is not seen', { error: e instanceof Error ? e.message : String(e) });
    }
    if (this.o.heuristic.enabled || this.o.reap) this.startConntrack();
    this.reap?.start();
    this.timer.reschedule();
  }

  /**
   * conntrack, read every poll interval, feeds two things: the heuristic (each ULID pair that
   * passes the threshold gets a context (I1), unless it has one, its peer is in hold-down, or
   * an address is link-local, loopback or multicast) and REAP's per-direction activity of
   * contexts on their ULID pair (flow-activity.ts), which reapd needs to see data flow.
   */
  private startConntrack(): void {
    const h = this.o.heuristic;
    const isLocal = (address: string): boolean => this.addresses.has(address);
    if (h.enabled) {
      this.heuristic = new ContextHeuristic({
        packetThreshold: h.packets,
        activeSeconds: h.activeSeconds,
        holdDownCheck: (peer) => this.machine.inHoldDown(peer),
        hasContext: (local, peer) => this.o.table.byUlids(local, peer) !== undefined,
        isLocal,
      });
    }
    if (this.o.reap) this.flowActivity = new FlowActivity(isLocal, (local, peer) => this.o.table.byUlids(local, peer) !== undefined);
    this.conntrack = new ConntrackMonitor();
    this.conntrack.on('error', (e: Error) => this.o.log.warn('conntrack', { error: e.message }));
    this.conntrack.on('event', (e) => {
      this.flowActivity?.observe(e);
      if (this.heuristic) this.consider(this.heuristic.observe(e));
    });
    this.conntrack.start();
    const pollMs = this.o.reap ? Math.min(h.pollMs, this.o.reap.intervalMs) : h.pollMs;
    this.poller = setInterval(() => {
      try {
        const conntrack = this.conntrack;
        if (!conntrack) return;
        const heuristic = this.heuristic;
        const flows = this.flowActivity;
        flows?.beginDump();
        for (const sample of conntrack.poll()) {
          flows?.observe(sample);
          if (heuristic) this.consider(heuristic.observe(sample));
        }
        if (flows) {
          flows.endDump();
          flows.prune();
        }
        // check() forgets the idle pairs (sweep) before it reconsiders the suppressed ones.
        if (heuristic) this.consider(heuristic.check());
      } catch (e) {
        this.o.log.warn('conntrack poll failed', { error: e instanceof Error ? e.message : String(e) });
      }
    }, pollMs);
    this.poller.unref();
    if (h.enabled) this.o.log.info('conntrack heuristic running', { packets: h.packets, activeSeconds: h.activeSeconds, pollMs: h.pollMs });
  }

  private consider(candidates: ReadonlyArray<{ local: string; peer: string; reason: string; packets: number }>): void {
    for (const c of candidates) {
      const ctx = this.startContext(c.local, c.peer);
      if (ctx) this.o.log.info('heuristic: the pair deserves a context', { id: ctx.id, local: c.local, peer: c.peer, reason: c.reason, packets: c.packets });
    }
  }

  async stop(): Promise<void> {
    this.timer.stop();
    this.icmp?.close();
    await this.reap?.stop();
    if (this.poller) clearInterval(this.poller);
    await this.conntrack?.close();
    this.sender.close();
    await this.addresses.close();
  }

  /** Runs one input into the machine, then re-arms the timer. */
  private input<T>(fn: () => T): T {
    try {
      return fn();
    } finally {
      this.timer.reschedule();
    }
  }

  /**
   * A control message from the inbound queue, its Shim6 header at `shimOffset` (the data plane
   * found it): Keepalive and Probe are reapd's, the rest the machine's.
   */
  receive(packet: Buffer, shimOffset: number): void {
    if (this.reap && isReapMessage(packet, shimOffset)) return this.reap.reapPacket(packet);
    this.input(() => this.machine.receive(packet, shimOffset));
  }

  unknownContextTag(tag: number, packet: Buffer): void {
    this.input(() => this.machine.unknownContextTag(tag, formatIPv6(packet.subarray(24, 40)), formatIPv6(packet.subarray(8, 24))));
  }

  startContext(localUlid: string, peerUlid: string): ShimContext | undefined {
    return this.input(() => this.machine.start(localUlid, peerUlid));
  }

  sendUpdate(id: number): boolean {
    return this.input(() => this.machine.sendUpdate(id));
  }

  remove(id: number, reason: string): ShimContext | undefined {
    return this.input(() => this.machine.remove(id, reason));
  }

  inHoldDown(peerUlid: string): boolean {
    return this.machine.inHoldDown(peerUlid);
  }

  localLocators(): string[] {
    return this.addresses.addresses().map((a) => a.address);
  }
}

/** Whether the control message whose Shim6 header starts at `shimOffset` is a Keepalive or a Probe (REAP's, RFC 5534 section 5). */
export function isReapMessage(packet: Buffer, shimOffset: number): boolean {
  const type = (packet[shimOffset + 2] ?? 0) & 0x7f;
  return type === MessageType.Keepalive || type === MessageType.Probe;
}
