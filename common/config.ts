/**
 * The configuration file of shim6d and reapd: one JSON file for both daemons, by default
 * /etc/shim6/shim6.json (the init script passes it with `--config`). Every key is optional;
 * `{}` is a working configuration. The reference of every key is in common/README.md.
 *
 *   const config = loadShim6Config(args.config ?? DEFAULT_CONFIG_PATH);   // throws ConfigError
 *   config.shim6d.console.port   // 19384
 *   config.ipcSocket             // '/run/shim6/ipc.sock' (derived from runDir)
 */
import { posix } from 'node:path';
import { DEFAULT_RULES_CONFIG as RULES, resolveConfig } from '../iptables-rules/shape';
import { DEFAULT_TIMERS } from '../shim6d/context-machine';
import { DEFAULT_REAP_TIMERS } from '../reapd/reap-timers';
import { MAX_CONTEXT_TAG } from '../protocol/constants';
import { LOG_LEVELS } from './logger';
import {
  absolutePath,
  arrayOf,
  bool,
  ConfigError,
  childKey,
  int,
  ipv4,
  ipv6,
  loadConfigFile,
  MAX_CONFIG_BYTES,
  object,
  oneOf,
  optional,
  parseJsonConfig,
  str,
  transform,
  union,
  withDefault,
  type Infer,
} from './config-schema';

/** Where the daemons look for the configuration file when no `--config` is given. */
export const DEFAULT_CONFIG_PATH = '/etc/shim6/shim6.json';

/** Default directory of the runtime files (PID files, IPC socket). */
export const DEFAULT_RUN_DIR = '/run/shim6';

/** Configuration files larger than this are refused (loadConfigFile's default bound). */
export const MAX_CONFIG_FILE_BYTES = MAX_CONFIG_BYTES;

export { MAX_CONTEXT_TAG };

/** Longest Unix socket path: sun_path is 108 bytes including the terminating NUL. */
const MAX_UNIX_SOCKET_PATH_BYTES = 107;

const logSchema = object({
  level: withDefault(oneOf(LOG_LEVELS), 'info'),
  file: optional(absolutePath()),
  stderr: withDefault(bool(), true),
});

const consoleSchema = object(
  {
    enabled: withDefault(bool(), true),
    port: withDefault(int({ min: 1, max: 65535 }), 19384),
    addresses: withDefault(arrayOf(union(ipv4(), ipv6()), { min: 1, max: 4 }), ['127.0.0.1', '::1']),
  },
  {
    check(c, key) {
      duplicates(c.addresses, childKey(key, 'addresses'), 'addresses');
    },
  },
);

const NETFILTER_FIELDS = ['outChain', 'inChain', 'pairSet', 'outQueue', 'inQueue', 'pairMatch', 'maxPairs'] as const;

const netfilterSchema = object(
  {
    outChain: withDefault(str({ minLength: 1 }), RULES.outChain),
    inChain: withDefault(str({ minLength: 1 }), RULES.inChain),
    pairSet: withDefault(str({ minLength: 1 }), RULES.pairSet),
    outQueue: withDefault(int({ min: 0, max: 65535 }), RULES.outQueue),
    inQueue: withDefault(int({ min: 0, max: 65535 }), RULES.inQueue),
    pairMatch: withDefault(oneOf(['auto', 'pair-set', 'per-ulid'] as const), RULES.pairMatch),
    maxPairs: withDefault(int({ min: 1, max: 2 ** 31 }), RULES.maxPairs),
  },
  {
    check(n, key) {
      try {
        resolveConfig({ ...n });
      } catch (err) {
        if (!(err instanceof RangeError)) throw err;
        // resolveConfig's messages begin with the field name ("pairSet: ..." or "outChain and inChain ...").
        const field = NETFILTER_FIELDS.find((f) => err.message.startsWith(`${f}:`) || err.message.startsWith(`${f} `));
        const detail = field !== undefined && err.message.startsWith(`${field}:`) ? err.message.slice(field.length + 1).trim() : err.message;
        throw new ConfigError(field === undefined ? key : childKey(key, field), detail);
      }
      if (n.outQueue === n.inQueue) throw new ConfigError(childKey(key, 'inQueue'), `must differ from outQueue (both ${n.inQueue})`);
    },
  },
);

