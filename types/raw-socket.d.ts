// Type declarations for raw-socket@1.8.1 (the parts this project uses).
declare module 'raw-socket' {
  import { EventEmitter } from 'node:events';

  export const AddressFamily: { IPv4: number; IPv6: number };
  export const SocketLevel: { SOL_SOCKET: number; IPPROTO_IP: number; IPPROTO_IPV6: number };
  export const SocketOption: { IPV6_UNICAST_HOPS: number; IPV6_V6ONLY: number; SO_RCVBUF: number; SO_SNDBUF: number };

  export interface SocketOptions {
    protocol?: number;
    addressFamily?: number;
    bufferSize?: number;
  }

  export class Socket extends EventEmitter {
    send(buffer: Buffer, offset: number, length: number, address: string, afterCallback: (error: Error | null, bytes: number) => void): this;
    send(buffer: Buffer, offset: number, length: number, address: string, beforeCallback: () => void, afterCallback: (error: Error | null, bytes: number) => void): this;
    setOption(level: number, option: number, value: number): void;
    setOption(level: number, option: number, value: Buffer, length: number): void;
    close(): this;
    on(event: 'message', listener: (buffer: Buffer, source: string) => void): this;
    on(event: 'error', listener: (error: Error) => void): this;
    on(event: 'close', listener: () => void): this;
  }

  export function createSocket(options?: SocketOptions): Socket;
}
