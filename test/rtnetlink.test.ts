/**
 * The rtnetlink address parser and dump request (pure), on hand-built little-endian byte
 * vectors: RTM_NEWADDR with IFA_ADDRESS, IFA_FLAGS and IFA_CACHEINFO, RTM_DELADDR, several
 * messages in one buffer, NLMSG_DONE, NLMSG_ERROR; every truncation and malformed length gives
 * a typed error; fuzzing (fast-check and a seeded loop) never makes the parser throw.
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { ipv6 } from '../protocol/address';
import {
  AddressMessage,
  AF_INET,
  AF_INET6,
  buildGetAddrDumpRequest,
  buildNetlinkMessage,
  ByteOrder,
  decodeAddressFlags,
  DoneMessage,
  ErrorMessage,
  IFA_ADDRESS,
  IFA_CACHEINFO,
  IFA_F_DEPRECATED,
  IFA_F_NOPREFIXROUTE,
  IFA_F_PERMANENT,
  IFA_F_TENTATIVE,
  IFA_FLAGS,
  IFA_LABEL,
  IFA_LOCAL,
  IFADDRMSG_LENGTH,
  NLM_F_DUMP,
  NLM_F_MULTI,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_HDRLEN,
  NLMSG_NOOP,
  ParseResult,
  parseNetlinkMessages,
  RT_SCOPE_LINK,
  RTM_DELADDR,
  RTM_GETADDR,
  RTM_NEWADDR,
  RTMGRP_IPV6_IFADDR,
} from '../shim6d/rtnetlink';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+|#[^\n]*/g, ''), 'hex');
const LE = { byteOrder: 'LE' as ByteOrder };
const parse = (b: Uint8Array): ParseResult => parseNetlinkMessages(b, LE);

// RTM_NEWADDR, 72 octets: 2001:db8:1::1/64 on ifindex 3, global scope; ifa_flags says only
// PERMANENT but IFA_FLAGS (which wins) says TENTATIVE | PERMANENT | NOPREFIXROUTE (0x2c0, past 8 bits).
const NEWADDR = hex(`
  48000000 1400 0000 00000000 00000000            # nlmsghdr: len 72, RTM_NEWADDR, no flags, seq 0, pid 0
  0a 40 80 00 03000000                            # ifaddrmsg: AF_INET6, /64, 0x80, scope 0, ifindex 3
  1400 0100 20010db8000100000000000000000001      # IFA_ADDRESS 2001:db8:1::1
  0800 0800 c0020000                              # IFA_FLAGS 0x2c0
  1400 0600 100e0000 ffffffff e8030000 d0070000   # IFA_CACHEINFO preferred 3600, valid forever, cstamp 1000, tstamp 2000
`);

// RTM_DELADDR, 44 octets: 2001:db8:1::1/64 on ifindex 3 removed (flags only in ifaddrmsg).
const DELADDR = hex(`
  2c000000 1500 0000 00000000 00000000
  0a 40 80 00 03000000
  1400 0100 20010db8000100000000000000000001
`);

// A dump part: link-local fe80::1/64 on ifindex 2 (scope link), NLM_F_MULTI, seq 7, pid 1234.
const DUMP_PART = hex(`
  2c000000 1400 0200 07000000 d2040000
  0a 40 80 fd 02000000
  1400 0100 fe800000000000000000000000000001
`);

// NLMSG_DONE of that dump: status 0.
const DONE = hex('14000000 0300 0200 07000000 d2040000 00000000');
// NLMSG_DONE with status -16 (EBUSY).
const DONE_EBUSY = hex('14000000 0300 0200 07000000 d2040000 f0ffffff');

// NLMSG_ERROR -1 (EPERM) for our dump request, capped (only its header), with the extended-ACK text "bad".
const ERROR_EPERM = hex(`
  2c000000 0200 0003 07000000 d2040000            # NLM_F_CAPPED | NLM_F_ACK_TLVS
  ffffffff                                        # error -1
  18000000 1600 0103 07000000 00000000            # the request's header: RTM_GETADDR, REQUEST|DUMP, seq 7
  0800 0100 62616400                              # NLMSGERR_ATTR_MSG "bad"
`);
// NLMSG_ERROR 0: an acknowledgement, carrying the whole 24-octet request.
const ACK = hex(`
  2c000000 0200 0000 09000000 d2040000
  00000000
  18000000 1400 0500 09000000 00000000 0a000000 00000000
`);

