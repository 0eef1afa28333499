/**
 * reapd's end of the IPC socket: listens on a Unix stream socket (mode 0600, root only) and
 * talks to one shim6d at a time.
 *
 *   const server = new IpcServer({ path: config.ipcSocket, logger, pid: process.pid });
 *   server.on('connected', (hello) => ...);           // shim6d said hello; a sync follows
 *   server.on('message', (msg) => ...);               // a validated ShimdToReapd
 *   server.on('disconnected', (reason) => ...);
 *   server.on('invalid', (error) => ...);             // IpcProtocolError | IpcFramingError
 *   await server.start();                             // IpcAddressInUseError if a server answers there
 *   server.send({ type: 'pair', id: 1, local: a2, peer: b2 });   // false when no shim6d is connected
 *   await server.close();                             // and the socket file is removed
 *
 * Handshake: the server sends its hello on accept; the peer's first frame must be a hello of
 * IPC_VERSION from shim6d, else the server sends an `error` and closes. A connection that
 * completes the handshake replaces the connected one (a restarted shim6d wins); a connection
 * that never does is closed after handshakeTimeoutMs, without disturbing the connected one.
 */
import { EventEmitter } from 'node:events';
import { lstatSync, statSync, unlinkSync, chmodSync } from 'node:fs';
import * as net from 'node:net';
import { makeParentDir } from '../common/fs';
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

export interface IpcServerOptions {
  /** The socket file (config.ipcSocket). */
  path: string;
  logger: Logger;
  /** Our pid, announced in the hello. */
  pid: number;
  /** How long a new connection may take to send its hello (default 5000 ms). */
  handshakeTimeoutMs?: number;
}

