/**
 * The modifier search in a worker thread, so that a daemon's event loop keeps running
 * while a Sec >= 1 CGA or HBA set is generated. Progress is reported through a
 * callback; an AbortSignal terminates the worker.
 *
 * The thread entry is worker-main.ts (worker-main.js once built). When running from
 * TypeScript sources (tsx), the worker loads tsx's CommonJS hook itself.
 */
import { extname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { DEFAULT_PROGRESS_EVERY, type ModifierFound, type ModifierSearchProgress } from './modifier-search';

export interface AsyncSearchOptions {
  /** Aborting terminates the worker and rejects with an AbortError. */
  signal?: AbortSignal;
  onProgress?: (progress: ModifierSearchProgress) => void;
  /** Attempts between progress reports (default 65536). */
  progressEvery?: number;
  /** Reject (with an Error) after this many attempts. */
  maxAttempts?: number;
}

/** What the main thread hands the worker (structured-cloned). */
export interface SearchRequest {
  hash2Input: Uint8Array;
  sec: number;
  start: Uint8Array;
  progressEvery: number;
  maxAttempts: number | null;
}

/** What the worker posts back. */
export type SearchMessage =
  | { type: 'progress'; attempts: number; expectedAttempts: number }
  | { type: 'found'; modifier: Uint8Array; attempts: number }
  | { type: 'exhausted'; attempts: number };

function isSearchMessage(m: unknown): m is SearchMessage {
  if (typeof m !== 'object' || m === null) return false;
  const t = (m as { type?: unknown }).type;
  return t === 'progress' || t === 'found' || t === 'exhausted';
}

function abortError(): Error {
  return new DOMException('CGA modifier search aborted', 'AbortError');
}

/** The worker entry file next to this module, and what Node needs to run it. */
function workerEntry(): { file: string; execArgv: string[] | undefined } {
  const ext = extname(__filename);
  const file = join(__dirname, `worker-main${ext}`);
  if (ext === '.ts') return { file, execArgv: ['--require', require.resolve('tsx/cjs')] };
  return { file, execArgv: undefined };
}

/** Runs searchModifier (modifier-search.ts) in a worker thread. */
export function searchModifierInWorker(
  hash2Input: Uint8Array,
  sec: number,
  start: Uint8Array,
  options: AsyncSearchOptions = {},
): Promise<ModifierFound> {
  const { signal } = options;
  if (signal?.aborted) return Promise.reject(abortError());
  if (sec === 0) return Promise.resolve({ modifier: Buffer.from(start), attempts: 0 });
  const request: SearchRequest = {
    hash2Input: Uint8Array.from(hash2Input),
    sec,
    start: Uint8Array.from(start),
    progressEvery: options.progressEvery ?? DEFAULT_PROGRESS_EVERY,
    maxAttempts: options.maxAttempts ?? null,
  };
  return new Promise<ModifierFound>((resolve, reject) => {
    const entry = workerEntry();
    const worker = new Worker(entry.file, { workerData: request, execArgv: entry.execArgv });
    let settled = false;
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      void worker.terminate();
      fn();
    };
    const onAbort = (): void => settle(() => reject(abortError()));
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.on('message', (m: unknown) => {
      if (settled || !isSearchMessage(m)) return;
      if (m.type === 'progress') options.onProgress?.({ attempts: m.attempts, expectedAttempts: m.expectedAttempts });
      else if (m.type === 'found') settle(() => resolve({ modifier: Buffer.from(m.modifier), attempts: m.attempts }));
      else settle(() => reject(new Error(`modifier search gave up after ${m.attempts} attempts`)));
    });
    worker.on('error', (e: Error) => settle(() => reject(e)));
    worker.on('exit', (code) => settle(() => reject(new Error(`modifier search worker exited (code ${code})`))));
  });
}