describe('rtnetlink: constants and the dump request', () => {
  it('has the kernel numbers', () => {
    assert.deepEqual(
      [RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR, NLMSG_ERROR, NLMSG_DONE, IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_CACHEINFO, IFA_FLAGS, RTMGRP_IPV6_IFADDR],
      [20, 21, 22, 2, 3, 1, 2, 3, 6, 8, 0x100],
    );
    assert.equal(NLM_F_REQUEST | NLM_F_DUMP, 0x301);
    assert.equal(AF_INET6, 10);
  });

  it('builds RTM_GETADDR, NLM_F_REQUEST|NLM_F_DUMP, AF_INET6: 24 octets, in either byte order', () => {
    assert.equal(buildGetAddrDumpRequest(7, AF_INET6, 'LE').toString('hex'), '18000000' + '1600' + '0103' + '07000000' + '00000000' + '0a000000' + '00000000');
    assert.equal(buildGetAddrDumpRequest(0x01020304, AF_INET6, 'BE').toString('hex'), '00000018' + '0016' + '0301' + '01020304' + '00000000' + '0a000000' + '00000000');
    const back = parse(buildGetAddrDumpRequest(7, AF_INET6, 'LE'));
    assert.deepEqual(back, { messages: [{ kind: 'other', header: { length: 24, type: RTM_GETADDR, flags: 0x301, seq: 7, pid: 0 } }], errors: [] });
    assert.throws(() => buildGetAddrDumpRequest(-1), RangeError);
    assert.throws(() => buildGetAddrDumpRequest(2 ** 32), RangeError);
    assert.throws(() => buildGetAddrDumpRequest(1, 256), RangeError);
  });

  it('pads a message to 4 octets but keeps nlmsg_len exact', () => {
    const m = buildNetlinkMessage(NLMSG_NOOP, 0, 1, 2, new Uint8Array([1, 2, 3]), 'LE');
    assert.equal(m.length, 20);
    assert.equal(m.readUInt32LE(0), 19);
  });
});

