/**
 * shim6d's side of the IPC with reapd (ipc/): tells reapd which contexts exist (their tags,
 * locator sets and current pair) and how much traffic each one carries, passes it the
 * Keepalive and Probe messages that arrive on the inbound queue, and applies the locator
 * pairs reapd's exploration chooses.
 *
 * Announcements are by difference: every `intervalMs` the table is compared with what reapd
 * was last told, and only what changed is sent, so every way a context can change (the
 * exchange, an update, the console's shim/deshim, a removal) reaches reapd without a hook at
 * each place. On every (re)connect the whole set goes out as one `sync`.
 */
import { IpcClient, type IpcContext, type IpcReapStatus, type ReapdToShimd } from '../ipc';
import type { Logger } from '../common/logger';
import type { ShimContext } from './context';
import type { ContextTable } from './context-table';
import type { ShimControl } from './shim-control';

export interface ReapLinkOptions {
  path: string;
  table: ContextTable;
  control: ShimControl;
  log: Logger;
  /** Cumulative packets sent to and received from the peer (data plane plus conntrack). */
  activity: (ctx: ShimContext) => { sent: number; received: number };
  /** How often changes and activity are sent (ms). */
  intervalMs: number;
}

export interface ReapLinkStats {
  pairsApplied: number;
  pairsRefused: number;
  reapPacketsForwarded: number;
  reapPacketsDropped: number;
  syncs: number;
}

/** What reapd is told about a context; only ESTABLISHED contexts are announced. */
export function ipcContext(ctx: ShimContext): IpcContext {
  const unique = (xs: string[]): string[] => [...new Set(xs)];
  return {
    id: ctx.id,
    localUlid: ctx.localUlid.text,
    peerUlid: ctx.peerUlid.text,
    localContextTag: ctx.localContextTag,
    peerContextTag: ctx.peerContextTag,
    localLocators: unique([ctx.localUlid.text, ...ctx.localLocators.map((l) => l.text)]),
    peerLocators: unique([ctx.peerUlid.text, ...ctx.peerLocators.filter((l) => l.verification !== 'unverified').map((l) => l.text)]),
    current: { local: ctx.current.local.text, peer: ctx.current.peer.text },
    ...(ctx.peerKeepaliveTimeout !== undefined ? { peerKeepaliveTimeout: ctx.peerKeepaliveTimeout } : {}),
  };
}

export class ReapLink {
  private readonly client: IpcClient;
  /** What reapd was last told, per context id (JSON of the IpcContext). */
  private readonly announced = new Map<number, string>();
  private readonly lastActivity = new Map<number, string>();
  private readonly statuses = new Map<number, IpcReapStatus>();
  private timer: NodeJS.Timeout | undefined;
  /** A flush() round is waiting for its setImmediate. */
  private flushQueued = false;
  readonly stats: ReapLinkStats = { pairsApplied: 0, pairsRefused: 0, reapPacketsForwarded: 0, reapPacketsDropped: 0, syncs: 0 };

  constructor(private readonly o: ReapLinkOptions) {
    // The client logs connections, disconnections and invalid messages itself.
    this.client = new IpcClient({ path: o.path, logger: o.log, pid: process.pid });
    this.client.on('connected', () => this.sync());
    this.client.on('message', (m: ReapdToShimd) => this.onMessage(m));
  }

