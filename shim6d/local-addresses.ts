/**
 * The host's own IPv6 addresses — its locators — followed through rtnetlink.
 *
 * LocalAddressMonitor opens a NETLINK_ROUTE socket (libc through koffi), joins
 * RTMGRP_IPV6_IFADDR, dumps the current addresses (RTM_GETADDR) and then applies every
 * RTM_NEWADDR / RTM_DELADDR notification. It keeps the set of usable locators (see
 * isUsableLocator) and emits 'added' / 'removed' when that set changes — including when an
 * address finishes Duplicate Address Detection (tentative → usable) or is deprecated.
 *
 * Receiving: a blocking recv() called through koffi's `.async`, so it runs on a libuv worker
 * thread (one of UV_THREADPOOL_SIZE, 4 by default, is busy while the monitor is open) and the
 * main thread never blocks. SO_RCVTIMEO bounds each recv, so the loop re-checks whether it
 * was closed at least every `receiveTimeoutMs`; close() also wakes it at once by sending a
 * NLMSG_NOOP to the socket's own port (allowed with CAP_NET_ADMIN). The descriptor is closed
 * only after the last recv has returned, never under it.
 *
 * Lost notifications (ENOBUFS: the receive buffer overflowed), an interrupted dump
 * (NLM_F_DUMP_INTR) or unparseable input trigger a new dump ('resync' event), whose result is
 * reconciled with the set (addresses missing from a complete dump are 'removed'). An address
 * is keyed by (interface, address): the same address on two interfaces is two entries.
 * After close() (even from a listener) no more events are emitted.
 *
 * LocatorTracker is the pure part (messages in, changes out), exported for tests.
 */
import { EventEmitter } from 'node:events';
import koffi from 'koffi';
import { loadLibc, type Libc } from '../common/libc';
import { excludedAddressClass, parseIPv6 } from '../protocol/address';
import {
  AddressMessage,
  AF_INET6,
  AF_NETLINK,
  buildGetAddrDumpRequest,
  buildNetlinkMessage,
  HOST_BYTE_ORDER,
  NETLINK_ROUTE,
  NLM_F_DUMP_INTR,
  NLM_F_REQUEST,
  NLMSG_NOOP,
  parseNetlinkMessages,
  RT_SCOPE_UNIVERSE,
  RtnetlinkParseError,
  RTMGRP_IPV6_IFADDR,
} from './rtnetlink';

/** A usable locator: one global IPv6 address of this host, on one interface. */
export interface LocalAddress {
  /** Canonical text (RFC 5952). */
  address: string;
  ifindex: number;
  prefixLength: number;
}

export interface LocatorOptions {
  /** Count deprecated addresses (preferred lifetime over) as locators. Default false. */
  includeDeprecated?: boolean;
}

/**
 * Whether an address message describes a usable locator: IPv6, global scope, not tentative
 * (DAD running), not dadfailed, not deprecated (unless included); never link-local,
 * site-local, loopback, unspecified, IPv4-mapped or multicast whatever the scope says.
 */
export function isUsableLocator(m: AddressMessage, options: LocatorOptions = {}): boolean {
  if (m.kind !== 'new' || m.family !== AF_INET6 || m.scope !== RT_SCOPE_UNIVERSE) return false;
  if (m.flags.tentative || m.flags.dadfailed) return false;
  if (m.flags.deprecated && !options.includeDeprecated) return false;
  const b = parseIPv6(m.address);
  if (!b) return false;
  if (excludedAddressClass(b) !== undefined) return false; // multicast, link-local, ::, ::1, IPv4-mapped
  return !(b[0] === 0xfe && ((b[1] as number) & 0xc0) === 0xc0); // site-local fec0::/10 (deprecated)
}

export interface LocatorChange {
  type: 'added' | 'removed';
  locator: LocalAddress;
}

const keyOf = (ifindex: number, address: string): string => `${ifindex}/${address}`;

/**
 * The set of usable locators, kept from address messages (pure). A dump is bracketed by
 * beginDump() and endDump(): what a complete dump did not list (and no notification during
 * it added) is removed at its end.
 */
export class LocatorTracker {
  private readonly usable = new Map<string, LocalAddress>();
  /** Keys listed (or added by a notification) since beginDump(); undefined outside a dump. */
  private seen: Set<string> | undefined;

  constructor(private readonly options: LocatorOptions = {}) {}

  get dumping(): boolean {
    return this.seen !== undefined;
  }

  beginDump(): void {
    this.seen = new Set();
  }

