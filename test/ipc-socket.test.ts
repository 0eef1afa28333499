/**
 * ipc/server and ipc/client over real Unix sockets in a mkdtemp directory: the handshake both
 * ways, messages both ways, the socket's permissions, a stale socket file replaced and a live
 * one refused, reconnection after a server restart, a second client replacing the first,
 * invalid messages counted without losing the connection, framing errors closing it (and the
 * client coming back), version mismatches refused with an `error`, backpressure counted, and
 * the client's timers not keeping a process alive.
 * The far end is sometimes a raw socket speaking frames by hand, to send what our own code
 * never would.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { lstatSync, mkdtempSync, rmSync, statSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { nullLogger } from '../common/logger';
import { IpcClient, IpcClientOptions } from '../ipc/client';
import { FrameDecoder, IpcFramingError, parseFrameBody } from '../ipc/framing';
import { IPC_VERSION, IpcContext, IpcHelloMessage, IpcProtocolError, ReapdToShimd, ShimdToReapd } from '../ipc/messages';
import { IpcAddressInUseError, IpcServer, IpcServerOptions } from '../ipc/server';
import { waitFor } from '../scripts/lib/wait';

const A1 = '2001:db8:a1::a';
const A2 = '2001:db8:a2::a';
const B1 = '2001:db8:b1::b';
const B2 = '2001:db8:b2::b';

const SERVER_PID = 1111;
const CLIENT_PID = 2222;

function sampleContext(id: number): IpcContext {
  return {
    id,
    localUlid: A1,
    peerUlid: B1,
    localContextTag: id,
    peerContextTag: 1_000_000 + id,
    localLocators: [A1, A2],
    peerLocators: [B1, B2],
    current: { local: A1, peer: B1 },
  };
}

/** A frame of any JSON value (our encoder only takes valid messages). */
function rawFrame(value: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(value), 'utf8');
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length, 0);
  return Buffer.concat([header, body]);
}

const GARBAGE_LENGTH = Buffer.from([0xff, 0xff, 0xff, 0xff]);

/** One end of a connection speaking frames by hand. */
class RawPeer {
  readonly received: unknown[] = [];
  closed = false;
  private readonly decoder = new FrameDecoder();

  constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const body of this.decoder.push(chunk)) this.received.push(parseFrameBody(body));
    });
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => undefined);
  }

  static connect(path: string): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ path });
      const peer = new RawPeer(socket);
      socket.once('connect', () => resolve(peer));
      socket.once('error', reject);
    });
  }

  send(value: unknown): void {
    this.socket.write(rawFrame(value));
  }

  types(): unknown[] {
    return this.received.map((m) => (m as { type?: unknown }).type);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

interface Recorder<M> {
  connected: IpcHelloMessage[];
  messages: M[];
  disconnected: string[];
  invalid: Array<IpcProtocolError | IpcFramingError>;
}

function recordServer(s: IpcServer): Recorder<ShimdToReapd> {
  const r: Recorder<ShimdToReapd> = { connected: [], messages: [], disconnected: [], invalid: [] };
  s.on('connected', (h) => r.connected.push(h));
  s.on('message', (m) => r.messages.push(m));
  s.on('disconnected', (reason) => r.disconnected.push(reason));
  s.on('invalid', (e) => r.invalid.push(e));
  return r;
}

function recordClient(c: IpcClient): Recorder<ReapdToShimd> {
  const r: Recorder<ReapdToShimd> = { connected: [], messages: [], disconnected: [], invalid: [] };
  c.on('connected', (h) => r.connected.push(h));
  c.on('message', (m) => r.messages.push(m));
  c.on('disconnected', (reason) => r.disconnected.push(reason));
  c.on('invalid', (e) => r.invalid.push(e));
  return r;
}

describe('ipc over a Unix socket', function () {
  this.timeout(20000);

  let dir: string;
  let n = 0;
  const cleanups: Array<() => unknown> = [];

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'shim6-ipc-'));
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** A fresh socket path whose directory does not exist yet. */
  function socketPath(): string {
    n++;
    return join(dir, `case${n}`, 'run', 'ipc.sock');
  }

  function newServer(path: string, options: Partial<IpcServerOptions> = {}): IpcServer {
    const s = new IpcServer({ path, logger: nullLogger, pid: SERVER_PID, ...options });
    cleanups.push(() => s.close());
    return s;
  }

  function newClient(path: string, options: Partial<IpcClientOptions> = {}): IpcClient {
    const c = new IpcClient({ path, logger: nullLogger, pid: CLIENT_PID, reconnect: { initialMs: 20, maxMs: 100 }, ...options });
    cleanups.push(() => c.close());
    return c;
  }

  async function rawPeer(path: string): Promise<RawPeer> {
    const p = await RawPeer.connect(path);
    cleanups.push(() => p.destroy());
    return p;
  }

  /** A raw peer that has completed the handshake with an IpcServer. */
  async function handshakenPeer(server: IpcServer, path: string): Promise<RawPeer> {
    const before = server.stats.messagesIn;
    const p = await rawPeer(path);
    p.send({ type: 'hello', version: IPC_VERSION, daemon: 'shim6d', pid: 3333 });
    await waitFor(() => server.connected && server.stats.messagesIn > before, { what: 'the raw peer to be connected' });
    return p;
  }

  /** A stand-in reapd that speaks frames by hand; `onPeer` runs for each connection. */
  async function fakeServer(path: string, onPeer: (peer: RawPeer, index: number) => void): Promise<RawPeer[]> {
    mkdirSync(dirname(path), { recursive: true });
    const peers: RawPeer[] = [];
    const server = net.createServer((socket) => {
      const peer = new RawPeer(socket);
      peers.push(peer);
      onPeer(peer, peers.length - 1);
    });
    await new Promise<void>((resolve) => server.listen(path, resolve));
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          for (const p of peers) p.destroy();
          server.close(() => resolve());
        }),
    );
    return peers;
  }

  async function connectedPair(path = socketPath()): Promise<{ path: string; server: IpcServer; client: IpcClient; s: Recorder<ShimdToReapd>; c: Recorder<ReapdToShimd> }> {
    const server = newServer(path);
    const s = recordServer(server);
    await server.start();
    const client = newClient(path);
    const c = recordClient(client);
    client.start();
    await waitFor(() => client.connected && server.connected, { what: 'the handshake' });
    return { path, server, client, s, c };
  }

  it('handshake both ways: each side says hello, then both are connected', async () => {
    const { server, client, s, c } = await connectedPair();
    assert.deepEqual(s.connected, [{ type: 'hello', version: IPC_VERSION, daemon: 'shim6d', pid: CLIENT_PID }]);
    assert.deepEqual(c.connected, [{ type: 'hello', version: IPC_VERSION, daemon: 'reapd', pid: SERVER_PID }]);
    assert.equal(server.peerHello?.pid, CLIENT_PID);
    assert.equal(client.peerHello?.pid, SERVER_PID);
    assert.equal(server.stats.connections, 1);
    assert.equal(client.stats.handshakes, 1);
  });

  it('messages both ways, validated; send is false without a peer or for an invalid message', async () => {
    const path = socketPath();
    const lonely = newClient(path);
    assert.equal(lonely.send({ type: 'reap-removed', id: 1 } as unknown as ShimdToReapd), false);
    assert.equal(lonely.connected, false);
    await lonely.close();

    const { server, client, s, c } = await connectedPair(path);
    const sync: ShimdToReapd = { type: 'sync', contexts: [sampleContext(1), sampleContext(2)] };
    assert.equal(client.send(sync), true);
    assert.equal(client.send({ type: 'activity', contexts: [{ id: 1, sent: 10, received: 9 }] }), true);
    assert.equal(client.send({ type: 'reap-packet', packet: Buffer.alloc(60, 3).toString('base64') }), true);
    assert.equal(server.send({ type: 'pair', id: 1, local: A2, peer: B2 }), true);
    assert.equal(server.send({ type: 'reap-removed', id: 2 }), true);
    await waitFor(() => s.messages.length === 3 && c.messages.length === 2, { what: 'the messages' });
    assert.deepEqual(s.messages[0], sync);
    assert.deepEqual(
      s.messages.map((m) => m.type),
      ['sync', 'activity', 'reap-packet'],
    );
    assert.deepEqual(c.messages, [
      { type: 'pair', id: 1, local: A2, peer: B2 },
      { type: 'reap-removed', id: 2 },
    ]);
    // An invalid message is refused locally and never reaches the peer.
    assert.equal(client.send({ type: 'context', context: { ...sampleContext(3), localUlid: '2001:DB8::1' } }), false);
    assert.equal(server.send({ type: 'pair', id: 0, local: A2, peer: B2 }), false);
    assert.equal(client.stats.messagesOut, 4); // hello + 3
    assert.equal(server.stats.messagesOut, 3); // hello + 2
    assert.equal(server.stats.messagesIn, 4);
    assert.equal(client.stats.messagesIn, 3);
  });

  it('creates the directory 0700 and the socket 0600, and removes the socket on close', async () => {
    const { path, server } = await connectedPair();
    assert.ok(lstatSync(path).isSocket());
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(statSync(dirname(path)).mode & 0o777, 0o700);
    assert.equal(statSync(dirname(dirname(path))).mode & 0o777, 0o700);
    await server.close();
    assert.equal(existsSync(path), false);
  });

  it('replaces a stale socket file that nobody answers on', async () => {
    const path = socketPath();
    mkdirSync(dirname(path), { recursive: true });
    // A process that dies by SIGKILL leaves its socket file behind.
    const r = spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    assert.equal(r.signal, 'SIGKILL');
    assert.ok(lstatSync(path).isSocket(), 'a stale socket file');
    const server = newServer(path);
    await server.start();
    const client = newClient(path);
    client.start();
    await waitFor(() => client.connected, { what: 'a connection through the new socket' });
  });

  it('refuses to start on a live socket (IpcAddressInUseError) without disturbing it', async () => {
    const { path, server, client, c } = await connectedPair();
    const second = newServer(path);
    await assert.rejects(second.start(), (e: unknown) => e instanceof IpcAddressInUseError && e.path === path);
    assert.ok(lstatSync(path).isSocket());
    assert.ok(client.connected);
    assert.equal(server.send({ type: 'reap-removed', id: 5 }), true);
    await waitFor(() => c.messages.length === 1, { what: 'a message after the refused start' });
    assert.equal(c.disconnected.length, 0);
  });

  it('refuses to start when the path is something other than a socket, and leaves it', async () => {
    const path = socketPath();
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, 'not a socket');
    await assert.rejects(newServer(path).start(), /exists and is not a socket/);
    assert.ok(lstatSync(path).isFile());
  });

  it('close() during start() stops it and leaves no socket file', async () => {
    const path = socketPath();
    const server = newServer(path);
    const started = server.start();
    const closed = server.close();
    await assert.rejects(started, /closed while starting/);
    await closed;
    assert.equal(existsSync(path), false);
    await assert.rejects(server.start(), /server is closed/);
  });

  it('a client reconnects by itself after the server closes and restarts', async () => {
    const { path, server, client, c } = await connectedPair();
    await server.close();
    await waitFor(() => c.disconnected.length === 1, { what: "the client's 'disconnected'" });
    assert.equal(client.connected, false);
    assert.equal(client.send({ type: 'reap-removed', id: 1 } as unknown as ShimdToReapd), false);
    // Give it time to fail a few attempts against the missing socket.
    await waitFor(() => client.stats.attempts >= 3, { what: 'failed attempts' });
    const restarted = newServer(path);
    const s2 = recordServer(restarted);
    await restarted.start();
    await waitFor(() => c.connected.length === 2 && restarted.connected, { what: 'the client to reconnect' });
    assert.equal(s2.connected.length, 1);
    assert.equal(client.send({ type: 'explore', id: 1, reason: 'test' }), true);
    await waitFor(() => s2.messages.length === 1, { what: 'a message to the restarted server' });
  });

  it('a second client replaces the first', async () => {
    const path = socketPath();
    const server = newServer(path);
    const s = recordServer(server);
    await server.start();
    // The first one would come back by itself; keep it away for the test.
    const first = newClient(path, { reconnect: { initialMs: 60_000, maxMs: 60_000 } });
    const c1 = recordClient(first);
    first.start();
    await waitFor(() => first.connected, { what: 'the first client' });
    const second = newClient(path, { pid: 4444 });
    const c2 = recordClient(second);
    second.start();
    await waitFor(() => second.connected && c1.disconnected.length === 1, { what: 'the second client to replace the first' });
    assert.equal(first.connected, false);
    assert.deepEqual(
      s.connected.map((h) => h.pid),
      [CLIENT_PID, 4444],
    );
    assert.deepEqual(s.disconnected, ['replaced by a new connection']);
    assert.equal(server.peerHello?.pid, 4444);
    assert.equal(server.send({ type: 'reap-removed', id: 7 }), true);
    await waitFor(() => c2.messages.length === 1, { what: 'the message at the second client' });
    assert.equal(c1.messages.length, 0);
  });

  it('an invalid message is counted and reported, and the connection goes on (server side)', async () => {
    const path = socketPath();
    const server = newServer(path);
    const s = recordServer(server);
    await server.start();
    const peer = await handshakenPeer(server, path);
    peer.send({ type: 'activity', contexts: [{ id: 1, sent: -1, received: 0 }] });
    peer.send({ type: 'pair', id: 1, local: A1, peer: B1 }); // reapd's message, not shim6d's
    peer.socket.write(Buffer.concat([Buffer.from([0, 0, 0, 3]), Buffer.from('{{{')])); // not JSON
    peer.send({ type: 'explore', id: 1, reason: 'still here' });
    await waitFor(() => s.messages.length === 1, { what: 'the valid message after the invalid ones' });
    assert.equal(server.stats.invalid, 3);
    assert.deepEqual(
      s.invalid.map((e) => (e instanceof IpcProtocolError ? e.path : e.kind)),
      ['contexts[0].sent', 'type', ''],
    );
    assert.deepEqual(s.messages, [{ type: 'explore', id: 1, reason: 'still here' }]);
    assert.ok(server.connected);
    assert.equal(server.send({ type: 'reap-removed', id: 1 }), true);
    await waitFor(() => peer.received.length === 2, { what: 'a message from the server' });
    assert.deepEqual(peer.types(), ['hello', 'reap-removed']);
    assert.equal(s.disconnected.length, 0);
  });

  it('an invalid message is counted and reported, and the connection goes on (client side)', async () => {
    const path = socketPath();
    const peers = await fakeServer(path, (peer) => peer.send({ type: 'hello', version: IPC_VERSION, daemon: 'reapd', pid: 5555 }));
    const client = newClient(path);
    const c = recordClient(client);
    client.start();
    await waitFor(() => client.connected, { what: 'the client' });
    const peer = peers[0] as RawPeer;
    peer.send({ type: 'pair', id: 1, local: '2001:DB8:A2::A', peer: B2 });
    peer.send({ type: 'sync', contexts: [] }); // shim6d's message, not reapd's
    peer.send({ type: 'hello', version: IPC_VERSION, daemon: 'reapd', pid: 5555 }); // a second hello
    peer.send({ type: 'pair', id: 1, local: A2, peer: B2 });
    await waitFor(() => c.messages.length === 1, { what: 'the valid message' });
    assert.deepEqual(
      c.invalid.map((e) => (e instanceof IpcProtocolError ? e.path : e.kind)),
      ['local', 'type', 'type'],
    );
    assert.equal(client.stats.invalid, 3);
    assert.ok(client.connected);
    assert.equal(client.send({ type: 'explore', id: 1, reason: 'ok' }), true);
    await waitFor(() => peer.types().includes('explore'), { what: 'a message from the client' });
  });

  it('a garbage frame length closes the connection (server side)', async () => {
    const path = socketPath();
    const server = newServer(path);
    const s = recordServer(server);
    await server.start();
    const peer = await handshakenPeer(server, path);
    peer.socket.write(GARBAGE_LENGTH);
    await waitFor(() => peer.closed && s.disconnected.length === 1, { what: 'the server to close the connection' });
    assert.equal(server.stats.framingErrors, 1);
    assert.ok(s.invalid[0] instanceof IpcFramingError && s.invalid[0].kind === 'oversize');
    assert.equal(server.connected, false);
    // The server itself goes on.
    const client = newClient(path);
    client.start();
    await waitFor(() => client.connected, { what: 'a new connection' });
  });

  it('a garbage frame length closes the connection and the client reconnects', async () => {
    const path = socketPath();
    const peers = await fakeServer(path, (peer, index) => {
      peer.send({ type: 'hello', version: IPC_VERSION, daemon: 'reapd', pid: 5555 });
      if (index === 0) peer.socket.write(GARBAGE_LENGTH);
    });
    const client = newClient(path);
    const c = recordClient(client);
    client.start();
    await waitFor(() => c.connected.length === 2 && client.connected, { what: 'the client to reconnect' });
    assert.equal(client.stats.framingErrors, 1);
    assert.equal(c.disconnected.length, 1);
    assert.ok(c.invalid.some((e) => e instanceof IpcFramingError && e.length === 0xffffffff));
    assert.ok((peers[0] as RawPeer).closed);
    assert.deepEqual((peers[1] as RawPeer).types(), ['hello']);
  });

  it('the server refuses another IPC version with an error, then closes', async () => {
    const path = socketPath();
    const server = newServer(path);
    const s = recordServer(server);
    await server.start();
    const peer = await rawPeer(path);
    // A future hello may carry fields this version does not know: still answered.
    peer.send({ type: 'hello', version: IPC_VERSION + 1, daemon: 'shim6d', pid: 3333, features: ['x'] });
    await waitFor(() => peer.closed, { what: 'the server to close' });
    assert.deepEqual(peer.types(), ['hello', 'error']);
    assert.match((peer.received[1] as { message: string }).message, new RegExp(`version ${IPC_VERSION + 1} is not supported.*version ${IPC_VERSION}`));
    assert.equal(s.connected.length, 0);
    assert.equal(server.connected, false);
  });

  it('the client refuses another IPC version with an error, and tries again later', async () => {
    const path = socketPath();
    const peers = await fakeServer(path, (peer) => peer.send({ type: 'hello', version: IPC_VERSION + 1, daemon: 'reapd', pid: 5555 }));
    const client = newClient(path);
    const c = recordClient(client);
    client.start();
    await waitFor(() => peers.length >= 2 && (peers[0] as RawPeer).closed, { what: 'a refusal and a new attempt' });
    const first = peers[0] as RawPeer;
    assert.deepEqual(first.types(), ['hello', 'error']);
    assert.match((first.received[1] as { message: string }).message, /version 2 is not supported/);
    assert.equal(c.connected.length, 0);
    assert.equal(client.stats.handshakes, 0);
  });

  it('a message before the hello is refused with an error', async () => {
    const path = socketPath();
    const server = newServer(path);
    const s = recordServer(server);
    await server.start();
    const peer = await rawPeer(path);
    peer.send({ type: 'sync', contexts: [] });
    await waitFor(() => peer.closed, { what: 'the server to close' });
    assert.deepEqual(peer.types(), ['hello', 'error']);
    assert.match((peer.received[1] as { message: string }).message, /expected a hello first, got 'sync'/);
    assert.equal(server.stats.invalid, 1);
    assert.equal(s.connected.length, 0);
  });

  it('a connection that never says hello is closed after the handshake timeout', async () => {
    const path = socketPath();
    const server = newServer(path, { handshakeTimeoutMs: 200 });
    await server.start();
    const peer = await rawPeer(path);
    await waitFor(() => peer.closed, { what: 'the server to give up' });
    assert.deepEqual(peer.types(), ['hello', 'error']);
    assert.match((peer.received[1] as { message: string }).message, /no hello within 200 ms/);
  });

  it("the client's timers alone do not keep a process alive", () => {
    const root = join(__dirname, '..');
    const script = `
      const { IpcClient } = require(${JSON.stringify(join(root, 'ipc', 'client'))});
      const { nullLogger } = require(${JSON.stringify(join(root, 'common', 'logger'))});
      const c = new IpcClient({ path: ${JSON.stringify(join(dir, 'nobody-listens.sock'))}, logger: nullLogger, pid: 1, reconnect: { initialMs: 10, maxMs: 20 } });
      c.start();
      setTimeout(() => console.log(c.stats.attempts), 300);`;
    const r = spawnSync(process.execPath, ['--require', 'tsx/cjs', '-e', script], { cwd: root, encoding: 'utf8', timeout: 15000 });
    assert.equal(r.signal, null, 'the process had to be killed: something kept it alive');
    assert.equal(r.status, 0, r.stderr);
    assert.ok(Number(r.stdout.trim()) >= 2, `it kept retrying meanwhile: ${r.stdout}`);
  });

  it('backpressure is counted and the messages still arrive, in order', async () => {
    const path = socketPath();
    const peers = await fakeServer(path, (peer) => {
      peer.send({ type: 'hello', version: IPC_VERSION, daemon: 'reapd', pid: 5555 });
    });
    const client = newClient(path);
    client.start();
    await waitFor(() => client.connected && peers.length === 1, { what: 'the client' });
    const peer = peers[0] as RawPeer;
    await waitFor(() => peer.received.length === 1, { what: "the client's hello" });
    peer.socket.pause(); // a reapd that does not read
    const big: ShimdToReapd = { type: 'sync', contexts: Array.from({ length: 3000 }, (_, i) => sampleContext(i + 1)) };
    let sent = 0;
    while (client.stats.backpressure === 0 && sent < 50) {
      assert.equal(client.send(big), true);
      sent++;
    }
    assert.ok(client.stats.backpressure >= 1, 'socket.write returned false at some point');
    assert.ok(client.connected);
    peer.socket.resume();
    await waitFor(() => peer.received.length === 1 + sent, { what: 'every sync to arrive', timeoutMs: 10000 });
    assert.ok(peer.types().slice(1).every((t) => t === 'sync'));
  });
});
