/**
 * The one I/O adapter in protocol/: raw IPv6 sockets for protocol 140.
 *
 * Sending: one raw socket per source locator, bound to it, so that the kernel both writes
 * that source into the IPv6 header and routes by it (source-address policy routing, as a
 * host with provider-assigned prefixes needs). raw-socket cannot bind, so these sockets are
 * made with libc through koffi. Receiving: one unbound raw socket (raw-socket), which
 * delivers each Shim6 message with its source address (the kernel strips the IPv6 header).
 *
 * Used by both daemons and by the shim6-wire tool; everything else in protocol/ is pure.
 * RawIPv6Sender serves other protocols too (shim6d sends ICMPv6 Packet Too Big with it).
 */
import { EventEmitter } from 'node:events';
import koffi from 'koffi';
import { loadLibc } from '../common/libc';
import * as raw from 'raw-socket';
import { formatIPv6, parseIPv6 } from './address';
import { IPPROTO_SHIM6 } from './constants';

const AF_INET6 = 10;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const SOCKADDR_IN6_LENGTH = 28;



/** An errno-carrying failure of a socket call. */
export class Shim6SocketError extends Error {
  override readonly name = 'Shim6SocketError';
  constructor(
    readonly call: string,
    readonly errno: number,
    detail: string,
  ) {
    super(`${call}: errno ${errno}${detail ? ` (${detail})` : ''}`);
  }
}

function sockaddrIn6(address: Buffer): Buffer {
  const sa = Buffer.alloc(SOCKADDR_IN6_LENGTH);
  sa.writeUInt16LE(AF_INET6, 0); // sin6_family, host order
  address.copy(sa, 8); // sin6_addr
  return sa;
}

/**
 * Sends raw IPv6 packets of one protocol (the octets after the IPv6 header) from exact source
 * addresses: one raw socket per source, bound to it.
 */
export class RawIPv6Sender {
  /** Bound socket per source address (canonical text). */
  private readonly sockets = new Map<string, number>();

  constructor(readonly protocol: number) {}

  /** Sends one message (the octets after the IPv6 header) from `source` to `destination`. */
  send(message: Buffer, source: string, destination: string): void {
    const src = parseIPv6(source);
    const dst = parseIPv6(destination);
    if (!src || !dst) throw new RangeError(`not IPv6 addresses: ${source} → ${destination}`);
    const c = loadLibc();
    const fd = this.socketFor(formatIPv6(src), src);
    const sa = sockaddrIn6(dst);
    if (c.sendto(fd, message, message.length, 0, sa, sa.length) < 0) {
      throw new Shim6SocketError('sendto', koffi.errno(), `${source} → ${destination}`);
    }
  }

  private socketFor(key: string, src: Buffer): number {
    const known = this.sockets.get(key);
    if (known !== undefined) return known;
    const c = loadLibc();
    const fd = c.socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, this.protocol);
    if (fd < 0) throw new Shim6SocketError('socket', koffi.errno(), `raw IPv6 protocol ${this.protocol} needs CAP_NET_RAW`);
    const sa = sockaddrIn6(src);
    if (c.bind(fd, sa, sa.length) < 0) {
      const errno = koffi.errno();
      c.close(fd);
      throw new Shim6SocketError('bind', errno, `${key} is not a local address`);
    }
    this.sockets.set(key, fd);
    return fd;
  }

  /** Closes the socket of one source address (for example when that address goes away). */
  forget(source: string): void {
    const key = parseIPv6(source);
    const k = key ? formatIPv6(key) : source;
    const fd = this.sockets.get(k);
    if (fd === undefined) return;
    loadLibc().close(fd);
    this.sockets.delete(k);
  }

  close(): void {
    for (const fd of this.sockets.values()) loadLibc().close(fd);
    this.sockets.clear();
  }
}

/** Sends Shim6 messages (protocol 140) from exact source locators. */
export class Shim6Sender extends RawIPv6Sender {
  constructor() {
    super(IPPROTO_SHIM6);
  }
}

export interface ReceivedShim6 {
  /** The Shim6 header and what follows it (the kernel strips the IPv6 header). */
  message: Buffer;
  source: string;
}

/** Receives every Shim6 message addressed to this host. */
export class Shim6Receiver extends EventEmitter<{ message: [ReceivedShim6]; error: [Error] }> {
  private readonly socket: raw.Socket;
  private closed = false;

  constructor() {
    super();
    this.socket = raw.createSocket({ protocol: IPPROTO_SHIM6, addressFamily: raw.AddressFamily.IPv6, bufferSize: 65535 });
    this.socket.on('message', (buffer, source) => this.emit('message', { message: Buffer.from(buffer), source }));
    this.socket.on('error', (e) => this.emit('error', e));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
  }
}
