/**
 * The daemons' logger: winston underneath, a small interface on top, one line per record:
 *
 *   2026-11-21T10:00:00.123Z info shim6d: context established peer=2001:db8:b1::b tag=42 note="with space"
 *
 * (ISO time, level, component, message, then the meta fields as key=value). Strings with
 * spaces, quotes, '=' or control characters are written as JSON strings, and control
 * characters in the message are escaped, so one record is always one line whatever a peer
 * put into it. Records go to stderr and/or appended to a file.
 */
import { closeSync, fchmodSync, openSync } from 'node:fs';
import { makeParentDir } from './fs';
import winston from 'winston';

/** Levels from most to least severe; a logger at level L writes L and everything before it. */
export const LOG_LEVELS = ['error', 'warn', 'info', 'verbose', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Structured fields of a record, written after the message as key=value. */
export type LogMeta = Record<string, unknown>;

export interface Logger {
  error(msg: string, meta?: LogMeta): void;
  warn(msg: string, meta?: LogMeta): void;
  info(msg: string, meta?: LogMeta): void;
  verbose(msg: string, meta?: LogMeta): void;
  debug(msg: string, meta?: LogMeta): void;
  setLevel(level: LogLevel): void;
  /** Flushes and closes the file; records logged afterwards are dropped. */
  close(): Promise<void>;
}

export interface LoggerOptions {
  level: LogLevel;
  /** Also append to this file (its directory is created, mode 0755, if missing). */
  file?: string;
  /** Write to stderr. */
  stderr: boolean;
}

/** A logger that discards everything (unit tests). */
export const nullLogger: Logger = Object.freeze({
  error: () => undefined,
  warn: () => undefined,
  info: () => undefined,
  verbose: () => undefined,
  debug: () => undefined,
  setLevel: () => undefined,
  close: () => Promise.resolve(),
});

/** A record's meta, or a function that builds it (called only if the record is not dropped). */
export type LazyLogMeta = LogMeta | (() => LogMeta);

/** Logs one record unless this second's budget is spent. */
export type RateLimitedLog = (level: LogLevel, msg: string, meta?: LazyLogMeta) => void;

/**
 * A rate limit for records that peers or the packet path can cause at any rate: at most
 * `perSecond` records in each second of the clock, one budget for every level (a record the
 * level filters out spends it too), the rest dropped. A meta function is called only for a
 * record within the budget, so a dropped record costs no formatting.
 */
export function rateLimitedLogger(log: Logger, perSecond = 20, now: () => number = Date.now): RateLimitedLog {
  let second = Number.NEGATIVE_INFINITY;
  let left = 0;
  return (level, msg, meta) => {
    const current = Math.floor(now() / 1000);
    if (current !== second) {
      second = current;
      left = perSecond;
    }
    if (left <= 0) return;
    left--;
    log[level](msg, typeof meta === 'function' ? meta() : meta);
  };
}

const LEVEL_NUMBERS: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, verbose: 3, debug: 4 };

/** Where the meta fields travel inside a winston info object (never mixed with level/message). */
const META = Symbol('shim6.meta');
const COMPONENT = Symbol('shim6.component');

// eslint-disable-next-line no-control-regex
const CONTROL_RE = /[\u0000-\u001f\u007f]/g;

