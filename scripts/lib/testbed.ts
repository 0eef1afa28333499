/**
 * The two-host testbed (scripts/testbed) for tests, benchmarks and the demo.
 *
 *   const tb = await Testbed.create();          // unique ID per call
 *   after(() => tb.destroy());
 *   const [a1, a2] = tb.a.locators;
 *   const echo = await tb.udpServer('b', tb.b.locators, { echo: true });
 *   assert(await tb.udpRoundTrip('a', a1, tb.b.locators[0], echo.port));
 *   await tb.cut(1, 'both'); ... await tb.restore(1);
 *
 *   const hb = await Testbed.create({ hba: true });   // HBA ULIDs and a daemon config per host
 *   await hb.startDaemons('all');                     // scripts/shim6 start in A and B
 *   hb.a.hba?.ulid; hb.a.config; hb.a.runDir           // destroy() stops them, removes the files
 *
 * Model (scripts/TESTBED.md): a packet leaves its host on the path of its source locator (x1 ->
 * path 1 via R1, x2 -> path 2 via R2) and that path's router delivers it whatever the destination
 * locator; so a_i -> b_j crosses R_i and the reply b_j -> a_i crosses R_j.
 *
 * Every command runs with an argument array (no shell). Processes started with spawn() and the
 * UDP helpers are killed by destroy(); a testbed a crashed test forgot is destroyed when the
 * process exits.
 */
import { execFileSync, spawn as spawnChild, type ChildProcess, type SpawnOptions } from 'node:child_process';
import * as path from 'node:path';
import { waitFor, type WaitOptions } from './wait';

export type Host = 'a' | 'b' | 'r1' | 'r2';
export type PathId = 1 | 2;
export type Direction = 'both' | 'a-to-b' | 'b-to-a';

export interface HostInfo {
  namespace: string;
  /** [x1 (path 1), x2 (path 2)] */
  locators: string[];
  /** [interface on path 1, interface on path 2] */
  interfaces: string[];
  /** With `create({ hba: true })`: the host's HBA set (its addresses are on the interfaces). */
  hba?: HbaInfo;
  /** With `create({ hba: true })`: the daemons' configuration file (SHIM6_CONFIG) of this host. */
  config?: string;
  /** With `create({ hba: true })`: the daemons' runDir (pid files, IPC socket, their output). */
  runDir?: string;
}

/** An HBA set made by `scripts/testbed create --hba` (bin/shim6-cga generate). */
export interface HbaInfo {
  /** The host's ULID: the set's address on path 1. */
  ulid: string;
  /** [address in the path-1 prefix, address in the path-2 prefix] */
  locators: string[];
  /** The directory shim6-cga wrote (shim6d.identities). */
  identity: string;
}

/** A host that runs daemons, or both. */
export type DaemonHost = 'a' | 'b' | 'all';

export interface RouterInfo {
  namespace: string;
  /** [address on host A's link, address on host B's link] */
  addresses: string[];
  /** [interface toward A, interface toward B] */
  interfaces: string[];
}

export interface TestbedStatus {
  complete: boolean;
  /** Hosts whose namespace is missing. */
  missing: Host[];
  /** Directions cut, per path. */
  cut: Record<PathId, Array<'a-to-b' | 'b-to-a'>>;
}

export interface ExecResult {
  /** Exit status (null when killed by a signal). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** Written to the command's stdin (then closed). */
  input?: string;
  /** Kill the command (SIGKILL) after this long; default 30 s. */
  timeoutMs?: number;
  /** Throw CommandError on a non-zero exit (default true). */
  check?: boolean;
}

export class CommandError extends Error {
  override readonly name = 'CommandError';
  constructor(
    readonly argv: readonly string[],
    readonly result: ExecResult,
  ) {
    const how = result.code === null ? `signal ${result.signal ?? '?'}` : `exit ${result.code}`;
    super(`${argv.join(' ')}: ${how}${result.stderr.trim() ? `: ${result.stderr.trim()}` : ''}`);
  }
}

