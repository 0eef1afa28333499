/**
 * Shim6 control messages and options: hand-built vectors from the RFC 5533/5534 layouts,
 * every message round-tripped, and every malformation reported with its code and offset.
 */
import { strict as assert } from 'node:assert';
import { internetChecksum } from '../protocol/checksum';
import { ErrorCode, MAX_SHIM6_HEADER_LENGTH } from '../protocol/constants';
import {
  ControlMessage,
  MAX_PACKET_IN_ERROR,
  decodeControlMessage,
  encodeControlMessage,
  errorMessageFor,
} from '../protocol/control-message';
import { DecodeErrorCode } from '../protocol/decode-result';
import { findOption, optionTotalLength } from '../protocol/options';
import { sampleMessages } from './support/sample-messages';

function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

/** Recomputes the checksum of a (tampered) message so that only the tampering is tested. */
function fixChecksum(buf: Buffer): Buffer {
  buf.writeUInt16BE(0, 4);
  buf.writeUInt16BE(internetChecksum(buf, 0, buf.length), 4);
  return buf;
}

function expectError(input: Buffer, code: DecodeErrorCode, offset: number, strictReserved = true): void {
  const r = decodeControlMessage(input, { strictReserved });
  assert.equal(r.ok, false, `expected ${code}, got a value`);
  if (r.ok) return;
  assert.equal(r.error.code, code, r.error.message);
  assert.equal(r.error.offset, offset, `${r.error.code} offset (${r.error.message})`);
  assert.ok(r.error.message.length > 0);
}

function decodeOk(input: Buffer): ControlMessage {
  const r = decodeControlMessage(input);
  if (!r.ok) assert.fail(`decode failed: ${r.error.code} at ${r.error.offset}: ${r.error.message}`);
  return r.value.message;
}

