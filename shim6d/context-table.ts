/**
 * shim6d's contexts, indexed the three ways they are looked up: by id (console, IPC), by
 * local context tag (inbound payload packets and control messages) and by ULID pair
 * (outbound packets, the heuristic). Pure: no I/O.
 */
import { ContextError, createContext, ulidPairKey, type ContextSpec, type ShimContext } from './context';

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
    const key = ulidPairKey(ctx.localUlid, ctx.peerUlid);
    const same = this.byPairMap.get(key);
    if (same) throw new ContextError(`ULID pair ${ctx.localUlid.text} → ${ctx.peerUlid.text} has context ${same.id} already`);
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
    this.byPairMap.delete(ulidPairKey(ctx.localUlid, ctx.peerUlid));
    return ctx;
  }

  byId(id: number): ShimContext | undefined {
    return this.byIdMap.get(id);
  }

  byLocalTag(tag: number): ShimContext | undefined {
    return this.byTagMap.get(tag);
  }

  /** By the 32-octet latin1 key of (local ULID, peer ULID): see ulidPairKey. */
  byUlidPairKey(key: string): ShimContext | undefined {
    return this.byPairMap.get(key);
  }

  /** Contexts in id order. */
  all(): ShimContext[] {
    return [...this.byIdMap.values()].sort((a, b) => a.id - b.id);
  }
}