const dataPlaneSchema = object({
  pathMtu: withDefault(union(oneOf(['auto'] as const), int({ min: 1280, max: 65535 })), 'auto'),
  ptbPerSecond: withDefault(int({ min: 0, max: 10000 }), 10),
  queueBufferBytes: withDefault(int({ min: 65536, max: 268435456 }), 8388608),
});

const contextTag = int({ min: 0, max: MAX_CONTEXT_TAG });

const staticContextSchema = transform(
  object(
    {
      id: optional(int({ min: 1, max: 2 ** 31 - 1 })),
      localUlid: ipv6(),
      peerUlid: ipv6(),
      localContextTag: contextTag,
      peerContextTag: contextTag,
      localLocators: optional(arrayOf(ipv6(), { min: 1 })),
      peerLocators: optional(arrayOf(ipv6(), { min: 1 })),
      locatorPair: optional(object({ local: ipv6(), peer: ipv6() })),
    },
    {
      check(c, key) {
        const local = c.localLocators ?? [c.localUlid];
        const peer = c.peerLocators ?? [c.peerUlid];
        if (c.localLocators) duplicates(c.localLocators, childKey(key, 'localLocators'), 'localLocators');
        if (c.peerLocators) duplicates(c.peerLocators, childKey(key, 'peerLocators'), 'peerLocators');
        if (c.locatorPair && !local.includes(c.locatorPair.local)) {
          throw new ConfigError(childKey(childKey(key, 'locatorPair'), 'local'), `${c.locatorPair.local} is not in localLocators (${local.join(', ')})`);
        }
        if (c.locatorPair && !peer.includes(c.locatorPair.peer)) {
          throw new ConfigError(childKey(childKey(key, 'locatorPair'), 'peer'), `${c.locatorPair.peer} is not in peerLocators (${peer.join(', ')})`);
        }
      },
    },
  ),
  (c) => {
    const localLocators = c.localLocators ?? [c.localUlid];
    const peerLocators = c.peerLocators ?? [c.peerUlid];
    return {
      ...c,
      localLocators,
      peerLocators,
      /** Absent: the ULIDs themselves when they are in the locator lists, else the first locators. */
      locatorPair: c.locatorPair ?? {
        local: localLocators.includes(c.localUlid) ? c.localUlid : (localLocators[0] ?? c.localUlid),
        peer: peerLocators.includes(c.peerUlid) ? c.peerUlid : (peerLocators[0] ?? c.peerUlid),
      },
    };
  },
);

/** One manually keyed context of `shim6d.contexts`, with locator lists and pair filled in. */
export type StaticContextConfig = Infer<typeof staticContextSchema>;

/** Throws a ConfigError at the second occurrence of a value in `values` (at `key`). */
function duplicates(values: readonly string[], key: string, name: string): void {
  const first = new Map<string, number>();
  values.forEach((v, i) => {
    const j = first.get(v);
    if (j !== undefined) throw new ConfigError(childKey(key, i), `duplicate of ${name}[${j}] (${v})`);
    first.set(v, i);
  });
}

/** The context exchange's timers (RFC 5533 section 16); milliseconds. */
const T = DEFAULT_TIMERS;
const controlSchema = object({
  i1TimeoutMs: withDefault(int({ min: 100, max: 600_000 }), T.i1TimeoutMs),
  i1Retries: withDefault(int({ min: 0, max: 20 }), T.i1Retries),
  i2TimeoutMs: withDefault(int({ min: 100, max: 600_000 }), T.i2TimeoutMs),
  i2Retries: withDefault(int({ min: 0, max: 20 }), T.i2Retries),
  noR1HoldDownMs: withDefault(int({ min: 0, max: 86_400_000 }), T.noR1HoldDownMs),
  icmpHoldDownMs: withDefault(int({ min: 0, max: 86_400_000 }), T.icmpHoldDownMs),
  updateTimeoutMs: withDefault(int({ min: 100, max: 600_000 }), T.updateTimeoutMs),
  maxUpdateTimeoutMs: withDefault(int({ min: 100, max: 3_600_000 }), T.maxUpdateTimeoutMs),
  validatorRotationMs: withDefault(int({ min: 1000, max: 3_600_000 }), T.validatorRotationMs),
  idleTeardownMs: withDefault(int({ min: 1000, max: 86_400_000 }), T.idleTeardownMs),
  errorsPerSecond: withDefault(int({ min: 0, max: 10_000 }), T.errorsPerSecond),
});

