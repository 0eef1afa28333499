/**
 * A Shim6 context as the data plane and the console see it (RFC 5533 section 6.1): the ULID
 * pair, both context tags, both locator sets with how each locator was verified, the
 * current locator pair, the path MTU of that pair and the per-context counters.
 *
 * Addresses are kept twice: as 16 octets (the data plane compares and copies them per
 * packet) and as canonical text (logs, console, maps). The `*Key` strings are the 16 octets
 * read as latin1, which is what the packet handlers build from a packet without parsing it.
 */
import { canonicalIPv6, formatIPv6, parseIPv6 } from '../protocol/address';
import { isContextTag } from '../protocol/context-tag';

/** How a locator came to be trusted (RFC 5533 section 7.2, plus 'static' for configured contexts). */
export type LocatorVerification = 'hba' | 'cga' | 'static' | 'unverified';

export interface Locator {
  readonly address: Buffer;
  readonly text: string;
  readonly key: string;
  verification: LocatorVerification;
}

/** Context states (RFC 5533 section 6.2); 'ESTABLISHED' is the only one the data plane uses. */
export type ContextState = 'IDLE' | 'I1-SENT' | 'I2-SENT' | 'I2BIS-SENT' | 'ESTABLISHED' | 'E-FAILED' | 'NO-SUPPORT';