describe('rtnetlink: parsing address messages', () => {
  it('RTM_NEWADDR: address, prefix, scope, ifindex, IFA_FLAGS over ifa_flags, lifetimes from IFA_CACHEINFO', () => {
    const r = parse(NEWADDR);
    assert.deepEqual(r.errors, []);
    assert.equal(r.messages.length, 1);
    const m = r.messages[0] as AddressMessage;
    assert.deepEqual(
      { ...m, flags: m.flags.value },
      {
        kind: 'new',
        header: { length: 72, type: RTM_NEWADDR, flags: 0, seq: 0, pid: 0 },
        family: AF_INET6,
        prefixLength: 64,
        flags: IFA_F_TENTATIVE | IFA_F_PERMANENT | IFA_F_NOPREFIXROUTE,
        scope: 0,
        ifindex: 3,
        address: '2001:db8:1::1',
        preferredLifetime: 3600,
        validLifetime: Infinity,
        createdTimestamp: 1000,
        updatedTimestamp: 2000,
      },
    );
    assert.equal(m.flags.tentative, true);
    assert.equal(m.flags.permanent, true);
    assert.equal(m.flags.noprefixroute, true);
    assert.equal(m.flags.deprecated, false);
    assert.equal(m.flags.dadfailed, false);
  });

  it('without IFA_FLAGS, the flags are ifa_flags; RTM_DELADDR is kind "del"', () => {
    const m = parse(DELADDR).messages[0] as AddressMessage;
    assert.equal(m.kind, 'del');
    assert.equal(m.flags.value, IFA_F_PERMANENT);
    assert.equal(m.address, '2001:db8:1::1');
    assert.equal(m.preferredLifetime, undefined);
  });

  it('decodes every IFA_F_* flag by name', () => {
    const all = decodeAddressFlags(0xfff);
    for (const k of ['secondary', 'temporary', 'nodad', 'optimistic', 'dadfailed', 'homeaddress', 'deprecated', 'tentative', 'permanent', 'managetempaddr', 'noprefixroute', 'mcautojoin', 'stablePrivacy'] as const) {
      assert.equal(all[k], true, k);
      assert.equal(decodeAddressFlags(0)[k], false, k);
    }
    assert.deepEqual(
      Object.entries(decodeAddressFlags(0x01 | 0x08 | IFA_F_DEPRECATED)).filter(([, v]) => v === true).map(([k]) => k),
      ['secondary', 'temporary', 'dadfailed', 'deprecated'],
    );
  });

  it('IFA_LOCAL is the address and a different IFA_ADDRESS the peer; IFA_LABEL; IPv4 in dotted form', () => {
    const p2p = hex(`
      54000000 1400 0000 00000000 00000000            # 16 + 8 + 20 + 20 + 12 + 8 = 84
      0a 80 80 00 05000000
      1400 0200 20010db8000000000000000000000001      # IFA_LOCAL 2001:db8::1
      1400 0100 20010db8000000000000000000000002      # IFA_ADDRESS 2001:db8::2 (peer)
      0c00 0300 7475 6e30 3a31 0000                   # IFA_LABEL "tun0:1" (NUL, padding)
      0800 0900 01000000                              # an attribute we do not know (IFA_RT_PRIORITY): skipped
    `);
    assert.equal(p2p.length, 84);
    const m = parse(p2p).messages[0] as AddressMessage;
    assert.deepEqual([m.address, m.peer, m.label, m.prefixLength, m.ifindex], ['2001:db8::1', '2001:db8::2', 'tun0:1', 128, 5]);
    const v4 = hex(`
      28000000 1400 0000 00000000 00000000
      02 18 80 00 01000000
      0800 0100 c0000201                              # IFA_ADDRESS 192.0.2.1
      0800 0200 c0000201                              # IFA_LOCAL, same: no peer
    `);
    const m4 = parse(v4).messages[0] as AddressMessage;
    assert.deepEqual([m4.family, m4.address, m4.peer, m4.prefixLength], [AF_INET, '192.0.2.1', undefined, 24]);
  });

  it('several messages in one buffer: dump part, NEWADDR, DELADDR, DONE, in order', () => {
    const r = parse(Buffer.concat([DUMP_PART, NEWADDR, DELADDR, DONE]));
    assert.deepEqual(r.errors, []);
    assert.deepEqual(
      r.messages.map((m) => [m.kind, m.header.seq, 'address' in m ? m.address : '']),
      [['new', 7, 'fe80::1'], ['new', 0, '2001:db8:1::1'], ['del', 0, '2001:db8:1::1'], ['done', 7, '']],
    );
    const part = r.messages[0] as AddressMessage;
    assert.equal(part.scope, RT_SCOPE_LINK);
    assert.equal(part.header.flags, NLM_F_MULTI);
    assert.equal(part.header.pid, 1234);
  });

  it('an unpadded last message is accepted (nlmsg_len not a multiple of 4)', () => {
    const m = buildNetlinkMessage(NLMSG_NOOP, 0, 1, 0, new Uint8Array([9]), 'LE').subarray(0, 17);
    assert.deepEqual(parse(m), { messages: [{ kind: 'other', header: { length: 17, type: NLMSG_NOOP, flags: 0, seq: 1, pid: 0 } }], errors: [] });
  });
});