  /** Applies one RTM_NEWADDR / RTM_DELADDR (a dump part or a notification). */
  apply(m: AddressMessage): LocatorChange[] {
    if (m.family !== AF_INET6) return [];
    const key = keyOf(m.ifindex, m.address);
    if (m.kind === 'new') this.seen?.add(key);
    else this.seen?.delete(key);
    const had = this.usable.get(key);
    if (isUsableLocator(m, this.options)) {
      const locator: LocalAddress = { address: m.address, ifindex: m.ifindex, prefixLength: m.prefixLength };
      this.usable.set(key, locator);
      return had ? [] : [{ type: 'added', locator }];
    }
    if (!had) return [];
    this.usable.delete(key);
    return [{ type: 'removed', locator: had }];
  }

  /** Ends a dump. Only a complete one (not interrupted, no notifications lost) removes what it did not list. */
  endDump(complete: boolean): LocatorChange[] {
    const seen = this.seen;
    this.seen = undefined;
    if (!seen || !complete) return [];
    const changes: LocatorChange[] = [];
    for (const [key, locator] of this.usable) {
      if (seen.has(key)) continue;
      this.usable.delete(key);
      changes.push({ type: 'removed', locator });
    }
    return changes;
  }

  addresses(): LocalAddress[] {
    return [...this.usable.values()].map((l) => ({ ...l }));
  }

