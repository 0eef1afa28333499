/**
 * Thread entry of the worker that worker.ts starts: runs one modifier search and posts
 * progress and the result to the parent. Not a module to import.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { searchModifier } from './modifier-search';
import type { SearchMessage, SearchRequest } from './worker';

function isSearchRequest(d: unknown): d is SearchRequest {
  if (typeof d !== 'object' || d === null) return false;
  const r = d as Partial<SearchRequest>;
  return r.hash2Input instanceof Uint8Array && r.start instanceof Uint8Array
    && typeof r.sec === 'number' && typeof r.progressEvery === 'number'
    && (r.maxAttempts === null || typeof r.maxAttempts === 'number');
}

function run(): void {
  const port = parentPort;
  if (isMainThread || !port || !isSearchRequest(workerData)) return;
  const req = workerData;
  const post = (m: SearchMessage): void => port.postMessage(m);
  let attempts = 0;
  const found = searchModifier(req.hash2Input, req.sec, req.start, {
    progressEvery: req.progressEvery,
    maxAttempts: req.maxAttempts ?? undefined,
    onProgress: (p) => {
      attempts = p.attempts;
      post({ type: 'progress', attempts: p.attempts, expectedAttempts: p.expectedAttempts });
    },
  });
  if (found) post({ type: 'found', modifier: found.modifier, attempts: found.attempts });
  else post({ type: 'exhausted', attempts: req.maxAttempts ?? attempts });
}

run();
