/**
 * The context machine's contexts by what a received message or a query names, so that no
 * lookup scans the table: by the Initiator Nonce of the exchange under way (R1, R2), by the
 * peer's context tag (R1bis, context confusion), by peer locator (Error messages about our
 * locator list), and by peer ULID the contexts in I1-SENT (ICMPv6 "no Shim6") and those in a
 * hold-down (the heuristic asks for every candidate flow). The peer ULID lookups file only
 * contexts in those states, so that many established contexts with one peer (forks, several
 * local ULIDs) do not make them long. Pure.
 *
 * The index files an entry under the values it had when last (re)filed: the machine calls
 * refile() after it changes a context's state, pending exchange, hold-down, peer context tag
 * or peer locator set, and unfile() when the context goes. A lookup returns candidates; the
 * caller still checks what it matches on, so an entry filed under an old value is never
 * taken for a match.
 */
import type { ShimContext } from './context';

/** What the index files: the machine's record of one context. */
export interface Indexed {
  readonly ctx: ShimContext;
  /** The exchange under way (I1, I2, I2bis), by the Initiator Nonce it sent. */
  readonly pending: { readonly nonce: number } | undefined;
  /** End of the hold-down of a peer that did not answer, or has no Shim6. */
  readonly holdDownUntil: number | undefined;
}

/** The values an entry is filed under. */
interface Filed {
  nonce: number | undefined;
  peerTag: number;
  /** The peer ULID (canonical text) while in I1-SENT, and while in a hold-down. */
  awaitingR1: string | undefined;
  heldDown: string | undefined;
  /** A copy: refile() compares the new set with it. */
  peerKeys: string[];
}

const NONE: readonly never[] = [];

/** Values by key, several per key: a key with one value keeps it bare (the common case), more go in a Set. */
class Buckets<K, V extends object> {
  private readonly map = new Map<K, V | Set<V>>();

  get size(): number {
    return this.map.size;
  }

  add(key: K, value: V): void {
    const b = this.map.get(key);
    if (b === undefined) this.map.set(key, value);
    else if (b instanceof Set) b.add(value);
    else if (b !== value) this.map.set(key, new Set([b, value]));
  }

  delete(key: K, value: V): void {
    const b = this.map.get(key);
    if (b === value) this.map.delete(key);
    else if (b instanceof Set && b.delete(value) && b.size === 1) this.map.set(key, b.values().next().value as V);
  }

  /** A copy: the caller may change the index while it goes through them. */
  get(key: K): readonly V[] {
    const b = this.map.get(key);
    return b === undefined ? NONE : b instanceof Set ? [...b] : [b];
  }
}

/** Moves an entry from one key of `buckets` to another (undefined: none); returns the new key. */
function move<K, E extends object>(buckets: Buckets<K, E>, e: E, from: K | undefined, to: K | undefined): K | undefined {
  if (from === to) return to;
  if (from !== undefined) buckets.delete(from, e);
  if (to !== undefined) buckets.add(to, e);
  return to;
}

export class ContextIndex<E extends Indexed> {
  private readonly filed = new Map<E, Filed>();
  private readonly byNonce = new Buckets<number, E>();
  private readonly byPeerTagMap = new Buckets<number, E>();
  private readonly awaitingR1Map = new Buckets<string, E>();
  private readonly heldDownMap = new Buckets<string, E>();
  private readonly byPeerKey = new Buckets<string, E>();

  /** How many entries are filed. */
  get size(): number {
    return this.filed.size;
  }

  /** How many distinct keys each lookup has (tests: nothing is left behind). */
  get keys(): { nonces: number; peerTags: number; awaitingR1: number; heldDown: number; peerLocators: number } {
    return { nonces: this.byNonce.size, peerTags: this.byPeerTagMap.size, awaitingR1: this.awaitingR1Map.size, heldDown: this.heldDownMap.size, peerLocators: this.byPeerKey.size };
  }

  /** Files the entry under its current values (first time), or moves it to them. */
  refile(e: E): void {
    const ctx = e.ctx;
    let f = this.filed.get(e);
    if (!f) {
      f = { nonce: undefined, peerTag: ctx.peerContextTag, awaitingR1: undefined, heldDown: undefined, peerKeys: [...ctx.peerLocatorKeys] };
      this.filed.set(e, f);
      this.byPeerTagMap.add(f.peerTag, e);
      for (const k of f.peerKeys) this.byPeerKey.add(k, e);
    }
    f.nonce = move(this.byNonce, e, f.nonce, e.pending?.nonce);
    f.awaitingR1 = move(this.awaitingR1Map, e, f.awaitingR1, ctx.state === 'I1-SENT' ? ctx.peerUlid.text : undefined);
    f.heldDown = move(this.heldDownMap, e, f.heldDown, e.holdDownUntil !== undefined ? ctx.peerUlid.text : undefined);
    if (f.peerTag !== ctx.peerContextTag) {
      this.byPeerTagMap.delete(f.peerTag, e);
      this.byPeerTagMap.add(ctx.peerContextTag, e);
      f.peerTag = ctx.peerContextTag;
    }
    const keys = ctx.peerLocatorKeys;
    if (keys.size !== f.peerKeys.length || f.peerKeys.some((k) => !keys.has(k))) {
      for (const k of f.peerKeys) if (!keys.has(k)) this.byPeerKey.delete(k, e);
      const old = new Set(f.peerKeys);
      for (const k of keys) if (!old.has(k)) this.byPeerKey.add(k, e);
      f.peerKeys = [...keys];
    }
  }

  /** Takes the entry out of every lookup. */
  unfile(e: E): void {
    const f = this.filed.get(e);
    if (!f) return;
    this.filed.delete(e);
    if (f.nonce !== undefined) this.byNonce.delete(f.nonce, e);
    if (f.awaitingR1 !== undefined) this.awaitingR1Map.delete(f.awaitingR1, e);
    if (f.heldDown !== undefined) this.heldDownMap.delete(f.heldDown, e);
    this.byPeerTagMap.delete(f.peerTag, e);
    for (const k of f.peerKeys) this.byPeerKey.delete(k, e);
  }

  /** Entries whose exchange under way sent this Initiator Nonce. */
  byPendingNonce(nonce: number): readonly E[] {
    return this.byNonce.get(nonce);
  }

  /** Entries whose peer uses this context tag (we put it in what we send). */
  byPeerTag(tag: number): readonly E[] {
    return this.byPeerTagMap.get(tag);
  }

  /** Entries in I1-SENT with this peer ULID (canonical text). */
  awaitingR1(peerUlid: string): readonly E[] {
    return this.awaitingR1Map.get(peerUlid);
  }

  /** Entries in a hold-down (holdDownUntil set) with this peer ULID (canonical text). */
  heldDown(peerUlid: string): readonly E[] {
    return this.heldDownMap.get(peerUlid);
  }

  /** Entries whose peer locator set (peerLocatorKeys: the ULID and the verified locators) has this key. */
  byPeerLocator(key: string): readonly E[] {
    return this.byPeerKey.get(key);
  }
}
