/**
 * How IPC messages travel on the stream: each is one frame, a 4-octet big-endian length and
 * that many octets of UTF-8 JSON (one message).
 *
 *   socket.write(encodeFrame({ type: 'hello', version: IPC_VERSION, daemon: 'reapd', pid: process.pid }));
 *   const decoder = new FrameDecoder();
 *   socket.on('data', (chunk) => { for (const body of decoder.push(chunk)) handle(parseFrameBody(body)); });
 *
 * FrameDecoder tolerates any chunking and throws IpcFramingError on a length of zero or over
 * MAX_FRAME: the stream has lost its framing and the connection must be closed (the frames
 * before the bad length are in the error's `frames`). A body that is
 * not UTF-8 JSON is an IpcProtocolError (parseFrameBody): the stream is still framed, and the
 * connection can go on. FramedSocket puts both on a net.Socket for the server and the client,
 * with a bound on the octets waiting to be written.
 */
import type { Socket } from 'node:net';
import { IpcMessage, IpcProtocolError } from './messages';

/** Octets of the length prefix. */
export const FRAME_HEADER_BYTES = 4;

/**
 * Largest frame body, in octets: 64 MiB. A `sync` of 100000 contexts is one frame; with two
 * locators per side that is about 35 MiB of JSON, 45 MiB with 39-character addresses, 58 MiB
 * with four such locators per side (ipc/README.md). The decoder never allocates ahead of the
 * octets received, so the bound costs nothing until a peer actually sends that much.
 */
export const MAX_FRAME = 64 * 1024 * 1024;

/**
 * Most octets a FramedSocket lets wait in Node's write buffer (beyond the kernel's socket
 * buffer) before it gives up on the peer and closes the connection: a peer that does not read
 * would otherwise grow our memory without bound. Two maximal frames.
 */
export const MAX_PENDING_WRITE_BYTES = 2 * MAX_FRAME;

/** The stream is no longer framed (or a frame cannot be built): the connection must be closed. */
export class IpcFramingError extends Error {
  override readonly name = 'IpcFramingError';

  /**
   * @param kind 'empty': a length of zero; 'oversize': a length over MAX_FRAME
   * @param length the length read (or of the body that was to be sent)
   * @param frames the complete frame bodies that the failing push() found before the bad
   *   length: they were framed correctly, and their owner may still handle them
   */
  constructor(
    readonly kind: 'empty' | 'oversize',
    readonly length: number,
    readonly frames: readonly Buffer[] = [],
  ) {
    super(kind === 'empty' ? 'IPC frame of length 0' : `IPC frame of ${length} octets, more than the ${MAX_FRAME} allowed`);
  }
}

/** The frame of one message; IpcFramingError('oversize') if its JSON exceeds MAX_FRAME. */
export function encodeFrame(msg: IpcMessage): Buffer {
  const json = JSON.stringify(msg);
  const length = Buffer.byteLength(json, 'utf8');
  if (length > MAX_FRAME) throw new IpcFramingError('oversize', length);
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + length);
  frame.writeUInt32BE(length, 0);
  frame.write(json, FRAME_HEADER_BYTES, 'utf8');
  return frame;
}