describe('rtnetlink: NLMSG_DONE and NLMSG_ERROR', () => {
  it('NLMSG_DONE: errno 0 for a complete dump, the errno when the dump failed, 0 when the status is left out', () => {
    assert.deepEqual(parse(DONE).messages, [{ kind: 'done', header: { length: 20, type: NLMSG_DONE, flags: NLM_F_MULTI, seq: 7, pid: 1234 }, errno: 0 }]);
    assert.equal((parse(DONE_EBUSY).messages[0] as DoneMessage).errno, 16);
    assert.equal((parse(hex('10000000 0300 0200 07000000 00000000')).messages[0] as DoneMessage).errno, 0);
  });

  it('NLMSG_ERROR: errno, the request it answers, the extended-ACK text', () => {
    const r = parse(ERROR_EPERM);
    assert.deepEqual(r.errors, []);
    const e = r.messages[0] as ErrorMessage;
    assert.equal(e.kind, 'error');
    assert.equal(e.errno, 1);
    assert.deepEqual(e.request, { length: 24, type: RTM_GETADDR, flags: NLM_F_REQUEST | NLM_F_DUMP, seq: 7, pid: 0 });
    assert.equal(e.text, 'bad');
  });

  it('NLMSG_ERROR 0 is an acknowledgement; without the request header only errno', () => {
    const ack = parse(ACK).messages[0] as ErrorMessage;
    assert.deepEqual([ack.errno, ack.request?.type, ack.request?.seq, ack.text], [0, RTM_NEWADDR, 9, undefined]);
    const bare = parse(hex('14000000 0200 0000 01000000 00000000 f4ffffff')).messages[0] as ErrorMessage; // -12 ENOMEM
    assert.deepEqual([bare.errno, bare.request], [12, undefined]);
  });

  it('a malformed extended ACK loses only the text', () => {
    const b = Buffer.from(ERROR_EPERM);
    b.writeUInt16LE(200, 36); // NLMSGERR_ATTR_MSG runs past the message
    const e = parse(b).messages[0] as ErrorMessage;
    assert.deepEqual([e.errno, e.text], [1, undefined]);
  });
});

