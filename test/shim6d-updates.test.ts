/**
 * shim6d's locator updates and recovery on the testbed, between real daemons whose ULIDs are HBA
 * sets made by `shim6-cga generate` (issue 5):
 *
 * 1. an address B gains in one of its HBA-set prefixes reaches A's peer locator list (verified
 *    by HBA) through an Update Request/Acknowledgement, and leaves it the same way;
 * 2. from a third host on path 1, Update Requests spoofing B's locator with the right context
 *    tag are refused: a Locator List with a locator outside B's HBA set (rejected-locators),
 *    and a genuine but older Update Request replayed octet for octet (rejected-replay);
 * 3. a TCP connection between the ULIDs of a shimmed context survives B's shim6d being
 *    SIGKILLed and restarted: A's packets bring R1bis/I2bis, B rebuilds the context, and the same
 *    connection goes on delivering every byte in order;
 * 4. every control message on the wire in these tests passes tshark's checksum and type check.
 *
 * B's HBA set covers three prefixes: b1's and b2's /64, where the testbed gives it addresses,
 * and 2001:db8:b3::/64, which B only gets in test 1. So the new address is provable by HBA, as an
 * address from a new provider of a site that planned its prefixes would be (RFC 5535 section 3).
 * The Update travels on the context's current pair, so nothing has to route the new prefix.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatIPv6, parseIPv6 } from '../protocol/address';
import { ErrorCode, MessageType, VerificationMethod } from '../protocol/constants';
import { decodeControlMessage, encodeControlMessage, type ControlMessage } from '../protocol/control-message';
import { findOption } from '../protocol/options';
import { Capture, PRIME_FILTER } from '../scripts/lib/capture';
import { rawShim6Command } from '../scripts/lib/shim6-wire';
import { hbaIdentity, Shim6dProcess, type DumpContext, type DumpJson, type HbaIdentity } from '../scripts/lib/shim6d';
import { run, Testbed, type ExecResult } from '../scripts/lib/testbed';
import { CounterStream } from '../scripts/lib/counter-stream';
import { waitFor } from '../scripts/lib/wait';

const ROOT = join(__dirname, '..');

/** B's third HBA prefix: in B's set from the start, configured on B only in test 1. */
const B3_PREFIX = '2001:db8:b3::/64';
/** The third host's link to R1: the attacker's own prefix, its address, R1's address. */
const M_PREFIX = '2001:db8:e::/64';
const M_ADDRESS = '2001:db8:e::e';
const M_ROUTER = '2001:db8:e::1';

// Short update retransmissions; no conntrack heuristic (every context here is started from the
// console: the heuristic would add contexts for the capture's priming pair).
const CONFIG = { control: { updateTimeoutMs: 1000, maxUpdateTimeoutMs: 4000 }, heuristic: { enabled: false } };

/** Control message types (RFC 5533 section 5 and RFC 5534: tshark's shim6.type). */
const TYPE = MessageType;
const KNOWN_TYPES = new Set<number>(Object.values(MessageType));

interface DumpLocator {
  address: string;
  verification: string;
}
type Context = DumpContext & {
  localLocators: DumpLocator[];
  peerLocators: DumpLocator[];
  exchange: { peerGeneration?: number; localGeneration?: number; updatePending?: boolean } | null;
};
type Dump = Omit<DumpJson, 'contexts'> & { contexts: Context[]; control: Record<string, number> | null };

/** The /64 prefix of an address, as `shim6-cga generate --prefix` takes it. */
function prefixOf(address: string): string {
  const octets = Buffer.alloc(16);
  parseIPv6(address)?.copy(octets, 0, 0, 8);
  return `${formatIPv6(octets)}/64`;
}

/** An HBA set over these prefixes (Sec 0), by the real `shim6-cga generate`: its addresses in the prefixes' order. */
function generateHbaSet(prefixes: readonly string[], dir: string): string[] {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'shim6-cga'), 'generate', ...prefixes.flatMap((p) => ['--prefix', p]), '--sec', '0', '--force', '--out', dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`shim6-cga generate failed: ${r.stderr}`);
  const doc = JSON.parse(readFileSync(join(dir, 'shim6-cga.json'), 'utf8')) as { locators: string[] };
  if (doc.locators.length !== prefixes.length) throw new Error(`shim6-cga generate gave ${doc.locators.length} locators for ${prefixes.length} prefixes`);
  return doc.locators;
}

