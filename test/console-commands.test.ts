/**
 * The admin console's command parser: every command, the forgiving input rules (case, spaces,
 * nc's trailing newline) and every error, each returned with a one-line message and a usage.
 */
import { strict as assert } from 'node:assert';
import {
  CONSOLE_COMMAND_LIST,
  CONSOLE_COMMANDS,
  CONSOLE_HELP,
  ConsoleCommand,
  ConsoleCommandError,
  ConsoleCommandKind,
  MAX_CONSOLE_COMMAND_BYTES,
  parseConsoleCommand,
  usageOf,
} from '../shim6d/console-commands';

function parsed(text: string): ConsoleCommand {
  const r = parseConsoleCommand(text);
  if (r instanceof ConsoleCommandError) assert.fail(`${JSON.stringify(text)}: unexpected error: ${r.message}`);
  return r;
}

function failed(text: string): ConsoleCommandError {
  const r = parseConsoleCommand(text);
  if (!(r instanceof ConsoleCommandError)) assert.fail(`${JSON.stringify(text)}: parsed as ${JSON.stringify(r)}, expected an error`);
  assert.notEqual(r.message, '', 'message is empty');
  assert.doesNotMatch(r.message, /\n/, 'message is not one line');
  assert.notEqual(r.usage.trim(), '', 'usage is empty');
  return r;
}

