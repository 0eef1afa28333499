/**
 * The admin console over real UDP on 127.0.0.1 and ::1 (ephemeral ports): one reply per
 * datagram, parse errors and handler failures answered without stopping the server, long
 * replies truncated, bind failures typed, and the ports released by close().
 */
import { strict as assert } from 'node:assert';
import * as dgram from 'node:dgram';
import { isIPv4 } from 'node:net';
import { Writable } from 'node:stream';
import * as winston from 'winston';
import { CONSOLE_HELP, ConsoleCommand, usageOf } from '../shim6d/console-commands';
import {
  CONSOLE_TRUNCATION_NOTE,
  ConsoleBindError,
  ConsoleHandler,
  ConsoleLogger,
  ConsolePeer,
  ConsoleServer,
  MAX_CONSOLE_REPLY_BYTES,
} from '../shim6d/console-server';
import { waitFor } from '../scripts/lib/wait';

const LOOPBACKS = ['127.0.0.1', '::1'];

interface LogEntry {
  level: 'debug' | 'warn' | 'error';
  msg: string;
  meta: Record<string, unknown> | undefined;
}

function recordingLogger(): ConsoleLogger & { entries: LogEntry[] } {
  const entries: LogEntry[] = [];
  return {
    entries,
    debug: (msg, meta) => entries.push({ level: 'debug', msg, meta }),
    warn: (msg, meta) => entries.push({ level: 'warn', msg, meta }),
    error: (msg, meta) => entries.push({ level: 'error', msg, meta }),
  };
}

/** Sockets and servers of the current test, closed by afterEach. */
const openSockets = new Set<dgram.Socket>();
const openServers = new Set<ConsoleServer>();

function udpSocket(address: string): dgram.Socket {
  const s = isIPv4(address) ? dgram.createSocket('udp4') : dgram.createSocket({ type: 'udp6', ipv6Only: true });
  openSockets.add(s);
  return s;
}

function closeSocket(s: dgram.Socket): Promise<void> {
  openSockets.delete(s);
  return new Promise((resolve) => {
    try {
      s.close(() => resolve());
    } catch {
      resolve();
    }
  });
}

function bindSocket(address: string, port: number): Promise<dgram.Socket> {
  const s = udpSocket(address);
  return new Promise((resolve, reject) => {
    s.once('error', reject);
    s.bind(port, address, () => {
      s.off('error', reject);
      resolve(s);
    });
  });
}