/**
 * A third host, M, on its own link to R1 (prefix 2001:db8:e::/64): off both of B's paths, it can
 * send packets to A with any source address it configures, as a host behind a provider that does
 * no ingress filtering can. Its namespace is s6tb-<ID>-m; remove() deletes it (and the link).
 */
class ThirdHost {
  readonly namespace: string;
  readonly iface: string;
  private created = false;
  private static live = new Set<string>();
  private static hooked = false;

  constructor(private readonly tb: Testbed) {
    this.namespace = `s6tb-${tb.id}-m`;
    this.iface = `s${tb.id}-m`;
  }

  exec(argv: readonly string[], check = true): Promise<ExecResult> {
    return run(['ip', 'netns', 'exec', this.namespace, ...argv], { check });
  }

  async create(): Promise<void> {
    await run(['ip', 'netns', 'add', this.namespace]);
    this.created = true;
    if (!ThirdHost.hooked) process.once('exit', ThirdHost.lastResort);
    ThirdHost.hooked = true;
    ThirdHost.live.add(this.namespace);
    await this.exec(['sysctl', '-q', '-w', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_ra=0', 'net.ipv6.conf.default.accept_ra=0']);
    const routerIface = `s${this.tb.id}-r1m`;
    const r1 = this.tb.namespaces.r1;
    await run(['ip', 'link', 'add', this.iface, 'netns', this.namespace, 'type', 'veth', 'peer', 'name', routerIface, 'netns', r1]);
    await run(['ip', '-6', '-n', r1, 'addr', 'add', `${M_ROUTER}/64`, 'dev', routerIface, 'nodad']);
    await run(['ip', '-n', r1, 'link', 'set', routerIface, 'up']);
    await run(['ip', '-n', this.namespace, 'link', 'set', 'lo', 'up']);
    await run(['ip', '-n', this.namespace, 'link', 'set', this.iface, 'up']);
    await run(['ip', '-6', '-n', this.namespace, 'addr', 'add', `${M_ADDRESS}/64`, 'dev', this.iface, 'nodad']);
    await run(['ip', '-6', '-n', this.namespace, 'route', 'add', 'default', 'via', M_ROUTER, 'dev', this.iface]);
  }

  /** Configures someone else's address on M (a /128: no route for its prefix). */
  async spoof(address: string): Promise<void> {
    await run(['ip', '-6', '-n', this.namespace, 'addr', 'add', `${address}/128`, 'dev', this.iface, 'nodad']);
  }

  /** Sends these control messages from `from` (an address of M) to `to`. */
  async send(from: string, to: string, messages: readonly Buffer[]): Promise<void> {
    await this.exec(rawShim6Command(from, to, messages.map((m) => m.toString('hex'))));
  }

  /** Kills what still runs in M and deletes its namespace (its end of the link goes with it). Idempotent. */
  async remove(): Promise<void> {
    if (!this.created) return;
    const pids = await run(['ip', 'netns', 'pids', this.namespace], { check: false });
    for (const p of pids.stdout.split('\n').filter((l) => /^\d+$/.test(l))) {
      try {
        process.kill(Number(p), 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    await run(['ip', 'netns', 'delete', this.namespace]);
    this.created = false;
    ThirdHost.live.delete(this.namespace);
  }

  // For a run whose after hook never ran (the process is leaving anyway).
  private static lastResort(): void {
    for (const ns of ThirdHost.live) {
      try {
        execFileSync('ip', ['netns', 'delete', ns], { stdio: 'ignore' });
      } catch {
        /* nothing more can be done here */
      }
    }
  }
}

/**
 * One Shim6 packet of a capture: what tshark says (addresses, P bit, type, length, checksum
 * status) and, for a control message, what our decoder reads in its octets. tshark 4.0
 * misreads the type-specific fields and options (test/wire-tshark.test.ts), so the locator
 * lists, generations and nonces come from our decoder; tshark is the independent check of the
 * type, length and checksum.
 */
interface WireRow {
  src: string;
  dst: string;
  payload: boolean;
  type: number;
  checksumStatus: string;
  /** The Shim6 header, tshark's shim6_raw. */
  octets: Buffer;
  message: ControlMessage | undefined;
}

async function wireRows(capture: Capture): Promise<WireRow[]> {
  const rows = await capture.fields(['ipv6.src', 'ipv6.dst', 'shim6.p', 'shim6.type', 'shim6.len', 'shim6.checksum.status'], 'shim6');
  const raw = await capture.rawField('shim6', 'shim6');
  assert.equal(raw.length, rows.length, 'one shim6_raw per Shim6 packet');
  return rows.map((r, i) => {
    const payload = r[2] === '1' || r[2] === 'True';
    const octets = Buffer.from(raw[i] ?? '', 'hex');
    const row: WireRow = { src: r[0] ?? '', dst: r[1] ?? '', payload, type: Number(r[3] || NaN), checksumStatus: r[5] ?? '', octets, message: undefined };
    if (!payload) {
      assert.equal((Number(r[4]) + 1) * 8, octets.length, `tshark's shim6.len covers the message (${r.join(' ')})`);
      const d = decodeControlMessage(octets, { strictReserved: false });
      assert.ok(d.ok, `our decoder reads what tshark calls Shim6 (${octets.toString('hex')}): ${d.ok ? '' : d.error.message}`);
      row.message = d.value.message;
    }
    return row;
  });
}

/** Test 4: every control message in the capture has a known type (the one our decoder reads) and a checksum tshark calls good. Returns them. */
function checkControlMessages(rows: readonly WireRow[], what: string): WireRow[] {
  const control = rows.filter((r) => !r.payload);
  for (const r of control) {
    const seen = `${r.src} → ${r.dst} type ${r.type} checksum status ${r.checksumStatus}: ${r.octets.toString('hex')}`;
    assert.ok(KNOWN_TYPES.has(r.type), `${what}: tshark sees a known message type (${seen})`);
    assert.equal(r.message && MessageType[r.message.type], r.type, `${what}: the type tshark sees is the one sent (${seen})`);
    assert.equal(r.checksumStatus, '1', `${what}: tshark says the checksum is good (${seen})`);
  }
  return control;
}

/** The Locator List a captured control message carries: its generation and addresses. */
function locatorList(r: WireRow): { generation: number; addresses: string[] } | undefined {
  const m = r.message;
  if (!m || !('options' in m)) return undefined;
  const list = findOption(m.options, 'LocatorList');
  return list && { generation: list.generation, addresses: list.locators.map((l) => l.address) };
}

describe('shim6d updates, forged and replayed Update Requests, TCP across a restart (testbed, real daemons)', function () {
  this.timeout(240_000);
  let tb: Testbed | undefined;
  let a: Shim6dProcess | undefined;
  let b: Shim6dProcess | undefined;
  let m: ThirdHost | undefined;
  let stream: CounterStream | undefined;
  const captures: Capture[] = [];
  let keys = '';
  let idA: HbaIdentity | undefined;
  /** B's HBA set: [path 1 (the ULID), path 2, b3 (not configured at start)]. */
  let setB: string[] = [];
  /** B's genuine Update Requests seen in test 1 (Shim6 octets), by generation: replayed in test 2. */
  const genuine: { add?: { octets: Buffer; generation: number; src: string }; remove?: { generation: number } } = {};

  const bed = (): Testbed => {
    if (!tb) throw new Error('no testbed');
    return tb;
  };
  const daemon = (d: Shim6dProcess | undefined): Shim6dProcess => {
    if (!d) throw new Error('shim6d not started');
    return d;
  };
  const la = (i: 0 | 1): string => {
    if (!idA) throw new Error('no identity for A');
    return idA.locators[i];
  };
  const lb = (i: 0 | 1 | 2): string => {
    const l = setB[i];
    if (l === undefined) throw new Error('no identity for B');
    return l;
  };
  const configA = (): { shim6d: Record<string, unknown> } => ({ shim6d: { ...CONFIG, identities: [join(keys, 'a')] } });
  const configB = (): { shim6d: Record<string, unknown> } => ({ shim6d: { ...CONFIG, identities: [join(keys, 'b')] } });
  const dump = async (d: Shim6dProcess | undefined): Promise<Dump> => JSON.parse(await daemon(d).console('dump json')) as Dump;
  /** The one context of a daemon. */
  const context = async (d: Shim6dProcess | undefined): Promise<Context> => {
    const j = await dump(d);
    assert.equal(j.contexts.length, 1, `one context (${JSON.stringify(j.contexts.map((c) => [c.id, c.state]))})`);
    return j.contexts[0] as Context;
  };
  const counter = async (d: Shim6dProcess | undefined, name: string): Promise<number> => (await dump(d)).control?.[name] ?? 0;
  const established = (d: Shim6dProcess | undefined, what: string, timeoutMs = 15_000): Promise<Context> =>
    waitFor(async () => {
      const j = await dump(d);
      const c = j.contexts[0];
      return j.contexts.length === 1 && c?.state === 'ESTABLISHED' ? c : undefined;
    }, { what, timeoutMs, intervalMs: 100 });
  const addresses = (ls: readonly DumpLocator[]): string[] => ls.map((l) => l.address).sort();
  /** A capture of every Shim6 packet in or out of A (both paths), ready to record. */
  const captureAtA = async (): Promise<Capture> => {
    const c = await Capture.start(bed(), 'a', 'any', `ip6 proto 140 or ${PRIME_FILTER}`);
    captures.push(c);
    // The testbed's own addresses: a pair no context has, on path 1.
    await c.primed(bed(), 'a', bed().a.locators[0] as string, bed().b.locators[0] as string);
    return c;
  };

  before(async () => {
    tb = await Testbed.create();
    keys = mkdtempSync(join(tmpdir(), 'shim6-updates-'));
    idA = await hbaIdentity(tb, 'a', join(keys, 'a'));
    const prefixesB = [...tb.b.locators.map(prefixOf), B3_PREFIX];
    assert.equal(new Set(prefixesB).size, 3, 'b3 is a prefix B does not have');
    setB = generateHbaSet(prefixesB, join(keys, 'b'));
    // B starts with the first two: one per path, as the testbed routes them.
    await tb.exec('b', ['ip', '-6', 'addr', 'add', `${lb(0)}/64`, 'dev', tb.b.interfaces[0] as string, 'nodad']);
    await tb.exec('b', ['ip', '-6', 'addr', 'add', `${lb(1)}/64`, 'dev', tb.b.interfaces[1] as string, 'nodad']);
    a = await Shim6dProcess.start(tb, 'a', configA());
    b = await Shim6dProcess.start(tb, 'b', configB());
    const capture = await captureAtA();
    assert.match(await a.console(`context ${la(0)} ${lb(0)}`), /I1 sent/);
    const ca = await established(a, 'A to establish the context with B');
    await established(b, 'B to establish the context with A');
    assert.deepEqual(addresses(ca.peerLocators), [lb(0), lb(1)].sort(), 'A knows B\'s two configured locators');
    // tshark writes what it captured a moment later: wait for the exchange in the file before stopping.
    await waitFor(async () => (await capture.fields(['shim6.type'], 'shim6').catch(() => [])).length >= 4, { what: 'the exchange in the capture file', timeoutMs: 10_000, intervalMs: 200 });
    await capture.stop();
    const rows = checkControlMessages(await wireRows(capture), 'the context exchange');
    // (A retransmission on a loaded machine repeats a type: the order of first appearance counts.)
    assert.deepEqual([...new Set(rows.map((r) => r.type))], [TYPE.I1, TYPE.R1, TYPE.I2, TYPE.R2], JSON.stringify(rows.map((r) => [r.type, r.src, r.dst])));
  });

  after(async () => {
    // Every step runs even if one before it fails; the first failure is reported.
    const failures: unknown[] = [];
    const step = async (fn: () => unknown): Promise<void> => {
      try {
        await fn();
      } catch (e) {
        failures.push(e);
      }
    };
    await step(() => stream?.stop());
    for (const c of captures) await step(() => c.cleanup());
    for (const d of [a, b]) {
      await step(async () => {
        if (!d) return;
        await d.kill();
        d.cleanup();
      });
    }
    await step(() => m?.remove());
    await step(() => tb?.destroy());
    await step(() => keys && rmSync(keys, { recursive: true, force: true }));
    if (failures.length) throw failures[0];
  });

  it('an address B gains in its HBA set reaches A\'s peer locators (verified by HBA) through an Update Request/Ack, and leaves them the same way', async () => {
    const capture = await captureAtA();
    const b3 = lb(2);
    const [acceptedBefore, sentBefore, ackedBefore] = [await counter(a, 'update-accepted'), await counter(b, 'update-sent'), await counter(b, 'update-acknowledged')];
    const iface = bed().b.interfaces[0] as string;
    await bed().exec('b', ['ip', '-6', 'addr', 'add', `${b3}/64`, 'dev', iface, 'nodad']);

    const added = await waitFor(async () => {
      const c = await context(a);
      return c.peerLocators.some((l) => l.address === b3) ? c : undefined;
    }, { what: `A to list ${b3} as B's locator`, timeoutMs: 15_000, intervalMs: 100 });
    assert.deepEqual(added.peerLocators.find((l) => l.address === b3), { address: b3, verification: 'hba' }, 'verified by HBA');
    assert.deepEqual(addresses(added.peerLocators), [lb(0), lb(1), b3].sort());
    const addGeneration = added.exchange?.peerGeneration;
    assert.equal(typeof addGeneration, 'number');
    assert.equal(await counter(a, 'update-accepted'), acceptedBefore + 1, 'A accepted one Update Request');
    assert.ok((await counter(b, 'update-sent')) > sentBefore, 'B sent an Update Request');
    await waitFor(async () => (await counter(b, 'update-acknowledged')) === ackedBefore + 1, { what: 'B to get the Update Acknowledgement', timeoutMs: 10_000, intervalMs: 100 });
    assert.deepEqual(addresses((await context(b)).localLocators), [lb(0), lb(1), b3].sort(), 'B announces the new locator');
    assert.equal((await context(a)).currentPair.peer, lb(0), 'the context stays on its pair');

    await bed().exec('b', ['ip', '-6', 'addr', 'del', `${b3}/64`, 'dev', iface]);
    const removed = await waitFor(async () => {
      const c = await context(a);
      return c.peerLocators.some((l) => l.address === b3) ? undefined : c;
    }, { what: `A to drop ${b3} from B's locators`, timeoutMs: 15_000, intervalMs: 100 });
    assert.deepEqual(removed.peerLocators.map((l) => l.verification), ['hba', 'hba']);
    assert.deepEqual(addresses(removed.peerLocators), [lb(0), lb(1)].sort());
    const removeGeneration = removed.exchange?.peerGeneration;
    assert.equal(typeof removeGeneration, 'number');
    assert.equal(await counter(a, 'update-accepted'), acceptedBefore + 2, 'A accepted a second Update Request');
    await waitFor(async () => (await counter(b, 'update-acknowledged')) === ackedBefore + 2, { what: 'B to get the second Update Acknowledgement', timeoutMs: 10_000, intervalMs: 100 });
    assert.equal((await context(b)).exchange?.updatePending, false);

    // On the wire: B's Update Requests, with and then without b3, each acknowledged by A.
    await capture.stop();
    const rows = checkControlMessages(await wireRows(capture), 'updates');
    const urs = rows.filter((r) => r.type === TYPE.UpdateRequest);
    const lists = urs.map((r) => locatorList(r));
    const withB3 = urs.filter((_, i) => lists[i]?.addresses.includes(b3));
    const withoutB3 = urs.filter((_, i) => lists[i] && !lists[i].addresses.includes(b3));
    assert.ok(withB3.length >= 1 && withoutB3.length >= 1, `an Update Request with b3, then one without (${JSON.stringify(lists)})`);
    assert.equal(withB3.length + withoutB3.length, urs.length, 'each with a Locator List');
    for (const r of urs) assert.deepEqual([r.src, r.dst], [lb(0), la(0)], 'from B\'s locator of the current pair to A\'s');
    assert.deepEqual(withB3.map((r) => locatorList(r)?.generation), withB3.map(() => addGeneration), 'the Update Request A accepted with b3');
    assert.deepEqual(withoutB3.map((r) => locatorList(r)?.generation), withoutB3.map(() => removeGeneration), 'the Update Request A accepted without b3');
    assert.ok(urs.indexOf(withB3[0] as WireRow) < urs.indexOf(withoutB3[0] as WireRow), 'the addition comes first');
    // A's acknowledgements: to B's tag for the context, with the nonce of each request.
    const uas = rows.filter((r) => r.type === TYPE.UpdateAcknowledgement);
    for (const r of uas) assert.deepEqual([r.src, r.dst], [la(0), lb(0)]);
    const nonce = (r: WireRow | undefined): number | undefined => (r?.message?.type === 'UpdateRequest' || r?.message?.type === 'UpdateAcknowledgement' ? r.message.requestNonce : undefined);
    const acked = new Set(uas.map(nonce));
    assert.ok(acked.has(nonce(withB3[withB3.length - 1])) && acked.has(nonce(withoutB3[withoutB3.length - 1])), 'A acknowledged both requests');
    for (const r of uas) assert.equal(r.message?.type === 'UpdateAcknowledgement' && r.message.receiverContextTag, added.peerContextTag, 'to B\'s tag');
    assert.deepEqual(rows.filter((r) => r.type !== TYPE.UpdateRequest && r.type !== TYPE.UpdateAcknowledgement).map((r) => r.type), [], 'nothing but updates');

    // Kept for test 2: the genuine Update Request that added b3, octet for octet.
    const first = withB3[0] as WireRow;
    genuine.add = { octets: first.octets, generation: addGeneration as number, src: first.src };
    genuine.remove = { generation: removeGeneration as number };
  });

  it('Update Requests forged from a third host with B\'s locator and tag are refused and counted: a locator outside B\'s HBA set, and a replay of B\'s older genuine one', async () => {
    const add = genuine.add;
    if (!add || !genuine.remove) throw new Error('needs the Update Requests of the previous test');
    m = new ThirdHost(bed());
    await m.create();
    const capture = await captureAtA();
    const before = await context(a);
    const peerGeneration = before.exchange?.peerGeneration;
    assert.equal(peerGeneration, genuine.remove.generation);
    const counts = async (): Promise<Record<string, number>> => ({
      locators: await counter(a, 'rejected-locators'),
      replay: await counter(a, 'rejected-replay'),
      accepted: await counter(a, 'update-accepted'),
      r1: await counter(a, 'r1-sent'),
    });
    const start = await counts();
    const unchanged = async (what: string): Promise<void> => {
      const now = await context(a);
      assert.deepEqual(now.peerLocators, before.peerLocators, `${what}: A's peer locator list unchanged`);
      assert.equal(now.exchange?.peerGeneration, peerGeneration, `${what}: generation unchanged`);
      assert.equal(now.state, 'ESTABLISHED');
      assert.equal(now.peerContextTag, before.peerContextTag);
    };

    // M reaches A: an I1 from its own address gets a (stateless) R1 back.
    await m.send(M_ADDRESS, la(0), [encodeControlMessage({ type: 'I1', initiatorContextTag: 77, initiatorNonce: 77, options: [] })]);
    await waitFor(async () => (await counter(a, 'r1-sent')) === start['r1'] + 1, { what: 'A to answer the third host\'s I1', timeoutMs: 10_000, intervalMs: 100 });
    assert.equal((await dump(a)).contexts.length, 1, 'an I1 makes no state');

    // M takes B's locator of the current pair as its source, and A's tag for the context
    // (anyone on path 1 sees it in B's Update Requests).
    const spoofed = before.currentPair.peer;
    assert.equal(spoofed, lb(0));
    await m.spoof(spoofed);
    const hba = (address: string): { address: string; verificationMethod: number } => ({ address, verificationMethod: VerificationMethod.HBA });
    const forged = encodeControlMessage({
      type: 'UpdateRequest',
      receiverContextTag: before.localContextTag,
      requestNonce: 0x5eed,
      options: [{ kind: 'LocatorList', generation: ((peerGeneration as number) + 1) >>> 0, locators: [...before.peerLocators.map((l) => hba(l.address)), hba(M_ADDRESS)] }],
    });
    await m.send(spoofed, la(0), [forged]);
    await waitFor(async () => (await counter(a, 'rejected-locators')) === start['locators'] + 1, { what: 'A to refuse a Locator List with the third host\'s address', timeoutMs: 10_000, intervalMs: 100 });
    await unchanged('a locator outside the HBA set');
    assert.match(daemon(a).log(), /control: rejected-locators.*hba-not-in-set/);

    // The same with the attacker's own HBA parameters (over its prefix and b1's): B's ULID is not theirs.
    const ownSet = generateHbaSet([M_PREFIX, prefixOf(lb(0))], join(keys, 'm'));
    const ownParameters = readFileSync(join(keys, 'm', 'cga-params.bin'));
    const forgedWithParameters = encodeControlMessage({
      type: 'UpdateRequest',
      receiverContextTag: before.localContextTag,
      requestNonce: 0x5eee,
      options: [
        { kind: 'LocatorList', generation: ((peerGeneration as number) + 2) >>> 0, locators: [hba(lb(0)), ...ownSet.map(hba)] },
        { kind: 'CgaParameterDataStructure', data: ownParameters },
      ],
    });
    await m.send(spoofed, la(0), [forgedWithParameters]);
    await waitFor(async () => (await counter(a, 'rejected-locators')) === start['locators'] + 2, { what: 'A to refuse a Locator List under the attacker\'s own HBA parameters', timeoutMs: 10_000, intervalMs: 100 });
    await unchanged('the attacker\'s own parameters');
    assert.match(daemon(a).log(), /control: rejected-locators.*ulid-not-secured/);

    // B's genuine Update Request that added b3, replayed from M: an older generation.
    assert.equal(add.src, spoofed);
    await m.send(add.src, la(0), [add.octets]);
    await waitFor(async () => (await counter(a, 'rejected-replay')) === start['replay'] + 1, { what: 'A to refuse the replayed Update Request', timeoutMs: 10_000, intervalMs: 100 });
    await unchanged('a replay');
    assert.ok(!(await context(a)).peerLocators.some((l) => l.address === lb(2)), 'b3 stays gone');
    assert.equal((await counts())['accepted'], start['accepted'], 'no Update Request accepted');
    const stats = await daemon(a).console('stats');
    assert.match(stats, new RegExp(`rejected-locators ${start['locators'] + 2}\\b`), stats);
    assert.match(stats, new RegExp(`rejected-replay ${start['replay'] + 1}\\b`), stats);

    // On the wire: the I1 and R1, the three Update Requests from "B", A's Errors (locator
    // verification failed) for the two forged lists, and no acknowledgement at all.
    await capture.stop();
    const rows = checkControlMessages(await wireRows(capture), 'forgeries');
    const urs = rows.filter((r) => r.type === TYPE.UpdateRequest);
    assert.deepEqual(urs.map((r) => r.octets.toString('hex')), [forged, forgedWithParameters, add.octets].map((o) => o.toString('hex')), 'the three Update Requests, as sent');
    for (const r of urs) assert.deepEqual([r.src, r.dst], [spoofed, la(0)]);
    assert.equal(rows.filter((r) => r.type === TYPE.UpdateAcknowledgement).length, 0, 'nothing acknowledged');
    const errors = rows.filter((r) => r.type === TYPE.Error);
    assert.equal(errors.length, 2, `an Error for each forged list (${JSON.stringify(rows.map((r) => [r.type, r.src, r.dst]))})`);
    for (const r of errors) {
      assert.deepEqual([r.src, r.dst], [la(0), spoofed]);
      assert.equal(r.message?.type === 'Error' && r.message.errorCode, ErrorCode.LocatorVerificationMethodFailed);
    }
    assert.deepEqual(rows.filter((r) => r.type === TYPE.I1 || r.type === TYPE.R1).map((r) => [r.type, r.src, r.dst]), [
      [TYPE.I1, M_ADDRESS, la(0)],
      [TYPE.R1, la(0), M_ADDRESS],
    ]);
  });

  it('a TCP connection between the ULIDs of a shimmed context survives B\'s SIGKILL and restart: R1bis/I2bis rebuild the context and the same connection delivers every byte in order', async () => {
    const capture = await captureAtA();
    stream = await CounterStream.start(bed(), { from: ['a', la(0)], to: ['b', lb(0)], intervalMs: 10 });
    assert.deepEqual([stream.source.localAddress, stream.source.remoteAddress], [la(0), lb(0)], 'between the ULIDs');
    assert.deepEqual([stream.sink.remoteAddress, stream.sink.remotePort], [stream.source.localAddress, stream.source.localPort], 'one connection, seen from both ends');
    const s = stream;
    const received = (): number => s.report().received;
    const progress = async (n: number, what: string, timeoutMs = 15_000): Promise<number> => (await s.waitForReceived(n, timeoutMs, what)).received;
    await progress(20, 'counters on the ULID pair');

    // Both ends move the context to path 2, and path 1 breaks: every packet must carry the payload header.
    const ca = await context(a);
    const cb = await context(b);
    assert.match(await daemon(a).console(`shim ${ca.id} ${la(1)} ${lb(1)}`), /shimmed/);
    assert.match(await daemon(b).console(`shim ${cb.id} ${lb(1)} ${la(1)}`), /shimmed/);
    await bed().cut(1);
    try {
      await progress(received() + 50, 'counters over the shimmed path 2');
      const shimmed = await context(a);
      assert.ok(shimmed.counters.shimmedPackets > 0 && shimmed.counters.deshimmedPackets > 0, 'A shims and deshims the connection');
      const i2bisBefore = await counter(a, 'i2bis-sent');

      await daemon(b).kill();
      daemon(b).cleanup();
      const oldPid = daemon(b).pid;
      const atRestart = received();
      b = await Shim6dProcess.start(bed(), 'b', configB());
      assert.notEqual(daemon(b).pid, oldPid, 'a new shim6d, without the old state');

      // A's next packets carry B's old tag: R1bis from B, I2bis from A, B rebuilds the context.
      const rebuilt = await established(b, 'B to rebuild the context', 60_000);
      assert.equal(rebuilt.localContextTag, cb.localContextTag, 'B took back the tag A still uses');
      assert.equal(rebuilt.peerContextTag, ca.localContextTag);
      assert.deepEqual([rebuilt.localUlid, rebuilt.peerUlid], [lb(0), la(0)]);
      assert.deepEqual(rebuilt.currentPair, { local: lb(1), peer: la(1) }, 'on the pair the recovery used');
      assert.equal(rebuilt.shimmed, true);
      // (A's retransmissions may be quick enough to rebuild it before the console first answers.)
      assert.ok((await counter(b, 'r1bis-sent')) >= 1, 'B sent R1bis');
      const log = daemon(b).log();
      assert.ok(/control: r1bis-sent/.test(log) && log.indexOf('control: r1bis-sent') < log.indexOf('control: established'), 'B rebuilt the context after its R1bis');
      assert.ok((await counter(a, 'i2bis-sent')) > i2bisBefore, 'A sent I2bis');
      assert.equal((await context(a)).state, 'ESTABLISHED');

      // The same connection goes on: well past where it stood when B restarted.
      await progress(atRestart + 200, 'the connection to deliver again after the restart', 60_000);
      const rebuiltCounters = (await context(b)).counters;
      assert.ok(rebuiltCounters.deshimmedPackets > 0 && rebuiltCounters.shimmedPackets > 0, 'through the rebuilt context, both ways');
      const end = await s.finish();
      assert.equal(end.received, end.sent, `every counter arrived, once and in order (${JSON.stringify(end)})`);
      assert.equal(end.bytes, end.sent * 8);
      assert.equal(end.leftover, 0);
    } finally {
      stream.stop();
      await bed().restore(1);
    }

    await capture.stop();
    const rows = await wireRows(capture);
    const control = checkControlMessages(rows, 'recovery');
    assert.ok(rows.some((r) => r.payload && r.src === la(1) && r.dst === lb(1)), 'shimmed payload packets on path 2');
    const types = control.map((r) => r.type);
    const r1bis = control.find((r) => r.type === TYPE.R1bis);
    assert.ok(r1bis, `R1bis on the wire (${JSON.stringify(types)})`);
    assert.deepEqual([r1bis.src, r1bis.dst], [lb(1), la(1)]);
    const i2bis = control.find((r) => r.type === TYPE.I2bis);
    assert.ok(i2bis && control.indexOf(i2bis) > control.indexOf(r1bis), `then I2bis (${JSON.stringify(types)})`);
    assert.deepEqual([i2bis.src, i2bis.dst], [la(1), lb(1)]);
    const r2 = control.find((r) => r.type === TYPE.R2);
    assert.ok(r2 && control.indexOf(r2) > control.indexOf(i2bis), `then R2 (${JSON.stringify(types)})`);
    assert.deepEqual(locatorList(r2)?.addresses.sort(), [lb(0), lb(1)].sort(), 'B\'s locator list in the R2');
  });
});
