/**
 * Independent check of our encoder: Wireshark's Shim6 dissector (tshark 4.0) reads every
 * message type we produce with a good checksum and the right type, P bit and length, and
 * sees a bad checksum when one octet is changed. tshark 4.0 misreads the type-specific
 * fields (one octet early) and options (four octets late), so only these fields are checked.
 */
import { strict as assert } from 'node:assert';
import { IPPROTO_SHIM6, MessageType } from '../protocol/constants';
import { encodeControlMessage } from '../protocol/control-message';
import { ipv6Packet } from './support/packets';
import { sampleMessages } from './support/sample-messages';
import { tsharkFields } from './support/tshark';

const FIELDS = ['shim6.type', 'shim6.p', 'shim6.len', 'shim6.checksum.status'];

function asPacket(shim6: Buffer): Buffer {
  return ipv6Packet({ source: '2001:db8:a1::1', destination: '2001:db8:b1::1', nextHeader: IPPROTO_SHIM6, payload: shim6 });
}

function readFields(packets: Buffer[]): Promise<string[][]> {
  return tsharkFields(packets, FIELDS);
}

describe('tshark reads our control messages (independent check)', function () {
  this.timeout(60_000);
  const messages = sampleMessages();
  const wires = messages.map((m) => encodeControlMessage(m));

  it('every message type, with its options: right type, P=0, length, good checksum', async () => {
    const rows = await readFields(wires.map(asPacket));
    assert.equal(rows.length, messages.length);
    messages.forEach((m, i) => {
      const wire = wires[i] as Buffer;
      const [type, p, len, status] = rows[i] as string[];
      const what = `${m.type} (${wire.toString('hex')})`;
      assert.equal(Number(type), MessageType[m.type], `shim6.type of ${what}`);
      assert.ok(p === '0' || p === 'False', `shim6.p of ${what}: ${p}`);
      assert.equal(Number(len), (wire[1] as number), `shim6.len of ${what}`);
      assert.equal(status, '1', `shim6.checksum.status of ${what}`);
    });
  });

  it('one changed octet gives checksum status 0 (bad), in the fixed part and in an option', async () => {
    const tampered: Buffer[] = [];
    for (const w of wires) {
      for (const at of [12, w.length - 1]) {
        const t = Buffer.from(w);
        t[at] = (t[at] as number) ^ 0x01;
        tampered.push(t);
      }
    }
    const rows = await readFields(tampered.map(asPacket));
    assert.equal(rows.length, tampered.length);
    rows.forEach((r, i) => assert.equal(r[3], '0', `tampered message ${i}: ${(tampered[i] as Buffer).toString('hex')}`));
  });
});
