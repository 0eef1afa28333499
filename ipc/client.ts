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
import { encodeFrame, FramedSocket, IpcFramingError, parseFrameBody } from './framing';
import {
  helloVersion,
  IPC_VERSION,
  IpcHelloMessage,
  IpcProtocolError,
  ReapdToShimd,
  ShimdToReapd,
  validateReapdToShimd,
  validateShimdToReapd,
} from './messages';

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

export interface IpcClientStats {
  /** Connection attempts. */
  attempts: number;
  /** Attempts that reached a listening socket. */
  connections: number;
  /** Handshakes completed ('connected' events). */
  handshakes: number;
  /** Valid messages received after a handshake (hellos included). */
  messagesIn: number;
  /** Messages handed to the socket (hellos and errors included). */
  messagesOut: number;
  /** Frames that were not valid messages, or came out of order. */
  invalid: number;
  /** Connections closed because their stream lost its framing. */
  framingErrors: number;
  /** Writes that found Node's socket buffer above its high-water mark (the message was still queued). */
  backpressure: number;
}

export interface IpcClientEvents {
  connected: [hello: IpcHelloMessage];
  message: [message: ReapdToShimd];
  disconnected: [reason: string];
  invalid: [error: IpcProtocolError | IpcFramingError];
}

export const DEFAULT_RECONNECT: Readonly<IpcReconnectOptions> = Object.freeze({ initialMs: 100, maxMs: 2000 });

interface Connection {
  readonly n: number;
  readonly framed: FramedSocket;
  hello: IpcHelloMessage | undefined;
  timer: NodeJS.Timeout | undefined;
}

