/**
 * The ICMPv6 Packet Too Big message shim6d sends for packets that no longer fit once the
 * payload header is added (shim6d/packet-too-big), and the path MTU lookup from `ip route get`
 * and `ip link show` (shim6d/path-mtu) with a fake Runner.
 */
import { strict as assert } from 'node:assert';
import type { Runner, RunResult } from '../iptables-rules/exec';
import { ICMPV6_PACKET_TOO_BIG, MAX_INVOKING_OCTETS, packetTooBigMessage } from '../shim6d/packet-too-big';
import { lookupPathMtu, PathMtuError } from '../shim6d/path-mtu';

const A2 = '2001:db8:a2::a';
const B2 = '2001:db8:b2::b';

function invoking(length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 7 + 3) & 0xff;
  if (length > 0) b[0] = 0x60;
  return b;
}

describe('packetTooBigMessage (RFC 4443 section 3.2)', () => {
  it('type 2, code 0, checksum 0 (for the kernel), the MTU big-endian, then the invoking packet', () => {
    const p = invoking(100);
    const m = packetTooBigMessage(p, 1492);
    assert.equal(ICMPV6_PACKET_TOO_BIG, 2);
    assert.equal(m.length, 8 + 100);
    assert.equal(m[0], 2, 'type');
    assert.equal(m[1], 0, 'code');
    assert.equal(m.readUInt16BE(2), 0, 'checksum');
    assert.deepEqual([...m.subarray(4, 8)], [0x00, 0x00, 0x05, 0xd4], 'MTU 1492, big-endian');
    assert.ok(m.subarray(8).equals(p), 'the invoking packet, copied');
    p[5] = 0xee;
    assert.notEqual(m[13], 0xee, 'a copy, not a view');
  });

  it('large MTUs: 65535 and 2^32-1 fit the 32-bit field', () => {
    assert.equal(packetTooBigMessage(invoking(40), 65535).readUInt32BE(4), 65535);
    assert.deepEqual([...packetTooBigMessage(invoking(40), 0xffffffff).subarray(4, 8)], [0xff, 0xff, 0xff, 0xff]);
    assert.equal(packetTooBigMessage(invoking(40), 0x01020304).readUInt32BE(4), 0x01020304);
  });

  it('carries at most 1232 octets of the invoking packet, so the whole ICMPv6 packet fits 1280', () => {
    assert.equal(MAX_INVOKING_OCTETS, 1232);
    for (const n of [1231, 1232]) assert.equal(packetTooBigMessage(invoking(n), 1280).length, 8 + n);
    for (const n of [1233, 1500, 9000]) {
      const p = invoking(n);
      const m = packetTooBigMessage(p, 1280);
      assert.equal(m.length, 8 + 1232, `${n} octets`);
      assert.equal(40 + m.length, 1280);
      assert.ok(m.subarray(8).equals(p.subarray(0, 1232)), 'the first 1232 octets');
    }
  });

  it('takes any Uint8Array, and an empty one', () => {
    const m = packetTooBigMessage(new Uint8Array([1, 2, 3]), 1300);
    assert.deepEqual([...m.subarray(8)], [1, 2, 3]);
    assert.equal(packetTooBigMessage(new Uint8Array(0), 1300).length, 8);
  });

  it('RangeError for an MTU below 1280, not an integer, or over 32 bits', () => {
    for (const mtu of [1279, 0, -1, 1280.5, Number.NaN, 2 ** 32]) assert.throws(() => packetTooBigMessage(invoking(48), mtu), RangeError, String(mtu));
    assert.equal(packetTooBigMessage(invoking(48), 1280).readUInt32BE(4), 1280);
  });
});

/** A Runner answering from a table of command lines, recording them. */
function fakeRunner(answers: Record<string, Partial<RunResult>>): { run: Runner; calls: { argv: readonly string[]; input: string | undefined; timeoutMs: number }[] } {
  const calls: { argv: readonly string[]; input: string | undefined; timeoutMs: number }[] = [];
  const run: Runner = (argv, input, timeoutMs) => {
    calls.push({ argv, input, timeoutMs });
    const a = answers[argv.join(' ')];
    if (!a) return Promise.resolve({ code: 1, signal: null, stdout: '', stderr: `unexpected command ${argv.join(' ')}` });
    return Promise.resolve({ code: 0, signal: null, stdout: '', stderr: '', ...a });
  };
  return { run, calls };
}

const ROUTE_GET = `ip -6 route get ${B2} from ${A2}`;
const LINK_VETH0 = 'ip -o link show dev veth0';
const VETH0_LINE = '3: veth0@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 6a:3c:1e:52:9b:07 brd ff:ff:ff:ff:ff:ff link-netns shim6-b\n';

