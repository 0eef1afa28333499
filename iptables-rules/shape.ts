/**
 * The shape of shim6d's netfilter rules, as pure functions of a configuration: chain, set and
 * queue names come from the config, so one instance per network namespace (or several
 * differently named ones) can coexist. Nothing here runs a command.
 */
import { createHash } from 'node:crypto';
import { canonicalIPv6 } from '../protocol/address';

/**
 * How outbound packets of shimmed ULID pairs are matched:
 * - 'pair-set': one ipset of type hash:net,net (family inet6, /128 entries) holding (src, dst)
 *   ULID pairs and one rule `-m set --match-set SET src,dst`: constant rule count.
 * - 'per-ulid': for kernels without hash:net,net (CONFIG_IP_SET_HASH_NETNET unset), one ipset of
 *   type hash:ip per local ULID, holding the peer ULIDs, and one rule per local ULID
 *   `-s ULID/128 -m set --match-set SET dst`: the rule count follows the host's own ULIDs (a
 *   handful), never the number of contexts.
 * - 'auto': 'pair-set' when the kernel has hash:net,net, else 'per-ulid'.
 */
export type PairMatch = 'pair-set' | 'per-ulid';

export interface Commands {
  ip6tables: string;
  ip6tablesRestore: string;
  ip6tablesSave: string;
  ipset: string;
  ip: string;
}

export interface RulesConfig {
  /** Chain in table mangle, jumped to from OUTPUT: queues shimmed pairs (default SHIM6-OUT). */
  outChain: string;
  /** Chain in table raw, jumped to from PREROUTING: queues protocol 140 (default SHIM6-IN). */
  inChain: string;
  /** The pair set's name, and the prefix of every other set of this instance (default shim6-pairs). */
  pairSet: string;
  /** NFQUEUE number of outbound packets to shim (default 141). */
  outQueue: number;
  /** NFQUEUE number of inbound Shim6 packets, protocol 140 (default 140). */
  inQueue: number;
  pairMatch: PairMatch | 'auto';
  /** maxelem of each set (default 65536). */
  maxPairs: number;
  /** Run every command inside this network namespace (`ip netns exec NAME ...`); tests use it. */
  netns?: string;
  /** Argv prepended to every command, outside the netns one (tests: ['setpriv', '--reuid=nobody', ...]). */
  prefix?: readonly string[];
  commands: Commands;
  /** Seconds ip6tables waits for the xtables lock (-w). */
  lockWaitSeconds: number;
  /** Kill a command that runs longer than this. */
  commandTimeoutMs: number;
}

export const DEFAULT_RULES_CONFIG: Readonly<RulesConfig> = Object.freeze({
  outChain: 'SHIM6-OUT',
  inChain: 'SHIM6-IN',
  pairSet: 'shim6-pairs',
  outQueue: 141,
  inQueue: 140,
  pairMatch: 'auto',
  maxPairs: 65536,
  commands: Object.freeze({
    ip6tables: 'ip6tables',
    ip6tablesRestore: 'ip6tables-restore',
    ip6tablesSave: 'ip6tables-save',
    ipset: 'ipset',
    ip: 'ip',
  }),
  lockWaitSeconds: 10,
  commandTimeoutMs: 60_000,
});

/** IPv6 protocol number of Shim6 (RFC 5533). */
export const SHIM6_PROTOCOL = 140;

const CHAIN_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,27}$/; // xtables: 28 characters
// ipset names are at most 31 characters; "-" and 8 hex digits are appended for per-ULID sets.
const SET_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,21}$/;
const NETNS_RE = /^[A-Za-z0-9_.-]{1,255}$/;
const BUILTIN_CHAINS = new Set(['INPUT', 'OUTPUT', 'FORWARD', 'PREROUTING', 'POSTROUTING']);

/** Fills in defaults and validates; throws RangeError naming the bad field. */
export function resolveConfig(partial: Partial<RulesConfig> = {}): RulesConfig {
  const c: RulesConfig = {
    ...DEFAULT_RULES_CONFIG,
    ...partial,
    commands: { ...DEFAULT_RULES_CONFIG.commands, ...partial.commands },
  };
  for (const [k, v] of [['outChain', c.outChain], ['inChain', c.inChain]] as const) {
    if (!CHAIN_RE.test(v) || BUILTIN_CHAINS.has(v)) throw new RangeError(`${k}: '${v}' is not a usable chain name (1-28 of A-Z a-z 0-9 _ -, not a built-in chain)`);
  }
  if (c.outChain === c.inChain) throw new RangeError(`outChain and inChain must differ (both '${c.outChain}')`);
  if (!SET_RE.test(c.pairSet)) throw new RangeError(`pairSet: '${c.pairSet}' is not a usable set name (1-22 of A-Z a-z 0-9 _ . -)`);
  for (const [k, v] of [['outQueue', c.outQueue], ['inQueue', c.inQueue]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 65535) throw new RangeError(`${k}: ${v} is not a queue number (0-65535)`);
  }
  if (!Number.isInteger(c.maxPairs) || c.maxPairs < 1 || c.maxPairs > 2 ** 31) throw new RangeError(`maxPairs: ${c.maxPairs} is out of range`);
  if (c.pairMatch !== 'auto' && c.pairMatch !== 'pair-set' && c.pairMatch !== 'per-ulid') throw new RangeError(`pairMatch: '${String(c.pairMatch)}'`);
  if (c.netns !== undefined && !NETNS_RE.test(c.netns)) throw new RangeError(`netns: '${c.netns}' is not a namespace name`);
  if (!Number.isInteger(c.lockWaitSeconds) || c.lockWaitSeconds < 1) throw new RangeError(`lockWaitSeconds: ${c.lockWaitSeconds}`);
  return c;
}

export type Table = 'mangle' | 'raw';

