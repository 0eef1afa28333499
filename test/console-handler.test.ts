/**
 * The console's `dump` in pages (pure: a real ContextTable, a view of the daemon with no
 * I/O). Every page must fit in one console reply and, for `dump json`, be a whole JSON
 * document. Following the pages gives every context once, in id order.
 */
import * as assert from 'node:assert/strict';
import { zeroDrops } from '../shim6d/context';
import { ContextTable } from '../shim6d/context-table';
import { DUMP_PAGE_BYTES, handleConsoleCommand, type DaemonView } from '../shim6d/console-handler';
import { encodeConsoleReply, MAX_CONSOLE_REPLY_BYTES } from '../shim6d/console-server';
import type { ShimControl } from '../shim6d/shim-control';

/** A table of `n` static contexts, ids 1..n with some holes (every 7th id is skipped). */
function view(n: number): { v: DaemonView; ids: number[] } {
  const table = new ContextTable();
  const ids: number[] = [];
  for (let i = 1, id = 1; i <= n; i++, id++) {
    if (id % 7 === 0) id++;
    const hex = id.toString(16);
    table.add({
      id,
      origin: 'static',
      localUlid: `2001:db8:a::${hex}`,
      peerUlid: `2001:db8:b::${hex}`,
      localContextTag: 0x100000 + id,
      peerContextTag: 0x200000 + id,
      localLocators: [`2001:db8:a::${hex}`, `2001:db8:a2::${hex}`],
      peerLocators: [`2001:db8:b::${hex}`, `2001:db8:b2::${hex}`],
      verification: 'static',
    });
    ids.push(id);
  }
  const v: DaemonView = {
    table,
    // dump never moves a context; the other commands are tested with the daemon.
    control: {} as ShimControl,
    now: () => 1_000_000,
    startedAt: 0,
    dataPlane: () => ({ outboundPackets: 1, inboundPackets: 2, shimmedPackets: 3, deshimmedPackets: 4, outboundPassed: 5, controlMessages: 6, packetTooBigSent: 0, drops: zeroDrops() }),
    queues: () => ({}),
    console: () => ({ requests: 0, errors: 0, internalErrors: 0 }),
    controlPlane: () => undefined,
    reap: () => undefined,
  };
  return { v, ids };
}

interface JsonPage { contexts: { id: number }[]; total: number; next: number | null; dataPlane: { shimmedPackets: number } }

async function jsonPage(v: DaemonView, from?: number): Promise<{ page: JsonPage; bytes: number }> {
  const text = await handleConsoleCommand(v, { kind: 'dump', json: true, ...(from === undefined ? {} : { from }) });
  const bytes = encodeConsoleReply(text).length;
  return { page: JSON.parse(text) as JsonPage, bytes };
}

describe('console dump in pages', () => {
  it('a table that fits in one reply: one page, next null (dump json), no continuation line (dump)', async () => {
    const { v, ids } = view(5);
    const { page } = await jsonPage(v);
    assert.deepEqual(page.contexts.map((c) => c.id), ids);
    assert.equal(page.total, 5);
    assert.equal(page.next, null);
    assert.equal(page.dataPlane.shimmedPackets, 3);
    const text = await handleConsoleCommand(v, { kind: 'dump', json: false });
    assert.equal(text.match(/^context \d+/gm)?.length, 5);
    assert.doesNotMatch(text, /more of/);
  });

  it('dump json on 2,000 contexts: every page is whole JSON within the reply limit; the pages give every context once, in order', async () => {
    const { v, ids } = view(2000);
    const seen: number[] = [];
    let from: number | undefined;
    let pages = 0;
    for (;;) {
      const { page, bytes } = await jsonPage(v, from);
      pages++;
      assert.ok(bytes <= MAX_CONSOLE_REPLY_BYTES, `page ${pages}: ${bytes} octets`);
      assert.ok(page.contexts.length > 0);
      assert.equal(page.total, 2000);
      seen.push(...page.contexts.map((c) => c.id));
      if (page.next === null) break;
      assert.equal(page.next, ids[seen.length], 'next is the first id left out');
      // Full pages: the next context would not have fitted.
      assert.ok(bytes > DUMP_PAGE_BYTES - 2000, `page ${pages} is only ${bytes} octets`);
      from = page.next;
    }
    assert.deepEqual(seen, ids);
    assert.ok(pages > 10, `${pages} pages`);
  });

  it('dump on 2,000 contexts: pages of whole context blocks, each ending with the command for the next', async () => {
    const { v, ids } = view(2000);
    const seen: number[] = [];
    let from = 1;
    for (let pages = 1; ; pages++) {
      const text = await handleConsoleCommand(v, { kind: 'dump', json: false, from });
      assert.ok(encodeConsoleReply(text).length <= MAX_CONSOLE_REPLY_BYTES);
      seen.push(...[...text.matchAll(/^context (\d+)/gm)].map((m) => Number(m[1])));
      const more = /\n\n\.\.\. (\d+) more of 2000 contexts: dump from (\d+)$/.exec(text);
      if (!more) break;
      assert.equal(Number(more[1]), ids.length - seen.length);
      from = Number(more[2]);
      assert.equal(from, ids[seen.length]);
      assert.ok(pages < 1000);
    }
    assert.deepEqual(seen, ids);
  });

  it('from an id that is a hole starts at the next context; past the last: an empty page', async () => {
    const { v } = view(20);
    const { page } = await jsonPage(v, 7);
    assert.equal(page.contexts[0]?.id, 8);
    const end = await jsonPage(v, 1000);
    assert.deepEqual(end.page.contexts, []);
    assert.equal(end.page.next, null);
    assert.equal(end.page.total, 20);
    assert.equal(await handleConsoleCommand(v, { kind: 'dump', json: false, from: 1000 }), 'no contexts from id 1000 on (20 in all)');
    assert.equal(await handleConsoleCommand(view(0).v, { kind: 'dump', json: false }), 'no contexts');
  });
});