  /** Whether `address` (canonical text) is a usable locator on some interface. */
  has(address: string): boolean {
    for (const l of this.usable.values()) if (l.address === address) return true;
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// The adapter.

/** An errno-carrying failure of the rtnetlink socket. */
export class RtnetlinkError extends Error {
  override readonly name = 'RtnetlinkError';
  constructor(
    /** The failing step: a libc call, 'dump' (the kernel refused the dump), 'parse' or 'closed'. */
    readonly call: 'socket' | 'bind' | 'getsockname' | 'setsockopt' | 'send' | 'recv' | 'dump' | 'parse' | 'closed',
    readonly errno: number,
    detail = '',
    /** The parse errors, for call 'parse'. */
    readonly parseErrors: RtnetlinkParseError[] = [],
  ) {
    super(`rtnetlink ${call}: errno ${errno}${detail ? ` (${detail})` : ''}`);
  }
}

export interface LocalAddressMonitorOptions extends LocatorOptions {
  /** SO_RCVTIMEO of the socket: the longest a recv blocks, so the longest close() can take. Default 500 ms. */
  receiveTimeoutMs?: number;
  /** SO_RCVBUF(FORCE): room for notifications between two recvs. Default 1 MiB. */
  receiveBufferBytes?: number;
}

/** Why the monitor dumps the addresses again. */
export type ResyncReason = 'overrun' | 'interrupted' | 'truncated' | 'parse';

export interface LocalAddressMonitorEvents {
  added: [LocalAddress];
  removed: [LocalAddress];
  /** A new dump was requested (it starts when the running one ends): notifications may have been lost. */
  resync: [ResyncReason];
  /** Every address message received (dump parts and notifications), before it is applied: for debugging. */
  message: [AddressMessage];
  error: [RtnetlinkError];
}



const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
// SO_RCVTIMEO (the timeval-of-longs one) is 20 on x86, x86-64, arm and arm64 (asm-generic).
const SO_RCVTIMEO = 20;
const SO_RCVBUFFORCE = 33;
const MSG_TRUNC = 0x20;
const SOCKADDR_NL_LENGTH = 12;
const RECEIVE_BUFFER = 64 * 1024; // a dump part is at most 32 KiB; a notification far less
const { EAGAIN, EWOULDBLOCK, EINTR, ENOBUFS, EBADMSG, EMSGSIZE, ESHUTDOWN } = koffi.os.errno as Record<string, number>;

function sockaddrNl(pid: number, groups: number): Buffer {
  const sa = Buffer.alloc(SOCKADDR_NL_LENGTH);
  if (HOST_BYTE_ORDER === 'LE') {
    sa.writeUInt16LE(AF_NETLINK, 0);
    sa.writeUInt32LE(pid >>> 0, 4);
    sa.writeUInt32LE(groups >>> 0, 8);
  } else {
    sa.writeUInt16BE(AF_NETLINK, 0);
    sa.writeUInt32BE(pid >>> 0, 4);
    sa.writeUInt32BE(groups >>> 0, 8);
  }
  return sa;
}

function nativeInt(value: number): Buffer {
  return Buffer.from(new Int32Array([value]).buffer);
}

function timeval(ms: number): Buffer {
  const long = koffi.sizeof('long');
  const sec = Math.floor(ms / 1000);
  const usec = Math.round((ms % 1000) * 1000);
  return long === 8 ? Buffer.from(new BigInt64Array([BigInt(sec), BigInt(usec)]).buffer) : Buffer.from(new Int32Array([sec, usec]).buffer);
}

/**
 * Follows the host's IPv6 addresses. The initial addresses are emitted as 'added' before
 * `ready` resolves; `addresses()` is the current set. Listen for 'error': socket failures
 * after construction are reported there (an 'error' event without a listener throws, as
 * with any EventEmitter). Construction throws RtnetlinkError if the socket cannot be set up.
 */
export class LocalAddressMonitor extends EventEmitter<LocalAddressMonitorEvents> {
  /** Resolved after the initial dump; rejected (RtnetlinkError) if it fails or close() comes first. */
  readonly ready: Promise<void>;

  private readonly tracker: LocatorTracker;
  private readonly c: Libc;
  private readonly fd: number;
  private readonly portId: number;
  private readonly buffer = Buffer.alloc(RECEIVE_BUFFER);
  private seq = 0;
  /** Sequence number of the dump in progress, 0 when none. */
  private dumpSeq = 0;
  private dumpInterrupted = false;
  private resyncPending: ResyncReason | undefined;
  private initial = true;
  private closing = false;
  private fdClosed = false;
  private receiving = false;
  private resolveReady!: () => void;
  private rejectReady!: (e: RtnetlinkError) => void;
  private readonly closedPromise: Promise<void>;
  private resolveClosed!: () => void;

  constructor(options: LocalAddressMonitorOptions = {}) {
    super();
    this.tracker = new LocatorTracker(options);
    this.ready = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => undefined); // a rejection nobody awaits is not an unhandled one
    this.closedPromise = new Promise<void>((resolve) => (this.resolveClosed = resolve));

    const c = (this.c = loadLibc());
    const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) throw new RtnetlinkError('socket', koffi.errno(), 'AF_NETLINK / NETLINK_ROUTE');
    this.fd = fd;
    try {
      const timeoutMs = options.receiveTimeoutMs ?? 500;
      if (!(timeoutMs >= 1 && timeoutMs <= 60_000)) throw new RangeError(`receiveTimeoutMs ${timeoutMs} outside 1..60000`);
      const tv = timeval(timeoutMs);
      if (c.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, tv.length) < 0) throw new RtnetlinkError('setsockopt', koffi.errno(), 'SO_RCVTIMEO');
      const rcvbuf = nativeInt(options.receiveBufferBytes ?? 1024 * 1024);
      if (c.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf, 4) < 0 && c.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, rcvbuf, 4) < 0) {
        throw new RtnetlinkError('setsockopt', koffi.errno(), 'SO_RCVBUF');
      }
      const sa = sockaddrNl(0, RTMGRP_IPV6_IFADDR);
      if (c.bind(fd, sa, sa.length) < 0) throw new RtnetlinkError('bind', koffi.errno(), 'RTMGRP_IPV6_IFADDR');
      const own = Buffer.alloc(SOCKADDR_NL_LENGTH);
      const len = [own.length];
      if (c.getsockname(fd, own, len) < 0) throw new RtnetlinkError('getsockname', koffi.errno());
      this.portId = HOST_BYTE_ORDER === 'LE' ? own.readUInt32LE(4) : own.readUInt32BE(4);
      this.startDump(); // throws RtnetlinkError('send') if the request cannot be sent
    } catch (e) {
      c.close(fd);
      this.fdClosed = true;
      throw e;
    }
    this.receive();
  }

  /** The usable locators now. */
  addresses(): LocalAddress[] {
    return this.tracker.addresses();
  }

  /** Whether `address` (canonical text) is a usable locator now. */
  has(address: string): boolean {
    return this.tracker.has(address);
  }

  /**
   * Stops following. Resolves once the socket is closed (after the pending recv returns: at
   * once when the wake-up message gets through, else within receiveTimeoutMs). Idempotent.
   */
  close(): Promise<void> {
    if (!this.closing) {
      this.closing = true;
      this.rejectReady(new RtnetlinkError('closed', ESHUTDOWN ?? 108, 'closed before the initial dump completed'));
      if (this.receiving) this.wake();
      else this.release();
    }
    return this.closedPromise;
  }

  private release(): void {
    if (this.fdClosed) return;
    this.fdClosed = true;
    this.c.close(this.fd);
    this.resolveClosed();
  }

  /** Best effort: a NLMSG_NOOP to our own port ends the blocking recv now. */
  private wake(): void {
    const noop = buildNetlinkMessage(NLMSG_NOOP, NLM_F_REQUEST, 0, this.portId);
    const to = sockaddrNl(this.portId, 0);
    this.c.sendto(this.fd, noop, noop.length, 0, to, to.length);
  }

  private nextSeq(): number {
    this.seq = this.seq >= 0xffffffff ? 1 : this.seq + 1;
    return this.seq;
  }

  private startDump(): void {
    const seq = this.nextSeq();
    const request = buildGetAddrDumpRequest(seq, AF_INET6);
    if (this.c.send(this.fd, request, request.length, 0) < 0) throw new RtnetlinkError('send', koffi.errno(), 'RTM_GETADDR dump request');
    this.dumpSeq = seq;
    this.dumpInterrupted = false;
    this.resyncPending = undefined;
    this.tracker.beginDump();
  }

  /** Dump again: now if no dump is running, else when the current one ends. */
  private resync(reason: ResyncReason): void {
    if (this.closing) return;
    this.emit('resync', reason);
    if (this.dumpSeq !== 0) this.resyncPending ??= reason;
    else this.dumpAgain();
  }

  private dumpAgain(): void {
    if (this.closing) return;
    try {
      this.startDump();
    } catch (e) {
      this.fail(e as RtnetlinkError);
    }
  }

  private fail(e: RtnetlinkError): void {
    if (this.closing) return;
    if (this.initial) this.rejectReady(e);
    this.emit('error', e);
  }

  private receive(): void {
    if (this.closing) {
      this.release();
      return;
    }
    this.receiving = true;
    this.c.recv.async(this.fd, this.buffer, this.buffer.length, MSG_TRUNC, (err, n) => {
      this.receiving = false;
      if (this.closing) {
        this.release();
        return;
      }
      let again = true;
      try {
        if (err) {
          again = false;
          this.fail(new RtnetlinkError('recv', 0, err instanceof Error ? err.message : String(err)));
        } else if (n < 0) {
          const errno = koffi.errno();
          if (errno === ENOBUFS) this.resync('overrun'); // notifications were lost: dump again
          else if (errno !== EAGAIN && errno !== EWOULDBLOCK && errno !== EINTR) {
            again = false;
            this.fail(new RtnetlinkError('recv', errno));
          }
        } else if (n > this.buffer.length) {
          this.resync('truncated');
          this.fail(new RtnetlinkError('recv', EMSGSIZE ?? 90, `datagram of ${n} octets truncated to ${this.buffer.length}`));
        } else {
          this.handle(this.buffer.subarray(0, n));
        }
      } finally {
        // Also after a listener threw: the exception goes on up, the monitor keeps running.
        if (again) this.receive();
        else {
          this.closing = true;
          this.release();
        }
      }
    });
  }

  private handle(data: Buffer): void {
    const { messages, errors } = parseNetlinkMessages(data);
    for (const m of messages) {
      if (this.closing) return; // a listener closed the monitor: no more events
      switch (m.kind) {
        case 'new':
        case 'del':
          if (m.header.seq === this.dumpSeq && this.dumpSeq !== 0 && (m.header.flags & NLM_F_DUMP_INTR) !== 0) this.dumpInterrupted = true;
          this.emit('message', m);
          for (const change of this.tracker.apply(m)) this.emit(change.type, change.locator);
          break;
        case 'done':
        case 'error':
          if (this.dumpSeq === 0 || m.header.seq !== this.dumpSeq) break; // not about our dump (an ACK, our wake-up)
          if (m.kind === 'error' && m.errno === 0) break;
          this.endDump(m.errno, m.kind === 'done' && (m.header.flags & NLM_F_DUMP_INTR) !== 0);
          break;
        default:
          break;
      }
    }
    if (errors.length > 0 && !this.closing) {
      const e = errors[0] as RtnetlinkParseError;
      this.resync('parse'); // something was not understood: make sure the set is right
      this.emit('error', new RtnetlinkError('parse', EBADMSG ?? 74, `${e.code} at ${e.offset}: ${e.message}`, errors));
    }
  }

  private endDump(errno: number, interrupted: boolean): void {
    this.dumpSeq = 0;
    if (errno === ENOBUFS) {
      // The dump itself overran the receive buffer: what it listed is incomplete; dump again.
      this.tracker.endDump(false);
      this.resync('overrun');
      return;
    }
    if (errno !== 0) {
      this.tracker.endDump(false);
      this.fail(new RtnetlinkError('dump', errno, 'the kernel ended the RTM_GETADDR dump with an error'));
      return;
    }
    const wasInterrupted = interrupted || this.dumpInterrupted;
    const again = wasInterrupted || this.resyncPending !== undefined;
    for (const change of this.tracker.endDump(!again)) {
      if (this.closing) return;
      this.emit(change.type, change.locator);
    }
    if (this.initial) {
      this.initial = false;
      this.resolveReady();
    }
    if (wasInterrupted) this.emit('resync', 'interrupted');
    if (again) this.dumpAgain();
  }
}
