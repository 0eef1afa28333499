/**
 * The conntrack adapter: IPv6 flows and their packet counters from the kernel's connection
 * tracker, through libnetfilter_conntrack (libnetfilter_conntrack.so.3) called with koffi.
 * No headers are needed: the functions, enum values and struct layouts used are declared
 * here, copied from the library's public header (include/libnetfilter_conntrack/
 * libnetfilter_conntrack.h, 1.0.x) and from linux/netfilter/nfnetlink_compat.h.
 *
 * Two netlink handles:
 * - the event handle, subscribed to NEW, UPDATE and DESTROY. A libuv worker thread waits
 *   for it to become readable: libc poll() called through koffi's `.async`, for at most
 *   receiveSliceMs at a time. When it is readable, `nfct_catch` runs on the main thread on
 *   the (non-blocking) socket and handles exactly the events already queued: it never
 *   waits, and the callbacks run on the main thread directly. The callback only parses each
 *   entry into a plain object; events are emitted from a setImmediate afterwards, outside
 *   the native frame, so a listener's exception is an ordinary exception and never unwinds
 *   through C. A batch stops after eventBatch events (NFCT_CB_STOP) and the rest follows
 *   on the next turn of the event loop, so an event storm cannot starve the main thread.
 *
 *   Why not `nfct_catch.async` on the worker, with the callback relayed to the main thread
 *   by koffi (the obvious design, and the first one tried): koffi's worker then waits, in
 *   native code, for the main thread to run the JS callback. If the process exits
 *   (process.exit(), an uncaught exception) while an event is being relayed, Node's exit
 *   path joins the worker threads without running JS again and the process hangs for
 *   ever; on a host with steady conntrack traffic that is likely. With poll() on the
 *   worker nothing is ever relayed, and an exit waits for at most one slice.
 * - the dump handle (no subscriptions) serves `nfct_query(NFCT_Q_DUMP, AF_INET6)`:
 *   synchronously, on the main thread, at start() and on every poll(). The kernel filters
 *   the dump by family. Its cost grows with the number of IPv6 flows in the table (a few
 *   microseconds each).
 *
 * What the kernel sends, and so what is seen here:
 * - Events carry no counters except DESTROY (the final ones): NEW and UPDATE events (UPDATE
 *   comes on state changes only, not per packet) have `counted: false`, `packets: 0`.
 *   Packet counters come from poll() (a dump), every second or so.
 * - Counters exist only for flows created while `net.netfilter.nf_conntrack_acct` was 1;
 *   start() sets it (it is per network namespace). Likewise `nf_conntrack_timestamp` for
 *   `firstSeenAt` (dumps and DESTROY events only).
 * - With `net.netfilter.nf_conntrack_events` = 2 (the kernel default), a flow created while
 *   no process listened for events never produces events, not even DESTROY: flows that
 *   existed before the monitor are seen by the dump at start() and by poll() only.
 * - Conntrack tracks nothing in a network namespace until some rule there uses it. shim6d's
 *   own rules do (`-m conntrack --ctstate UNTRACKED`, see DEFRAG_COMMENT in
 *   iptables-rules/shape.ts), so the monitor only needs them installed; without any such
 *   rule it opens fine and reports nothing.
 *
 * Needs CAP_NET_ADMIN (root) in the namespace: nfnetlink refuses both the event
 * subscription and the dump otherwise (ConntrackError, errno EPERM).
 */
import { EventEmitter } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import koffi, { type LibraryHandle, type TypeObject } from 'koffi';
import { formatIPv6 } from '../protocol/address';

