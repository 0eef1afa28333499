/**
 * REAP between real daemons (reapd and shim6d on each testbed host, HBA ULIDs from
 * `shim6-cga generate`), with a long-lived TCP stream between the ULIDs: a counter every
 * 10 ms, the receiver checking that every counter is the next one. Path failures are real
 * (the testbed's routers drop the traffic); the stream must carry on with no reset and no
 * lost or reordered octet, over whichever pair REAP finds, and come back when the ULID pair
 * works again. Then both daemons are SIGKILLed and restarted under the running stream, and
 * every Keepalive and Probe captured passes tshark's checksum and type check.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Capture, PRIME_FILTER } from '../scripts/lib/capture';
import { CounterStream } from '../scripts/lib/counter-stream';
import { hbaIdentity, ReapdProcess, Shim6dProcess, type DumpContext, type HbaIdentity } from '../scripts/lib/shim6d';
import { Testbed } from '../scripts/lib/testbed';
import { waitFor } from '../scripts/lib/wait';

type Side = 'a' | 'b';

// Aggressive timers: a failure is noticed in about 2 s, exploration probes every 0.2 s.
const REAP_TIMERS = { keepaliveTimeout: 1, sendTimeoutMs: 2000, initialProbes: 4, initialProbeIntervalMs: 200, maxProbeIntervalMs: 2000, ulidRetryIntervalMs: 1000 };

describe('reapd failover (testbed, real daemons, a TCP stream between the ULIDs)', function () {
  this.timeout(300_000);
  let tb: Testbed | undefined;
  let keys = '';
  const ids: Partial<Record<Side, HbaIdentity>> = {};
  const reapd: Partial<Record<Side, ReapdProcess>> = {};
  const shim6d: Partial<Record<Side, Shim6dProcess>> = {};
  let stream: CounterStream | undefined;
  let capture: Capture | undefined;

  const bed = (): Testbed => {
    if (!tb) throw new Error('no testbed');
    return tb;
  };
  const id = (h: Side): HbaIdentity => {
    const i = ids[h];
    if (!i) throw new Error('no identity');
    return i;
  };
  const d = (h: Side): Shim6dProcess => {
    const x = shim6d[h];
    if (!x) throw new Error(`shim6d ${h} not started`);
    return x;
  };
  const s = (): CounterStream => {
    if (!stream) throw new Error('no stream');
    return stream;
  };
  const config = (h: Side): Record<string, unknown> => ({
    shim6d: { identities: [id(h).dir], heuristic: { enabled: true, packets: 50, pollMs: 200 }, reap: { intervalMs: 200 } },
    reapd: { timers: REAP_TIMERS },
  });
  const context = async (h: Side): Promise<DumpContext | undefined> => {
    const j = await d(h).dumpJson();
    return j.contexts.find((c) => c.state === 'ESTABLISHED');
  };
  /** Waits until host h's context runs on a pair that satisfies `ok`; returns it. */
  const onPair = (h: Side, what: string, ok: (c: DumpContext) => boolean, timeoutMs = 60_000): Promise<DumpContext> =>
    waitFor(async () => {
      const c = await context(h);
      return c && ok(c) ? c : undefined;
    }, { what: `${h}: ${what}`, timeoutMs, intervalMs: 100 });
  const startDaemons = async (h: Side): Promise<void> => {
    reapd[h] = await ReapdProcess.start(bed(), h, config(h));
    shim6d[h] = await Shim6dProcess.start(bed(), h, config(h));
  };

  before(async () => {
    tb = await Testbed.create();
    keys = mkdtempSync(join(tmpdir(), 'shim6-reap-'));
    ids.a = await hbaIdentity(tb, 'a', join(keys, 'a'));
    ids.b = await hbaIdentity(tb, 'b', join(keys, 'b'));
    capture = await Capture.start(tb, 'a', tb.a.interfaces[1] as string, `ip6 proto 140 or ${PRIME_FILTER}`);
    await capture.primed(tb, 'a', tb.a.locators[1] as string, tb.b.locators[1] as string);
    await startDaemons('a');
    await startDaemons('b');
  });

  after(async () => {
    stream?.stop();
    for (const h of ['a', 'b'] as const) {
      await shim6d[h]?.kill();
      await reapd[h]?.kill();
      shim6d[h]?.cleanup();
    }
    await capture?.stop().catch(() => undefined);
    capture?.cleanup();
    await tb?.destroy();
    if (keys) rmSync(keys, { recursive: true, force: true });
  });

  it('the stream\'s traffic alone establishes the context, and reapd reports it operational on the ULID pair', async () => {
    stream = await CounterStream.start(bed(), { from: ['a', id('a').ulid], to: ['b', id('b').ulid] });
    for (const h of ['a', 'b'] as const) {
      const c = await onPair(h, 'established and REAP operational on the ULIDs', (x) => x.reap?.state === 'operational' && !x.shimmed, 30_000);
      assert.equal(c.currentPair.local, id(h).ulid);
    }
    await s().waitForMore(100);
  });

  it('path 1 cut both ways: both ends move to path 2 and the stream carries on, in order, without a reset', async () => {
    const before = s().report().received;
    await bed().cut(1, 'both');
    const ca = await onPair('a', 'moved off path 1', (c) => c.shimmed && c.currentPair.local === id('a').locators[1]);
    const cb = await onPair('b', 'moved off path 1', (c) => c.shimmed && c.currentPair.local === id('b').locators[1]);
    assert.equal(ca.currentPair.peer, id('b').locators[1]);
    assert.equal(cb.currentPair.peer, id('a').locators[1]);
    const r = await s().waitForMore(200);
    assert.ok(r.received > before);
    assert.equal(r.errors, 0);
    assert.equal(r.closed, false);
    assert.ok(ca.reap && ca.reap.probesSent > 0, 'A sent probes');
    // The stream's silence is the failover time; it must be bounded by detection + exploration.
    assert.ok(r.maxGapMs < 30_000, `longest silence ${r.maxGapMs} ms`);
  });

  it('path 1 restored and path 2 cut: the contexts go back to the ULID pair and the stream carries on', async () => {
    await bed().restore(1, 'both');
    await bed().cut(2, 'both');
    for (const h of ['a', 'b'] as const) await onPair(h, 'back on the ULID pair', (c) => !c.shimmed);
    const r = await s().waitForMore(200);
    assert.equal(r.errors, 0);
    await bed().restore(2, 'both');
  });

  it('a one-way failure (B→A on path 1 only) is detected and repaired', async () => {
    await onPair('a', 'on the ULID pair', (c) => !c.shimmed);
    await bed().cut(1, 'b-to-a');
    await onPair('b', 'B sends on another pair', (c) => c.shimmed && c.currentPair.local !== id('b').ulid);
    const r = await s().waitForMore(200);
    assert.equal(r.errors, 0);
    await bed().restore(1, 'b-to-a');
    await onPair('b', 'B back on the ULID pair', (c) => !c.shimmed);
    await s().waitForMore(100);
  });

  it('SIGKILL and restart of reapd, then of shim6d, on both hosts: the contexts and the stream survive', async () => {
    for (const h of ['a', 'b'] as const) {
      await reapd[h]?.kill();
      await s().waitForMore(50);
      reapd[h] = await ReapdProcess.start(bed(), h, config(h));
      await onPair(h, 'reapd reports again after its restart', (c) => c.reap !== null && c.reap.state === 'operational');
    }
    for (const h of ['a', 'b'] as const) {
      await shim6d[h]?.kill();
      await s().waitForMore(50);
      shim6d[h] = await Shim6dProcess.start(bed(), h, config(h));
      // The stream's traffic brings the context back (the heuristic), and reapd gets it in the sync.
      await onPair(h, 'context back and reported by reapd after the restart', (c) => c.reap !== null, 60_000);
    }
    const r = await s().waitForMore(200);
    assert.equal(r.errors, 0);
    assert.equal(r.closed, false);
  });

  it('every Keepalive and Probe on the wire passes tshark\'s checksum and type check', async () => {
    const c = capture;
    if (!c) throw new Error('no capture');
    await c.stop();
    const rows = await c.fields(['shim6.type', 'shim6.checksum.status']);
    const reap = rows.filter((r) => r[0] === '66' || r[0] === '67');
    assert.ok(reap.some((r) => r[0] === '67'), `Probes on path 2 (saw types ${[...new Set(rows.map((r) => r[0]))].join(',')})`);
    for (const r of reap) assert.equal(r[1], '1', `tshark: good checksum of a type ${r[0]} message`);
  });
});
