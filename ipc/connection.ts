/**
 * One IPC connection as both ends handle it: the server (reapd) for each accepted socket, the
 * client (shim6d) for each connect. It frames the socket (FramedSocket), says hello and gives
 * the peer handshakeTimeoutMs to answer with its own, checks that hello (IPC_VERSION, the
 * expected daemon), validates every later frame, counts and reports invalid messages and
 * framing errors, and sends. What differs between the two ends (which daemon is which, the
 * validators, what a completed handshake or a closed socket means, some log lines) comes from
 * the owner's IpcEndpoint, shared by all of its connections.
 *
 *   const conn = new IpcConnection(n, socket, endpoint);
 *   conn.sayHello();                  // on accept, or once the socket is connected
 *   conn.send(msg);                   // validated; false if it could not be queued
 *
 * Internal to ipc/: index.ts does not re-export it.
 */
import type { Socket } from 'node:net';
import type { Logger } from '../common/logger';
import { encodeFrame, FramedSocket, IpcFramingError, parseFrameBody } from './framing';
import {
  helloVersion,
  IPC_VERSION,
  IpcDaemon,
  IpcHelloMessage,
  IpcMessage,
  IpcProtocolError,
  ReapdToShimd,
  ShimdToReapd,
  validateReapdToShimd,
  validateShimdToReapd,
} from './messages';

