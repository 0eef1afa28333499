/**
 * shim6d's wiring: the one place that owns I/O. It binds the two NFQUEUEs, installs the
 * netfilter rules (cleaning a crashed run's leftovers first), loads the static contexts,
 * serves the admin console, and takes everything down again on stop().
 *
 * Start order keeps the host reachable at every step: the queues are bound before the rules
 * that feed them exist, and the rules carry --queue-bypass, so a packet never waits for a
 * process that is not there. Stop order is the reverse: rules out first, then the rest.
 */
import { RawIPv6Sender } from '../protocol/shim6-socket';
import { IPPROTO_ICMPV6 } from '../protocol/ipv6-packet';
import { formatIPv6 } from '../protocol/address';
import { Shim6Rules } from '../iptables-rules';
import { spawnRunner } from '../iptables-rules/exec';
import type { Shim6Config } from '../common/config';
import { rateLimitedLogger, type Logger, type RateLimitedLog } from '../common/logger';
import { acquirePidFile, type PidFile } from '../common/pidfile';
import { ContextTable } from './context-table';
import { DataPlane } from './data-plane';
import { PacketQueue } from './packet-queue';
import { packetTooBigMessage } from './packet-too-big';
import { lookupPathMtu } from './path-mtu';
import { ShimControl } from './shim-control';
import { isShimmed } from './context';
import { ConsoleServer } from './console-server';
import { handleConsoleCommand, type DaemonView } from './console-handler';
import { ControlPlane } from './control-plane';

/** Path MTU of a shimmed pair when `dataPlane.pathMtu` is "auto" and the lookup fails. */
const FALLBACK_PATH_MTU = 1500;

export class Shim6Daemon {
  readonly table = new ContextTable();
  readonly rules: Shim6Rules;
  readonly control: ShimControl;
  readonly dataPlane: DataPlane;
  private readonly ptbSender = new RawIPv6Sender(IPPROTO_ICMPV6);
  /** The bound NFQUEUEs, by direction: the outbound one feeds dataPlane.outbound(), the inbound one dataPlane.inbound(). */
  private readonly queues = new Map<'outbound' | 'inbound', PacketQueue>();
  private consoleServer: ConsoleServer | undefined;
  private controlPlane: ControlPlane | undefined;
  private pidFile: PidFile | undefined;
  private readonly startedAt = Date.now();
  private stopping: Promise<void> | undefined;
  /** install() was attempted: stop() must remove what it may have added. */
  private rulesTouched = false;
  /** Per-event logs from the packet path, rate limited. */
  private readonly rateLimitedLog: RateLimitedLog;

  constructor(
    readonly config: Shim6Config,
    readonly log: Logger,
  ) {
    const c = config.shim6d;
    this.rateLimitedLog = rateLimitedLogger(log);
    this.rules = new Shim6Rules({ ...c.netfilter });
    const fixedMtu = c.dataPlane.pathMtu === 'auto' ? undefined : c.dataPlane.pathMtu;
    this.control = new ShimControl(
      this.table,
      this.rules,
      (local, peer) => (fixedMtu !== undefined ? Promise.resolve(fixedMtu) : lookupPathMtu(spawnRunner, local, peer)),
      log,
    );
    this.dataPlane = new DataPlane(
      this.table,
      {
        now: () => Date.now(),
        packetTooBig: (ctx, packet, mtu) => {
          try {
            // From and to the sender's own ULID: the kernel takes it in over loopback and
            // lowers its path MTU towards the peer's ULID.
            this.ptbSender.send(packetTooBigMessage(packet, mtu), ctx.localUlid.text, ctx.localUlid.text);
          } catch (e) {
            this.rateLimitedLog('warn', 'cannot send Packet Too Big', { context: ctx.id, error: String(e) });
          }
        },
        unknownContextTag: (tag, packet) => {
          // Formatted only within the log budget: this runs for every such packet.
          this.rateLimitedLog('debug', 'payload packet with an unknown context tag dropped (R1bis)', () => ({
            tag,
            source: formatIPv6(packet.subarray(8, 24)),
            destination: formatIPv6(packet.subarray(24, 40)),
          }));
          this.controlPlane?.unknownContextTag(tag, packet);
        },
        controlMessage: (packet, shimOffset) => {
          if (this.controlPlane) this.controlPlane.receive(packet, shimOffset);
          else this.rateLimitedLog('debug', 'control message before the control plane started: dropped', () => ({ source: formatIPv6(packet.subarray(8, 24)) }));
        },
      },
      { defaultPathMtu: fixedMtu ?? FALLBACK_PATH_MTU, ptbPerSecond: c.dataPlane.ptbPerSecond },
    );
  }

