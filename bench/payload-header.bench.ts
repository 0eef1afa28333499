/**
 * Data-plane packet surgery per packet: shim (outbound), peek / deshim (inbound), against
 * the least a returned packet costs (Buffer.from, one copy), for a 1400-octet UDP packet
 * and a 60-octet TCP ACK.
 */
import { ipv6, sameAddress } from '../protocol/address';
import { IPPROTO_TCP, IPPROTO_UDP, PacketError, walkExtensionHeaders } from '../protocol/ipv6-packet';
import {
  DESTINATION_ADDRESS_OFFSET,
  PAYLOAD_HEADER_LENGTH,
  SOURCE_ADDRESS_OFFSET,
  deshimPacket,
  deshimPacketInPlace,
  peekReceiverContextTag,
  shimPacket,
} from '../protocol/payload-header';
import { opsPerSecond, report } from './harness';

export const title = 'Shim6 payload extension header: shim / peek / deshim';

const ULID_A = ipv6('2001:db8:a1::1');
const ULID_B = ipv6('2001:db8:b1::1');
const LOCATOR_A = ipv6('2001:db8:a2::1');
const LOCATOR_B = ipv6('2001:db8:b2::1');
const TAG = 0x1234_5678_9abc;

function ipv6Packet(nextHeader: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(payload.length, 4);
  h[6] = nextHeader;
  h[7] = 64;
  h.set(ULID_A, 8);
  h.set(ULID_B, 24);
  return Buffer.concat([h, payload]);
}

function must<T>(r: T | PacketError): T {
  if (r instanceof PacketError) throw new Error(r.toString());
  return r;
}

export function run(): void {
  const udp = Buffer.alloc(1400 - 40, 0x5a);
  udp.writeUInt16BE(40000, 0);
  udp.writeUInt16BE(9999, 2);
  udp.writeUInt16BE(udp.length, 4);
  const tcp = Buffer.alloc(20);
  tcp[12] = 5 << 4;
  tcp[13] = 0x10; // ACK
  const cases: [string, Buffer][] = [
    ['1400-octet UDP packet', ipv6Packet(IPPROTO_UDP, udp)],
    ['60-octet TCP ACK', ipv6Packet(IPPROTO_TCP, tcp)],
  ];
  for (const [name, packet] of cases) {
    const shimmed = must(shimPacket(packet, TAG, LOCATOR_A, LOCATOR_B));
    // The in-place variant moves the octets before the payload header; put them back each time.
    const work = Buffer.from(shimmed);
    const moved = 40 + PAYLOAD_HEADER_LENGTH;
    report(`${name} (${packet.length} octets; ${shimmed.length} shimmed)`, [
      { name: 'baseline: Buffer.from(packet), one copy', opsPerSecond: opsPerSecond(() => Buffer.from(packet)) },
      { name: 'shimPacket (outbound)', opsPerSecond: opsPerSecond(() => shimPacket(packet, TAG, LOCATOR_A, LOCATOR_B)) },
      { name: 'peekReceiverContextTag (inbound, no copy)', opsPerSecond: opsPerSecond(() => peekReceiverContextTag(shimmed)) },
      {
        name: 'peek + locator check (sameAddress x2)',
        opsPerSecond: opsPerSecond(() => typeof peekReceiverContextTag(shimmed) === 'number'
          && sameAddress(shimmed, SOURCE_ADDRESS_OFFSET, LOCATOR_A, 0) && sameAddress(shimmed, DESTINATION_ADDRESS_OFFSET, LOCATOR_B, 0)),
      },
      { name: 'deshimPacket (inbound, new buffer)', opsPerSecond: opsPerSecond(() => deshimPacket(shimmed, ULID_A, ULID_B)) },
      {
        name: 'deshimPacketInPlace (+ restoring 48 octets)',
        opsPerSecond: opsPerSecond(() => {
          shimmed.copy(work, 0, 0, moved);
          return deshimPacketInPlace(work, ULID_A, ULID_B);
        }),
      },
      { name: '  (restoring the 48 octets alone)', opsPerSecond: opsPerSecond(() => shimmed.copy(work, 0, 0, moved)) },
      { name: 'walkExtensionHeaders (diagnostic, allocates)', opsPerSecond: opsPerSecond(() => walkExtensionHeaders(shimmed)) },
    ]);
  }
}
