/**
 * The one I/O adapter in protocol/: a raw IPv6 socket for protocol 140 that sends a Shim6
 * message from an exact source locator (IPV6_HDRINCL: we write the IPv6 header) and
 * delivers received Shim6 messages with the address they came from. Used by both daemons
 * and by the shim6-wire tool; everything else in protocol/ is pure.
 */
import { EventEmitter } from 'node:events';
import * as raw from 'raw-socket';
import { parseIPv6 } from './address';
import { IPPROTO_SHIM6 } from './constants';

const IPV6_HEADER_LENGTH = 40;
/** Linux's IPV6_HDRINCL (since 4.5); raw-socket 1.8.1 is built without the constant. */
const IPV6_HDRINCL = raw.SocketOption.IPV6_HDRINCL ?? 36;

export interface ReceivedShim6 {
  /** The Shim6 header and what follows it (the kernel strips the IPv6 header). */
  message: Buffer;
  source: string;
}

/** Builds the 40-octet IPv6 header of a packet carrying `payloadLength` octets of Shim6. */
export function shim6Ipv6Header(source: Buffer, destination: Buffer, payloadLength: number, hopLimit: number): Buffer {
  const h = Buffer.alloc(IPV6_HEADER_LENGTH);
  h[0] = 0x60;
  h.writeUInt16BE(payloadLength, 4);
  h[6] = IPPROTO_SHIM6;
  h[7] = hopLimit;
  source.copy(h, 8);
  destination.copy(h, 24);
  return h;
}

export class Shim6Socket extends EventEmitter<{ message: [ReceivedShim6]; error: [Error] }> {
  private readonly socket: raw.Socket;
  private closed = false;

  private constructor() {
    super();
    this.socket = raw.createSocket({ protocol: IPPROTO_SHIM6, addressFamily: raw.AddressFamily.IPv6, bufferSize: 65535 });
    this.socket.setOption(raw.SocketLevel.IPPROTO_IPV6, IPV6_HDRINCL, 1);
    this.socket.on('message', (buffer, source) => this.emit('message', { message: Buffer.from(buffer), source }));
    this.socket.on('error', (e) => this.emit('error', e));
  }

  /** Opens the socket (needs CAP_NET_RAW). */
  static open(): Shim6Socket {
    return new Shim6Socket();
  }

  /** Sends one Shim6 message from `source` to `destination` (both IPv6 text). */
  send(message: Buffer, source: string, destination: string, hopLimit = 64): Promise<void> {
    const src = parseIPv6(source);
    const dst = parseIPv6(destination);
    if (!src || !dst) return Promise.reject(new RangeError(`not IPv6 addresses: ${source} → ${destination}`));
    const packet = Buffer.concat([shim6Ipv6Header(src, dst, message.length, hopLimit), message]);
    return new Promise((resolve, reject) => {
      this.socket.send(packet, 0, packet.length, destination, (error) => (error ? reject(error) : resolve()));
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
  }
}
