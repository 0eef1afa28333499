/**
 * shim6-wire (scripts/shim6-wire.ts) driven on the testbed: a listener in one host that
 * collects the decoded messages, and single sends from another; and raw Shim6 packets, any
 * octets at all, sent from an exact source. Used by the demo and tests.
 */
import { join } from 'node:path';
import { jsonLines } from './json-lines';
import { Host, Testbed } from './testbed';
import { waitFor } from './wait';

const ROOT = join(__dirname, '..', '..');
const TSX = join(ROOT, 'node_modules', '.bin', 'tsx');
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

/**
 * A Node program: sends each argument after the first two (hex) once as a protocol-140 packet,
 * from argv[1] to argv[2], by shim6d's own raw socket (dist/, bound to the source, which must be
 * an address of the namespace it runs in).
 */
const RAW_SHIM6_SENDER = `
const { Shim6Sender } = require(${JSON.stringify(join(ROOT, 'dist', 'protocol', 'shim6-socket.js'))});
const [from, to, ...hex] = process.argv.slice(1);
const s = new Shim6Sender();
for (const h of hex) s.send(Buffer.from(h, 'hex'), from, to);
s.close();
`;

/** The command that sends these packets (the octets after the IPv6 header, in hex) from `from` to `to`: run it inside a namespace. */
export function rawShim6Command(from: string, to: string, hexes: readonly string[]): string[] {
  return [process.execPath, '-e', RAW_SHIM6_SENDER, from, to, ...hexes];
}

/**
 * Sends each of `hexes` (the octets after the IPv6 header: a control message, a payload header
 * and what follows, or garbage) once as a Shim6 packet from `host`, from its address `from` to `to`.
 */
export async function sendRawShim6(tb: Testbed, host: Host, from: string, to: string, hexes: readonly string[]): Promise<void> {
  await tb.exec(host, rawShim6Command(from, to, hexes));
}
