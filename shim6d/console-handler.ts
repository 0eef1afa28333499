/**
 * What shim6d answers to each admin console command (shim6d/console-commands.ts parses
 * them, shim6d/console-server.ts carries them). Text for people, `dump json` for programs.
 * Errors that an operator causes (unknown context, locator not in the set) are one-line
 * replies starting with "error:".
 */
import { ContextError, DROP_REASONS, isShimmed, type DropCounters, type ShimContext } from './context';
import type { ContextTable } from './context-table';
import type { DataPlaneStats } from './data-plane';
import { CONSOLE_HELP, type ConsoleCommand } from './console-commands';
import { MAX_CONSOLE_REPLY_BYTES } from './console-server';
import type { ShimControl } from './shim-control';
import type { IpcReapStatus } from '../ipc';

/** What the console needs of the control plane. */
export interface ControlView {
  startContext(localUlid: string, peerUlid: string): ShimContext | undefined;
  sendUpdate(id: number): boolean;
  remove(id: number, reason: string): ShimContext | undefined;
  inHoldDown(peerUlid: string): boolean;
  describe(id: number): Record<string, unknown> | undefined;
  counters(): Record<string, number>;
  localLocators(): string[];
}

export interface DaemonView {
  readonly table: ContextTable;
  readonly control: ShimControl;
  /** Clock reading in ms, the one the data plane's counters use. */
  now(): number;
  startedAt: number;
  dataPlane(): DataPlaneStats;
  /** Per-queue counters: packets seen, handler errors. */
  queues(): Record<string, { packets: number; handlerErrors: number }>;
  console(): { requests: number; errors: number; internalErrors: number };
  /** The context exchange (shim6d/control-plane.ts); undefined before it started. */
  controlPlane(): ControlView | undefined;
  /** The link to reapd (shim6d/reap-link.ts); undefined when REAP is disabled in the configuration. */
  reap(): ReapView | undefined;
}

/** What the console shows of REAP: reapd's reports, through the IPC link. */
export interface ReapView {
  connected: boolean;
  status(id: number): IpcReapStatus | undefined;
  stats: Record<string, number>;
}

function reapText(ctx: ShimContext, now: number, reap: ReapView | undefined): string[] {
  if (!reap) return ['  REAP           disabled (shim6d.reap.enabled is false)'];
  const s = reap.status(ctx.id);
  if (!s) return [`  REAP           ${reap.connected ? 'no report from reapd yet' : 'reapd not connected'}`];
  const lines = [
    `  REAP           ${s.state} since ${ago(now, s.since)}${reap.connected ? '' : ' (reapd not connected: last report)'}; pair ${s.current.local} → ${s.current.peer}`,
    `  REAP counters  keepalives ${s.keepalivesSent} sent, ${s.keepalivesReceived} received; probes ${s.probesSent} sent, ${s.probesReceived} received`,
  ];
  const recent = s.history.slice(-8);
  if (recent.length) {
    lines.push('  probe history');
    for (const h of recent) lines.push(`    ${ago(now, h.at).padEnd(12)} ${h.direction.padEnd(8)} ${h.local} ${h.direction === 'sent' ? '→' : '←'} ${h.peer} nonce ${h.nonce >>> 0}`);
  }
  return lines;
}

function drops(d: DropCounters): string {
  const parts = DROP_REASONS.filter((r) => d[r] > 0).map((r) => `${r} ${d[r]}`);
  return parts.length ? parts.join(', ') : 'none';
}

function ago(now: number, at: number): string {
  return at === 0 ? 'never' : `${((now - at) / 1000).toFixed(1)} s ago`;
}

function tag(t: number): string {
  return `0x${t.toString(16).padStart(12, '0')}`;
}

export function contextText(ctx: ShimContext, now: number, control?: Record<string, unknown>, reap?: ReapView): string {
  const c = ctx.counters;
  const locs = (ls: ShimContext['localLocators']): string => ls.map((l) => `${l.text} [${l.verification}]`).join(', ');
  const shimmed = isShimmed(ctx);
  return [
    `context ${ctx.id} ${ctx.state} (${ctx.origin})`,
    `  ULIDs          ${ctx.localUlid.text} → ${ctx.peerUlid.text}`,
    `  context tags   local ${tag(ctx.localContextTag)}, peer ${tag(ctx.peerContextTag)}`,
    `  local locators ${locs(ctx.localLocators)}`,
    `  peer locators  ${locs(ctx.peerLocators)}`,
    `  current pair   ${ctx.current.local.text} → ${ctx.current.peer.text} ${shimmed ? `(shimmed, path MTU ${ctx.pathMtu ?? 'default'})` : '(ULID pair, not shimmed)'}`,
    `  shimmed out    ${c.shimmedPackets} packets, ${c.shimmedOctets} octets, last ${ago(now, c.lastShimmedAt)}`,
    `  deshimmed in   ${c.deshimmedPackets} packets, ${c.deshimmedOctets} octets, last ${ago(now, c.lastDeshimmedAt)}`,
    `  drops          ${drops(c.drops)}`,
    `  packet too big ${c.packetTooBigSent} sent`,
    ...(control ? [`  exchange       ${Object.entries(control).filter(([, x]) => x !== undefined).map(([k, x]) => `${k} ${String(x)}`).join(', ') || 'idle'}`] : []),
    ...reapText(ctx, now, reap),
  ].join('\n');
}

