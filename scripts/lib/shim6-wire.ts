/**
 * shim6-wire (scripts/shim6-wire.ts) driven on the testbed: a listener in one host that
 * collects the decoded messages, and single sends from another. Used by the demo and tests.
 */
import { join } from 'node:path';
import { jsonLines } from './json-lines';
import { Host, Testbed } from './testbed';
import { waitFor } from './wait';

const TSX = join(__dirname, '..', '..', 'node_modules', '.bin', 'tsx');
const WIRE = join(__dirname, '..', 'shim6-wire.ts');

export interface Shim6Listener {
  /** One decoded line per message received ({source, type, ...} or {source, error}). */
  lines: Array<Record<string, unknown>>;
  /** Resolves when the listener has exited (after `count` messages, or its timeout). */
  finished: () => Promise<void>;
}

/** Starts `shim6-wire listen` in `host` and resolves once it listens. */
export async function startShim6Listener(tb: Testbed, host: Host, count: number, timeoutMs: number): Promise<Shim6Listener> {
  const child = tb.spawn(host, TSX, [WIRE, 'listen', '--count', String(count), '--timeout-ms', String(timeoutMs)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = jsonLines(child);
  const lines = out.lines;
  const ready = (): boolean => out.stderr().includes('listening');
  const exited = out.exited;
  await waitFor(() => ready() || exited(), { what: `the Shim6 listener in ${host}`, timeoutMs: 20_000 });
  return {
    lines,
    finished: () => waitFor(() => exited(), { what: `the Shim6 listener in ${host} to finish`, timeoutMs: timeoutMs + 10_000 }).then(() => undefined),
  };
}

/** Sends one message of `type` from `host`, from locator `from` to `to`. */
export async function sendShim6(tb: Testbed, host: Host, from: string, to: string, type: string, tag: number, nonce = 1): Promise<void> {
  await tb.exec(host, [TSX, WIRE, 'send', '--from', from, '--to', to, '--type', type, '--tag', String(tag), '--nonce', String(nonce)]);
}
