/**
 * shim6d and reapd on the testbed, started as a user would (bin/NAME --config FILE inside
 * the host's namespace), with one run directory (and one configuration file) per host, and
 * shim6d's admin console reached from inside that namespace. Used by the integration tests,
 * the benchmarks and the demo.
 *
 *   const r = await ReapdProcess.start(tb, 'a', config);   // first: shim6d connects to it
 *
 *   const d = await Shim6dProcess.start(tb, 'a', { shim6d: { contexts: [...] } });
 *   await d.console('shim 1 2001:db8:a2::a 2001:db8:b2::b');
 *   const dump = await d.dumpJson();
 *   await d.stop();             // SIGTERM; resolves with the exit status
 *
 *   await consoleCommand(tb, 'a', 'stats');   // any host's console, without a Shim6dProcess
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultShim6Config, MAX_CONFIG_FILE_BYTES } from '../../common/config';
import { formatIPv6, parseIPv6 } from '../../protocol/address';
import type { Host, Testbed } from './testbed';
import { waitFor } from './wait';

const ROOT = join(__dirname, '..', '..');
const BUILT = join(ROOT, 'dist', 'shim6d', 'main.js');
const SOURCE_DIRS = ['protocol', 'common', 'shim6d', 'reapd', 'ipc', 'iptables-rules'];

function newestSource(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestSource(p));
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/** Runs `npm run build` when a daemon source is newer than dist/ (bin/shim6d runs dist/). */
export function ensureBuilt(): void {
  const built = existsSync(BUILT) ? statSync(BUILT).mtimeMs : 0;
  const newest = Math.max(...SOURCE_DIRS.filter((d) => existsSync(join(ROOT, d))).map((d) => newestSource(join(ROOT, d))));
  if (built >= newest) return;
  const r = spawnSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`npm run build failed:\n${r.stdout}${r.stderr}`);
}

/** A Node program: one UDP datagram to the console (argv: port, timeoutMs, command), its reply on stdout; exit 1 after the timeout. */
const CONSOLE_CLIENT = `
const dgram = require('node:dgram');
const [port, timeoutMs, command] = process.argv.slice(1);
const s = dgram.createSocket('udp4');
s.on('message', (m) => { process.stdout.write(m); process.exit(0); });
s.on('error', (e) => { process.stderr.write(e.message + '\\n'); process.exit(2); });
s.send(command, Number(port), '127.0.0.1');
setTimeout(() => process.exit(1), Number(timeoutMs));
`;

/** shim6d's console port when the configuration names none. */
const DEFAULT_CONSOLE_PORT = defaultShim6Config().shim6d.console.port;

/**
 * One command to the shim6d console of `host` (127.0.0.1 inside its namespace), by
 * CONSOLE_CLIENT: its reply, or undefined if none comes within timeoutMs (default 5 s). The port
 * defaults to the configuration's default.
 */
export async function consoleCommand(tb: Testbed, host: Host, command: string, options: { port?: number; timeoutMs?: number } = {}): Promise<string | undefined> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const r = await tb.exec(host, [process.execPath, '-e', CONSOLE_CLIENT, String(options.port ?? DEFAULT_CONSOLE_PORT), String(timeoutMs), command], {
    check: false,
    timeoutMs: timeoutMs + 10_000,
  });
  return r.code === 0 ? r.stdout : undefined;
}

/**
 * A Node program: asks the console (argv: port, intervalMs) `stats` every intervalMs from one
 * socket; exits 0 at the first reply that starts with 'uptime'.
 */
const CONSOLE_WAIT = `
const dgram = require('node:dgram');
const [port, intervalMs] = process.argv.slice(1);
const s = dgram.createSocket('udp4');
s.on('message', (m) => { if (m.toString().startsWith('uptime')) process.exit(0); });
s.on('error', () => undefined);
const ask = () => s.send('stats', Number(port), '127.0.0.1', () => undefined);
ask();
setInterval(ask, Number(intervalMs));
`;

export interface StartOptions {
  /** Wait this long for the daemon to be ready (default 20 s). */
  timeoutMs?: number;
  /** Log level (default debug: the log is kept in the run directory). */
  logLevel?: string;
  /** Options for node itself, before bin/NAME (e.g. --heapsnapshot-signal=SIGUSR2). */
  nodeArgs?: readonly string[];
  /** shim6d: how often its console is asked `stats` until it answers (default 100 ms). */
  readyPollMs?: number;
}

export type ConfigDocument = Record<string, unknown> & { shim6d?: Record<string, unknown>; reapd?: Record<string, unknown> };

export type DaemonName = 'shim6d' | 'reapd';

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** The run directory used for host (its config, pid files, IPC socket and logs live there). */
export function runDirOf(tb: Testbed, host: Host): string {
  return join('/tmp', `shim6-${tb.id}-${host}`);
}

