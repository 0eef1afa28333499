/**
 * The demo (scripts/demo): a TCP connection between two multihomed hosts survives the failure
 * of the path it uses.
 *
 *  1. builds the namespace testbed with HBA ULIDs (`scripts/testbed create --hba`);
 *  2. starts reapd and shim6d on both hosts through the init script (scripts/shim6);
 *  3. runs a TCP stream between the ULIDs (a counter every 10 ms, checked in order); its
 *     traffic makes shim6d establish a context by itself (the conntrack heuristic); shows A's
 *     console `dump`;
 *  4. cuts path 1, the path of the ULIDs, in both directions: REAP notices (Send Timeout),
 *     explores, and both hosts move the context to path 2; shows the new pair and how long
 *     the stream was silent;
 *  5. restores path 1: the contexts return to the ULID pair;
 *  6. stops the daemons through the init script (no rule left) and tears the testbed down.
 *
 * Exit codes: 0 the stream never broke and everything behaved as expected, 1 otherwise (it
 * says what).
 */
import { CounterStream } from './lib/counter-stream';
import { consoleCommand, readDumpJson, type DumpContext } from './lib/shim6d';
import { Testbed, type HostInfo } from './lib/testbed';
import { waitFor } from './lib/wait';

type Side = 'a' | 'b';

function say(text = ''): void {
  process.stdout.write(`${text}\n`);
}

function indent(text: string, by = '    '): string {
  return text
    .trimEnd()
    .split('\n')
    .map((l) => by + l)
    .join('\n');
}

function prefixLines(host: Side, text: string): string {
  return text
    .split('\n')
    .map((l) => `${host.toUpperCase()}: ${l}`)
    .join('\n');
}

async function ask(tb: Testbed, host: Side, command: string): Promise<string> {
  const r = await consoleCommand(tb, host, command);
  if (r === undefined) throw new Error(`no console reply from ${host.toUpperCase()} to '${command}'`);
  return r;
}

async function context(tb: Testbed, host: Side): Promise<DumpContext | undefined> {
  const j = await readDumpJson((command) => ask(tb, host, command));
  return j.contexts.find((c) => c.state === 'ESTABLISHED');
}

function hba(info: HostInfo): { ulid: string; locators: string[] } {
  if (!info.hba) throw new Error('the testbed has no HBA identities');
  return info.hba;
}

