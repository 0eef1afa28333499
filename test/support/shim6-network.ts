/**
 * A simulated Shim6 network for the context machine's tests (shim6d/context-machine): hosts
 * with their own ContextTable and ContextMachine, one fake clock, a deterministic random
 * source per host, a fake LocatorSecurity (HBA sets), and an in-memory network that carries
 * whole IPv6 packets (next header 140) and can drop, duplicate or delay them.
 *
 * Nothing here runs by itself: tests call deliver()/settle() to move packets and
 * advance()/tickAll() to move time.
 */
import { canonicalIPv6, formatIPv6 } from '../../protocol/address';
import { IPPROTO_SHIM6 } from '../../protocol/constants';
import { decodeControlMessage, encodeControlMessage, type ControlMessage } from '../../protocol/control-message';
import type { LocatorListOption, Shim6Option } from '../../protocol/options';
import { ContextMachine, type LocatorSecurity, type MachineEvent, type MachineTimers, type PeerLocatorCheck } from '../../shim6d/context-machine';
import type { ShimContext } from '../../shim6d/context';
import { ContextTable } from '../../shim6d/context-table';
import { ipv6Packet } from './packets';

/** Canonical text of an address (throws on a typo in a test). */
export function canon(address: string): string {
  const c = canonicalIPv6(address);
  if (c === undefined) throw new RangeError(`not an IPv6 address: ${address}`);
  return c;
}

// -- clock and random ----------------------------------------------------------------------------

export class FakeClock {
  constructor(public t: number) {}
  readonly now = (): number => this.t;
  set(t: number): void {
    if (t < this.t) throw new RangeError(`the fake clock does not go back: ${t} < ${this.t}`);
    this.t = t;
  }
}

/** mulberry32: a small deterministic PRNG of uint32 values. */
export function seededRandom32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** A random source that returns `script` first, then falls back to `rest`. */
export function scriptedRandom32(script: readonly number[], rest: () => number): () => number {
  const queue = [...script];
  return () => (queue.length > 0 ? (queue.shift() as number) : rest());
}

/** The two random32 values that make ContextMachine's newTag() return `tag`. */
export function tagScript(tag: number): [number, number] {
  return [Math.floor(tag / 0x1_0000_0000), tag % 0x1_0000_0000];
}

// -- locator security ----------------------------------------------------------------------------

/** What a fake host proves about itself: its HBA set and the parameters naming it. */
export interface Identity {
  name: string;
  hbaSet: Set<string>;
}

export function parametersOf(name: string): Buffer {
  return Buffer.from(`hba-parameters:${name}`, 'latin1');
}

/**
 * HBA without the cryptography: a host can prove exactly the locators of its HBA set, and its
 * CGA Parameter Data Structure is a string naming it. A peer's list verifies iff every locator
 * is in the set of the host that owns the peer ULID and the parameters name that host.
 */
export class FakeLocatorSecurity implements LocatorSecurity {
  readonly verifyCalls: Array<{ peerUlid: string; locators: string[]; parameters: Buffer | undefined; result: PeerLocatorCheck }> = [];

  constructor(
    private readonly self: Identity,
    private readonly identities: () => Identity[],
  ) {}

  securableLocators(localUlid: string, locators: readonly string[]): string[] {
    if (!this.self.hbaSet.has(canon(localUlid))) return [];
    return locators.map(canon).filter((l) => this.self.hbaSet.has(l));
  }

  localLocatorOptions(_localUlid: string, locators: readonly string[], generation: number, includeParameters: boolean): Shim6Option[] {
    const options: Shim6Option[] = [{ kind: 'LocatorList', generation, locators: locators.map((address) => ({ address, verificationMethod: 1 })) }];
    if (includeParameters) options.push({ kind: 'CgaParameterDataStructure', data: parametersOf(this.self.name) });
    return options;
  }

