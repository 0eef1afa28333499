/**
 * shim6d's side of the IPC with reapd (shim6d/reap-link), against a real IpcServer on a Unix
 * socket in a mkdtemp directory: flush() and explore() make one announcement round however
 * many contexts ask for one at once (a round reads every established context).
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nullLogger } from '../common/logger';
import type { ShimdToReapd } from '../ipc/messages';
import { IpcServer } from '../ipc/server';
import { waitFor } from '../scripts/lib/wait';
import type { ShimContext } from '../shim6d/context';
import { ContextTable } from '../shim6d/context-table';
import { ReapLink } from '../shim6d/reap-link';
import type { ShimControl } from '../shim6d/shim-control';

const N = 50;

describe('ReapLink (shim6d/reap-link) against an IpcServer', () => {
  let dir: string;
  let server: IpcServer;
  let link: ReapLink;
  let table: ContextTable;
  let received: ShimdToReapd[];
  /** Calls of the activity source: one per established context per round. */
  let activityCalls: number;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'reap-link-'));
    const path = join(dir, 'ipc.sock');
    received = [];
    activityCalls = 0;
    server = new IpcServer({ path, logger: nullLogger, pid: 1111 });
    server.on('message', (m) => received.push(m));
    await server.start();
    table = new ContextTable();
    link = new ReapLink({
      path,
      table,
      control: {} as ShimControl,
      log: nullLogger,
      intervalMs: 3_600_000,
      activity: () => {
        activityCalls++;
        return { sent: 0, received: 0 };
      },
    });
    link.start();
    await waitFor(() => received.some((m) => m.type === 'sync'), { what: 'the sync of a new connection', timeoutMs: 5000, intervalMs: 10 });
  });

  afterEach(async () => {
    await link.stop();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function establish(n: number): ShimContext[] {
    return Array.from({ length: n }, (_, i) =>
      table.add({ id: i + 1, origin: 'static', state: 'ESTABLISHED', localUlid: '2001:db8:a1::a', peerUlid: `2001:db8:b1::${(i + 1).toString(16)}`, localContextTag: i + 1, peerContextTag: 1000 + i, verification: 'static' }),
    );
  }

  const ofType = (type: ShimdToReapd['type']): ShimdToReapd[] => received.filter((m) => m.type === type);
  const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

  it('flush() from many contexts established at once makes one round, at the next turn of the event loop', async () => {
    establish(N);
    activityCalls = 0;
    for (let i = 0; i < N; i++) link.flush();
    assert.equal(activityCalls, 0, 'nothing is sent synchronously');
    await nextTurn();
    assert.equal(activityCalls, N, 'one round: each context read once');
    await waitFor(() => ofType('context').length === N, { what: `${N} context announcements`, timeoutMs: 5000, intervalMs: 10 });
    // A later flush() makes a round of its own.
    link.flush();
    await nextTurn();
    assert.equal(activityCalls, 2 * N);
  });

  it('explore() of many contexts makes one round, then asks reapd to explore each', async () => {
    const contexts = establish(N);
    activityCalls = 0;
    link.explore(contexts, 'local locator 2001:db8:a1::a removed');
    assert.equal(activityCalls, N, 'one round: each context read once');
    await waitFor(() => ofType('explore').length === N, { what: `${N} explore messages`, timeoutMs: 5000, intervalMs: 10 });
    assert.deepEqual(ofType('explore').map((m) => (m.type === 'explore' ? m.id : -1)), contexts.map((c) => c.id));
    const firstExplore = received.findIndex((m) => m.type === 'explore');
    assert.equal(received.slice(0, firstExplore).filter((m) => m.type === 'context').length, N, 'reapd hears of the contexts before it is asked to explore them');
    link.explore([], 'nothing');
    assert.equal(activityCalls, N, 'no context, no round');
  });
});