// From the kernel's and the library's headers.
const AF_INET6 = 10;
/** enum { CONNTRACK = NFNL_SUBSYS_CTNETLINK } */
const CONNTRACK = 1;
/** linux/netfilter/nfnetlink_compat.h */
const NF_NETLINK_CONNTRACK_NEW = 0x1;
const NF_NETLINK_CONNTRACK_UPDATE = 0x2;
const NF_NETLINK_CONNTRACK_DESTROY = 0x4;
/** enum nf_conntrack_msg_type */
const NFCT_T_NEW = 1;
const NFCT_T_UPDATE = 2;
const NFCT_T_DESTROY = 4;
const NFCT_T_ALL = NFCT_T_NEW | NFCT_T_UPDATE | NFCT_T_DESTROY;
/** Callback verdicts. */
const NFCT_CB_STOP = 0;
const NFCT_CB_CONTINUE = 1;
/** enum nf_conntrack_query */
const NFCT_Q_DUMP = 5;
/** enum nf_conntrack_attr (the values used here). */
export const ATTR = Object.freeze({
  ORIG_IPV6_SRC: 4,
  ORIG_IPV6_DST: 5,
  ORIG_PORT_SRC: 8,
  ORIG_PORT_DST: 9,
  L3PROTO: 15, // ATTR_ORIG_L3PROTO
  L4PROTO: 17, // ATTR_ORIG_L4PROTO
  ORIG_COUNTER_PACKETS: 26,
  REPL_COUNTER_PACKETS: 27,
  ORIG_COUNTER_BYTES: 28,
  REPL_COUNTER_BYTES: 29,
  ID: 31,
  TIMESTAMP_START: 63,
});
/** enum nf_conntrack_attr_grp: struct nfct_attr_grp_ipv6 { uint32_t src[4], dst[4]; } */
const ATTR_GRP_ORIG_IPV6 = 2;

const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const SO_RCVBUFFORCE = 33;
const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;
/** struct pollfd { int fd; short events; short revents; } */
const POLLFD_SIZE = 8;
const POLLIN = 0x1;

const EAGAIN = osConstants.errno.EAGAIN;
const ENOBUFS = osConstants.errno.ENOBUFS;
const ENOENT = osConstants.errno.ENOENT;

/** Transport protocols whose conntrack tuple has ports. */
const PORT_PROTOCOLS = new Set([6, 17, 33, 132, 136]); // TCP, UDP, DCCP, SCTP, UDP-Lite

const SYSCTL_DIR = '/proc/sys/net/netfilter';

/** A failure of the conntrack library or of a setting it needs, with the libc errno. */
export class ConntrackError extends Error {
  override readonly name = 'ConntrackError';
  /** The errno's name (EPERM, ENOENT, ...), or 'E?' if unknown. */
  readonly code: string;
  constructor(
    /** What failed: dlopen, nfct_open, nfct_query, nfct_catch, poll, fcntl, sysctl. */
    readonly call: string,
    readonly errno: number,
    detail = '',
  ) {
    const code = errnoName(errno);
    super(`conntrack: ${call}: ${code} (errno ${errno})${detail ? `: ${detail}` : ''}`);
    this.code = code;
  }
}

function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(osConstants.errno)) if (value === errno) return name;
  return 'E?';
}

/** One IPv6 flow as conntrack knows it, in its original direction. */
export interface FlowSample {
  /** Source address of the original direction (the side that opened the flow), RFC 5952. */
  source: string;
  destination: string;
  /** Transport protocol (6 TCP, 17 UDP, 58 ICMPv6, ...). */
  protocol: number;
  /** Ports of the original direction (TCP, UDP, UDP-Lite, SCTP, DCCP). */
  sourcePort?: number;
  destinationPort?: number;
  /** Conntrack's id of the entry (stable while the flow lives). */
  id?: number;
  /** Identity of the flow: protocol, tuple and id; equal for every report of one flow. */
  flow: string;
  /** Packets both ways (original + reply); 0 when `counted` is false. */
  packets: number;
  /** Packets of the original direction (from `source`) and of the reply direction, when counted. */
  originalPackets?: number;
  replyPackets?: number;
  /** Octets both ways, when counted. */
  octets?: number;
  /** Whether the entry carried counters (dumps and DESTROY events of flows created with accounting on). */
  counted: boolean;
  /** When conntrack created the flow, ms since the epoch (with nf_conntrack_timestamp; dumps and DESTROY only). */
  firstSeenAt?: number;
}

