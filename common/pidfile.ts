/**
 * PID files: one running instance per daemon and configuration. A daemon acquires its file at
 * start-up (refusing to start when the file names a live process) and releases it on exit.
 *
 *   const pid = acquirePidFile(config.shim6d.pidFile);   // throws AlreadyRunningError
 *   ...
 *   pid.release();
 *
 * The file holds the decimal pid and a newline, mode 0644. A stale file (its process is gone)
 * or one holding anything else is replaced. Two daemons replacing the same stale file at the
 * same instant could both start: the window is the few microseconds between reading the stale
 * pid and the exclusive create, and the init script starts each daemon once.
 */
import { closeSync, fchmodSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { makeParentDir } from './fs';

/** The PID file names a live process other than this one. */
export class AlreadyRunningError extends Error {
  override readonly name = 'AlreadyRunningError';

  constructor(
    readonly pid: number,
    readonly path: string,
  ) {
    super(`already running: ${path} names live process ${pid}`);
  }
}

/** A PID file this process holds. */
export interface PidFile {
  readonly path: string;
  readonly pid: number;
  /** Removes the file if it still holds our pid; true if it removed it. Idempotent. */
  release(): boolean;
}

/** Largest pid accepted from a file (Linux never assigns more than PID_MAX_LIMIT, 2^22). */
const MAX_PID = 2 ** 31 - 1;

/** The pid a PID file holds; undefined if the file is absent or does not hold exactly one positive decimal pid. */
export function readPidFile(path: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'latin1');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const m = /^\s*([1-9]\d{0,9})\s*$/.exec(text);
  if (!m?.[1]) return undefined;
  const pid = Number(m[1]);
  return pid <= MAX_PID ? pid : undefined;
}

/**
 * True if a process with this pid exists (signal 0 succeeds, or fails with EPERM: it exists
 * but belongs to another user). A zombie counts as alive until it is reaped.
 */
export function processAlive(pid: number): boolean {
  // 0 and negative pids would address process groups.
  if (!Number.isInteger(pid) || pid < 1) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function unlinkIfPresent(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}


/**
 * Creates the PID file `path` holding our pid (its directory too, mode 0755, if missing).
 * Throws AlreadyRunningError if it names another live process; replaces a stale or garbage
 * file (or one naming us). Other file-system errors (EACCES, ...) are thrown as they are.
 */
export function acquirePidFile(path: string): PidFile {
  const pid = process.pid;
  makeParentDir(path, 0o755);
  for (let attempt = 0; ; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx', 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 5) throw err;
      const holder = readPidFile(path);
      if (holder !== undefined && holder !== pid && processAlive(holder)) throw new AlreadyRunningError(holder, path);
      unlinkIfPresent(path); // stale, garbage, or ours from before an exec
      continue;
    }
    try {
      fchmodSync(fd, 0o644); // whatever the umask
      const text = `${pid}\n`;
      if (writeSync(fd, text) !== text.length) throw new Error(`${path}: short write`);
    } catch (err) {
      closeSync(fd);
      unlinkIfPresent(path);
      throw err;
    }
    closeSync(fd);
    return pidFile(path, pid);
  }
}

function pidFile(path: string, pid: number): PidFile {
  let released = false;
  return {
    path,
    pid,
    release(): boolean {
      if (released) return false;
      released = true;
      let holder: number | undefined;
      try {
        holder = readPidFile(path);
      } catch {
        return false;
      }
      if (holder !== pid) return false;
      unlinkIfPresent(path);
      return true;
    },
  };
}