/**
 * Writes the host's one configuration file (both daemons read it): runDir and each daemon's
 * log file filled in unless given. Compact JSON on one line, so that thousands of static
 * contexts fit; throws if it is still larger than the daemons read (MAX_CONFIG_FILE_BYTES).
 * Returns its path.
 */
export function writeHostConfig(tb: Testbed, host: Host, config: ConfigDocument, logLevel = 'debug'): string {
  const runDir = runDirOf(tb, host);
  const doc = {
    runDir,
    ...config,
    shim6d: { log: { level: logLevel, file: join(runDir, 'shim6d.log'), stderr: true }, ...(config.shim6d ?? {}) },
    reapd: { log: { level: logLevel, file: join(runDir, 'reapd.log'), stderr: true }, ...(config.reapd ?? {}) },
  };
  const text = `${JSON.stringify(doc)}\n`;
  const size = Buffer.byteLength(text);
  if (size > MAX_CONFIG_FILE_BYTES) {
    const contexts = config.shim6d?.['contexts'];
    const count = Array.isArray(contexts) ? ` (${contexts.length} static contexts)` : '';
    throw new RangeError(`the configuration of ${host}${count} is ${size} bytes, over the ${MAX_CONFIG_FILE_BYTES} the daemons read (MAX_CONFIG_FILE_BYTES)`);
  }
  mkdirSync(runDir, { recursive: true, mode: 0o700 });
  const configFile = join(runDir, 'shim6.json');
  writeFileSync(configFile, text);
  return configFile;
}

/** One daemon process in a testbed host, started as a user would: bin/NAME --config FILE. */
export class DaemonProcess {
  private exit: ExitStatus | undefined;
  /** Resolves when the process exits. */
  private readonly exited: Promise<ExitStatus>;
  stderr = '';
  /** From the spawn to ready (set by start()). */
  startSeconds = NaN;