export type ConntrackEventKind = 'new' | 'update' | 'destroy';

export interface ConntrackEvent extends FlowSample {
  kind: ConntrackEventKind;
}

export interface ConntrackMonitorOptions {
  /** Shared object to load (default libnetfilter_conntrack.so.3). */
  library?: string;
  /** Subscribe to events (default true); false: poll() only. */
  events?: boolean;
  /** At start(), emit a 'new' event for every IPv6 flow already in the table (default true). */
  initialDump?: boolean;
  /** Write 1 to nf_conntrack_acct if it is not (default true; without it there are no counters). */
  enableAccounting?: boolean;
  /** Write 1 to nf_conntrack_timestamp if it is not (default true; gives firstSeenAt). Failure is not fatal. */
  enableTimestamps?: boolean;
  /** Longest a single wait for events occupies its worker thread (default 250 ms): bounds how long close() and process exit take. */
  receiveSliceMs?: number;
  /** Events handled per turn of the event loop at most (default 1000). */
  eventBatch?: number;
  /** Kernel receive buffer of the event socket, octets (default 4 MiB): room for bursts of events. */
  receiveBufferBytes?: number;
  /** Directory of the netfilter sysctls (default /proc/sys/net/netfilter); tests only. */
  sysctlDir?: string;
}

export interface ConntrackStats {
  /** IPv6 events emitted, by kind. */
  newEvents: number;
  updateEvents: number;
  destroyEvents: number;
  /** Dumps done (start and poll) and the IPv6 entries they returned. */
  dumps: number;
  dumpedFlows: number;
  /** Entries of another family (should not happen: dumps are filtered, events rarely are). */
  otherFamily: number;
  /** Entries that could not be parsed (missing addresses, a failing attribute call). */
  malformed: number;
  /** Times the event socket overflowed (ENOBUFS): events were lost; poll() still sees the flows. */
  overruns: number;
  /** Unexpected failures of poll() or nfct_catch on the event socket (the loop retries after a second). */
  catchErrors: number;
  /** nf_conntrack_timestamp could not be enabled (firstSeenAt is then missing). */
  timestampsUnavailable: boolean;
}

interface Lib {
  nfct_open: (subsys: number, subscriptions: number) => bigint | null;
  nfct_close: (h: bigint) => number;
  nfct_fd: (h: bigint) => number;
  nfct_callback_register: (h: bigint, type: number, cb: bigint, data: null) => number;
  nfct_callback_unregister: (h: bigint) => void;
  nfct_query: (h: bigint, query: number, data: Buffer) => number;
  nfct_catch: (h: bigint) => number;
  nfct_get_attr_u8: (ct: bigint, attr: number) => number;
  nfct_get_attr_u16: (ct: bigint, attr: number) => number;
  nfct_get_attr_u32: (ct: bigint, attr: number) => number;
  nfct_get_attr_u64: (ct: bigint, attr: number) => number | bigint;
  nfct_attr_is_set: (ct: bigint, attr: number) => number;
  nfct_get_attr_grp: (ct: bigint, grp: number, out: Buffer) => number;
  setsockopt: (fd: number, level: number, name: number, value: Buffer, length: number) => number;
  /** fcntl(fd, cmd, int arg) (variadic: the argument's type is passed before it). */
  fcntl: (fd: number, cmd: number, ...arg: [] | ['int', number]) => number;
  poll: { async: (fds: Buffer, count: number, timeoutMs: number, done: (err: unknown, result: number) => void) => void };
  callbackType: TypeObject;
}

const libraries = new Map<string, Lib>();

