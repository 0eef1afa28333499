/**
 * fast-check arbitraries for every Shim6 control message and option, shaped like what the
 * decoder returns (canonical addresses, `critical` only when set), so that
 * decode(encode(x)) can be compared with x directly.
 */
import fc from 'fast-check';
import { formatIPv6 } from '../../protocol/address';
import { MAX_CONTEXT_TAG, MAX_SHIM6_HEADER_LENGTH, OptionType } from '../../protocol/constants';
import { ControlMessage, ProbeReport, controlMessageLength } from '../../protocol/control-message';
import { LocatorPreference, Shim6Option } from '../../protocol/options';

export const u8 = fc.integer({ min: 0, max: 0xff });
export const u16 = fc.integer({ min: 0, max: 0xffff });
export const u32 = fc.bigInt({ min: 0n, max: 0xffff_ffffn }).map(Number);
export const contextTag = fc.bigInt({ min: 0n, max: BigInt(MAX_CONTEXT_TAG) }).map(Number);
export const address = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => formatIPv6(b));
const bytes = (maxLength: number): fc.Arbitrary<Buffer> => fc.uint8Array({ maxLength }).map((b) => Buffer.from(b));
const critical = fc.option(fc.constant(true as const), { nil: undefined });
const known = new Set<number>(Object.values(OptionType));
/** fc.record with ordinary objects (fast-check 4 makes null-prototype ones by default). */
function record<T>(shape: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> {
  return fc.record(shape, { noNullPrototype: true });
}

function withCritical<T extends object>(arb: fc.Arbitrary<T>): fc.Arbitrary<T> {
  return fc.tuple(arb, critical).map(([o, c]) => (c ? { ...o, critical: true } : o));
}

const locatorPreferences = fc.integer({ min: 1, max: 5 }).chain((elementLength) =>
  record({
    kind: fc.constant('LocatorPreferences' as const),
    generation: u32,
    elementLength: fc.constant(elementLength),
    elements: fc.array(
      fc.tuple(u8, u8, u8, bytes(2)).map(([flags, priority, weight, extra]): LocatorPreference => {
        const e: LocatorPreference = { flags };
        if (elementLength >= 2) e.priority = priority;
        if (elementLength >= 3) e.weight = weight;
        if (elementLength > 3) e.extra = Buffer.concat([extra, Buffer.alloc(2)]).subarray(0, elementLength - 3);
        return e;
      }),
      { maxLength: 8 },
    ),
  }),
);

export const option: fc.Arbitrary<Shim6Option> = fc.oneof(
  withCritical(record({ kind: fc.constant('ResponderValidator' as const), validator: bytes(40) })),
  withCritical(
    record({
      kind: fc.constant('LocatorList' as const),
      generation: u32,
      locators: fc.array(record({ address, verificationMethod: fc.oneof(fc.constantFrom(1, 2), u8) }), { maxLength: 10 }),
    }),
  ),
  withCritical(locatorPreferences),
  withCritical(record({ kind: fc.constant('CgaParameterDataStructure' as const), data: bytes(300) })),
  withCritical(record({ kind: fc.constant('CgaSignature' as const), signature: bytes(256) })),
  withCritical(record({ kind: fc.constant('UlidPair' as const), senderUlid: address, receiverUlid: address })),
  withCritical(record({ kind: fc.constant('ForkedInstanceIdentifier' as const), forkedInstanceId: u32 })),
  withCritical(record({ kind: fc.constant('KeepaliveTimeout' as const), keepaliveTimeout: u16 })),
  record({
    kind: fc.constant('Unknown' as const),
    optionType: fc.integer({ min: 0, max: 0x7fff }).filter((t) => !known.has(t)),
    contents: bytes(30),
  }),
);

const options = fc.array(option, { maxLength: 5 });
const probeReport: fc.Arbitrary<ProbeReport> = record({ source: address, destination: address, nonce: u32, data: u32 });

export const controlMessage: fc.Arbitrary<ControlMessage> = fc
  .oneof(
    record({ type: fc.constant('I1' as const), initiatorContextTag: contextTag, initiatorNonce: u32, options }),
    record({ type: fc.constant('R1' as const), initiatorNonce: u32, responderNonce: u32, options }),
    record({ type: fc.constant('I2' as const), initiatorContextTag: contextTag, initiatorNonce: u32, responderNonce: u32, options }),
    record({ type: fc.constant('R2' as const), responderContextTag: contextTag, initiatorNonce: u32, options }),
    record({ type: fc.constant('R1bis' as const), packetContextTag: contextTag, responderNonce: u32, options }),
    record({
      type: fc.constant('I2bis' as const),
      initiatorContextTag: contextTag,
      initiatorNonce: u32,
      responderNonce: u32,
      packetContextTag: contextTag,
      options,
    }),
    record({ type: fc.constant('UpdateRequest' as const), receiverContextTag: contextTag, requestNonce: u32, options }),
    record({ type: fc.constant('UpdateAcknowledgement' as const), receiverContextTag: contextTag, requestNonce: u32, options }),
    record({ type: fc.constant('Keepalive' as const), receiverContextTag: contextTag, options }),
    record({
      type: fc.constant('Probe' as const),
      receiverContextTag: contextTag,
      reapState: fc.constantFrom(0, 1, 2),
      sentProbes: fc.array(probeReport, { maxLength: 15 }),
      receivedProbes: fc.array(probeReport, { maxLength: 15 }),
      options,
    }),
    record({
      type: fc.constant('Error' as const),
      errorCode: fc.integer({ min: 0, max: 127 }),
      pointer: u16,
      // The decoder returns the zero padding too: generate whole 8-octet units.
      packetInError: fc.integer({ min: 0, max: 40 }).chain((n) => fc.uint8Array({ minLength: n * 8, maxLength: n * 8 }).map((b) => Buffer.from(b))),
    }),
  )
  .filter((m) => controlMessageLength(m) <= MAX_SHIM6_HEADER_LENGTH);