describe('Shim6 control messages (RFC 5533 section 5)', () => {
  describe('hand-built vectors', () => {
    it('encodes an I1 octet for octet as the RFC lays it out', () => {
      // 3b: No Next Header; 01: Hdr Ext Len (16 octets); 01: P=0 Type=1; 00: reserved, S=0;
      // 22f8: checksum computed by hand; R=0 + tag 0x123456789abc; nonce 0xdeadbeef.
      const want = hex('3b01 0100 22f8 1234 5678 9abc dead beef');
      const got = encodeControlMessage({ type: 'I1', initiatorContextTag: 0x123456789abc, initiatorNonce: 0xdeadbeef, options: [] });
      assert.equal(got.toString('hex'), want.toString('hex'));
      assert.deepEqual(decodeOk(want), { type: 'I1', initiatorContextTag: 0x123456789abc, initiatorNonce: 0xdeadbeef, options: [] });
    });

    it('lays out a Locator List with padding after the verification methods', () => {
      const m = encodeControlMessage({
        type: 'UpdateRequest',
        receiverContextTag: 1,
        requestNonce: 2,
        options: [{ kind: 'LocatorList', generation: 1, locators: [{ address: '2001:db8::1', verificationMethod: 1 }] }],
      });
      // Option at 16: type 2 C 0 → 0x0004, length 28, generation 1, N=1, method HBA, 6 octets of padding, locator.
      assert.equal(m.subarray(16).toString('hex'), hex('0004 001c 00000001 01 01 000000000000 20010db8000000000000000000000001').toString('hex'));
      assert.equal(m[1], (16 + 32) / 8 - 1);
    });

    it('computes option padding as 11 + Length - (Length + 3) mod 8', () => {
      assert.deepEqual([0, 1, 4, 5, 12, 36].map(optionTotalLength), [8, 8, 8, 16, 16, 40]);
    });

    it('places each type-specific field where the RFC puts it', () => {
      const i2bis = encodeControlMessage({
        type: 'I2bis', initiatorContextTag: 0x0102030405, initiatorNonce: 0x11111111, responderNonce: 0x22222222,
        packetContextTag: 0x7fffffffffff, options: [],
      });
      assert.equal(i2bis.length, 32);
      assert.equal(i2bis.subarray(6).toString('hex'), '00010203040511111111222222220000000000007fffffffffff');
      const probe = encodeControlMessage({
        type: 'Probe', receiverContextTag: 9, reapState: 2,
        sentProbes: [{ source: '::1', destination: '::2', nonce: 3, data: 4 }], receivedProbes: [], options: [],
      });
      assert.equal(probe.length, 56);
      assert.equal(probe.subarray(12, 16).toString('hex'), '10000002'); // Psent 1, Precvd 0, Sta InboundOk
      const err = encodeControlMessage({ type: 'Error', errorCode: 1, pointer: 0x30, packetInError: hex('6000000000') });
      assert.equal(err.length, 16);
      assert.equal(err[3], 1 << 1);
      assert.equal(err.readUInt16BE(6), 0x30);
    });
  });

  describe('round trips', () => {
    const all = sampleMessages();
    for (const m of all) {
      it(`${m.type}`, () => {
        const wire = encodeControlMessage(m);
        assert.equal(wire.length % 8, 0);
        assert.equal((wire[1] as number) + 1, wire.length / 8);
        assert.deepEqual(decodeOk(wire), m);
      });
    }

    it('keeps an unknown non-critical option and reads the options after it', () => {
      const wire = encodeControlMessage({
        type: 'UpdateAcknowledgement', receiverContextTag: 1, requestNonce: 2,
        options: [{ kind: 'Unknown', optionType: 300, contents: Buffer.from('abc') }, { kind: 'ForkedInstanceIdentifier', forkedInstanceId: 9 }],
      });
      const m = decodeOk(wire);
      assert.equal(m.type, 'UpdateAcknowledgement');
      if (m.type !== 'UpdateAcknowledgement') return;
      assert.deepEqual(m.options[0], { kind: 'Unknown', optionType: 300, contents: Buffer.from('abc') });
      assert.equal(findOption(m.options, 'ForkedInstanceIdentifier')?.forkedInstanceId, 9);
    });

    it('decodes a known option sent with the critical bit', () => {
      const wire = encodeControlMessage({ type: 'I1', initiatorContextTag: 1, initiatorNonce: 2, options: [{ kind: 'ForkedInstanceIdentifier', forkedInstanceId: 1, critical: true }] });
      const m = decodeOk(wire);
      assert.equal(m.type === 'I1' && m.options[0]?.critical, true);
    });

    it('keeps an Error message within the IPv6 minimum MTU', () => {
      const e = errorMessageFor(ErrorCode.UnknownMessageType, 42, Buffer.alloc(3000, 1));
      const wire = encodeControlMessage(e);
      assert.equal(e.packetInError.length, MAX_PACKET_IN_ERROR);
      assert.ok(40 + wire.length <= 1280, `${40 + wire.length}`);
    });

    it('rejects, in the encoder, values that do not fit their fields', () => {
      assert.throws(() => encodeControlMessage({ type: 'I1', initiatorContextTag: 2 ** 47, initiatorNonce: 0, options: [] }), RangeError);
      assert.throws(() => encodeControlMessage({ type: 'I1', initiatorContextTag: 0, initiatorNonce: 2 ** 32, options: [] }), RangeError);
      assert.throws(() => encodeControlMessage({ type: 'R1', initiatorNonce: 0, responderNonce: 0, options: [{ kind: 'CgaSignature', signature: Buffer.alloc(MAX_SHIM6_HEADER_LENGTH) }] }), RangeError);
      assert.throws(() => encodeControlMessage({ type: 'UlidPair' as never, options: [] } as never));
    });
  });

  describe('malformed input gives a typed error with its offset', () => {
    const i1 = (): Buffer => encodeControlMessage({ type: 'I1', initiatorContextTag: 1, initiatorNonce: 2, options: [] });

    it('empty and short input', () => {
      expectError(Buffer.alloc(0), 'TRUNCATED', 0);
      expectError(i1().subarray(0, 7), 'TRUNCATED', 7);
    });
    it('Hdr Ext Len beyond the input', () => {
      const b = i1();
      b[1] = 2;
      expectError(b, 'TRUNCATED', 16);
    });
    it('a bad checksum', () => {
      const b = i1();
      b[15] = (b[15] as number) ^ 0x01;
      expectError(b, 'BAD_CHECKSUM', 4);
    });
    it('the P bit (a payload header, not a control message)', () => expectError(hex('11 00 80000000 0001'), 'WRONG_P_BIT', 2));
    it('the S bit (HIP)', () => {
      const b = i1();
      b[3] = 1;
      expectError(fixChecksum(b), 'NOT_SHIM6', 3);
    });
    it('an unknown message type', () => {
      const b = i1();
      b[2] = 7;
      expectError(fixChecksum(b), 'UNKNOWN_MESSAGE_TYPE', 2);
    });
    it('a message shorter than its type\'s fixed part', () => {
      const b = fixChecksum(Buffer.from(hex('3b00 0300 0000 0000')));
      expectError(b, 'LENGTH_MISMATCH', 1);
    });
    it('reserved bits: rejected when strict, ignored otherwise (RFC 5533 receive rule)', () => {
      const b = i1();
      b[3] = 0x02; // Reserved1
      fixChecksum(b);
      expectError(b, 'RESERVED_NONZERO', 3);
      assert.equal(decodeControlMessage(b, { strictReserved: false }).ok, true);
      const c = i1();
      c[6] = (c[6] as number) | 0x80; // R bit before the context tag
      fixChecksum(c);
      expectError(c, 'RESERVED_NONZERO', 6);
      const r = decodeControlMessage(c, { strictReserved: false });
      assert.ok(r.ok && r.value.message.type === 'I1' && r.value.message.initiatorContextTag === 1, 'R bit is not part of the tag');
    });
    it('an unknown critical option, pointing at the option', () => {
      const b = encodeControlMessage({ type: 'I1', initiatorContextTag: 1, initiatorNonce: 2, options: [{ kind: 'Unknown', optionType: 99, contents: Buffer.alloc(4), critical: true }] });
      const r = decodeControlMessage(b);
      assert.ok(!r.ok);
      assert.deepEqual([r.error.code, r.error.offset, r.error.optionType, r.error.messageType], ['UNKNOWN_CRITICAL_OPTION', 16, 99, 1]);
    });
    it('an option overrunning the message', () => {
      const b = encodeControlMessage({ type: 'I1', initiatorContextTag: 1, initiatorNonce: 2, options: [{ kind: 'ResponderValidator', validator: Buffer.alloc(4) }] });
      b.writeUInt16BE(5, 18); // content length 5 → 16 octets, only 8 there
      expectError(fixChecksum(b), 'OPTION_OVERRUN', 16);
      const c = encodeControlMessage({ type: 'Probe', receiverContextTag: 1, reapState: 0, sentProbes: [], receivedProbes: [], options: [] });
      expectError(fixChecksum(Buffer.concat([c.subarray(0, 1), Buffer.from([2]), c.subarray(2), Buffer.from('00040040', 'hex'), Buffer.alloc(4)])), 'OPTION_OVERRUN', 16);
    });
    it('fixed-size options with the wrong length', () => {
      const b = encodeControlMessage({ type: 'I1', initiatorContextTag: 1, initiatorNonce: 2, options: [{ kind: 'Unknown', optionType: 6, contents: Buffer.alloc(35) }] });
      expectError(b, 'BAD_OPTION_LENGTH', 20);
      const k = encodeControlMessage({ type: 'Keepalive', receiverContextTag: 1, options: [{ kind: 'Unknown', optionType: 10, contents: Buffer.alloc(2) }] });
      expectError(k, 'BAD_OPTION_LENGTH', 20);
    });
    it('a Locator List whose count disagrees with its length', () => {
      const b = encodeControlMessage({ type: 'R2', responderContextTag: 1, initiatorNonce: 2, options: [{ kind: 'LocatorList', generation: 1, locators: [{ address: '::1', verificationMethod: 1 }] }] });
      b[16 + 8] = 2;
      expectError(fixChecksum(b), 'BAD_OPTION_LENGTH', 20);
    });
    it('Locator Preferences with Element Len 0 or a partial element', () => {
      const b = encodeControlMessage({ type: 'R2', responderContextTag: 1, initiatorNonce: 2, options: [{ kind: 'LocatorPreferences', generation: 1, elementLength: 2, elements: [{ flags: 0, priority: 0 }] }] });
      b[16 + 8] = 0;
      expectError(fixChecksum(b), 'BAD_VALUE', 24);
      b[16 + 8] = 3;
      expectError(fixChecksum(b), 'BAD_OPTION_LENGTH', 20);
    });
    it('a Probe whose report counts exceed its length, or with REAP state 3', () => {
      const p = encodeControlMessage({ type: 'Probe', receiverContextTag: 1, reapState: 0, sentProbes: [], receivedProbes: [], options: [] });
      p[12] = 0x10;
      expectError(fixChecksum(p), 'LENGTH_MISMATCH', 12);
      p[12] = 0;
      p[15] = 3;
      expectError(fixChecksum(p), 'BAD_VALUE', 15);
    });
    it('non-zero option padding when strict', () => {
      const b = encodeControlMessage({ type: 'I1', initiatorContextTag: 1, initiatorNonce: 2, options: [{ kind: 'ResponderValidator', validator: Buffer.alloc(1) }] });
      b[23] = 1;
      fixChecksum(b);
      expectError(b, 'RESERVED_NONZERO', 21);
      assert.equal(decodeControlMessage(b, { strictReserved: false }).ok, true);
    });
    it('ignores octets after the Shim6 header (Next Header 59: RFC 8200 section 4.7)', () => {
      const r = decodeControlMessage(Buffer.concat([i1(), Buffer.alloc(5, 0xff)]));
      assert.ok(r.ok && r.value.length === 16);
    });
  });
});