function loadLibrary(path: string): Lib {
  const known = libraries.get(path);
  if (known) return known;
  let lib: LibraryHandle;
  let libc: LibraryHandle;
  try {
    lib = koffi.load(path);
    libc = koffi.load('libc.so.6');
  } catch (e) {
    throw new ConntrackError('dlopen', ENOENT, `${path}: ${e instanceof Error ? e.message : String(e)} (install the libnetfilter-conntrack3 package)`);
  }
  // int (*cb)(enum nf_conntrack_msg_type type, struct nf_conntrack *ct, void *data); anonymous,
  // since koffi's type names are global.
  const callbackType = koffi.proto(null, 'int', ['int', 'void *', 'void *']);
  const fns: Lib = {
    nfct_open: lib.func('void *nfct_open(uint8_t subsys, unsigned int subscriptions)') as Lib['nfct_open'],
    nfct_close: lib.func('int nfct_close(void *h)') as Lib['nfct_close'],
    nfct_fd: lib.func('int nfct_fd(void *h)') as Lib['nfct_fd'],
    nfct_callback_register: lib.func('nfct_callback_register', 'int', ['void *', 'int', koffi.pointer(callbackType), 'void *']) as Lib['nfct_callback_register'],
    nfct_callback_unregister: lib.func('void nfct_callback_unregister(void *h)') as Lib['nfct_callback_unregister'],
    nfct_query: lib.func('int nfct_query(void *h, int query, const void *data)') as Lib['nfct_query'],
    nfct_catch: lib.func('int nfct_catch(void *h)') as Lib['nfct_catch'],
    nfct_get_attr_u8: lib.func('uint8_t nfct_get_attr_u8(const void *ct, int attr)') as Lib['nfct_get_attr_u8'],
    nfct_get_attr_u16: lib.func('uint16_t nfct_get_attr_u16(const void *ct, int attr)') as Lib['nfct_get_attr_u16'],
    nfct_get_attr_u32: lib.func('uint32_t nfct_get_attr_u32(const void *ct, int attr)') as Lib['nfct_get_attr_u32'],
    nfct_get_attr_u64: lib.func('uint64_t nfct_get_attr_u64(const void *ct, int attr)') as Lib['nfct_get_attr_u64'],
    nfct_attr_is_set: lib.func('int nfct_attr_is_set(const void *ct, int attr)') as Lib['nfct_attr_is_set'],
    nfct_get_attr_grp: lib.func('int nfct_get_attr_grp(const void *ct, int grp, uint8_t *out)') as Lib['nfct_get_attr_grp'],
    setsockopt: libc.func('int setsockopt(int fd, int level, int name, const void *value, uint32_t length)') as Lib['setsockopt'],
    fcntl: libc.func('int fcntl(int fd, int cmd, ...)') as Lib['fcntl'],
    poll: libc.func('int poll(_Inout_ uint8_t *fds, unsigned long count, int timeout)') as unknown as Lib['poll'],
    callbackType,
  };
  libraries.set(path, fns);
  return fns;
}

/** Reads a netfilter sysctl and writes `value` if it differs. Throws ConntrackError. */
function ensureSysctl(dir: string, name: string, value: string): void {
  const path = `${dir}/${name}`;
  let current: string;
  try {
    current = readFileSync(path, 'utf8').trim();
  } catch (e) {
    throw new ConntrackError('sysctl', fsErrno(e), `${path} (is nf_conntrack loaded?)`);
  }
  if (current === value) return;
  try {
    writeFileSync(path, `${value}\n`);
  } catch (e) {
    throw new ConntrackError('sysctl', fsErrno(e), `writing ${value} to ${path} (needs root)`);
  }
}

function fsErrno(e: unknown): number {
  const errno = (e as { errno?: unknown }).errno;
  // Node's fs errors carry a negative errno.
  return typeof errno === 'number' ? Math.abs(errno) : 0;
}

const u64 = (v: number | bigint): number => (typeof v === 'bigint' ? Number(v) : v);
const ntohs = (v: number): number => ((v & 0xff) << 8) | ((v >> 8) & 0xff);

