/**
 * shim6d's end of the IPC socket: connects to reapd, and keeps reconnecting (exponential
 * backoff) until close().
 *
 *   const client = new IpcClient({ path: config.ipcSocket, logger, pid: process.pid });
 *   client.on('connected', () => client.send({ type: 'sync', contexts: table.all().map(toIpc) }));
 *   client.on('message', (msg) => ...);      // a validated ReapdToShimd
 *   client.start();                          // returns at once
 *   client.send({ type: 'context', context }); // false while not connected: nothing is queued
 *   await client.close();
 *
 * On each connect the client sends its hello and waits for reapd's; 'connected' follows that
 * hello (of IPC_VERSION, from reapd), and the owner then announces its whole state with a
 * `sync`. Nothing is queued while disconnected: the sync on the next connect replaces it.
 * A connection that does not complete the handshake within handshakeTimeoutMs, breaks its
 * framing, or stops reading (more than MAX_PENDING_WRITE_BYTES waiting) is closed and
 * retried. Timers are unref'd: the client alone never keeps the process alive, though an open
 * connection does.
 */
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import type { Logger } from '../common/logger';
import { callListener, EventTuple, handshakeTimeout, IpcConnection, IpcConnectionCounters, IpcEndpoint, SHIM6D_ROLE } from './connection';
import type { IpcFramingError } from './framing';
import { IpcHelloMessage, IpcProtocolError, ReapdToShimd, ShimdToReapd } from './messages';

export interface IpcReconnectOptions {
  /** First delay after a failed or lost connection (default 100 ms). */
  initialMs: number;
  /** The delay doubles up to this (default 2000 ms). */
  maxMs: number;
}

export interface IpcClientOptions {
  /** The socket file (config.ipcSocket). */
  path: string;
  logger: Logger;
  /** Our pid, announced in the hello. */
  pid: number;
  reconnect?: IpcReconnectOptions;
  /** How long reapd may take to send its hello after the connect (default 5000 ms). */
  handshakeTimeoutMs?: number;
}

/** The counters (`stats`): IpcConnectionCounters and these. */
export interface IpcClientStats extends IpcConnectionCounters {
  /** Connection attempts. */
  attempts: number;
  /** Attempts that reached a listening socket. */
  connections: number;
  /** Handshakes completed ('connected' events). */
  handshakes: number;
}

export interface IpcClientEvents {
  connected: [hello: IpcHelloMessage];
  message: [message: ReapdToShimd];
  disconnected: [reason: string];
  invalid: [error: IpcProtocolError | IpcFramingError];
}

export const DEFAULT_RECONNECT: Readonly<IpcReconnectOptions> = Object.freeze({ initialMs: 100, maxMs: 2000 });

type Connection = IpcConnection<ReapdToShimd, ShimdToReapd>;

type State = 'new' | 'running' | 'closed';

export class IpcClient extends EventEmitter<IpcClientEvents> {
  private readonly path: string;
  private readonly log: Logger;
  private readonly reconnect: IpcReconnectOptions;
  private readonly endpoint: IpcEndpoint<ReapdToShimd, ShimdToReapd>;
  private state: State = 'new';
  private conn: Connection | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private delayMs: number;
  /** A failure to reach reapd (or to agree with it) is logged once, then at debug level until the next handshake. */
  private failureLogged = false;
  private nextConnection = 1;
  private closing: Promise<void> | undefined;
  private readonly counters: IpcClientStats = {
    attempts: 0,
    connections: 0,
    handshakes: 0,
    messagesIn: 0,
    messagesOut: 0,
    invalid: 0,
    framingErrors: 0,
    backpressure: 0,
  };

