/**
 * The Shim6 context state machine (shim6d/context-machine), driven through a simulated
 * network (test/support/shim6-network): two hosts with their own tables and machines, a fake
 * clock, deterministic random sources and jitter, a fake HBA LocatorSecurity, and whole IPv6
 * packets on the wire. Covers the 4-way exchange, retransmissions and hold-downs, the
 * stateless R1 and its validator, simultaneous I1s, R1bis/I2bis recovery, updates, Error
 * messages, context confusion, forks, ULID pairs, garbage collection, ICMP no-support and
 * nextDeadline().
 *
 * Tests with a `// Regression` comment reproduce bugs this suite found in the machine (the
 * line numbers they cite are of the version before the fix).
 */
import { strict as assert } from 'node:assert';
import { internetChecksum } from '../protocol/checksum';
import { ErrorCode, IPPROTO_SHIM6, NO_NEXT_HEADER } from '../protocol/constants';
import { encodeControlMessage, type ControlMessage, type I2bisMessage, type I2Message, type UpdateRequestMessage } from '../protocol/control-message';
import { findOption, optionTotalLength, type Shim6Option } from '../protocol/options';
import { contextKey, isShimmed, locator, resolvePair, type Locator, type ShimContext } from '../shim6d/context';
import { ContextMachine, DEFAULT_TIMERS } from '../shim6d/context-machine';
import { ContextTable } from '../shim6d/context-table';
import { isNewerGeneration as newerGeneration } from '../shim6d/locator-security';
import { ipv6Packet } from './support/packets';
import { canon, FakeClock, FakeLocatorSecurity, parametersOf, scriptedRandom32, seededRandom32, SimWorld, tagScript, type SimHost, type WirePacket, type WorldOptions } from './support/shim6-network';

const A1 = '2001:db8:a1::1';
const A2 = '2001:db8:a2::1';
const A3 = '2001:db8:a3::1';
const B1 = '2001:db8:b1::2';
const B2 = '2001:db8:b2::2';
/** An address no host owns: an off-path attacker's. */
const X = '2001:db8:ee::9';
const T0 = 1_000_000;

type Msg<T extends ControlMessage['type']> = Extract<ControlMessage, { type: T }>;

/** The message of a packet, checked to be of `type`. */
function msg<T extends ControlMessage['type']>(p: WirePacket | undefined, type: T): Msg<T> {
  assert.ok(p, `expected a ${type} packet, found none`);
  assert.equal(p.message.type, type);
  return p.message as Msg<T>;
}

function opt<K extends Shim6Option['kind']>(m: { options: Shim6Option[] }, kind: K): Extract<Shim6Option, { kind: K }> {
  const o = findOption(m.options, kind);
  assert.ok(o, `no ${kind} option`);
  return o;
}

const kinds = (m: { options: Shim6Option[] }): string[] => m.options.map((o) => o.kind);
const types = (ps: readonly WirePacket[]): string[] => ps.map((p) => p.message.type);
const texts = (ls: readonly Locator[]): string[] => ls.map((l) => l.text);
const last = <T>(xs: readonly T[]): T | undefined => xs[xs.length - 1];

function setup(options: WorldOptions = {}): { w: SimWorld; a: SimHost; b: SimHost } {
  const w = new SimWorld({ start: T0, ...options });
  const a = w.host('A', [A1, A2]);
  const b = w.host('B', [B1, B2]);
  return { w, a, b };
}

/** A.start(A1, B1) (or `fork`) and the whole exchange; both sides ESTABLISHED. */
function establish(w: SimWorld, a: SimHost, b: SimHost, fork = 0): { ctxA: ShimContext; ctxB: ShimContext } {
  const ctxA = a.machine.start(A1, B1, fork);
  assert.ok(ctxA, 'start() gave a context');
  w.network.settle();
  const ctxB = b.table.byUlidPairKey(contextKey(locator(B1, 'unverified'), locator(A1, 'unverified'), fork));
  assert.ok(ctxB, 'B has the context');
  assert.equal(ctxA.state, 'ESTABLISHED');
  assert.equal(ctxB.state, 'ESTABLISHED');
  assertTagsMatch(ctxA, ctxB);
  return { ctxA, ctxB };
}

function assertTagsMatch(x: ShimContext, y: ShimContext): void {
  assert.equal(x.peerContextTag, y.localContextTag, 'x sends with the tag y allocated');
  assert.equal(y.peerContextTag, x.localContextTag, 'y sends with the tag x allocated');
  assert.notEqual(x.localContextTag, 0);
  assert.notEqual(y.localContextTag, 0);
}

/** Adds A3 to A's HBA set and to its usable locators, and tells A's machine. */
function addA3(a: SimHost): void {
  a.identity.hbaSet.add(canon(A3));
  a.locators.push(canon(A3));
  a.machine.localLocatorsChanged();
}

/** Bytes of a Shim6 control message of any type number, with a valid checksum, in an IPv6 packet. */
function rawControlPacket(type: number, from: string, to: string, body = Buffer.alloc(8)): Buffer {
  const shim = Buffer.concat([Buffer.alloc(8), body]);
  assert.equal(shim.length % 8, 0);
  shim[0] = NO_NEXT_HEADER;
  shim[1] = shim.length / 8 - 1;
  shim[2] = type & 0x7f;
  shim.writeUInt16BE(internetChecksum(shim, 0, shim.length), 4);
  return ipv6Packet({ source: from, destination: to, nextHeader: IPPROTO_SHIM6, payload: shim });
}

/** A private field of the machine, for "no state was kept" checks. */
function controlEntries(host: SimHost): number {
  return (host.machine as unknown as { control: Map<number, unknown> }).control.size;
}

/** The machine's index and deadline queue (private), for "nothing was left behind" checks. */
function filed(host: SimHost): { indexed: number; keys: Record<string, number>; deadlines: number } {
  const m = host.machine as unknown as { index: { size: number; keys: Record<string, number> }; deadlines: { size: number } };
  return { indexed: m.index.size, keys: m.index.keys, deadlines: m.deadlines.size };
}

const NOTHING_FILED = { indexed: 0, keys: { nonces: 0, peerTags: 0, awaitingR1: 0, heldDown: 0, peerLocators: 0 }, deadlines: 0 };

/** Fisher-Yates, in place: the packets in flight arrive in another order. */
function shuffle<T>(xs: T[], random: () => number): void {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = random() % (i + 1);
    [xs[i], xs[j]] = [xs[j] as T, xs[i] as T];
  }
}

/** A.start(A1, B1, fork) for forks 0..n-1. */
function startForks(a: SimHost, n: number): ShimContext[] {
  return Array.from({ length: n }, (_, fork) => {
    const ctx = a.machine.start(A1, B1, fork);
    assert.ok(ctx, `fork ${fork} started`);
    return ctx;
  });
}

/** B's context for A's fork. */
function peerOf(b: SimHost, fork: number): ShimContext {
  const ctx = b.table.byUlidPairKey(contextKey(locator(B1, 'unverified'), locator(A1, 'unverified'), fork));
  assert.ok(ctx, `B has fork ${fork}`);
  return ctx;
}

