/**
 * shim6-config: the resolved values of the configuration file, for shell scripts (the init
 * script scripts/shim6, scripts/testbed, provisioning). Values are read with the daemons' own
 * loader, so defaults and derived paths (ipcSocket and the pid files from runDir) are exactly
 * what shim6d and reapd will use. Run by bin/shim6-config (built: dist/common/config-get.js).
 *
 *   shim6-config --config /etc/shim6/shim6.json get reapd.pidFile        # /run/shim6/reapd.pid
 *   shim6-config --config FILE get runDir ipcSocket shim6d.console.port  # one value per line
 *   shim6-config --config FILE dump                                      # everything, as JSON
 */
import { parseArgs } from 'node:util';
import { childKey, ConfigError } from './config-schema';
import { DEFAULT_CONFIG_PATH, loadShim6Config, shim6ConfigSchema, type Shim6Config } from './config';

/** Exit statuses. */
export const EXIT = { OK: 0, NOT_SET: 1, USAGE: 2 } as const;

export const HELP = `usage: shim6-config [--config FILE] [--json] get KEY [KEY...]
       shim6-config [--config FILE] dump
       shim6-config --help

Prints values of the Shim6 configuration file as shim6d and reapd resolve them: defaults
filled in, ipcSocket and the pid files derived from runDir (see common/README.md).

commands:
  get KEY...    one line per KEY, in order: strings as they are, numbers and booleans as
                text, arrays and objects as one line of JSON. KEY is a dotted path with
                array indices: runDir, ipcSocket, shim6d.pidFile, reapd.pidFile,
                shim6d.console.port, shim6d.console.addresses[0], shim6d.log.file ...
  dump          the whole resolved configuration, as JSON

options:
  --config FILE   configuration file (default ${DEFAULT_CONFIG_PATH})
  --json          print every value as JSON (strings quoted), one per line
  --help          this text

exit status:
  0 printed
  1 a KEY is a configuration key with no value in this file (an optional key left out,
    or an array index past the end), or a string value holds a newline (use --json);
    nothing is printed
  2 bad usage, a KEY that is not a configuration key, or an invalid configuration file
    (the message names the offending key, as the daemons' --check-config does)`;

/** One step of a key path: a property name or an array index. */
export type Segment = string | number;

const NAME = /^[A-Za-z_][A-Za-z0-9_]*/;
const INDEX = /^\[(0|[1-9][0-9]{0,8})\]/;

/** Parses `shim6d.contexts[0].locatorPair.local` into its segments; undefined if malformed. */
export function parseKey(key: string): Segment[] | undefined {
  const segments: Segment[] = [];
  let rest = key;
  for (;;) {
    const name = NAME.exec(rest);
    if (!name) return undefined;
    segments.push(name[0]);
    rest = rest.slice(name[0].length);
    let index: RegExpExecArray | null;
    while ((index = INDEX.exec(rest))) {
      segments.push(Number(index[1]));
      rest = rest.slice(index[0].length);
    }
    if (rest === '') return segments;
    if (!rest.startsWith('.')) return undefined;
    rest = rest.slice(1);
  }
}

/** The key text of segments, as ConfigError names keys. */
export function keyText(segments: readonly Segment[]): string {
  return segments.reduce<string>(childKey, '');
}

/**
 * A configuration that sets every optional key, so that probing a key inside it meets no
 * "missing" sibling. Keep it complete when the schema gains an optional key.
 */
function fullSample(): Record<string, unknown> {
  const log = { level: 'info', file: '/probe/log', stderr: true };
  return {
    runDir: '/probe',
    ipcSocket: '/probe/ipc.sock',
    shim6d: {
      pidFile: '/probe/shim6d.pid',
      identities: ['/probe/identity'],
      log,
      contexts: [
        {
          id: 1,
          localUlid: '2001:db8::1',
          peerUlid: '2001:db8::2',
          localContextTag: 1,
          peerContextTag: 2,
          localLocators: ['2001:db8::1'],
          peerLocators: ['2001:db8::2'],
          locatorPair: { local: '2001:db8::1', peer: '2001:db8::2' },
        },
      ],
    },
    reapd: { pidFile: '/probe/reapd.pid', log: { ...log } },
  };
}

const PROBE = Symbol('probe');

/**
 * True if `segments` names a key of the configuration schema (whether or not a given file
 * sets it). Asked of the schema itself: a value no schema accepts is put at that key (array
 * indices taken as 0) inside a file that sets every optional key, and the error must be a
 * type mismatch at exactly that key, not "unknown key" or a mismatch further up the path.
 */
