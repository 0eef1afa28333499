/**
 * reapd's wiring: the one place that owns its I/O. The pure REAP machine (reap-machine.ts)
 * gets its inputs from shim6d over the IPC socket (contexts, traffic counters, the Keepalive
 * and Probe messages shim6d's inbound queue received) and its clock from one DeadlineTimer;
 * its Keepalives and Probes leave through raw protocol-140 sockets bound to the exact source
 * locator, and the pairs it finds go back to shim6d.
 *
 * reapd starts first and listens; shim6d connects (and reconnects after a restart) and
 * re-announces its contexts with a `sync`. While shim6d is away REAP keeps its state, so a
 * restarted shim6d finds it as it was.
 */
import { encodeControlMessage, decodeControlMessage, type KeepaliveMessage, type ProbeMessage } from '../protocol/control-message';
import { formatIPv6 } from '../protocol/address';
import { locateShim6Header, PacketError, type HeaderPosition } from '../protocol/ipv6-packet';
import { Shim6Sender } from '../protocol/shim6-socket';
import { IpcServer, type ShimdToReapd } from '../ipc';
import type { Shim6Config } from '../common/config';
import { rateLimitedLogger, type Logger, type RateLimitedLog } from '../common/logger';
import { acquirePidFile, type PidFile } from '../common/pidfile';
import { DeadlineTimer } from '../common/deadline-timer';
import { randomBytes } from 'node:crypto';
import { ReapMachine, type ReapEvent, type ReapStatus } from './reap-machine';
import type { ReapTimers } from './reap-timers';

/** Events worth an info line; the rest are debug (all are counted). */
const NOTABLE = new Set<string>(['send-timeout', 'exploration-started', 'pair-found', 'ulid-pair-restored']);

export interface ReapdStats {
  reapPackets: number;
  malformedPackets: number;
  sendFailures: number;
  pairsChosen: number;
  statusReports: number;
}

/** The configuration's REAP timers (milliseconds) as the machine takes them (seconds). */
export function reapTimersOf(config: Shim6Config): ReapTimers {
  const t = config.reapd.timers;
  return {
    keepaliveTimeout: t.keepaliveTimeout,
    sendTimeout: t.sendTimeoutMs / 1000,
    ...(t.keepaliveIntervalMs !== undefined ? { keepaliveInterval: t.keepaliveIntervalMs / 1000 } : {}),
    initialProbes: t.initialProbes,
    initialProbeInterval: t.initialProbeIntervalMs / 1000,
    maxProbeInterval: t.maxProbeIntervalMs / 1000,
    ulidRetryInterval: t.ulidRetryIntervalMs / 1000,
    historyLength: t.historyLength,
  };
}

export class ReapDaemon {
  readonly machine: ReapMachine;
  readonly server: IpcServer;
  readonly events = new Map<string, number>();
  readonly stats: ReapdStats = { reapPackets: 0, malformedPackets: 0, sendFailures: 0, pairsChosen: 0, statusReports: 0 };
  private readonly sender = new Shim6Sender();
  private readonly timer: DeadlineTimer;
  private pidFile: PidFile | undefined;
  private stopping: Promise<void> | undefined;
  /** Status reports waiting for the end of this turn (many can change in one input). */
  private readonly pendingStatus = new Map<number, ReapStatus>();
  private statusFlush: NodeJS.Immediate | undefined;
  /** Per-event logs that peers or shim6d can cause at any rate, rate limited. */
  private readonly rateLimitedLog: RateLimitedLog;

  constructor(
    readonly config: Shim6Config,
    readonly log: Logger,
  ) {
    this.rateLimitedLog = rateLimitedLogger(log);
    this.machine = new ReapMachine(
      {
        send: (message, from, to) => this.send(message, from, to),
        pairChosen: (id, pair) => {
          this.stats.pairsChosen++;
          log.info('REAP: working pair found', { id, pair: `${pair.local} → ${pair.peer}` });
          if (!this.server.send({ type: 'pair', id, local: pair.local, peer: pair.peer })) log.warn('shim6d is not connected: the pair will be chosen again', { id });
        },
        statusChanged: (status) => this.queueStatus(status),
        event: (event: ReapEvent, detail) => {
          this.events.set(event, (this.events.get(event) ?? 0) + 1);
          if (NOTABLE.has(event)) log.info(`REAP: ${event}`, detail);
          else this.rateLimitedLog('debug', `REAP: ${event}`, detail);
        },
      },
      { now: Date.now, random: Math.random, random32: () => randomBytes(4).readUInt32BE(0), timers: reapTimersOf(config) },
    );
    this.timer = new DeadlineTimer(
      () => this.machine.nextDeadline(),
      () => this.machine.tick(),
    );
    // The server logs connections, disconnections and invalid messages itself.
    this.server = new IpcServer({ path: config.ipcSocket, logger: log, pid: process.pid });
    this.server.on('message', (m: ShimdToReapd) => this.input(() => this.onMessage(m)));
  }

