/**
 * shim6d's netfilter rules: its own chains, the NFQUEUE rules, and the set of ULID pairs
 * whose outbound packets must be shimmed (iptables-rules/README.md).
 *
 *   const rules = new Shim6Rules({ netns: 'ns-a' });    // or {} inside the daemon's namespace
 *   await rules.install();                              // clean leftovers, then add (idempotent)
 *   await rules.addShimmedPair(ulidA, ulidB);            // REAP moved the context off its ULIDs
 *   await rules.removeShimmedPair(ulidA, ulidB);         // back on the ULID pair
 *   (await rules.check()).ok                              // health check
 *   await rules.removeAll();                            // at shutdown
 *
 * Every command is an argument array run without a shell; rule changes go through
 * `ip6tables-restore --noflush` (one atomic batch per call), set changes through `ipset restore`.
 * Calls on one instance are serialised.
 */
import { canonicalIPv6 } from '../protocol/address';
import { classify, CommandFailedError, KernelSupportError, NetfilterError, spawnRunner, type Runner, type RunResult } from './exec';
import {
  chainRules,
  hookRules,
  ownsSet,
  parseSave,
  perUlidRule,
  perUlidRulesOf,
  perUlidSetName,
  probeSetName,
  resolveConfig,
  restoreInput,
  ruleLine,
  ruleParts,
  type PairMatch,
  type RuleSpec,
  type RulesConfig,
  type SavedRules,
} from './shape';

export * from './exec';
export {
  DEFAULT_RULES_CONFIG,
  SHIM6_PROTOCOL,
  chainRules,
  hookRules,
  perUlidRule,
  perUlidSetName,
  resolveConfig,
  type Commands,
  type PairMatch,
  type RuleSpec,
  type RulesConfig,
  type Table,
} from './shape';

/** A ULID pair, canonical text: outbound packets src -> dst are shimmed. */
export interface ShimmedPair {
  src: string;
  dst: string;
}

/** What a clean-up removed. */
export interface RemoveReport {
  /** Rules deleted from built-in (or foreign) chains: the jumps into ours. */
  jumps: number;
  /** Our chains flushed and deleted (table/chain). */
  chains: string[];
  /** Sets destroyed. */
  sets: string[];
}

export interface InstallReport {
  match: PairMatch;
  /** Leftovers of an earlier run that install removed first. */
  removed: RemoveReport;
}

export interface CheckResult {
  ok: boolean;
  /** Human-readable descriptions of what should be there and is not. */
  missing: string[];
  /** What should not be there (duplicate jumps, foreign rules in our chains). */
  unexpected: string[];
}

const IN_USE = /in use by a kernel component/i;

