/**
 * One message of every Shim6 control-message type, each with the options RFC 5533 and
 * RFC 5534 allow in it: shared by the codec tests and the tshark cross-check.
 */
import { ErrorCode } from '../../protocol/constants';
import { ControlMessage } from '../../protocol/control-message';

export function sampleMessages(): ControlMessage[] {
  const ll = { kind: 'LocatorList' as const, generation: 7, locators: [{ address: '2001:db8:a1::1', verificationMethod: 1 }, { address: '2001:db8:a2::1', verificationMethod: 2 }] };
  return [
    { type: 'I1', initiatorContextTag: 42, initiatorNonce: 1, options: [{ kind: 'UlidPair', senderUlid: '2001:db8::a', receiverUlid: '2001:db8::b' }, { kind: 'ForkedInstanceIdentifier', forkedInstanceId: 3 }] },
    { type: 'R1', initiatorNonce: 1, responderNonce: 2, options: [{ kind: 'ResponderValidator', validator: Buffer.alloc(20, 7) }] },
    {
      type: 'I2', initiatorContextTag: 43, initiatorNonce: 1, responderNonce: 2,
      options: [
        { kind: 'ResponderValidator', validator: Buffer.alloc(20, 7) }, ll,
        { kind: 'LocatorPreferences', generation: 7, elementLength: 2, elements: [{ flags: 0, priority: 1 }, { flags: 1, priority: 0 }] },
        { kind: 'CgaParameterDataStructure', data: Buffer.alloc(100, 1) }, { kind: 'CgaSignature', signature: Buffer.alloc(128, 2) },
      ],
    },
    { type: 'R2', responderContextTag: 44, initiatorNonce: 1, options: [ll] },
    { type: 'R1bis', packetContextTag: 45, responderNonce: 5, options: [{ kind: 'ResponderValidator', validator: Buffer.alloc(3, 9) }] },
    { type: 'I2bis', initiatorContextTag: 46, initiatorNonce: 1, responderNonce: 5, packetContextTag: 45, options: [{ kind: 'ResponderValidator', validator: Buffer.alloc(3, 9) }, ll] },
    { type: 'UpdateRequest', receiverContextTag: 47, requestNonce: 8, options: [ll, { kind: 'LocatorPreferences', generation: 7, elementLength: 1, elements: [{ flags: 2 }, { flags: 0 }] }] },
    { type: 'UpdateAcknowledgement', receiverContextTag: 48, requestNonce: 8, options: [] },
    { type: 'Keepalive', receiverContextTag: 49, options: [] },
    {
      type: 'Probe', receiverContextTag: 50, reapState: 1,
      sentProbes: [{ source: '2001:db8:a1::1', destination: '2001:db8:b2::1', nonce: 1, data: 2 }, { source: '2001:db8:a2::1', destination: '2001:db8:b1::1', nonce: 3, data: 4 }],
      receivedProbes: [{ source: '2001:db8:b1::1', destination: '2001:db8:a1::1', nonce: 5, data: 6 }],
      options: [{ kind: 'KeepaliveTimeout', keepaliveTimeout: 10 }],
    },
    { type: 'Error', errorCode: ErrorCode.CriticalOptionNotRecognized, pointer: 56, packetInError: Buffer.alloc(64, 0x60) },
  ];
}