describe('admin console commands', () => {
  describe('each command', () => {
    const cases: [string, ConsoleCommand][] = [
      ['help', { kind: 'help' }],
      ['dump', { kind: 'dump', json: false }],
      ['dump json', { kind: 'dump', json: true }],
      ['stats', { kind: 'stats' }],
      ['context 2001:db8:1::a 2001:db8:2::b', { kind: 'context', srcUlid: '2001:db8:1::a', dstUlid: '2001:db8:2::b' }],
      ['delete 2001:db8:1::a 2001:db8:2::b', { kind: 'delete', srcUlid: '2001:db8:1::a', dstUlid: '2001:db8:2::b' }],
      ['update 42', { kind: 'update', contextId: 42 }],
      ['shim 7 2001:db8:10::1 2001:db8:20::2', { kind: 'shim', contextId: 7, srcLocator: '2001:db8:10::1', dstLocator: '2001:db8:20::2' }],
      ['deshim 7', { kind: 'deshim', contextId: 7 }],
    ];
    for (const [text, expected] of cases) {
      it(`parses '${text}'`, () => assert.deepEqual(parsed(text), expected));
    }

    it('covers every command kind', () => {
      assert.deepEqual([...new Set(cases.map(([, c]) => c.kind))].sort(), [...CONSOLE_COMMANDS].sort());
    });
  });

  describe('input rules', () => {
    it('ignores case in command words and the json option', () => {
      assert.deepEqual(parsed('HELP'), { kind: 'help' });
      assert.deepEqual(parsed('Dump JSON'), { kind: 'dump', json: true });
      assert.deepEqual(parsed('sTaTs'), { kind: 'stats' });
      assert.deepEqual(parsed('DeShim 3'), { kind: 'deshim', contextId: 3 });
    });

    it("ignores nc's trailing newline, a CRLF and surrounding whitespace", () => {
      assert.deepEqual(parsed('stats\n'), { kind: 'stats' });
      assert.deepEqual(parsed('dump json\r\n'), { kind: 'dump', json: true });
      assert.deepEqual(parsed(' \t update 5 \t\n'), { kind: 'update', contextId: 5 });
    });

    it('collapses runs of spaces and tabs between words', () => {
      assert.deepEqual(parsed('shim   9\t\t2001:db8::1 \t 2001:db8::2'), {
        kind: 'shim',
        contextId: 9,
        srcLocator: '2001:db8::1',
        dstLocator: '2001:db8::2',
      });
    });

    it('returns addresses in canonical text', () => {
      assert.deepEqual(parsed('context 2001:0DB8:0000:0000:0000:0000:0000:000A 2001:db8:0:0:1:0:0:1'), {
        kind: 'context',
        srcUlid: '2001:db8::a',
        dstUlid: '2001:db8::1:0:0:1',
      });
      assert.deepEqual(parsed('delete ::ffff:192.0.2.1 0::1'), { kind: 'delete', srcUlid: '::ffff:c000:201', dstUlid: '::1' });
    });

    it('accepts context ids 1 and 2^31-1, and leading zeros', () => {
      assert.deepEqual(parsed('update 1'), { kind: 'update', contextId: 1 });
      assert.deepEqual(parsed('update 2147483647'), { kind: 'update', contextId: 2147483647 });
      assert.deepEqual(parsed('deshim 007'), { kind: 'deshim', contextId: 7 });
    });

    it('accepts a datagram of exactly the maximum size', () => {
      const text = `stats${' '.repeat(MAX_CONSOLE_COMMAND_BYTES - 'stats'.length - 1)}\n`;
      assert.equal(Buffer.byteLength(text), MAX_CONSOLE_COMMAND_BYTES);
      assert.deepEqual(parsed(text), { kind: 'stats' });
    });
  });

  describe('errors', () => {
    it('an unknown command, with the command list as usage', () => {
      const e = failed('frobnicate 1');
      assert.equal(e.message, "unknown command 'frobnicate'");
      assert.equal(e.usage, CONSOLE_COMMAND_LIST);
      assert.equal(e.command, undefined);
      for (const k of CONSOLE_COMMANDS) assert.match(e.usage, new RegExp(`\\b${k}\\b`));
    });

    it('an empty datagram, or only whitespace, with the command list as usage', () => {
      for (const text of ['', '\n', ' \t \r\n']) {
        const e = failed(text);
        assert.equal(e.message, 'empty command');
        assert.equal(e.usage, CONSOLE_COMMAND_LIST);
      }
    });

    it('missing arguments, naming them, with the usage of the command', () => {
      const cases: [string, string, ConsoleCommandKind][] = [
        ['context', 'context: missing <src-ulid> <dst-ulid>', 'context'],
        ['context ::1', 'context: missing <dst-ulid>', 'context'],
        ['delete ::1', 'delete: missing <dst-ulid>', 'delete'],
        ['update', 'update: missing <context-id>', 'update'],
        ['shim 1 ::1', 'shim: missing <dst-loc>', 'shim'],
        ['SHIM', 'shim: missing <context-id> <src-loc> <dst-loc>', 'shim'],
        ['deshim', 'deshim: missing <context-id>', 'deshim'],
      ];
      for (const [text, message, kind] of cases) {
        const e = failed(text);
        assert.equal(e.message, message);
        assert.equal(e.usage, usageOf(kind));
        assert.equal(e.command, kind);
      }
    });

    it('extra arguments, naming the first one', () => {
      const cases: [string, string][] = [
        ['help me', "help: unexpected argument 'me'"],
        ['stats now', "stats: unexpected argument 'now'"],
        ['dump json please', "dump: unexpected argument 'please'"],
        ['context ::1 ::2 ::3', "context: unexpected argument '::3'"],
        ['delete ::1 ::2 x', "delete: unexpected argument 'x'"],
        ['update 1 2', "update: unexpected argument '2'"],
        ['shim 1 ::1 ::2 ::3', "shim: unexpected argument '::3'"],
        ['deshim 1 ::1', "deshim: unexpected argument '::1'"],
      ];
      for (const [text, message] of cases) assert.equal(failed(text).message, message);
    });

    it('an unknown dump option', () => {
      const e = failed('dump xml');
      assert.equal(e.message, "dump: unknown option 'xml'");
      assert.equal(e.usage, 'dump [json] [from <context-id>]');
    });

    it('dump pages: json and from in that order, from with a context id', () => {
      assert.deepEqual(parsed('dump from 7'), { kind: 'dump', json: false, from: 7 });
      assert.deepEqual(parsed('DUMP JSON FROM 0042'), { kind: 'dump', json: true, from: 42 });
      const cases: [string, string][] = [
        ['dump from', 'dump: missing <context-id> after from'],
        ['dump json from 0', "dump: '0' is not a context id (a decimal integer 1..2147483647)"],
        ['dump from x', "dump: 'x' is not a context id (a decimal integer 1..2147483647)"],
        ['dump from 3 json', "dump: unexpected argument 'json'"],
        ['dump json json', "dump: unexpected argument 'json'"],
        ['dump from 1 from 2', "dump: unexpected argument 'from'"],
      ];
      for (const [text, message] of cases) assert.equal(failed(text).message, message);
    });

    it('a bad address, in any position', () => {
      const cases: [string, string][] = [
        ['shim 1 zz::1 ::2', "shim: 'zz::1' is not an IPv6 address"],
        ['shim 1 ::1 2001:db8::1::2', "shim: '2001:db8::1::2' is not an IPv6 address"],
        ['context 192.0.2.1 ::1', "context: '192.0.2.1' is not an IPv6 address"],
        ['delete ::1 localhost', "delete: 'localhost' is not an IPv6 address"],
        ['context fe80::1%eth0 ::1', "context: 'fe80::1%eth0' is not an IPv6 address"],
      ];
      for (const [text, message] of cases) {
        const e = failed(text);
        assert.equal(e.message, message);
        assert.equal(e.usage, usageOf(e.command ?? 'help'));
      }
    });

    it('a bad context id: 0, -1, abc, 2^31 and other non-decimal forms', () => {
      for (const id of ['0', '-1', 'abc', '2147483648', '99999999999999999999', '+5', '1.0', '1e3', '0x10', '00']) {
        for (const text of [`update ${id}`, `deshim ${id}`, `shim ${id} ::1 ::2`]) {
          const e = failed(text);
          assert.match(e.message, new RegExp(`^(update|deshim|shim): '${id.replace(/[.+]/g, '\\$&')}' is not a context id \\(a decimal integer 1\\.\\.2147483647\\)$`));
        }
      }
    });

    it('a datagram over the maximum size', () => {
      const text = `stats${' '.repeat(MAX_CONSOLE_COMMAND_BYTES - 'stats'.length)}\n`;
      const e = failed(text);
      assert.equal(e.message, `datagram too long (${MAX_CONSOLE_COMMAND_BYTES + 1} bytes; at most ${MAX_CONSOLE_COMMAND_BYTES})`);
      assert.equal(e.usage, CONSOLE_COMMAND_LIST);
      // Counted in UTF-8 octets, not characters.
      assert.match(failed(`stats ${'é'.repeat(600)}`).message, /^datagram too long \(1206 bytes/);
    });

    it('control and other non-printable characters', () => {
      const cases: [string, string][] = [
        ['stats\x00', 'non-printable character U+0000 at offset 5'],
        ['\x07help', 'non-printable character U+0007 at offset 0'],
        ['dump\x1b[2J', 'non-printable character U+001B at offset 4'],
        ['stats\x7f', 'non-printable character U+007F at offset 5'],
        ['stats\u0085', 'non-printable character U+0085 at offset 5'],
        ['he\u200blp', 'non-printable character U+200B at offset 2'],
      ];
      for (const [text, message] of cases) {
        const e = failed(text);
        assert.equal(e.message, message);
        assert.equal(e.usage, CONSOLE_COMMAND_LIST);
      }
    });

    it('more than one command in a datagram', () => {
      for (const text of ['stats\nhelp', 'stats\rhelp\n', 'dump\n\nstats']) {
        assert.equal(failed(text).message, 'one command per datagram (found a line break inside)');
      }
    });
  });

  describe('help and usage', () => {
    it('usageOf gives the arguments of each command', () => {
      assert.deepEqual(
        CONSOLE_COMMANDS.map((k) => usageOf(k)),
        [
          'help',
          'dump [json] [from <context-id>]',
          'stats',
          'context <src-ulid> <dst-ulid>',
          'delete <src-ulid> <dst-ulid>',
          'update <context-id>',
          'shim <context-id> <src-loc> <dst-loc>',
          'deshim <context-id>',
        ],
      );
    });

    it('CONSOLE_HELP has a line per command: its usage and a meaning', () => {
      const lines = CONSOLE_HELP.split('\n');
      for (const k of CONSOLE_COMMANDS) {
        const line = lines.find((l) => l.trimStart().startsWith(`${usageOf(k)} `));
        assert.ok(line, `no help line for ${k}`);
        assert.match(line.slice(line.indexOf(usageOf(k)) + usageOf(k).length), /\S/, `no meaning for ${k}`);
      }
      assert.ok(CONSOLE_HELP.endsWith('\n'));
    });

    it('the error messages of several mistakes are distinct and one line each', () => {
      const texts = ['nope', '', 'update', 'update 0', 'shim 1 zz::1 ::1', 'stats x', 'dump yaml', '\x01', 'a\nb', 'x'.repeat(2000)];
      const messages = texts.map((t) => failed(t).message);
      assert.equal(new Set(messages).size, texts.length);
    });
  });
});