export class Shim6Rules {
  readonly config: RulesConfig;
  private match: PairMatch | undefined;
  /** per-ulid: local ULID -> set, as installed by this instance (undefined: read it from the kernel). */
  private localSets: Map<string, string> | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    config: Partial<RulesConfig> = {},
    private readonly runner: Runner = spawnRunner,
  ) {
    this.config = resolveConfig(config);
    if (this.config.pairMatch !== 'auto') this.match = this.config.pairMatch;
  }

  // -- public API -------------------------------------------------------------------------------

  /**
   * Removes whatever an earlier run left (rules, chains, sets of this config), then adds the
   * chains, their rules, the jumps into them and (pair-set) the empty pair set. Running it
   * twice leaves each rule exactly once.
   */
  install(): Promise<InstallReport> {
    return this.serial(async () => {
      const removed = await this.doRemoveAll();
      const match = await this.resolveMatch();
      const c = this.config;
      if (match === 'pair-set') {
        await this.ipset(['create', c.pairSet, 'hash:net,net', 'family', 'inet6', 'maxelem', String(c.maxPairs)]);
      }
      const byTable = new Map<string, string[]>([
        ['mangle', [`:${c.outChain} - [0:0]`]],
        ['raw', [`:${c.inChain} - [0:0]`]],
      ]);
      for (const r of chainRules(c, match)) byTable.get(r.table)?.push(ruleLine('-A', r));
      for (const r of hookRules(c)) byTable.get(r.table)?.push(ruleLine('-I', r, 1));
      await this.restore(byTable);
      this.localSets = new Map();
      return { match, removed };
    });
  }

  /** Takes out every rule, chain and set of this config. Idempotent. */
  removeAll(): Promise<RemoveReport> {
    return this.serial(() => this.doRemoveAll());
  }

  /** Compares the kernel's state with what install() sets up. */
  check(): Promise<CheckResult> {
    return this.serial(async () => {
      const c = this.config;
      const match = await this.resolveMatch();
      const missing: string[] = [];
      const unexpected: string[] = [];
      const expected = [...hookRules(c), ...chainRules(c, match)];
      for (const r of expected) {
        if (!(await this.ruleExists(r))) missing.push(`rule: ${r.table} ${ruleLine('-A', r)}`);
      }
      const saved = parseSave((await this.run([c.commands.ip6tablesSave])).stdout);
      // Each jump exactly once.
      for (const hook of hookRules(c)) {
        const n = (saved.tables.get(hook.table)?.rules ?? []).filter((l) => {
          const p = ruleParts(l);
          return p.chain === hook.chain && p.target === hook.args[1];
        }).length;
        if (n > 1) unexpected.push(`rule: ${hook.table} ${ruleLine('-A', hook)} appears ${n} times`);
      }
      // Nothing foreign in our chains.
      const perUlid = match === 'per-ulid' ? perUlidRulesOf(c, saved) : new Map<string, string>();
      const known = new Set([
        ...expected.map((r) => `${r.table} ${ruleLine('-A', r)}`),
        ...[...perUlid].map(([ulid, set]) => `mangle ${ruleLine('-A', perUlidRule(c, ulid, set))}`),
      ]);
      for (const [table, t] of saved.tables) {
        for (const line of t.rules) {
          const { chain } = ruleParts(line);
          if (chain !== c.outChain && chain !== c.inChain) continue;
          if (!known.has(`${table} ${normaliseSaved(line)}`)) unexpected.push(`rule: ${table} ${line}`);
        }
      }
      // Sets.
      const sets = await this.setNames();
      if (match === 'pair-set') {
        if (!sets.includes(c.pairSet)) missing.push(`set: ${c.pairSet} (hash:net,net family inet6)`);
        else {
          const head = (await this.ipset(['list', '-t', c.pairSet])).stdout;
          if (!/^Type: hash:net,net$/m.test(head) || !/family inet6/.test(head)) unexpected.push(`set: ${c.pairSet} is not hash:net,net family inet6`);
        }
      } else {
        const withRule = new Set(perUlid.values());
        for (const s of sets) if (ownsSet(c, s) && s !== c.pairSet && !withRule.has(s)) missing.push(`rule for per-ULID set ${s}`);
      }
      return { ok: missing.length === 0 && unexpected.length === 0, missing, unexpected };
    });
  }

  /** From now on, outbound packets srcUlid -> dstUlid go to the outbound queue. Idempotent. */
  addShimmedPair(srcUlid: string, dstUlid: string): Promise<void> {
    return this.addShimmedPairs([{ src: srcUlid, dst: dstUlid }]);
  }

  /** Stops queueing srcUlid -> dstUlid. Idempotent. */
  removeShimmedPair(srcUlid: string, dstUlid: string): Promise<void> {
    return this.removeShimmedPairs([{ src: srcUlid, dst: dstUlid }]);
  }

  /** Adds many pairs in one `ipset restore` (plus, per-ulid, one rule batch for new local ULIDs). */
  async addShimmedPairs(pairs: readonly ShimmedPair[]): Promise<void> {
    const norm = pairs.map(normalisePair); // a bad address rejects before any command runs
    return this.serial(() => this.doAdd(norm));
  }

  async removeShimmedPairs(pairs: readonly ShimmedPair[]): Promise<void> {
    const norm = pairs.map(normalisePair); // a bad address rejects before any command runs
    return this.serial(() => this.doRemove(norm));
  }

  /** Makes the shimmed pairs exactly `pairs` (adds and removes the difference). */
  async setShimmedPairs(pairs: readonly ShimmedPair[]): Promise<void> {
    const norm = pairs.map(normalisePair); // a bad address rejects before any command runs
    return this.serial(async () => {
      const want = new Map(norm.map((p) => [key(p), p]));
      const have = await this.doList();
      await this.doRemove(have.filter((p) => !want.has(key(p))));
      const haveKeys = new Set(have.map(key));
      await this.doAdd([...want.values()].filter((p) => !haveKeys.has(key(p))));
    });
  }

  /** The pairs in the kernel's sets, canonical text, sorted. */
  listShimmedPairs(): Promise<ShimmedPair[]> {
    return this.serial(() => this.doList());
  }

  /** How many pairs are shimmed (from the set headers: cheap even for many pairs). */
  countShimmedPairs(): Promise<number> {
    return this.serial(async () => {
      const out = (await this.run([this.config.commands.ipset, 'list', '-t'])).stdout;
      let n = 0;
      let mine = false;
      for (const line of out.split('\n')) {
        const name = /^Name: (\S+)/.exec(line)?.[1];
        if (name !== undefined) mine = ownsSet(this.config, name);
        const count = /^Number of entries: (\d+)/.exec(line)?.[1];
        if (mine && count !== undefined) n += Number(count);
      }
      return n;
    });
  }

  /** The matching this instance uses ('auto' resolved by probing the kernel once). */
  pairMatch(): Promise<PairMatch> {
    return this.serial(() => this.resolveMatch());
  }

  /** The full argv of a command as this instance runs it (prefix, netns). */
  commandLine(argv: readonly string[]): string[] {
    const c = this.config;
    return [...(c.prefix ?? []), ...(c.netns === undefined ? [] : [c.commands.ip, 'netns', 'exec', c.netns]), ...argv];
  }

  // -- internals --------------------------------------------------------------------------------

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Runs argv (prefixed); throws the typed error unless `ok` accepts the result. */
  private async run(argv: readonly string[], input?: string, ok: (r: RunResult) => boolean = (r) => r.code === 0): Promise<RunResult> {
    const full = this.commandLine(argv);
    let r: RunResult;
    try {
      r = await this.runner(full, input, this.config.commandTimeoutMs);
    } catch (e) {
      throw classify(full, e as NodeJS.ErrnoException);
    }
    if (!ok(r)) throw classify(full, r);
    return r;
  }

  private ipset(args: readonly string[], input?: string, ok?: (r: RunResult) => boolean): Promise<RunResult> {
    return this.run([this.config.commands.ipset, ...args], input, ok);
  }

  private async restore(byTable: ReadonlyMap<string, readonly string[]>): Promise<void> {
    const input = restoreInput(byTable);
    if (input === '') return;
    const c = this.config;
    await this.run([c.commands.ip6tablesRestore, '-w', String(c.lockWaitSeconds), '--noflush'], input);
  }

  private async ruleExists(r: RuleSpec): Promise<boolean> {
    const c = this.config;
    const res = await this.run(
      [c.commands.ip6tables, '-w', String(c.lockWaitSeconds), '-t', r.table, '-C', r.chain, ...r.args],
      undefined,
      (x) => x.code === 0 || x.code === 1 || (x.code === 2 && /does not exist|No chain/i.test(x.stderr)),
    );
    return res.code === 0;
  }

  private async setNames(): Promise<string[]> {
    const out = (await this.ipset(['list', '-n'])).stdout;
    return out.split('\n').map((s) => s.trim()).filter((s) => s !== '');
  }

  private async saved(): Promise<SavedRules> {
    return parseSave((await this.run([this.config.commands.ip6tablesSave])).stdout);
  }

  private async doRemoveAll(): Promise<RemoveReport> {
    // The batch is computed from a snapshot: if another writer changed the rules in between,
    // the batch fails as a whole (nothing applied) and is recomputed.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.removeAllOnce();
      } catch (e) {
        if (!(e instanceof CommandFailedError) || attempt >= 3) throw e;
      }
    }
  }

  private async removeAllOnce(): Promise<RemoveReport> {
    const c = this.config;
    const ours = new Set([c.outChain, c.inChain]);
    const saved = await this.saved();
    const byTable = new Map<string, string[]>();
    const report: RemoveReport = { jumps: 0, chains: [], sets: [] };
    for (const [table, t] of saved.tables) {
      const lines: string[] = [];
      const present = [...ours].filter((ch) => t.chains.has(ch));
      for (const ch of present) lines.push(`:${ch} - [0:0]`); // declaring flushes it
      for (const line of t.rules) {
        const { chain, target } = ruleParts(line);
        if (target !== undefined && ours.has(target) && !ours.has(chain)) {
          lines.push(`-D${line.slice(2)}`);
          report.jumps++;
        }
      }
      for (const ch of present) {
        lines.push(`-X ${ch}`);
        report.chains.push(`${table}/${ch}`);
      }
      byTable.set(table, lines);
    }
    await this.restore(byTable);
    for (const s of await this.setNames()) {
      if (!ownsSet(c, s)) continue;
      await this.destroySet(s);
      report.sets.push(s);
    }
    this.localSets = new Map();
    return report;
  }

  /** ipset destroy, retried while the kernel still holds a reference of a just-deleted rule. */
  private async destroySet(name: string): Promise<void> {
    const deadline = Date.now() + 3000;
    for (;;) {
      const r = await this.ipset(['destroy', name], undefined, (x) => x.code === 0 || IN_USE.test(x.stderr) || /does not exist/.test(x.stderr));
      if (!IN_USE.test(r.stderr)) return;
      if (Date.now() > deadline) throw classify(this.commandLine([this.config.commands.ipset, 'destroy', name]), r);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  private async resolveMatch(): Promise<PairMatch> {
    if (this.match !== undefined) return this.match;
    const probe = probeSetName(this.config);
    try {
      await this.ipset(['create', probe, 'hash:net,net', 'family', 'inet6', 'maxelem', '1'], undefined, (r) => r.code === 0 || /already exists/.test(r.stderr));
      await this.destroySet(probe);
      this.match = 'pair-set';
    } catch (e) {
      if (!(e instanceof KernelSupportError)) throw e;
      this.match = 'per-ulid';
    }
    return this.match;
  }

  private async perUlidSets(fresh = false): Promise<Map<string, string>> {
    if (fresh || this.localSets === undefined) this.localSets = perUlidRulesOf(this.config, await this.saved());
    return this.localSets;
  }

  private async doAdd(pairs: readonly ShimmedPair[]): Promise<void> {
    try {
      await this.doAddOnce(pairs);
    } catch (e) {
      // per-ulid: a set we knew of was destroyed behind our back; learn the kernel's state again, once.
      if (!(e instanceof NetfilterError) || this.match !== 'per-ulid' || !/does not exist/.test(e.stderr)) throw e;
      await this.perUlidSets(true);
      await this.doAddOnce(pairs);
    }
  }

  private async doAddOnce(pairs: readonly ShimmedPair[]): Promise<void> {
    if (pairs.length === 0) return;
    const c = this.config;
    const match = await this.resolveMatch();
    if (match === 'pair-set') {
      await this.ipset(['-exist', 'restore'], pairs.map((p) => `add ${c.pairSet} ${p.src}/128,${p.dst}/128\n`).join(''));
      return;
    }
    const sets = await this.perUlidSets();
    const taken = new Map([...sets].map(([ulid, set]) => [set, ulid]));
    const lines: string[] = [];
    const fresh = new Map<string, string>();
    for (const p of pairs) {
      let set = sets.get(p.src) ?? fresh.get(p.src);
      if (set === undefined) {
        set = perUlidSetName(c, p.src);
        const other = taken.get(set);
        if (other !== undefined && other !== p.src) throw new Error(`per-ULID set name ${set} collides for ${other} and ${p.src}; choose another pairSet`);
        taken.set(set, p.src);
        fresh.set(p.src, set);
        lines.push(`create ${set} hash:ip family inet6 maxelem ${c.maxPairs}`);
      }
      lines.push(`add ${set} ${p.dst}`);
    }
    await this.ipset(['-exist', 'restore'], lines.join('\n') + '\n');
    if (fresh.size > 0) {
      await this.restore(new Map([['mangle', [...fresh].map(([ulid, set]) => ruleLine('-A', perUlidRule(c, ulid, set)))]]));
      for (const [ulid, set] of fresh) sets.set(ulid, set);
    }
  }

  private async doRemove(pairs: readonly ShimmedPair[]): Promise<void> {
    if (pairs.length === 0) return;
    const c = this.config;
    const match = await this.resolveMatch();
    let lines: string[];
    if (match === 'pair-set') {
      lines = pairs.map((p) => `del ${c.pairSet} ${p.src}/128,${p.dst}/128`);
    } else {
      const sets = await this.perUlidSets();
      lines = pairs.flatMap((p) => {
        const set = sets.get(p.src);
        return set === undefined ? [] : [`del ${set} ${p.dst}`];
      });
    }
    if (lines.length > 0) await this.ipset(['-exist', 'restore'], lines.join('\n') + '\n');
  }

  private async doList(): Promise<ShimmedPair[]> {
    const c = this.config;
    const match = await this.resolveMatch();
    const out: ShimmedPair[] = [];
    if (match === 'pair-set') {
      const r = await this.ipset(['save', c.pairSet], undefined, (x) => x.code === 0 || /does not exist/.test(x.stderr));
      for (const line of r.stdout.split('\n')) {
        const m = /^add \S+ ([0-9a-fA-F:.]+)(?:\/128)?,([0-9a-fA-F:.]+)(?:\/128)?$/.exec(line.trim());
        const src = m?.[1] === undefined ? undefined : canonicalIPv6(m[1]);
        const dst = m?.[2] === undefined ? undefined : canonicalIPv6(m[2]);
        if (src !== undefined && dst !== undefined) out.push({ src, dst });
      }
    } else {
      const bySet = new Map([...(await this.perUlidSets(true))].map(([ulid, set]) => [set, ulid]));
      const r = await this.ipset(['save']);
      for (const line of r.stdout.split('\n')) {
        const m = /^add (\S+) ([0-9a-fA-F:.]+)(?:\/128)?$/.exec(line.trim());
        const src = m?.[1] === undefined ? undefined : bySet.get(m[1]);
        const dst = m?.[2] === undefined ? undefined : canonicalIPv6(m[2]);
        if (src !== undefined && dst !== undefined) out.push({ src, dst });
      }
    }
    return out.sort((x, y) => (key(x) < key(y) ? -1 : key(x) > key(y) ? 1 : 0));
  }
}

function key(p: ShimmedPair): string {
  return `${p.src} ${p.dst}`;
}

function normalisePair(p: ShimmedPair): ShimmedPair {
  const src = canonicalIPv6(p.src);
  const dst = canonicalIPv6(p.dst);
  if (src === undefined) throw new RangeError(`not an IPv6 address: '${p.src}'`);
  if (dst === undefined) throw new RangeError(`not an IPv6 address: '${p.dst}'`);
  return { src, dst };
}

/**
 * A saved rule line in the form ruleLine() writes: ip6tables-save prints protocol 140 by its
 * name and addresses with their prefix length.
 */
function normaliseSaved(line: string): string {
  // ip6tables-save names protocol 140 and quotes every comment.
  return line.replace(/ -p shim6( |$)/, ` -p 140$1`).replace(/ --comment "([^" ]*)"/g, ' --comment $1');
}