  verifyPeerLocators(peerUlid: string, list: LocatorListOption, parameters: Buffer | undefined, _signature: Buffer | undefined): PeerLocatorCheck {
    const result = this.check(peerUlid, list, parameters);
    this.verifyCalls.push({ peerUlid, locators: list.locators.map((l) => l.address), parameters, result });
    return result;
  }

  private check(peerUlid: string, list: LocatorListOption, parameters: Buffer | undefined): PeerLocatorCheck {
    const ulid = canon(peerUlid);
    const owner = this.identities().find((i) => i.hbaSet.has(ulid));
    if (!owner) return { ok: false, reason: 'unknown-ulid', detail: `${ulid} is in no HBA set` };
    if (!parameters) return { ok: false, reason: 'no-parameters', detail: 'no CGA Parameter Data Structure, given or remembered' };
    if (!parameters.equals(parametersOf(owner.name))) return { ok: false, reason: 'hba-parameters-mismatch', detail: `parameters do not name ${owner.name}` };
    for (const l of list.locators) {
      if (!owner.hbaSet.has(canon(l.address))) return { ok: false, reason: 'hba-not-in-set', detail: `${l.address} is not in ${owner.name}'s HBA set` };
    }
    return { ok: true, locators: list.locators.map((l) => ({ address: canon(l.address), method: 'hba' as const })), parameters };
  }
}

// -- network -------------------------------------------------------------------------------------

export interface WirePacket {
  /** Name of the host whose machine sent it, or 'test' for injected packets. */
  sender: string;
  from: string;
  to: string;
  /** The message as decoded from the bytes on the wire. */
  message: ControlMessage;
  /** The whole IPv6 packet. */
  bytes: Buffer;
  /** Clock reading when it was sent. */
  at: number;
}

export interface PacketMatch {
  type?: ControlMessage['type'];
  /** Host name of the sender. */
  sender?: string;
  /** Host name of the receiver (the owner of the destination address). */
  receiver?: string;
}

export interface NetworkRule extends PacketMatch {
  action: 'drop' | 'duplicate' | 'delay';
  /** How many matching packets the rule applies to; default: all. */
  count?: number;
}

interface ActiveRule extends NetworkRule {
  left: number;
}

export class SimNetwork {
  /** Every packet sent, in order, whatever happened to it. */
  readonly sent: WirePacket[] = [];
  /** Sent and not yet delivered. */
  queue: WirePacket[] = [];
  readonly delivered: WirePacket[] = [];
  readonly dropped: WirePacket[] = [];
  readonly delayed: WirePacket[] = [];
  /** Packets whose destination no host owns. */
  readonly undeliverable: WirePacket[] = [];
  private rules: ActiveRule[] = [];

  constructor(
    private readonly clock: FakeClock,
    private readonly hosts: () => SimHost[],
  ) {}

  /** Encodes, wraps in an IPv6 header and queues (what each host's effects.send does). */
  send(sender: string, message: ControlMessage, from: string, to: string): WirePacket {
    const payload = encodeControlMessage(message);
    const bytes = ipv6Packet({ source: from, destination: to, nextHeader: IPPROTO_SHIM6, payload });
    return this.sendBytes(sender, bytes);
  }

  /** Queues a ready-made IPv6 packet. */
  sendBytes(sender: string, bytes: Buffer): WirePacket {
    const from = formatIPv6(bytes, 8);
    const to = formatIPv6(bytes, 24);
    // Strict: what the machine sends must decode with every reserved field zero.
    const decoded = decodeControlMessage(bytes.subarray(40));
    if (!decoded.ok) throw new Error(`${sender} sent a message that does not decode: ${decoded.error.code} ${decoded.error.message}`);
    const p: WirePacket = { sender, from, to, message: decoded.value.message, bytes, at: this.clock.t };
    this.sent.push(p);
    this.queue.push(p);
    return p;
  }

  rule(r: NetworkRule): void {
    this.rules.push({ ...r, left: r.count ?? Infinity });
  }

  clearRules(): void {
    this.rules = [];
  }

  owner(address: string): SimHost | undefined {
    const a = canon(address);
    return this.hosts().find((h) => h.locators.some((l) => canon(l) === a));
  }