/** The testbed tool, scripts/testbed. */
export const TESTBED_SCRIPT = path.resolve(__dirname, '..', 'testbed');

/** Runs argv (no shell) and collects its output. */
export function run(argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  const [cmd, ...args] = argv;
  if (cmd === undefined) return Promise.reject(new RangeError('run: empty argv'));
  return new Promise((resolve, reject) => {
    const child = spawnChild(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const result: ExecResult = { code, signal, stdout, stderr };
      if ((options.check ?? true) && code !== 0) reject(new CommandError(argv, result));
      else resolve(result);
    });
    child.stdin.on('error', () => undefined); // the command may exit without reading its input
    child.stdin.end(options.input ?? '');
  });
}

// ---------------------------------------------------------------------------------------------
// Parsing the tool's JSON without trusting it.

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function isObject(v: Json | undefined): v is { [key: string]: Json } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
function strings(v: Json | undefined, what: string): string[] {
  if (!Array.isArray(v) || !v.every((x): x is string => typeof x === 'string')) throw new TypeError(`testbed: ${what} is not a list of strings`);
  return v;
}
function str(v: Json | undefined, what: string): string {
  if (typeof v !== 'string') throw new TypeError(`testbed: ${what} is not a string`);
  return v;
}
function obj(v: Json | undefined, what: string): { [key: string]: Json } {
  if (!isObject(v)) throw new TypeError(`testbed: ${what} is not an object`);
  return v;
}

interface Description {
  id: string;
  /** The directory of a --hba testbed's files. */
  files?: string;
  namespaces: Record<Host, string>;
  a: HostInfo;
  b: HostInfo;
  r1: RouterInfo;
  r2: RouterInfo;
}

function parseDescription(text: string): { description: Description; doc: { [key: string]: Json } } {
  const doc = obj(JSON.parse(text) as Json, 'the output of scripts/testbed');
  const ns = obj(doc['namespaces'], 'namespaces');
  const namespaces: Record<Host, string> = {
    a: str(ns['a'], 'namespaces.a'),
    b: str(ns['b'], 'namespaces.b'),
    r1: str(ns['r1'], 'namespaces.r1'),
    r2: str(ns['r2'], 'namespaces.r2'),
  };
  const host = (h: 'a' | 'b'): HostInfo => {
    const o = obj(doc[h], h);
    const info: HostInfo = { namespace: namespaces[h], locators: strings(o['locators'], `${h}.locators`), interfaces: strings(o['interfaces'], `${h}.interfaces`) };
    if (o['hba'] !== undefined) {
      const hba = obj(o['hba'], `${h}.hba`);
      info.hba = { ulid: str(hba['ulid'], `${h}.hba.ulid`), locators: strings(hba['locators'], `${h}.hba.locators`), identity: str(hba['identity'], `${h}.hba.identity`) };
    }
    if (o['config'] !== undefined) info.config = str(o['config'], `${h}.config`);
    if (o['runDir'] !== undefined) info.runDir = str(o['runDir'], `${h}.runDir`);
    return info;
  };
  const router = (h: 'r1' | 'r2'): RouterInfo => {
    const o = obj(doc[h], h);
    return { namespace: namespaces[h], addresses: strings(o['addresses'], `${h}.addresses`), interfaces: strings(o['interfaces'], `${h}.interfaces`) };
  };
  const description: Description = { id: str(doc['id'], 'id'), namespaces, a: host('a'), b: host('b'), r1: router('r1'), r2: router('r2') };
  if (doc['files'] !== undefined) description.files = str(doc['files'], 'files');
  return { description, doc };
}

// ---------------------------------------------------------------------------------------------
// UDP helpers: small Node programs run inside a namespace.

/** A datagram a UdpServer received. */
export interface Datagram {
  from: string;
  fromPort: number;
  /** The local address of the socket that received it. */
  to: string;
  data: string;
}

