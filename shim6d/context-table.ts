/**
 * shim6d's contexts, indexed the three ways they are looked up: by id (console, IPC), by
 * local context tag (inbound payload packets and control messages) and by ULID pair
 * (outbound packets, the heuristic). Pure: no I/O.
 */
import { parseIPv6 } from '../protocol/address';
import { ContextError, contextKey, createContext, type ContextSpec, type ShimContext } from './context';

/** A Locator's key of an address given as text, without the Locator; the ContextError locator() throws. */
function addressKey(text: string): string {
  const address = parseIPv6(text);
  if (!address) throw new ContextError(`address: '${text}' is not an IPv6 address`);
  return address.toString('latin1');
}

export class ContextTable {
  private readonly byIdMap = new Map<number, ShimContext>();
  private readonly byTagMap = new Map<number, ShimContext>();
  private readonly byPairMap = new Map<string, ShimContext>();
  private nextId = 1;

  get size(): number {
    return this.byIdMap.size;
  }

  /** An id no context has (for specs that leave it to the table). */
  allocateId(): number {
    while (this.byIdMap.has(this.nextId)) this.nextId = this.nextId >= 0x7fffffff ? 1 : this.nextId + 1;
    return this.nextId;
  }

  /** Adds a context; ContextError when its id, local tag or ULID pair is taken. */
  add(spec: ContextSpec): ShimContext {
    const ctx = createContext(spec);
    if (this.byIdMap.has(ctx.id)) throw new ContextError(`context id ${ctx.id} is in use`);
    const taken = this.byTagMap.get(ctx.localContextTag);
    if (taken) throw new ContextError(`local context tag ${ctx.localContextTag} is in use by context ${taken.id}`);
    const key = contextKey(ctx.localUlid, ctx.peerUlid, ctx.forkedInstanceId);
    const same = this.byPairMap.get(key);
    if (same) {
      const fork = ctx.forkedInstanceId === 0 ? '' : ` (fork ${ctx.forkedInstanceId})`;
      throw new ContextError(`ULID pair ${ctx.localUlid.text} → ${ctx.peerUlid.text}${fork} has context ${same.id} already`);
    }
    this.byIdMap.set(ctx.id, ctx);
    this.byTagMap.set(ctx.localContextTag, ctx);
    this.byPairMap.set(key, ctx);
    return ctx;
  }

  remove(id: number): ShimContext | undefined {
    const ctx = this.byIdMap.get(id);
    if (!ctx) return undefined;
    this.byIdMap.delete(id);
    this.byTagMap.delete(ctx.localContextTag);
    this.byPairMap.delete(contextKey(ctx.localUlid, ctx.peerUlid, ctx.forkedInstanceId));
    return ctx;
  }

  byId(id: number): ShimContext | undefined {
    return this.byIdMap.get(id);
  }

  byLocalTag(tag: number): ShimContext | undefined {
    return this.byTagMap.get(tag);
  }

  /**
   * By contextKey(local ULID, peer ULID, forked instance id). For the default context (not a
   * fork) that is the 32-octet latin1 key of (local ULID, peer ULID) as read from a packet:
   * see ulidPairKey.
   */
  byUlidPairKey(key: string): ShimContext | undefined {
    return this.byPairMap.get(key);
  }

  /** True if some context has this local tag. */
  hasLocalTag(tag: number): boolean {
    return this.byTagMap.has(tag);
  }

  /** Every context, in no particular order, without a copy: for lookups (all() sorts). */
  values(): IterableIterator<ShimContext> {
    return this.byIdMap.values();
  }

  /**
   * The default context (not a fork) of a ULID pair given as text; ContextError when one is
   * not an address. The key is contextKey's for fork 0, made from the octets (no Locator).
   */
  byUlids(localUlid: string, peerUlid: string): ShimContext | undefined {
    return this.byPairMap.get(addressKey(localUlid) + addressKey(peerUlid));
  }

  /** Contexts in id order (console, logs). */
  all(): ShimContext[] {
    return [...this.byIdMap.values()].sort((a, b) => a.id - b.id);
  }
}
