/**
 * The per-packet work of shim6d, pure: what to do with one packet from each NFQUEUE.
 *
 * Outbound (mangle OUTPUT, only ULID pairs of shimmed contexts are queued): rewrite the
 * addresses to the current locator pair and insert the payload header with the peer's
 * context tag (protocol/payload-header). Packets that outgrow the pair's path MTU:
 * - TCP: the kernel never fragments it and would drop the shimmed segment with a Packet Too
 *   Big about a protocol-140 packet that no socket matches (a silent blackhole). So the
 *   segment is dropped here and the sender gets an ICMPv6 Packet Too Big about its ULID
 *   packet, as from a tunnel entry: TCP lowers its MSS towards the peer's ULID and resends.
 * - Anything else (UDP, ICMPv6, ...): shimmed anyway. Linux fragments local packets after
 *   mangle OUTPUT (a socket's own datagrams may be fragmented unless it asked otherwise), so
 *   the Fragment header goes before the Shim6 header and the peer reassembles before its
 *   inbound queue (iptables-rules/README.md). A Packet Too Big would not help here (the
 *   datagram reaches mangle OUTPUT whole whatever the PMTU) and would make a connected UDP
 *   socket report EMSGSIZE.
 *
 * Inbound (raw PREROUTING, protocol 140): a control message (P = 0) goes to the control
 * plane; a payload packet (P = 1) is looked up by its receiver context tag and accepted only
 * when its source is a verified locator of that context's peer and its destination one of
 * our locators for it (otherwise anyone who learnt a tag could inject or redirect traffic);
 * then the header is stripped and the ULIDs restored.
 *
 * A verdict is 'accept' (unchanged), 'drop', or the Buffer to accept instead. No I/O: the
 * effects (Packet Too Big, unknown tag, control message) go through the injected hooks.
 */
import { IPV6_MIN_MTU } from '../protocol/constants';
import { readContextTag } from '../protocol/context-tag';
import { IPPROTO_TCP, PacketError, walkExtensionHeaders, type HeaderPosition } from '../protocol/ipv6-packet';
import { locatePayloadHeader, PAYLOAD_HEADER_LENGTH, shimPacket, stripPayloadHeaderInPlace } from '../protocol/payload-header';
import { isShimmed, zeroDrops, type DropCounters, type DropReason, type ShimContext } from './context';
import type { ContextTable } from './context-table';

export type Verdict = 'accept' | 'drop' | Buffer;

export interface DataPlaneHooks {
  /** Milliseconds, monotonic enough for counters and the Packet Too Big rate limit. */
  now(): number;
  /** An ICMPv6 Packet Too Big (MTU `mtu`) is due to the sender of `packet` (an outbound ULID packet). */
  packetTooBig(ctx: ShimContext, packet: Buffer, mtu: number): void;
  /** A payload packet carried a tag no context has: the control plane answers with R1bis. */
  unknownContextTag(tag: number, packet: Buffer): void;
  /** A control message (P = 0) arrived, with its IPv6 header: the control plane's. */
  controlMessage(packet: Buffer, shimOffset: number): void;
}

export interface DataPlaneOptions {
  /** Path MTU of a shimmed pair whose own MTU is unknown (ctx.pathMtu undefined). */
  defaultPathMtu: number;
  /** Packet Too Big messages per context per second; 0: never send one. */
  ptbPerSecond: number;
}

export interface DataPlaneStats {
  outboundPackets: number;
  inboundPackets: number;
  shimmedPackets: number;
  deshimmedPackets: number;
  /** Outbound packets accepted unchanged: no context, or the context is back on its ULIDs. */
  outboundPassed: number;
  controlMessages: number;
  packetTooBigSent: number;
  drops: DropCounters;
}

const VERSION_6 = 0x60;

/** True when the packet is TCP (or the first fragment of a TCP segment). Off the fast path. */
function isTcp(packet: Buffer): boolean {
  const chain = walkExtensionHeaders(packet);
  return !(chain instanceof PacketError) && !chain.laterFragment && chain.upperLayerType === IPPROTO_TCP;
}

export class DataPlane {
  readonly stats: DataPlaneStats = {
    outboundPackets: 0,
    inboundPackets: 0,
    shimmedPackets: 0,
    deshimmedPackets: 0,
    outboundPassed: 0,
    controlMessages: 0,
    packetTooBigSent: 0,
    drops: zeroDrops(),
  };
  /** The last malformed packet's error, for the log (not per packet). */
  lastError: PacketError | undefined;
  /** Where the inbound packet's payload header is (reused: each call runs to completion). */
  private readonly position: HeaderPosition = { offset: 0, nextHeaderOffset: 0 };

