/**
 * The command line both daemons share: options, configuration, logger, signals, exit status.
 * shim6d/main.ts and reapd/main.ts describe what differs (name, help, what to run).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError } from './config-schema';
import { DEFAULT_CONFIG_PATH, loadShim6Config, type Shim6Config } from './config';
import { createLogger, LOG_LEVELS, type LogLevel, type Logger, type LoggerOptions } from './logger';
import { AlreadyRunningError } from './pidfile';

/** Exit statuses. */
export const EXIT = { OK: 0, FAILURE: 1, USAGE: 2, ALREADY_RUNNING: 3, NOT_PERMITTED: 4 } as const;

export interface RunningDaemon {
  start(): Promise<void>;
  stop(reason: string): Promise<void>;
}

export interface DaemonSpec {
  name: 'shim6d' | 'reapd';
  help: string;
  /** This daemon's logging settings in the configuration. */
  logOptions(config: Shim6Config): LoggerOptions;
  create(config: Shim6Config, log: Logger): RunningDaemon;
  /** The exit status of a failed start beyond the common ones (already running). */
  startFailureStatus?(e: unknown): number | undefined;
}

/** The package version, from the package.json above this file (source or dist/). */
export function packageVersion(): string {
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

export async function daemonMain(spec: DaemonSpec, argv: string[]): Promise<number> {
  const name = spec.name;
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
    process.stderr.write(`${name}: ${e instanceof Error ? e.message : String(e)}\n${spec.help.split('\n')[0]}\n`);
    return EXIT.USAGE;
  }
  if (opts.help) {
    process.stdout.write(`${spec.help}\n`);
    return EXIT.OK;
  }
  if (opts.version) {
    process.stdout.write(`${name} ${packageVersion()}\n`);
    return EXIT.OK;
  }
  const levelOverride = opts['log-level'];
  if (levelOverride !== undefined && !(LOG_LEVELS as readonly string[]).includes(levelOverride)) {
    process.stderr.write(`${name}: --log-level: '${levelOverride}' is not one of ${LOG_LEVELS.join(', ')}\n`);
    return EXIT.USAGE;
  }
  const configPath = opts.config ?? DEFAULT_CONFIG_PATH;
  let config;
  try {
    config = loadShim6Config(configPath);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`${name}: ${e.message}\n`);
      return EXIT.USAGE;
    }
    throw e;
  }
  if (opts['check-config']) {
    process.stdout.write(`${configPath}: valid\n`);
    return EXIT.OK;
  }
  const configured = spec.logOptions(config);
  const log = createLogger({ ...configured, level: (levelOverride as LogLevel | undefined) ?? configured.level }, name);
  const daemon = spec.create(config, log);
  try {
    await daemon.start();
  } catch (e) {
    const status = e instanceof AlreadyRunningError ? EXIT.ALREADY_RUNNING : (spec.startFailureStatus?.(e) ?? EXIT.FAILURE);
    log.error(`${name} could not start`, { error: e instanceof Error ? e.message : String(e) });
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
    process.on('SIGHUP', () => reload(spec, configPath, log, levelOverride));
  });
}

function reload(spec: DaemonSpec, configPath: string, log: Logger, levelOverride: string | undefined): void {
  try {
    const fresh = loadShim6Config(configPath);
    const level = (levelOverride as LogLevel | undefined) ?? spec.logOptions(fresh).level;
    log.setLevel(level);
    log.info('configuration re-read (SIGHUP)', { level });
  } catch (e) {
    log.error('SIGHUP: configuration not reloaded', { error: e instanceof Error ? e.message : String(e) });
  }
}

/** Runs a daemon's main() with this process's arguments and exits with its status. */
export function runDaemon(spec: DaemonSpec): void {
  daemonMain(spec, process.argv.slice(2)).then(
    (status) => process.exit(status),
    (e: unknown) => {
      process.stderr.write(`${spec.name}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(EXIT.FAILURE);
    },
  );
}

export { DEFAULT_CONFIG_PATH };
