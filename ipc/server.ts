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
import { callListener, EventTuple, handshakeTimeout, errorMessage, IpcConnection, IpcConnectionCounters, IpcEndpoint, REAPD_ROLE } from './connection';
import type { IpcFramingError } from './framing';
import { IpcHelloMessage, IpcProtocolError, ReapdToShimd, ShimdToReapd } from './messages';

export interface IpcServerOptions {
  /** The socket file (config.ipcSocket). */
  path: string;
  logger: Logger;
  /** Our pid, announced in the hello. */
  pid: number;
  /** How long a new connection may take to send its hello (default 5000 ms). */
  handshakeTimeoutMs?: number;
}

/** The counters (`stats`): IpcConnectionCounters and these. */
export interface IpcServerStats extends IpcConnectionCounters {
  /** Connections accepted. */
  connections: number;
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

type Connection = IpcConnection<ShimdToReapd, ReapdToShimd>;

type State = 'new' | 'starting' | 'listening' | 'closed';

/** How long start() waits for an existing socket to answer. */
const PROBE_TIMEOUT_MS = 1000;

function errorCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
}

export class IpcServer extends EventEmitter<IpcServerEvents> {
  private readonly path: string;
  private readonly log: Logger;
  private readonly endpoint: IpcEndpoint<ShimdToReapd, ReapdToShimd>;
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
    this.endpoint = {
      ...REAPD_ROLE,
      handshakeTimeoutMs: handshakeTimeout('IpcServer', options.handshakeTimeoutMs),
      pid: options.pid,
      log: this.log,
      counters: this.counters,
      wrongDaemon: (daemon) => `this is reapd's IPC socket: expected shim6d, got ${daemon}`,
      refusing: (conn, reason) => this.log.warn('IPC: connection refused', { connection: conn.n, reason }),
      refused: (conn, message) => {
        this.log.warn('IPC: the peer refused the connection', { connection: conn.n, message });
        conn.end('refused by the peer');
      },
      established: (conn, hello) => this.established(conn, hello),
      emit: (...event) => this.emitSafely(...event),
      closed: (conn, reason) => this.closed(conn, reason),
    };
  }

  /** A copy of the counters. */
  get stats(): IpcServerStats {
    return { ...this.counters };
  }

  /** True while a shim6d is connected (its hello accepted, the connection not being closed). */
  get connected(): boolean {
    return this.peer !== undefined && !this.peer.isClosing;
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
    return peer.send(msg);
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
      conn.destroy('IPC server closing');
      sockets.push(conn.closed());
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
    const conn: Connection = new IpcConnection(n, socket, this.endpoint);
    this.pending.add(conn);
    this.log.debug('IPC: connection accepted', { connection: n });
    conn.sayHello();
  }

  /** shim6d's hello was accepted: the connection replaces the connected one, if any. */
  private established(conn: Connection, hello: IpcHelloMessage): void {
    this.pending.delete(conn);
    const old = this.peer;
    if (old) {
      this.peer = undefined;
      this.log.info('IPC: a new shim6d connection replaces the previous one', { previous: old.hello?.pid, pid: hello.pid });
      old.destroy('replaced by a new connection');
      this.emitSafely('disconnected', 'replaced by a new connection');
    }
    this.peer = conn;
    this.log.info('IPC: shim6d connected', { pid: hello.pid, connection: conn.n });
    this.emitSafely('connected', hello);
  }

  private closed(conn: Connection, reason: string): void {
    this.pending.delete(conn);
    if (this.peer !== conn) return;
    this.peer = undefined;
    this.log.info('IPC: shim6d disconnected', { pid: conn.hello?.pid, reason });
    this.emitSafely('disconnected', reason);
  }

  /** Emits; a listener that throws costs a log line, never the connection or the server. */
  private emitSafely(...event: EventTuple<IpcServerEvents>): void {
    callListener(this.log, event[0], () => (this.emit as (...event: EventTuple<IpcServerEvents>) => boolean)(...event));
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
