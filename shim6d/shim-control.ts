/**
 * Moving contexts between locator pairs, keeping the context table and the netfilter rules
 * in step: the one place that knows the order matters.
 *
 * - To a pair other than the ULIDs: set the pair (and its path MTU) in the table first, then
 *   add the ULID pair to the rules, so the first queued packet finds its locators.
 * - Back to the ULID pair: take the rule out first, then reset the pair; packets queued
 *   in between are still shimmed, which the peer accepts.
 * - Between two non-ULID pairs: the table only; the rule stays.
 * - Many at once (installMany, the static contexts at start-up): all into the table with
 *   their pairs and path MTUs first, then the shimmed ULID pairs into the rules in one batch.
 *
 * Operations are serialised. Pure apart from the injected rules and path MTU lookup.
 */
import { ContextError, isShimmed, resolvePair, type ContextSpec, type ShimContext } from './context';
import type { ContextTable } from './context-table';

/** The part of iptables-rules' Shim6Rules this needs. */
export interface PairRules {
  addShimmedPair(srcUlid: string, dstUlid: string): Promise<void>;
  /** Many pairs in one batch (one `ipset restore`). */
  addShimmedPairs(pairs: readonly { src: string; dst: string }[]): Promise<void>;
  removeShimmedPair(srcUlid: string, dstUlid: string): Promise<void>;
}

export interface ShimControlLogger {
  info(message: string, meta?: Record<string, unknown>): void;
  warn(message: string, meta?: Record<string, unknown>): void;
}

/** Path MTU of (local, peer) locators; a rejection means unknown (the default applies). */
export type PathMtuLookup = (local: string, peer: string) => Promise<number>;

/** installMany: how many path MTU lookups (each a command run) may be under way at once. */
export const PATH_MTU_LOOKUPS_AT_ONCE = 8;

export class ShimControl {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly table: ContextTable,
    private readonly rules: PairRules,
    private readonly pathMtu: PathMtuLookup,
    private readonly log: ShimControlLogger,
  ) {}

  /** Adds a context; when its pair is not the ULID pair, also its rule. */
  install(spec: ContextSpec): Promise<ShimContext> {
    return this.serial(async () => {
      const ctx = this.table.add(spec);
      if (isShimmed(ctx)) {
        try {
          ctx.pathMtu = await this.lookup(ctx);
          await this.rules.addShimmedPair(ctx.localUlid.text, ctx.peerUlid.text);
        } catch (e) {
          this.table.remove(ctx.id);
          throw e;
        }
      }
      this.log.info('context installed', describe(ctx));
      return ctx;
    });
  }

  /**
   * Adds many contexts at once (the static ones at start-up), in the order given, as install()
   * would one by one, but with the path MTU lookups run a few at a time (once per distinct
   * locator pair) and the ULID pairs of all the shimmed ones added to the rules in ONE batch,
   * after every context is in the table with its pair and path MTU. All or nothing: when a spec
   * is refused (ContextError) or the rules fail, none of these contexts stays in the table.
   */
  installMany(specs: readonly ContextSpec[]): Promise<ShimContext[]> {
    return this.serial(async () => {
      const added: ShimContext[] = [];
      try {
        for (const spec of specs) added.push(this.table.add(spec));
        const shimmed = added.filter(isShimmed);
        const mtus = new Map<string, Promise<number | undefined>>();
        const pairKey = (ctx: ShimContext): string => `${ctx.current.local.text} ${ctx.current.peer.text}`;
        const distinct = [...new Map(shimmed.map((ctx) => [pairKey(ctx), ctx])).values()];
        let next = 0;
        const worker = async (): Promise<void> => {
          while (next < distinct.length) {
            const ctx = distinct[next++] as ShimContext;
            const lookup = this.lookup(ctx);
            mtus.set(pairKey(ctx), lookup);
            await lookup;
          }
        };
        await Promise.all(Array.from({ length: Math.min(PATH_MTU_LOOKUPS_AT_ONCE, distinct.length) }, worker));
        for (const ctx of shimmed) ctx.pathMtu = await mtus.get(pairKey(ctx));
        if (shimmed.length > 0) await this.rules.addShimmedPairs(shimmed.map((ctx) => ({ src: ctx.localUlid.text, dst: ctx.peerUlid.text })));
      } catch (e) {
        for (const ctx of added) this.table.remove(ctx.id);
        throw e;
      }
      for (const ctx of added) this.log.info('context installed', describe(ctx));
      return added;
    });
  }

  /** `shim <id> <local> <peer>`: send the context's packets on this pair from now on. */
  moveTo(id: number, localLocator: string, peerLocator: string): Promise<ShimContext> {
    return this.serial(() => this.move(this.get(id), localLocator, peerLocator));
  }

  /** `deshim <id>`: back to the ULID pair; no rewriting, no payload header. */
  returnToUlids(id: number): Promise<ShimContext> {
    return this.serial(() => {
      const ctx = this.get(id);
      return this.move(ctx, ctx.localUlid.text, ctx.peerUlid.text);
    });
  }

  private async move(ctx: ShimContext, localLocator: string, peerLocator: string): Promise<ShimContext> {
    const pair = resolvePair(ctx, localLocator, peerLocator);
    const wasShimmed = isShimmed(ctx);
    const before = { current: ctx.current, pathMtu: ctx.pathMtu };
    const toUlids = pair.local === ctx.localUlid && pair.peer === ctx.peerUlid;
    if (toUlids) {
      if (wasShimmed) await this.rules.removeShimmedPair(ctx.localUlid.text, ctx.peerUlid.text);
      ctx.current = pair;
      ctx.pathMtu = undefined;
    } else {
      const mtu = await this.lookupPair(pair.local.text, pair.peer.text);
      ctx.current = pair;
      ctx.pathMtu = mtu;
      if (!wasShimmed) {
        try {
          await this.rules.addShimmedPair(ctx.localUlid.text, ctx.peerUlid.text);
        } catch (e) {
          ctx.current = before.current;
          ctx.pathMtu = before.pathMtu;
          throw e;
        }
      }
    }
    this.log.info('context moved', { ...describe(ctx), from: `${before.current.local.text} → ${before.current.peer.text}` });
    return ctx;
  }

  /** Removes a context (and its rule). */
  remove(id: number): Promise<ShimContext> {
    return this.serial(async () => {
      const ctx = this.get(id);
      if (isShimmed(ctx)) await this.rules.removeShimmedPair(ctx.localUlid.text, ctx.peerUlid.text);
      this.table.remove(id);
      this.log.info('context removed', describe(ctx));
      return ctx;
    });
  }

  private get(id: number): ShimContext {
    const ctx = this.table.byId(id);
    if (!ctx) throw new ContextError(`no context ${id}`);
    return ctx;
  }

  private lookup(ctx: ShimContext): Promise<number | undefined> {
    return this.lookupPair(ctx.current.local.text, ctx.current.peer.text);
  }

  private async lookupPair(local: string, peer: string): Promise<number | undefined> {
    try {
      return await this.pathMtu(local, peer);
    } catch (e) {
      this.log.warn('path MTU unknown, using the default', { local, peer, error: e instanceof Error ? e.message : String(e) });
      return undefined;
    }
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

function describe(ctx: ShimContext): Record<string, unknown> {
  return {
    id: ctx.id,
    ulids: `${ctx.localUlid.text} → ${ctx.peerUlid.text}`,
    pair: `${ctx.current.local.text} → ${ctx.current.peer.text}`,
    pathMtu: ctx.pathMtu,
  };
}