  protected constructor(
    readonly name: DaemonName,
    readonly tb: Testbed,
    readonly host: Host,
    readonly child: ChildProcess,
    readonly runDir: string,
    readonly configFile: string,
    readonly logFile: string,
    /** process.hrtime.bigint() just before the spawn. */
    private readonly spawnedAt: bigint,
  ) {
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      this.stderr = (this.stderr + d).slice(-65536);
    });
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      }),
    );
  }

  protected static spawnDaemon(name: DaemonName, tb: Testbed, host: Host, config: ConfigDocument, options: StartOptions): Spawned {
    ensureBuilt();
    const configFile = writeHostConfig(tb, host, config, options.logLevel);
    const runDir = runDirOf(tb, host);
    const spawnedAt = process.hrtime.bigint();
    const child = tb.spawn(host, process.execPath, [...(options.nodeArgs ?? []), join(ROOT, 'bin', name), '--config', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    return { child, runDir, configFile, logFile: join(runDir, `${name}.log`), spawnedAt };
  }

  /** Records startSeconds: now, less the spawn. */
  protected ready(): void {
    this.startSeconds = Number(process.hrtime.bigint() - this.spawnedAt) / 1e9;
  }

  private exitedError(): Error {
    return new Error(`${this.name} in ${this.host} exited (${String(this.exit?.code ?? this.exit?.signal)}): ${this.stderr.trim()}`);
  }

  /** Polls `ready` until it holds; rejects with the daemon's stderr if it exits first. */
  protected async waitUntil(ready: () => Promise<boolean> | boolean, what: string, timeoutMs: number): Promise<void> {
    await waitFor(
      async () => {
        if (this.exit) throw this.exitedError();
        return ready();
      },
      { what: `${this.name} in ${this.host} ${what}`, timeoutMs, intervalMs: 100 },
    ).catch((e: unknown) => {
      if (this.exit) throw this.exitedError();
      throw e;
    });
  }

  /**
   * Waits for `event` to resolve; rejects with the daemon's stderr if it exits first, or after
   * timeoutMs.
   */
  protected async waitEvent<T>(event: Promise<T>, what: string, timeoutMs: number): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${this.name} in ${this.host} ${what}`)), timeoutMs);
    });
    try {
      const value = await Promise.race([event, this.exited.then(() => Promise.reject(this.exitedError())), timeout]);
      if (this.exit) throw this.exitedError();
      return value;
    } finally {
      clearTimeout(timer);
    }
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  /** Waits for the process to exit; resolves with its status. */
  async waitExit(timeoutMs = 20_000): Promise<ExitStatus> {
    return waitFor(() => this.exit, { what: `${this.name} in ${this.host} to exit`, timeoutMs, intervalMs: 20 });
  }

  /**
   * SIGTERM, then waits for the exit (timeoutMs). With killAfterMs, SIGKILL if it is still
   * running that long after the SIGTERM (then timeoutMs more for the exit).
   */
  async stop(timeoutMs = 20_000, options: { killAfterMs?: number } = {}): Promise<ExitStatus> {
    if (this.exit) return this.exit;
    this.child.kill('SIGTERM');
    const { killAfterMs } = options;
    if (killAfterMs === undefined) return this.waitExit(timeoutMs);
    const late = setTimeout(() => {
      if (this.running) this.child.kill('SIGKILL');
    }, killAfterMs);
    try {
      return await this.waitExit(killAfterMs + timeoutMs);
    } finally {
      clearTimeout(late);
    }
  }

  /** SIGKILL: no clean-up at all, as in a crash. */
  async kill(): Promise<void> {
    if (this.exit) return;
    this.child.kill('SIGKILL');
    await this.waitExit();
  }

  log(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8') : '';
  }

  /** Removes the run directory (after the processes have exited). */
  cleanup(): void {
    rmSync(this.runDir, { recursive: true, force: true });
  }
}

interface Spawned {
  child: ChildProcess;
  runDir: string;
  configFile: string;
  logFile: string;
  spawnedAt: bigint;
}

/** A Node program: exits 0 if the Unix socket argv[1] accepts a connection within 1 s. */
const SOCKET_PROBE = `
const s = require('node:net').connect(process.argv[1]);
s.on('connect', () => { s.destroy(); process.exit(0); });
s.on('error', () => process.exit(1));
setTimeout(() => process.exit(1), 1000);
`;

/** reapd in a testbed host; ready once its IPC socket accepts connections. */
export class ReapdProcess extends DaemonProcess {
  static async start(tb: Testbed, host: Host, config: ConfigDocument, options: StartOptions = {}): Promise<ReapdProcess> {
    const s = DaemonProcess.spawnDaemon('reapd', tb, host, config, options);
    const d = new ReapdProcess('reapd', tb, host, s.child, s.runDir, s.configFile, s.logFile, s.spawnedAt);
    const socket = typeof config['ipcSocket'] === 'string' ? config['ipcSocket'] : join(s.runDir, 'ipc.sock');
    await d.waitUntil(async () => existsSync(socket) && (await tb.exec(host, [process.execPath, '-e', SOCKET_PROBE, socket], { check: false })).code === 0, 'to listen on its IPC socket', options.timeoutMs ?? 20_000);
    d.ready();
    return d;
  }
}

/** shim6d in a testbed host; ready once its console answers. */
export class Shim6dProcess extends DaemonProcess {
  readonly consolePort: number;

  private constructor(tb: Testbed, host: Host, s: Spawned, consolePort: number) {
    super('shim6d', tb, host, s.child, s.runDir, s.configFile, s.logFile, s.spawnedAt);
    this.consolePort = consolePort;
  }

  /**
   * Writes the configuration (runDir, log file and console filled in unless given) and starts
   * shim6d; resolves once its console answers. Rejects with the daemon's stderr if it exits.
   */
  static async start(tb: Testbed, host: Host, config: ConfigDocument, options: StartOptions = {}): Promise<Shim6dProcess> {
    const s = DaemonProcess.spawnDaemon('shim6d', tb, host, config, options);
    const consolePort = Number((config.shim6d?.['console'] as { port?: number } | undefined)?.port ?? DEFAULT_CONSOLE_PORT);
    const d = new Shim6dProcess(tb, host, s, consolePort);
    await d.waitReady(options.timeoutMs ?? 20_000, options.readyPollMs);
    d.ready();
    return d;
  }

  /**
   * Resolves once the console answers `stats`: one poller in the host asks every intervalMs
   * from the same socket (no process start per attempt), so the moment is known to about
   * intervalMs.
   */
  async waitReady(timeoutMs = 20_000, intervalMs = 100): Promise<void> {
    const poller = this.tb.spawn(this.host, process.execPath, ['-e', CONSOLE_WAIT, String(this.consolePort), String(intervalMs)], { stdio: 'ignore' });
    const answered = new Promise<void>((resolve, reject) =>
      poller.once('exit', (code, signal) => (code === 0 ? resolve() : reject(new Error(`the console poller in ${this.host} exited (${String(code ?? signal)})`)))),
    );
    try {
      await this.waitEvent(answered, 'to answer on its console', timeoutMs);
    } finally {
      if (poller.exitCode === null && poller.signalCode === null) poller.kill('SIGKILL');
    }
  }

  /** One console command, its reply; throws if no reply comes within 5 s. */
  async console(command: string): Promise<string> {
    const r = await consoleCommand(this.tb, this.host, command, { port: this.consolePort, timeoutMs: 5000 });
    if (r === undefined) throw new Error(`no console reply from shim6d in ${this.host} to '${command}'${this.running ? '' : ` (it exited: ${this.stderr.trim().split('\n').slice(-3).join(' | ')})`}`);
    return r;
  }

  /** Every context, however many pages `dump json` takes. */
  async dumpJson(): Promise<DumpJson> {
    return readDumpJson((command) => this.console(command));
  }
}

export interface DumpContext {
  id: number;
  state: string;
  localUlid: string;
  peerUlid: string;
  localContextTag: number;
  peerContextTag: number;
  currentPair: { local: string; peer: string };
  shimmed: boolean;
  /** reapd's last report (null: none yet, or REAP disabled). */
  reap: { state: 'operational' | 'exploring' | 'inbound-ok'; since: number; probesSent: number; probesReceived: number; keepalivesSent: number; keepalivesReceived: number; current: { local: string; peer: string }; history: Array<{ at: number; direction: string; local: string; peer: string; nonce: number }> } | null;
  pathMtu: number | null;
  counters: {
    shimmedPackets: number;
    shimmedOctets: number;
    deshimmedPackets: number;
    deshimmedOctets: number;
    packetTooBigSent: number;
    drops: Record<string, number>;
  };
}

export interface DumpJson {
  contexts: DumpContext[];
  /** Contexts in the table (all pages). */
  total: number;
  /** Where the next page starts (`dump json from <next>`); null on the last page. */
  next: number | null;
  reapd: ({ connected: boolean } & Record<string, number | boolean>) | null;
  dataPlane: { outboundPackets: number; inboundPackets: number; shimmedPackets: number; deshimmedPackets: number; controlMessages: number; packetTooBigSent: number; drops: Record<string, number> };
}

/**
 * `dump json`, page after page (each reply holds what fits in one datagram), put together:
 * the contexts of every page, the counters of the last one. A page whose `next` does not
 * move forward is an error, not a loop.
 */
export async function readDumpJson(ask: (command: string) => Promise<string>): Promise<DumpJson> {
  let page = JSON.parse(await ask('dump json')) as DumpJson;
  const contexts = [...page.contexts];
  let after = 0;
  while (page.next !== null) {
    if (page.next <= after) throw new Error(`dump json: next ${page.next} does not move past ${after}`);
    after = page.next;
    page = JSON.parse(await ask(`dump json from ${page.next}`)) as DumpJson;
    contexts.push(...page.contexts);
  }
  return { ...page, contexts, next: null };
}

/** A static context for each host of the testbed: A's ULID a1, B's b1, both locators each. */
export function testbedContexts(tb: Testbed, tags: { a: number; b: number } = { a: 0x0a0a0a0a01, b: 0x0b0b0b0b01 }): Record<'a' | 'b', Record<string, unknown>> {
  const [a1, a2] = tb.a.locators as [string, string];
  const [b1, b2] = tb.b.locators as [string, string];
  return {
    a: { id: 1, localUlid: a1, peerUlid: b1, localContextTag: tags.a, peerContextTag: tags.b, localLocators: [a1, a2], peerLocators: [b1, b2] },
    b: { id: 1, localUlid: b1, peerUlid: a1, localContextTag: tags.b, peerContextTag: tags.a, localLocators: [b1, b2], peerLocators: [a1, a2] },
  };
}

export interface HbaIdentity {
  /** The directory `shim6-cga generate` wrote (give it to shim6d as `shim6d.identities`). */
  dir: string;
  ulid: string;
  /** One HBA address per path: [path 1, path 2]. */
  locators: [string, string];
}

/**
 * An HBA set for host `host` over its two path prefixes, made by the real `shim6-cga generate`
 * (Sec 0), with its addresses added to the host's interfaces: the way an operator secures a
 * multihomed host's locators (RFC 5535).
 */
export async function hbaIdentity(tb: Testbed, host: 'a' | 'b', dir: string): Promise<HbaIdentity> {
  const info = tb[host];
  const prefixes = info.locators.map((l) => {
    const octets = Buffer.alloc(16);
    parseIPv6(l)?.copy(octets, 0, 0, 8);
    return `${formatIPv6(octets)}/64`;
  });
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'shim6-cga'), 'generate', ...prefixes.flatMap((p) => ['--prefix', p]), '--sec', '0', '--force', '--out', dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`shim6-cga generate failed: ${r.stderr}`);
  const doc = JSON.parse(readFileSync(join(dir, 'shim6-cga.json'), 'utf8')) as { ulid: string; locators: string[] };
  const [l1, l2] = doc.locators;
  if (l1 === undefined || l2 === undefined) throw new Error(`shim6-cga generate gave ${doc.locators.length} locators`);
  await tb.exec(host, ['ip', '-6', 'addr', 'add', `${l1}/64`, 'dev', info.interfaces[0] as string, 'nodad']);
  await tb.exec(host, ['ip', '-6', 'addr', 'add', `${l2}/64`, 'dev', info.interfaces[1] as string, 'nodad']);
  return { dir, ulid: doc.ulid, locators: [l1, l2] };
}