export function contextJson(ctx: ShimContext): Record<string, unknown> {
  const locs = (ls: ShimContext['localLocators']): { address: string; verification: string }[] => ls.map((l) => ({ address: l.text, verification: l.verification }));
  return {
    id: ctx.id,
    state: ctx.state,
    origin: ctx.origin,
    localUlid: ctx.localUlid.text,
    peerUlid: ctx.peerUlid.text,
    localContextTag: ctx.localContextTag,
    peerContextTag: ctx.peerContextTag,
    localLocators: locs(ctx.localLocators),
    peerLocators: locs(ctx.peerLocators),
    currentPair: { local: ctx.current.local.text, peer: ctx.current.peer.text },
    shimmed: isShimmed(ctx),
    pathMtu: ctx.pathMtu ?? null,
    counters: { ...ctx.counters, drops: { ...ctx.counters.drops } },
  };
}

function statsText(v: DaemonView): string {
  const d = v.dataPlane();
  const q = v.queues();
  const con = v.console();
  const lines = [
    `uptime           ${((v.now() - v.startedAt) / 1000).toFixed(0)} s`,
    `contexts         ${v.table.size} (${v.table.all().filter(isShimmed).length} shimmed)`,
    `outbound         ${d.outboundPackets} packets queued, ${d.shimmedPackets} shimmed, ${d.outboundPassed} passed unchanged`,
    `inbound          ${d.inboundPackets} packets queued, ${d.deshimmedPackets} deshimmed, ${d.controlMessages} control messages`,
    `drops            ${drops(d.drops)}`,
    `packet too big   ${d.packetTooBigSent} sent`,
  ];
  for (const [name, s] of Object.entries(q)) lines.push(`queue ${name.padEnd(10)} ${s.packets} packets, ${s.handlerErrors} handler errors`);
  lines.push(`console          ${con.requests} requests, ${con.errors} errors, ${con.internalErrors} internal errors`);
  const cp = v.controlPlane();
  if (cp) {
    const counted = Object.entries(cp.counters()).map(([k, n]) => `${k} ${n}`);
    lines.push(`control          ${counted.length ? counted.join(', ') : 'nothing yet'}`);
    lines.push(`local locators   ${cp.localLocators().join(', ') || 'none'}`);
  }
  const reap = v.reap();
  lines.push(reap ? `reapd            ${reap.connected ? 'connected' : 'not connected'}; ${Object.entries(reap.stats).map(([k, n]) => `${k} ${n}`).join(', ')}` : 'reapd            disabled');
  return lines.join('\n');
}


/**
 * Octets one dump page may use: the console's reply limit less room for the trailing
 * newline. A page holds whole contexts; the next page starts at the first one left out.
 */
export const DUMP_PAGE_BYTES = MAX_CONSOLE_REPLY_BYTES - 1;

/** The contexts from id `from` on, in id order. */
function contextsFrom(v: DaemonView, from: number): { all: number; page: ShimContext[] } {
  const all = v.table.all();
  return { all: all.length, page: all.filter((c) => c.id >= from) };
}

/**
 * `dump [from ID]`: as many context blocks as fit in one reply; when some are left out, a
 * last line names the command that shows them.
 */
function dumpTextPage(v: DaemonView, from: number): string {
  const { all, page } = contextsFrom(v, from);
  if (all === 0) return 'no contexts';
  if (page.length === 0) return `no contexts from id ${from} on (${all} in all)`;
  const cp = v.controlPlane();
  const reap = v.reap();
  const now = v.now();
  // Room for the continuation line, with the longest numbers it can hold.
  const reserve = Buffer.byteLength(continuation(all, all, 2 ** 31 - 1));
  const blocks: string[] = [];
  let used = 0;
  for (const c of page) {
    const block = contextText(c, now, cp?.describe(c.id), reap);
    const bytes = Buffer.byteLength(block) + (blocks.length ? 2 : 0);
    const last = blocks.length + 1 === page.length;
    if (blocks.length > 0 && used + bytes + (last ? 0 : reserve) > DUMP_PAGE_BYTES) break;
    blocks.push(block);
    used += bytes;
  }
  const next = page[blocks.length];
  return blocks.join('\n\n') + (next ? continuation(page.length - blocks.length, all, next.id) : '');
}