  constructor(options: IpcClientOptions) {
    super();
    this.path = options.path;
    this.log = options.logger;
    this.reconnect = { ...(options.reconnect ?? DEFAULT_RECONNECT) };
    const { initialMs, maxMs } = this.reconnect;
    if (!(initialMs > 0) || !(maxMs >= initialMs)) throw new RangeError(`IpcClient: bad reconnect delays ${initialMs}..${maxMs} ms`);
    this.delayMs = initialMs;
    this.endpoint = {
      ...SHIM6D_ROLE,
      handshakeTimeoutMs: handshakeTimeout('IpcClient', options.handshakeTimeoutMs),
      pid: options.pid,
      log: this.log,
      counters: this.counters,
      wrongDaemon: (daemon) => `expected reapd on the IPC socket, got ${daemon}`,
      refusing: (conn, reason) => this.logFailure('IPC: closing the connection to reapd', { connection: conn.n, reason }),
      refused: (conn, message) => {
        this.logFailure('IPC: reapd refused the connection', { connection: conn.n, message });
        conn.end('refused by reapd');
      },
      established: (conn, hello) => this.established(conn, hello),
      emit: (...event) => this.emitSafely(...event),
      closed: (conn, reason) => this.closed(conn, reason),
    };
  }

  /** A copy of the counters. */
  get stats(): IpcClientStats {
    return { ...this.counters };
  }

  /** True between 'connected' and 'disconnected' (false as soon as the connection is being closed). */
  get connected(): boolean {
    return this.conn?.hello !== undefined && !this.conn.isClosing;
  }

  /** The connected reapd's hello. */
  get peerHello(): IpcHelloMessage | undefined {
    return this.conn?.hello;
  }

  /** Starts connecting; returns at once. */
  start(): void {
    if (this.state !== 'new') throw new Error(`IpcClient.start: client is ${this.state === 'closed' ? 'closed' : 'already started'}`);
    this.state = 'running';
    this.connect();
  }

  /**
   * Sends a message to reapd. False when not connected, the message does not validate (a
   * bug: logged as an error) or it could not be queued; never throws. Nothing is kept for later.
   */
  send(msg: ShimdToReapd): boolean {
    const conn = this.conn;
    if (!conn || conn.hello === undefined || conn.isClosing) return false;
    return conn.send(msg);
  }

  /** Stops reconnecting and closes the connection. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.state = 'closed';
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const conn = this.conn;
    if (!conn) return;
    conn.destroy('IPC client closing');
    await conn.closed();
  }

  private connect(): void {
    this.retryTimer = undefined;
    if (this.state !== 'running') return;
    this.counters.attempts++;
    const n = this.nextConnection++;
    const socket = net.connect({ path: this.path, allowHalfOpen: false });
    const conn: Connection = new IpcConnection(n, socket, this.endpoint);
    this.conn = conn;
    socket.once('connect', () => {
      this.counters.connections++;
      this.log.debug('IPC: connected to the socket, saying hello', { path: this.path, connection: n });
      conn.sayHello();
    });
  }

  /** reapd's hello was accepted. */
  private established(conn: Connection, hello: IpcHelloMessage): void {
    this.counters.handshakes++;
    this.delayMs = this.reconnect.initialMs;
    this.failureLogged = false;
    this.log.info('IPC: connected to reapd', { pid: hello.pid, connection: conn.n });
    this.emitSafely('connected', hello);
  }

  private closed(conn: Connection, reason: string): void {
    if (this.conn !== conn) return;
    this.conn = undefined;
    if (conn.hello !== undefined) {
      this.log.warn('IPC: disconnected from reapd', { pid: conn.hello.pid, reason });
      this.emitSafely('disconnected', reason);
    } else if (this.state === 'running') {
      this.logFailure('IPC: cannot reach reapd; retrying', { path: this.path, reason });
    }
    if (this.state !== 'running') return;
    // A lost connection is retried after initialMs; failed attempts back off to maxMs.
    const delay = conn.hello !== undefined ? this.reconnect.initialMs : this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, this.reconnect.maxMs);
    this.retryTimer = setTimeout(() => this.connect(), delay);
    this.retryTimer.unref();
  }

  /** A warning the first time since the last handshake, debug afterwards: a retry loop does not flood the log. */
  private logFailure(msg: string, meta: Record<string, unknown>): void {
    if (this.failureLogged) {
      this.log.debug(msg, meta);
      return;
    }
    this.failureLogged = true;
    this.log.warn(msg, meta);
  }

  /** Emits; a listener that throws costs a log line, never the connection. */
  private emitSafely(...event: EventTuple<IpcClientEvents>): void {
    callListener(this.log, event[0], () => (this.emit as (...event: EventTuple<IpcClientEvents>) => boolean)(...event));
  }
}
