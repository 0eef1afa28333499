/**
 * The admin console's UDP adapter: one command per datagram, one reply datagram.
 *
 *   const server = new ConsoleServer({ addresses: ['127.0.0.1', '::1'], port: 19384, handler, logger });
 *   await server.start();   // rejects with ConsoleBindError if an address or the port is unusable
 *   ...
 *   await server.close();
 *
 * Each datagram is parsed (console-commands.ts); a parse error is answered with
 * `error: <message>\nusage: <usage>\n` without calling the handler, anything else with the
 * handler's text. A handler that throws or rejects costs one `error: internal: ...` reply and a
 * log line, never the server. Every source is answered: confinement to the host comes from
 * binding loopback addresses only, which is the daemon's configuration.
 */
import * as dgram from 'node:dgram';
import { isIPv4, isIPv6 } from 'node:net';
import { isUtf8 } from 'node:buffer';
import { CONSOLE_COMMAND_LIST, ConsoleCommand, ConsoleCommandError, parseConsoleCommand } from './console-commands';

/** Largest reply sent, in octets; longer replies are cut at a line boundary. */
export const MAX_CONSOLE_REPLY_BYTES = 65000;

/** Ends a reply that was cut to MAX_CONSOLE_REPLY_BYTES. */
export const CONSOLE_TRUNCATION_NOTE = '... (truncated: a reply holds at most 65,000 octets)\n';

export interface ConsolePeer {
  address: string;
  port: number;
}

/** Executes a parsed command; returns the reply text (a trailing newline is added if missing). */
export type ConsoleHandler = (command: ConsoleCommand, peer: ConsolePeer) => string | Promise<string>;

/** The part of a (winston) logger the console uses. */
export interface ConsoleLogger {
  debug(msg: string, meta?: Record<string, unknown>): void;
  warn(msg: string, meta?: Record<string, unknown>): void;
  error(msg: string, meta?: Record<string, unknown>): void;
}

export interface ConsoleServerOptions {
  /** IP literals to listen on, one socket each (IPv6 ones are IPv6-only). */
  addresses: string[];
  /** UDP port for every address; 0 binds an ephemeral port per address (see boundPorts()). */
  port: number;
  handler: ConsoleHandler;
  logger?: ConsoleLogger;
}

export interface ConsoleStats {
  /** Datagrams received. */
  requests: number;
  /** Datagrams answered with a parse error (the handler was not called). */
  errors: number;
  /** Handler calls that threw, rejected or returned something other than a string. */
  internalErrors: number;
}

/** start() could not bind a socket (EADDRINUSE, EADDRNOTAVAIL, ...); no socket is left open. */
export class ConsoleBindError extends Error {
  override readonly name = 'ConsoleBindError';
  constructor(
    readonly address: string,
    readonly port: number,
    /** The system error code, e.g. 'EADDRINUSE', when there is one. */
    readonly code: string | undefined,
    cause: unknown,
  ) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(`admin console: cannot bind UDP ${formatEndpoint(address, port)}: ${reason}`, { cause });
  }
}

function formatEndpoint(address: string, port: number): string {
  return isIPv6(address) ? `[${address}]:${port}` : `${address}:${port}`;
}

function errorCode(e: unknown): string | undefined {
  if (typeof e !== 'object' || e === null || !('code' in e)) return undefined;
  return typeof e.code === 'string' ? e.code : undefined;
}

function errorMessage(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim() || (e instanceof Error ? e.name : 'unknown error');
}

/** The reply for a parse error. */
export function formatCommandError(e: ConsoleCommandError): string {
  return `error: ${e.message}\nusage: ${e.usage}\n`;
}

/**
 * Ensures a trailing newline and, beyond MAX_CONSOLE_REPLY_BYTES, keeps the whole lines that fit
 * with CONSOLE_TRUNCATION_NOTE after them (a single line longer than that is cut inside the line,
 * on a character boundary).
 */
export function encodeConsoleReply(text: string): Buffer {
  const full = Buffer.from(text.endsWith('\n') ? text : `${text}\n`, 'utf8');
  if (full.length <= MAX_CONSOLE_REPLY_BYTES) return full;
  const note = Buffer.from(CONSOLE_TRUNCATION_NOTE, 'utf8');
  const budget = MAX_CONSOLE_REPLY_BYTES - note.length;
  const lastNewline = full.lastIndexOf(0x0a, budget - 1);
  let head: Buffer;
  if (lastNewline >= 0) {
    head = full.subarray(0, lastNewline + 1);
  } else {
    let cut = budget - 1; // room for the newline added below
    while (cut > 0 && ((full[cut] ?? 0) & 0xc0) === 0x80) cut--; // not inside a UTF-8 sequence
    head = Buffer.concat([full.subarray(0, cut), Buffer.from('\n')]);
  }
  return Buffer.concat([head, note]);
}

type State = 'new' | 'starting' | 'listening' | 'closed';

interface Bound {
  readonly address: string;
  readonly socket: dgram.Socket;
  port: number;
}