// Binds one socket per address (all on the same port, the first one's if port is 0), so that a
// reply leaves from the very address the request was sent to. Prints {"ready":port}, then one
// JSON line per datagram; echoes it back if asked. Exits when its stdin closes.
const UDP_SERVER = `
const dgram = require('node:dgram');
const [portArg, echo, ...addrs] = process.argv.slice(1);
let port = Number(portArg);
(async () => {
  for (const a of addrs) {
    const s = dgram.createSocket({ type: 'udp6', ipv6Only: true });
    await new Promise((res, rej) => { s.once('error', rej); s.bind(port, a, () => { s.off('error', rej); res(); }); });
    port = s.address().port;
    s.on('message', (m, r) => {
      process.stdout.write(JSON.stringify({ from: r.address, fromPort: r.port, to: a, data: m.toString('utf8') }) + '\\n');
      if (echo === '1') s.send(m, r.port, r.address);
    });
  }
  process.stdout.write(JSON.stringify({ ready: port }) + '\\n');
})().catch((e) => { process.stderr.write(String(e && e.message || e) + '\\n'); process.exit(1); });
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
`;

// Sends from a bound source address: each payload once (mode "send"), or "probe" every
// intervalMs until a reply from dst:port arrives (exit 0) or timeoutMs pass (exit 1).
const UDP_CLIENT = `
const dgram = require('node:dgram');
const [mode, from, to, portArg, timeoutMs, intervalMs, ...payloads] = process.argv.slice(1);
const port = Number(portArg);
const s = dgram.createSocket({ type: 'udp6', ipv6Only: true });
s.on('error', (e) => { process.stderr.write(String(e.message) + '\\n'); process.exit(2); });
s.bind(0, from, async () => {
  if (mode === 'send') {
    for (const p of payloads) await new Promise((res, rej) => s.send(p, port, to, (e) => (e ? rej(e) : res())));
    process.exit(0);
  }
  s.on('message', (m, r) => { if (r.port === port) process.exit(0); });
  const probe = () => s.send('probe', port, to, () => undefined);
  probe();
  setInterval(probe, Number(intervalMs));
  setTimeout(() => process.exit(1), Number(timeoutMs));
});
`;

export class UdpServer {
  private exited = false;

  constructor(
    private readonly child: ChildProcess,
    readonly port: number,
    readonly addresses: readonly string[],
    /** Every datagram received so far, oldest first. */
    readonly received: Datagram[],
  ) {
    child.once('exit', () => (this.exited = true));
  }

  /** Waits for a datagram matching `match` (default: any) and returns it. */
  waitForDatagram(match: (d: Datagram) => boolean = () => true, options: WaitOptions = {}): Promise<Datagram> {
    return waitFor(() => this.received.find(match), { what: `a datagram on port ${this.port}`, ...options });
  }

  async close(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGTERM');
    await gone;
  }
}

// ---------------------------------------------------------------------------------------------

const live = new Set<string>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort for a testbed whose after hook never ran (the process is leaving anyway).
  process.on('exit', () => {
    for (const id of live) {
      try {
        execFileSync(TESTBED_SCRIPT, ['destroy', id], { stdio: 'ignore' });
      } catch {
        /* nothing more can be done here */
      }
    }
  });
}

export interface CreateOptions {
  /** Testbed ID (1 to 8 of a-z 0-9); default: a random one chosen by scripts/testbed. */
  name?: string;
  /** `create --hba`: HBA ULIDs on hosts A and B and a daemon configuration file per host. */
  hba?: boolean;
}

export class Testbed {
  readonly id: string;
  readonly namespaces: Readonly<Record<Host, string>>;
  readonly a: HostInfo;
  readonly b: HostInfo;
  readonly r1: RouterInfo;
  readonly r2: RouterInfo;
  /** With `create({ hba: true })`: the directory of this testbed's files (configs, HBA sets, run dirs). */
  readonly files: string | undefined;
  /** The tool's JSON description, as printed by `scripts/testbed create --json`. */
  readonly json: string;
  private readonly children = new Set<ChildProcess>();
  private destroyed = false;