function continuation(left: number, all: number, nextId: number): string {
  return `\n\n... ${left} more of ${all} contexts: dump from ${nextId}`;
}

/**
 * `dump json [from ID]`: one JSON document per reply, always complete:
 * `{ contexts, total, next, dataPlane, control, reapd }`, `next` being the id to ask for
 * (`dump json from <next>`) or null when this page ends the table.
 */
function dumpJsonPage(v: DaemonView, from: number): string {
  const { all, page } = contextsFrom(v, from);
  const cp = v.controlPlane();
  const reap = v.reap();
  const tail = JSON.stringify({
    dataPlane: v.dataPlane(),
    control: cp?.counters() ?? null,
    reapd: reap ? { connected: reap.connected, ...reap.stats } : null,
  }).slice(1);
  const frame = (items: string[], next: number | null): string => `{"contexts":[${items.join(',')}],"total":${all},"next":${next},${tail}`;
  const fixed = Buffer.byteLength(frame([], 2 ** 31 - 1));
  const items: string[] = [];
  let used = fixed;
  for (const c of page) {
    const item = JSON.stringify({ ...contextJson(c), exchange: cp?.describe(c.id) ?? null, reap: reap?.status(c.id) ?? null });
    const bytes = Buffer.byteLength(item) + (items.length ? 1 : 0);
    if (items.length > 0 && used + bytes > DUMP_PAGE_BYTES) break;
    items.push(item);
    used += bytes;
  }
  return frame(items, page[items.length]?.id ?? null);
}

/** The console's reply to one parsed command. */
export async function handleConsoleCommand(v: DaemonView, cmd: ConsoleCommand): Promise<string> {
  try {
    switch (cmd.kind) {
      case 'help':
        return CONSOLE_HELP;
      case 'dump':
        return cmd.json ? dumpJsonPage(v, cmd.from ?? 1) : dumpTextPage(v, cmd.from ?? 1);
      case 'stats':
        return statsText(v);
      case 'shim': {
        const ctx = await v.control.moveTo(cmd.contextId, cmd.srcLocator, cmd.dstLocator);
        return `context ${ctx.id}: ${ctx.current.local.text} → ${ctx.current.peer.text}${isShimmed(ctx) ? ' (shimmed)' : ' (ULID pair)'}`;
      }
      case 'deshim': {
        const ctx = await v.control.returnToUlids(cmd.contextId);
        return `context ${ctx.id}: back on its ULID pair ${ctx.localUlid.text} → ${ctx.peerUlid.text}`;
      }
      case 'delete': {
        const ctx = v.table.byUlids(cmd.srcUlid, cmd.dstUlid);
        if (!ctx) return `error: no context for ${cmd.srcUlid} → ${cmd.dstUlid}`;
        if (ctx.origin === 'static') await v.control.remove(ctx.id);
        else v.controlPlane()?.remove(ctx.id, 'deleted from the console');
        return `context ${ctx.id} deleted`;
      }
      case 'context': {
        const cp = v.controlPlane();
        if (!cp) return 'error: the control plane is not running';
        const existing = v.table.byUlids(cmd.srcUlid, cmd.dstUlid);
        if (existing) return `error: context ${existing.id} exists for ${cmd.srcUlid} → ${cmd.dstUlid} (${existing.state})`;
        if (cp.inHoldDown(cmd.dstUlid)) return `error: ${cmd.dstUlid} is in hold-down (it did not answer, or has no Shim6)`;
        if (!cp.localLocators().includes(cmd.srcUlid)) return `error: ${cmd.srcUlid} is not one of this host's addresses`;
        const ctx = cp.startContext(cmd.srcUlid, cmd.dstUlid);
        return ctx ? `context ${ctx.id}: I1 sent to ${ctx.peerUlid.text}` : `error: could not start a context for ${cmd.srcUlid} → ${cmd.dstUlid}`;
      }
      case 'update': {
        const ctx = v.table.byId(cmd.contextId);
        if (!ctx) return `error: no context ${cmd.contextId}`;
        if (ctx.origin === 'static') return `error: context ${ctx.id} is static: it has no peer to update`;
        return v.controlPlane()?.sendUpdate(ctx.id) ? `context ${ctx.id}: Update Request sent` : `error: context ${ctx.id} is ${ctx.state}, not ESTABLISHED`;
      }
    }
  } catch (e) {
    if (e instanceof ContextError) return `error: ${e.message}`;
    throw e;
  }
}