export class ConsoleServer {
  private readonly addresses: readonly string[];
  private readonly port: number;
  private readonly handler: ConsoleHandler;
  private readonly logger: ConsoleLogger | undefined;
  private readonly bound: Bound[] = [];
  private state: State = 'new';
  private closing: Promise<void> | undefined;
  private readonly counters: ConsoleStats = { requests: 0, errors: 0, internalErrors: 0 };

  /** Throws a RangeError for an address that is not an IP literal, no address, or a bad port. */
  constructor(options: ConsoleServerOptions) {
    if (options.addresses.length === 0) throw new RangeError('ConsoleServer: no address to listen on');
    for (const a of options.addresses) {
      if (!isIPv4(a) && !isIPv6(a)) throw new RangeError(`ConsoleServer: '${a}' is not an IP address literal`);
    }
    if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) {
      throw new RangeError(`ConsoleServer: bad port ${options.port}`);
    }
    this.addresses = [...options.addresses];
    this.port = options.port;
    this.handler = options.handler;
    this.logger = options.logger;
  }

  /**
   * Binds one socket per address, in order. On a failure closes those already bound and rejects
   * with a ConsoleBindError; the server is then closed (make a new one to retry).
   */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error(`ConsoleServer.start: server is ${this.state === 'closed' ? 'closed' : 'already started'}`);
    this.state = 'starting';
    for (const address of this.addresses) {
      let socket: dgram.Socket;
      try {
        socket = await this.bind(address);
      } catch (e) {
        await this.close();
        throw new ConsoleBindError(address, this.port, errorCode(e), e);
      }
      // close() ran while this bind was pending: it could not see this socket.
      if (this.isClosed()) {
        await closeSocket(socket);
        throw new Error('ConsoleServer.start: closed while starting');
      }
      const entry: Bound = { address, socket, port: socket.address().port };
      this.bound.push(entry);
      socket.on('message', (msg, rinfo) => void this.serve(entry, msg, { address: rinfo.address, port: rinfo.port }));
    }
    this.state = 'listening';
    this.logger?.debug('admin console listening', { endpoints: this.bound.map((b) => formatEndpoint(b.address, b.port)) });
  }

  /** The port bound on each address, in the order of `addresses` (empty before start()). */
  boundPorts(): number[] {
    return this.bound.map((b) => b.port);
  }

  stats(): ConsoleStats {
    return { ...this.counters };
  }

  /** Closes every socket; replies of commands still running are dropped. Idempotent. */
  close(): Promise<void> {
    if (!this.closing) {
      this.state = 'closed';
      const sockets = this.bound.map((b) => b.socket);
      this.closing = Promise.all(sockets.map(closeSocket)).then(() => undefined);
    }
    return this.closing;
  }

  private isClosed(): boolean {
    return this.state === 'closed';
  }

  private bind(address: string): Promise<dgram.Socket> {
    const socket = isIPv4(address) ? dgram.createSocket({ type: 'udp4' }) : dgram.createSocket({ type: 'udp6', ipv6Only: true });
    return new Promise((resolve, reject) => {
      const onError = (e: Error): void => {
        void closeSocket(socket);
        reject(e);
      };
      socket.once('error', onError);
      socket.bind({ address, port: this.port }, () => {
        socket.off('error', onError);
        // After binding, socket errors are reported and the socket kept.
        socket.on('error', (e) => this.logger?.warn('admin console socket error', { address, error: errorMessage(e) }));
        resolve(socket);
      });
    });
  }

  private async serve(entry: Bound, msg: Buffer, peer: ConsolePeer): Promise<void> {
    this.counters.requests++;
    const reply = await this.reply(msg, peer);
    if (this.isClosed()) {
      this.logger?.debug('admin console closed; reply dropped', { peer });
      return;
    }
    const data = encodeConsoleReply(reply);
    try {
      entry.socket.send(data, peer.port, peer.address, (e) => {
        if (e) this.logger?.warn('admin console reply not sent', { peer, bytes: data.length, error: errorMessage(e) });
      });
    } catch (e) {
      this.logger?.warn('admin console reply not sent', { peer, bytes: data.length, error: errorMessage(e) });
    }
  }

  /** The reply text for one datagram; never rejects. */
  private async reply(msg: Buffer, peer: ConsolePeer): Promise<string> {
    const command = isUtf8(msg)
      ? parseConsoleCommand(msg.toString('utf8'))
      : new ConsoleCommandError('datagram is not UTF-8 text', CONSOLE_COMMAND_LIST);
    if (command instanceof ConsoleCommandError) {
      this.counters.errors++;
      this.logger?.debug('admin console: bad command', { peer, error: command.message });
      return formatCommandError(command);
    }
    this.logger?.debug('admin console command', { peer, command });
    try {
      const text: unknown = await this.handler(command, peer);
      if (typeof text !== 'string') throw new TypeError(`handler returned ${text === null ? 'null' : typeof text}, not a string`);
      return text;
    } catch (e) {
      this.counters.internalErrors++;
      const message = errorMessage(e);
      this.logger?.error('admin console: command failed', {
        peer,
        command,
        error: message,
        ...(e instanceof Error && e.stack ? { stack: e.stack } : {}),
      });
      return `error: internal: ${message}\n`;
    }
  }
}

function closeSocket(socket: dgram.Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve(); // already closed
    }
  });
}