/** When a ULID pair deserves a context (shim6d/heuristic.ts). */
const heuristicSchema = object({
  enabled: withDefault(bool(), true),
  /** Packets of the pair's flows, both directions, from conntrack. */
  packets: withDefault(int({ min: 1, max: 1_000_000_000 }), 50),
  /** Or active this long; 0: only the packet count counts. */
  activeSeconds: withDefault(int({ min: 0, max: 86_400 }), 10),
  /** How often conntrack's counters are read. */
  pollMs: withDefault(int({ min: 100, max: 60_000 }), 1000),
});

/** shim6d's link to reapd (shim6d/reap-link.ts). */
const reapLinkSchema = object({
  /** false: no IPC with reapd, no failure detection; contexts stay on the pair they have. */
  enabled: withDefault(bool(), true),
  /** How often context changes and traffic counters go to reapd. */
  intervalMs: withDefault(int({ min: 100, max: 60_000 }), 500),
});

const shim6dSchema = object(
  {
    pidFile: optional(absolutePath()),
    /** Directories written by `shim6-cga generate`: this host's HBA sets and CGAs. */
    identities: withDefault(arrayOf(absolutePath(), { max: 64 }), []),
    control: withDefault(controlSchema, controlSchema.parse({}, 'shim6d.control')),
    heuristic: withDefault(heuristicSchema, heuristicSchema.parse({}, 'shim6d.heuristic')),
    reap: withDefault(reapLinkSchema, reapLinkSchema.parse({}, 'shim6d.reap')),
    log: withDefault(logSchema, logSchema.parse({}, 'shim6d.log')),
    console: withDefault(consoleSchema, consoleSchema.parse({}, 'shim6d.console')),
    netfilter: withDefault(netfilterSchema, netfilterSchema.parse({}, 'shim6d.netfilter')),
    dataPlane: withDefault(dataPlaneSchema, dataPlaneSchema.parse({}, 'shim6d.dataPlane')),
    contexts: withDefault(arrayOf(staticContextSchema), []),
  },
  {
    check(d, key) {
      const ids = new Map<number, number>();
      const tags = new Map<number, number>();
      const pairs = new Map<string, number>();
      d.contexts.forEach((c, i) => {
        const at = (field: string): string => childKey(childKey(childKey(key, 'contexts'), i), field);
        if (c.id !== undefined) {
          const j = ids.get(c.id);
          if (j !== undefined) throw new ConfigError(at('id'), `duplicate of contexts[${j}].id (${c.id})`);
          ids.set(c.id, i);
        }
        const t = tags.get(c.localContextTag);
        if (t !== undefined) throw new ConfigError(at('localContextTag'), `duplicate of contexts[${t}].localContextTag (${c.localContextTag})`);
        tags.set(c.localContextTag, i);
        const pair = `${c.localUlid} ${c.peerUlid}`;
        const p = pairs.get(pair);
        if (p !== undefined) throw new ConfigError(at('peerUlid'), `contexts[${p}] already has the ULID pair (${c.localUlid}, ${c.peerUlid})`);
        pairs.set(pair, i);
      });
    },
  },
);

/** REAP's timers (RFC 5534 section 6; reapd/reap-timers.ts); milliseconds except the Keepalive Timeout. */
const R = DEFAULT_REAP_TIMERS;
const reapTimersSchema = object(
  {
    /** Seconds: announced to peers (Keepalive Timeout option); a peer that hears nothing for this long explores. */
    keepaliveTimeout: withDefault(int({ min: 1, max: 65535 }), R.keepaliveTimeout),
    sendTimeoutMs: withDefault(int({ min: 100, max: 3_600_000 }), R.sendTimeout * 1000),
    /** Unset: a third of the peer's Keepalive Timeout. */
    keepaliveIntervalMs: optional(int({ min: 100, max: 3_600_000 })),
    initialProbes: withDefault(int({ min: 1, max: 100 }), R.initialProbes),
    initialProbeIntervalMs: withDefault(int({ min: 10, max: 60_000 }), R.initialProbeInterval * 1000),
    maxProbeIntervalMs: withDefault(int({ min: 10, max: 3_600_000 }), R.maxProbeInterval * 1000),
    ulidRetryIntervalMs: withDefault(int({ min: 100, max: 3_600_000 }), R.ulidRetryInterval * 1000),
    historyLength: withDefault(int({ min: 1, max: 32 }), R.historyLength),
  },
  {
    check(t, key) {
      if (t.sendTimeoutMs < t.keepaliveTimeout * 1000) throw new ConfigError(childKey(key, 'sendTimeoutMs'), `must not be shorter than keepaliveTimeout (${t.keepaliveTimeout} s): a quiet peer would look dead`);
      if (t.maxProbeIntervalMs < t.initialProbeIntervalMs) throw new ConfigError(childKey(key, 'maxProbeIntervalMs'), `must not be shorter than initialProbeIntervalMs (${t.initialProbeIntervalMs})`);
    },
  },
);