  start(): void {
    this.client.start();
    this.timer = setInterval(() => this.round(), this.o.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.client.close();
  }

  get connected(): boolean {
    return this.client.connected;
  }

  /** reapd's latest REAP status of a context (the console shows it). */
  status(id: number): IpcReapStatus | undefined {
    return this.statuses.get(id);
  }

  /** A received Keepalive or Probe (the whole IPv6 packet): reapd's. */
  reapPacket(packet: Buffer): void {
    if (this.client.send({ type: 'reap-packet', packet: packet.toString('base64') })) this.stats.reapPacketsForwarded++;
    else this.stats.reapPacketsDropped++;
  }

  /**
   * The locator in use went away: these contexts explore now rather than after a send
   * timeout. reapd first hears what changed (one round for all of them).
   */
  explore(contexts: readonly ShimContext[], reason: string): void {
    if (contexts.length === 0) return;
    this.round();
    for (const ctx of contexts) this.client.send({ type: 'explore', id: ctx.id, reason });
  }

  /**
   * Sends what changed soon (a context just got established): one round at the next turn of
   * the event loop, however many contexts ask for it before then.
   */
  flush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    setImmediate(() => {
      this.flushQueued = false;
      this.round();
    });
  }

  private established(): ShimContext[] {
    return [...this.o.table.values()].filter((c) => c.state === 'ESTABLISHED');
  }

  private sync(): void {
    this.announced.clear();
    this.lastActivity.clear();
    const contexts = this.established().map(ipcContext);
    for (const c of contexts) this.announced.set(c.id, JSON.stringify(c));
    if (this.client.send({ type: 'sync', contexts })) this.stats.syncs++;
    this.round();
  }

  private round(): void {
    if (!this.client.connected) return;
    const live = new Set<number>();
    const activity: Array<{ id: number; sent: number; received: number }> = [];
    for (const ctx of this.established()) {
      live.add(ctx.id);
      const c = ipcContext(ctx);
      const text = JSON.stringify(c);
      if (this.announced.get(ctx.id) !== text) {
        this.announced.set(ctx.id, text);
        this.client.send({ type: 'context', context: c });
      }
      const a = this.o.activity(ctx);
      const key = `${a.sent} ${a.received}`;
      if (this.lastActivity.get(ctx.id) !== key) {
        this.lastActivity.set(ctx.id, key);
        activity.push({ id: ctx.id, sent: a.sent, received: a.received });
      }
    }
    for (const id of this.announced.keys()) {
      if (live.has(id)) continue;
      this.announced.delete(id);
      this.lastActivity.delete(id);
      this.statuses.delete(id);
      this.client.send({ type: 'context-removed', id, reason: 'gone' });
    }
    // Chunks keep each frame small even with many busy contexts.
    for (let i = 0; i < activity.length; i += 4096) this.client.send({ type: 'activity', contexts: activity.slice(i, i + 4096) });
  }

  private onMessage(m: ReapdToShimd): void {
    switch (m.type) {
      case 'pair':
        return this.applyPair(m.id, m.local, m.peer);
      case 'reap-status':
        if (this.o.table.byId(m.status.id)) this.statuses.set(m.status.id, m.status);
        return;
      case 'reap-removed':
        this.statuses.delete(m.id);
        return;
      default:
        return;
    }
  }

  private applyPair(id: number, local: string, peer: string): void {
    const ctx = this.o.table.byId(id);
    if (!ctx || ctx.state !== 'ESTABLISHED') {
      this.stats.pairsRefused++;
      this.o.log.warn('reapd chose a pair for a context that is not established here', { id });
      return;
    }
    const toUlids = local === ctx.localUlid.text && peer === ctx.peerUlid.text;
    const move = toUlids ? this.o.control.returnToUlids(id) : this.o.control.moveTo(id, local, peer);
    move.then(
      (c) => {
        this.stats.pairsApplied++;
        this.o.log.info(toUlids ? 'REAP: back on the ULID pair' : 'REAP: context moved to a working pair', { id, pair: `${c.current.local.text} → ${c.current.peer.text}` });
        this.round();
      },
      (e: unknown) => {
        this.stats.pairsRefused++;
        this.o.log.warn('REAP: could not move the context to the chosen pair', { id, local, peer, error: e instanceof Error ? e.message : String(e) });
        // reapd's view may be stale: tell it again what we have.
        this.announced.delete(id);
        this.round();
      },
    );
  }
}
