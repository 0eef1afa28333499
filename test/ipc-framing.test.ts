/**
 * ipc/framing: frames round-trip through FrameDecoder however the stream is cut (fast-check
 * over messages and chunk boundaries), big frames arrive in many chunks, a length of zero or
 * over MAX_FRAME is an IpcFramingError that sticks (carrying the frames before it), and bodies that are not UTF-8 JSON are
 * IpcProtocolErrors (the stream stays framed).
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { encodeFrame, FRAME_HEADER_BYTES, FrameDecoder, IpcFramingError, MAX_FRAME, parseFrameBody } from '../ipc/framing';
import { IPC_VERSION, IpcMessage, IpcProtocolError, validateMessage } from '../ipc/messages';

const SEED = 0xf4a3e;

const A1 = '2001:db8:a1::a';
const B1 = '2001:db8:b1::b';

/** Messages with text fields of any Unicode (multi-octet UTF-8 included). */
const message: fc.Arbitrary<IpcMessage> = fc.oneof(
  fc.record({ type: fc.constant('explore' as const), id: fc.integer({ min: 1, max: 2 ** 31 }), reason: fc.string({ unit: 'grapheme', maxLength: 40 }) }),
  fc.record({ type: fc.constant('error' as const), message: fc.string({ unit: 'binary', maxLength: 60 }) }),
  fc.record({ type: fc.constant('hello' as const), version: fc.constant(IPC_VERSION), daemon: fc.constantFrom('shim6d' as const, 'reapd' as const), pid: fc.integer({ min: 1, max: 4194304 }) }),
  fc.uint8Array({ minLength: 48, maxLength: 600 }).map((b): IpcMessage => ({ type: 'reap-packet', packet: Buffer.from(b).toString('base64') })),
  fc.array(fc.record({ id: fc.integer({ min: 1, max: 1000 }), sent: fc.nat(), received: fc.nat() }), { maxLength: 20 }).map(
    (entries): IpcMessage => ({ type: 'activity', contexts: entries.map((e, i) => ({ ...e, id: i + 1 })) }),
  ),
);

/** Cuts `stream` at the given offsets (taken modulo its length, in any order). */
function cut(stream: Buffer, offsets: number[]): Buffer[] {
  const points = [...new Set(offsets.map((o) => (stream.length === 0 ? 0 : o % (stream.length + 1))))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    chunks.push(stream.subarray(from, p));
    from = p;
  }
  chunks.push(stream.subarray(from));
  return chunks;
}

function header(length: number): Buffer {
  const h = Buffer.alloc(FRAME_HEADER_BYTES);
  h.writeUInt32BE(length, 0);
  return h;
}