const reapdSchema = object({
  pidFile: optional(absolutePath()),
  log: withDefault(logSchema, logSchema.parse({}, 'reapd.log')),
  timers: withDefault(reapTimersSchema, reapTimersSchema.parse({}, 'reapd.timers')),
});

const rootSchema = object({
  runDir: withDefault(absolutePath(), DEFAULT_RUN_DIR),
  ipcSocket: optional(absolutePath()),
  shim6d: withDefault(shim6dSchema, shim6dSchema.parse({}, 'shim6d')),
  reapd: withDefault(reapdSchema, reapdSchema.parse({}, 'reapd')),
});

/** The schema of the configuration file; parses to a Shim6Config with every path filled in. */
export const shim6ConfigSchema = transform(rootSchema, (raw, key) => {
  const { runDir } = raw;
  const { pidFile: shim6dPidFile, ...shim6d } = raw.shim6d;
  const { pidFile: reapdPidFile, ...reapd } = raw.reapd;
  const config = {
    runDir,
    ipcSocket: raw.ipcSocket ?? posix.join(runDir, 'ipc.sock'),
    shim6d: { pidFile: shim6dPidFile ?? posix.join(runDir, 'shim6d.pid'), ...shim6d },
    reapd: { pidFile: reapdPidFile ?? posix.join(runDir, 'reapd.pid'), ...reapd },
  };
  if (Buffer.byteLength(config.ipcSocket) > MAX_UNIX_SOCKET_PATH_BYTES) {
    const culprit = raw.ipcSocket === undefined ? 'runDir' : 'ipcSocket';
    throw new ConfigError(childKey(key, culprit), `the IPC socket path ${config.ipcSocket} is longer than ${MAX_UNIX_SOCKET_PATH_BYTES} bytes (the Unix socket limit)`);
  }
  const files: [string, string][] = [
    ['ipcSocket', config.ipcSocket],
    ['shim6d.pidFile', config.shim6d.pidFile],
    ['reapd.pidFile', config.reapd.pidFile],
  ];
  for (let i = 1; i < files.length; i++) {
    for (let j = 0; j < i; j++) {
      const [name, path] = files[i] ?? ['', ''];
      const [other, otherPath] = files[j] ?? ['', ''];
      if (path === otherPath) throw new ConfigError(childKey(key, name), `is the same file as ${other} (${path})`);
    }
  }
  return config;
});

/** The parsed configuration: every key present, defaults and derived paths filled in. */
export type Shim6Config = Infer<typeof shim6ConfigSchema>;
export type LogConfig = Shim6Config['shim6d']['log'];
export type ConsoleConfig = Shim6Config['shim6d']['console'];
export type NetfilterConfig = Shim6Config['shim6d']['netfilter'];
export type DataPlaneConfig = Shim6Config['shim6d']['dataPlane'];

/** Parses configuration text (`source` names it in errors); throws ConfigError. */
export function parseShim6Config(text: string, source: string): Shim6Config {
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_CONFIG_FILE_BYTES) throw new ConfigError('', `${source}: larger than ${MAX_CONFIG_FILE_BYTES} bytes (${bytes})`, source);
  return parseJsonConfig(text, shim6ConfigSchema, source);
}

/** Reads and parses a configuration file (default DEFAULT_CONFIG_PATH); throws ConfigError. */
export function loadShim6Config(path: string = DEFAULT_CONFIG_PATH): Shim6Config {
  return loadConfigFile(path, shim6ConfigSchema);
}

/** The configuration `{}` parses to: every default. */
export function defaultShim6Config(): Shim6Config {
  return shim6ConfigSchema.parse({}, '');
}