describe('ContextMachine', () => {
  describe('1. the 4-way exchange', () => {
    it('I1 → R1 (stateless) → I2 → R2: both ESTABLISHED with each other’s tags and HBA sets', () => {
      const { w, a, b } = setup();
      const ctxA = a.machine.start(A1, B1);
      assert.ok(ctxA);
      assert.equal(ctxA.state, 'I1-SENT');
      assert.equal(ctxA.origin, 'negotiated');
      assert.deepEqual(texts(ctxA.localLocators), [canon(A1), canon(A2)]);

      // I1 on the ULID pair: no ULID Pair option, no fork.
      assert.deepEqual(types(w.network.queue), ['I1']);
      const i1p = w.network.queue[0] as WirePacket;
      assert.equal(i1p.from, canon(A1));
      assert.equal(i1p.to, canon(B1));
      assert.equal(i1p.bytes[6], IPPROTO_SHIM6, 'IPv6 next header 140');
      const i1 = msg(i1p, 'I1');
      assert.equal(i1.initiatorContextTag, ctxA.localContextTag);
      assert.deepEqual(i1.options, []);

      // R1: B answers and keeps nothing.
      w.network.deliver();
      assert.equal(b.table.size, 0);
      assert.equal(controlEntries(b), 0);
      assert.equal(b.machine.nextDeadline(), undefined);
      assert.deepEqual(types(w.network.queue), ['R1']);
      const r1p = w.network.queue[0] as WirePacket;
      assert.equal(r1p.from, canon(B1));
      assert.equal(r1p.to, canon(A1));
      const r1 = msg(r1p, 'R1');
      assert.equal(r1.initiatorNonce, i1.initiatorNonce);
      assert.deepEqual(kinds(r1), ['ResponderValidator']);
      assert.equal(opt(r1, 'ResponderValidator').validator.length, 16);

      // I2: the validator echoed, A's locator list (HBA) and parameters.
      w.network.deliver();
      assert.equal(ctxA.state, 'I2-SENT');
      assert.deepEqual(types(w.network.queue), ['I2']);
      const i2 = msg(w.network.queue[0], 'I2');
      assert.equal(i2.initiatorContextTag, ctxA.localContextTag);
      assert.equal(i2.initiatorNonce, i1.initiatorNonce);
      assert.equal(i2.responderNonce, r1.responderNonce);
      assert.ok(opt(i2, 'ResponderValidator').validator.equals(opt(r1, 'ResponderValidator').validator));
      assert.deepEqual(opt(i2, 'LocatorList').locators, [
        { address: canon(A1), verificationMethod: 1 },
        { address: canon(A2), verificationMethod: 1 },
      ]);
      assert.ok(opt(i2, 'CgaParameterDataStructure').data.equals(parametersOf('A')));
      assert.equal(findOption(i2.options, 'UlidPair'), undefined);
      assert.equal(findOption(i2.options, 'ForkedInstanceIdentifier'), undefined);

      // R2: B establishes.
      w.network.deliver();
      assert.equal(b.table.size, 1);
      const ctxB = b.only();
      assert.equal(ctxB.state, 'ESTABLISHED');
      assert.equal(ctxB.localUlid.text, canon(B1));
      assert.equal(ctxB.peerUlid.text, canon(A1));
      assert.equal(ctxB.peerContextTag, ctxA.localContextTag);
      assert.deepEqual(types(w.network.queue), ['R2']);
      const r2p = w.network.queue[0] as WirePacket;
      assert.equal(r2p.from, canon(B1));
      assert.equal(r2p.to, canon(A1));
      const r2 = msg(r2p, 'R2');
      assert.equal(r2.responderContextTag, ctxB.localContextTag);
      assert.equal(r2.initiatorNonce, i1.initiatorNonce);
      assert.deepEqual(opt(r2, 'LocatorList').locators.map((l) => l.address), [canon(B1), canon(B2)]);

      // A establishes.
      w.network.deliver();
      assert.equal(w.network.queue.length, 0);
      assert.equal(ctxA.state, 'ESTABLISHED');
      assertTagsMatch(ctxA, ctxB);
      assert.deepEqual(texts(ctxA.peerLocators), [canon(B1), canon(B2)]);
      assert.deepEqual(texts(ctxB.peerLocators), [canon(A1), canon(A2)]);
      assert.ok(ctxA.peerLocators.every((l) => l.verification === 'hba'));
      assert.ok(ctxB.peerLocators.every((l) => l.verification === 'hba'));
      assert.deepEqual(texts(ctxB.localLocators), [canon(B1), canon(B2)]);
      // The pair in use is the ULID pair: nothing to rewrite.
      assert.equal(isShimmed(ctxA), false);
      assert.equal(isShimmed(ctxB), false);

      assert.deepEqual(a.established, [ctxA]);
      assert.deepEqual(b.established, [ctxB]);
      assert.deepEqual(types(w.network.sent), ['I1', 'R1', 'I2', 'R2']);
      assert.equal(a.count('i1-sent'), 1);
      assert.equal(a.count('i2-sent'), 1);
      assert.equal(a.count('established'), 1);
      assert.equal(b.count('r1-sent'), 1);
      assert.equal(b.count('r2-sent'), 1);
      assert.equal(b.count('established'), 1);
      assert.deepEqual(a.removed, []);
      assert.deepEqual(b.removed, []);
      // No timers left without idle teardown.
      assert.equal(a.machine.nextDeadline(), undefined);
      assert.equal(b.machine.nextDeadline(), undefined);
      assert.equal(a.machine.describe(ctxA.id)?.pending, undefined);
    });

    it('start() refuses a second context for the same ULID pair and fork', () => {
      const { w, a, b } = setup();
      establish(w, a, b);
      assert.equal(a.machine.start(A1, B1), undefined);
      assert.equal(w.network.queue.length, 0);
      assert.equal(a.table.size, 1);
    });

    it('start() throws on an address that is not IPv6', () => {
      const { a } = setup();
      assert.throws(() => a.machine.start('a1', B1));
      assert.equal(a.table.size, 0);
    });

    it('an R1 with a nonce A did not send, or from another locator, is rejected', () => {
      const { w, a } = setup();
      const ctxA = a.machine.start(A1, B1);
      assert.ok(ctxA);
      const i1 = msg(w.network.queue.pop(), 'I1');
      const validator = { kind: 'ResponderValidator' as const, validator: Buffer.alloc(16, 1) };
      a.inject({ type: 'R1', initiatorNonce: (i1.initiatorNonce + 1) >>> 0, responderNonce: 5, options: [validator] }, B1, A1);
      a.inject({ type: 'R1', initiatorNonce: i1.initiatorNonce, responderNonce: 5, options: [validator] }, B2, A1);
      assert.equal(a.count('rejected-nonce'), 2);
      a.inject({ type: 'R1', initiatorNonce: i1.initiatorNonce, responderNonce: 5, options: [] }, B1, A1);
      assert.equal(a.count('rejected-malformed'), 1, 'an R1 without a Responder Validator');
      assert.equal(ctxA.state, 'I1-SENT');
      assert.equal(w.network.queue.length, 0);
    });

    it('a B that does not own the destination ULID does not answer (rejected-not-ours)', () => {
      const { a, b, w } = setup();
      b.inject({ type: 'I1', initiatorContextTag: 9, initiatorNonce: 9, options: [] }, A1, '2001:db8:b9::2');
      assert.equal(b.count('rejected-not-ours'), 1);
      assert.equal(w.network.queue.length, 0);
      assert.equal(a.table.size, 0);
    });
  });

  describe('2. I1 retransmission and NO-SUPPORT', () => {
    it('backs off 4, 8, 16, 32, 64 s, then NO-SUPPORT with a hold-down; start() works again after it', () => {
      const { w, a, b } = setup();
      w.network.rule({ type: 'I1', action: 'drop' });
      const ctx = a.machine.start(A1, B1);
      assert.ok(ctx);
      w.network.settle();

      w.advance(124_000 - 1);
      assert.equal(ctx.state, 'I1-SENT');
      const i1s = w.network.messages({ type: 'I1' });
      assert.deepEqual(i1s.map((p) => p.at - T0), [0, 4000, 12_000, 28_000, 60_000]);
      // Every retransmission is the same I1 (same tag and nonce).
      assert.equal(new Set(i1s.map((p) => p.bytes.toString('hex'))).size, 1);
      assert.equal(a.count('i1-retransmitted'), DEFAULT_TIMERS.i1Retries);
      assert.deepEqual(a.eventsOf('i1-retransmitted').map((d) => d.retry), [1, 2, 3, 4]);

      w.advance(1);
      assert.equal(ctx.state, 'NO-SUPPORT');
      assert.equal(w.network.messages({ type: 'I1' }).length, 1 + DEFAULT_TIMERS.i1Retries, 'no sixth I1');
      const noSupport = a.eventsOf('no-support');
      assert.equal(noSupport.length, 1);
      assert.equal(noSupport[0]?.holdDownMs, DEFAULT_TIMERS.noR1HoldDownMs);
      assert.equal(a.machine.inHoldDown(B1), true);
      assert.equal(a.machine.inHoldDown('2001:DB8:B1:0::2'), true, 'any spelling of the ULID');
      assert.equal(a.machine.inHoldDown(B2), false);
      assert.equal(a.machine.start(A1, B1), undefined, 'the pair has its NO-SUPPORT context');
      assert.equal(a.machine.start(A2, B1), undefined, 'the peer is in hold-down');
      assert.equal(a.machine.describe(ctx.id)?.holdDownUntil, T0 + 124_000 + 60_000);
      assert.equal(a.machine.nextDeadline(), T0 + 124_000 + 60_000);
      assert.equal(b.table.size, 0);
      assert.deepEqual(a.established, []);

      w.advance(60_000 - 1);
      assert.equal(a.table.size, 1);
      assert.equal(a.machine.inHoldDown(B1), true);
      w.advance(1);
      assert.equal(a.table.size, 0);
      assert.equal(a.removed.length, 1);
      assert.equal(a.removed[0]?.ctx, ctx);
      assert.equal(a.removed[0]?.reason, 'hold-down over');
      assert.equal(a.machine.inHoldDown(B1), false);
      assert.equal(a.machine.nextDeadline(), undefined);

      w.network.clearRules();
      const again = a.machine.start(A1, B1);
      assert.ok(again);
      w.network.settle();
      assert.equal(again.state, 'ESTABLISHED');
    });

    it('scales each timeout by the injected jitter', () => {
      const jitters = [0.5, 1.25, 0.75, 1.0, 0.6];
      const { w, a } = setup({ jitter: () => jitters.shift() ?? 1 });
      w.network.rule({ type: 'I1', action: 'drop' });
      const ctx = a.machine.start(A1, B1);
      assert.ok(ctx);
      w.advance(200_000);
      const at = w.network.messages({ type: 'I1' }).map((p) => p.at - T0);
      const gaps = at.slice(1).map((t, i) => t - (at[i] as number));
      assert.deepEqual(gaps, [4000 * 0.5, 8000 * 1.25, 16_000 * 0.75, 32_000 * 1.0]);
      const noSupportAt = a.events.find((e) => e.event === 'no-support')?.at;
      assert.equal(noSupportAt, T0 + (at[4] as number) + 64_000 * 0.6);
    });

    it('uses random jitter in [0.5, 1.5) of the nominal timeout when none is injected', () => {
      const clock = new FakeClock(T0);
      const deadlines: number[] = [];
      for (const r of [0, 0x8000_0000, 0xffff_ffff]) {
        // random32 calls in start(): the tag (2), the generation, the nonce, then the jitter.
        const m = new ContextMachine(new ContextTable(), new FakeLocatorSecurity({ name: 'A', hbaSet: new Set([canon(A1)]) }, () => []), {
          send: () => undefined,
          established: () => undefined,
          peerLocatorsChanged: () => undefined,
          removed: () => undefined,
          event: () => undefined,
        }, {
          now: clock.now,
          random32: scriptedRandom32([0, 5, 0, 0, r], () => 1),
          localLocators: () => [A1],
        });
        assert.ok(m.start(A1, B1));
        deadlines.push((m.nextDeadline() as number) - T0);
      }
      assert.deepEqual(deadlines, [2000, 4000, 4000 * (0.5 + 0xffff_ffff / 0x1_0000_0000)]);
    });
  });

  describe('3. I2 lost', () => {
    it('retransmits I2 i2Retries times, starts over with I1, then establishes', () => {
      const { w, a, b } = setup();
      w.network.rule({ type: 'I2', action: 'drop', count: 1 + DEFAULT_TIMERS.i2Retries });
      const ctx = a.machine.start(A1, B1);
      assert.ok(ctx);
      w.network.settle();
      assert.equal(ctx.state, 'I2-SENT');
      const firstI1 = msg(w.network.messages({ type: 'I1' })[0], 'I1');

      w.advance(28_000 - 1);
      assert.equal(ctx.state, 'I2-SENT');
      assert.deepEqual(w.network.messages({ type: 'I2' }).map((p) => p.at - T0), [0, 4000, 12_000]);
      assert.equal(b.table.size, 0);

      w.advance(1, { deliver: false });
      assert.equal(ctx.state, 'I1-SENT');
      const restart = msg(last(w.network.queue), 'I1');
      assert.equal(restart.initiatorContextTag, ctx.localContextTag, 'same context, same tag');
      assert.notEqual(restart.initiatorNonce, firstI1.initiatorNonce, 'a fresh nonce');
      assert.equal(a.machine.describe(ctx.id)?.pending, 'i1');

      w.network.settle();
      assert.equal(ctx.state, 'ESTABLISHED');
      assertTagsMatch(ctx, b.only());
      assert.deepEqual(types(w.network.sent), ['I1', 'R1', 'I2', 'I2', 'I2', 'I1', 'R1', 'I2', 'R2']);
      assert.equal(a.established.length, 1);
      assert.equal(b.established.length, 1);
    });
  });

  describe('4. R1 is stateless and its validator protects I2', () => {
    /** B's R1 to a crafted I1 from A1, and the I2 that answers it. */
    function r1AndI2(): { w: SimWorld; a: SimHost; b: SimHost; i2: (over?: Partial<I2Message>, validator?: Buffer) => I2Message; validator: Buffer } {
      const { w, a, b } = setup();
      b.inject({ type: 'I1', initiatorContextTag: 0x4242, initiatorNonce: 77, options: [] }, A1, B1);
      const r1 = msg(w.network.queue.pop(), 'R1');
      assert.equal(b.table.size, 0);
      const validator = opt(r1, 'ResponderValidator').validator;
      const i2 = (over: Partial<I2Message> = {}, v = validator): I2Message => ({
        type: 'I2',
        initiatorContextTag: 0x4242,
        initiatorNonce: 77,
        responderNonce: r1.responderNonce,
        options: [{ kind: 'ResponderValidator', validator: v }, ...a.security.localLocatorOptions(A1, [A1, A2], 5, true)],
        ...over,
      });
      return { w, a, b, i2, validator };
    }

    function assertRejected(b: SimHost, w: SimWorld, n = 1): void {
      assert.equal(b.count('rejected-validator'), n);
      assert.equal(b.table.size, 0, 'no context');
      assert.equal(controlEntries(b), 0);
      assert.equal(w.network.queue.length, 0, 'no R2');
    }

    it('accepts the genuine I2 (control case)', () => {
      const { w, b, i2 } = r1AndI2();
      b.inject(i2(), A1, B1);
      assert.equal(b.count('rejected-validator'), 0);
      assert.equal(b.only().state, 'ESTABLISHED');
      assert.equal(b.only().peerContextTag, 0x4242);
      assert.deepEqual(types(w.network.queue), ['R2']);
    });

    it('rejects a forged validator', () => {
      const { w, b, i2, validator } = r1AndI2();
      const forged = Buffer.from(validator);
      forged[0] = (forged[0] as number) ^ 0x80;
      b.inject(i2({}, forged), A1, B1);
      b.inject(i2({}, Buffer.alloc(16)), A1, B1);
      assertRejected(b, w, 2);
    });

    it('rejects an I2 without a validator', () => {
      const { w, a, b, i2 } = r1AndI2();
      b.inject(i2({ options: a.security.localLocatorOptions(A1, [A1, A2], 5, true) }), A1, B1);
      assertRejected(b, w);
    });

    it('rejects a wrong responder nonce', () => {
      const { w, b, i2 } = r1AndI2();
      const good = i2();
      b.inject({ ...good, responderNonce: (good.responderNonce ^ 1) >>> 0 }, A1, B1);
      assertRejected(b, w);
    });

    it('rejects another initiator context tag than the I1’s', () => {
      const { w, b, i2 } = r1AndI2();
      b.inject(i2({ initiatorContextTag: 0x4243 }), A1, B1);
      assertRejected(b, w);
    });

    it('rejects a validator issued to another initiator locator', () => {
      const { w, b, i2 } = r1AndI2();
      b.inject(i2(), A2, B1);
      assertRejected(b, w);
    });

    it('rejects a validator issued for another responder locator', () => {
      const { w, b, i2 } = r1AndI2();
      b.inject(i2(), A1, B2);
      assertRejected(b, w);
    });

    it('accepts an I2 answering an R1 issued before one validator rotation', () => {
      const { w, b, i2 } = r1AndI2();
      // T0 is in epoch 33 (990 000 .. 1 019 999); 1 020 000 starts epoch 34.
      w.clock.set(1_020_000);
      b.inject(i2(), A1, B1);
      assert.equal(b.count('rejected-validator'), 0);
      assert.equal(b.only().state, 'ESTABLISHED');
    });

    it('rejects it after two rotations', () => {
      const { w, b, i2 } = r1AndI2();
      w.clock.set(1_020_000);
      b.inject({ type: 'I1', initiatorContextTag: 1, initiatorNonce: 1, options: [] }, A2, B2); // rotates once
      w.network.queue = [];
      w.clock.set(1_050_000);
      b.inject(i2(), A1, B1);
      assertRejected(b, w);
    });

    it('rejects it after two rotations even with no traffic in between', () => {
      const { w, b, i2 } = r1AndI2();
      w.clock.set(1_050_000);
      b.inject(i2(), A1, B1);
      assertRejected(b, w);
    });

    it('rejects an I2 whose locators do not verify (rejected-locators), no context', () => {
      const { w, b, i2, validator } = r1AndI2();
      const badList: Shim6Option[] = [
        { kind: 'ResponderValidator', validator },
        { kind: 'LocatorList', generation: 5, locators: [{ address: A1, verificationMethod: 1 }, { address: X, verificationMethod: 1 }] },
        { kind: 'CgaParameterDataStructure', data: parametersOf('A') },
      ];
      b.inject(i2({ options: badList }), A1, B1);
      assert.equal(b.count('rejected-locators'), 1);
      assert.equal(b.eventsOf('rejected-locators')[0]?.reason, 'hba-not-in-set');
      assert.equal(b.table.size, 0);
      // Only an Error (code 2, locator verification failed) goes back.
      assert.deepEqual(w.network.queue.map((p) => p.message.type), ['Error']);
      const e = w.network.queue[0]?.message;
      assert.equal(e?.type === 'Error' ? e.errorCode : undefined, 2);
      assert.deepEqual(b.established, []);
    });
  });

  describe('5. I1 flood', () => {
    it('1000 I1s from different tags, nonces and sources leave B without state', () => {
      const { w, b } = setup();
      for (let i = 0; i < 1000; i++) {
        b.inject({ type: 'I1', initiatorContextTag: i + 1, initiatorNonce: (i * 2_654_435_761) >>> 0, options: [] }, `2001:db8:ff::${(i + 1).toString(16)}`, i % 2 === 0 ? B1 : B2);
      }
      assert.equal(b.table.size, 0);
      assert.equal(controlEntries(b), 0);
      assert.equal(b.machine.nextDeadline(), undefined);
      assert.equal(w.network.queue.length, 1000);
      assert.ok(w.network.queue.every((p) => p.message.type === 'R1'));
      assert.equal(b.count('r1-sent'), 1000);
      assert.equal(b.count('rate-limited'), 0, 'R1s are not Errors');
    });
  });

  describe('6. simultaneous I1s', () => {
    it('A.start(A1, B1) and B.start(B1, A1) at once: R2s cross, both ESTABLISHED with matching tags', () => {
      const { w, a, b } = setup();
      const ctxA = a.machine.start(A1, B1);
      const ctxB = b.machine.start(B1, A1);
      assert.ok(ctxA && ctxB);
      w.network.settle();
      assert.deepEqual(types(w.network.sent), ['I1', 'I1', 'R2', 'R2']);
      assert.equal(ctxA.state, 'ESTABLISHED');
      assert.equal(ctxB.state, 'ESTABLISHED');
      assertTagsMatch(ctxA, ctxB);
      assert.equal(a.table.size, 1);
      assert.equal(b.table.size, 1);
      assert.deepEqual(texts(ctxA.peerLocators), [canon(B1), canon(B2)]);
      assert.deepEqual(texts(ctxB.peerLocators), [canon(A1), canon(A2)]);
      assert.deepEqual(a.established, [ctxA]);
      assert.deepEqual(b.established, [ctxB]);
      assert.equal(a.machine.nextDeadline(), undefined, 'the I1 timer is gone');
      assert.equal(b.machine.nextDeadline(), undefined);
    });

    it('when one of the crossing I1s is lost, the retransmission completes the other side', () => {
      const { w, a, b } = setup();
      w.network.rule({ type: 'I1', sender: 'B', action: 'drop', count: 1 });
      const ctxA = a.machine.start(A1, B1);
      const ctxB = b.machine.start(B1, A1);
      assert.ok(ctxA && ctxB);
      w.network.settle();
      assert.equal(ctxA.state, 'ESTABLISHED');
      assert.equal(ctxB.state, 'I1-SENT');
      w.advance(4000);
      assert.equal(ctxB.state, 'ESTABLISHED');
      assertTagsMatch(ctxA, ctxB);
      assert.equal(a.table.size, 1);
      assert.equal(b.table.size, 1);
    });
  });

  describe('7. retransmitted I2 after B is established', () => {
    it('B resends R2 with the same tag and keeps its one context', () => {
      const { w, a, b } = setup();
      w.network.rule({ type: 'R2', action: 'drop', count: 1 });
      const ctxA = a.machine.start(A1, B1);
      assert.ok(ctxA);
      w.network.settle();
      const ctxB = b.only();
      assert.equal(ctxB.state, 'ESTABLISHED');
      assert.equal(ctxA.state, 'I2-SENT');

      w.advance(4000);
      assert.equal(ctxA.state, 'ESTABLISHED');
      assert.equal(b.only(), ctxB, 'the same context object');
      assertTagsMatch(ctxA, ctxB);
      const r2s = w.network.messages({ type: 'R2' }).map((p) => msg(p, 'R2'));
      assert.equal(r2s.length, 2);
      assert.deepEqual(r2s.map((m) => m.responderContextTag), [ctxB.localContextTag, ctxB.localContextTag]);
      assert.equal(b.established.length, 1, 'B established once');
      assert.equal(a.established.length, 1);
      assert.deepEqual(b.removed, []);
    });

    it('a late R1 (delayed past the I1 retransmission) is rejected once the exchange is done', () => {
      const { w, a, b } = setup();
      w.network.rule({ type: 'R1', action: 'delay', count: 1 });
      const ctxA = a.machine.start(A1, B1);
      assert.ok(ctxA);
      w.network.settle();
      assert.equal(ctxA.state, 'I1-SENT');
      w.advance(4000);
      assert.equal(ctxA.state, 'ESTABLISHED');
      w.network.releaseDelayed();
      w.network.settle();
      assert.equal(a.count('rejected-nonce'), 1);
      assert.equal(ctxA.state, 'ESTABLISHED');
      assert.equal(w.network.messages({ type: 'I2' }).length, 1);
      assertTagsMatch(ctxA, b.only());
    });

    it('a peer that restarted and initiates again (I1 from its verified ULID) gets an R2 and both agree on the tags', () => {
      const { w, a, b } = setup();
      const { ctxB } = establish(w, a, b);
      a.restart();
      const again = a.machine.start(A1, B1);
      assert.ok(again);
      w.network.settle();
      assert.deepEqual(types(w.network.sent.slice(4)), ['I1', 'R2']);
      assert.equal(again.state, 'ESTABLISHED');
      assert.equal(b.only(), ctxB, 'B keeps its context');
      assertTagsMatch(again, ctxB);
    });

    it('a duplicated I2 gives a second R2 and nothing else', () => {
      const { w, a, b } = setup();
      w.network.rule({ type: 'I2', action: 'duplicate', count: 1 });
      const { ctxA, ctxB } = establish(w, a, b);
      assert.equal(w.network.messages({ type: 'R2' }).length, 2);
      assert.equal(b.table.size, 1);
      assert.equal(b.established.length, 1);
      assert.equal(a.established.length, 1);
      assert.equal(a.count('rejected-nonce'), 1, 'the second R2 finds no pending exchange');
      assertTagsMatch(ctxA, ctxB);
    });
  });

  describe('8. peer restart: R1bis / I2bis', () => {
    it('B lost its state: unknown tag → R1bis → I2bis → B rebuilds with its old tag → R2', () => {
      const { w, a, b } = setup();
      const { ctxA, ctxB } = establish(w, a, b);
      const tagB = ctxB.localContextTag;
      const tagA = ctxA.localContextTag;
      b.restart();
      assert.equal(b.table.size, 0);

      // The data plane got a payload packet with tag tagB from A1 to B1.
      b.machine.unknownContextTag(tagB, B1, A1);
      assert.equal(b.table.size, 0, 'R1bis keeps no state');
      assert.deepEqual(types(w.network.queue), ['R1bis']);
      const r1bisP = w.network.queue[0] as WirePacket;
      assert.equal(r1bisP.from, canon(B1));
      assert.equal(r1bisP.to, canon(A1));
      const r1bis = msg(r1bisP, 'R1bis');
      assert.equal(r1bis.packetContextTag, tagB);
      assert.equal(b.count('r1bis-sent'), 1);

      w.network.deliver();
      assert.equal(ctxA.state, 'I2BIS-SENT');
      assert.equal(a.count('i2bis-sent'), 1);
      const i2bis = msg(w.network.queue[0], 'I2bis');
      assert.equal(i2bis.packetContextTag, tagB);
      assert.equal(i2bis.initiatorContextTag, tagA);
      assert.equal(i2bis.responderNonce, r1bis.responderNonce);
      assert.ok(opt(i2bis, 'ResponderValidator').validator.equals(opt(r1bis, 'ResponderValidator').validator));
      assert.deepEqual(opt(i2bis, 'UlidPair'), { kind: 'UlidPair', senderUlid: canon(A1), receiverUlid: canon(B1) });
      assert.ok(findOption(i2bis.options, 'LocatorList'));
      assert.ok(findOption(i2bis.options, 'CgaParameterDataStructure'));

      w.network.deliver();
      const rebuilt = b.only();
      assert.notEqual(rebuilt, ctxB);
      assert.equal(rebuilt.state, 'ESTABLISHED');
      assert.equal(rebuilt.localContextTag, tagB, 'the tag A still uses');
      assert.equal(rebuilt.peerContextTag, tagA);
      assert.equal(rebuilt.localUlid.text, canon(B1));
      assert.equal(rebuilt.peerUlid.text, canon(A1));
      assert.deepEqual(texts(rebuilt.peerLocators), [canon(A1), canon(A2)]);
      assert.equal(msg(w.network.queue[0], 'R2').responderContextTag, tagB);

      w.network.deliver();
      assert.equal(w.network.queue.length, 0);
      assert.equal(ctxA.state, 'ESTABLISHED');
      assert.equal(ctxA.localContextTag, tagA);
      assertTagsMatch(ctxA, rebuilt);
      assert.deepEqual(a.established, [ctxA, ctxA], 'established again');
      assert.equal(b.established.length, 2, 'once before the restart, once rebuilt');
      assert.equal(last(b.established), rebuilt);
      assert.deepEqual(types(w.network.sent.slice(4)), ['R1bis', 'I2bis', 'R2']);
    });

    it('an I2bis unanswered i2Retries times: A removes the context', () => {
      const { w, a, b } = setup();
      const { ctxA, ctxB } = establish(w, a, b);
      w.network.rule({ type: 'I2bis', action: 'drop' });
      b.restart();
      b.machine.unknownContextTag(ctxB.localContextTag, B1, A1);
      w.network.settle();
      assert.equal(ctxA.state, 'I2BIS-SENT');
      w.advance(28_000 - 1);
      assert.equal(a.table.size, 1);
      w.advance(1);
      assert.equal(a.table.size, 0);
      assert.deepEqual(w.network.messages({ type: 'I2bis' }).map((p) => p.at - T0), [0, 4000, 12_000]);
      assert.equal(a.removed.length, 1);
      assert.equal(a.removed[0]?.reason, 'I2bis unanswered');
      assert.equal(a.machine.nextDeadline(), undefined);
    });

    it('an R1bis for a tag no context of A uses is rejected', () => {
      const { w, a, b } = setup();
      const { ctxA } = establish(w, a, b);
      a.inject({ type: 'R1bis', packetContextTag: ctxA.peerContextTag + 1, responderNonce: 1, options: [{ kind: 'ResponderValidator', validator: Buffer.alloc(16) }] }, B1, A1);
      a.inject({ type: 'R1bis', packetContextTag: ctxA.peerContextTag, responderNonce: 1, options: [{ kind: 'ResponderValidator', validator: Buffer.alloc(16) }] }, X, A1);
      assert.equal(a.count('rejected-no-context'), 2, 'wrong tag; right tag from a locator not in the peer set');
      assert.equal(ctxA.state, 'ESTABLISHED');
      assert.equal(w.network.queue.length, 0);
    });

    it('an I2bis with a validator for another packet tag is rejected', () => {
      const { w, a, b } = setup();
      const { ctxA, ctxB } = establish(w, a, b);
      b.restart();
      b.machine.unknownContextTag(ctxB.localContextTag, B1, A1);
      const r1bis = msg(w.network.queue.pop(), 'R1bis');
      const i2bis: I2bisMessage = {
        type: 'I2bis',
        initiatorContextTag: ctxA.localContextTag,
        initiatorNonce: 3,
        responderNonce: r1bis.responderNonce,
        packetContextTag: ctxB.localContextTag + 1,
        options: [opt(r1bis, 'ResponderValidator'), ...a.security.localLocatorOptions(A1, [A1, A2], 1, true), { kind: 'UlidPair', senderUlid: A1, receiverUlid: B1 }],
      };
      b.inject(i2bis, A1, B1);
      assert.equal(b.count('rejected-validator'), 1);
      assert.equal(b.table.size, 0);
      // An R1 validator (kind 0) does not pass as an R1bis one either.
      b.inject({ type: 'I1', initiatorContextTag: ctxA.localContextTag, initiatorNonce: 3, options: [] }, A1, B1);
      const r1 = msg(w.network.queue.pop(), 'R1');
      b.inject({ ...i2bis, packetContextTag: ctxA.localContextTag, responderNonce: r1.responderNonce, options: [opt(r1, 'ResponderValidator'), ...i2bis.options.slice(1)] }, A1, B1);
      assert.equal(b.count('rejected-validator'), 2);
      assert.equal(b.table.size, 0);
    });

    it('a control message for a tag B lost (Update Request) triggers R1bis too', () => {
      const { w, a, b } = setup();
      const { ctxB } = establish(w, a, b);
      b.restart();
      w.network.rule({ type: 'I2bis', action: 'drop' });
      addA3(a);
      w.network.settle();
      assert.equal(b.count('rejected-no-context'), 1);
      const r1bis = msg(w.network.messages({ type: 'R1bis' })[0], 'R1bis');
      assert.equal(r1bis.packetContextTag, ctxB.localContextTag);
      assert.equal(a.only().state, 'I2BIS-SENT');
    });

    // Regression (was a bug, now fixed): (same root cause as the Update Request retransmission bug in section 9) A's Update
    // Request is still pending after the I2bis recovery, and the I2bis already carried its new
    // generation; every retransmission is then "not newer" at B, rejected as a replay, never
    // acknowledged: A retransmits it forever (every 120 s).
    it('an Update Request that met the restarted B is acknowledged once the context is rebuilt', () => {
      const { w, a, b } = setup();
      const { ctxA } = establish(w, a, b);
      b.restart();
      addA3(a);
      w.network.settle();
      assert.equal(ctxA.state, 'ESTABLISHED');
      w.advance(4000);
      assert.equal(a.machine.describe(ctxA.id)?.updatePending, false);
      assert.equal(b.count('rejected-replay'), 0);
    });
  });

  describe('9. Update Request / Update Acknowledgement', () => {
    it('A adds a locator: UR with a newer generation, B verifies and acknowledges, A clears its pending update', () => {
      const { w, a, b } = setup();
      const { ctxA, ctxB } = establish(w, a, b);
      const i2Generation = opt(msg(w.network.messages({ type: 'I2' })[0], 'I2'), 'LocatorList').generation;

      addA3(a);
      assert.equal(a.machine.describe(ctxA.id)?.updatePending, true);
      assert.deepEqual(texts(ctxA.localLocators), [canon(A1), canon(A2), canon(A3)]);
      assert.deepEqual(types(w.network.queue), ['UpdateRequest']);
      const urP = w.network.queue[0] as WirePacket;
      assert.equal(urP.from, canon(A1));
      assert.equal(urP.to, canon(B1));
      const ur = msg(urP, 'UpdateRequest');
      assert.equal(ur.receiverContextTag, ctxB.localContextTag);
      const list = opt(ur, 'LocatorList');
      assert.equal(list.generation, (i2Generation + 1) >>> 0);
      assert.ok(newerGeneration(list.generation, i2Generation));
      assert.deepEqual(list.locators.map((l) => l.address), [canon(A1), canon(A2), canon(A3)]);
      assert.ok(opt(ur, 'CgaParameterDataStructure').data.equals(parametersOf('A')), 'the first update carries the parameters');
      assert.equal(a.eventsOf('update-sent')[0]?.generation, list.generation);

      w.network.deliver();
      assert.deepEqual(texts(ctxB.peerLocators), [canon(A1), canon(A2), canon(A3)]);
      assert.deepEqual(b.changed, [{ ctx: ctxB, currentPairBroken: false }]);
      assert.equal(b.count('update-accepted'), 1);
      assert.deepEqual(types(w.network.queue), ['UpdateAcknowledgement']);
      const uaP = w.network.queue[0] as WirePacket;
      assert.equal(uaP.from, canon(B1));
      assert.equal(uaP.to, canon(A1));
      const ua = msg(uaP, 'UpdateAcknowledgement');
      assert.equal(ua.receiverContextTag, ctxA.localContextTag);
      assert.equal(ua.requestNonce, ur.requestNonce);

      w.network.deliver();
      assert.equal(a.machine.describe(ctxA.id)?.updatePending, false);
      assert.equal(a.count('update-acknowledged'), 1);
      assert.equal(a.machine.nextDeadline(), undefined);
      w.advance(600_000);
      assert.equal(w.network.messages({ type: 'UpdateRequest' }).length, 1, 'no retransmission once acknowledged');
    });

    it('the next update leaves the parameters out (B remembers them) and still verifies', () => {
      const { w, a, b } = setup();
      const { ctxB } = establish(w, a, b);
      addA3(a);
      w.network.settle();
      a.locators = [canon(A1), canon(A3)];
      a.machine.localLocatorsChanged();
      const ur = msg(w.network.queue[0], 'UpdateRequest');
      assert.equal(findOption(ur.options, 'CgaParameterDataStructure'), undefined);
      w.network.settle();
      assert.deepEqual(texts(ctxB.peerLocators), [canon(A1), canon(A3)]);
      assert.equal(b.count('update-accepted'), 2);
      assert.ok(last(b.security.verifyCalls)?.parameters?.equals(parametersOf('A')), 'verified with the remembered parameters');
    });

    it('retransmits the UR when UAs are lost: 4, 8, 16, 32, 64 s, then capped at maxUpdateTimeoutMs', () => {
      const { w, a, b } = setup();
      const { ctxA } = establish(w, a, b);
      w.network.rule({ type: 'UpdateAcknowledgement', action: 'drop' });
      const t = w.clock.t;
      addA3(a);
      w.advance(364_000);
      const at = w.network.messages({ type: 'UpdateRequest' }).map((p) => p.at - t);
      assert.deepEqual(at, [0, 4000, 12_000, 28_000, 60_000, 124_000, 244_000, 364_000]);
      const nonces = new Set(w.network.messages({ type: 'UpdateRequest' }).map((p) => msg(p, 'UpdateRequest').requestNonce));
      assert.equal(nonces.size, 1, 'a retransmission, not a new request');
      assert.equal(a.machine.describe(ctxA.id)?.updatePending, true);
      assert.equal(a.machine.nextDeadline(), t + 364_000 + DEFAULT_TIMERS.maxUpdateTimeoutMs);
    });

    it('honours smaller timers (updateTimeoutMs, maxUpdateTimeoutMs)', () => {
      const { w, a, b } = setup({ timers: { updateTimeoutMs: 1000, maxUpdateTimeoutMs: 5000 } });
      establish(w, a, b);
      w.network.rule({ type: 'UpdateAcknowledgement', action: 'drop' });
      const t = w.clock.t;
      addA3(a);
      w.advance(20_000);
      assert.deepEqual(w.network.messages({ type: 'UpdateRequest' }).map((p) => p.at - t), [0, 1000, 3000, 7000, 12_000, 17_000]);
    });

    // Regression (was a bug, now fixed): shim6d/context-machine.ts onUpdateRequest (line 612): a retransmitted Update Request
    // (its UA was lost) has the generation B already accepted, so it is rejected as a replay and
    // never acknowledged; A retransmits it forever. Expected: an Update Request with the
    // generation (and request nonce) B last accepted is answered with a UA again, without
    // changing anything or calling peerLocatorsChanged; only older generations are replays.
    it('a retransmitted UR whose UA was lost is acknowledged again', () => {
      const { w, a, b } = setup();
      const { ctxA, ctxB } = establish(w, a, b);
      w.network.rule({ type: 'UpdateAcknowledgement', action: 'drop', count: 1 });
      addA3(a);
      w.network.settle();
      assert.equal(b.changed.length, 1);
      w.advance(4000);
      assert.equal(b.count('rejected-replay'), 0);
      assert.equal(w.network.messages({ type: 'UpdateAcknowledgement' }).length, 2);
      assert.equal(a.machine.describe(ctxA.id)?.updatePending, false);
      assert.equal(b.changed.length, 1, 'nothing changed the second time');
      assert.deepEqual(texts(ctxB.peerLocators), [canon(A1), canon(A2), canon(A3)]);
    });

    it('a UA with the wrong nonce does not clear the pending update', () => {
      const { w, a, b } = setup();
      const { ctxA } = establish(w, a, b);
      w.network.rule({ type: 'UpdateAcknowledgement', action: 'drop' });
      addA3(a);
      const ur = msg(w.network.queue[0], 'UpdateRequest');
      w.network.settle();
      a.inject({ type: 'UpdateAcknowledgement', receiverContextTag: ctxA.localContextTag, requestNonce: (ur.requestNonce + 1) >>> 0, options: [] }, B1, A1);
      assert.equal(a.count('rejected-nonce'), 1);
      assert.equal(a.machine.describe(ctxA.id)?.updatePending, true);
      a.inject({ type: 'UpdateAcknowledgement', receiverContextTag: ctxA.localContextTag, requestNonce: ur.requestNonce, options: [] }, B1, A1);
      assert.equal(a.machine.describe(ctxA.id)?.updatePending, false);
    });

    it('a UR with Locator Preferences only (current generation) sets the peer preferences and is acknowledged', () => {
      const { w, a, b } = setup();
      const { ctxA, ctxB } = establish(w, a, b);
      const generation = opt(msg(w.network.messages({ type: 'I2' })[0], 'I2'), 'LocatorList').generation;
      b.inject({ type: 'UpdateRequest', receiverContextTag: ctxB.localContextTag, requestNonce: 42, options: [{ kind: 'LocatorPreferences', generation, elementLength: 1, elements: [{ flags: 0 }, { flags: 1 }] }] }, A1, B1);
      assert.deepEqual(ctxB.peerPreferences, [
        { locator: canon(A1), flags: 0, priority: undefined, weight: undefined },
        { locator: canon(A2), flags: 1, priority: undefined, weight: undefined },
      ]);
      const ua = msg(w.network.queue[0], 'UpdateAcknowledgement');
      assert.equal(ua.requestNonce, 42);
      assert.equal(ua.receiverContextTag, ctxA.localContextTag);
    });

    it('localLocatorsChanged() leaves contexts that are not ESTABLISHED alone; sendUpdate() refuses them', () => {
      const { w, a } = setup();
      w.network.rule({ type: 'I1', action: 'drop' });
      const ctx = a.machine.start(A1, B1);
      assert.ok(ctx);
      w.network.settle();
      a.machine.localLocatorsChanged();
      assert.equal(w.network.messages({ type: 'UpdateRequest' }).length, 0);
      assert.equal(a.machine.sendUpdate(ctx.id), false);
      assert.equal(a.machine.sendUpdate(999), false);
    });

    // Regression (was a bug, now fixed): shim6d/context-machine.ts localLocatorsChanged (line 315) only updates ESTABLISHED
    // contexts, and sendI2 (line 406) sends ctx.localLocators as they were at start(): a local
    // locator change while the exchange is in progress is lost; the context is established
    // with the old list and no Update Request follows. Expected: the I2 carries the current
    // locators (or an Update Request follows establishment).
    it('a local locator change during the exchange reaches the peer', () => {
      const { w, a, b } = setup();
      const ctxA = a.machine.start(A1, B1);
      assert.ok(ctxA);
      addA3(a); // the I1 is still in flight
      w.network.settle();
      assert.equal(ctxA.state, 'ESTABLISHED');
      assert.deepEqual(texts(ctxA.localLocators), [canon(A1), canon(A2), canon(A3)]);
      assert.deepEqual(texts(b.only().peerLocators), [canon(A1), canon(A2), canon(A3)]);
    });
  });

  describe('10. forged and replayed Update Requests', () => {
    it('a UR listing a locator outside A’s HBA set is rejected: no change, no UA', () => {
      const { w, a, b } = setup();
      const { ctxB } = establish(w, a, b);
      const generation = opt(msg(w.network.messages({ type: 'I2' })[0], 'I2'), 'LocatorList').generation;
      const forged: UpdateRequestMessage = {
        type: 'UpdateRequest',
        receiverContextTag: ctxB.localContextTag,
        requestNonce: 7,
        options: [
          { kind: 'LocatorList', generation: (generation + 1) >>> 0, locators: [{ address: A1, verificationMethod: 1 }, { address: X, verificationMethod: 1 }] },
          { kind: 'CgaParameterDataStructure', data: parametersOf('A') },
        ],
      };
      b.inject(forged, X, B1);
      b.inject(forged, A1, B1);
      assert.equal(b.count('rejected-locators'), 2);
      assert.deepEqual(b.eventsOf('rejected-locators').map((d) => d.reason), ['hba-not-in-set', 'hba-not-in-set']);
      assert.deepEqual(texts(ctxB.peerLocators), [canon(A1), canon(A2)]);
      assert.deepEqual(b.changed, []);
      assert.deepEqual(w.network.queue.map((p) => p.message.type), ['Error', 'Error'], 'no UA; Error code 2 for each');
      assert.equal(b.count('update-accepted'), 0);
      // Parameters that name another host fail too.
      b.inject({ ...forged, options: [{ kind: 'LocatorList', generation: (generation + 1) >>> 0, locators: [{ address: A1, verificationMethod: 1 }] }, { kind: 'CgaParameterDataStructure', data: parametersOf('B') }] }, A1, B1);
      assert.equal(b.count('rejected-locators'), 3);
      assert.equal(last(b.eventsOf('rejected-locators'))?.reason, 'hba-parameters-mismatch');
      assert.deepEqual(texts(ctxB.peerLocators), [canon(A1), canon(A2)]);
    });

    it('a replay of an earlier UR, after a newer one, is rejected-replay: no change, no UA', () => {
      const { w, a, b } = setup();
      const { ctxB } = establish(w, a, b);
      addA3(a);
      const first = w.network.queue[0] as WirePacket;
      w.network.settle();
      a.locators = [canon(A1), canon(A3)];
      a.machine.localLocatorsChanged();
      w.network.settle();
      assert.deepEqual(texts(ctxB.peerLocators), [canon(A1), canon(A3)]);
      const uas = w.network.messages({ type: 'UpdateAcknowledgement' }).length;

      b.machine.receive(Buffer.from(first.bytes));
      assert.equal(b.count('rejected-replay'), 1);
      assert.deepEqual(texts(ctxB.peerLocators), [canon(A1), canon(A3)], 'not back to the old list');
      assert.equal(b.changed.length, 2);
      assert.equal(w.network.queue.length, 0);
      assert.equal(w.network.messages({ type: 'UpdateAcknowledgement' }).length, uas);
    });

    it('a UR with the current generation but another list is rejected-replay', () => {
      const { w, a, b } = setup();
      const { ctxB } = establish(w, a, b);
      addA3(a);
      const ur = msg(w.network.queue[0], 'UpdateRequest');
      w.network.settle();
      const list = opt(ur, 'LocatorList');
      b.inject({ ...ur, requestNonce: 99, options: [{ ...list, locators: [{ address: A1, verificationMethod: 1 }] }] }, A1, B1);
      assert.equal(b.count('rejected-replay'), 1);
      assert.deepEqual(texts(ctxB.peerLocators), [canon(A1), canon(A2), canon(A3)]);
      assert.equal(w.network.queue.length, 0);
    });

    it('a UR for a tag B does not know is answered with R1bis (rejected-no-context)', () => {
      const { w, b } = setup();
      b.inject({ type: 'UpdateRequest', receiverContextTag: 0x777, requestNonce: 1, options: [] }, A1, B1);
      assert.equal(b.count('rejected-no-context'), 1);
      assert.deepEqual(types(w.network.queue), ['R1bis']);
      assert.equal(msg(w.network.queue[0], 'R1bis').packetContextTag, 0x777);
    });

    // Regression (was a bug, now fixed): shim6d/context-machine.ts acceptPeerLocators (line 679) says "false (counted, Error
    // sent)" but sends no Error: a peer whose list does not verify is never told (Error code 2,
    // Locator Verification Method Failed), so the onError handling that resends the CGA
    // parameters (line 641) is never triggered by this implementation. Expected: an Error code
    // 2 to the sender (rate-limited like the others).
    it('a UR whose list does not verify is answered with Error code 2', () => {
      const { w, a, b } = setup();
      const { ctxB } = establish(w, a, b);
      const generation = opt(msg(w.network.messages({ type: 'I2' })[0], 'I2'), 'LocatorList').generation;
      b.inject({ type: 'UpdateRequest', receiverContextTag: ctxB.localContextTag, requestNonce: 7, options: [{ kind: 'LocatorList', generation: (generation + 1) >>> 0, locators: [{ address: X, verificationMethod: 1 }] }, { kind: 'CgaParameterDataStructure', data: parametersOf('A') }] }, A1, B1);
      const error = msg(w.network.queue[0], 'Error');
      assert.equal(error.errorCode, ErrorCode.LocatorVerificationMethodFailed);
    });
  });

  describe('11. an update that removes the current peer locator', () => {
    it('peerLocatorsChanged(ctx, true) when the pair in use loses its peer locator', () => {
      const { w, a, b } = setup();
      const { ctxB } = establish(w, a, b);
      ctxB.current = resolvePair(ctxB, B1, A2); // reapd moved B to (B1, A2)
      a.locators = [canon(A1)];
      a.machine.localLocatorsChanged();
      w.network.settle();
      assert.deepEqual(texts(ctxB.peerLocators), [canon(A1)]);
      assert.deepEqual(b.changed, [{ ctx: ctxB, currentPairBroken: true }]);
      assert.equal(ctxB.peerLocatorKeys.has(locator(A2, 'unverified').key), false, 'A2 is no longer accepted');
    });

    it('peerLocatorsChanged(ctx, false) when another locator goes', () => {
      const { w, a, b } = setup();
      const { ctxB } = establish(w, a, b);
      a.locators = [canon(A1)];
      a.machine.localLocatorsChanged();
      w.network.settle();
      assert.deepEqual(b.changed, [{ ctx: ctxB, currentPairBroken: false }]);
    });

    // Regression (was a bug, now fixed): shim6d/context-machine.ts onUpdateRequest line 617: `|| before === ctx.peerUlid.key`
    // makes the pair in use never "broken" while its peer locator is the peer's ULID, even when
    // the peer's new list no longer contains that address (the usual failure: the ULID's
    // provider went away). Expected: currentPairBroken = true when the current peer locator is
    // not in the new list, ULID or not.
    it('peerLocatorsChanged(ctx, true) when the current peer locator is the ULID and leaves the list', () => {
      const { w, a, b } = setup();
      const { ctxB } = establish(w, a, b);
      assert.equal(ctxB.current.peer.text, canon(A1));
      a.locators = [canon(A2)];
      a.machine.localLocatorsChanged();
      w.network.settle();
      assert.deepEqual(texts(ctxB.peerLocators), [canon(A2)]);
      assert.deepEqual(b.changed, [{ ctx: ctxB, currentPairBroken: true }]);
    });
  });

  describe('12. Error messages', () => {
    it('an unknown message type (100) → Error code 0, pointer 42, the packet in error from its IPv6 header', () => {
      const { w, a, b } = setup();
      const packet = rawControlPacket(100, A1, B1);
      b.machine.receive(packet);
      assert.equal(b.count('rejected-malformed'), 1);
      assert.equal(b.count('error-sent'), 1);
      assert.deepEqual(types(w.network.queue), ['Error']);
      const p = w.network.queue[0] as WirePacket;
      assert.equal(p.from, canon(B1));
      assert.equal(p.to, canon(A1));
      const error = msg(p, 'Error');
      assert.equal(error.errorCode, ErrorCode.UnknownMessageType);
      assert.equal(error.pointer, 42, 'the Type octet of the Shim6 header, counted from the IPv6 header that starts the packet in error');
      assert.ok(error.packetInError.subarray(0, packet.length).equals(packet), 'starts at the IPv6 header');
      assert.equal(error.packetInError[40 + 2], 100);
      assert.equal(b.table.size, 0);

      // A receives it and counts it.
      w.network.deliver();
      assert.equal(a.count('error-received'), 1);
      assert.deepEqual(a.eventsOf('error-received')[0], { from: canon(B1), code: 0, pointer: 42 });
    });

    it('receive(packet, shimOffset) takes the Shim6 header where the caller found it, as its own walk would', () => {
      // A Destination Options header (PadN) before the Shim6 header: the message starts at 48.
      const plain = rawControlPacket(100, A1, B1);
      const dstopts = Buffer.from([IPPROTO_SHIM6, 0, 1, 4, 0, 0, 0, 0]);
      const packet = ipv6Packet({ source: A1, destination: B1, nextHeader: 60, payload: Buffer.concat([dstopts, plain.subarray(40)]) });
      const errors: Array<Msg<'Error'>> = [];
      for (const shimOffset of [undefined, 48]) {
        const { w, b } = setup();
        b.machine.receive(packet, shimOffset);
        assert.equal(b.count('rejected-malformed'), 1);
        errors.push(msg(w.network.queue.pop(), 'Error'));
      }
      assert.equal(errors[0]?.pointer, 48 + 2, 'the Type octet, counted from the IPv6 header');
      assert.deepEqual(errors[1], errors[0]);
    });

    it('an I1 with an unknown critical option → Error code 1 pointing at the option', () => {
      const { w, b } = setup();
      const unknown: Shim6Option = { kind: 'Unknown', optionType: 0x1234, critical: true, contents: Buffer.alloc(4, 0xaa) };
      b.inject({ type: 'I1', initiatorContextTag: 5, initiatorNonce: 5, options: [unknown] }, A1, B1);
      let error = msg(w.network.queue.pop(), 'Error');
      assert.equal(error.errorCode, ErrorCode.CriticalOptionNotRecognized);
      assert.equal(error.pointer, 56, 'the first option of an I1 (40 + 16)');
      // After a known option.
      b.inject({ type: 'I1', initiatorContextTag: 5, initiatorNonce: 5, options: [{ kind: 'ForkedInstanceIdentifier', forkedInstanceId: 1 }, unknown] }, A1, B1);
      error = msg(w.network.queue.pop(), 'Error');
      assert.equal(error.pointer, 40 + 16 + optionTotalLength(4));
      assert.equal(error.packetInError[error.pointer + 1], ((0x1234 << 1) | 1) & 0xff, 'the option type octets');
      assert.equal(b.count('r1-sent'), 0);
      assert.equal(b.table.size, 0);
    });

    it('an unknown option without the critical bit is ignored: R1 as usual', () => {
      const { w, b } = setup();
      b.inject({ type: 'I1', initiatorContextTag: 5, initiatorNonce: 5, options: [{ kind: 'Unknown', optionType: 0x1234, contents: Buffer.alloc(4) }] }, A1, B1);
      assert.deepEqual(types(w.network.queue), ['R1']);
    });

    it('a bad checksum, a payload header (P bit) or a short packet gets no Error', () => {
      const { w, b } = setup();
      const bad = rawControlPacket(100, A1, B1);
      bad[40 + 4] = (bad[40 + 4] as number) ^ 0xff;
      b.machine.receive(bad);
      const i1 = encodeControlMessage({ type: 'I1', initiatorContextTag: 5, initiatorNonce: 5, options: [] });
      const p = Buffer.from(i1);
      p[2] = (p[2] as number) | 0x80;
      b.machine.receive(ipv6Packet({ source: A1, destination: B1, nextHeader: IPPROTO_SHIM6, payload: p }));
      b.machine.receive(Buffer.alloc(20));
      b.machine.receive(ipv6Packet({ source: A1, destination: B1, nextHeader: 17, payload: Buffer.alloc(8) }));
      assert.equal(w.network.queue.length, 0);
      assert.equal(b.count('rejected-malformed'), 4);
      assert.equal(b.count('error-sent'), 0);
    });

    it('Errors are rate-limited to errorsPerSecond, R1bis included', () => {
      const { w, b } = setup();
      for (let i = 0; i < 15; i++) b.machine.receive(rawControlPacket(100, A1, B1));
      assert.equal(w.network.queue.length, DEFAULT_TIMERS.errorsPerSecond);
      assert.equal(b.count('rate-limited'), 5);
      b.machine.unknownContextTag(0x55, B1, A1);
      assert.equal(w.network.queue.length, DEFAULT_TIMERS.errorsPerSecond, 'no R1bis either');
      assert.equal(b.count('rate-limited'), 6);
      w.clock.set(T0 + 999);
      b.machine.receive(rawControlPacket(100, A1, B1));
      assert.equal(w.network.queue.length, DEFAULT_TIMERS.errorsPerSecond, 'same second');
      w.clock.set(T0 + 1000);
      b.machine.receive(rawControlPacket(100, A1, B1));
      b.machine.unknownContextTag(0x55, B1, A1);
      assert.deepEqual(types(w.network.queue.slice(DEFAULT_TIMERS.errorsPerSecond)), ['Error', 'R1bis']);
    });

    it('honours errorsPerSecond', () => {
      const { w, b } = setup({ timers: { errorsPerSecond: 2 } });
      for (let i = 0; i < 5; i++) b.machine.receive(rawControlPacket(100, A1, B1));
      assert.equal(w.network.queue.length, 2);
    });

    it('an Error code 2 from the peer makes the next Update Request carry the CGA parameters again', () => {
      const { w, a, b } = setup();
      const { ctxA } = establish(w, a, b);
      addA3(a);
      w.network.settle(); // acknowledged: parameters sent
      a.locators = [canon(A1), canon(A2)];
      a.machine.localLocatorsChanged();
      assert.equal(findOption(msg(last(w.network.queue), 'UpdateRequest').options, 'CgaParameterDataStructure'), undefined);
      w.network.settle();
      a.inject({ type: 'Error', errorCode: ErrorCode.LocatorVerificationMethodFailed, pointer: 0, packetInError: Buffer.alloc(8) }, B1, A1);
      assert.equal(a.count('error-received'), 1);
      a.machine.sendUpdate(ctxA.id);
      assert.ok(findOption(msg(last(w.network.queue), 'UpdateRequest').options, 'CgaParameterDataStructure'));
    });

    it('Keepalive and Probe messages are left to reapd', () => {
      const { w, a, b } = setup();
      const { ctxA } = establish(w, a, b);
      const before = a.events.length;
      a.inject({ type: 'Keepalive', receiverContextTag: ctxA.localContextTag, options: [] }, B1, A1);
      a.inject({ type: 'Probe', receiverContextTag: ctxA.localContextTag, reapState: 0, sentProbes: [], receivedProbes: [], options: [] }, B1, A1);
      assert.equal(a.events.length, before);
      assert.equal(w.network.queue.length, 0);
    });
  });

  describe('13. context confusion', () => {
    it('responder side: a new context takes the peer tag of an older one with the same peer → the older one goes', () => {
      const { w, a, b } = setup();
      const { ctxA, ctxB } = establish(w, a, b);
      const tagA = ctxA.localContextTag;
      // A restarts and, by chance, allocates the same tag for a context on another ULID pair.
      a.restart({ script: tagScript(tagA) });
      const fresh = a.machine.start(A2, B1);
      assert.ok(fresh);
      assert.equal(fresh.localContextTag, tagA);
      w.network.settle();
      assert.equal(fresh.state, 'ESTABLISHED');

      assert.equal(b.count('context-confusion'), 1);
      assert.deepEqual(b.eventsOf('context-confusion')[0], { stale: ctxB.id, fresh: (b.table.all()[0] as ShimContext).id, peerTag: tagA });
      assert.equal(b.removed.length, 1);
      assert.equal(b.removed[0]?.ctx, ctxB);
      assert.match(b.removed[0]?.reason ?? '', /context confusion/);
      const ctxB2 = b.only();
      assert.equal(ctxB2.peerUlid.text, canon(A2));
      assertTagsMatch(fresh, ctxB2);
    });

    it('A, as responder, drops its older context when B (restarted) reuses that tag for another ULID pair', () => {
      const { w, a, b } = setup();
      const { ctxA } = establish(w, a, b);
      const tag = ctxA.peerContextTag;
      b.restart({ script: tagScript(tag) });
      const fromB = b.machine.start(B2, A1);
      assert.ok(fromB);
      assert.equal(fromB.localContextTag, tag);
      w.network.settle();
      assert.equal(fromB.state, 'ESTABLISHED');
      assert.equal(a.count('context-confusion'), 1);
      assert.equal(a.removed[0]?.ctx, ctxA);
      const fresh = a.only();
      assert.equal(fresh.peerUlid.text, canon(B2));
      assert.equal(fresh.peerContextTag, tag);
      assertTagsMatch(fresh, fromB);
    });

    it('no confusion when the same peer tag belongs to a peer with disjoint locators', () => {
      const { w, a, b } = setup();
      const c = w.host('C', ['2001:db8:c1::3']);
      const { ctxA } = establish(w, a, b);
      c.restart({ script: tagScript(ctxA.localContextTag) });
      const fromC = c.machine.start('2001:db8:c1::3', B1);
      assert.ok(fromC);
      w.network.settle();
      assert.equal(fromC.state, 'ESTABLISHED');
      assert.equal(b.table.size, 2);
      assert.equal(b.count('context-confusion'), 0);
    });

    // Regression (was a bug, now fixed): shim6d/context-machine.ts onR2 (line 425) never calls confusionCheck: when A is the
    // initiator, a new context that gets (in the R2) the peer tag of an older context with the
    // same peer keeps both, and A's stale context goes on sending with a tag that now names
    // another context at B. Expected: the older context removed ('context-confusion'), as on
    // the responder side (respondWithContext, line 582). Fix: call
    // this.confusionCheck(ctx, m.responderContextTag) in onR2 after setting peerContextTag
    // (and in onI1's ESTABLISHED branch it is already done).
    it('initiator side: a context whose R2 brings the peer tag of an older one → the older one goes', () => {
      const { w, a, b } = setup();
      const { ctxA, ctxB } = establish(w, a, b);
      b.restart({ script: tagScript(ctxB.localContextTag) });
      const second = a.machine.start(A2, B1);
      assert.ok(second);
      w.network.settle();
      assert.equal(second.state, 'ESTABLISHED');
      assert.equal(second.peerContextTag, ctxA.peerContextTag);
      assert.equal(a.count('context-confusion'), 1);
      assert.equal(a.removed[0]?.ctx, ctxA);
      assert.equal(a.table.size, 1);
    });
  });

  describe('14. forked contexts', () => {
    it('A.start(A1, B1, 7) beside the default context: a separate context keyed by fork 7 on both sides', () => {
      const { w, a, b } = setup();
      const base = establish(w, a, b);
      const sentBefore = w.network.sent.length;
      const fork = a.machine.start(A1, B1, 7);
      assert.ok(fork);
      assert.equal(fork.forkedInstanceId, 7);
      const i1 = msg(w.network.queue[0], 'I1');
      assert.equal(opt(i1, 'ForkedInstanceIdentifier').forkedInstanceId, 7);
      assert.equal(findOption(i1.options, 'UlidPair'), undefined);
      w.network.settle();
      const exchange = w.network.sent.slice(sentBefore);
      assert.deepEqual(types(exchange), ['I1', 'R1', 'I2', 'R2']);
      assert.equal(opt(msg(exchange[2], 'I2'), 'ForkedInstanceIdentifier').forkedInstanceId, 7);

      assert.equal(fork.state, 'ESTABLISHED');
      assert.equal(a.table.size, 2);
      assert.equal(b.table.size, 2);
      const forkB = b.table.byUlidPairKey(contextKey(locator(B1, 'unverified'), locator(A1, 'unverified'), 7));
      assert.ok(forkB);
      assert.equal(forkB.forkedInstanceId, 7);
      assertTagsMatch(fork, forkB);
      assert.notEqual(fork.localContextTag, base.ctxA.localContextTag);
      assert.notEqual(forkB.localContextTag, base.ctxB.localContextTag);
      assert.equal(b.table.byUlidPairKey(contextKey(locator(B1, 'unverified'), locator(A1, 'unverified'), 0)), base.ctxB, 'the default context is untouched');
      assert.equal(base.ctxA.state, 'ESTABLISHED');
      assertTagsMatch(base.ctxA, base.ctxB);
      assert.equal(a.machine.start(A1, B1, 7), undefined, 'one fork 7 per pair');
      assert.equal(b.count('context-confusion'), 0);
    });

    it('a fork and the default context can be started together (told apart by their nonces)', () => {
      const { w, a, b } = setup();
      const c0 = a.machine.start(A1, B1);
      const c7 = a.machine.start(A1, B1, 7);
      assert.ok(c0 && c7);
      w.network.settle();
      assert.equal(c0.state, 'ESTABLISHED');
      assert.equal(c7.state, 'ESTABLISHED');
      assert.equal(b.table.size, 2);
      for (const ctx of [c0, c7]) {
        const peer = b.table.byUlidPairKey(contextKey(locator(B1, 'unverified'), locator(A1, 'unverified'), ctx.forkedInstanceId));
        assert.ok(peer);
        assertTagsMatch(ctx, peer);
      }
    });
  });

  describe('15. ULID Pair option', () => {
    it('B takes the ULIDs from the ULID Pair option of an I1/I2 sent on other locators', () => {
      const { w, a, b } = setup();
      const pair: Shim6Option = { kind: 'UlidPair', senderUlid: A1, receiverUlid: B1 };
      b.inject({ type: 'I1', initiatorContextTag: 0x99, initiatorNonce: 4, options: [pair] }, A2, B2);
      const r1p = w.network.queue.pop();
      assert.equal(r1p?.from, canon(B2), 'R1 from the locator the I1 went to');
      assert.equal(r1p?.to, canon(A2));
      const r1 = msg(r1p, 'R1');
      const i2: I2Message = {
        type: 'I2',
        initiatorContextTag: 0x99,
        initiatorNonce: 4,
        responderNonce: r1.responderNonce,
        options: [opt(r1, 'ResponderValidator'), ...a.security.localLocatorOptions(A1, [A1, A2], 1, true), pair],
      };
      // The validator binds the ULIDs: another pair in the I2 fails.
      b.inject({ ...i2, options: [...i2.options.slice(0, -1), { kind: 'UlidPair', senderUlid: A2, receiverUlid: B1 }] }, A2, B2);
      assert.equal(b.count('rejected-validator'), 1);
      b.inject({ ...i2, options: i2.options.slice(0, -1) }, A2, B2);
      assert.equal(b.count('rejected-validator'), 2, 'and so does no ULID Pair (ULIDs = locators)');

      b.inject(i2, A2, B2);
      const ctxB = b.only();
      assert.equal(ctxB.localUlid.text, canon(B1));
      assert.equal(ctxB.peerUlid.text, canon(A1));
      assert.equal(ctxB.current.local.text, canon(B2));
      assert.equal(ctxB.current.peer.text, canon(A2));
      assert.equal(isShimmed(ctxB), true);
      const r2p = w.network.queue.pop();
      assert.equal(r2p?.from, canon(B2));
      assert.equal(r2p?.to, canon(A2));
    });

    it('an I1 whose ULID Pair names a receiver ULID that is not ours is rejected-not-ours', () => {
      const { w, b } = setup();
      b.inject({ type: 'I1', initiatorContextTag: 0x99, initiatorNonce: 4, options: [{ kind: 'UlidPair', senderUlid: A1, receiverUlid: '2001:db8:b9::2' }] }, A2, B2);
      assert.equal(b.count('rejected-not-ours'), 1);
      assert.equal(w.network.queue.length, 0);
    });

    // start() has no way to choose the first locator pair (the first I1 always goes on the
    // ULIDs); setting ctx.current before a retransmission is the only way to exercise the
    // initiator's ULID Pair option.
    it('an initiator on another locator pair sends the ULID Pair option and both sides agree on the ULIDs', () => {
      const { w, a, b } = setup();
      w.network.rule({ type: 'I1', action: 'drop', count: 1 });
      const ctxA = a.machine.start(A1, B1);
      assert.ok(ctxA);
      w.network.settle();
      ctxA.current = resolvePair(ctxA, A2, B1);
      w.advance(4000);
      const i1p = last(w.network.messages({ type: 'I1' }));
      assert.equal(i1p?.from, canon(A2));
      assert.deepEqual(opt(msg(i1p, 'I1'), 'UlidPair'), { kind: 'UlidPair', senderUlid: canon(A1), receiverUlid: canon(B1) });
      assert.ok(findOption(msg(w.network.messages({ type: 'I2' })[0], 'I2').options, 'UlidPair'));
      assert.equal(ctxA.state, 'ESTABLISHED');
      const ctxB = b.only();
      assert.equal(ctxB.localUlid.text, canon(B1));
      assert.equal(ctxB.peerUlid.text, canon(A1));
      assert.equal(ctxB.current.peer.text, canon(A2));
      assertTagsMatch(ctxA, ctxB);
    });
  });

  describe('16. garbage collection', () => {
    it('an established context idle for idleTeardownMs goes at tick(); one with recent activity stays', () => {
      const activity = new Map<number, number>();
      const w = new SimWorld({ start: T0 });
      const a = w.host('A', [A1, A2], { lastActivity: (ctx) => activity.get(ctx.id) ?? 0 });
      const b = w.host('B', [B1, B2]);
      const idle = establish(w, a, b).ctxA;
      const busy = establish(w, a, b, 7).ctxA;
      assert.equal(a.machine.nextDeadline(), T0 + DEFAULT_TIMERS.idleTeardownMs);
      assert.equal(b.machine.nextDeadline(), undefined, 'B has no lastActivity: no idle teardown');

      w.advance(300_000);
      activity.set(busy.id, w.clock.t);
      assert.equal(a.machine.nextDeadline(), T0 + DEFAULT_TIMERS.idleTeardownMs);
      w.advance(300_000 - 1);
      assert.equal(a.table.size, 2);
      w.advance(1);
      assert.deepEqual(a.table.all(), [busy]);
      assert.equal(a.removed.length, 1);
      assert.equal(a.removed[0]?.ctx, idle);
      assert.match(a.removed[0]?.reason ?? '', /^idle for 600 s$/);
      assert.equal(a.machine.nextDeadline(), T0 + 300_000 + DEFAULT_TIMERS.idleTeardownMs);

      w.advance(300_000 - 1);
      assert.equal(a.table.size, 1);
      w.advance(1);
      assert.equal(a.table.size, 0);
      assert.equal(a.machine.nextDeadline(), undefined);
      assert.equal(b.table.size, 2);
    });

    it('idle time counts from establishment, not from a lastActivity of 0', () => {
      const w = new SimWorld({ start: T0 });
      const a = w.host('A', [A1, A2], { lastActivity: () => 0 });
      const b = w.host('B', [B1, B2]);
      w.clock.set(T0 + 5000);
      establish(w, a, b);
      w.advance(DEFAULT_TIMERS.idleTeardownMs - 1);
      assert.equal(a.table.size, 1);
      w.advance(1);
      assert.equal(a.table.size, 0);
    });

    it('remove() tears a context down with effects.removed', () => {
      const { w, a, b } = setup();
      const { ctxA } = establish(w, a, b);
      assert.equal(a.machine.remove(ctxA.id, 'console delete'), ctxA);
      assert.deepEqual(a.removed, [{ ctx: ctxA, reason: 'console delete' }]);
      assert.deepEqual(a.eventsOf('context-removed'), [{ id: ctxA.id, reason: 'console delete' }]);
      assert.equal(a.machine.remove(ctxA.id, 'again'), undefined);
      assert.equal(a.machine.describe(ctxA.id), undefined);
    });
  });

  describe('17. ICMPv6 Parameter Problem: the peer has no Shim6', () => {
    it('peerHasNoShim6 in I1-SENT → NO-SUPPORT with icmpHoldDownMs, no more I1s', () => {
      const { w, a } = setup();
      w.network.rule({ type: 'I1', action: 'drop' });
      const ctx = a.machine.start(A1, B1);
      assert.ok(ctx);
      w.network.settle();
      w.clock.set(T0 + 1000);
      a.machine.peerHasNoShim6('2001:db8:b1:0:0:0:0:2');
      assert.equal(ctx.state, 'NO-SUPPORT');
      assert.equal(a.eventsOf('no-support')[0]?.holdDownMs, DEFAULT_TIMERS.icmpHoldDownMs);
      assert.equal(a.machine.nextDeadline(), T0 + 1000 + DEFAULT_TIMERS.icmpHoldDownMs);
      assert.equal(a.machine.inHoldDown(B1), true);
      w.advance(DEFAULT_TIMERS.icmpHoldDownMs - 1);
      assert.equal(w.network.messages({ type: 'I1' }).length, 1, 'the I1 timer stopped');
      assert.equal(a.machine.start(A2, B1), undefined);
      w.advance(1);
      assert.equal(a.table.size, 0);
      assert.equal(a.removed[0]?.reason, 'hold-down over');
      assert.equal(a.machine.inHoldDown(B1), false);
    });

    it('peerHasNoShim6 leaves established contexts alone', () => {
      const { w, a, b } = setup();
      const { ctxA } = establish(w, a, b);
      a.machine.peerHasNoShim6(B1);
      assert.equal(ctxA.state, 'ESTABLISHED');
      assert.equal(a.machine.inHoldDown(B1), false);
    });

    it('an I1 from a peer in NO-SUPPORT: it speaks Shim6 after all', () => {
      const { w, a, b } = setup();
      const ctx = a.machine.start(A1, B1);
      assert.ok(ctx);
      a.machine.peerHasNoShim6(B1);
      w.network.queue = [];
      const fromB = b.machine.start(B1, A1);
      assert.ok(fromB);
      w.network.settle();
      assert.equal(a.removed[0]?.ctx, ctx);
      assert.equal(fromB.state, 'ESTABLISHED');
      assertTagsMatch(fromB, a.only());
    });
  });

  describe('18. nextDeadline()', () => {
    /** Nothing is due one millisecond before nextDeadline(), something is due at it. */
    function assertExact(w: SimWorld): void {
      const t = w.nextDeadline();
      assert.ok(t !== undefined, 'a deadline');
      assert.ok(t > w.clock.t, `deadline ${t} is in the future of ${w.clock.t}`);
      w.clock.set(t - 1);
      const before = w.activity();
      w.tickAll();
      assert.equal(w.activity(), before, `nothing happens at ${t - 1}`);
      w.clock.set(t);
      w.tickAll();
      assert.ok(w.activity() > before, `something happens at ${t}`);
    }

    it('is undefined with nothing pending', () => {
      const { w, a } = setup();
      assert.equal(a.machine.nextDeadline(), undefined);
      assert.equal(w.nextDeadline(), undefined);
    });

    it('is the I1 retransmission time, through every retransmission and the hold-down', () => {
      const { w, a } = setup();
      w.network.rule({ type: 'I1', action: 'drop' });
      a.machine.start(A1, B1);
      for (let i = 0; i < 6; i++) {
        assertExact(w);
        w.network.settle();
      }
      assert.equal(a.table.size, 0, 'the sixth deadline was the end of the hold-down');
      assert.equal(w.nextDeadline(), undefined);
    });

    it('is the earliest of several contexts’ timers', () => {
      const { w, a } = setup({ jitter: (() => { const js = [1, 0.5]; return () => js.shift() ?? 1; })() });
      w.network.rule({ type: 'I1', action: 'drop' });
      a.machine.start(A1, B1); // deadline T0 + 4000
      w.clock.set(T0 + 1000);
      a.machine.start(A1, B1, 7); // deadline T0 + 1000 + 2000
      assert.equal(a.machine.nextDeadline(), T0 + 3000);
      assertExact(w);
      assert.equal(a.machine.nextDeadline(), T0 + 4000);
    });

    it('is the I2 and I2bis retransmission times', () => {
      const { w, a, b } = setup();
      w.network.rule({ type: 'I2', action: 'drop', count: 1 });
      a.machine.start(A1, B1);
      w.network.settle();
      assert.equal(w.nextDeadline(), T0 + DEFAULT_TIMERS.i2TimeoutMs);
      assertExact(w);
      w.network.settle();
      assert.equal(w.nextDeadline(), undefined);

      w.network.rule({ type: 'I2bis', action: 'drop' });
      b.restart();
      b.machine.unknownContextTag(a.only().peerContextTag, B1, A1);
      w.network.settle();
      assertExact(w);
    });

    it('is the Update Request retransmission time, and the idle teardown time', () => {
      const activity = new Map<number, number>();
      const w = new SimWorld({ start: T0 });
      const a = w.host('A', [A1, A2], { lastActivity: (ctx) => activity.get(ctx.id) ?? 0 });
      const b = w.host('B', [B1, B2]);
      establish(w, a, b);
      w.network.rule({ type: 'UpdateAcknowledgement', action: 'drop' });
      w.clock.set(T0 + 10_000);
      addA3(a);
      w.network.settle();
      assert.equal(w.nextDeadline(), T0 + 14_000);
      assertExact(w);
      w.network.settle();
      assert.equal(w.nextDeadline(), T0 + 22_000);
      // The update is acknowledged: the idle teardown is what is left.
      w.network.clearRules();
      a.machine.sendUpdate(a.only().id);
      w.network.settle();
      assert.equal(w.nextDeadline(), T0 + DEFAULT_TIMERS.idleTeardownMs);
      assertExact(w);
      assert.equal(a.table.size, 0);
    });
  });

  describe('other findings', () => {
    // Regression (was a bug, now fixed): shim6d/context-machine.ts onI1 (lines 510-515): an I1 for a ULID pair with an
    // ESTABLISHED context overwrites ctx.peerContextTag with the I1's tag and answers with an
    // R2 carrying our tag and locators, without checking that the I1 comes from a verified
    // locator of the peer. Anyone (here an off-path host X, with a ULID Pair option naming
    // A1) can redirect B's context to a tag of its choice, learn B's tag, and (through
    // confusionCheck) get other contexts removed. Expected: an I1 whose source is not in the
    // peer's verified locator set gets an R1 and leaves the context unchanged; the peer tag
    // is only taken from messages that prove the peer (R2 of our own exchange, a verified
    // I2/I2bis).
    it('an I1 from an unverified locator does not change an ESTABLISHED context', () => {
      const { w, a, b } = setup();
      const { ctxA, ctxB } = establish(w, a, b);
      b.inject({ type: 'I1', initiatorContextTag: 0xbad, initiatorNonce: 1, options: [{ kind: 'UlidPair', senderUlid: A1, receiverUlid: B1 }] }, X, B1);
      assert.equal(ctxB.peerContextTag, ctxA.localContextTag);
      assert.equal(last(w.network.queue)?.message.type, 'R1', 'an R1, not an R2 revealing our tag');
    });

    // Regression (was a bug, now fixed): shim6d/context-machine.ts respondWithContext (lines 552-585): an I2bis (or I2) whose
    // source locator is neither the peer's ULID nor in its verified list replaces an existing
    // context. An off-path host X gets a valid R1bis for itself (by sending a payload packet
    // with any tag), then sends an I2bis from X with a ULID Pair option naming A1 and A's
    // (public) locator list: B's context with A is removed (without effects.removed) and
    // rebuilt with X's tags. Expected: the source locator must be verified for the claimed
    // ULID (otherwise rejected-locators / rejected-not-ours), and the old context kept.
    it('an I2bis from a locator not verified for the claimed ULID does not replace the context', () => {
      const { w, a, b } = setup();
      const { ctxA, ctxB } = establish(w, a, b);
      b.machine.unknownContextTag(0x999, B1, X);
      const r1bis = msg(w.network.queue.pop(), 'R1bis');
      b.inject({
        type: 'I2bis',
        initiatorContextTag: 0xbad,
        initiatorNonce: 1,
        responderNonce: r1bis.responderNonce,
        packetContextTag: 0x999,
        options: [opt(r1bis, 'ResponderValidator'), ...a.security.localLocatorOptions(A1, [A1, A2], 0x7000_0000, true), { kind: 'UlidPair', senderUlid: A1, receiverUlid: B1 }],
      }, X, B1);
      assert.equal(b.only(), ctxB);
      assert.equal(ctxB.peerContextTag, ctxA.localContextTag);
    });

    // Regression (was a bug, now fixed): shim6d/context-machine.ts respondWithContext lines 555-559 and 576-579: the old
    // context for the pair is taken out of the table (without effects.removed) before the
    // new one's locators are verified; when they do not verify, the new one is removed too
    // and the pair silently has no context (no removed, no established). Expected: verify
    // first, and replace the old context only once the new one is accepted (with
    // effects.removed(old, ...) when it goes).
    it('an I2bis whose locators do not verify leaves the existing context in place', () => {
      const { w, a, b } = setup();
      const { ctxB } = establish(w, a, b);
      b.machine.unknownContextTag(0x999, B1, A1);
      const r1bis = msg(w.network.queue.pop(), 'R1bis');
      b.inject({
        type: 'I2bis',
        initiatorContextTag: 0xbad,
        initiatorNonce: 1,
        responderNonce: r1bis.responderNonce,
        packetContextTag: 0x999,
        options: [opt(r1bis, 'ResponderValidator'), { kind: 'LocatorList', generation: 1, locators: [{ address: X, verificationMethod: 1 }] }, { kind: 'CgaParameterDataStructure', data: parametersOf('A') }, { kind: 'UlidPair', senderUlid: A1, receiverUlid: B1 }],
      }, A1, B1);
      assert.equal(b.count('rejected-locators'), 1);
      assert.equal(b.table.size, 1);
      assert.equal(b.only(), ctxB);
    });

    // Regression (was a bug, now fixed): shim6d/context-machine.ts tick (lines 362-366): after retransmit() removes a
    // context ('I2bis unanswered'), the same iteration goes on with its Control and, when the
    // Update Request deadline is due too, transmits an Update Request for the removed context.
    // Expected: nothing is sent for a context once it is removed (`continue` when
    // this.table.byId(id) is gone after retransmit).
    it('tick() sends nothing for a context it has just removed', () => {
      const { w, a, b } = setup();
      const { ctxA, ctxB } = establish(w, a, b);
      w.network.rule({ sender: 'A', action: 'drop' });
      addA3(a); // Update Request pending, deadlines +4, +12, +28 s
      b.restart();
      b.machine.unknownContextTag(ctxB.localContextTag, B1, A1);
      w.network.settle(); // I2bis pending, deadlines +4, +12, +28 s
      assert.equal(ctxA.state, 'I2BIS-SENT');
      w.advance(28_000);
      const removedAt = a.events.find((e) => e.event === 'context-removed')?.at;
      assert.equal(removedAt, T0 + 28_000);
      const after = w.network.sent.filter((p) => p.sender === 'A' && p.at >= T0 + 28_000);
      assert.deepEqual(types(after), []);
    });
  });

  describe('19. REAP Keepalive Timeout option (RFC 5534 section 5.2)', () => {
    it('is announced in I2, R2 and Update Request, and each side records the peer\'s', () => {
      const w = new SimWorld({ start: T0 });
      const a = w.host('A', [A1, A2], { keepaliveTimeout: 7 });
      const b = w.host('B', [B1, B2], { keepaliveTimeout: 3 });
      const { ctxA, ctxB } = establish(w, a, b);
      const sent = (type: string): ControlMessage[] => w.network.sent.filter((p) => p.message.type === type).map((p) => p.message);
      assert.equal(opt(sent('I2')[0] as I2Message, 'KeepaliveTimeout').keepaliveTimeout, 7);
      assert.equal(opt(sent('R2')[0] as { options: Shim6Option[] }, 'KeepaliveTimeout').keepaliveTimeout, 3);
      assert.equal(ctxA.peerKeepaliveTimeout, 3);
      assert.equal(ctxB.peerKeepaliveTimeout, 7);
      addA3(a);
      w.network.settle();
      assert.equal(opt(sent('UpdateRequest')[0] as UpdateRequestMessage, 'KeepaliveTimeout').keepaliveTimeout, 7);
    });

    it('is not sent when none is configured, and the peer keeps no value', () => {
      const { w, a, b } = setup();
      const { ctxB } = establish(w, a, b);
      assert.ok(w.network.sent.every((p) => !('options' in p.message) || findOption(p.message.options, 'KeepaliveTimeout') === undefined));
      assert.equal(ctxB.peerKeepaliveTimeout, undefined);
    });
  });

  describe('20. Update Request when the locator in use went away', () => {
    it('is sent from a locator the host still has, not from the removed one', () => {
      const { w, a, b } = setup();
      const { ctxA } = establish(w, a, b);
      ctxA.current = resolvePair(ctxA, A2, B1);
      a.locators = [canon(A1)];
      a.machine.localLocatorsChanged();
      const ur = w.network.queue.find((p) => p.message.type === 'UpdateRequest');
      assert.ok(ur, 'an Update Request was sent');
      assert.equal(ur.from, canon(A1), 'from the ULID, which A still has');
      assert.equal(ur.to, canon(B1));
    });
  });

  describe('21. lookups by index and the deadline queue, with many contexts', () => {
    it('5,000 contexts in I1-SENT at once: each R1 and each R2, delivered shuffled, finds its own context', () => {
      const N = 5000;
      const { w, a, b } = setup();
      const random = seededRandom32(21);
      const ctxs = startForks(a, N);
      const nonceOf = new Map(w.network.queue.map((p) => [msg(p, 'I1').initiatorContextTag, msg(p, 'I1').initiatorNonce]));
      assert.equal(nonceOf.size, N);

      w.network.deliver();
      assert.equal(b.table.size, 0, 'the R1s keep no state');
      assert.equal(w.network.queue.length, N);
      shuffle(w.network.queue, random);
      w.network.deliver();
      assert.equal(a.count('rejected-nonce'), 0);
      assert.ok(ctxs.every((ctx) => ctx.state === 'I2-SENT'));
      const i2s = w.network.queue.map((p) => msg(p, 'I2'));
      assert.equal(i2s.length, N);
      for (const i2 of i2s) assert.equal(i2.initiatorNonce, nonceOf.get(i2.initiatorContextTag), 'the R1 reached the context that sent its nonce');

      shuffle(w.network.queue, random);
      w.network.deliver();
      assert.equal(b.table.size, N);
      shuffle(w.network.queue, random);
      w.network.deliver();
      assert.equal(w.network.queue.length, 0);
      assert.equal(a.count('rejected-nonce'), 0);
      assert.equal(a.count('established'), N);
      for (const ctxA of ctxs) {
        assert.equal(ctxA.state, 'ESTABLISHED');
        assertTagsMatch(ctxA, peerOf(b, ctxA.forkedInstanceId));
      }
      assert.equal(a.count('context-confusion') + b.count('context-confusion'), 0);
      assert.equal(a.machine.nextDeadline(), undefined);
      assert.equal(filed(a).keys.nonces, 0, 'no exchange under way');
      assert.equal(filed(a).keys.awaitingR1, 0);
      assert.equal(filed(a).indexed, N);
    });

    it('a context removed mid-exchange leaves nothing filed: its late R1 and R2 are rejected-nonce, the others complete', () => {
      const { w, a, b } = setup();
      const ctxs = startForks(a, 10);
      w.network.deliver();
      a.machine.remove((ctxs[3] as ShimContext).id, 'console delete'); // in I1-SENT; its R1 is on the way
      w.network.deliver();
      assert.deepEqual(a.eventsOf('rejected-nonce'), [{ type: 'R1', from: canon(B1) }]);
      a.machine.remove((ctxs[6] as ShimContext).id, 'console delete'); // in I2-SENT; its I2 is on the way
      w.network.deliver();
      assert.equal(b.table.size, 9);
      w.network.deliver();
      assert.deepEqual(a.eventsOf('rejected-nonce'), [{ type: 'R1', from: canon(B1) }, { type: 'R2', from: canon(B1) }]);
      assert.equal(a.count('established'), 8);
      assert.deepEqual(a.table.all().map((ctx) => ctx.forkedInstanceId), [0, 1, 2, 4, 5, 7, 8, 9]);
      assert.equal(a.machine.nextDeadline(), undefined, 'their timers went with them');

      // Replayed once the exchanges are over, an R1 or an R2 finds nothing either.
      for (const type of ['R1', 'R2'] as const) a.machine.receive(Buffer.from((w.network.messages({ type })[0] as WirePacket).bytes));
      assert.equal(a.count('rejected-nonce'), 4);
      assert.equal(a.count('i2-sent'), 9);

      for (const ctx of a.table.all()) a.machine.remove(ctx.id, 'console delete');
      assert.deepEqual(filed(a), NOTHING_FILED);
      assert.equal(controlEntries(a), 0);
    });

    it('an I2 left unanswered starts over with a new nonce: an R1 for the old one is rejected, the new exchange completes', () => {
      const { w, a } = setup();
      w.network.rule({ type: 'I2', action: 'drop', count: 1 + DEFAULT_TIMERS.i2Retries });
      const ctx = a.machine.start(A1, B1);
      assert.ok(ctx);
      w.network.settle();
      const oldR1 = w.network.messages({ type: 'R1' })[0] as WirePacket;
      w.advance(28_000 - 1);
      w.advance(1, { deliver: false });
      assert.equal(ctx.state, 'I1-SENT');
      assert.notEqual(msg(last(w.network.queue), 'I1').initiatorNonce, msg(oldR1, 'R1').initiatorNonce);
      a.machine.receive(Buffer.from(oldR1.bytes));
      assert.equal(ctx.state, 'I1-SENT');
      assert.deepEqual(a.eventsOf('rejected-nonce'), [{ type: 'R1', from: canon(B1) }]);
      w.network.settle();
      assert.equal(ctx.state, 'ESTABLISHED');
      assert.equal(filed(a).keys.nonces, 0);
    });

    it('R1bis finds, among 200 contexts with one peer, the one whose peer tag it names', () => {
      const { w, a, b } = setup();
      const ctxs = startForks(a, 200);
      w.network.settle();
      const target = ctxs[137] as ShimContext;
      const tagB = peerOf(b, target.forkedInstanceId).localContextTag;
      b.restart();
      b.machine.unknownContextTag(tagB, B1, A1);
      w.network.settle();
      assert.deepEqual(a.eventsOf('i2bis-sent').map((e) => e.id), [target.id]);
      assert.equal(target.state, 'ESTABLISHED');
      const rebuilt = b.only();
      assert.equal(rebuilt.forkedInstanceId, target.forkedInstanceId);
      assert.equal(rebuilt.localContextTag, tagB);
      assertTagsMatch(target, rebuilt);
      assert.ok(ctxs.every((ctx) => ctx.state === 'ESTABLISHED'));
    });

    it('context confusion among 200 contexts with one peer removes the stale one only', () => {
      const { w, a, b } = setup();
      const ctxs = startForks(a, 200);
      w.network.settle();
      const stale = ctxs[42] as ShimContext;
      const tag = stale.peerContextTag;
      b.restart({ script: tagScript(tag) });
      const fromB = b.machine.start(B2, A1);
      assert.ok(fromB);
      assert.equal(fromB.localContextTag, tag);
      w.network.settle();
      assert.equal(fromB.state, 'ESTABLISHED');
      assert.equal(a.count('context-confusion'), 1);
      assert.deepEqual(a.removed.map((r) => r.ctx), [stale]);
      assert.equal(a.table.size, 200);
      const fresh = a.table.byUlids(A1, B2);
      assert.ok(fresh);
      assertTagsMatch(fresh, fromB);
      assert.ok(ctxs.every((ctx) => ctx === stale || ctx.state === 'ESTABLISHED'));
    });

    it('hold-down is reported for the peer that did not answer, not for another with 100 contexts', () => {
      const C1 = '2001:db8:c1::3';
      const D1 = '2001:db8:d1::4';
      const { w, a } = setup();
      const toB = startForks(a, 100);
      w.network.settle();
      assert.equal(a.count('established'), 100);
      // Nobody owns C1 or D1: their I1s go nowhere.
      const toC = a.machine.start(A1, C1);
      const toD = [a.machine.start(A1, D1), a.machine.start(A2, D1), a.machine.start(A1, D1, 1)];
      assert.ok(toC);
      w.network.settle();

      a.machine.peerHasNoShim6(D1);
      assert.deepEqual(a.eventsOf('no-support').map((e) => e.id), toD.map((ctx) => ctx?.id));
      assert.equal(toC.state, 'I1-SENT');
      assert.equal(a.machine.inHoldDown(D1), true);
      assert.equal(a.machine.inHoldDown(C1), false);
      assert.equal(a.machine.inHoldDown(B1), false);
      a.machine.peerHasNoShim6(B1);
      assert.equal(a.count('no-support'), 3, 'established contexts are left alone');

      w.advance(124_000);
      assert.equal(toC.state, 'NO-SUPPORT');
      assert.equal(a.machine.inHoldDown(C1), true);
      assert.equal(a.machine.start(A2, C1), undefined, 'refused during the hold-down');
      w.advance(DEFAULT_TIMERS.noR1HoldDownMs);
      assert.deepEqual(a.removed.map((r) => [r.ctx, r.reason]), [[toC, 'hold-down over']]);
      assert.equal(a.machine.inHoldDown(C1), false);
      assert.equal(a.machine.inHoldDown(D1), true);
      w.advance(DEFAULT_TIMERS.icmpHoldDownMs - 124_000 - DEFAULT_TIMERS.noR1HoldDownMs);
      assert.equal(a.machine.inHoldDown(D1), false);
      assert.deepEqual(a.table.all(), toB);
      assert.ok(toB.every((ctx) => ctx.state === 'ESTABLISHED'));
      assert.equal(a.machine.nextDeadline(), undefined);
      assert.equal(filed(a).keys.heldDown, 0);
      assert.equal(filed(a).keys.awaitingR1, 0);
    });

    it('idle teardown of 200 contexts: the idle ones go at their time, the busy ones later, and tick() reads only the due ones', () => {
      const activity = new Map<number, number>();
      let reads = 0;
      const w = new SimWorld({ start: T0 });
      const a = w.host('A', [A1, A2], {
        lastActivity: (ctx) => {
          reads++;
          return activity.get(ctx.id) ?? 0;
        },
      });
      w.host('B', [B1, B2]);
      const ctxs = startForks(a, 200);
      w.network.settle();
      assert.ok(ctxs.every((ctx) => ctx.state === 'ESTABLISHED'));

      reads = 0;
      a.machine.tick();
      assert.equal(reads, 0, 'nothing due: tick() looks at no context');
      assert.equal(a.machine.nextDeadline(), T0 + DEFAULT_TIMERS.idleTeardownMs);
      assert.equal(reads, 1, 'nextDeadline() looks at the earliest only');

      w.advance(300_000);
      const busy = ctxs.filter((ctx) => ctx.forkedInstanceId % 2 === 1);
      for (const ctx of busy) activity.set(ctx.id, w.clock.t);
      w.advance(300_000 - 1);
      assert.equal(a.table.size, 200);
      w.advance(1);
      assert.deepEqual(a.table.all(), busy);
      assert.equal(a.removed.length, 100);
      assert.ok(a.removed.every((r, i) => r.ctx === ctxs[2 * i] && r.reason === 'idle for 600 s'), 'the idle ones, in order');
      assert.equal(a.machine.nextDeadline(), T0 + 300_000 + DEFAULT_TIMERS.idleTeardownMs);

      // Every busy context is busy again: what the queue holds for them is early now. Whatever
      // nextDeadline() answers, it is never late, and nothing goes before its time.
      w.advance(100_000);
      for (const ctx of busy) activity.set(ctx.id, w.clock.t);
      const next = a.machine.nextDeadline();
      assert.ok(next !== undefined && next <= T0 + 400_000 + DEFAULT_TIMERS.idleTeardownMs);
      w.advance(DEFAULT_TIMERS.idleTeardownMs - 1);
      assert.equal(a.table.size, 100);
      w.advance(1);
      assert.equal(a.table.size, 0);
      assert.equal(a.machine.nextDeadline(), undefined);
      assert.deepEqual(filed(a), NOTHING_FILED);
    });
  });
});