/** One rule: `-A chain ...args` in table. */
export interface RuleSpec {
  table: Table;
  chain: string;
  args: string[];
}

function queue(n: number): string[] {
  return ['-j', 'NFQUEUE', '--queue-num', String(n), '--queue-bypass'];
}

/** Comment of the rule that keeps conntrack and reassembly on (see chainRules). */
export const DEFRAG_COMMENT = 'shim6:reassemble-before-SHIM6-IN';

/** The jumps from the built-in chains into ours (each must exist exactly once). */
export function hookRules(c: RulesConfig): RuleSpec[] {
  return [
    { table: 'mangle', chain: 'OUTPUT', args: ['-j', c.outChain] },
    { table: 'raw', chain: 'PREROUTING', args: ['-j', c.inChain] },
  ];
}

/** The fixed rules inside our chains, in order. */
export function chainRules(c: RulesConfig, match: PairMatch): RuleSpec[] {
  const out: RuleSpec[] = [
    // What shim6d sends itself (control messages, probes, already shimmed packets) is never queued again.
    { table: 'mangle', chain: c.outChain, args: ['-p', String(SHIM6_PROTOCOL), '-j', 'RETURN'] },
  ];
  if (match === 'pair-set') out.push({ table: 'mangle', chain: c.outChain, args: ['-m', 'set', '--match-set', c.pairSet, 'src,dst', ...queue(c.outQueue)] });
  return [
    ...out,
    { table: 'raw', chain: c.inChain, args: ['-p', String(SHIM6_PROTOCOL), ...queue(c.inQueue)] },
    // A no-op (RETURN at the end of the chain) whose conntrack match turns conntrack, and with
    // it IPv6 reassembly (nf_defrag_ipv6, PREROUTING priority -400), on in this namespace: a
    // shimmed packet the sender's kernel fragmented after mangle OUTPUT then reaches SHIM6-IN
    // (priority -300) whole, so its payload header is found; and conntrack sees the flows on
    // their ULIDs (after the deshim) for the heuristic.
    { table: 'raw', chain: c.inChain, args: ['-m', 'conntrack', '--ctstate', 'UNTRACKED', '-m', 'comment', '--comment', DEFRAG_COMMENT, '-j', 'RETURN'] },
  ];
}

/** Name of the per-ULID set of local ULID `ulid` (canonical text). */
export function perUlidSetName(c: RulesConfig, ulid: string): string {
  return `${c.pairSet}-${createHash('sha256').update(ulid).digest('hex').slice(0, 8)}`;
}

/** Name of the set created for a moment to probe kernel support of hash:net,net. */
export function probeSetName(c: RulesConfig): string {
  return `${c.pairSet}-probe`;
}

/** True if `name` is one of this instance's sets (the pair set or one named pairSet-*). */
export function ownsSet(c: RulesConfig, name: string): boolean {
  return name === c.pairSet || name.startsWith(`${c.pairSet}-`);
}

/** The rule of a per-ULID set. */
export function perUlidRule(c: RulesConfig, ulid: string, set: string): RuleSpec {
  return { table: 'mangle', chain: c.outChain, args: ['-s', `${ulid}/128`, '-m', 'set', '--match-set', set, 'dst', ...queue(c.outQueue)] };
}

/** One line of an ip6tables-restore body (tokens never need quoting: they are validated names, numbers and addresses). */
export function ruleLine(op: '-A' | '-I' | '-D', r: RuleSpec, position?: number): string {
  return [op, r.chain, ...(position === undefined ? [] : [String(position)]), ...r.args].join(' ');
}

/** An ip6tables-restore input: each table's lines between `*table` and COMMIT. */
export function restoreInput(byTable: ReadonlyMap<Table | string, readonly string[]>): string {
  let s = '';
  for (const [table, lines] of byTable) {
    if (lines.length === 0) continue;
    s += `*${table}\n${lines.join('\n')}\nCOMMIT\n`;
  }
  return s;
}

/** ip6tables-save output, per table: declared chains and rule lines (without counters). */
export interface SavedRules {
  tables: Map<string, { chains: Set<string>; rules: string[] }>;
}

export function parseSave(text: string): SavedRules {
  const tables = new Map<string, { chains: Set<string>; rules: string[] }>();
  let current: { chains: Set<string>; rules: string[] } | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/^\[\d+:\d+\] /, '');
    if (line.startsWith('*')) {
      current = { chains: new Set(), rules: [] };
      tables.set(line.slice(1).trim(), current);
    } else if (!current) {
      continue;
    } else if (line.startsWith(':')) {
      current.chains.add(line.slice(1).split(' ')[0] ?? '');
    } else if (line.startsWith('-A ')) {
      current.rules.push(line.trim());
    }
  }
  return { tables };
}

/** The chain a saved rule line is in, and its jump target (if any). */
export function ruleParts(line: string): { chain: string; target: string | undefined } {
  const words = line.split(' ');
  const j = words.indexOf('-j');
  return { chain: words[1] ?? '', target: j >= 0 ? words[j + 1] : undefined };
}

/** Per-ULID rules found in saved lines of the out chain: local ULID (canonical) -> set name. */
export function perUlidRulesOf(c: RulesConfig, saved: SavedRules): Map<string, string> {
  const map = new Map<string, string>();
  const re = new RegExp(`^-A ${escapeRe(c.outChain)} -s (\\S+)/128 -m set --match-set (\\S+) dst -j NFQUEUE`);
  for (const line of saved.tables.get('mangle')?.rules ?? []) {
    const m = re.exec(line);
    const ulid = m?.[1] === undefined ? undefined : canonicalIPv6(m[1]);
    if (ulid !== undefined && m?.[2] !== undefined) map.set(ulid, m[2]);
  }
  return map;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&');
}
