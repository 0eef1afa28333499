/**
 * What shim6d answers to each admin console command (shim6d/console-commands.ts parses
 * them, shim6d/console-server.ts carries them). Text for people, `dump json` for programs.
 * Errors that an operator causes (unknown context, locator not in the set) are one-line
 * replies starting with "error:".
 */
import { ContextError, DROP_REASONS, isShimmed, ulidPairKey, locator, type DropCounters, type ShimContext } from './context';
import type { ContextTable } from './context-table';
import type { DataPlaneStats } from './data-plane';
import { CONSOLE_HELP, type ConsoleCommand } from './console-commands';
import type { ShimControl } from './shim-control';

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
  /** Features not in this build: the command's reply. */
  unavailable(kind: 'context' | 'update'): string;
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

export function contextText(ctx: ShimContext, now: number): string {
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
  return lines.join('\n');
}

function contextByUlids(v: DaemonView, src: string, dst: string): ShimContext | undefined {
  return v.table.byUlidPairKey(ulidPairKey(locator(src, 'unverified'), locator(dst, 'unverified')));
}

/** The console's reply to one parsed command. */
export async function handleConsoleCommand(v: DaemonView, cmd: ConsoleCommand): Promise<string> {
  try {
    switch (cmd.kind) {
      case 'help':
        return CONSOLE_HELP;
      case 'dump': {
        const all = v.table.all();
        if (cmd.json) return JSON.stringify({ contexts: all.map(contextJson), dataPlane: v.dataPlane() });
        if (all.length === 0) return 'no contexts';
        const now = v.now();
        return all.map((c) => contextText(c, now)).join('\n\n');
      }
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
        const ctx = contextByUlids(v, cmd.srcUlid, cmd.dstUlid);
        if (!ctx) return `error: no context for ${cmd.srcUlid} → ${cmd.dstUlid}`;
        await v.control.remove(ctx.id);
        return `context ${ctx.id} deleted`;
      }
      case 'context':
      case 'update':
        return v.unavailable(cmd.kind);
    }
  } catch (e) {
    if (e instanceof ContextError) return `error: ${e.message}`;
    throw e;
  }
}
