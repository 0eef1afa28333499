/**
 * shim6d's data plane on the testbed, end to end: real shim6d processes (bin/shim6d) in two
 * namespaces, real ip6tables rules and NFQUEUE, path 1 cut in its router. Static contexts
 * come from the configuration; the console's `shim` moves them to the path-2 pair.
 */
import assert from 'node:assert/strict';
import { encodePayloadHeader } from '../protocol/payload-header';
import { Capture } from '../scripts/lib/capture';
import { sendRawShim6 } from '../scripts/lib/shim6-wire';
import { Shim6dProcess, testbedContexts, type DumpJson } from '../scripts/lib/shim6d';
import { Testbed } from '../scripts/lib/testbed';
import { tcpTransfer, udpEchoCheck, udpSequenceStream } from '../scripts/lib/traffic';
import { waitFor } from '../scripts/lib/wait';
import { udpDatagram } from './support/packets';

const TAG_A = 0x0a0a0a0a01;
const TAG_B = 0x0b0b0b0b01;
const MB = 1024 * 1024;

function ruleLines(save: string): string[] {
  return save.split('\n').filter((l) => l.startsWith('-A ') && /SHIM6/.test(l));
}

describe('shim6d data plane (testbed: real shim6d, ip6tables, NFQUEUE)', function () {
  this.timeout(300_000);
  let tb: Testbed | undefined;
  let a: Shim6dProcess | undefined;
  let b: Shim6dProcess | undefined;
  const bed = (): Testbed => {
    if (!tb) throw new Error('no testbed');
    return tb;
  };
  const loc = (h: 'a' | 'b', i: 0 | 1): string => bed()[h].locators[i] as string;
  const startBoth = async (): Promise<void> => {
    const ctx = testbedContexts(bed(), { a: TAG_A, b: TAG_B });
    a = await Shim6dProcess.start(bed(), 'a', { shim6d: { contexts: [ctx.a] } });
    b = await Shim6dProcess.start(bed(), 'b', { shim6d: { contexts: [ctx.b] } });
  };
  const dump = async (d: Shim6dProcess | undefined): Promise<DumpJson> => {
    if (!d) throw new Error('shim6d not started');
    return d.dumpJson();
  };

  before(async () => {
    tb = await Testbed.create();
    await startBoth();
  });

  after(async () => {
    for (const d of [a, b]) {
      if (!d) continue;
      await d.kill();
      d.cleanup();
    }
    await tb?.destroy();
  });

  describe('path 1 cut, both contexts moved to the path-2 pair', () => {
    before(async () => {
      assert.match(await a!.console(`shim 1 ${loc('a', 1)} ${loc('b', 1)}`), /\(shimmed\)/);
      assert.match(await b!.console(`shim 1 ${loc('b', 1)} ${loc('a', 1)}`), /\(shimmed\)/);
      await bed().cut(1);
    });

    it('carries UDP request/response between the ULIDs byte-exact, up to and past the MTU', async () => {
      const server = await bed().udpServer('b', [loc('b', 0)], { echo: true });
      try {
        // 1452 octets of data make a 1500-octet packet: 1508 once shimmed, so the sender's
        // kernel fragments it after shim6d; 4000 is fragmented at the source already.
        const sizes = [1, 200, 1232, 1400, 1444, 1452, 1452, 4000];
        const results = await udpEchoCheck(bed(), 'a', loc('a', 0), loc('b', 0), server.port, sizes);
        assert.deepEqual(
          results.map((r) => [r.size, r.ok]),
          sizes.map((s) => [s, true]),
        );
        // No loss at any size: each came back on its first try.
        assert.deepEqual(results.filter((r) => r.attempts > 1), []);
      } finally {
        server.close();
      }
      const da = await dump(a);
      const db = await dump(b);
      assert.ok((da.contexts[0]?.counters.shimmedPackets ?? 0) >= 8, 'A shimmed the requests');
      assert.ok((da.contexts[0]?.counters.deshimmedPackets ?? 0) >= 8, 'A deshimmed the responses');
      assert.ok((db.contexts[0]?.counters.deshimmedPackets ?? 0) >= 8, 'B deshimmed the requests');
      assert.deepEqual(Object.values(da.dataPlane.drops).reduce((x, y) => x + y, 0), 0, 'no drops on A');
    });

    it('carries a 50 MB TCP transfer intact over path 2: P=1 with the right tags there, nothing on path 1', async () => {
      const path2 = await Capture.start(bed(), 'a', bed().a.interfaces[1] as string, 'ip6 proto 140', { maxPackets: 4000, snapLength: 96 });
      // Anything but neighbour discovery that leaves or enters A on path 1.
      const path1 = await Capture.start(bed(), 'a', bed().a.interfaces[0] as string, 'ip6 and not icmp6');
      let result;
      try {
        result = await tcpTransfer(bed(), 'a', loc('a', 0), 'b', loc('b', 0), 50 * MB);
      } finally {
        await path2.stop();
        await path1.stop();
      }
      try {
        assert.equal(result.receivedBytes, 50 * MB);
        assert.equal(result.receivedSha256, result.sentSha256);
        const fields = await path2.fields(['ipv6.src', 'ipv6.dst', 'shim6.p', 'shim6.nxt']);
        // tshark shows the tag without a value: its raw octets (P bit and 47-bit tag).
        const tags = await path2.rawField('shim6.ct');
        assert.equal(tags.length, fields.length);
        const rows = fields.map((r, i) => [r[0], r[1], r[2], String(parseInt(tags[i] ?? '', 16) % 2 ** 47), r[3]]);
        assert.ok(rows.length > 1000, `path 2 carried the transfer (${rows.length} Shim6 packets)`);
        const isTrue = (v: string | undefined): boolean => v === '1' || v === 'True';
        const toB = rows.filter((r) => r[0] === loc('a', 1) && r[1] === loc('b', 1));
        const toA = rows.filter((r) => r[0] === loc('b', 1) && r[1] === loc('a', 1));
        assert.equal(toB.length + toA.length, rows.length, 'every Shim6 packet on path 2 is between a2 and b2');
        assert.ok(toB.length > 0 && toA.length > 0);
        for (const [dir, list, tag] of [['A→B', toB, TAG_B], ['B→A', toA, TAG_A]] as const) {
          for (const r of list) {
            assert.ok(isTrue(r[2]), `${dir}: P=1 (${r.join(' ')})`);
            assert.equal(Number(r[3]), tag, `${dir}: the receiver's context tag (${r.join(' ')})`);
            assert.equal(r[4], '6', `${dir}: TCP inside (${r.join(' ')})`);
          }
        }
        assert.deepEqual(await path1.fields(['ipv6.src', 'ipv6.dst', 'ipv6.nxt']), [], 'nothing of the flow on path 1');
      } finally {
        path2.cleanup();
        path1.cleanup();
      }
      // Full-size segments outgrew the path by 8 octets: A told its TCP with Packet Too Big.
      const da = await dump(a);
      const ca = da.contexts[0];
      assert.ok(ca && ca.counters.packetTooBigSent >= 1, `A sent Packet Too Big (${JSON.stringify(ca?.counters)})`);
      assert.ok(ca.counters.shimmedOctets > 50 * MB, 'A shimmed the whole transfer');
    });

    it("a router's Packet Too Big about a shimmed packet lowers the context's path MTU, and a TCP transfer gets through", async () => {
      // R2's link to B now carries 1400 octets: full-size shimmed segments from A are too big
      // there. Without shim6d acting on R2's Packet Too Big (which quotes the locators and the
      // payload header, not the connection's ULIDs) the transfer would stall.
      const r2b = bed().r2.interfaces[1] as string;
      await bed().exec('r2', ['ip', 'link', 'set', 'dev', r2b, 'mtu', '1400']);
      let result;
      try {
        result = await tcpTransfer(bed(), 'a', loc('a', 0), 'b', loc('b', 0), 4 * MB, 60_000);
      } finally {
        await bed().exec('r2', ['ip', 'link', 'set', 'dev', r2b, 'mtu', '1500']);
      }
      assert.equal(result.receivedBytes, 4 * MB);
      assert.equal(result.receivedSha256, result.sentSha256);
      const da = await dump(a);
      assert.equal(da.contexts[0]?.pathMtu, 1400, 'the path MTU R2 reported');
      const control = (da as DumpJson & { control: Record<string, number> | null }).control ?? {};
      assert.ok((control['packet-too-big-received'] ?? 0) >= 1 && (control['path-mtu-lowered'] ?? 0) === 1, JSON.stringify(control));
    });

    it('drops and counts a payload packet from a locator outside the peer set, and one with an unknown tag', async () => {
      const rogue = '2001:db8:a2::99';
      await bed().exec('a', ['ip', '-6', 'addr', 'add', `${rogue}/64`, 'dev', bed().a.interfaces[1] as string, 'nodad']);
      const server = await bed().udpServer('b', [loc('b', 0)]);
      const before = await dump(b);
      const dropsBefore = before.contexts[0]?.counters.drops ?? {};
      const packet = (tag: number, text: string): string =>
        Buffer.concat([encodePayloadHeader(17, tag), udpDatagram(loc('a', 0), loc('b', 0), 40000, server.port, Buffer.from(text))]).toString('hex');
      const inject = (from: string, hex: string): Promise<void> => sendRawShim6(bed(), 'a', from, loc('b', 1), [hex]);
      try {
        // The positive control: the same construction from a verified locator is delivered.
        await inject(loc('a', 1), packet(TAG_B, 'from-a2'));
        await waitFor(() => server.received.some((d) => d.data === 'from-a2'), { what: 'the well-formed injected datagram at B', timeoutMs: 5000 });
        await inject(rogue, packet(TAG_B, 'from-rogue'));
        await inject(loc('a', 1), packet(0x123456789a, 'unknown-tag'));
        const after = await waitFor(
          async () => {
            const d = await dump(b);
            const c = d.contexts[0]?.counters.drops ?? {};
            return (c['source-locator-not-in-peer-set'] ?? 0) > (dropsBefore['source-locator-not-in-peer-set'] ?? 0) &&
              (d.dataPlane.drops['unknown-context-tag'] ?? 0) > (before.dataPlane.drops['unknown-context-tag'] ?? 0)
              ? d
              : undefined;
          },
          { what: 'B to count both drops', timeoutMs: 5000 },
        );
        assert.equal(after.contexts[0]?.counters.drops['source-locator-not-in-peer-set'], (dropsBefore['source-locator-not-in-peer-set'] ?? 0) + 1);
        assert.equal(after.dataPlane.drops['unknown-context-tag'], (before.dataPlane.drops['unknown-context-tag'] ?? 0) + 1);
        assert.deepEqual(
          server.received.map((d) => d.data).filter((d) => d !== 'from-a2'),
          [],
          'neither dropped packet reached the socket',
        );
      } finally {
        server.close();
        await bed().exec('a', ['ip', '-6', 'addr', 'del', `${rogue}/64`, 'dev', bed().a.interfaces[1] as string], { check: false });
      }
    });

    after(async () => {
      await bed().restore(1);
      for (const d of [a, b]) if (d?.running) await d.console('deshim 1');
    });
  });

  describe('fail-open, restart and clean stop', () => {
    it('loses nothing of an unshimmed flow when shim6d is SIGKILLed; a restart has each rule once; a clean stop leaves none', async () => {
      const stream = await udpSequenceStream(bed(), 'a', loc('a', 0), 'b', loc('b', 0));
      const sending = stream.send(1500, 2);
      // Kill both daemons while the stream runs (it lasts about 3 s).
      await waitFor(async () => (await bed().exec('b', ['ss', '-u', '-a', '-n'])).stdout.includes(String(stream.port)), { what: 'the sink socket' });
      await a!.kill();
      await b!.kill();
      await sending;
      const seen = await stream.finish();
      assert.equal(seen.received, 1500, `lost datagrams: ${seen.missingCount} (${seen.missing.join(',')})`);

      // The killed daemons left their rules; a restart replaces them, each exactly once.
      assert.ok(ruleLines((await bed().exec('a', ['ip6tables-save'])).stdout).length > 0, 'SIGKILL left the rules');
      await startBoth();
      for (const host of ['a', 'b'] as const) {
        const lines = ruleLines((await bed().exec(host, ['ip6tables-save'])).stdout);
        assert.equal(lines.length, 5, `${host}: ${lines.join('\n')}`);
        assert.equal(new Set(lines).size, lines.length, `${host}: a rule twice:\n${lines.join('\n')}`);
      }
      // And they work: move A's context, the traffic goes shimmed over path 2.
      await a!.console(`shim 1 ${loc('a', 1)} ${loc('b', 1)}`);
      await b!.console(`shim 1 ${loc('b', 1)} ${loc('a', 1)}`);
      await bed().cut(1);
      const server = await bed().udpServer('b', [loc('b', 0)], { echo: true });
      try {
        assert.ok(await bed().udpRoundTrip('a', loc('a', 0), loc('b', 0), server.port, { timeoutMs: 5000 }));
      } finally {
        server.close();
        await bed().restore(1);
      }

      for (const d of [a!, b!]) {
        const status = await d.stop();
        assert.deepEqual(status, { code: 0, signal: null }, d.stderr);
      }
      for (const host of ['a', 'b'] as const) {
        assert.deepEqual(ruleLines((await bed().exec(host, ['ip6tables-save'])).stdout), [], `${host}: rules left after a clean stop`);
        const sets = (await bed().exec(host, ['ipset', 'list', '-n'])).stdout.split('\n').filter((s) => s.startsWith('shim6'));
        assert.deepEqual(sets, [], `${host}: sets left after a clean stop`);
      }
    });
  });
});