describe('ipc framing', () => {
  it('a frame is a 4-octet big-endian length and the UTF-8 JSON of the message', () => {
    const msg: IpcMessage = { type: 'explore', id: 7, reason: 'locator gone: é' };
    const frame = encodeFrame(msg);
    const json = Buffer.from(JSON.stringify(msg), 'utf8');
    assert.equal(frame.readUInt32BE(0), json.length);
    assert.deepEqual(frame.subarray(4), json);
    assert.equal(MAX_FRAME, 64 * 1024 * 1024);
  });

  it('decodes any sequence of frames however the stream is cut (fast-check)', () => {
    fc.assert(
      fc.property(fc.array(message, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 30 }), (messages, offsets) => {
        const stream = Buffer.concat(messages.map(encodeFrame));
        const decoder = new FrameDecoder();
        const bodies = cut(stream, offsets).flatMap((chunk) => decoder.push(chunk));
        assert.equal(decoder.pendingBytes, 0);
        assert.deepEqual(
          bodies.map((b) => validateMessage(parseFrameBody(b))),
          messages.map((m) => JSON.parse(JSON.stringify(m)) as unknown),
        );
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it('one octet at a time, and an empty chunk, are fine', () => {
    const msgs: IpcMessage[] = [
      { type: 'pair', id: 1, local: A1, peer: B1 },
      { type: 'reap-removed', id: 1 },
    ];
    const stream = Buffer.concat(msgs.map(encodeFrame));
    const decoder = new FrameDecoder();
    const bodies: Buffer[] = [...decoder.push(Buffer.alloc(0))];
    for (let i = 0; i < stream.length; i++) bodies.push(...decoder.push(stream.subarray(i, i + 1)));
    assert.deepEqual(
      bodies.map((b) => parseFrameBody(b)),
      msgs,
    );
  });

  it('a 20 MiB frame in 64 KiB chunks, followed by a small one in the same chunk', () => {
    const big: IpcMessage = { type: 'error', message: 'x'.repeat(20 * 1024 * 1024) }; // encodeFrame does not validate
    const small: IpcMessage = { type: 'reap-removed', id: 2 };
    const stream = Buffer.concat([encodeFrame(big), encodeFrame(small)]);
    const decoder = new FrameDecoder();
    const bodies: Buffer[] = [];
    for (let i = 0; i < stream.length; i += 65536) bodies.push(...decoder.push(stream.subarray(i, i + 65536)));
    assert.equal(bodies.length, 2);
    assert.equal((bodies[0] as Buffer).length, stream.length - encodeFrame(small).length - FRAME_HEADER_BYTES);
    assert.deepEqual(parseFrameBody(bodies[1] as Buffer), small);
  });

  it('a length over MAX_FRAME is an IpcFramingError, on that push and every later one', () => {
    const decoder = new FrameDecoder();
    assert.deepEqual(decoder.push(header(MAX_FRAME)), []); // the largest allowed: waits for its body
    const other = new FrameDecoder();
    // The frame before the bad length was framed correctly: it travels in the error.
    assert.throws(
      () => other.push(Buffer.concat([encodeFrame({ type: 'reap-removed', id: 1 }), header(MAX_FRAME + 1)])),
      (e: unknown) =>
        e instanceof IpcFramingError &&
        e.kind === 'oversize' &&
        e.length === MAX_FRAME + 1 &&
        e.frames.length === 1 &&
        JSON.stringify(parseFrameBody(e.frames[0] as Buffer)) === '{"type":"reap-removed","id":1}',
    );
    assert.throws(
      () => other.push(encodeFrame({ type: 'reap-removed', id: 1 })),
      (e: unknown) => e instanceof IpcFramingError && e.frames.length === 0,
    );
    const huge = new FrameDecoder();
    huge.push(Buffer.from([0xff, 0xff]));
    assert.throws(
      () => huge.push(Buffer.from([0xff, 0xff])),
      (e: unknown) => e instanceof IpcFramingError && e.length === 0xffffffff && /more than/.test(e.message),
    );
  });

  it('a length of zero is an IpcFramingError', () => {
    assert.throws(
      () => new FrameDecoder().push(header(0)),
      (e: unknown) => e instanceof IpcFramingError && e.kind === 'empty',
    );
  });

  it('encodeFrame refuses a message whose JSON exceeds MAX_FRAME', () => {
    assert.throws(
      () => encodeFrame({ type: 'error', message: 'y'.repeat(MAX_FRAME) }),
      (e: unknown) => e instanceof IpcFramingError && e.kind === 'oversize' && e.length > MAX_FRAME,
    );
  });

  it('a body that is not UTF-8 or not JSON is an IpcProtocolError at the message', () => {
    for (const body of [Buffer.from([0x7b, 0xff, 0x7d]), Buffer.from('{"type":'), Buffer.from('\uFEFF{}'), Buffer.from('{} {}')]) {
      assert.throws(
        () => parseFrameBody(body),
        (e: unknown) => e instanceof IpcProtocolError && e.path === '' && /not (UTF-8|JSON)/.test(e.detail),
        body.toString('hex'),
      );
    }
    assert.deepEqual(parseFrameBody(Buffer.from('[1,"é"]')), [1, 'é']);
  });
});
