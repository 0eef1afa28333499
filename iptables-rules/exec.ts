/**
 * Running the netfilter CLIs (ip6tables, ip6tables-restore, ip6tables-save, ipset): argument
 * arrays only (spawn, never a shell), optional stdin, a timeout, and typed errors.
 */
import { spawn } from 'node:child_process';

export interface RunResult {
  /** Exit status; null when the command was killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs argv with `input` on stdin. Resolves whatever the exit status; rejects only when the
 * program cannot be started (the spawn error, e.g. code ENOENT).
 */
export type Runner = (argv: readonly string[], input: string | undefined, timeoutMs: number) => Promise<RunResult>;

export const spawnRunner: Runner = (argv, input, timeoutMs) => {
  const [cmd, ...args] = argv;
  if (cmd === undefined) return Promise.reject(new RangeError('empty command'));
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin.on('error', () => undefined); // it may exit before reading all its input
    child.stdin.end(input ?? '');
  });
};

/** Base class of every error of this module's commands. */
export class NetfilterError extends Error {
  override name = 'NetfilterError';
  constructor(
    message: string,
    /** The full command line, including any `ip netns exec NAME` prefix. */
    readonly argv: readonly string[],
    /** Exit status (null: killed, or never started). */
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(message);
  }
}

/** A program (ip6tables, ipset, ...) is not installed or not on PATH. */
export class CommandNotFoundError extends NetfilterError {
  override name = 'CommandNotFoundError';
  constructor(
    readonly command: string,
    argv: readonly string[],
    exitCode: number | null,
    stderr: string,
  ) {
    super(`'${command}' is not installed (or not on PATH): install the Debian package ${packageOf(command)}`, argv, exitCode, stderr);
  }
}

/** Not root (no CAP_NET_ADMIN): netfilter refuses. */
export class NotPermittedError extends NetfilterError {
  override name = 'NotPermittedError';
  constructor(argv: readonly string[], exitCode: number | null, stderr: string) {
    super(`${argv.join(' ')}: not permitted: shim6 must run as root (CAP_NET_ADMIN)${detail(stderr)}`, argv, exitCode, stderr);
  }
}

/** The network namespace given as `netns` does not exist. */
export class NetnsNotFoundError extends NetfilterError {
  override name = 'NetnsNotFoundError';
  constructor(
    readonly netns: string,
    argv: readonly string[],
    exitCode: number | null,
    stderr: string,
  ) {
    super(`network namespace '${netns}' does not exist`, argv, exitCode, stderr);
  }
}

/** The kernel lacks a feature (for example the ipset type hash:net,net). */
export class KernelSupportError extends NetfilterError {
  override name = 'KernelSupportError';
  constructor(argv: readonly string[], exitCode: number | null, stderr: string) {
    super(`${argv.join(' ')}: not supported by this kernel${detail(stderr)}`, argv, exitCode, stderr);
  }
}

/** Any other failure: the command's own message is in `stderr`. */
export class CommandFailedError extends NetfilterError {
  override name = 'CommandFailedError';
  constructor(argv: readonly string[], exitCode: number | null, stderr: string, signal: NodeJS.Signals | null = null) {
    const how = exitCode === null ? `killed (${signal ?? 'timeout'})` : `exit status ${exitCode}`;
    super(`${argv.join(' ')}: ${how}${detail(stderr)}`, argv, exitCode, stderr);
  }
}

function detail(stderr: string): string {
  const first = stderr.trim().split('\n')[0];
  return first ? `: ${first}` : '';
}

function packageOf(command: string): string {
  const base = command.slice(command.lastIndexOf('/') + 1);
  if (base.startsWith('ip6tables') || base.startsWith('iptables')) return 'iptables';
  if (base === 'ipset') return 'ipset';
  if (base === 'ip') return 'iproute2';
  return `that provides ${base}`;
}

/** The typed error for a failed or unstartable command. */
export function classify(argv: readonly string[], outcome: RunResult | NodeJS.ErrnoException): NetfilterError {
  if (outcome instanceof Error) {
    if (outcome.code === 'ENOENT') return new CommandNotFoundError(argv[0] ?? '?', argv, null, outcome.message);
    if (outcome.code === 'EACCES') return new NotPermittedError(argv, null, outcome.message);
    return new CommandFailedError(argv, null, outcome.message);
  }
  const { code, stderr, signal } = outcome;
  const notFound = /exec of "([^"]+)" failed: No such file or directory/.exec(stderr);
  if (notFound?.[1] !== undefined) return new CommandNotFoundError(notFound[1], argv, code, stderr);
  const noNetns = /Cannot open network namespace "([^"]+)"/.exec(stderr);
  if (noNetns?.[1] !== undefined) return new NetnsNotFoundError(noNetns[1], argv, code, stderr);
  if (/Permission denied|Operation not permitted|must be root/i.test(stderr)) return new NotPermittedError(argv, code, stderr);
  if (/set type not supported|Couldn't load match|Couldn't load target|not supported/i.test(stderr)) return new KernelSupportError(argv, code, stderr);
  return new CommandFailedError(argv, code, stderr, signal);
}
