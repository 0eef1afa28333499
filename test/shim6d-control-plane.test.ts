/**
 * shim6d's context exchange on the testbed, between real daemons whose ULIDs are HBA sets made
 * by `shim6-cga generate`: the 4-way exchange started from the console with the locator lists
 * verified, what goes on the wire (tshark's checksum and type check), an I1 flood, recovery
 * with R1bis/I2bis after the peer's shim6d is SIGKILLed, and a peer without Shim6.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeControlMessage } from '../protocol/control-message';
import { Capture, PRIME_FILTER } from '../scripts/lib/capture';
import { sendRawShim6 } from '../scripts/lib/shim6-wire';
import { hbaIdentity, Shim6dProcess, type DumpJson, type HbaIdentity } from '../scripts/lib/shim6d';
import { Testbed } from '../scripts/lib/testbed';
import { tcpTransfer } from '../scripts/lib/traffic';
import { waitFor } from '../scripts/lib/wait';

// Short timers, so that "never answers" is decided in about a second.
const FAST = { control: { i1TimeoutMs: 300, i1Retries: 1, noR1HoldDownMs: 60_000 } };

describe('shim6d context exchange (testbed, real daemons)', function () {
  this.timeout(180_000);
  let tb: Testbed | undefined;
  let a: Shim6dProcess | undefined;
  let b: Shim6dProcess | undefined;
  let keys = '';
  const ids: Partial<Record<'a' | 'b', HbaIdentity>> = {};
  const id = (h: 'a' | 'b'): HbaIdentity => {
    const i = ids[h];
    if (!i) throw new Error('no identity');
    return i;
  };
  const config = (h: 'a' | 'b'): { shim6d: Record<string, unknown> } => ({ shim6d: { ...FAST, identities: [id(h).dir] } });
  const bed = (): Testbed => {
    if (!tb) throw new Error('no testbed');
    return tb;
  };
  // The HBA addresses: index 0 on path 1 (and the ULID), 1 on path 2.
  const loc = (h: 'a' | 'b', i: 0 | 1): string => id(h).locators[i];
  const dump = (d: Shim6dProcess | undefined): Promise<DumpJson> => {
    if (!d) throw new Error('shim6d not started');
    return d.dumpJson();
  };
  const established = (d: Shim6dProcess | undefined, what: string): Promise<DumpJson> =>
    waitFor(async () => {
      const j = await dump(d);
      return j.contexts.length === 1 && j.contexts[0]?.state === 'ESTABLISHED' ? j : undefined;
    }, { what, timeoutMs: 15_000, intervalMs: 100 });

  before(async () => {
    tb = await Testbed.create();
    keys = mkdtempSync(join(tmpdir(), 'shim6-hba-'));
    ids.a = await hbaIdentity(tb, 'a', join(keys, 'a'));
    ids.b = await hbaIdentity(tb, 'b', join(keys, 'b'));
    a = await Shim6dProcess.start(tb, 'a', config('a'));
    b = await Shim6dProcess.start(tb, 'b', config('b'));
  });

  after(async () => {
    for (const d of [a, b]) {
      if (!d) continue;
      await d.kill();
      d.cleanup();
    }
    await tb?.destroy();
    if (keys) rmSync(keys, { recursive: true, force: true });
  });

  it('console `context` runs I1/R1/I2/R2: both ends ESTABLISHED with each other\'s tag; tshark checks every message', async () => {
    const capture = await Capture.start(bed(), 'a', bed().a.interfaces[0] as string, `ip6 proto 140 or ${PRIME_FILTER}`);
    try {
      await capture.primed(bed(), 'a', loc('a', 0), loc('b', 0));
      assert.match(await a!.console(`context ${loc('a', 0)} ${loc('b', 0)}`), /I1 sent/);
      const ja = await established(a, 'A to establish');
      const jb = await established(b, 'B to establish');
      const ca = ja.contexts[0];
      const cb = jb.contexts[0];
      assert.ok(ca && cb);
      assert.equal(ca.peerContextTag, cb.localContextTag);
      assert.equal(cb.peerContextTag, ca.localContextTag);
      assert.equal(ca.peerUlid, loc('b', 0));
      assert.equal(cb.peerUlid, loc('a', 0));
      // Each end verified the other's HBA set: both locators, by HBA.
      const dumpA = await a!.console('dump');
      assert.match(dumpA, new RegExp(`peer locators  ${loc('b', 0)} \\[hba\\], ${loc('b', 1)} \\[hba\\]`), dumpA);
      const dumpB = await b!.console('dump');
      assert.match(dumpB, new RegExp(`peer locators  ${loc('a', 0)} \\[hba\\], ${loc('a', 1)} \\[hba\\]`), dumpB);
      await capture.stop();
      const rows = await capture.fields(['shim6.type', 'shim6.p', 'shim6.checksum.status'], 'shim6');
      assert.deepEqual(
        rows.map((r) => r[0]),
        ['1', '2', '3', '4'],
        'I1, R1, I2, R2 on path 1',
      );
      for (const r of rows) {
        assert.ok(r[1] === '0' || r[1] === 'False', `control message: P=0 (${r.join(' ')})`);
        assert.equal(r[2], '1', `tshark: good checksum (${r.join(' ')})`);
      }
    } finally {
      capture.cleanup();
    }
  });

  it('an I1 flood from another host creates no state at the responder', async () => {
    const before = await dump(b);
    const i1s = Array.from({ length: 300 }, (_, i) => encodeControlMessage({ type: 'I1', initiatorContextTag: 1000 + i, initiatorNonce: i, options: [] }).toString('hex'));
    // From A's second locator, which has no context with B.
    await sendRawShim6(bed(), 'a', loc('a', 1), loc('b', 1), i1s);
    const stats = await waitFor(async () => {
      const s = await b!.console('stats');
      const m = /r1-sent (\d+)/.exec(s);
      return m && Number(m[1]) >= 301 ? s : undefined;
    }, { what: 'B to answer the flood with R1s' });
    assert.match(stats, /contexts +1 /, stats);
    assert.equal((await dump(b)).contexts.length, before.contexts.length);
  });

  it('after SIGKILL and restart of B, A\'s shimmed packets bring R1bis/I2bis and the context back on both ends', async () => {
    const ja = await dump(a);
    const ca = ja.contexts[0];
    assert.ok(ca);
    // Both ends move the context to path 2 and path 1 breaks: traffic must carry the payload header.
    await a!.console(`shim ${ca.id} ${loc('a', 1)} ${loc('b', 1)}`);
    const cb = (await dump(b)).contexts[0];
    assert.ok(cb);
    await b!.console(`shim ${cb.id} ${loc('b', 1)} ${loc('a', 1)}`);
    await bed().cut(1);
    const server = await bed().udpServer('b', [loc('b', 0)], { echo: true });
    try {
      assert.ok(await bed().udpRoundTrip('a', loc('a', 0), loc('b', 0), server.port, { timeoutMs: 5000 }), 'shimmed over path 2 before the crash');
      assert.ok(((await dump(a)).contexts[0]?.counters.shimmedPackets ?? 0) > 0, 'A shimmed it');
      const oldTagB = cb.localContextTag;
      await b!.kill();
      b!.cleanup();
      b = await Shim6dProcess.start(bed(), 'b', config('b'));
      assert.equal((await dump(b)).contexts.length, 0, 'B starts without contexts');
      // A's next packets carry B's old tag: B answers R1bis, A sends I2bis, B rebuilds.
      assert.ok(await bed().udpRoundTrip('a', loc('a', 0), loc('b', 0), server.port, { timeoutMs: 15_000, intervalMs: 200 }), 'the ULIDs talk again');
      const jb = await established(b, 'B to rebuild the context');
      const rebuilt = jb.contexts[0];
      assert.ok(rebuilt);
      assert.equal(rebuilt.localContextTag, oldTagB, 'B took back the tag A still uses');
      assert.equal(rebuilt.peerContextTag, ca.localContextTag);
      assert.equal(rebuilt.peerUlid, loc('a', 0));
      assert.match(await b!.console('stats'), /r1bis-sent [1-9]/);
      assert.match(await a!.console('stats'), /i2bis-sent [1-9]/);
    } finally {
      await server.close();
      await bed().restore(1);
    }
  });

  it('the conntrack heuristic: a TCP transfer between two ULIDs gets a context after 50 packets, without a command', async () => {
    const [la, lb] = [loc('a', 1), loc('b', 1)];
    const has = async (d: Shim6dProcess | undefined, local: string, peer: string): Promise<boolean> =>
      (await dump(d)).contexts.some((c) => c.localUlid === local && c.peerUlid === peer && c.state === 'ESTABLISHED');
    assert.equal(await has(a, la, lb), false);
    const t = await tcpTransfer(bed(), 'a', la, 'b', lb, 2 * 1024 * 1024);
    assert.equal(t.receivedSha256, t.sentSha256);
    await waitFor(async () => (await has(a, la, lb)) && (await has(b, lb, la)), { what: 'both ends to establish the pair the heuristic picked', timeoutMs: 15_000, intervalMs: 200 });
    // Either end's heuristic may fire first (both see the flow); the other end answers.
    assert.match(a!.log() + b!.log(), /heuristic: the pair deserves a context/);
  });

  it('a peer without shim6d: the context ends NO-SUPPORT and plain traffic is untouched', async () => {
    await b!.stop();
    b!.cleanup();
    b = undefined;
    // The testbed's own addresses (not in the HBA sets): a pair no context has.
    const [pa, pb] = [bed().a.locators[1] as string, bed().b.locators[1] as string];
    const server = await bed().udpServer('b', [pb], { echo: true });
    try {
      assert.match(await a!.console(`context ${pa} ${pb}`), /I1 sent/);
      await waitFor(async () => (await dump(a)).contexts.some((c) => c.peerUlid === pb && c.state === 'NO-SUPPORT'), { what: 'A to give up on B', timeoutMs: 10_000, intervalMs: 100 });
      // B's kernel answered the I1 with a Parameter Problem (unrecognised Next Header 140).
      await waitFor(() => /ICMPv6 Parameter Problem: the peer has no Shim6/.test(a!.log()), { what: 'A to log the Parameter Problem', timeoutMs: 5000, intervalMs: 100 });
      assert.match(await a!.console(`context ${pa} ${pb}`), /^error: /, 'no new try during the hold-down');
      assert.ok(await bed().udpRoundTrip('a', pa, pb, server.port, { timeoutMs: 3000 }), 'plain unicast still works');
    } finally {
      await server.close();
    }
  });
});
