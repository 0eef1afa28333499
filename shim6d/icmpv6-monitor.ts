/**
 * The raw ICMPv6 socket of shim6d's control plane: every ICMPv6 message the host receives,
 * kept only when it concerns Shim6:
 * - `noShim6`: a Parameter Problem about one of our I1 messages, so the peer has no Shim6
 *   (shim6d/icmp-parameter-problem.ts);
 * - `pathMtu`: a Packet Too Big from a router about one of our shimmed packets
 *   (shim6d/path-mtu-report.ts).
 * The kernel still handles every message as usual; the socket sees copies.
 */
import { EventEmitter } from 'node:events';
import raw from 'raw-socket';
import { IPPROTO_ICMPV6 } from '../protocol/ipv6-packet';
import { ICMPV6_PARAMETER_PROBLEM, parseNoShim6 } from './icmp-parameter-problem';
import { ICMPV6_PACKET_TOO_BIG } from './packet-too-big';
import { parsePathMtuReport, type PathMtuReport } from './path-mtu-report';

/** setsockopt(IPPROTO_ICMPV6, ICMP6_FILTER): which ICMPv6 types the socket receives (RFC 3542 section 3.2). */
const ICMP6_FILTER = 1;

/**
 * struct icmp6_filter: 256 bits in host-order 32-bit words, a set bit blocks its type. Only
 * Packet Too Big and Parameter Problem pass, so neighbour discovery and echo traffic never
 * wake the daemon.
 */
function icmp6Filter(pass: readonly number[]): Buffer {
  const words = new Uint32Array(8).fill(0xffffffff);
  for (const type of pass) words[type >>> 5] &= ~(1 << (type & 31));
  return Buffer.from(words.buffer);
}

export interface Icmpv6MonitorEvents {
  noShim6: [{ peer: string; local: string; from: string }];
  pathMtu: [PathMtuReport & { from: string }];
  error: [Error];
}

export class Icmpv6Monitor extends EventEmitter<Icmpv6MonitorEvents> {
  private readonly socket: raw.Socket;

  /** Throws when the socket cannot be opened (no CAP_NET_RAW). */
  constructor() {
    super();
    this.socket = raw.createSocket({ protocol: IPPROTO_ICMPV6, addressFamily: raw.AddressFamily.IPv6, bufferSize: 65535 });
    const filter = icmp6Filter([ICMPV6_PACKET_TOO_BIG, ICMPV6_PARAMETER_PROBLEM]);
    this.socket.setOption(IPPROTO_ICMPV6, ICMP6_FILTER, filter, filter.length);
    // The parsers copy what they keep, so the socket's receive buffer is read in place.
    this.socket.on('message', (icmp, from) => {
      const noShim6 = parseNoShim6(icmp);
      if (noShim6) {
        this.emit('noShim6', { ...noShim6, from });
        return;
      }
      const report = parsePathMtuReport(icmp);
      if (report) this.emit('pathMtu', { ...report, from });
    });
    this.socket.on('error', (e) => this.emit('error', e));
  }

  close(): void {
    this.socket.close();
  }
}