describe('lookupPathMtu (ip route get / ip link show)', () => {
  it('a route with its own mtu: that, from one `ip -6 route get PEER from LOCAL`', async () => {
    const { run, calls } = fakeRunner({ [ROUTE_GET]: { stdout: `${B2} from ${A2} via fe80::1 dev veth0 proto kernel src ${A2} metric 256 mtu 1400 pref medium\n` } });
    assert.equal(await lookupPathMtu(run, A2, B2), 1400);
    assert.deepEqual(calls.map((c) => c.argv), [['ip', '-6', 'route', 'get', B2, 'from', A2]]);
    assert.equal(calls[0]?.input, undefined);
    assert.ok((calls[0]?.timeoutMs ?? 0) > 0);
  });

  it('`mtu lock 1400`: 1400', async () => {
    const { run, calls } = fakeRunner({ [ROUTE_GET]: { stdout: `${B2} from ${A2} dev veth0 proto static src ${A2} metric 1024 mtu lock 1400 pref medium\n` } });
    assert.equal(await lookupPathMtu(run, A2, B2), 1400);
    assert.equal(calls.length, 1);
  });

  it('a cached PMTU exception (`cache expires 593sec mtu 1380`): 1380', async () => {
    const { run } = fakeRunner({ [ROUTE_GET]: { stdout: `${B2} from ${A2} dev veth0 src ${A2} metric 256 \n    cache expires 593sec mtu 1380 pref medium\n` } });
    assert.equal(await lookupPathMtu(run, A2, B2), 1380);
  });

  it('a route without mtu: the MTU of its device, from `ip -o link show dev X`', async () => {
    const { run, calls } = fakeRunner({
      [ROUTE_GET]: { stdout: `${B2} from ${A2} via fe80::1 dev veth0 proto kernel src ${A2} metric 256 pref medium\n` },
      [LINK_VETH0]: { stdout: VETH0_LINE },
    });
    assert.equal(await lookupPathMtu(run, A2, B2), 1500);
    assert.deepEqual(calls.map((c) => c.argv.join(' ')), [ROUTE_GET, LINK_VETH0]);
  });

  it('a jumbo device MTU, and minmtu/maxmtu in the link line do not confuse it', async () => {
    const { run } = fakeRunner({
      [ROUTE_GET]: { stdout: `${B2} from ${A2} dev eth1 proto kernel src ${A2} metric 256 pref medium\n` },
      'ip -o link show dev eth1': { stdout: '2: eth1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 9000 qdisc mq state UP mode DEFAULT group default qlen 1000\\    link/ether 52:54:00:12:34:56 brd ff:ff:ff:ff:ff:ff promiscuity 0 minmtu 68 maxmtu 9216\n' },
    });
    assert.equal(await lookupPathMtu(run, A2, B2), 9000);
  });

  it('another ip binary can be named', async () => {
    const { run, calls } = fakeRunner({ [`/sbin/ip -6 route get ${B2} from ${A2}`]: { stdout: `${B2} dev veth0 mtu 1280\n` } });
    assert.equal(await lookupPathMtu(run, A2, B2, '/sbin/ip'), 1280);
    assert.equal(calls[0]?.argv[0], '/sbin/ip');
  });

  it('no route: PathMtuError with ip\'s message (or the exit status)', async () => {
    const { run, calls } = fakeRunner({ [ROUTE_GET]: { code: 2, stderr: 'RTNETLINK answers: Network is unreachable\n' } });
    await assert.rejects(lookupPathMtu(run, A2, B2), (e: unknown) => {
      assert.ok(e instanceof PathMtuError);
      assert.equal(e.name, 'PathMtuError');
      assert.match(e.message, new RegExp(`no route ${A2} → ${B2}: RTNETLINK answers: Network is unreachable$`));
      return true;
    });
    assert.equal(calls.length, 1, 'no link lookup');
    const silent = fakeRunner({ [ROUTE_GET]: { code: 255, stderr: '' } });
    await assert.rejects(lookupPathMtu(silent.run, A2, B2), (e: unknown) => e instanceof PathMtuError && /exit 255/.test(e.message));
    const killed = fakeRunner({ [ROUTE_GET]: { code: null, signal: 'SIGKILL' } });
    await assert.rejects(lookupPathMtu(killed.run, A2, B2), PathMtuError);
  });

  it('a route that names no device: PathMtuError', async () => {
    const { run } = fakeRunner({ [ROUTE_GET]: { stdout: `unreachable ${B2} from ${A2} metric 1024 error -101 pref medium\n` } });
    await assert.rejects(lookupPathMtu(run, A2, B2), (e: unknown) => e instanceof PathMtuError && /names no device/.test(e.message));
  });

  it('a device whose MTU cannot be read: PathMtuError', async () => {
    const failing = fakeRunner({
      [ROUTE_GET]: { stdout: `${B2} dev veth0 metric 256\n` },
      [LINK_VETH0]: { code: 1, stderr: 'Device "veth0" does not exist.\n' },
    });
    await assert.rejects(lookupPathMtu(failing.run, A2, B2), (e: unknown) => e instanceof PathMtuError && /cannot read the MTU of veth0: Device "veth0" does not exist\./.test(e.message));
    const noMtu = fakeRunner({ [ROUTE_GET]: { stdout: `${B2} dev veth0 metric 256\n` }, [LINK_VETH0]: { stdout: '3: veth0@if2: <NO-CARRIER> qdisc noop\n' } });
    await assert.rejects(lookupPathMtu(noMtu.run, A2, B2), PathMtuError);
  });

  it('a Runner that cannot start ip: its error propagates', async () => {
    const enoent = Object.assign(new Error('spawn ip ENOENT'), { code: 'ENOENT' });
    const run: Runner = () => Promise.reject(enoent);
    await assert.rejects(lookupPathMtu(run, A2, B2), (e) => e === enoent);
  });
});