/** Splits a byte stream into frame bodies. */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Length of the frame whose header has been read, until its body is complete. */
  private expected: number | undefined;
  private failure: IpcFramingError | undefined;

  /**
   * Adds received octets; returns the bodies of the frames they complete, in order. Throws
   * IpcFramingError on a bad length, with the bodies this chunk completed before it in its
   * `frames`, and again (without frames) on every later call.
   */
  push(chunk: Buffer): Buffer[] {
    if (this.failure) throw new IpcFramingError(this.failure.kind, this.failure.length);
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const bodies: Buffer[] = [];
    for (;;) {
      if (this.expected === undefined) {
        if (this.buffered < FRAME_HEADER_BYTES) break;
        const length = this.take(FRAME_HEADER_BYTES).readUInt32BE(0);
        if (length === 0 || length > MAX_FRAME) {
          this.failure = new IpcFramingError(length === 0 ? 'empty' : 'oversize', length, bodies);
          this.chunks = [];
          this.buffered = 0;
          throw this.failure;
        }
        this.expected = length;
      }
      if (this.buffered < this.expected) break;
      bodies.push(this.take(this.expected));
      this.expected = undefined;
    }
    return bodies;
  }

  /** Octets held for an incomplete frame. */
  get pendingBytes(): number {
    return this.buffered;
  }

  /** Removes and returns the first n buffered octets (n <= buffered). */
  private take(n: number): Buffer {
    const first = this.chunks[0] as Buffer;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const c = this.chunks[0] as Buffer;
        const k = Math.min(c.length, n - filled);
        c.copy(out, filled, 0, k);
        filled += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.buffered -= n;
    return out;
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The JSON value of a frame body (not yet validated); IpcProtocolError at path '' if it is not UTF-8 JSON. */
export function parseFrameBody(body: Buffer): unknown {
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    throw new IpcProtocolError('', 'frame body is not UTF-8 text');
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new IpcProtocolError('', `frame body is not JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** What FramedSocket reports to its owner. */
export interface FramedSocketHandlers {
  /** One complete frame body. Not called once the socket is closing. */
  frame(body: Buffer): void;
  /** The stream lost its framing; the socket is being destroyed (close follows). */
  framingError(error: IpcFramingError): void;
  /** The socket is closed (once): by the peer, an error, or destroy()/end(). */
  close(reason: string): void;
}

/** What became of a frame given to FramedSocket.write. */
export type FrameWriteResult =
  /** Handed to the kernel or to Node's buffer below its high-water mark. */
  | 'written'
  /** Queued in Node's buffer above its high-water mark (socket.write returned false). */
  | 'backpressure'
  /** Not sent: the socket is closed or closing. */
  | 'closed'
  /** Not sent: more than MAX_PENDING_WRITE_BYTES would wait; the connection is being closed. */
  | 'overflow';

/** How long end() waits for the peer to close before destroying the socket. */
const END_GRACE_MS = 1000;

/** Frames on a connected (or connecting) stream socket. */
export class FramedSocket {
  private readonly decoder = new FrameDecoder();
  private closing = false;
  private reason: string | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  private readonly closedPromise: Promise<void>;

  constructor(
    readonly socket: Socket,
    private readonly handlers: FramedSocketHandlers,
  ) {
    let resolveClosed!: () => void;
    this.closedPromise = new Promise<void>((resolve) => (resolveClosed = resolve));
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (e: Error) => {
      this.reason ??= e.message;
    });
    socket.on('end', () => {
      this.reason ??= 'closed by the peer';
    });
    socket.on('close', () => {
      this.closing = true;
      if (this.graceTimer) clearTimeout(this.graceTimer);
      resolveClosed();
      this.handlers.close(this.reason ?? 'closed');
    });
  }

  /** True once the socket is closed or being closed by us. */
  get isClosing(): boolean {
    return this.closing || this.socket.destroyed;
  }

  /** Resolves when the socket has closed. */
  closed(): Promise<void> {
    return this.closedPromise;
  }

  /** Queues one frame (from encodeFrame). Never throws. */
  write(frame: Buffer): FrameWriteResult {
    if (this.isClosing || !this.socket.writable) return 'closed';
    const waiting = this.socket.writableLength;
    if (waiting + frame.length > MAX_PENDING_WRITE_BYTES) {
      this.destroy(`peer not reading: ${waiting} octets already waiting to be written`);
      return 'overflow';
    }
    try {
      return this.socket.write(frame) ? 'written' : 'backpressure';
    } catch {
      return 'closed';
    }
  }

  /** Sends a last frame (if any), then closes; destroys the socket if the peer has not closed within a second. */
  end(reason: string, lastFrame?: Buffer): void {
    if (this.isClosing) return;
    if (lastFrame) this.write(lastFrame);
    this.closing = true;
    this.reason ??= reason;
    this.socket.end();
    this.graceTimer = setTimeout(() => this.socket.destroy(), END_GRACE_MS);
    this.graceTimer.unref();
  }

  /** Closes at once, dropping what is not yet written. */
  destroy(reason: string): void {
    this.closing = true;
    this.reason ??= reason;
    this.socket.destroy();
  }

  private receive(chunk: Buffer): void {
    if (this.isClosing) return;
    let bodies: readonly Buffer[];
    let error: IpcFramingError | undefined;
    try {
      bodies = this.decoder.push(chunk);
    } catch (e) {
      if (!(e instanceof IpcFramingError)) throw e;
      error = e;
      bodies = e.frames;
    }
    for (const body of bodies) {
      if (this.isClosing) return;
      this.handlers.frame(body);
    }
    if (error && !this.isClosing) {
      this.destroy(error.message);
      this.handlers.framingError(error);
    }
  }
}