export function isConfigKey(segments: readonly Segment[]): boolean {
  if (segments.length === 0) return false;
  const normal = segments.map((s) => (typeof s === 'number' ? 0 : s));
  const doc = fullSample();
  let node: Record<string | number, unknown> = doc;
  normal.forEach((seg, i) => {
    const next = normal[i + 1];
    if (next === undefined) {
      node[seg] = PROBE;
      return;
    }
    const existing = node[seg];
    const fits = typeof next === 'number' ? Array.isArray(existing) : typeof existing === 'object' && existing !== null && !Array.isArray(existing);
    if (!fits) node[seg] = typeof next === 'number' ? [] : {};
    node = node[seg] as Record<string | number, unknown>;
  });
  try {
    shim6ConfigSchema.parse(doc, '');
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return e.key === keyText(normal) && !e.detail.startsWith('unknown key');
  }
  return false;
}

export type Lookup = { found: true; value: unknown } | { found: false };

/** The value at `segments` in a resolved configuration. */
export function lookup(config: Shim6Config, segments: readonly Segment[]): Lookup {
  let value: unknown = config;
  for (const seg of segments) {
    if (typeof seg === 'number') {
      if (!Array.isArray(value) || seg >= value.length) return { found: false };
      value = value[seg];
    } else {
      if (typeof value !== 'object' || value === null || Array.isArray(value) || !Object.hasOwn(value, seg)) return { found: false };
      value = (value as Record<string, unknown>)[seg];
    }
  }
  return value === undefined ? { found: false } : { found: true, value };
}

/** A value as one line: strings bare (or JSON with `json`), everything else JSON. */
export function formatValue(value: unknown, json: boolean): string {
  if (typeof value === 'string' && !json) return value;
  return JSON.stringify(value);
}

interface Io {
  out(text: string): void;
  err(text: string): void;
}

export function main(argv: string[], io: Io = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) }): number {
  const usage = (message: string): number => {
    io.err(`shim6-config: ${message}\n${HELP.split('\n').slice(0, 3).join('\n')}\n`);
    return EXIT.USAGE;
  };
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { config: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: true,
    });
  } catch (e) {
    return usage(e instanceof Error ? e.message : String(e));
  }
  const { values: opts, positionals } = parsed;
  if (opts.help) {
    io.out(`${HELP}\n`);
    return EXIT.OK;
  }
  const [command, ...keys] = positionals;
  if (command === undefined) return usage('missing command (get or dump)');
  if (command !== 'get' && command !== 'dump') return usage(`unknown command '${command}' (get or dump)`);
  if (command === 'get' && keys.length === 0) return usage('get: missing KEY');
  if (command === 'dump' && keys.length > 0) return usage(`dump takes no KEY ('${keys[0] ?? ''}')`);
  const paths: Segment[][] = [];
  for (const key of keys) {
    const segments = parseKey(key);
    if (segments === undefined || !isConfigKey(segments)) return usage(`'${key}' is not a configuration key (see common/README.md)`);
    paths.push(segments);
  }

  let config: Shim6Config;
  try {
    config = loadShim6Config(opts.config ?? DEFAULT_CONFIG_PATH);
  } catch (e) {
    if (e instanceof ConfigError) {
      io.err(`shim6-config: ${e.message}\n`);
      return EXIT.USAGE;
    }
    throw e;
  }
  if (command === 'dump') {
    io.out(`${JSON.stringify(config, null, 2)}\n`);
    return EXIT.OK;
  }
  const lines: string[] = [];
  for (const [i, segments] of paths.entries()) {
    const key = keys[i] ?? '';
    const r = lookup(config, segments);
    if (!r.found) {
      io.err(`shim6-config: config key '${key}': not set\n`);
      return EXIT.NOT_SET;
    }
    const line = formatValue(r.value, opts.json === true);
    if (line.includes('\n')) {
      io.err(`shim6-config: config key '${key}': the value holds a newline; use --json\n`);
      return EXIT.NOT_SET;
    }
    lines.push(line);
  }
  io.out(`${lines.join('\n')}\n`);
  return EXIT.OK;
}

/** Runs main() with this process's arguments and exits with its status. */
export function run(): void {
  let status: number;
  try {
    status = main(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`shim6-config: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    status = 1;
  }
  process.exitCode = status;
}

if (require.main === module) run();
