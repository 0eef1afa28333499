/**
 * ipc/messages: the validator accepts a sample of every message type (and random valid
 * contexts), checks the direction of each type, and rejects each kind of bad field with the
 * exact `path`: types, ranges, non-canonical addresses, 47-bit tags, counts, unknown keys and
 * types, list sizes and duplicates, text lengths, base64 packets.
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { formatIPv6 } from '../protocol/address';
import {
  IPC_VERSION,
  IpcContext,
  IpcMessage,
  IpcProtocolError,
  IpcReapStatus,
  MAX_IPC_CONTEXTS,
  ProbeRecord,
  REAPD_TO_SHIMD_TYPES,
  SHIMD_TO_REAPD_TYPES,
  helloVersion,
  validateMessage,
  validateReapdToShimd,
  validateShimdToReapd,
} from '../ipc/messages';

const SEED = 0x1bc6;

const A1 = '2001:db8:a1::a';
const A2 = '2001:db8:a2::a';
const B1 = '2001:db8:b1::b';
const B2 = '2001:db8:b2::b';

function sampleContext(id = 1): IpcContext {
  return {
    id,
    localUlid: A1,
    peerUlid: B1,
    localContextTag: 1000 + id,
    peerContextTag: 2 ** 47 - 1,
    localLocators: [A1, A2],
    peerLocators: [B1, B2],
    current: { local: A2, peer: B2 },
    peerKeepaliveTimeout: 10,
  };
}

function sampleProbe(i: number): ProbeRecord {
  return { at: 1_700_000_000_000 + i, direction: i % 2 === 0 ? 'sent' : 'received', local: A2, peer: B2, nonce: 0xffff_ffff - i };
}

function sampleStatus(historyLength = 2): IpcReapStatus {
  return {
    id: 1,
    state: 'exploring',
    since: 1_700_000_000_000,
    probesSent: 4,
    probesReceived: 1,
    keepalivesSent: 0,
    keepalivesReceived: 7,
    current: { local: A1, peer: B1 },
    history: Array.from({ length: historyLength }, (_, i) => sampleProbe(i)),
  };
}

/** An IPv6 header and an 8-octet Shim6 message: the smallest REAP packet. */
const PACKET_48 = Buffer.alloc(48, 0x5a).toString('base64');

/** One sample of every message type. */
function samples(): IpcMessage[] {
  return [
    { type: 'hello', version: IPC_VERSION, daemon: 'shim6d', pid: 4242 },
    { type: 'hello', version: IPC_VERSION, daemon: 'reapd', pid: 1 },
    { type: 'sync', contexts: [sampleContext(1), { ...sampleContext(2), localContextTag: 0 }] },
    { type: 'sync', contexts: [] },
    { type: 'context', context: sampleContext() },
    { type: 'context', context: { ...sampleContext(), peerKeepaliveTimeout: undefined } },
    { type: 'context-removed', id: 1, reason: 'idle teardown' },
    { type: 'activity', contexts: [{ id: 1, sent: 0, received: Number.MAX_SAFE_INTEGER }, { id: 2, sent: 5, received: 6 }] },
    { type: 'reap-packet', packet: PACKET_48 },
    { type: 'reap-packet', packet: Buffer.alloc(65535, 1).toString('base64') },
    { type: 'explore', id: 3, reason: 'locator 2001:db8:a1::a went away' },
    { type: 'pair', id: 1, local: A2, peer: B2 },
    { type: 'reap-status', status: sampleStatus() },
    { type: 'reap-status', status: { ...sampleStatus(32), state: 'inbound-ok' } },
    { type: 'reap-removed', id: 9 },
    { type: 'error', message: 'IPC version 2 is not supported' },
    { type: 'error', message: 'x'.repeat(256) },
  ];
}

/** Validates a JSON copy of `value` and asserts it fails at `path`. */
function rejects(value: unknown, path: string, detail?: RegExp): IpcProtocolError {
  let caught: unknown;
  try {
    validateMessage(JSON.parse(JSON.stringify(value)));
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof IpcProtocolError, `expected an IpcProtocolError at '${path}', got ${String(caught)}`);
  assert.equal(caught.path, path, caught.message);
  if (path !== '') assert.ok(caught.message.includes(`'${path}'`), caught.message);
  if (detail) assert.match(caught.detail, detail);
  return caught;
}