function escapeControls(s: string): string {
  return s.replace(CONTROL_RE, (c) => {
    switch (c) {
      case '\n':
        return '\\n';
      case '\r':
        return '\\r';
      case '\t':
        return '\\t';
      default:
        return `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
    }
  });
}

function jsonSafe(value: unknown): string {
  try {
    return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) ?? String(value);
  } catch {
    return String(value); // a cycle
  }
}

// eslint-disable-next-line no-control-regex
const NEEDS_QUOTES_RE = /[\s"'=\\\u0000-\u001f\u007f]/;
// eslint-disable-next-line no-control-regex
const BLANK_RE = /[\s\u0000-\u001f\u007f]/;

/**
 * One meta value as text: strings (and Error messages) bare unless empty or containing
 * white space, quotes, '=', '\\' or control characters (then a JSON string); Buffers in hex;
 * objects and arrays as compact JSON (itself JSON-quoted if it contains white space).
 */
export function formatMetaValue(value: unknown): string {
  if (typeof value === 'string' || value instanceof Error) {
    const text = typeof value === 'string' ? value : value.message;
    return text === '' || NEEDS_QUOTES_RE.test(text) ? JSON.stringify(text) : text;
  }
  if (Buffer.isBuffer(value)) return value.toString('hex');
  if (value === null || typeof value !== 'object') return escapeControls(String(value));
  const json = jsonSafe(value);
  return BLANK_RE.test(json) ? JSON.stringify(json) : json;
}

/** The meta fields of a record as ` key=value ...` ('' when there are none; undefined values are left out). */
export function formatMeta(meta: LogMeta | undefined): string {
  if (meta === undefined) return '';
  let s = '';
  for (const [k, v] of Object.entries(meta)) {
    if (v === undefined) continue;
    s += ` ${escapeControls(k).replace(/[\s=]/g, '_')}=${formatMetaValue(v)}`;
  }
  return s;
}

/** One record as a line (without the newline). */
export function formatLine(time: Date, level: LogLevel, component: string, msg: string, meta?: LogMeta): string {
  return `${time.toISOString()} ${level} ${component}: ${escapeControls(msg)}${formatMeta(meta)}`;
}

interface Info extends winston.Logform.TransformableInfo {
  [META]?: LogMeta;
  [COMPONENT]?: string;
}

const lineFormat = winston.format.printf((info: Info) =>
  formatLine(new Date(), info.level as LogLevel, info[COMPONENT] ?? '', String(info.message), info[META]),
);


/** Creates the log file (mode 0644 whatever the umask) if it is missing; throws if it cannot be opened for appending. */
function createLogFile(path: string): void {
  let fd: number;
  try {
    fd = openSync(path, 'ax', 0o644);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    closeSync(openSync(path, 'a'));
    return;
  }
  try {
    fchmodSync(fd, 0o644);
  } finally {
    closeSync(fd);
  }
}

/**
 * A logger for `component` (shim6d, reapd, ...). With `file`, the directory is created (0755)
 * and the file opened (append, 0644) before this returns, so an unwritable path throws here,
 * at start-up, rather than later. Later write errors are reported once on stderr.
 */
export function createLogger(options: LoggerOptions, component: string): Logger {
  const transports: winston.transport[] = [];
  if (options.stderr) transports.push(new winston.transports.Stream({ stream: process.stderr }));
  let file: winston.transport | undefined;
  if (options.file !== undefined) {
    makeParentDir(options.file, 0o755);
    createLogFile(options.file);
    file = new winston.transports.File({ filename: options.file, options: { flags: 'a', mode: 0o644 } });
    transports.push(file);
  }
  const w = winston.createLogger({
    levels: LEVEL_NUMBERS,
    level: options.level,
    format: lineFormat,
    transports,
    exitOnError: false,
  });
  let reported = false;
  const onError = (err: unknown): void => {
    if (reported) return;
    reported = true;
    process.stderr.write(`${new Date().toISOString()} error ${component}: logging to ${options.file ?? 'stderr'} failed: ${err instanceof Error ? err.message : String(err)}\n`);
  };
  w.on('error', onError);
  file?.on('error', onError);

  let closing: Promise<void> | undefined;
  const log = (level: LogLevel) => (msg: string, meta?: LogMeta): void => {
    // Without a transport winston would warn on stderr for every record.
    if (closing || transports.length === 0 || LEVEL_NUMBERS[level] > LEVEL_NUMBERS[w.level as LogLevel]) return;
    const entry: winston.LogEntry & { [META]?: LogMeta; [COMPONENT]: string } = { level, message: msg, [COMPONENT]: component };
    if (meta !== undefined) entry[META] = meta;
    w.log(entry);
  };
  return {
    error: log('error'),
    warn: log('warn'),
    info: log('info'),
    verbose: log('verbose'),
    debug: log('debug'),
    setLevel(level: LogLevel): void {
      if (!Object.hasOwn(LEVEL_NUMBERS, level)) throw new RangeError(`not a log level: '${String(level)}'`);
      w.level = level;
    },
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        // The file transport finishes only after its write stream has flushed (winston 3.19).
        const done = file ?? w;
        done.once('finish', () => resolve());
        w.end();
      });
      return closing;
    },
  };
}