/**
 * Watches the IPv6 flows of this network namespace.
 *
 *   const m = new ConntrackMonitor();
 *   m.on('event', (e) => ...);      // 'new' | 'update' | 'destroy'
 *   m.start();                      // sysctls, handles, the initial dump ('new' events)
 *   setInterval(() => feed(m.poll()), 1000);
 *   await m.close();
 */
export class ConntrackMonitor extends EventEmitter<{ event: [ConntrackEvent]; error: [ConntrackError] }> {
  private readonly options: Required<ConntrackMonitorOptions>;
  private lib: Lib | undefined;
  private eventHandle: bigint | undefined;
  private dumpHandle: bigint | undefined;
  private eventCallback: bigint | undefined;
  private dumpCallback: bigint | undefined;
  /** Where the dump callback puts what it parses (set for the duration of one nfct_query). */
  private dumpSink: FlowSample[] | undefined;
  private readonly pending: ConntrackEvent[] = [];
  private flushScheduled = false;
  /** A poll() for the event socket is running on a worker thread. */
  private waiting = false;
  /** Events handled in the current nfct_catch batch. */
  private batchCount = 0;
  private readonly pollFd = Buffer.alloc(POLLFD_SIZE);
  private retryTimer: NodeJS.Timeout | undefined;
  private state: 'idle' | 'running' | 'closing' | 'closed' = 'idle';
  private closed: Promise<void> | undefined;
  private closedResolve: (() => void) | undefined;
  private readonly counters: ConntrackStats = {
    newEvents: 0,
    updateEvents: 0,
    destroyEvents: 0,
    dumps: 0,
    dumpedFlows: 0,
    otherFamily: 0,
    malformed: 0,
    overruns: 0,
    catchErrors: 0,
    timestampsUnavailable: false,
  };

  constructor(options: ConntrackMonitorOptions = {}) {
    super();
    this.options = {
      library: options.library ?? 'libnetfilter_conntrack.so.3',
      events: options.events ?? true,
      initialDump: options.initialDump ?? true,
      enableAccounting: options.enableAccounting ?? true,
      enableTimestamps: options.enableTimestamps ?? true,
      receiveSliceMs: options.receiveSliceMs ?? 250,
      eventBatch: options.eventBatch ?? 1000,
      receiveBufferBytes: options.receiveBufferBytes ?? 4 * 1024 * 1024,
      sysctlDir: options.sysctlDir ?? SYSCTL_DIR,
    };
    if (!(Number.isInteger(this.options.eventBatch) && this.options.eventBatch >= 1)) throw new RangeError(`eventBatch must be a positive integer, not ${this.options.eventBatch}`);
    if (!(this.options.receiveSliceMs >= 1 && this.options.receiveSliceMs <= 60_000)) {
      throw new RangeError(`receiveSliceMs must be 1..60000, not ${this.options.receiveSliceMs}`);
    }
  }

  /** A copy of the counters. */
  stats(): ConntrackStats {
    return { ...this.counters };
  }

  get running(): boolean {
    return this.state === 'running';
  }

