/**
 * A debugging tool for the conntrack adapter: prints the IPv6 flows of this network
 * namespace as JSON lines, on stdout.
 *
 *   tsx shim6d/conntrack-cli.ts [--poll-ms N] [--no-events] [--no-initial-dump]
 *   ip netns exec NS tsx shim6d/conntrack-cli.ts --poll-ms 1000
 *
 * Lines: {"ready":true,...} once started; {"kind":"new"|"update"|"destroy",...} per event
 * (the flows already in the table come first, as "new"); with --poll-ms,
 * {"kind":"sample",...} per flow every N ms (the counters); {"error":...} on a failure.
 * SIGINT/SIGTERM close the monitor and exit 0. Exit 1 if the monitor cannot start, 2 on
 * bad usage. Needs root.
 */
import { ConntrackError, ConntrackMonitor } from './conntrack';

const USAGE = 'usage: conntrack-cli [--poll-ms N] [--no-events] [--no-initial-dump]';

function main(argv: string[]): void {
  let pollMs = 0;
  let events = true;
  let initialDump = true;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--poll-ms') {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 10) return usage('--poll-ms takes an integer ≥ 10');
      pollMs = n;
    } else if (a === '--no-events') events = false;
    else if (a === '--no-initial-dump') initialDump = false;
    else if (a === '--help' || a === '-h') {
      process.stdout.write(`${USAGE}\n`);
      return;
    } else return usage(`unknown argument '${a}'`);
  }
  const print = (o: object): void => void process.stdout.write(`${JSON.stringify(o)}\n`);
  const monitor = new ConntrackMonitor({ events, initialDump });
  monitor.on('event', (e) => print(e));
  monitor.on('error', (e) => print({ error: e.message, errno: e.errno }));
  try {
    monitor.start();
  } catch (e) {
    const why = e instanceof ConntrackError ? { error: e.message, errno: e.errno, code: e.code } : { error: String(e) };
    print(why);
    process.exitCode = 1;
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  if (pollMs > 0) {
    timer = setInterval(() => {
      try {
        for (const s of monitor.poll()) print({ kind: 'sample', ...s });
      } catch (e) {
        print({ error: e instanceof Error ? e.message : String(e) });
      }
    }, pollMs);
  }
  print({ ready: true, pid: process.pid, pollMs, events });
  const stop = (): void => {
    if (timer) clearInterval(timer);
    void monitor.close().then(() => {
      print({ closed: true, stats: monitor.stats() });
      process.exit(0);
    });
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

function usage(message: string): void {
  process.stderr.write(`conntrack-cli: ${message}\n${USAGE}\n`);
  process.exitCode = 2;
}

main(process.argv.slice(2));
