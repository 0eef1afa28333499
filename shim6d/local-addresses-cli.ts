/**
 * Prints what LocalAddressMonitor sees, one JSON object per line, until SIGINT/SIGTERM (or,
 * with --until-stdin-closes, until its standard input ends: for tests that spawn it).
 *
 *   tsx shim6d/local-addresses-cli.ts [--include-deprecated] [--raw] [--until-stdin-closes]
 *   ip netns exec NS node_modules/.bin/tsx shim6d/local-addresses-cli.ts --raw
 *
 * Lines: {"event":"added"|"removed","address","ifindex","prefixLength"},
 * {"event":"ready","addresses":[...]} after the initial dump, {"event":"error","call","errno","message"},
 * {"event":"resync","reason"} when notifications were lost and the addresses are dumped again,
 * {"event":"closed"}; with --raw also {"event":"message", ...every address message received}
 * (lifetimes: null for "forever"). Exit status 0 after a clean stop, 1 if the monitor failed
 * to start or its initial dump failed, 2 on bad usage.
 */
import { LocalAddressMonitor, RtnetlinkError } from './local-addresses';

const USAGE = 'usage: local-addresses-cli [--include-deprecated] [--raw] [--receive-buffer BYTES] [--until-stdin-closes]';

function line(event: string, fields: object = {}): void {
  process.stdout.write(`${JSON.stringify({ event, ...fields }, (_k, v: unknown) => (v === Infinity ? null : v))}\n`);
}

function main(argv: string[]): void {
  const usage = (why: string): never => {
    process.stderr.write(`local-addresses-cli: ${why}\n${USAGE}\n`);
    process.exit(2);
  };
  const flags = new Set<string>();
  let receiveBufferBytes: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--receive-buffer') {
      const v = argv[++i];
      receiveBufferBytes = Number(v);
      if (v === undefined || !Number.isInteger(receiveBufferBytes) || receiveBufferBytes < 1 || receiveBufferBytes > 2 ** 30) usage(`--receive-buffer: '${v ?? ''}' is not a size in octets`);
    } else if (['--include-deprecated', '--raw', '--until-stdin-closes', '--help'].includes(a)) flags.add(a);
    else usage(`unknown argument '${a}'`);
  }
  if (flags.has('--help')) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  let monitor: LocalAddressMonitor;
  try {
    monitor = new LocalAddressMonitor({ includeDeprecated: flags.has('--include-deprecated'), receiveBufferBytes });
  } catch (e) {
    line('error', errorFields(e));
    process.exit(1);
  }
  monitor.on('added', (a) => line('added', a));
  monitor.on('removed', (a) => line('removed', a));
  monitor.on('error', (e) => line('error', errorFields(e)));
  monitor.on('resync', (reason) => line('resync', { reason }));
  if (flags.has('--raw')) monitor.on('message', (m) => line('message', m));

  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    void monitor.close().then(() => {
      line('closed');
      process.exit();
    });
  };
  monitor.ready.then(
    () => line('ready', { addresses: monitor.addresses() }),
    (e: unknown) => {
      if (stopping) return;
      line('error', errorFields(e));
      process.exitCode = 1;
      stop();
    },
  );
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  if (flags.has('--until-stdin-closes')) {
    process.stdin.on('end', stop);
    process.stdin.on('error', stop);
    process.stdin.resume();
  }
}

function errorFields(e: unknown): object {
  if (e instanceof RtnetlinkError) return { call: e.call, errno: e.errno, message: e.message };
  return { message: e instanceof Error ? e.message : String(e) };
}

main(process.argv.slice(2));