  /**
   * Opens the handles, turns on accounting (and timestamps), dumps the table (a 'new' event
   * per existing IPv6 flow, emitted asynchronously) and starts the event loop. Throws
   * ConntrackError (library missing, not root, conntrack not loaded); nothing stays open then.
   */
  start(): void {
    if (this.state !== 'idle') throw new Error(`ConntrackMonitor: start() when ${this.state}`);
    const lib = loadLibrary(this.options.library);
    this.lib = lib;
    try {
      // Opening a ctnetlink handle loads nf_conntrack(_netlink) if needed, so the sysctls
      // exist afterwards.
      this.dumpHandle = this.open(0);
      if (this.options.enableAccounting) ensureSysctl(this.options.sysctlDir, 'nf_conntrack_acct', '1');
      if (this.options.enableTimestamps) {
        try {
          ensureSysctl(this.options.sysctlDir, 'nf_conntrack_timestamp', '1');
        } catch {
          this.counters.timestampsUnavailable = true;
        }
      }
      this.dumpCallback = koffi.register(this.onDumpEntry.bind(this), koffi.pointer(lib.callbackType));
      lib.nfct_callback_register(this.dumpHandle, NFCT_T_ALL, this.dumpCallback, null);
      if (this.options.events) {
        // Subscribe before the dump: a flow created meanwhile is then seen by one or both.
        this.eventHandle = this.open(NF_NETLINK_CONNTRACK_NEW | NF_NETLINK_CONNTRACK_UPDATE | NF_NETLINK_CONNTRACK_DESTROY);
        this.configureEventSocket(this.eventHandle);
        this.eventCallback = koffi.register(this.onEvent.bind(this), koffi.pointer(lib.callbackType));
        lib.nfct_callback_register(this.eventHandle, NFCT_T_ALL, this.eventCallback, null);
      }
      const initial = this.dump();
      if (this.options.initialDump) for (const s of initial) this.queue({ kind: 'new', ...s });
    } catch (e) {
      this.release();
      this.state = 'closed';
      throw e;
    }
    this.state = 'running';
    if (this.eventHandle !== undefined) this.waitForEvents();
  }

  /**
   * Every IPv6 flow in the table now, with its counters (a synchronous dump on the main
   * thread). Throws ConntrackError if the dump fails, Error if the monitor is not running.
   */
  poll(): FlowSample[] {
    if (this.state !== 'running') throw new Error(`ConntrackMonitor: poll() when ${this.state}`);
    return this.dump();
  }

  /**
   * Stops the event loop and closes the handles. Resolves once the worker thread has
   * returned (at most one receive slice). Idempotent; safe before start().
   */
  close(): Promise<void> {
    if (this.closed) return this.closed;
    this.closed = new Promise<void>((resolve) => (this.closedResolve = resolve));
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.state = 'closing';
    if (!this.waiting) this.finishClose();
    return this.closed;
  }

  private finishClose(): void {
    this.release();
    this.state = 'closed';
    this.pending.length = 0;
    this.closedResolve?.();
  }

  private release(): void {
    const lib = this.lib;
    if (!lib) return;
    if (this.eventHandle !== undefined) lib.nfct_close(this.eventHandle);
    if (this.dumpHandle !== undefined) lib.nfct_close(this.dumpHandle);
    this.eventHandle = this.dumpHandle = undefined;
    if (this.eventCallback !== undefined) koffi.unregister(this.eventCallback);
    if (this.dumpCallback !== undefined) koffi.unregister(this.dumpCallback);
    this.eventCallback = this.dumpCallback = undefined;
  }

  private open(subscriptions: number): bigint {
    const h = this.lib?.nfct_open(CONNTRACK, subscriptions);
    if (h === null || h === undefined || h === 0n) {
      const errno = koffi.errno();
      throw new ConntrackError('nfct_open', errno, errno === osConstants.errno.EPERM ? 'needs root (CAP_NET_ADMIN)' : '');
    }
    return h;
  }