/** Sends one datagram and resolves with the first reply, or rejects after `timeoutMs`. */
async function request(address: string, port: number, payload: string | Buffer, timeoutMs = 5000): Promise<Buffer> {
  const s = udpSocket(address);
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply from ${address} port ${port} within ${timeoutMs} ms`)), timeoutMs);
      s.once('message', (msg) => {
        clearTimeout(timer);
        resolve(msg);
      });
      s.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      s.send(payload, port, address);
    });
  } finally {
    await closeSocket(s);
  }
}

async function ask(address: string, port: number, payload: string | Buffer): Promise<string> {
  return (await request(address, port, payload)).toString('utf8');
}

async function startServer(handler: ConsoleHandler, logger?: ConsoleLogger, addresses = LOOPBACKS): Promise<ConsoleServer> {
  const server = new ConsoleServer({ addresses, port: 0, handler, logger });
  openServers.add(server);
  await server.start();
  return server;
}

/** Replies with the command and peer as JSON, and remembers them. */
function echoHandler(): ConsoleHandler & { calls: { command: ConsoleCommand; peer: ConsolePeer }[] } {
  const calls: { command: ConsoleCommand; peer: ConsolePeer }[] = [];
  const handler = (command: ConsoleCommand, peer: ConsolePeer): string => {
    calls.push({ command, peer });
    return command.kind === 'help' ? CONSOLE_HELP : JSON.stringify(command);
  };
  return Object.assign(handler, { calls });
}

describe('admin console server (UDP on loopback)', function () {
  this.timeout(20_000);

  afterEach(async () => {
    await Promise.all([...openServers].map((s) => s.close()));
    openServers.clear();
    await Promise.all([...openSockets].map(closeSocket));
  });

  it('answers each datagram with one reply, on 127.0.0.1 and on ::1', async () => {
    const handler = echoHandler();
    const server = await startServer(handler);
    const ports = server.boundPorts();
    assert.equal(ports.length, 2);
    for (const p of ports) assert.ok(p > 0);

    for (const [i, address] of LOOPBACKS.entries()) {
      const port = ports[i] ?? 0;
      assert.equal(await ask(address, port, 'help\n'), CONSOLE_HELP);
      // The handler's text gets a trailing newline.
      assert.equal(await ask(address, port, 'DELETE 2001:DB8::1   2001:db8::2\n'), '{"kind":"delete","srcUlid":"2001:db8::1","dstUlid":"2001:db8::2"}\n');
      assert.equal(await ask(address, port, 'dump json'), '{"kind":"dump","json":true}\n');
    }
    assert.equal(handler.calls.length, 6);
    for (const { peer } of handler.calls) {
      assert.ok(LOOPBACKS.includes(peer.address), `peer ${peer.address}`);
      assert.ok(peer.port > 0);
    }
    assert.deepEqual(server.stats(), { requests: 6, errors: 0, internalErrors: 0 });
  });

  it('serves datagrams concurrently: a slow command does not hold up the next one', async () => {
    let release: (() => void) | undefined;
    const slow = new Promise<void>((resolve) => (release = resolve));
    const server = await startServer(async (command) => {
      if (command.kind === 'dump') await slow;
      return command.kind;
    });
    const port = server.boundPorts()[0] ?? 0;
    const dump = ask('127.0.0.1', port, 'dump');
    assert.equal(await ask('127.0.0.1', port, 'stats'), 'stats\n');
    release?.();
    assert.equal(await dump, 'dump\n');
  });

  it('answers a parse error with the message and the usage, without calling the handler', async () => {
    const handler = echoHandler();
    const server = await startServer(handler);
    const [p4 = 0, p6 = 0] = server.boundPorts();
    assert.equal(
      await ask('::1', p6, 'shim 1 zz::1 ::2\n'),
      `error: shim: 'zz::1' is not an IPv6 address\nusage: ${usageOf('shim')}\n`,
    );
    assert.match(await ask('127.0.0.1', p4, 'frobnicate'), /^error: unknown command 'frobnicate'\nusage: .*\bdeshim\b.*\n$/);
    assert.match(await ask('127.0.0.1', p4, `stats ${'x'.repeat(2000)}`), /^error: datagram too long \(2006 bytes; at most 1024\)\nusage: .+\n$/);
    assert.match(await ask('127.0.0.1', p4, Buffer.from([0x73, 0x74, 0xff, 0xfe])), /^error: datagram is not UTF-8 text\nusage: .+\n$/);
    assert.match(await ask('127.0.0.1', p4, ''), /^error: empty command\nusage: .+\n$/);
    assert.equal(handler.calls.length, 0);
    assert.deepEqual(server.stats(), { requests: 5, errors: 5, internalErrors: 0 });
  });

  it('answers a handler that throws or rejects with an internal error, logs it, and keeps serving', async () => {
    const logger = recordingLogger();
    const server = await startServer(async (command) => {
      if (command.kind === 'update') throw new Error('context 5 vanished');
      if (command.kind === 'deshim') return Promise.reject(new RangeError('bad\nstate'));
      return 'ok';
    }, logger);
    // A synchronous throw as well.
    const syncServer = await startServer(() => {
      throw new TypeError('sync failure');
    }, logger, ['127.0.0.1']);
    const [p4 = 0, p6 = 0] = server.boundPorts();

    assert.equal(await ask('127.0.0.1', p4, 'update 5'), 'error: internal: context 5 vanished\n');
    assert.equal(await ask('127.0.0.1', p4, 'stats'), 'ok\n');
    assert.equal(await ask('::1', p6, 'deshim 5'), 'error: internal: bad state\n');
    assert.equal(await ask('::1', p6, 'help'), 'ok\n');
    assert.equal(await ask('127.0.0.1', syncServer.boundPorts()[0] ?? 0, 'stats'), 'error: internal: sync failure\n');

    assert.deepEqual(server.stats(), { requests: 4, errors: 0, internalErrors: 2 });
    assert.deepEqual(syncServer.stats(), { requests: 1, errors: 0, internalErrors: 1 });
    const errors = logger.entries.filter((e) => e.level === 'error');
    assert.deepEqual(errors.map((e) => e.meta?.['error']), ['context 5 vanished', 'bad state', 'sync failure']);
    assert.deepEqual(errors.map((e) => (e.meta?.['command'] as ConsoleCommand | undefined)?.kind), ['update', 'deshim', 'stats']);
  });

  it('logs through a winston logger', async () => {
    const records: Record<string, unknown>[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _encoding, callback): void {
        records.push(JSON.parse(chunk.toString('utf8')) as Record<string, unknown>);
        callback();
      },
    });
    const logger = winston.createLogger({ level: 'debug', format: winston.format.json(), transports: [new winston.transports.Stream({ stream })] });
    try {
      const server = await startServer(() => Promise.reject(new Error('kaput')), logger, ['::1']);
      assert.equal(await ask('::1', server.boundPorts()[0] ?? 0, 'stats'), 'error: internal: kaput\n');
      const logged = await waitFor(() => records.find((r) => r['level'] === 'error'), { what: 'the failure in the winston log' });
      assert.equal(logged['message'], 'admin console: command failed');
      assert.equal(logged['error'], 'kaput');
    } finally {
      logger.close();
    }
  });

  it('cuts a 200 kB reply at a line boundary, with a note at the end', async () => {
    const lines = Array.from({ length: 2000 }, (_, i) => `context ${String(i).padStart(4, '0')} ${'x'.repeat(86)}`); // 100 bytes with \n
    const big = `${lines.join('\n')}\n`;
    assert.equal(big.length, 200_000);
    const server = await startServer(() => big);
    const reply = await request('127.0.0.1', server.boundPorts()[0] ?? 0, 'dump');
    assert.ok(reply.length <= MAX_CONSOLE_REPLY_BYTES, `reply of ${reply.length} bytes`);
    const text = reply.toString('utf8');
    assert.ok(text.endsWith(CONSOLE_TRUNCATION_NOTE));
    const kept = text.slice(0, -CONSOLE_TRUNCATION_NOTE.length);
    assert.ok(kept.endsWith('\n'));
    assert.ok(big.startsWith(kept), 'the kept part is not a prefix of the reply');
    // As many whole lines as fit.
    assert.equal(kept.length, Math.floor((MAX_CONSOLE_REPLY_BYTES - CONSOLE_TRUNCATION_NOTE.length) / 100) * 100);
  });

  it('cuts a single overlong line on a character boundary', async () => {
    const server = await startServer(() => 'é'.repeat(50_000), undefined, ['::1']);
    const reply = await request('::1', server.boundPorts()[0] ?? 0, 'dump');
    assert.ok(reply.length <= MAX_CONSOLE_REPLY_BYTES);
    const text = reply.toString('utf8');
    assert.ok(text.endsWith(`\n${CONSOLE_TRUNCATION_NOTE}`));
    assert.match(text.slice(0, -CONSOLE_TRUNCATION_NOTE.length - 1), /^é+$/);
  });

  it('rejects with a ConsoleBindError when the port is in use, closing the socket already bound', async () => {
    const blocker = await bindSocket('127.0.0.1', 0);
    const port = blocker.address().port;
    // ::1 binds first, then 127.0.0.1 fails.
    const server = new ConsoleServer({ addresses: ['::1', '127.0.0.1'], port, handler: () => 'ok' });
    openServers.add(server);
    await assert.rejects(server.start(), (e: unknown) => {
      assert.ok(e instanceof ConsoleBindError, String(e));
      assert.equal(e.address, '127.0.0.1');
      assert.equal(e.port, port);
      assert.equal(e.code, 'EADDRINUSE');
      assert.match(e.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
      return true;
    });
    // The ::1 socket was closed: the port is free there.
    await closeSocket(await bindSocket('::1', port));
  });

  it('rejects with a ConsoleBindError for an address that is not local', async () => {
    const server = new ConsoleServer({ addresses: ['192.0.2.1'], port: 0, handler: () => 'ok' });
    openServers.add(server);
    await assert.rejects(server.start(), (e: unknown) => e instanceof ConsoleBindError && e.code === 'EADDRNOTAVAIL' && e.address === '192.0.2.1');
  });

  it('refuses a host name or a bad port at construction', () => {
    assert.throws(() => new ConsoleServer({ addresses: ['localhost'], port: 0, handler: () => '' }), RangeError);
    assert.throws(() => new ConsoleServer({ addresses: [], port: 0, handler: () => '' }), RangeError);
    assert.throws(() => new ConsoleServer({ addresses: ['::1'], port: 65536, handler: () => '' }), RangeError);
  });

  it('close() releases the ports, can be called again, and start() then fails', async () => {
    const server = await startServer(() => 'ok');
    const ports = server.boundPorts();
    assert.equal(await ask('::1', ports[1] ?? 0, 'stats'), 'ok\n');
    await server.close();
    await server.close();
    for (const [i, address] of LOOPBACKS.entries()) await closeSocket(await bindSocket(address, ports[i] ?? 0));
    await assert.rejects(server.start(), /closed/);
  });
});