/** Why the data plane dropped a packet. */
export const DROP_REASONS = [
  /** Not a well-formed IPv6 packet, or a payload header the codec rejects. */
  'malformed',
  /** Inbound: no context has this receiver context tag. */
  'unknown-context-tag',
  /** Inbound: the source address is not a locator of the peer (the anti-hijack check). */
  'source-locator-not-in-peer-set',
  /** Inbound: the destination address is not one of our locators for this context. */
  'destination-locator-not-in-local-set',
  /** Outbound TCP: the segment plus the payload header exceeds the path MTU (a Packet Too Big went to the sender). */
  'too-big',
  /** The handler threw: a bug, logged. */
  'internal',
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export type DropCounters = Record<DropReason, number>;

export function zeroDrops(): DropCounters {
  const out = {} as DropCounters;
  for (const r of DROP_REASONS) out[r] = 0;
  return out;
}

export interface ContextCounters {
  /** Outbound packets that got a payload header, and their octets after shimming. */
  shimmedPackets: number;
  shimmedOctets: number;
  /** Inbound packets whose payload header was stripped, and their octets before stripping. */
  deshimmedPackets: number;
  deshimmedOctets: number;
  drops: DropCounters;
  packetTooBigSent: number;
  /** Clock readings (ms) of the last shimmed and the last deshimmed packet; 0: never. */
  lastShimmedAt: number;
  lastDeshimmedAt: number;
}

export interface LocatorPair {
  readonly local: Locator;
  readonly peer: Locator;
}

export interface ShimContext {
  readonly id: number;
  state: ContextState;
  /** 'static': from the configuration file; 'negotiated': by the I1/R1/I2/R2 exchange. */
  readonly origin: 'static' | 'negotiated';
  /** Forked Instance Identifier (RFC 5533 section 5.15.7): 0 for the default context of a ULID pair. */
  readonly forkedInstanceId: number;
  readonly localUlid: Locator;
  readonly peerUlid: Locator;
  /** The tag we allocated: peers put it in the packets they send us. */
  readonly localContextTag: number;
  /** The peer's tag: we put it in the payload header of packets we send. */
  peerContextTag: number;
  localLocators: Locator[];
  peerLocators: Locator[];
  /** latin1 keys of the locator sets (peer: verified ones), for the per-packet checks; see refreshLocatorKeys. */
  localLocatorKeys: Set<string>;
  peerLocatorKeys: Set<string>;
  /** The peer's Keepalive Timeout in seconds (RFC 5534 section 5.2), when it sent the option. */
  peerKeepaliveTimeout?: number;
  /** The peer's Locator Preferences (RFC 5533 section 5.15.3), per locator, when it sent some. */
  peerPreferences?: Array<{ locator: string; flags: number; priority?: number; weight?: number }>;
  /** The locator pair in use. Equal to the ULID pair: no rewriting, no payload header. */
  current: LocatorPair;
  /** Path MTU of the current pair, when shimmed; undefined: the data plane's default. */
  pathMtu: number | undefined;
  counters: ContextCounters;
  /** Packet Too Big rate limit: the second it counts in, and how many went in it. */
  ptbSecond: number;
  ptbInSecond: number;
}

export class ContextError extends Error {
  override readonly name = 'ContextError';
}

/** A locator from text, or a ContextError naming `what`. */
export function locator(text: string, verification: LocatorVerification, what = 'address'): Locator {
  const address = parseIPv6(text);
  if (!address) throw new ContextError(`${what}: '${text}' is not an IPv6 address`);
  return { address, text: formatIPv6(address), key: address.toString('latin1'), verification };
}

export function sameLocator(a: Locator, b: Locator): boolean {
  return a.key === b.key;
}

/** True when the context sends on a pair other than its ULIDs: its packets need a payload header. */
export function isShimmed(ctx: ShimContext): boolean {
  return ctx.current.local.key !== ctx.localUlid.key || ctx.current.peer.key !== ctx.peerUlid.key;
}

/** The 32-octet key of a (source, destination) pair as the outbound handler reads it from a packet. */
export function ulidPairKey(source: Locator, destination: Locator): string {
  return source.key + destination.key;
}

/** The table key of a context: its ULID pair, plus the fork's identifier when it is a fork. */
export function contextKey(local: Locator, peer: Locator, forkedInstanceId: number): string {
  return forkedInstanceId === 0 ? local.key + peer.key : `${local.key}${peer.key}#${forkedInstanceId}`;
}

export interface ContextSpec {
  id: number;
  origin: 'static' | 'negotiated';
  /** Default 0: the ULID pair's default context. */
  forkedInstanceId?: number;
  state?: ContextState;
  localUlid: string;
  peerUlid: string;
  localContextTag: number;
  peerContextTag: number;
  /** Default: the ULID alone. */
  localLocators?: readonly string[];
  peerLocators?: readonly string[];
  verification: LocatorVerification;
  /** Default: the ULID pair. */
  locatorPair?: { local: string; peer: string };
}

function locatorSet(texts: readonly string[], verification: LocatorVerification, what: string): Locator[] {
  const out: Locator[] = [];
  const seen = new Set<string>();
  texts.forEach((t, i) => {
    const l = locator(t, verification, `${what}[${i}]`);
    if (seen.has(l.key)) throw new ContextError(`${what}[${i}]: ${l.text} is listed twice`);
    seen.add(l.key);
    out.push(l);
  });
  if (out.length === 0) throw new ContextError(`${what}: a context needs at least one locator`);
  return out;
}

/** Builds a context from its description; ContextError on anything inconsistent. */
export function createContext(spec: ContextSpec): ShimContext {
  if (!Number.isInteger(spec.id) || spec.id < 1 || spec.id > 0x7fffffff) throw new ContextError(`id: ${spec.id} is not a context id (1..2^31-1)`);
  for (const k of ['localContextTag', 'peerContextTag'] as const) {
    if (!isContextTag(spec[k])) throw new ContextError(`${k}: ${spec[k]} is not a 47-bit context tag`);
  }
  const localUlid = locator(spec.localUlid, spec.verification, 'localUlid');
  const peerUlid = locator(spec.peerUlid, spec.verification, 'peerUlid');
  const localLocators = locatorSet(spec.localLocators ?? [localUlid.text], spec.verification, 'localLocators');
  const peerLocators = locatorSet(spec.peerLocators ?? [peerUlid.text], spec.verification, 'peerLocators');
  const forkedInstanceId = spec.forkedInstanceId ?? 0;
  if (!Number.isInteger(forkedInstanceId) || forkedInstanceId < 0 || forkedInstanceId > 0xffffffff) throw new ContextError(`forkedInstanceId: ${forkedInstanceId} is not a 32-bit value`);
  const ctx: ShimContext = {
    id: spec.id,
    state: spec.state ?? 'ESTABLISHED',
    origin: spec.origin,
    forkedInstanceId,
    localUlid,
    peerUlid,
    localContextTag: spec.localContextTag,
    peerContextTag: spec.peerContextTag,
    localLocators,
    peerLocators,
    localLocatorKeys: new Set(),
    peerLocatorKeys: new Set(),
    current: { local: localUlid, peer: peerUlid },
    pathMtu: undefined,
    counters: {
      shimmedPackets: 0,
      shimmedOctets: 0,
      deshimmedPackets: 0,
      deshimmedOctets: 0,
      drops: zeroDrops(),
      packetTooBigSent: 0,
      lastShimmedAt: 0,
      lastDeshimmedAt: 0,
    },
    ptbSecond: -1,
    ptbInSecond: 0,
  };
  refreshLocatorKeys(ctx);
  if (spec.locatorPair) ctx.current = resolvePair(ctx, spec.locatorPair.local, spec.locatorPair.peer);
  return ctx;
}

/**
 * Recomputes the per-packet membership sets after a locator set changed: our locators, and
 * the peer's verified ones. Each ULID counts too (it was the initial contact pair).
 */
export function refreshLocatorKeys(ctx: ShimContext): void {
  ctx.localLocatorKeys = new Set([ctx.localUlid.key, ...ctx.localLocators.map((l) => l.key)]);
  ctx.peerLocatorKeys = new Set([ctx.peerUlid.key, ...ctx.peerLocators.filter((l) => l.verification !== 'unverified').map((l) => l.key)]);
}

/**
 * The pair (local, peer) as members of the context's locator sets. A ULID counts as a
 * locator of its own side even when the set does not list it (the initial contact pair).
 */
export function resolvePair(ctx: ShimContext, localText: string, peerText: string): LocatorPair {
  const local = locator(localText, 'unverified', 'local locator');
  const peer = locator(peerText, 'unverified', 'peer locator');
  const l = local.key === ctx.localUlid.key ? ctx.localUlid : ctx.localLocators.find((x) => x.key === local.key);
  const p = peer.key === ctx.peerUlid.key ? ctx.peerUlid : ctx.peerLocators.find((x) => x.key === peer.key);
  if (!l) throw new ContextError(`local locator ${canonicalIPv6(localText) ?? localText} is not one of context ${ctx.id}'s local locators (${ctx.localLocators.map((x) => x.text).join(', ')})`);
  if (!p) throw new ContextError(`peer locator ${canonicalIPv6(peerText) ?? peerText} is not one of context ${ctx.id}'s verified peer locators (${ctx.peerLocators.map((x) => x.text).join(', ')})`);
  if (p !== ctx.peerUlid && p.verification === 'unverified') throw new ContextError(`peer locator ${p.text} of context ${ctx.id} is not verified`);
  return { local: l, peer: p };
}