  async start(): Promise<void> {
    const c = this.config.shim6d;
    this.pidFile = acquirePidFile(c.pidFile);
    try {
      this.openQueues();
      this.rulesTouched = true;
      const installed = await this.rules.install();
      const left = installed.removed;
      if (left.jumps + left.chains.length + left.sets.length > 0) {
        this.log.warn('removed rules left by an earlier run', { jumps: left.jumps, chains: left.chains.join(','), sets: left.sets.join(',') });
      }
      this.log.info('netfilter rules installed', { outChain: this.rules.config.outChain, inChain: this.rules.config.inChain, match: installed.match });
      // The static contexts in one batch: their pairs go into the rules in one `ipset restore`
      // instead of one per context, and the path MTU lookups (one `ip route get` per distinct
      // locator pair) run a few at a time. A context without an id gets the lowest one no other
      // context has or is given in the file.
      const given = new Set(c.contexts.flatMap((s) => (s.id === undefined ? [] : [s.id])));
      let free = 1;
      const freeId = (): number => {
        while (given.has(free) || this.table.byId(free)) free++;
        given.add(free);
        return free;
      };
      await this.control.installMany(
        c.contexts.map((spec) => ({
          id: spec.id ?? freeId(),
          origin: 'static',
          localUlid: spec.localUlid,
          peerUlid: spec.peerUlid,
          localContextTag: spec.localContextTag,
          peerContextTag: spec.peerContextTag,
          localLocators: spec.localLocators,
          peerLocators: spec.peerLocators,
          verification: 'static',
          locatorPair: spec.locatorPair,
        })),
      );
      if (c.contexts.length > 0) this.log.info('static contexts installed', { contexts: c.contexts.length, shimmed: this.table.all().filter(isShimmed).length });
      this.controlPlane = new ControlPlane({
        table: this.table,
        control: this.control,
        removeShimmedPair: (src, dst) => this.rules.removeShimmedPair(src, dst),
        addShimmedPair: (src, dst) => this.rules.addShimmedPair(src, dst),
        identities: c.identities,
        timers: c.control,
        log: this.log,
        lastActivity: (ctx) => Math.max(ctx.counters.lastShimmedAt, ctx.counters.lastDeshimmedAt),
        heuristic: c.heuristic,
        reap: c.reap.enabled ? { socket: this.config.ipcSocket, intervalMs: c.reap.intervalMs, keepaliveTimeout: this.config.reapd.timers.keepaliveTimeout } : undefined,
      });
      await this.controlPlane.start();
      if (c.console.enabled) {
        this.consoleServer = new ConsoleServer({
          addresses: [...c.console.addresses],
          port: c.console.port,
          handler: (cmd) => handleConsoleCommand(this.view(), cmd),
          logger: this.log,
        });
        await this.consoleServer.start();
        this.log.info('admin console listening', { addresses: c.console.addresses.join(','), port: c.console.port });
      }
    } catch (e) {
      await this.teardown();
      throw e;
    }
    this.log.info('shim6d ready', { pid: process.pid, contexts: this.table.size });
  }

  /** Graceful stop: rules out first (traffic flows unshimmed), then console, pid file. */
  stop(reason: string): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info('shim6d stopping', { reason });
      await this.teardown();
      this.log.info('shim6d stopped');
    })();
    return this.stopping;
  }

  private async teardown(): Promise<void> {
    if (this.rulesTouched) {
      try {
        await this.rules.removeAll();
      } catch (e) {
        this.log.error('could not remove every netfilter rule', { error: e instanceof Error ? e.message : String(e) });
      }
    }
    await this.consoleServer?.close();
    await this.controlPlane?.stop();
    this.ptbSender.close();
    this.pidFile?.release();
  }

  private openQueues(): void {
    const c = this.config.shim6d;
    const bufferBytes = c.dataPlane.queueBufferBytes;
    const onHandlerError = (which: string) => (e: unknown) => this.rateLimitedLog('error', `${which} packet handler failed`, { error: e instanceof Error ? e.stack ?? e.message : String(e) });
    this.queues.set(
      'outbound',
      PacketQueue.open({ queue: c.netfilter.outQueue, bufferBytes, handler: (p) => this.dataPlane.outbound(p), fallback: 'accept', onHandlerError: onHandlerError('outbound') }),
    );
    this.queues.set(
      'inbound',
      PacketQueue.open({ queue: c.netfilter.inQueue, bufferBytes, handler: (p) => this.dataPlane.inbound(p), fallback: 'drop', onHandlerError: onHandlerError('inbound') }),
    );
    this.log.info('NFQUEUE bound', { outbound: c.netfilter.outQueue, inbound: c.netfilter.inQueue });
  }

  private view(): DaemonView {
    return {
      table: this.table,
      control: this.control,
      now: () => Date.now(),
      startedAt: this.startedAt,
      dataPlane: () => this.dataPlane.stats,
      // Every packet a queue hands over reaches its data plane handler, which counts it first.
      queues: () => {
        const s = this.dataPlane.stats;
        return Object.fromEntries([...this.queues].map(([k, q]) => [k, { packets: k === 'outbound' ? s.outboundPackets : s.inboundPackets, handlerErrors: q.handlerErrors }]));
      },
      console: () => this.consoleServer?.stats() ?? { requests: 0, errors: 0, internalErrors: 0 },
      controlPlane: () => {
        const cp = this.controlPlane;
        if (!cp) return undefined;
        return {
          startContext: (l, p) => cp.startContext(l, p),
          sendUpdate: (id) => cp.sendUpdate(id),
          remove: (id, why) => cp.remove(id, why),
          inHoldDown: (p) => cp.inHoldDown(p),
          describe: (id) => cp.machine.describe(id),
          counters: () => {
            const out: Record<string, number> = Object.fromEntries(cp.counters);
            if (cp.pathMtuReports.received > 0) {
              out['packet-too-big-received'] = cp.pathMtuReports.received;
              out['path-mtu-lowered'] = cp.pathMtuReports.applied;
            }
            return out;
          },
          localLocators: () => cp.localLocators(),
        };
      },
      reap: () => {
        const link = this.controlPlane?.reap;
        if (!link) return undefined;
        return { connected: link.connected, status: (id) => link.status(id), stats: { ...link.stats } };
      },
    };
  }
}