describe('ipc messages', () => {
  describe('accepts', () => {
    it('a sample of every message type, returning it unchanged', () => {
      const all = samples();
      const types = new Set(all.map((m) => m.type));
      assert.deepEqual([...types].sort(), [...new Set([...SHIMD_TO_REAPD_TYPES, ...REAPD_TO_SHIMD_TYPES])].sort());
      for (const m of all) {
        const copy: unknown = JSON.parse(JSON.stringify(m));
        assert.equal(validateMessage(copy), copy, m.type);
        assert.deepEqual(copy, JSON.parse(JSON.stringify(m)));
      }
    });

    it('each type in its own direction only', () => {
      for (const m of samples()) {
        const fromShimd = SHIMD_TO_REAPD_TYPES.has(m.type);
        const fromReapd = REAPD_TO_SHIMD_TYPES.has(m.type);
        assert.ok(fromShimd || fromReapd, m.type);
        if (fromShimd) assert.equal(validateShimdToReapd(m), m);
        else assert.throws(() => validateShimdToReapd(m), (e: unknown) => e instanceof IpcProtocolError && e.path === 'type' && /from reapd/.test(e.detail));
        if (fromReapd) assert.equal(validateReapdToShimd(m), m);
        else assert.throws(() => validateReapdToShimd(m), (e: unknown) => e instanceof IpcProtocolError && e.path === 'type' && /from shim6d/.test(e.detail));
      }
    });

    it('random valid contexts, however their addresses are written in canonical form (fast-check)', () => {
      const address = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => formatIPv6(b));
      const locators = fc.uniqueArray(address, { minLength: 1, maxLength: 64 });
      const context = fc
        .record({
          id: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
          localUlid: address,
          peerUlid: address,
          localContextTag: fc.integer({ min: 0, max: 2 ** 47 - 1 }),
          peerContextTag: fc.integer({ min: 0, max: 2 ** 47 - 1 }),
          localLocators: locators,
          peerLocators: locators,
          keepalive: fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }),
        })
        .chain(({ keepalive, ...c }) =>
          fc.record({ local: fc.constantFrom(...c.localLocators), peer: fc.constantFrom(...c.peerLocators) }).map(
            (current): IpcContext => ({ ...c, current, ...(keepalive === undefined ? {} : { peerKeepaliveTimeout: keepalive }) }),
          ),
        );
      fc.assert(
        fc.property(context, (c) => {
          const msg: unknown = JSON.parse(JSON.stringify({ type: 'context', context: c }));
          assert.equal(validateMessage(msg), msg);
          assert.equal(validateShimdToReapd(msg), msg);
        }),
        { seed: SEED, numRuns: 300 },
      );
    });

    it('reads the version of any hello-like object (for refusing another version)', () => {
      assert.equal(helloVersion({ type: 'hello', version: 2, daemon: 'shim6d', pid: 1, newField: true }), 2);
      assert.equal(helloVersion({ type: 'hello', version: '1' }), undefined);
      assert.equal(helloVersion({ type: 'sync', version: 1 }), undefined);
      assert.equal(helloVersion([1]), undefined);
    });
  });

  describe('rejects, naming the field', () => {
    const ctx = (patch: Record<string, unknown>): unknown => ({ type: 'context', context: { ...sampleContext(), ...patch } });

    it('a message that is not an object, or has no or an unknown type', () => {
      rejects(null, '', /expected an object/);
      rejects([{ type: 'hello' }], '', /expected an object/);
      rejects('hello', '', /expected an object/);
      rejects({ version: 1 }, 'type', /missing/);
      rejects({ type: 'helo', version: 1 }, 'type', /expected one of 'hello', .*got "helo"/);
      rejects({ type: 7 }, 'type');
    });

    it('non-canonical and invalid addresses', () => {
      const e = rejects(ctx({ localUlid: '2001:DB8::1' }), 'context.localUlid', /canonical/);
      assert.match(e.detail, /expected "2001:db8::1"/);
      rejects(ctx({ peerUlid: '2001:db8:0::1' }), 'context.peerUlid', /expected "2001:db8::1"/);
      rejects(ctx({ peerUlid: '2001:0db8::1' }), 'context.peerUlid', /canonical/);
      rejects(ctx({ peerUlid: '2001:db8:0:0:1:0:0:1' }), 'context.peerUlid', /expected "2001:db8::1:0:0:1"/);
      rejects(ctx({ peerUlid: 'fe80::1%eth0' }), 'context.peerUlid', /canonical/);
      rejects(ctx({ peerUlid: '::ffff:192.0.2.1' }), 'context.peerUlid', /canonical/);
      rejects(ctx({ peerUlid: '192.0.2.1' }), 'context.peerUlid', /expected an IPv6 address/);
      rejects(ctx({ peerUlid: 'not an address' }), 'context.peerUlid', /expected an IPv6 address/);
      rejects(ctx({ peerUlid: 42 }), 'context.peerUlid', /expected an IPv6 address/);
      rejects(ctx({ localLocators: [A1, '2001:db8:A2::a'] }), 'context.localLocators[1]', /canonical/);
      rejects(ctx({ current: { local: A1, peer: '2001:db8:b2:0::b' } }), 'context.current.peer', /canonical/);
      rejects({ type: 'sync', contexts: [sampleContext(1), sampleContext(2), sampleContext(3), { ...sampleContext(4), current: { local: A1, peer: 'B1::' } }] }, 'contexts[3].current.peer');
      rejects({ type: 'pair', id: 1, local: A2, peer: '2001:DB8:B2::B' }, 'peer');
      const history = sampleStatus(3).history;
      history[2] = { ...sampleProbe(2), local: '2001:db8:a2:0:0::a' };
      rejects({ type: 'reap-status', status: { ...sampleStatus(), history } }, 'status.history[2].local', /canonical/);
    });

    it('context tags beyond 47 bits, negative or fractional', () => {
      rejects(ctx({ localContextTag: 2 ** 47 }), 'context.localContextTag', /47-bit context tag/);
      rejects(ctx({ peerContextTag: -1 }), 'context.peerContextTag', /47-bit/);
      rejects(ctx({ peerContextTag: 1.5 }), 'context.peerContextTag');
      rejects(ctx({ peerContextTag: '5' }), 'context.peerContextTag');
    });

    it('negative, fractional or unsafe counts and ids', () => {
      rejects({ type: 'activity', contexts: [{ id: 1, sent: 1, received: 1 }, { id: 2, sent: -1, received: 0 }] }, 'contexts[1].sent', /non-negative/);
      rejects({ type: 'activity', contexts: [{ id: 1, sent: 0.5, received: 1 }] }, 'contexts[0].sent');
      rejects({ type: 'activity', contexts: [{ id: 1, sent: 0, received: 2 ** 53 }] }, 'contexts[0].received');
      rejects({ type: 'activity', contexts: [{ id: 0, sent: 0, received: 0 }] }, 'contexts[0].id', /positive/);
      rejects({ type: 'activity', contexts: [{ id: 1, sent: 0, received: 0 }, { id: 1, sent: 1, received: 1 }] }, 'contexts[1].id', /duplicate of contexts\[0\]\.id/);
      rejects({ type: 'reap-status', status: { ...sampleStatus(), probesSent: -3 } }, 'status.probesSent');
      rejects({ type: 'reap-status', status: { ...sampleStatus(), since: -1 } }, 'status.since');
      rejects({ type: 'reap-removed', id: -1 }, 'id');
      rejects({ type: 'context-removed', id: 1.25, reason: '' }, 'id');
      rejects(ctx({ id: 0 }), 'context.id');
    });

    it('unknown keys, at every level, and missing ones', () => {
      rejects({ type: 'pair', id: 1, local: A2, peer: B2, extra: 1 }, 'extra', /unknown key \(expected one of: type, id, local, peer\)/);
      rejects(ctx({ tags: [] }), 'context.tags', /unknown key/);
      rejects(ctx({ current: { local: A1, peer: B1, via: 'x' } }), 'context.current.via', /unknown key/);
      rejects({ type: 'activity', contexts: [{ id: 1, sent: 0, received: 0, lost: 0 }] }, 'contexts[0].lost');
      const history = sampleStatus(2).history as unknown as Record<string, unknown>[];
      history[1] = { ...history[1], rtt: 3 };
      rejects({ type: 'reap-status', status: { ...sampleStatus(), history } }, 'status.history[1].rtt');
      rejects({ type: 'hello', version: 1, daemon: 'shim6d', pid: 1, features: [] }, 'features');
      rejects({ type: 'hello', version: 1, daemon: 'shim6d' }, 'pid', /missing/);
      rejects(ctx({ current: undefined }), 'context.current', /missing/);
      rejects({ type: 'context-removed', id: 1 }, 'reason', /missing/);
    });

    it('a wrong hello', () => {
      rejects({ type: 'hello', version: '1', daemon: 'shim6d', pid: 1 }, 'version', /version number/);
      rejects({ type: 'hello', version: 0, daemon: 'shim6d', pid: 1 }, 'version');
      rejects({ type: 'hello', version: 1.5, daemon: 'shim6d', pid: 1 }, 'version');
      rejects({ type: 'hello', version: 1, daemon: 'conntrackd', pid: 1 }, 'daemon', /'shim6d', 'reapd'/);
      rejects({ type: 'hello', version: 1, daemon: 'reapd', pid: 0 }, 'pid');
      rejects({ type: 'hello', version: 1, daemon: 'reapd', pid: 2 ** 31 }, 'pid');
    });

    it('lists that are empty, too long, or hold duplicates', () => {
      rejects(ctx({ localLocators: [] }), 'context.localLocators', /1 to 64 entries, got 0/);
      const many = Array.from({ length: 65 }, (_, i) => `2001:db8::${(i + 1).toString(16)}`);
      rejects(ctx({ peerLocators: many }), 'context.peerLocators', /got 65/);
      rejects(ctx({ peerLocators: [B1, B2, B1] }), 'context.peerLocators[2]', /duplicate of context\.peerLocators\[0\]/);
      rejects(ctx({ localLocators: A1 }), 'context.localLocators', /expected an array/);
      rejects({ type: 'reap-status', status: sampleStatus(33) }, 'status.history', /at most 32 entries, got 33/);
      rejects({ type: 'sync', contexts: new Array(MAX_IPC_CONTEXTS + 1).fill(0) }, 'contexts', /at most 100000 entries/);
      rejects({ type: 'sync', contexts: [sampleContext(1), sampleContext(1)] }, 'contexts[1].id', /duplicate of contexts\[0\]\.id/);
      rejects({ type: 'sync', contexts: [sampleContext(1), { ...sampleContext(2), localContextTag: 1001 }] }, 'contexts[1].localContextTag', /duplicate/);
    });

    it('bad enumerations, nonces, keepalive timeouts and text', () => {
      rejects({ type: 'reap-status', status: { ...sampleStatus(), state: 'failed' } }, 'status.state', /'operational', 'exploring', 'inbound-ok'/);
      const history = sampleStatus(1).history as unknown as Record<string, unknown>[];
      rejects({ type: 'reap-status', status: { ...sampleStatus(), history: [{ ...history[0], direction: 'lost' }] } }, 'status.history[0].direction');
      rejects({ type: 'reap-status', status: { ...sampleStatus(), history: [{ ...history[0], nonce: 2 ** 32 }] } }, 'status.history[0].nonce', /32-bit/);
      rejects(ctx({ peerKeepaliveTimeout: 0 }), 'context.peerKeepaliveTimeout', /1 to 65535/);
      rejects(ctx({ peerKeepaliveTimeout: 65536 }), 'context.peerKeepaliveTimeout');
      rejects({ type: 'explore', id: 1, reason: 'x'.repeat(257) }, 'reason', /at most 256/);
      rejects({ type: 'error', message: 'x'.repeat(257) }, 'message');
      rejects({ type: 'error', message: null }, 'message');
    });

    it('reap packets that are not canonical base64 or have the wrong size', () => {
      rejects({ type: 'reap-packet', packet: Buffer.alloc(47).toString('base64') }, 'packet', /48 to 65535 octets, got 47/);
      rejects({ type: 'reap-packet', packet: Buffer.alloc(65536).toString('base64') }, 'packet', /longer than 65535/);
      rejects({ type: 'reap-packet', packet: PACKET_48.replace(/=*$/, '').slice(0, 63) }, 'packet', /not base64/);
      rejects({ type: 'reap-packet', packet: `${PACKET_48.slice(0, 8)}\n${PACKET_48.slice(8)}` }, 'packet', /not base64/);
      rejects({ type: 'reap-packet', packet: Buffer.alloc(48).toString('base64url') + '-' }, 'packet', /not base64/);
      // 49 octets end in 'xx==' where the second symbol's low 4 bits must be zero.
      const b49 = Buffer.alloc(49, 0xff).toString('base64');
      assert.ok(b49.endsWith('/w=='));
      rejects({ type: 'reap-packet', packet: `${b49.slice(0, -3)}x==` }, 'packet', /canonical/);
      rejects({ type: 'reap-packet', packet: 12 }, 'packet');
    });
  });
});