async function main(): Promise<number> {
  const problems: string[] = [];
  const expect = (ok: boolean, what: string): void => {
    if (!ok) problems.push(what);
  };
  say('shim6 demo: a TCP connection survives the failure of its path');
  say('\n[1] building the testbed: hosts A and B, two independent paths, HBA ULIDs (shim6-cga generate)');
  const tb = await Testbed.create({ hba: true });
  let stream: CounterStream | undefined;
  try {
    const A = hba(tb.a);
    const B = hba(tb.b);
    const [a1, a2] = A.locators as [string, string];
    const [b1, b2] = B.locators as [string, string];
    say(`
    testbed ${tb.id}
      A  ${a1.padEnd(28)} ── R1 (path 1) ── ${b1.padEnd(28)}  B
         ${a2.padEnd(28)} ── R2 (path 2) ── ${b2.padEnd(28)}
    ULIDs: A ${A.ulid}, B ${B.ulid} (the path-1 addresses)`);

    say('\n[2] starting the daemons through the init script (scripts/shim6 start: reapd, then shim6d)');
    for (const h of ['a', 'b'] as const) {
      const r = await tb.startDaemons(h);
      say(indent(prefixLines(h, r.stdout.trim() || r.stderr.trim())));
    }

    say('\n[3] a TCP stream from A to B between the ULIDs: a counter every 10 ms, checked in order');
    stream = await CounterStream.start(tb, { from: ['a', A.ulid], to: ['b', B.ulid] });
    const s = stream;
    const established = Date.now();
    for (const h of ['a', 'b'] as const) {
      await waitFor(async () => (await context(tb, h))?.reap?.state === 'operational', { what: `${h.toUpperCase()}'s context, established and watched by reapd`, timeoutMs: 30_000, intervalMs: 200 });
    }
    say(`    the stream's own traffic made shim6d establish the context (conntrack heuristic) in ${((Date.now() - established) / 1000).toFixed(1)} s`);
    await s.waitForMore(100);
    say("    A's admin console (echo dump | nc -u -w1 127.0.0.1 19384):");
    say(indent(await ask(tb, 'a', 'dump'), '      '));

    say('\n[4] cutting path 1 (both directions): the ULID pair stops working');
    const before = s.report().received;
    await tb.cut(1, 'both');
    const cutAt = Date.now();
    say('    waiting for REAP: no answer within the Send Timeout (15 s by default), then Probes over the other pairs...');
    const moved: Partial<Record<Side, DumpContext>> = {};
    for (const h of ['a', 'b'] as const) {
      moved[h] = await waitFor(
        async () => {
          const c = await context(tb, h);
          return c?.shimmed ? c : undefined;
        },
        { what: `${h.toUpperCase()} to move its context off path 1`, timeoutMs: 120_000, intervalMs: 200 },
      );
      const c = moved[h] as DumpContext;
      say(`    ${h.toUpperCase()} moved the context to ${c.currentPair.local} → ${c.currentPair.peer} (${((Date.now() - cutAt) / 1000).toFixed(1)} s after the cut)`);
    }
    const after = await s.waitForMore(200, 60_000);
    const resumed = after.gaps.find((g) => g.at >= cutAt);
    const failover = resumed ? (resumed.at - cutAt) / 1000 : undefined;
    say(`    the stream carried on: ${after.received - before} more counters in order, ${after.errors} out of order, connection ${after.closed ? 'CLOSED' : 'open'}`);
    say(`    failover time (cut → first counter delivered after it): ${failover === undefined ? 'no silence seen' : `${failover.toFixed(2)} s`}`);
    say('      (REAP\'s part is the move above: Send Timeout plus exploration; the rest is TCP waiting for its next');
    say('      retransmission timer, which has backed off during the outage. Shorter REAP timers: common/README.md)');
    expect(after.errors === 0 && !after.closed, 'the stream should carry on without a reset or a lost counter');
    expect(moved.a?.currentPair.local === a2 && moved.b?.currentPair.local === b2, 'both hosts should send from their path-2 locator');
    say("    A's context now:");
    say(indent(await ask(tb, 'a', 'dump'), '      '));

    say('\n[5] restoring path 1: REAP probes the ULID pair and the contexts go back to it');
    await tb.restore(1, 'both');
    const restoredAt = Date.now();
    for (const h of ['a', 'b'] as const) {
      await waitFor(async () => (await context(tb, h))?.shimmed === false, { what: `${h.toUpperCase()} back on the ULID pair`, timeoutMs: 120_000, intervalMs: 200 });
      say(`    ${h.toUpperCase()} is back on its ULID pair (${((Date.now() - restoredAt) / 1000).toFixed(1)} s after the repair): no payload header any more`);
    }
    const end = await s.waitForMore(100);
    say(`    stream: ${end.received} counters in all, ${end.errors} out of order, connection ${end.closed ? 'CLOSED' : 'open'}`);
    expect(end.errors === 0 && !end.closed, 'the stream should still be intact after the return');
    s.stop();
    stream = undefined;

    say('\n[6] stopping the daemons through the init script');
    for (const h of ['a', 'b'] as const) {
      const r = await tb.stopDaemons(h);
      say(indent(prefixLines(h, r.stdout.trim() || r.stderr.trim())));
      const rules = await tb.exec(h, ['ip6tables-save'], { check: false });
      const left = rules.stdout.split('\n').filter((l) => l.includes('SHIM6'));
      expect(left.length === 0, `${h.toUpperCase()} should have no SHIM6 rule left after stop (${left.join('; ')})`);
    }
    say('    no SHIM6 rule left on either host');
  } catch (e) {
    problems.push(e instanceof Error ? e.message : String(e));
  } finally {
    stream?.stop();
    await tb.destroy();
  }
  say();
  if (problems.length === 0) {
    say('demo: OK: the connection survived the cut, moved to path 2 and came back');
    return 0;
  }
  for (const p of problems) say(`demo: PROBLEM: ${p}`);
  return 1;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`demo: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