  private constructor(d: Description, json: string) {
    this.id = d.id;
    this.namespaces = d.namespaces;
    this.a = d.a;
    this.b = d.b;
    this.r1 = d.r1;
    this.r2 = d.r2;
    this.files = d.files;
    this.json = json;
  }

  static async create(options: CreateOptions = {}): Promise<Testbed> {
    const args = ['create', '--json', ...(options.name === undefined ? [] : ['--name', options.name]), ...(options.hba ? ['--hba'] : [])];
    const out = await run([TESTBED_SCRIPT, ...args]);
    const { description } = parseDescription(out.stdout);
    installExitHook();
    live.add(description.id);
    return new Testbed(description, out.stdout.trim());
  }

  /** IDs of the testbeds on this machine (any process's). */
  static async list(): Promise<string[]> {
    const out = await run([TESTBED_SCRIPT, 'list', '--json']);
    const doc = JSON.parse(out.stdout) as Json;
    if (!Array.isArray(doc)) throw new TypeError('testbed list: not a list');
    return doc.map((e) => str(obj(e, 'list entry')['id'], 'id'));
  }

  /** ['ip', 'netns', 'exec', <namespace of host>]: prefix for commands run in that host. */
  netnsPrefix(host: Host): string[] {
    return ['ip', 'netns', 'exec', this.namespaces[host]];
  }

  /** Runs argv in host's namespace; throws CommandError on failure unless check is false. */
  exec(host: Host, argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    return run([...this.netnsPrefix(host), ...argv], options);
  }