  /** Delivers what is queued now (not what the deliveries send); returns how many were taken from the queue. */
  deliver(): number {
    const batch = this.queue;
    this.queue = [];
    for (const p of batch) {
      const host = this.owner(p.to);
      if (!host) {
        this.undeliverable.push(p);
        continue;
      }
      const rule = this.rules.find((r) => r.left > 0 && matches(r, p, host.name));
      if (rule) rule.left--;
      switch (rule?.action) {
        case 'drop':
          this.dropped.push(p);
          break;
        case 'delay':
          this.delayed.push(p);
          break;
        case 'duplicate':
          this.delivered.push(p, p);
          host.machine.receive(Buffer.from(p.bytes));
          host.machine.receive(Buffer.from(p.bytes));
          break;
        default:
          this.delivered.push(p);
          host.machine.receive(Buffer.from(p.bytes));
      }
    }
    return batch.length;
  }

  /** Delivers until nothing is queued. */
  settle(maxRounds = 100): void {
    for (let i = 0; i < maxRounds; i++) if (this.deliver() === 0) return;
    throw new Error(`the network did not settle in ${maxRounds} rounds`);
  }

  /** Puts the delayed packets back in the queue (they are delivered by the next deliver()). */
  releaseDelayed(): void {
    this.queue.push(...this.delayed.splice(0));
  }

  /** Sent packets, optionally of one type and/or from one host. */
  messages(match: PacketMatch = {}): WirePacket[] {
    return this.sent.filter((p) => matches(match, p, this.owner(p.to)?.name));
  }
}

function matches(m: PacketMatch, p: WirePacket, receiver: string | undefined): boolean {
  return (m.type === undefined || p.message.type === m.type) && (m.sender === undefined || p.sender === m.sender) && (m.receiver === undefined || receiver === m.receiver);
}

// -- hosts ---------------------------------------------------------------------------------------

export interface HostOptions {
  seed?: number;
  /** Random values the machine gets first (e.g. tagScript(tag)), before the seeded ones. */
  script?: readonly number[];
  /** Enables idle teardown: the context's last activity. */
  lastActivity?: (ctx: ShimContext) => number;
  /** Our REAP Keepalive Timeout (s), announced in the Keepalive Timeout option. */
  keepaliveTimeout?: number;
}

export interface EventRecord {
  event: MachineEvent;
  detail: Record<string, unknown>;
  at: number;
}

export class SimHost {
  table!: ContextTable;
  machine!: ContextMachine;
  readonly security: FakeLocatorSecurity;
  readonly identity: Identity;
  /** Everything the machine's effects were called with. */
  readonly established: ShimContext[] = [];
  readonly changed: Array<{ ctx: ShimContext; currentPairBroken: boolean }> = [];
  readonly removed: Array<{ ctx: ShimContext; reason: string }> = [];
  readonly events: EventRecord[] = [];
  /** What options.localLocators() returns: the usable addresses (not necessarily all in the HBA set). */
  locators: string[];
  private incarnation = 0;

  constructor(
    private readonly world: SimWorld,
    readonly name: string,
    locators: readonly string[],
    private options: HostOptions = {},
  ) {
    this.locators = locators.map(canon);
    this.identity = { name, hbaSet: new Set(this.locators) };
    this.security = new FakeLocatorSecurity(this.identity, () => world.hosts.map((h) => h.identity));
    this.boot();
  }

  /** The host lost all its state: a new table and machine (the effect records are kept). */
  restart(options: HostOptions = this.options): void {
    this.options = options;
    this.boot();
  }