describe('rtnetlink: truncated and malformed input', () => {
  const vectors: Record<string, Buffer> = { NEWADDR, DELADDR, DUMP_PART, DONE, DONE_EBUSY, ERROR_EPERM, ACK };

  it('every strict prefix (lengths 0..n-1) of every vector gives a typed TRUNCATED error and no message', () => {
    for (const [name, v] of Object.entries(vectors)) {
      for (let n = 0; n < v.length; n++) {
        const r = parse(v.subarray(0, n));
        assert.deepEqual(r.messages, [], `${name}[0..${n})`);
        assert.equal(r.errors.length, 1, `${name}[0..${n})`);
        assert.equal(r.errors[0]?.code, 'TRUNCATED', `${name}[0..${n})`);
        assert.equal(r.errors[0]?.offset, 0);
      }
      assert.deepEqual(parse(v).errors, [], name);
    }
  });

  it('a multi-message buffer cut anywhere keeps the whole messages before the cut', () => {
    const parts = [DUMP_PART, NEWADDR, DELADDR, DONE];
    const all = Buffer.concat(parts);
    const full = parse(all).messages;
    const ends = parts.map((_, i) => parts.slice(0, i + 1).reduce((s, p) => s + p.length, 0));
    for (let n = 0; n <= all.length; n++) {
      const r = parse(all.subarray(0, n));
      const whole = ends.filter((e) => e <= n).length;
      assert.deepEqual(r.messages, full.slice(0, whole), `cut at ${n}`);
      const atBoundary = n > 0 && ends.includes(n);
      assert.deepEqual(r.errors.map((e) => e.code), atBoundary ? [] : ['TRUNCATED'], `cut at ${n}`);
      if (!atBoundary) assert.equal(r.errors[0]?.offset, n === 0 ? 0 : Math.max(0, ...ends.filter((e) => e <= n)));
    }
  });

  it('every nlmsg_len from 0 to n+8 on a NEWADDR buffer gives a message or a typed error, never a read past the input', () => {
    const seen = new Map<string, number>();
    for (let len = 0; len <= NEWADDR.length + 8; len++) {
      const b = Buffer.from(NEWADDR);
      b.writeUInt32LE(len, 0);
      const r = parse(b);
      // The first message's fate (what follows a shortened message is its own attributes, read as garbage).
      const key = r.messages.length > 0 ? 'ok' : (r.errors[0]?.code ?? 'none');
      seen.set(key, (seen.get(key) ?? 0) + 1);
      if (len < NLMSG_HDRLEN) assert.equal(key, 'BAD_LENGTH', `len ${len}`);
      else if (len < NLMSG_HDRLEN + IFADDRMSG_LENGTH) assert.equal(key, 'BAD_LENGTH', `len ${len}`);
      else if (len > NEWADDR.length) assert.equal(key, 'TRUNCATED', `len ${len}`);
      else assert.ok(['ok', 'BAD_ATTRIBUTE', 'MISSING_ADDRESS'].includes(key), `len ${len}: ${key}`);
    }
    for (const k of ['ok', 'BAD_LENGTH', 'TRUNCATED', 'BAD_ATTRIBUTE', 'MISSING_ADDRESS']) assert.ok(seen.has(k), `no ${k}: ${JSON.stringify([...seen])}`);
  });

  it('bad attributes, a missing address and an unknown family are typed errors naming type and offset', () => {
    const cases: Array<[string, (b: Buffer) => void, string, number, number?]> = [
      ['rta_len below its header', (b) => b.writeUInt16LE(2, 24), 'BAD_ATTRIBUTE', 24, IFA_ADDRESS],
      ['rta_len past the message', (b) => b.writeUInt16LE(60, 44), 'BAD_ATTRIBUTE', 44, IFA_FLAGS],
      ['IFA_ADDRESS of 8 octets', (b) => b.writeUInt16LE(12, 24), 'BAD_ATTRIBUTE', 24, IFA_ADDRESS],
      ['short IFA_CACHEINFO', (b) => b.writeUInt16LE(8, 52), 'BAD_ATTRIBUTE', 52, IFA_CACHEINFO],
      ['no address attribute', (b) => b.writeUInt16LE(99, 26), 'MISSING_ADDRESS', 16],
      ['family 7', (b) => (b[16] = 7), 'UNSUPPORTED_FAMILY', 16],
    ];
    for (const [what, mutate, code, offset, attributeType] of cases) {
      const b = Buffer.from(NEWADDR);
      mutate(b);
      const r = parse(b);
      assert.deepEqual(r.messages, [], what);
      assert.equal(r.errors.length, 1, what);
      const e = r.errors[0];
      assert.deepEqual([e?.code, e?.offset, e?.messageType, e?.attributeType], [code, offset, RTM_NEWADDR, attributeType], what);
      assert.equal(typeof e?.message, 'string');
    }
  });

  it('a malformed message between good ones is skipped; the others are read', () => {
    const badFamily = Buffer.from(NEWADDR);
    badFamily[16] = 99;
    const r = parse(Buffer.concat([DUMP_PART, badFamily, DELADDR]));
    assert.deepEqual(r.messages.map((m) => m.kind), ['new', 'del']);
    assert.deepEqual(r.errors.map((e) => [e.code, e.offset]), [['UNSUPPORTED_FAMILY', DUMP_PART.length + 16]]);
  });

  it('trailing octets shorter than a header, and an NLMSG_ERROR without its error code, are errors', () => {
    assert.deepEqual(parse(Buffer.concat([DONE, Buffer.alloc(5)])).errors.map((e) => [e.code, e.offset]), [['TRUNCATED', 20]]);
    assert.deepEqual(parse(hex('12000000 0200 0000 00000000 00000000 0000')).errors.map((e) => e.code), ['BAD_LENGTH']);
  });

  it('works on a view into a larger buffer without reading outside it', () => {
    const big = Buffer.concat([Buffer.alloc(7, 0xee), NEWADDR, Buffer.from(DELADDR.subarray(0, 20))]);
    const view = big.subarray(7, 7 + NEWADDR.length + 4); // NEWADDR and 4 octets of the next header
    const r = parse(view);
    assert.equal(r.messages.length, 1);
    assert.deepEqual(r.errors.map((e) => [e.code, e.offset]), [['TRUNCATED', NEWADDR.length]]);
  });
});

