/**
 * The demo (scripts/demo): two multihomed hosts on the namespace testbed; which locator
 * pairs work before and after a path breaks; and Shim6 control messages crossing the
 * testbed on real raw sockets, encoded and decoded by protocol/; then shim6d's data plane on
 * both hosts carrying the ULID pair a1-b1 over path 2 while path 1 is cut (the context moved
 * by hand through the admin console: reapd, which will do that by itself, is still to come).
 *
 * Exit codes: 0 everything behaved as expected, 1 something did not (it says what).
 */
import { MessageTypeName } from '../protocol/constants';
import { Testbed } from './lib/testbed';
import { sendShim6, startShim6Listener } from './lib/shim6-wire';
import { Shim6dProcess, testbedContexts } from './lib/shim6d';
import { tcpTransfer } from './lib/traffic';

function say(text = ''): void {
  process.stdout.write(`${text}\n`);
}

async function pairMatrix(tb: Testbed, port: number): Promise<Map<string, boolean>> {
  const out = new Map<string, boolean>();
  for (const [i, a] of tb.a.locators.entries()) {
    for (const [j, b] of tb.b.locators.entries()) {
      out.set(`a${i + 1}-b${j + 1}`, await tb.udpRoundTrip('a', a, b, port, { timeoutMs: 1500 }));
    }
  }
  say(`    ${[...out].map(([k, v]) => `${k} ${v ? 'ok  ' : 'FAIL'}`).join('   ')}`);
  return out;
}

/** Sends `types` from A (from → to) while a listener on B records what arrives; returns the decoded lines. */
async function shim6Exchange(tb: Testbed, from: string, to: string, types: MessageTypeName[]): Promise<Array<Record<string, unknown>>> {
  const listener = await startShim6Listener(tb, 'b', types.length, 6000);
  for (const [k, type] of types.entries()) await sendShim6(tb, 'a', from, to, type, 0x5a5a00 + k, 1000 + k);
  await listener.finished();
  for (const l of listener.lines) say(`    B received from ${String(l['source'])}: ${JSON.stringify({ ...l, source: undefined })}`);
  return listener.lines;
}

async function main(): Promise<number> {
  const problems: string[] = [];
  const expect = (ok: boolean, what: string): void => {
    if (!ok) problems.push(what);
  };
  say('shim6 demo: two multihomed hosts, two independent paths');
  const tb = await Testbed.create();
  try {
    const [a1, a2] = tb.a.locators as [string, string];
    const [b1, b2] = tb.b.locators as [string, string];
    say(`
  testbed ${tb.id}:
      A  a1 ${a1} ──── R1 (path 1) ──── b1 ${b1}  B
         a2 ${a2} ──── R2 (path 2) ──── b2 ${b2}
  (a packet leaves on the path of its source locator)`);

    const echo = await tb.udpServer('b', tb.b.locators, { echo: true });
    say('\n[1] UDP between every locator pair, both paths up:');
    const up = await pairMatrix(tb, echo.port);
    expect([...up.values()].every(Boolean), 'every pair should work with both paths up');

    say('\n[2] Shim6 on the wire: A sends a context establishment and a Probe to B (raw IPv6, protocol 140):');
    const types: MessageTypeName[] = ['I1', 'I2', 'UpdateRequest', 'Probe'];
    const got = await shim6Exchange(tb, a1, b1, types);
    expect(got.length === types.length && got.every((l, k) => l['type'] === types[k]), `B should decode ${types.join(', ')} in order`);

    say('\n[3] Path 1 cut (both directions):');
    await tb.cut(1, 'both');
    const cut = await pairMatrix(tb, echo.port);
    expect([...cut].every(([k, v]) => v === (k === 'a2-b2')), 'only a2-b2 should survive the cut of path 1');
    say('    Shim6 to b2 from a2 still gets through:');
    const viaPath2 = await shim6Exchange(tb, a2, b2, ['Keepalive']);
    expect(viaPath2.length === 1, 'a Keepalive over path 2 should arrive');
    say('\n[4] shim6d on both hosts, one static context each (ULIDs a1 <-> b1, locators a1 a2 / b1 b2):');
    const ctx = testbedContexts(tb);
    const daemons: Shim6dProcess[] = [];
    try {
      const da = await Shim6dProcess.start(tb, 'a', { shim6d: { contexts: [ctx.a] } }, { logLevel: 'info' });
      daemons.push(da);
      const db = await Shim6dProcess.start(tb, 'b', { shim6d: { contexts: [ctx.b] } }, { logLevel: 'info' });
      daemons.push(db);
      say(`    shim6d running in A (pid ${String(da.pid)}) and B (pid ${String(db.pid)}); the ULID pair a1-b1 is on path 1, which is cut.`);
      say('    console on A and B:  shim 1 <own path-2 locator> <peer path-2 locator>');
      say(`    A: ${(await da.console(`shim 1 ${a2} ${b2}`)).trim()}`);
      say(`    B: ${(await db.console(`shim 1 ${b2} ${a2}`)).trim()}`);
      const viaUlids = await tb.udpRoundTrip('a', a1, b1, echo.port, { timeoutMs: 3000 });
      say(`    UDP a1 -> b1 (the ULIDs): ${viaUlids ? 'ok, over path 2' : 'FAIL'}`);
      expect(viaUlids, 'UDP between the ULIDs should work over path 2 once shimmed');
      const mb = 20;
      const t = await tcpTransfer(tb, 'a', a1, 'b', b1, mb * 1024 * 1024);
      const intact = t.receivedBytes === t.bytes && t.receivedSha256 === t.sentSha256;
      say(`    TCP a1 -> b1, ${mb} MB: ${intact ? 'arrived intact' : 'CORRUPT'} (SHA-256 ${t.receivedSha256.slice(0, 16)}...), ${((t.bytes * 8) / (t.ms / 1000) / 1e6).toFixed(0)} Mbit/s`);
      expect(intact, 'the TCP transfer between the ULIDs should arrive intact');
      say('    A\'s console, dump:');
      for (const line of (await da.console('dump')).trimEnd().split('\n')) say(`      ${line}`);
      for (const d of daemons) await d.console('deshim 1');
    } finally {
      for (const d of daemons) {
        const status = await d.stop();
        if (status.code !== 0) problems.push(`shim6d in ${d.host} exited ${String(status.code ?? status.signal)}`);
        d.cleanup();
      }
    }
    const left = (await tb.exec('a', ['ip6tables-save'])).stdout.includes('SHIM6');
    say(`    shim6d stopped (SIGTERM) on both hosts; its rules ${left ? 'are STILL THERE' : 'are gone'}.`);
    expect(!left, 'a clean stop should remove every rule');

    say('\n[5] Path 1 restored:');
    await tb.restore(1, 'both');
    const back = await pairMatrix(tb, echo.port);
    expect([...back.values()].every(Boolean), 'every pair should work again after restore');
    await echo.close();
  } finally {
    await tb.destroy();
    say(`\ntestbed ${tb.id} removed.`);
  }
  if (problems.length > 0) {
    for (const p of problems) process.stderr.write(`demo: FAILED: ${p}\n`);
    return 1;
  }
  say('demo: everything behaved as expected.');
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`demo: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