  private boot(): void {
    this.incarnation++;
    const seed = this.options.seed ?? hashName(this.name) + this.incarnation * 7919;
    this.table = new ContextTable();
    this.machine = new ContextMachine(
      this.table,
      this.security,
      {
        send: (message, from, to) => {
          this.world.network.send(this.name, message, from, to);
        },
        established: (ctx) => {
          this.established.push(ctx);
        },
        peerLocatorsChanged: (ctx, currentPairBroken) => {
          this.changed.push({ ctx, currentPairBroken });
        },
        removed: (ctx, reason) => {
          this.removed.push({ ctx, reason });
        },
        event: (event, detail) => {
          this.events.push({ event, detail, at: this.world.clock.t });
        },
      },
      {
        now: this.world.clock.now,
        random32: scriptedRandom32(this.options.script ?? [], seededRandom32(seed)),
        timers: this.world.timers,
        localLocators: () => this.locators,
        lastActivity: this.options.lastActivity,
        jitter: this.world.jitter,
        ...(this.options.keepaliveTimeout !== undefined ? { keepaliveTimeout: this.options.keepaliveTimeout } : {}),
      },
    );
  }

  /** Details of the events of one kind. */
  eventsOf(event: MachineEvent): Array<Record<string, unknown>> {
    return this.events.filter((e) => e.event === event).map((e) => e.detail);
  }

  count(event: MachineEvent): number {
    return this.events.filter((e) => e.event === event).length;
  }

  /** The only context in the table (fails the test when there is not exactly one). */
  only(): ShimContext {
    const all = this.table.all();
    if (all.length !== 1) throw new Error(`${this.name} has ${all.length} contexts, not 1`);
    return all[0] as ShimContext;
  }

  /** Encodes a message and hands it straight to this host's machine, as if it came from `from`. */
  inject(message: ControlMessage, from: string, to: string): void {
    const payload = encodeControlMessage(message);
    this.machine.receive(ipv6Packet({ source: from, destination: to, nextHeader: IPPROTO_SHIM6, payload }));
  }
}

function hashName(name: string): number {
  let h = 2166136261;
  for (const c of name) h = Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0;
  return h;
}

export interface WorldOptions {
  start?: number;
  timers?: Partial<MachineTimers>;
  /** Retransmission jitter; default exactly 1 (nominal timeouts). */
  jitter?: () => number;
}

export class SimWorld {
  readonly clock: FakeClock;
  readonly hosts: SimHost[] = [];
  readonly network: SimNetwork;
  readonly timers: Partial<MachineTimers> | undefined;
  readonly jitter: () => number;

  constructor(options: WorldOptions = {}) {
    this.clock = new FakeClock(options.start ?? 1_000_000);
    this.timers = options.timers;
    this.jitter = options.jitter ?? (() => 1);
    this.network = new SimNetwork(this.clock, () => this.hosts);
  }

  host(name: string, locators: readonly string[], options: HostOptions = {}): SimHost {
    const h = new SimHost(this, name, locators, options);
    this.hosts.push(h);
    return h;
  }

  /** The earliest nextDeadline() of all machines. */
  nextDeadline(): number | undefined {
    let next: number | undefined;
    for (const h of this.hosts) {
      const t = h.machine.nextDeadline();
      if (t !== undefined && (next === undefined || t < next)) next = t;
    }
    return next;
  }

  tickAll(): void {
    for (const h of this.hosts) h.machine.tick();
  }

  /**
   * Moves the clock `ms` forward, as the daemon would: at each machine deadline on the way it
   * ticks every machine and (unless `deliver` is false) settles the network.
   */
  advance(ms: number, { deliver = true } = {}): void {
    const target = this.clock.t + ms;
    for (let i = 0; ; i++) {
      if (i > 10_000) throw new Error('advance: a deadline that tick() never clears');
      const next = this.nextDeadline();
      if (next === undefined || next > target) break;
      this.clock.set(Math.max(this.clock.t, next));
      this.tickAll();
      if (deliver) this.network.settle();
    }
    this.clock.set(target);
    this.tickAll();
    if (deliver) this.network.settle();
  }

  /** Everything observable so far (sends, events, removals), to tell whether a tick did anything. */
  activity(): number {
    return this.network.sent.length + this.hosts.reduce((n, h) => n + h.events.length + h.removed.length + h.established.length + h.changed.length, 0);
  }
}