/** The counters a connection keeps up to date in its owner's stats (IpcServerStats, IpcClientStats). */
export interface IpcConnectionCounters {
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

/** Which end is which: who we are, whom we accept, and the validators of each direction. */
export interface IpcRole<In extends IpcMessage, Out extends IpcMessage> {
  /** Our daemon, announced in the hello. */
  readonly self: IpcDaemon;
  /** The daemon whose hello we accept. */
  readonly peer: IpcDaemon;
  /** Validates a received message (throws IpcProtocolError). */
  validateIn(value: unknown): In;
  /** Validates a message before it is sent (throws IpcProtocolError). */
  validateOut(value: unknown): Out;
}

/** The server's role: reapd, talking to shim6d. */
export const REAPD_ROLE: IpcRole<ShimdToReapd, ReapdToShimd> = { self: 'reapd', peer: 'shim6d', validateIn: validateShimdToReapd, validateOut: validateReapdToShimd };

/** The client's role: shim6d, talking to reapd. */
export const SHIM6D_ROLE: IpcRole<ReapdToShimd, ShimdToReapd> = { self: 'shim6d', peer: 'reapd', validateIn: validateReapdToShimd, validateOut: validateShimdToReapd };

/** What a connection reports to its owner: a valid message after the handshake, or an invalid message or framing error. */
export type IpcConnectionEvent<In extends IpcMessage> = ['message', In] | ['invalid', IpcProtocolError | IpcFramingError];

/** One end of the protocol (server or client), as its connections see it. */
export interface IpcEndpoint<In extends IpcMessage, Out extends IpcMessage> extends IpcRole<In, Out> {
  /** Our pid, announced in the hello. */
  readonly pid: number;
  readonly log: Logger;
  /** How long the peer may take to send its hello after sayHello(). */
  readonly handshakeTimeoutMs: number;
  /** The owner's stats, updated in place. */
  readonly counters: IpcConnectionCounters;
  /** The reason given to a peer whose hello names another daemon than `peer`. */
  wrongDaemon(daemon: IpcDaemon): string;
  /** The connection is about to send an `error` and close: log it. */
  refusing(conn: IpcConnection<In, Out>, reason: string): void;
  /** The peer's first frame is an `error`: log it and end the connection. */
  refused(conn: IpcConnection<In, Out>, message: string): void;
  /** The peer's hello was accepted (conn.hello is set, counted in messagesIn). */
  established(conn: IpcConnection<In, Out>, hello: IpcHelloMessage): void;
  /** Emits to the owner's listeners: a valid message after the handshake (counted in messagesIn), an invalid message or a framing error (counted and logged). */
  emit(...event: IpcConnectionEvent<In>): void;
  /** The socket closed (once); the handshake timer is already cleared. */
  closed(conn: IpcConnection<In, Out>, reason: string): void;
}

/** The handshakeTimeoutMs of an end's options, or its default (5000 ms); a RangeError naming the end if it is not positive. */
export function handshakeTimeout(end: string, option: number | undefined): number {
  const ms = option ?? 5000;
  if (!(ms > 0)) throw new RangeError(`${end}: bad handshakeTimeoutMs ${ms}`);
  return ms;
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** An emitter's events as [name, ...arguments] tuples. */
export type EventTuple<E extends Record<keyof E, unknown[]>> = { [K in keyof E]: [K, ...E[K]] }[keyof E];

/** Runs a listener call (an emit); a listener that throws costs a log line, never the connection. */
export function callListener(log: Logger, event: string, call: () => void): void {
  try {
    call();
  } catch (e) {
    log.error(`IPC: '${event}' listener failed`, { error: errorMessage(e), ...(e instanceof Error && e.stack ? { stack: e.stack } : {}) });
  }
}

export class IpcConnection<In extends IpcMessage, Out extends IpcMessage> {
  private readonly framed: FramedSocket;
  private peerHello: IpcHelloMessage | undefined;
  private timer: NodeJS.Timeout | undefined;

  /** @param n the connection's number, in the logs */
  constructor(
    readonly n: number,
    socket: Socket,
    private readonly endpoint: IpcEndpoint<In, Out>,
  ) {
    this.framed = new FramedSocket(socket, {
      frame: (body) => this.receive(body),
      framingError: (e) => {
        endpoint.counters.framingErrors++;
        endpoint.log.warn('IPC: framing error, connection closed', { connection: n, error: e.message });
        endpoint.emit('invalid', e);
      },
      close: (reason) => {
        this.clearTimer();
        endpoint.closed(this, reason);
      },
    });
  }

  /** The peer's hello, once the handshake is complete. */
  get hello(): IpcHelloMessage | undefined {
    return this.peerHello;
  }

  /** True once the socket is closed or being closed by us. */
  get isClosing(): boolean {
    return this.framed.isClosing;
  }

  /** Resolves when the socket has closed. */
  closed(): Promise<void> {
    return this.framed.closed();
  }

  /** Sends our hello and starts the handshake timer. */
  sayHello(): void {
    const { handshakeTimeoutMs } = this.endpoint;
    this.timer = setTimeout(() => this.refuse(`no hello within ${handshakeTimeoutMs} ms`), handshakeTimeoutMs);
    this.timer.unref();
    this.write({ type: 'hello', version: IPC_VERSION, daemon: this.endpoint.self, pid: this.endpoint.pid });
  }

  /** Validates and sends a message. False if it does not validate (logged as an error) or could not be queued; never throws. */
  send(msg: Out): boolean {
    try {
      this.endpoint.validateOut(msg);
    } catch (e) {
      this.endpoint.log.error('IPC: not sending an invalid message', { type: msg.type, error: errorMessage(e) });
      return false;
    }
    return this.write(msg);
  }

  /** Closes after what is queued (FramedSocket.end). */
  end(reason: string): void {
    this.framed.end(reason);
  }

  /** Closes at once. */
  destroy(reason: string): void {
    this.clearTimer();
    this.framed.destroy(reason);
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private write(msg: IpcMessage): boolean {
    const { counters, log } = this.endpoint;
    let frame: Buffer;
    try {
      frame = encodeFrame(msg);
    } catch (e) {
      log.error('IPC: message too large to send', { type: msg.type, error: errorMessage(e) });
      return false;
    }
    const result = this.framed.write(frame);
    switch (result) {
      case 'written':
        counters.messagesOut++;
        return true;
      case 'backpressure':
        counters.messagesOut++;
        counters.backpressure++;
        return true;
      case 'overflow':
        log.warn(`IPC: ${this.endpoint.peer} is not reading; connection closed`, { connection: this.n });
        return false;
      case 'closed':
        return false;
    }
  }

  /** Sends an `error` and closes. */
  private refuse(reason: string): void {
    this.clearTimer();
    if (this.framed.isClosing) return;
    this.endpoint.refusing(this, reason);
    this.write({ type: 'error', message: reason.slice(0, 256) });
    this.framed.end(reason);
  }

  private invalid(error: IpcProtocolError): void {
    this.endpoint.counters.invalid++;
    this.endpoint.log.warn(`IPC: invalid message from ${this.endpoint.peer}`, { connection: this.n, path: error.path, error: error.detail });
    this.endpoint.emit('invalid', error);
  }

  private receive(body: Buffer): void {
    if (this.peerHello === undefined) {
      this.handshake(body);
      return;
    }
    let msg: In;
    try {
      msg = this.endpoint.validateIn(parseFrameBody(body));
    } catch (e) {
      if (!(e instanceof IpcProtocolError)) throw e;
      this.invalid(e);
      return;
    }
    const m: IpcMessage = msg;
    if (m.type === 'hello') {
      this.invalid(new IpcProtocolError('type', 'a second hello on the connection'));
      return;
    }
    this.endpoint.counters.messagesIn++;
    if (m.type === 'error') this.endpoint.log.warn(`IPC: ${this.endpoint.peer} reports an error`, { message: m.message });
    this.endpoint.emit('message', msg);
  }

  private handshake(body: Buffer): void {
    const { self, peer } = this.endpoint;
    let msg: IpcMessage;
    try {
      const value = parseFrameBody(body);
      const version = helloVersion(value);
      if (version !== undefined && version !== IPC_VERSION) {
        this.refuse(`IPC version ${version} is not supported: this ${self} speaks version ${IPC_VERSION}`);
        return;
      }
      msg = this.endpoint.validateIn(value);
    } catch (e) {
      if (!(e instanceof IpcProtocolError)) throw e;
      this.invalid(e);
      this.refuse(`expected a hello: ${e.message}`);
      return;
    }
    if (msg.type === 'error') {
      this.endpoint.refused(this, msg.message);
      return;
    }
    if (msg.type !== 'hello') {
      this.invalid(new IpcProtocolError('type', `expected 'hello' first, got '${msg.type}'`));
      this.refuse(`expected a hello first, got '${msg.type}'`);
      return;
    }
    if (msg.daemon !== peer) {
      this.refuse(this.endpoint.wrongDaemon(msg.daemon));
      return;
    }
    this.clearTimer();
    this.peerHello = msg;
    this.endpoint.counters.messagesIn++;
    this.endpoint.established(this, msg);
  }
}
