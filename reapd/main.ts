/**
 * reapd's command line (common/daemon-cli.ts does the options, configuration, logger,
 * signals and exit status). Run by bin/reapd (built: dist/reapd/main.js) or
 * `npx tsx reapd/main.ts`.
 */
import { daemonMain, runDaemon, DEFAULT_CONFIG_PATH, EXIT, type DaemonSpec } from '../common/daemon-cli';
import { LOG_LEVELS } from '../common/logger';
import { ReapDaemon } from './daemon';

export { EXIT };

export const HELP = `usage: reapd [--config FILE] [--log-level LEVEL] [--check-config] [--help] [--version]

The REAP daemon (RFC 5534): watches every Shim6 context shim6d announces for a failing path
(Keepalives, the Send Timeout), explores the other locator pairs with Probe messages when
it fails, and tells shim6d which pair works; when the ULID pair works again the context goes
back to it. It listens on the IPC socket (the configuration's ipcSocket) and must start
before shim6d; the init script (scripts/shim6) does that. It runs in the foreground.

options:
  --config FILE       configuration file (default ${DEFAULT_CONFIG_PATH}; see common/README.md)
  --log-level LEVEL   override the configured level: ${LOG_LEVELS.join(', ')}
  --check-config      validate the configuration file and exit
  --help              this text
  --version           the version

signals:
  SIGTERM, SIGINT     close the IPC socket, release the pid file, exit 0
  SIGHUP              re-read the configuration file's log level

exit status:
  0 stopped cleanly (or --check-config: valid)
  1 a runtime failure (see the log), or the IPC socket is in use by another reapd
  2 bad usage or an invalid configuration file (the message names the key)
  3 another reapd with the same pid file is running
  4 not permitted (run as root: raw sockets need CAP_NET_RAW)`;

export const REAPD: DaemonSpec = {
  name: 'reapd',
  help: HELP,
  logOptions: (config) => config.reapd.log,
  create: (config, log) => new ReapDaemon(config, log),
  startFailureStatus(e) {
    const code = (e as NodeJS.ErrnoException | undefined)?.code;
    if (code === 'EACCES' || code === 'EPERM') return EXIT.NOT_PERMITTED;
    return undefined;
  },
};

export function main(argv: string[]): Promise<number> {
  return daemonMain(REAPD, argv);
}

export function run(): void {
  runDaemon(REAPD);
}

if (require.main === module) run();
