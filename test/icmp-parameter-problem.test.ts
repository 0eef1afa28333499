import { strict as assert } from 'node:assert';
import { IPPROTO_SHIM6 } from '../protocol/constants';
import { encodeControlMessage } from '../protocol/control-message';
import { parseNoShim6 } from '../shim6d/icmp-parameter-problem';
import { ipv6Packet } from './support/packets';

const A = '2001:db8:a1::a';
const B = '2001:db8:b1::b';

/** The ICMPv6 message B's kernel sends when protocol 140 is unknown to it: type 4, code 1, pointer 6. */
function parameterProblem(invoking: Buffer, code = 1, pointer = 6): Buffer {
  const head = Buffer.alloc(8);
  head[0] = 4;
  head[1] = code;
  head.writeUInt32BE(pointer, 4);
  return Buffer.concat([head, invoking]);
}

function i1(): Buffer {
  const shim = encodeControlMessage({ type: 'I1', initiatorContextTag: 0x1234, initiatorNonce: 7, options: [] });
  return ipv6Packet({ source: A, destination: B, nextHeader: IPPROTO_SHIM6, payload: shim });
}

describe('ICMPv6 Parameter Problem about our I1 (the peer has no Shim6)', () => {
  it('names the peer and our locator from the quoted I1', () => {
    assert.deepEqual(parseNoShim6(parameterProblem(i1())), { local: A, peer: B });
  });

  it('ignores other codes, other pointers, other protocols and other Shim6 messages', () => {
    assert.equal(parseNoShim6(parameterProblem(i1(), 0)), undefined);
    assert.equal(parseNoShim6(parameterProblem(i1(), 1, 7)), undefined);
    const udp = ipv6Packet({ source: A, destination: B, nextHeader: 17, payload: Buffer.alloc(16) });
    assert.equal(parseNoShim6(parameterProblem(udp)), undefined);
    const r1 = ipv6Packet({ source: A, destination: B, nextHeader: IPPROTO_SHIM6, payload: encodeControlMessage({ type: 'R1', initiatorNonce: 1, responderNonce: 2, options: [] }) });
    assert.equal(parseNoShim6(parameterProblem(r1)), undefined);
    const echo = parameterProblem(i1());
    echo[0] = 129;
    assert.equal(parseNoShim6(echo), undefined);
  });

  it('never throws on truncated or random input', () => {
    const whole = parameterProblem(i1());
    for (let n = 0; n < whole.length; n++) parseNoShim6(whole.subarray(0, n));
    for (let k = 0; k < 200; k++) {
      const b = Buffer.from(whole);
      b[(k * 7) % b.length] = (k * 31) & 0xff;
      parseNoShim6(b);
    }
  });
});