describe('rtnetlink: the parser is total (fuzz)', () => {
  const check = (input: Uint8Array, byteOrder: ByteOrder): ParseResult => {
    const r = parseNetlinkMessages(input, { byteOrder });
    for (const e of r.errors) {
      assert.notEqual(e.code, 'INTERNAL', `parser fault on ${Buffer.from(input).toString('hex')}: ${e.message}`);
      assert.ok(e.offset >= 0 && e.offset <= input.length, `offset ${e.offset} outside ${input.length}`);
    }
    for (const m of r.messages) assert.ok(m.header.length >= NLMSG_HDRLEN && m.header.length <= input.length);
    return r;
  };

  it('random bytes: never throws, only typed errors (fast-check)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.constantFrom<ByteOrder>('LE', 'BE'), (bytes, order) => {
        check(bytes, order);
      }),
      { seed: 0x6e7, numRuns: 20_000 },
    );
  });

  it('valid vectors with random octets overwritten or cut: never throws (fast-check)', () => {
    const base = Buffer.concat([DUMP_PART, NEWADDR, DELADDR, ERROR_EPERM, ACK, DONE]);
    const counts = new Map<string, number>();
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
        fc.nat(base.length),
        (edits, cut) => {
          const b = Buffer.from(base);
          for (const [at, v] of edits) b[at] = v;
          const r = check(b.subarray(0, cut), 'LE');
          for (const e of r.errors) counts.set(e.code, (counts.get(e.code) ?? 0) + 1);
          if (r.errors.length === 0) counts.set('ok', (counts.get('ok') ?? 0) + 1);
        },
      ),
      { seed: 0x6e8, numRuns: 20_000 },
    );
    for (const code of ['ok', 'TRUNCATED', 'BAD_LENGTH', 'BAD_ATTRIBUTE', 'UNSUPPORTED_FAMILY']) {
      assert.ok((counts.get(code) ?? 0) > 0, `no input produced ${code}: ${JSON.stringify([...counts])}`);
    }
  });

  it('any well-formed address message round-trips through the parser (fast-check)', () => {
    const rta = (type: number, data: Uint8Array): Buffer => {
      const b = Buffer.alloc((4 + data.length + 3) & ~3);
      b.writeUInt16LE(4 + data.length, 0);
      b.writeUInt16LE(type, 2);
      b.set(data, 4);
      return b;
    };
    fc.assert(
      fc.property(
        fc.record({
          del: fc.boolean(),
          prefixLength: fc.integer({ min: 0, max: 128 }),
          lowFlags: fc.integer({ min: 0, max: 255 }),
          flags: fc.option(fc.integer({ min: 0, max: 0xffff }), { nil: undefined }),
          scope: fc.integer({ min: 0, max: 255 }),
          ifindex: fc.nat(),
          address: fc.uint8Array({ minLength: 16, maxLength: 16 }),
          lifetimes: fc.option(fc.tuple(fc.nat(), fc.nat(), fc.nat(), fc.nat()), { nil: undefined }),
        }),
        (f) => {
          const ifa = Buffer.alloc(8);
          ifa.writeUInt8(AF_INET6, 0);
          ifa.writeUInt8(f.prefixLength, 1);
          ifa.writeUInt8(f.lowFlags, 2);
          ifa.writeUInt8(f.scope, 3);
          ifa.writeUInt32LE(f.ifindex, 4);
          const attrs = [rta(IFA_ADDRESS, f.address)];
          if (f.flags !== undefined) attrs.push(rta(IFA_FLAGS, Buffer.from(new Uint32Array([f.flags]).buffer)));
          if (f.lifetimes) attrs.push(rta(IFA_CACHEINFO, Buffer.from(new Uint32Array(f.lifetimes).buffer)));
          const wire = buildNetlinkMessage(f.del ? RTM_DELADDR : RTM_NEWADDR, 0, 0, 0, Buffer.concat([ifa, ...attrs]), 'LE');
          const r = parse(wire);
          assert.deepEqual(r.errors, []);
          const m = r.messages[0] as AddressMessage;
          assert.equal(m.kind, f.del ? 'del' : 'new');
          assert.deepEqual([m.prefixLength, m.flags.value, m.scope, m.ifindex], [f.prefixLength, f.flags ?? f.lowFlags, f.scope, f.ifindex]);
          assert.ok(ipv6(m.address).equals(Buffer.from(f.address)), m.address);
          assert.equal(m.preferredLifetime, f.lifetimes?.[0]);
          assert.equal(m.createdTimestamp, f.lifetimes?.[2]);
        },
      ),
      { seed: 0x6e9, numRuns: 3000 },
    );
  });
});