  async start(): Promise<void> {
    this.pidFile = acquirePidFile(this.config.reapd.pidFile);
    try {
      await this.server.start();
    } catch (e) {
      this.pidFile.release();
      throw e;
    }
    this.timer.reschedule();
    this.log.info('reapd ready', { pid: process.pid, socket: this.config.ipcSocket });
  }

  stop(reason: string): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info('reapd stopping', { reason });
      this.timer.stop();
      if (this.statusFlush) clearImmediate(this.statusFlush);
      await this.server.close();
      this.sender.close();
      this.pidFile?.release();
      this.log.info('reapd stopped');
    })();
    return this.stopping;
  }

  /** Runs one input into the machine, then re-arms the timer. */
  private input(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.log.error('REAP input failed', { error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
    } finally {
      this.timer.reschedule();
    }
  }

  private onMessage(m: ShimdToReapd): void {
    switch (m.type) {
      // An IpcContext is a ReapContext; the machine keeps its own (canonical) copy.
      case 'sync':
        this.machine.sync(m.contexts);
        this.log.info('contexts synchronised from shim6d', { contexts: m.contexts.length });
        for (const s of this.machine.statuses()) this.queueStatus(s);
        return;
      case 'context':
        return this.machine.upsert(m.context);
      case 'context-removed':
        this.machine.remove(m.id);
        this.pendingStatus.delete(m.id);
        this.server.send({ type: 'reap-removed', id: m.id });
        return;
      case 'activity':
        for (const a of m.contexts) this.machine.activity(a.id, a.sent, a.received);
        return;
      case 'reap-packet':
        return this.onReapPacket(Buffer.from(m.packet, 'base64'));
      case 'explore':
        this.log.info('REAP: exploring at shim6d\'s request', { id: m.id, reason: m.reason });
        return this.machine.explore(m.id, m.reason);
      default:
        return;
    }
  }

  private onReapPacket(packet: Buffer): void {
    this.stats.reapPackets++;
    const at: HeaderPosition = { offset: 0, nextHeaderOffset: 0 };
    const found = packet.length >= 40 ? locateShim6Header(packet, at) : false;
    if (found instanceof PacketError || !found) {
      this.stats.malformedPackets++;
      return;
    }
    const decoded = decodeControlMessage(packet.subarray(at.offset), { strictReserved: false });
    if (!decoded.ok || (decoded.value.message.type !== 'Keepalive' && decoded.value.message.type !== 'Probe')) {
      this.stats.malformedPackets++;
      this.rateLimitedLog('debug', 'malformed REAP message dropped', { error: decoded.ok ? `type ${decoded.value.message.type}` : decoded.error.message });
      return;
    }
    this.machine.receive(decoded.value.message, formatIPv6(packet.subarray(8, 24)), formatIPv6(packet.subarray(24, 40)));
  }

  private send(message: KeepaliveMessage | ProbeMessage, from: string, to: string): boolean {
    try {
      this.sender.send(encodeControlMessage(message), from, to);
      return true;
    } catch (e) {
      this.stats.sendFailures++;
      this.rateLimitedLog('debug', `cannot send a ${message.type}`, { from, to, error: e instanceof Error ? e.message : String(e) });
      return false;
    }
  }

  private queueStatus(status: ReapStatus): void {
    this.pendingStatus.set(status.id, status);
    this.statusFlush ??= setImmediate(() => {
      this.statusFlush = undefined;
      for (const s of this.pendingStatus.values()) {
        // A fresh copy from the machine, its history within the IPC's 32 (config caps historyLength at 32).
        if (this.server.send({ type: 'reap-status', status: s })) this.stats.statusReports++;
      }
      this.pendingStatus.clear();
    });
  }
}