  /** Starts cmd in host's namespace (ip netns exec execs it, so child.pid is cmd's). destroy() kills it if still running. */
  spawn(host: Host, cmd: string, args: readonly string[] = [], options: SpawnOptions = {}): ChildProcess {
    const child = spawnChild('ip', ['netns', 'exec', this.namespaces[host], cmd, ...args], options);
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** Breaks path 1 or 2 (DROP in its router's FORWARD chain); idempotent. */
  async cut(pathId: PathId, dir: Direction = 'both'): Promise<void> {
    await run([TESTBED_SCRIPT, 'cut', this.id, String(pathId), '--dir', dir]);
  }

  /** Repairs what cut(pathId, dir) broke; idempotent. */
  async restore(pathId: PathId, dir: Direction = 'both'): Promise<void> {
    await run([TESTBED_SCRIPT, 'restore', this.id, String(pathId), '--dir', dir]);
  }

  /**
   * `scripts/testbed start ID HOST`: reapd, then shim6d, in host a, b or both, through the init
   * script (scripts/shim6) with the host's configuration (a testbed created with `hba: true`).
   * Throws CommandError on failure unless check is false; the result carries the init script's
   * LSB status and output.
   */
  startDaemons(host: DaemonHost = 'all', options: ExecOptions = {}): Promise<ExecResult> {
    return run([TESTBED_SCRIPT, 'start', this.id, host], { timeoutMs: 120_000, ...options });
  }

  /** `scripts/testbed stop ID HOST`: stops the daemons (idempotent). */
  stopDaemons(host: DaemonHost = 'all', options: ExecOptions = {}): Promise<ExecResult> {
    return run([TESTBED_SCRIPT, 'stop', this.id, host], { timeoutMs: 120_000, ...options });
  }

  async status(): Promise<TestbedStatus> {
    const out = await run([TESTBED_SCRIPT, 'status', this.id, '--json'], { check: false });
    if (out.code !== 0 && out.code !== 1) throw new CommandError([TESTBED_SCRIPT, 'status', this.id, '--json'], out);
    const { doc } = parseDescription(out.stdout);
    const cut = obj(doc['cut'], 'cut');
    const dirs = (v: Json | undefined): Array<'a-to-b' | 'b-to-a'> =>
      strings(v, 'cut directions').filter((d): d is 'a-to-b' | 'b-to-a' => d === 'a-to-b' || d === 'b-to-a');
    return {
      complete: doc['complete'] === true,
      missing: strings(doc['missing'], 'missing').filter((h): h is Host => h === 'a' || h === 'b' || h === 'r1' || h === 'r2'),
      cut: { 1: dirs(cut['1']), 2: dirs(cut['2']) },
    };
  }

  /**
   * Kills what spawn() started, then removes every namespace of this testbed (stopping the
   * daemons of a --hba testbed first) and its files. Idempotent.
   */
  async destroy(): Promise<void> {
    await Promise.all(
      [...this.children].map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGTERM');
          }),
      ),
    );
    if (this.destroyed) return;
    await run([TESTBED_SCRIPT, 'destroy', this.id]);
    this.destroyed = true;
    live.delete(this.id);
  }

  // -- UDP ------------------------------------------------------------------------------------

  /**
   * A UDP server in host, one socket per address, all on one port (`port`, default: an
   * ephemeral one). Records what arrives in `received`; echoes it back when `echo` is set.
   */
  async udpServer(host: Host, addresses: readonly string[], options: { port?: number; echo?: boolean; timeoutMs?: number } = {}): Promise<UdpServer> {
    if (addresses.length === 0) throw new RangeError('udpServer: no address to bind');
    const child = this.spawn(host, process.execPath, ['-e', UDP_SERVER, String(options.port ?? 0), options.echo ? '1' : '0', ...addresses], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const received: Datagram[] = [];
    let ready: number | undefined;
    let stderr = '';
    let buffered = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      buffered += d;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        const msg = obj(JSON.parse(line) as Json, 'udp server output');
        if (typeof msg['ready'] === 'number') ready = msg['ready'];
        else
          received.push({
            from: str(msg['from'], 'from'),
            fromPort: Number(msg['fromPort']),
            to: str(msg['to'], 'to'),
            data: str(msg['data'], 'data'),
          });
      }
    });
    let exitCode: number | null | undefined;
    child.once('exit', (code) => (exitCode = code));
    try {
      const port = await waitFor(
        () => {
          if (exitCode !== undefined) throw new Error(`UDP server in ${host} exited (${String(exitCode)}): ${stderr.trim()}`);
          return ready;
        },
        { what: `UDP server in ${host} on ${addresses.join(', ')}`, timeoutMs: options.timeoutMs ?? 10_000, intervalMs: 10 },
      );
      return new UdpServer(child, port, addresses, received);
    } catch (e) {
      child.kill('SIGKILL');
      throw e;
    }
  }

  /** Sends each payload once, from `from` (bound) to `to`:port, from inside host. */
  async udpSend(host: Host, from: string, to: string, port: number, payloads: readonly string[]): Promise<void> {
    await this.exec(host, [process.execPath, '-e', UDP_CLIENT, 'send', from, to, String(port), '0', '0', ...payloads]);
  }

  /**
   * True if a UDP echo server at to:port answers a probe sent from `from` within timeoutMs
   * (default 2000; the probe is repeated every intervalMs, default 100).
   */
  async udpRoundTrip(host: Host, from: string, to: string, port: number, options: { timeoutMs?: number; intervalMs?: number } = {}): Promise<boolean> {
    const timeoutMs = options.timeoutMs ?? 2000;
    const r = await this.exec(
      host,
      [process.execPath, '-e', UDP_CLIENT, 'probe', from, to, String(port), String(timeoutMs), String(options.intervalMs ?? 100)],
      { check: false, timeoutMs: timeoutMs + 10_000 },
    );
    if (r.code === 0) return true;
    if (r.code === 1) return false;
    throw new CommandError(['udp probe', host, from, to, String(port)], r);
  }
}