  private configureEventSocket(h: bigint): void {
    const lib = this.lib as Lib;
    const fd = lib.nfct_fd(h);
    const flags = lib.fcntl(fd, F_GETFL);
    if (flags < 0 || lib.fcntl(fd, F_SETFL, 'int', flags | O_NONBLOCK) < 0) {
      throw new ConntrackError('fcntl', koffi.errno(), 'O_NONBLOCK on the event socket');
    }
    this.pollFd.writeInt32LE(fd, 0);
    const size = Buffer.alloc(4);
    size.writeInt32LE(Math.min(this.options.receiveBufferBytes, 0x3fffffff));
    // FORCE passes net.core.rmem_max (root); plain SO_RCVBUF is capped by it. Not fatal.
    if (lib.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, size, 4) < 0) lib.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, size, 4);
  }

  private dump(): FlowSample[] {
    const lib = this.lib as Lib;
    const family = Buffer.alloc(4);
    family.writeUInt32LE(AF_INET6);
    const out: FlowSample[] = [];
    this.dumpSink = out;
    let rc: number;
    try {
      rc = lib.nfct_query(this.dumpHandle as bigint, NFCT_Q_DUMP, family);
    } finally {
      this.dumpSink = undefined;
    }
    if (rc < 0) {
      const errno = koffi.errno();
      throw new ConntrackError('nfct_query', errno, errno === osConstants.errno.EPERM ? 'dump: needs root (CAP_NET_ADMIN)' : 'dump');
    }
    this.counters.dumps++;
    this.counters.dumpedFlows += out.length;
    return out;
  }

  /** Waits (on a worker thread, one slice at most) for the event socket to be readable. */
  private waitForEvents(): void {
    const lib = this.lib as Lib;
    this.pollFd.writeInt16LE(POLLIN, 4);
    this.pollFd.writeInt16LE(0, 6);
    this.waiting = true;
    lib.poll.async(this.pollFd, 1, this.options.receiveSliceMs, (err, rc) => {
      const errno = koffi.errno();
      this.waiting = false;
      if (this.state !== 'running') {
        this.finishClose();
        return;
      }
      if (err || (rc < 0 && errno !== osConstants.errno.EINTR)) {
        this.failed('poll', errno, err);
        return;
      }
      if (rc > 0) this.catchEvents();
      else this.waitForEvents();
    });
  }

  /** Handles the events already queued on the (non-blocking) event socket, on the main thread. */
  private catchEvents(): void {
    if (this.state !== 'running') return;
    const lib = this.lib as Lib;
    this.batchCount = 0;
    const rc = lib.nfct_catch(this.eventHandle as bigint);
    const errno = koffi.errno();
    if (rc >= 0 && this.batchCount >= this.options.eventBatch) {
      // Stopped by the batch limit: more may be queued; let the event loop breathe first.
      setImmediate(() => this.catchEvents());
      return;
    }
    if (rc < 0 && errno === ENOBUFS) {
      // The kernel dropped events; the socket is readable again at once.
      this.counters.overruns++;
      setImmediate(() => this.catchEvents());
      return;
    }
    if (rc < 0 && errno !== EAGAIN && errno !== osConstants.errno.EWOULDBLOCK && errno !== osConstants.errno.EINTR) {
      this.failed('nfct_catch', errno, undefined);
      return;
    }
    this.waitForEvents();
  }

  private failed(call: string, errno: number, err: unknown): void {
    this.counters.catchErrors++;
    const failure = new ConntrackError(call, errno, err ? String(err) : 'event socket');
    if (this.listenerCount('error') > 0) this.emit('error', failure);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.state === 'running') this.waitForEvents();
    }, 1000);
  }

  /** Registered callback of the event handle (runs on the main thread, inside nfct_catch). Never throws. */
  private onEvent(type: number, ct: bigint | null): number {
    try {
      if (this.state !== 'running') return NFCT_CB_STOP;
      const kind: ConntrackEventKind | undefined =
        type === NFCT_T_NEW ? 'new' : type === NFCT_T_UPDATE ? 'update' : type === NFCT_T_DESTROY ? 'destroy' : undefined;
      const sample = this.parse(ct);
      if (sample && kind) this.queue({ kind, ...sample });
      else if (sample) this.counters.malformed++;
    } catch {
      this.counters.malformed++;
    }
    // One event per netlink message: stopping here loses nothing; the rest stays queued.
    return ++this.batchCount >= this.options.eventBatch ? NFCT_CB_STOP : NFCT_CB_CONTINUE;
  }

  /** Registered callback of the dump handle (runs on the main thread, inside nfct_query). Never throws. */
  private onDumpEntry(_type: number, ct: bigint | null): number {
    try {
      const sample = this.parse(ct);
      if (sample) this.dumpSink?.push(sample);
    } catch {
      this.counters.malformed++;
    }
    return NFCT_CB_CONTINUE;
  }

  /** The flow of one conntrack object; undefined (counted) if it is not IPv6 or is malformed. */
  private parse(ct: bigint | null): FlowSample | undefined {
    const lib = this.lib as Lib;
    if (ct === null || ct === 0n) {
      this.counters.malformed++;
      return undefined;
    }
    if (lib.nfct_get_attr_u8(ct, ATTR.L3PROTO) !== AF_INET6) {
      this.counters.otherFamily++;
      return undefined;
    }
    const addresses = Buffer.alloc(32);
    if (
      !lib.nfct_attr_is_set(ct, ATTR.ORIG_IPV6_SRC) ||
      !lib.nfct_attr_is_set(ct, ATTR.ORIG_IPV6_DST) ||
      !lib.nfct_attr_is_set(ct, ATTR.L4PROTO) ||
      lib.nfct_get_attr_grp(ct, ATTR_GRP_ORIG_IPV6, addresses) < 0
    ) {
      this.counters.malformed++;
      return undefined;
    }
    const source = formatIPv6(addresses, 0);
    const destination = formatIPv6(addresses, 16);
    const protocol = lib.nfct_get_attr_u8(ct, ATTR.L4PROTO);
    const sample: FlowSample = { source, destination, protocol, flow: '', packets: 0, counted: false };
    if (PORT_PROTOCOLS.has(protocol) && lib.nfct_attr_is_set(ct, ATTR.ORIG_PORT_SRC) && lib.nfct_attr_is_set(ct, ATTR.ORIG_PORT_DST)) {
      // Stored in network byte order.
      sample.sourcePort = ntohs(lib.nfct_get_attr_u16(ct, ATTR.ORIG_PORT_SRC));
      sample.destinationPort = ntohs(lib.nfct_get_attr_u16(ct, ATTR.ORIG_PORT_DST));
    }
    if (lib.nfct_attr_is_set(ct, ATTR.ID)) sample.id = lib.nfct_get_attr_u32(ct, ATTR.ID);
    if (lib.nfct_attr_is_set(ct, ATTR.ORIG_COUNTER_PACKETS) || lib.nfct_attr_is_set(ct, ATTR.REPL_COUNTER_PACKETS)) {
      sample.counted = true;
      sample.originalPackets = u64(lib.nfct_get_attr_u64(ct, ATTR.ORIG_COUNTER_PACKETS));
      sample.replyPackets = u64(lib.nfct_get_attr_u64(ct, ATTR.REPL_COUNTER_PACKETS));
      sample.packets = sample.originalPackets + sample.replyPackets;
      sample.octets = u64(lib.nfct_get_attr_u64(ct, ATTR.ORIG_COUNTER_BYTES)) + u64(lib.nfct_get_attr_u64(ct, ATTR.REPL_COUNTER_BYTES));
    }
    if (lib.nfct_attr_is_set(ct, ATTR.TIMESTAMP_START)) {
      const ns = lib.nfct_get_attr_u64(ct, ATTR.TIMESTAMP_START);
      const ms = typeof ns === 'bigint' ? Number(ns / 1_000_000n) : Math.floor(ns / 1e6);
      if (ms > 0) sample.firstSeenAt = ms;
    }
    sample.flow = flowKey(sample);
    return sample;
  }

  private queue(e: ConntrackEvent): void {
    this.pending.push(e);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      const batch = this.pending.splice(0);
      for (const event of batch) {
        if (this.state !== 'running') return;
        if (event.kind === 'new') this.counters.newEvents++;
        else if (event.kind === 'update') this.counters.updateEvents++;
        else this.counters.destroyEvents++;
        this.emit('event', event);
      }
    });
  }
}

/** The identity of a flow: protocol, original tuple and conntrack id. */
export function flowKey(s: Pick<FlowSample, 'protocol' | 'source' | 'destination' | 'sourcePort' | 'destinationPort' | 'id'>): string {
  return `${s.protocol} [${s.source}]:${s.sourcePort ?? '-'} [${s.destination}]:${s.destinationPort ?? '-'} #${s.id ?? '-'}`;
}
