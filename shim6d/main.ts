/**
 * shim6d's command line (common/daemon-cli.ts does the options, configuration, logger,
 * signals and exit status). Run by bin/shim6d (built: dist/shim6d/main.js) or
 * `npx tsx shim6d/main.ts`.
 */
import { daemonMain, runDaemon, DEFAULT_CONFIG_PATH, EXIT, type DaemonSpec } from '../common/daemon-cli';
import { LOG_LEVELS } from '../common/logger';
import { NotPermittedError } from '../iptables-rules/exec';
import { PacketQueueError } from './packet-queue';
import { Shim6Daemon } from './daemon';

export { EXIT };

export const HELP = `usage: shim6d [--config FILE] [--log-level LEVEL] [--check-config] [--help] [--version]

The Shim6 context daemon (RFC 5533): establishes Shim6 contexts with peers (I1/R1/I2/R2,
updates, recovery), shims outbound packets of contexts that moved off their ULID pair and
deshims inbound ones (NFQUEUE), applies the locator pairs reapd finds (IPC), and serves the
admin console (UDP, localhost port 19384: echo help | nc -u -w1 127.0.0.1 19384).
It runs in the foreground; the init script (scripts/shim6) starts reapd first, then shim6d.

options:
  --config FILE       configuration file (default ${DEFAULT_CONFIG_PATH}; see common/README.md)
  --log-level LEVEL   override the configured level: ${LOG_LEVELS.join(', ')}
  --check-config      validate the configuration file and exit
  --help              this text
  --version           the version

signals:
  SIGTERM, SIGINT     remove every rule this daemon added, release the pid file, exit 0
  SIGHUP              re-read the configuration file's log level

exit status:
  0 stopped cleanly (or --check-config: valid)
  1 a runtime failure (see the log)
  2 bad usage or an invalid configuration file (the message names the key)
  3 another shim6d with the same pid file is running
  4 not permitted (run as root: netfilter and NFQUEUE need CAP_NET_ADMIN)`;

export const SHIM6D: DaemonSpec = {
  name: 'shim6d',
  help: HELP,
  logOptions: (config) => config.shim6d.log,
  create: (config, log) => new Shim6Daemon(config, log),
  startFailureStatus(e) {
    if (e instanceof NotPermittedError) return EXIT.NOT_PERMITTED;
    if (e instanceof PacketQueueError && process.getuid?.() !== 0) return EXIT.NOT_PERMITTED;
    return undefined;
  },
};

export function main(argv: string[]): Promise<number> {
  return daemonMain(SHIM6D, argv);
}

export function run(): void {
  runDaemon(SHIM6D);
}

if (require.main === module) run();
