/**
 * Shim6 contexts and the context table (shim6d/context, shim6d/context-table): building a
 * context from its description and every error that can stop it, the per-packet locator
 * sets, resolving a locator pair against the sets, and the table's three indexes.
 */
import { strict as assert } from 'node:assert';
import { ipv6 } from '../protocol/address';
import { MAX_CONTEXT_TAG } from '../protocol/constants';
import { ContextError, createContext, isShimmed, locator, refreshLocatorKeys, resolvePair, sameLocator, ulidPairKey, zeroDrops, type ContextSpec, DROP_REASONS, type LocatorVerification, type ShimContext } from '../shim6d/context';
import { ContextTable } from '../shim6d/context-table';

const LOCAL_ULID = '2001:db8:a1::a';
const PEER_ULID = '2001:db8:b1::b';
const LOCAL_2 = '2001:db8:a2::a';
const PEER_2 = '2001:db8:b2::b';

function spec(over: Partial<ContextSpec> = {}): ContextSpec {
  return {
    id: 1,
    origin: 'static',
    localUlid: LOCAL_ULID,
    peerUlid: PEER_ULID,
    localContextTag: 0x1111,
    peerContextTag: 0x2222,
    localLocators: [LOCAL_ULID, LOCAL_2],
    peerLocators: [PEER_ULID, PEER_2],
    verification: 'static',
    ...over,
  };
}

const key = (text: string): string => ipv6(text).toString('latin1');

/** Sets the verification of one member of a locator set (as a locator update would). */
function verify(ctx: ShimContext, side: 'local' | 'peer', index: number, v: LocatorVerification): void {
  const l = (side === 'local' ? ctx.localLocators : ctx.peerLocators)[index];
  assert.ok(l, `${side} locator ${index}`);
  l.verification = v;
}

/** Asserts that fn throws a ContextError whose message matches every pattern. */
function throwsContextError(fn: () => unknown, ...patterns: RegExp[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ContextError, `a ContextError, not ${String(e)}`);
    assert.equal(e.name, 'ContextError');
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
}

