/**
 * shim6d's command line: options, configuration, logger, signals, exit status.
 * Run by bin/shim6d (built: dist/shim6d/main.js) or `npx tsx shim6d/main.ts`.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError } from '../common/config-schema';
import { DEFAULT_CONFIG_PATH, loadShim6Config } from '../common/config';
import { createLogger, LOG_LEVELS, type LogLevel, type Logger } from '../common/logger';
import { AlreadyRunningError } from '../common/pidfile';
import { NotPermittedError } from '../iptables-rules/exec';
import { PacketQueueError } from './packet-queue';
import { Shim6Daemon } from './daemon';

/** Exit statuses. */
export const EXIT = { OK: 0, FAILURE: 1, USAGE: 2, ALREADY_RUNNING: 3, NOT_PERMITTED: 4 } as const;

export const HELP = `usage: shim6d [--config FILE] [--log-level LEVEL] [--check-config] [--help] [--version]

The Shim6 context daemon (RFC 5533): keeps Shim6 contexts, shims outbound packets of
contexts that moved off their ULID pair and deshims inbound ones (NFQUEUE), and serves the
admin console (UDP, localhost port 19384: echo help | nc -u -w1 127.0.0.1 19384).
It runs in the foreground; the init script (scripts/shim6) backgrounds it.

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

/** The package version, from the package.json above this file (source or dist/). */
function version(): string {
  for (let dir = __dirname; dir !== dirname(dir); dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'shim6' && pkg.version) return pkg.version;
    } catch {
      // not here
    }
  }
  return 'unknown';
}

export async function main(argv: string[]): Promise<number> {
  let opts;
  try {
    opts = parseArgs({
      args: argv,
      options: {
        config: { type: 'string' },
        'log-level': { type: 'string' },
        'check-config': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    process.stderr.write(`shim6d: ${e instanceof Error ? e.message : String(e)}\n${HELP.split('\n')[0]}\n`);
    return EXIT.USAGE;
  }
  if (opts.help) {
    process.stdout.write(`${HELP}\n`);
    return EXIT.OK;
  }
  if (opts.version) {
    process.stdout.write(`shim6d ${version()}\n`);
    return EXIT.OK;
  }
  const levelOverride = opts['log-level'];
  if (levelOverride !== undefined && !(LOG_LEVELS as readonly string[]).includes(levelOverride)) {
    process.stderr.write(`shim6d: --log-level: '${levelOverride}' is not one of ${LOG_LEVELS.join(', ')}\n`);
    return EXIT.USAGE;
  }
  const configPath = opts.config ?? DEFAULT_CONFIG_PATH;
  let config;
  try {
    config = loadShim6Config(configPath);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`shim6d: ${e.message}\n`);
      return EXIT.USAGE;
    }
    throw e;
  }
  if (opts['check-config']) {
    process.stdout.write(`${configPath}: valid\n`);
    return EXIT.OK;
  }
  const logOptions = { ...config.shim6d.log, level: (levelOverride as LogLevel | undefined) ?? config.shim6d.log.level };
  const log = createLogger(logOptions, 'shim6d');
  const daemon = new Shim6Daemon(config, log);
  try {
    await daemon.start();
  } catch (e) {
    const status = startFailureStatus(e);
    log.error('shim6d could not start', { error: e instanceof Error ? e.message : String(e) });
    await log.close();
    return status;
  }
  return new Promise<number>((resolve) => {
    const stop = (signal: string): void => {
      void daemon.stop(signal).then(
        async () => {
          await log.close();
          resolve(EXIT.OK);
        },
        async (e: unknown) => {
          log.error('shutdown failed', { error: String(e) });
          await log.close();
          resolve(EXIT.FAILURE);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => reload(configPath, log, levelOverride));
  });
}

function reload(configPath: string, log: Logger, levelOverride: string | undefined): void {
  try {
    const fresh = loadShim6Config(configPath);
    const level = (levelOverride as LogLevel | undefined) ?? fresh.shim6d.log.level;
    log.setLevel(level);
    log.info('configuration re-read (SIGHUP)', { level });
  } catch (e) {
    log.error('SIGHUP: configuration not reloaded', { error: e instanceof Error ? e.message : String(e) });
  }
}

function startFailureStatus(e: unknown): number {
  if (e instanceof AlreadyRunningError) return EXIT.ALREADY_RUNNING;
  if (e instanceof NotPermittedError) return EXIT.NOT_PERMITTED;
  if (e instanceof PacketQueueError && process.getuid?.() !== 0) return EXIT.NOT_PERMITTED;
  return EXIT.FAILURE;
}

/** Runs main() with this process's arguments and exits with its status. */
export function run(): void {
  main(process.argv.slice(2)).then(
    (status) => process.exit(status),
    (e: unknown) => {
      process.stderr.write(`shim6d: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(EXIT.FAILURE);
    },
  );
}

if (require.main === module) run();