  constructor(
    private readonly table: ContextTable,
    private readonly hooks: DataPlaneHooks,
    readonly options: DataPlaneOptions,
  ) {
    if (!(options.defaultPathMtu >= IPV6_MIN_MTU)) throw new RangeError(`defaultPathMtu ${options.defaultPathMtu} is below the IPv6 minimum ${IPV6_MIN_MTU}`);
  }

  /** Counts a drop globally and, when known, on the context. */
  drop(reason: DropReason, ctx?: ShimContext): 'drop' {
    this.stats.drops[reason]++;
    if (ctx) ctx.counters.drops[reason]++;
    return 'drop';
  }

  outbound(packet: Buffer): Verdict {
    this.stats.outboundPackets++;
    if (packet.length < 40 || ((packet[0] as number) & 0xf0) !== VERSION_6) {
      // Not IPv6 as the kernel would send it; let the kernel do what it does with it.
      this.stats.outboundPassed++;
      return 'accept';
    }
    const ctx = this.table.byUlidPairKey(packet.toString('latin1', 8, 40));
    if (ctx === undefined || !isShimmed(ctx)) {
      // Rules and table change in two steps; a packet queued in between goes out as it is.
      this.stats.outboundPassed++;
      return 'accept';
    }
    const mtu = ctx.pathMtu ?? this.options.defaultPathMtu;
    if (packet.length + PAYLOAD_HEADER_LENGTH > mtu && isTcp(packet)) {
      this.sendPacketTooBig(ctx, packet, mtu - PAYLOAD_HEADER_LENGTH);
      return this.drop('too-big', ctx);
    }
    const out = shimPacket(packet, ctx.peerContextTag, ctx.current.local.address, ctx.current.peer.address);
    if (out instanceof PacketError) {
      this.lastError = out;
      return this.drop('malformed', ctx);
    }
    this.stats.shimmedPackets++;
    const c = ctx.counters;
    c.shimmedPackets++;
    c.shimmedOctets += out.length;
    c.lastShimmedAt = this.hooks.now();
    return out;
  }

  inbound(packet: Buffer): Verdict {
    this.stats.inboundPackets++;
    const at = this.position;
    const bad = locatePayloadHeader(packet, at);
    if (bad) {
      if (bad.code === 'WRONG_P_BIT') {
        this.stats.controlMessages++;
        this.hooks.controlMessage(packet, at.offset);
        return 'drop'; // consumed: the kernel has no protocol 140 handler
      }
      this.lastError = bad;
      return this.drop('malformed');
    }
    const tag = readContextTag(packet, at.offset + 2);
    const ctx = this.table.byLocalTag(tag);
    if (ctx === undefined) {
      this.hooks.unknownContextTag(tag, packet);
      return this.drop('unknown-context-tag');
    }
    if (!ctx.peerLocatorKeys.has(packet.toString('latin1', 8, 24))) return this.drop('source-locator-not-in-peer-set', ctx);
    if (!ctx.localLocatorKeys.has(packet.toString('latin1', 24, 40))) return this.drop('destination-locator-not-in-local-set', ctx);
    const length = packet.length;
    // The header was located above: strip it without walking the chain again.
    const out = stripPayloadHeaderInPlace(packet, at, ctx.peerUlid.address, ctx.localUlid.address);
    this.stats.deshimmedPackets++;
    const c = ctx.counters;
    c.deshimmedPackets++;
    c.deshimmedOctets += length;
    c.lastDeshimmedAt = this.hooks.now();
    return out;
  }

  private sendPacketTooBig(ctx: ShimContext, packet: Buffer, mtu: number): void {
    const limit = this.options.ptbPerSecond;
    if (limit <= 0) return;
    const second = Math.floor(this.hooks.now() / 1000);
    if (second !== ctx.ptbSecond) {
      ctx.ptbSecond = second;
      ctx.ptbInSecond = 0;
    }
    if (ctx.ptbInSecond >= limit) return;
    ctx.ptbInSecond++;
    ctx.counters.packetTooBigSent++;
    this.stats.packetTooBigSent++;
    this.hooks.packetTooBig(ctx, packet, Math.max(mtu, IPV6_MIN_MTU));
  }
}