export interface IpcServerStats {
  /** Connections accepted. */
  connections: number;
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

export interface IpcServerEvents {
  connected: [hello: IpcHelloMessage];
  message: [message: ShimdToReapd];
  disconnected: [reason: string];
  invalid: [error: IpcProtocolError | IpcFramingError];
}

/** Another server answers on the socket path: another reapd runs with this configuration. */
export class IpcAddressInUseError extends Error {
  override readonly name = 'IpcAddressInUseError';
  constructor(readonly path: string) {
    super(`IPC socket ${path} is in use by a running server (is another reapd running?)`);
  }
}

interface Connection {
  readonly n: number;
  readonly framed: FramedSocket;
  hello: IpcHelloMessage | undefined;
  timer: NodeJS.Timeout | undefined;
}

type State = 'new' | 'starting' | 'listening' | 'closed';

/** How long start() waits for an existing socket to answer. */
const PROBE_TIMEOUT_MS = 1000;

function errorCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export class IpcServer extends EventEmitter<IpcServerEvents> {
  private readonly path: string;
  private readonly log: Logger;
  private readonly pid: number;
  private readonly handshakeTimeoutMs: number;
  private state: State = 'new';
  private server: net.Server | undefined;
  /** The inode of the socket file we created, so close() never removes another server's. */
  private socketIno: number | undefined;
  private peer: Connection | undefined;
  private readonly pending = new Set<Connection>();
  private nextConnection = 1;
  private starting: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private readonly counters: IpcServerStats = { connections: 0, messagesIn: 0, messagesOut: 0, invalid: 0, framingErrors: 0, backpressure: 0 };

  constructor(options: IpcServerOptions) {
    super();
    this.path = options.path;
    this.log = options.logger;
    this.pid = options.pid;
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? 5000;
    if (!(this.handshakeTimeoutMs > 0)) throw new RangeError(`IpcServer: bad handshakeTimeoutMs ${this.handshakeTimeoutMs}`);
  }

  /** A copy of the counters. */
  get stats(): IpcServerStats {
    return { ...this.counters };
  }

  /** True while a shim6d is connected (its hello accepted, the connection not being closed). */
  get connected(): boolean {
    return this.peer !== undefined && !this.peer.framed.isClosing;
  }

  /** The connected shim6d's hello. */
  get peerHello(): IpcHelloMessage | undefined {
    return this.peer?.hello;
  }

  /**
   * Creates the socket's directory (0700) if missing, replaces a stale socket file, listens,
   * and makes the socket 0600. Rejects with IpcAddressInUseError when a server answers on the
   * path, and with an Error when the path is something other than a socket.
   */
  start(): Promise<void> {
    if (this.state !== 'new') return Promise.reject(new Error(`IpcServer.start: server is ${this.state === 'closed' ? 'closed' : 'already started'}`));
    this.state = 'starting';
    this.starting = this.listenOnPath();
    return this.starting;
  }

  private async listenOnPath(): Promise<void> {
    try {
      makeParentDir(this.path, 0o700);
      await this.removeStaleSocket();
      const server = net.createServer({ allowHalfOpen: false }, (socket) => this.accept(socket));
      await this.listen(server);
      this.server = server;
      this.socketIno = statSync(this.path).ino;
      chmodSync(this.path, 0o600);
    } catch (e) {
      if (!this.isClosed()) this.state = 'new';
      if (this.server) {
        await closeServer(this.server);
        this.server = undefined;
        this.removeOwnSocketFile();
      }
      throw e;
    }
    if (this.isClosed()) {
      // close() came while we were starting: it could not see the socket, so undo it here.
      await closeServer(this.server);
      this.removeOwnSocketFile();
      throw new Error('IpcServer.start: closed while starting');
    }
    this.state = 'listening';
    this.server.on('error', (e) => this.log.warn('IPC server error', { path: this.path, error: e.message }));
    this.log.debug('IPC server listening', { path: this.path });
  }

  /**
   * Sends a message to the connected shim6d. False when none is connected, the message does
   * not validate (a bug: logged as an error) or it could not be queued; never throws.
   */
  send(msg: ReapdToShimd): boolean {
    const peer = this.peer;
    if (!peer) return false;
    try {
      validateReapdToShimd(msg);
    } catch (e) {
      this.log.error('IPC: not sending an invalid message', { type: msg.type, error: errorMessage(e) });
      return false;
    }
    return this.write(peer, msg);
  }

  /** Closes the connections and the listening socket, and removes the socket file. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private isClosed(): boolean {
    return this.state === 'closed';
  }

  private async shutdown(): Promise<void> {
    const wasStarting = this.state === 'starting';
    this.state = 'closed';
    const sockets: Promise<void>[] = [];
    for (const conn of [...this.pending, ...(this.peer ? [this.peer] : [])]) {
      if (conn.timer) clearTimeout(conn.timer);
      conn.framed.destroy('IPC server closing');
      sockets.push(conn.framed.closed());
    }
    if (this.server) await closeServer(this.server);
    await Promise.all(sockets);
    if (wasStarting) {
      // start() is still running: it sees the state, and undoes what it built.
      await this.starting?.catch(() => undefined);
      return;
    }
    this.removeOwnSocketFile();
  }

  private removeOwnSocketFile(): void {
    if (this.socketIno === undefined) return;
    try {
      if (statSync(this.path).ino === this.socketIno) unlinkSync(this.path);
    } catch (e) {
      if (errorCode(e) !== 'ENOENT') this.log.warn('IPC: cannot remove the socket file', { path: this.path, error: errorMessage(e) });
    }
    this.socketIno = undefined;
  }

  /** Removes the socket file if nothing answers on it; throws IpcAddressInUseError if something does. */
  private async removeStaleSocket(): Promise<void> {
    let isSocket: boolean;
    try {
      isSocket = lstatSync(this.path).isSocket();
    } catch (e) {
      if (errorCode(e) === 'ENOENT') return;
      throw e;
    }
    if (!isSocket) throw new Error(`IPC socket path ${this.path} exists and is not a socket`);
    if (await probe(this.path)) throw new IpcAddressInUseError(this.path);
    try {
      unlinkSync(this.path);
      this.log.info('IPC: removed a stale socket file', { path: this.path });
    } catch (e) {
      if (errorCode(e) !== 'ENOENT') throw e;
    }
  }

  private listen(server: net.Server): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onError = (e: Error): void => reject(errorCode(e) === 'EADDRINUSE' ? new IpcAddressInUseError(this.path) : e);
      server.once('error', onError);
      // Node binds a Unix socket synchronously inside listen(): with this umask it is created
      // 0600, so no other user can connect in the moment before chmod.
      const umask = process.umask(0o177);
      try {
        server.listen({ path: this.path }, () => {
          server.off('error', onError);
          resolve();
        });
      } finally {
        process.umask(umask);
      }
    });
  }

  private accept(socket: net.Socket): void {
    if (this.state !== 'listening') {
      socket.destroy();
      return;
    }
    this.counters.connections++;
    const n = this.nextConnection++;
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
    this.pending.add(conn);
    conn.timer = setTimeout(() => this.refuse(conn, `no hello within ${this.handshakeTimeoutMs} ms`), this.handshakeTimeoutMs);
    conn.timer.unref();
    this.log.debug('IPC: connection accepted', { connection: n });
    this.write(conn, { type: 'hello', version: IPC_VERSION, daemon: 'reapd', pid: this.pid });
  }

  private write(conn: Connection, msg: ReapdToShimd): boolean {
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
        this.log.warn('IPC: shim6d is not reading; connection closed', { connection: conn.n });
        return false;
      case 'closed':
        return false;
    }
  }

  /** Sends an `error` to a connection and closes it. */
  private refuse(conn: Connection, reason: string): void {
    if (conn.timer) clearTimeout(conn.timer);
    if (conn.framed.isClosing) return;
    this.log.warn('IPC: connection refused', { connection: conn.n, reason });
    this.write(conn, { type: 'error', message: reason.slice(0, 256) });
    conn.framed.end(reason);
  }

  private invalid(conn: Connection, error: IpcProtocolError): void {
    this.counters.invalid++;
    this.log.warn('IPC: invalid message from shim6d', { connection: conn.n, path: error.path, error: error.detail });
    this.emitSafely('invalid', error);
  }

  private receive(conn: Connection, body: Buffer): void {
    if (conn.hello === undefined) {
      this.handshake(conn, body);
      return;
    }
    let msg: ShimdToReapd;
    try {
      msg = validateShimdToReapd(parseFrameBody(body));
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
    if (msg.type === 'error') this.log.warn('IPC: shim6d reports an error', { message: msg.message });
    this.emitSafely('message', msg);
  }

  private handshake(conn: Connection, body: Buffer): void {
    let msg: ShimdToReapd;
    try {
      const value = parseFrameBody(body);
      const version = helloVersion(value);
      if (version !== undefined && version !== IPC_VERSION) {
        this.refuse(conn, `IPC version ${version} is not supported: this reapd speaks version ${IPC_VERSION}`);
        return;
      }
      msg = validateShimdToReapd(value);
    } catch (e) {
      if (!(e instanceof IpcProtocolError)) throw e;
      this.invalid(conn, e);
      this.refuse(conn, `expected a hello: ${e.message}`);
      return;
    }
    if (msg.type === 'error') {
      this.log.warn('IPC: the peer refused the connection', { connection: conn.n, message: msg.message });
      conn.framed.end('refused by the peer');
      return;
    }
    if (msg.type !== 'hello') {
      this.invalid(conn, new IpcProtocolError('type', `expected 'hello' first, got '${msg.type}'`));
      this.refuse(conn, `expected a hello first, got '${msg.type}'`);
      return;
    }
    if (msg.daemon !== 'shim6d') {
      this.refuse(conn, `this is reapd's IPC socket: expected shim6d, got ${msg.daemon}`);
      return;
    }
    if (conn.timer) clearTimeout(conn.timer);
    conn.timer = undefined;
    this.pending.delete(conn);
    this.counters.messagesIn++;
    const old = this.peer;
    if (old) {
      this.peer = undefined;
      this.log.info('IPC: a new shim6d connection replaces the previous one', { previous: old.hello?.pid, pid: msg.pid });
      old.framed.destroy('replaced by a new connection');
      this.emitSafely('disconnected', 'replaced by a new connection');
    }
    conn.hello = msg;
    this.peer = conn;
    this.log.info('IPC: shim6d connected', { pid: msg.pid, connection: conn.n });
    this.emitSafely('connected', msg);
  }

  private closed(conn: Connection, reason: string): void {
    if (conn.timer) clearTimeout(conn.timer);
    this.pending.delete(conn);
    if (this.peer !== conn) return;
    this.peer = undefined;
    this.log.info('IPC: shim6d disconnected', { pid: conn.hello?.pid, reason });
    this.emitSafely('disconnected', reason);
  }

  /** Emits; a listener that throws costs a log line, never the connection or the server. */
  private emitSafely<K extends keyof IpcServerEvents>(event: K, ...args: IpcServerEvents[K]): void {
    try {
      (this.emit as (event: K, ...args: IpcServerEvents[K]) => boolean)(event, ...args);
    } catch (e) {
      this.log.error(`IPC: '${event}' listener failed`, { error: errorMessage(e), ...(e instanceof Error && e.stack ? { stack: e.stack } : {}) });
    }
  }
}

/** True if a server accepts a connection on `path` (false: refused, or the file went away). */
function probe(path: string): Promise<boolean> {
  return new Promise<boolean>((resolve, reject) => {
    const socket = net.connect({ path });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(true); // a socket that neither accepts nor refuses: its backlog is full
    }, PROBE_TIMEOUT_MS);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(true);
    });
    socket.once('error', (e) => {
      clearTimeout(timer);
      socket.destroy();
      const code = errorCode(e);
      if (code === 'ECONNREFUSED' || code === 'ENOENT') resolve(false);
      else if (code === 'EAGAIN') resolve(true);
      else reject(e);
    });
  });
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
  });
}
