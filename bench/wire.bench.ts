/**
 * Control-message codec speed: a typical I2 (validator, two locators with preferences,
 * CGA parameters and signature), and a Probe with reports, against the checksum alone.
 */
import { checksumVerifies } from '../protocol/checksum';
import { ControlMessage, decodeControlMessage, encodeControlMessage } from '../protocol/control-message';
import { opsPerSecond, report } from './harness';

export const title = 'Shim6 control-message codec';

const typicalI2: ControlMessage = {
  type: 'I2',
  initiatorContextTag: 0x1234_5678_9abc,
  initiatorNonce: 0x01020304,
  responderNonce: 0x05060708,
  options: [
    { kind: 'ResponderValidator', validator: Buffer.alloc(20, 0xab) },
    { kind: 'LocatorList', generation: 1, locators: [{ address: '2001:db8:a1::1', verificationMethod: 2 }, { address: '2001:db8:a2::1', verificationMethod: 2 }] },
    { kind: 'LocatorPreferences', generation: 1, elementLength: 3, elements: [{ flags: 0, priority: 1, weight: 1 }, { flags: 0, priority: 2, weight: 1 }] },
    { kind: 'CgaParameterDataStructure', data: Buffer.alloc(190, 0x11) },
    { kind: 'CgaSignature', signature: Buffer.alloc(128, 0x22) },
  ],
};

const probe: ControlMessage = {
  type: 'Probe',
  receiverContextTag: 7,
  reapState: 1,
  sentProbes: Array.from({ length: 4 }, (_, i) => ({ source: '2001:db8:a1::1', destination: '2001:db8:b2::1', nonce: i, data: i })),
  receivedProbes: [{ source: '2001:db8:b2::1', destination: '2001:db8:a1::1', nonce: 9, data: 9 }],
  options: [],
};

export function run(): void {
  for (const [name, m] of [['typical I2', typicalI2], ['Probe with 5 reports', probe]] as const) {
    const wire = encodeControlMessage(m);
    report(`${name} (${wire.length} octets)`, [
      { name: 'baseline: checksum verification alone', opsPerSecond: opsPerSecond(() => checksumVerifies(wire, 0, wire.length)) },
      { name: 'decode (strict)', opsPerSecond: opsPerSecond(() => decodeControlMessage(wire)) },
      { name: 'decode (receive rule: reserved ignored)', opsPerSecond: opsPerSecond(() => decodeControlMessage(wire, { strictReserved: false })) },
      { name: 'encode', opsPerSecond: opsPerSecond(() => encodeControlMessage(m)) },
    ]);
  }
}
