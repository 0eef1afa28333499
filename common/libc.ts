/**
 * The few libc socket calls the daemons make through koffi (raw IPv6 sockets bound to an exact
 * source, netlink sockets), loaded once. Node has no API for these; koffi calls libc directly.
 */
import koffi from 'koffi';

export interface Libc {
  socket: (domain: number, type: number, protocol: number) => number;
  bind: (fd: number, addr: Buffer, len: number) => number;
  getsockname: (fd: number, addr: Buffer, len: number[]) => number;
  setsockopt: (fd: number, level: number, name: number, value: Buffer, len: number) => number;
  send: (fd: number, buf: Buffer, len: number, flags: number) => number;
  sendto: (fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, addrlen: number) => number;
  recv: ((fd: number, buf: Buffer, len: number, flags: number) => number) & {
    async: (fd: number, buf: Buffer, len: number, flags: number, cb: (err: unknown, n: number) => void) => void;
  };
  close: (fd: number) => number;
}

let libc: Libc | undefined;

/** libc's socket calls (loaded on first use). */
export function loadLibc(): Libc {
  if (libc) return libc;
  const lib = koffi.load('libc.so.6');
  libc = {
    socket: lib.func('int socket(int, int, int)') as Libc['socket'],
    bind: lib.func('int bind(int, const uint8_t *addr, uint32_t len)') as Libc['bind'],
    getsockname: lib.func('int getsockname(int, _Out_ uint8_t *addr, _Inout_ uint32_t *len)') as Libc['getsockname'],
    setsockopt: lib.func('int setsockopt(int, int, int, const uint8_t *value, uint32_t len)') as Libc['setsockopt'],
    send: lib.func('intptr_t send(int, const uint8_t *buf, size_t len, int flags)') as Libc['send'],
    sendto: lib.func('intptr_t sendto(int, const uint8_t *buf, size_t len, int flags, const uint8_t *addr, uint32_t addrlen)') as Libc['sendto'],
    recv: lib.func('intptr_t recv(int, _Out_ uint8_t *buf, size_t len, int flags)') as Libc['recv'],
    close: lib.func('int close(int)') as Libc['close'],
  };
  return libc;
}