type State = 'new' | 'running' | 'closed';

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export class IpcClient extends EventEmitter<IpcClientEvents> {
  private readonly path: string;
  private readonly log: Logger;
  private readonly pid: number;
  private readonly reconnect: IpcReconnectOptions;
  private readonly handshakeTimeoutMs: number;
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
    this.pid = options.pid;
    this.reconnect = { ...(options.reconnect ?? DEFAULT_RECONNECT) };
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? 5000;
    const { initialMs, maxMs } = this.reconnect;
    if (!(initialMs > 0) || !(maxMs >= initialMs)) throw new RangeError(`IpcClient: bad reconnect delays ${initialMs}..${maxMs} ms`);
    if (!(this.handshakeTimeoutMs > 0)) throw new RangeError(`IpcClient: bad handshakeTimeoutMs ${this.handshakeTimeoutMs}`);
    this.delayMs = initialMs;
  }

  /** A copy of the counters. */
  get stats(): IpcClientStats {
    return { ...this.counters };
  }

  /** True between 'connected' and 'disconnected' (false as soon as the connection is being closed). */
  get connected(): boolean {
    return this.conn?.hello !== undefined && !this.conn.framed.isClosing;
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
    if (!conn || conn.hello === undefined || conn.framed.isClosing) return false;
    try {
      validateShimdToReapd(msg);
    } catch (e) {
      this.log.error('IPC: not sending an invalid message', { type: msg.type, error: errorMessage(e) });
      return false;
    }
    return this.write(conn, msg);
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
    if (conn.timer) clearTimeout(conn.timer);
    conn.framed.destroy('IPC client closing');
    await conn.framed.closed();
  }

  private connect(): void {
    this.retryTimer = undefined;
    if (this.state !== 'running') return;
    this.counters.attempts++;
    const n = this.nextConnection++;
    const socket = net.connect({ path: this.path, allowHalfOpen: false });
    const conn: Connection = {
      n,
      hello: undefined,
      timer: undefined,
      framed: new FramedSocket(socket, {
        frame: (body) => this.receive(conn, body),
        framingError: (e) => {
          this.counters.framingErrors++;
          this.log.warn('IPC: framing error, connection closed', { connection: n, error: e.message });
          this.emitSafely('invalid', e);
        },
        close: (reason) => this.closed(conn, reason),
      }),
    };
    this.conn = conn;
    socket.once('connect', () => {
      this.counters.connections++;
      this.log.debug('IPC: connected to the socket, saying hello', { path: this.path, connection: n });
      conn.timer = setTimeout(() => this.refuse(conn, `no hello within ${this.handshakeTimeoutMs} ms`), this.handshakeTimeoutMs);
      conn.timer.unref();
      this.write(conn, { type: 'hello', version: IPC_VERSION, daemon: 'shim6d', pid: this.pid });
    });
  }

  private write(conn: Connection, msg: ShimdToReapd): boolean {
    let frame: Buffer;
    try {
      frame = encodeFrame(msg);
    } catch (e) {
      this.log.error('IPC: message too large to send', { type: msg.type, error: errorMessage(e) });
      return false;
    }
    const result = conn.framed.write(frame);
    switch (result) {
      case 'written':
        this.counters.messagesOut++;
        return true;
      case 'backpressure':
        this.counters.messagesOut++;
        this.counters.backpressure++;
        return true;
      case 'overflow':
        this.log.warn('IPC: reapd is not reading; connection closed', { connection: conn.n });
        return false;
      case 'closed':
        return false;
    }
  }

  /** Sends an `error` and closes; the connection is retried later. */
  private refuse(conn: Connection, reason: string): void {
    if (conn.timer) clearTimeout(conn.timer);
    if (conn.framed.isClosing) return;
    this.logFailure('IPC: closing the connection to reapd', { connection: conn.n, reason });
    this.write(conn, { type: 'error', message: reason.slice(0, 256) });
    conn.framed.end(reason);
  }

  private invalid(conn: Connection, error: IpcProtocolError): void {
    this.counters.invalid++;
    this.log.warn('IPC: invalid message from reapd', { connection: conn.n, path: error.path, error: error.detail });
    this.emitSafely('invalid', error);
  }

  private receive(conn: Connection, body: Buffer): void {
    if (conn.hello === undefined) {
      this.handshake(conn, body);
      return;
    }
    let msg: ReapdToShimd;
    try {
      msg = validateReapdToShimd(parseFrameBody(body));
    } catch (e) {
      if (!(e instanceof IpcProtocolError)) throw e;
      this.invalid(conn, e);
      return;
    }
    if (msg.type === 'hello') {
      this.invalid(conn, new IpcProtocolError('type', 'a second hello on the connection'));
      return;
    }
    this.counters.messagesIn++;
    if (msg.type === 'error') this.log.warn('IPC: reapd reports an error', { message: msg.message });
    this.emitSafely('message', msg);
  }

  private handshake(conn: Connection, body: Buffer): void {
    let msg: ReapdToShimd;
    try {
      const value = parseFrameBody(body);
      const version = helloVersion(value);
      if (version !== undefined && version !== IPC_VERSION) {
        this.refuse(conn, `IPC version ${version} is not supported: this shim6d speaks version ${IPC_VERSION}`);
        return;
      }
      msg = validateReapdToShimd(value);
    } catch (e) {
      if (!(e instanceof IpcProtocolError)) throw e;
      this.invalid(conn, e);
      this.refuse(conn, `expected a hello: ${e.message}`);
      return;
    }
    if (msg.type === 'error') {
      this.logFailure('IPC: reapd refused the connection', { connection: conn.n, message: msg.message });
      conn.framed.end('refused by reapd');
      return;
    }
    if (msg.type !== 'hello') {
      this.invalid(conn, new IpcProtocolError('type', `expected 'hello' first, got '${msg.type}'`));
      this.refuse(conn, `expected a hello first, got '${msg.type}'`);
      return;
    }
    if (msg.daemon !== 'reapd') {
      this.refuse(conn, `expected reapd on the IPC socket, got ${msg.daemon}`);
      return;
    }
    if (conn.timer) clearTimeout(conn.timer);
    conn.timer = undefined;
    conn.hello = msg;
    this.counters.messagesIn++;
    this.counters.handshakes++;
    this.delayMs = this.reconnect.initialMs;
    this.failureLogged = false;
    this.log.info('IPC: connected to reapd', { pid: msg.pid, connection: conn.n });
    this.emitSafely('connected', msg);
  }

  private closed(conn: Connection, reason: string): void {
    if (conn.timer) clearTimeout(conn.timer);
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
  private emitSafely<K extends keyof IpcClientEvents>(event: K, ...args: IpcClientEvents[K]): void {
    try {
      (this.emit as (event: K, ...args: IpcClientEvents[K]) => boolean)(event, ...args);
    } catch (e) {
      this.log.error(`IPC: '${event}' listener failed`, { error: errorMessage(e), ...(e instanceof Error && e.stack ? { stack: e.stack } : {}) });
    }
  }
}