describe('Shim6 context (shim6d/context)', () => {
  describe('createContext', () => {
    it('builds the context: ULIDs, tags, locator sets, ULID pair as the current pair, zero counters', () => {
      const ctx = createContext(spec());
      assert.equal(ctx.id, 1);
      assert.equal(ctx.state, 'ESTABLISHED');
      assert.equal(ctx.origin, 'static');
      assert.equal(ctx.localUlid.text, LOCAL_ULID);
      assert.ok(ctx.localUlid.address.equals(ipv6(LOCAL_ULID)));
      assert.equal(ctx.localUlid.key, key(LOCAL_ULID));
      assert.equal(ctx.peerUlid.text, PEER_ULID);
      assert.equal(ctx.localContextTag, 0x1111);
      assert.equal(ctx.peerContextTag, 0x2222);
      assert.deepEqual(ctx.localLocators.map((l) => l.text), [LOCAL_ULID, LOCAL_2]);
      assert.deepEqual(ctx.peerLocators.map((l) => l.text), [PEER_ULID, PEER_2]);
      assert.ok(ctx.peerLocators.every((l) => l.verification === 'static'));
      assert.equal(ctx.current.local, ctx.localUlid);
      assert.equal(ctx.current.peer, ctx.peerUlid);
      assert.equal(isShimmed(ctx), false);
      assert.equal(ctx.pathMtu, undefined);
      assert.deepEqual(ctx.counters, {
        shimmedPackets: 0,
        shimmedOctets: 0,
        deshimmedPackets: 0,
        deshimmedOctets: 0,
        drops: zeroDrops(),
        packetTooBigSent: 0,
        lastShimmedAt: 0,
        lastDeshimmedAt: 0,
      });
      assert.deepEqual(Object.keys(ctx.counters.drops).sort(), [...DROP_REASONS].sort());
      assert.equal(ctx.ptbSecond, -1);
      assert.equal(ctx.ptbInSecond, 0);
    });

    it('keeps the given state, and canonicalises address text', () => {
      const ctx = createContext(spec({ state: 'I1-SENT', origin: 'negotiated', localUlid: '2001:DB8:A1:0:0:0:0:A', localLocators: ['2001:0db8:a2::000a'] }));
      assert.equal(ctx.state, 'I1-SENT');
      assert.equal(ctx.origin, 'negotiated');
      assert.equal(ctx.localUlid.text, LOCAL_ULID);
      assert.deepEqual(ctx.localLocators.map((l) => l.text), [LOCAL_2]);
    });

    it('locator sets default to the ULID alone', () => {
      const ctx = createContext(spec({ localLocators: undefined, peerLocators: undefined }));
      assert.deepEqual(ctx.localLocators.map((l) => l.text), [LOCAL_ULID]);
      assert.deepEqual(ctx.peerLocators.map((l) => l.text), [PEER_ULID]);
    });

    it('a locatorPair other than the ULIDs makes the context shimmed on that pair', () => {
      const ctx = createContext(spec({ locatorPair: { local: LOCAL_2, peer: PEER_2 } }));
      assert.equal(ctx.current.local.text, LOCAL_2);
      assert.equal(ctx.current.peer.text, PEER_2);
      assert.equal(ctx.current.local, ctx.localLocators[1], 'the pair is made of the set members');
      assert.equal(ctx.current.peer, ctx.peerLocators[1]);
      assert.equal(isShimmed(ctx), true);
    });

    it('a locatorPair with only one side changed is shimmed too', () => {
      assert.equal(isShimmed(createContext(spec({ locatorPair: { local: LOCAL_ULID, peer: PEER_2 } }))), true);
      assert.equal(isShimmed(createContext(spec({ locatorPair: { local: LOCAL_2, peer: PEER_ULID } }))), true);
      assert.equal(isShimmed(createContext(spec({ locatorPair: { local: LOCAL_ULID, peer: PEER_ULID } }))), false);
    });

    for (const id of [0, -1, 1.5, 0x80000000, Number.NaN]) {
      it(`id ${id}: ContextError naming id`, () => {
        throwsContextError(() => createContext(spec({ id })), /^id: /, new RegExp(String(id).replace('.', '\\.')));
      });
    }

    it('ids 1 and 2^31-1 are valid', () => {
      assert.equal(createContext(spec({ id: 1 })).id, 1);
      assert.equal(createContext(spec({ id: 0x7fffffff })).id, 0x7fffffff);
    });

    for (const field of ['localContextTag', 'peerContextTag'] as const) {
      for (const tag of [-1, 1.5, MAX_CONTEXT_TAG + 1, 2 ** 48, Number.NaN]) {
        it(`${field} ${tag}: ContextError naming ${field}`, () => {
          throwsContextError(() => createContext(spec({ [field]: tag })), new RegExp(`^${field}: `), /47-bit context tag/);
        });
      }
      it(`${field} 0 and 2^47-1 are valid`, () => {
        assert.equal(createContext(spec({ [field]: 0 }))[field], 0);
        assert.equal(createContext(spec({ [field]: MAX_CONTEXT_TAG }))[field], MAX_CONTEXT_TAG);
      });
    }

    const badAddresses: [Partial<ContextSpec>, RegExp][] = [
      [{ localUlid: '10.0.0.1' }, /^localUlid: '10\.0\.0\.1' is not an IPv6 address/],
      [{ peerUlid: 'nonsense' }, /^peerUlid: 'nonsense' is not an IPv6 address/],
      [{ localLocators: [LOCAL_ULID, '2001:db8::g'] }, /^localLocators\[1\]: '2001:db8::g' is not an IPv6 address/],
      [{ peerLocators: ['1:2:3:4:5:6:7:8:9'] }, /^peerLocators\[0\]: '1:2:3:4:5:6:7:8:9' is not an IPv6 address/],
      [{ localLocators: [] }, /^localLocators: a context needs at least one locator/],
      [{ peerLocators: [] }, /^peerLocators: a context needs at least one locator/],
    ];
    for (const [over, message] of badAddresses) {
      it(`bad address ${JSON.stringify(over)}: ContextError naming the field`, () => {
        throwsContextError(() => createContext(spec(over)), message);
      });
    }

    it('a locator listed twice (in any spelling): ContextError naming the field and index', () => {
      throwsContextError(() => createContext(spec({ localLocators: [LOCAL_ULID, LOCAL_2, '2001:DB8:A2:0::A'] })), /^localLocators\[2\]: 2001:db8:a2::a is listed twice/);
      throwsContextError(() => createContext(spec({ peerLocators: [PEER_2, PEER_2] })), /^peerLocators\[1\]: 2001:db8:b2::b is listed twice/);
    });

    it('a locatorPair not in the sets: ContextError naming the local or peer locator', () => {
      throwsContextError(() => createContext(spec({ locatorPair: { local: '2001:db8:a3::a', peer: PEER_2 } })), /^local locator 2001:db8:a3::a is not one of context 1's local locators/);
      throwsContextError(() => createContext(spec({ locatorPair: { local: LOCAL_2, peer: '2001:db8:b3::b' } })), /^peer locator 2001:db8:b3::b is not one of context 1's verified peer locators/);
      throwsContextError(() => createContext(spec({ locatorPair: { local: 'bad', peer: PEER_2 } })), /^local locator: 'bad' is not an IPv6 address/);
      throwsContextError(() => createContext(spec({ locatorPair: { local: LOCAL_2, peer: 'bad' } })), /^peer locator: 'bad' is not an IPv6 address/);
    });

    it('a locatorPair on unverified peer locators: ContextError', () => {
      throwsContextError(() => createContext(spec({ verification: 'unverified', locatorPair: { local: LOCAL_2, peer: PEER_2 } })), /peer locator 2001:db8:b2::b of context 1 is not verified/);
    });
  });

  describe('locator helpers', () => {
    it('locator: canonical text, 16 octets, latin1 key; sameLocator compares the address', () => {
      const a = locator('2001:DB8::1', 'hba');
      assert.equal(a.text, '2001:db8::1');
      assert.equal(a.verification, 'hba');
      assert.equal(a.key.length, 16);
      assert.ok(Buffer.from(a.key, 'latin1').equals(a.address));
      assert.ok(sameLocator(a, locator('2001:db8:0::1', 'cga')));
      assert.ok(!sameLocator(a, locator('2001:db8::2', 'hba')));
      throwsContextError(() => locator('x', 'hba'), /^address: 'x'/);
      throwsContextError(() => locator('x', 'hba', 'thing'), /^thing: 'x'/);
    });

    it('ulidPairKey is the 32 octets source then destination, as read from a packet', () => {
      const ctx = createContext(spec());
      const k = ulidPairKey(ctx.localUlid, ctx.peerUlid);
      assert.equal(k.length, 32);
      assert.ok(Buffer.from(k, 'latin1').equals(Buffer.concat([ipv6(LOCAL_ULID), ipv6(PEER_ULID)])));
    });
  });

  describe('refreshLocatorKeys', () => {
    it('includes both ULIDs even when the sets do not list them', () => {
      const ctx = createContext(spec({ localLocators: [LOCAL_2], peerLocators: [PEER_2] }));
      assert.deepEqual(ctx.localLocatorKeys, new Set([key(LOCAL_ULID), key(LOCAL_2)]));
      assert.deepEqual(ctx.peerLocatorKeys, new Set([key(PEER_ULID), key(PEER_2)]));
    });

    it('leaves out unverified peer locators (but never a local locator), and follows changes', () => {
      const ctx = createContext(spec({ localLocators: [LOCAL_ULID, LOCAL_2, '2001:db8:a3::a'], peerLocators: [PEER_ULID, PEER_2, '2001:db8:b3::b'] }));
      verify(ctx, 'peer', 2, 'unverified');
      verify(ctx, 'local', 2, 'unverified');
      refreshLocatorKeys(ctx);
      assert.deepEqual(ctx.peerLocatorKeys, new Set([key(PEER_ULID), key(PEER_2)]));
      assert.deepEqual(ctx.localLocatorKeys, new Set([key(LOCAL_ULID), key(LOCAL_2), key('2001:db8:a3::a')]));
      // Verified later (e.g. by HBA): back in the set after the refresh.
      verify(ctx, 'peer', 2, 'hba');
      refreshLocatorKeys(ctx);
      assert.ok(ctx.peerLocatorKeys.has(key('2001:db8:b3::b')));
      // A locator set replaced: the keys follow.
      ctx.peerLocators = [locator('2001:db8:b4::b', 'cga')];
      refreshLocatorKeys(ctx);
      assert.deepEqual(ctx.peerLocatorKeys, new Set([key(PEER_ULID), key('2001:db8:b4::b')]));
    });

    it('an all-unverified peer set leaves only the peer ULID', () => {
      const ctx = createContext(spec({ verification: 'unverified' }));
      assert.deepEqual(ctx.peerLocatorKeys, new Set([key(PEER_ULID)]));
      assert.deepEqual(ctx.localLocatorKeys, new Set([key(LOCAL_ULID), key(LOCAL_2)]));
    });
  });

  describe('resolvePair', () => {
    it('returns the set members (the same objects) for listed locators, any spelling', () => {
      const ctx = createContext(spec());
      const p = resolvePair(ctx, '2001:DB8:A2::A', '2001:db8:b2:0:0:0:0:b');
      assert.equal(p.local, ctx.localLocators[1]);
      assert.equal(p.peer, ctx.peerLocators[1]);
    });

    it('a ULID counts as a locator even when the set does not list it, and resolves to the ULID object', () => {
      const ctx = createContext(spec({ localLocators: [LOCAL_2], peerLocators: [PEER_2] }));
      const p = resolvePair(ctx, LOCAL_ULID, PEER_ULID);
      assert.equal(p.local, ctx.localUlid);
      assert.equal(p.peer, ctx.peerUlid);
      const mixed = resolvePair(ctx, LOCAL_ULID, PEER_2);
      assert.equal(mixed.local, ctx.localUlid);
      assert.equal(mixed.peer, ctx.peerLocators[0]);
    });

    it('a listed ULID still resolves to the ULID object (so the pair compares equal to the ULID pair)', () => {
      const ctx = createContext(spec());
      const p = resolvePair(ctx, LOCAL_ULID, PEER_ULID);
      assert.equal(p.local, ctx.localUlid);
      assert.equal(p.peer, ctx.peerUlid);
    });

    it('unknown local or peer locator: ContextError naming it and the context', () => {
      const ctx = createContext(spec({ id: 7 }));
      throwsContextError(() => resolvePair(ctx, '2001:db8:a9::a', PEER_2), /local locator 2001:db8:a9::a is not one of context 7's local locators \(2001:db8:a1::a, 2001:db8:a2::a\)/);
      throwsContextError(() => resolvePair(ctx, LOCAL_2, '2001:db8:b9::b'), /peer locator 2001:db8:b9::b is not one of context 7's verified peer locators/);
      // A local locator given as the peer (and the other way round) is not accepted.
      throwsContextError(() => resolvePair(ctx, PEER_2, PEER_2), /^local locator/);
      throwsContextError(() => resolvePair(ctx, LOCAL_2, LOCAL_2), /^peer locator/);
    });

    it('an unverified peer locator is rejected', () => {
      const ctx = createContext(spec());
      verify(ctx, 'peer', 1, 'unverified');
      refreshLocatorKeys(ctx);
      throwsContextError(() => resolvePair(ctx, LOCAL_2, PEER_2), /peer locator 2001:db8:b2::b of context 1 is not verified/);
      // The others still resolve.
      assert.equal(resolvePair(ctx, LOCAL_2, PEER_ULID).peer, ctx.peerUlid);
    });
  });
});

describe('ContextTable (shim6d/context-table)', () => {
  const second = (over: Partial<ContextSpec> = {}): ContextSpec =>
    spec({ id: 2, localContextTag: 0x3333, peerContextTag: 0x4444, peerUlid: '2001:db8:c1::c', peerLocators: ['2001:db8:c1::c'], ...over });

  it('add: indexes a context by id, local tag and ULID pair', () => {
    const t = new ContextTable();
    assert.equal(t.size, 0);
    const ctx = t.add(spec());
    assert.equal(t.size, 1);
    assert.equal(t.byId(1), ctx);
    assert.equal(t.byLocalTag(0x1111), ctx);
    assert.equal(t.byLocalTag(0x2222), undefined, 'not by the peer tag');
    assert.equal(t.byUlidPairKey(ulidPairKey(ctx.localUlid, ctx.peerUlid)), ctx);
    assert.equal(t.byUlidPairKey(key(LOCAL_ULID) + key(PEER_ULID)), ctx, 'the key as read from a packet');
    assert.equal(t.byUlidPairKey(key(PEER_ULID) + key(LOCAL_ULID)), undefined, 'the reverse direction is not the pair');
    assert.equal(t.byUlidPairKey(key(LOCAL_2) + key(PEER_2)), undefined, 'locators are not ULIDs');
    assert.equal(t.byId(2), undefined);
  });

  it('byUlids: the default context of a ULID pair in any spelling, not a fork; ContextError as locator() for bad text', () => {
    const t = new ContextTable();
    const fork = t.add(spec({ id: 2, localContextTag: 0x3333, forkedInstanceId: 3 }));
    assert.equal(t.byUlids(LOCAL_ULID, PEER_ULID), undefined, 'a fork is not the default context');
    const ctx = t.add(spec());
    assert.equal(t.byUlids(LOCAL_ULID, PEER_ULID), ctx);
    assert.equal(t.byUlids('2001:DB8:A1:0:0:0:0:A', '2001:0db8:b1::000b'), ctx);
    assert.equal(t.byUlids(PEER_ULID, LOCAL_ULID), undefined, 'the reverse direction is not the pair');
    assert.notEqual(t.byUlids(LOCAL_ULID, PEER_ULID), fork);
    const thrown = (fn: () => unknown): unknown => {
      try {
        fn();
      } catch (e) {
        return e;
      }
      return undefined;
    };
    for (const [l, p, bad] of [['bad', PEER_ULID, 'bad'], [LOCAL_ULID, 'bad', 'bad'], ['1.2.3.4', PEER_ULID, '1.2.3.4']] as const) {
      const e = thrown(() => t.byUlids(l, p));
      assert.ok(e instanceof ContextError, `a ContextError, not ${String(e)}`);
      assert.equal(e.message, (thrown(() => locator(bad, 'unverified')) as ContextError).message);
    }
  });

  it('add passes createContext errors through and adds nothing', () => {
    const t = new ContextTable();
    throwsContextError(() => t.add(spec({ id: 0 })), /^id: /);
    assert.equal(t.size, 0);
  });

  it('a duplicate id, local tag or ULID pair: ContextError, and the table is unchanged', () => {
    const t = new ContextTable();
    const first = t.add(spec());
    throwsContextError(() => t.add(second({ id: 1 })), /context id 1 is in use/);
    throwsContextError(() => t.add(second({ localContextTag: 0x1111 })), /local context tag 4369 is in use by context 1/);
    throwsContextError(() => t.add(second({ peerUlid: PEER_ULID, peerLocators: [PEER_ULID] })), /ULID pair 2001:db8:a1::a → 2001:db8:b1::b has context 1 already/);
    assert.equal(t.size, 1);
    assert.deepEqual(t.all(), [first]);
    assert.equal(t.byLocalTag(0x3333), undefined);
    assert.equal(t.byId(2), undefined);
    // The same peer tag, the reverse ULID pair: allowed.
    const ok = t.add(second({ peerContextTag: 0x2222 }));
    const reverse = t.add(spec({ id: 3, localContextTag: 0x5555, localUlid: PEER_ULID, peerUlid: LOCAL_ULID, localLocators: undefined, peerLocators: undefined }));
    assert.deepEqual(t.all(), [first, ok, reverse]);
  });

  it('remove: takes the context out of all three indexes and returns it; unknown id: undefined', () => {
    const t = new ContextTable();
    const a = t.add(spec());
    const b = t.add(second());
    assert.equal(t.remove(1), a);
    assert.equal(t.size, 1);
    assert.equal(t.byId(1), undefined);
    assert.equal(t.byLocalTag(0x1111), undefined);
    assert.equal(t.byUlidPairKey(ulidPairKey(a.localUlid, a.peerUlid)), undefined);
    assert.equal(t.byId(2), b);
    assert.equal(t.remove(1), undefined);
    assert.equal(t.remove(99), undefined);
    // Id, tag and pair are free again.
    const again = t.add(spec());
    assert.equal(t.byLocalTag(0x1111), again);
  });

  it('all: every context in id order, whatever the insertion order', () => {
    const t = new ContextTable();
    const ids = [5, 2, 9, 1, 7];
    ids.forEach((id, i) => t.add(spec({ id, localContextTag: 100 + i, peerUlid: `2001:db8:c${i}::1`, peerLocators: undefined })));
    assert.deepEqual(t.all().map((c) => c.id), [1, 2, 5, 7, 9]);
    t.remove(5);
    assert.deepEqual(t.all().map((c) => c.id), [1, 2, 7, 9]);
    assert.deepEqual(new ContextTable().all(), []);
  });

  it('all returns a copy: changing it leaves the table alone', () => {
    const t = new ContextTable();
    t.add(spec());
    t.all().pop();
    assert.equal(t.all().length, 1);
  });

  it('allocateId: 1 on an empty table, then skips ids in use', () => {
    const t = new ContextTable();
    assert.equal(t.allocateId(), 1);
    t.add(spec({ id: t.allocateId() }));
    assert.equal(t.allocateId(), 2);
    t.add(second({ id: 3 }));
    t.add(spec({ id: 2, localContextTag: 0x9999, peerUlid: '2001:db8:d1::d', peerLocators: undefined }));
    assert.equal(t.allocateId(), 4, 'skips 1, 2 and 3');
    t.add(spec({ id: t.allocateId(), localContextTag: 0x8888, peerUlid: '2001:db8:e1::e', peerLocators: undefined }));
    assert.equal(t.byId(4)?.localContextTag, 0x8888);
    assert.equal(t.allocateId(), 5);
  });

  it('allocateId never returns an id in use, through removals', () => {
    const t = new ContextTable();
    for (let i = 0; i < 20; i++) t.add(spec({ id: t.allocateId(), localContextTag: 1000 + i, peerUlid: `2001:db8:f::${i + 1}`, peerLocators: undefined }));
    for (const id of [3, 8, 15]) t.remove(id);
    for (let i = 0; i < 10; i++) {
      const id = t.allocateId();
      assert.equal(t.byId(id), undefined, `id ${id} is free`);
      t.add(spec({ id, localContextTag: 2000 + i, peerUlid: `2001:db8:e::${i + 1}`, peerLocators: undefined }));
    }
    assert.equal(t.size, 27);
  });
});
