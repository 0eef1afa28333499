/**
 * The admin console's command language: one command per datagram, parsed without I/O.
 *
 *   parseConsoleCommand('shim 7 2001:db8:1::a 2001:DB8:2::b\n')
 *     → { kind: 'shim', contextId: 7, srcLocator: '2001:db8:1::a', dstLocator: '2001:db8:2::b' }
 *
 * Surrounding whitespace (and the newline nc sends) is ignored, runs of spaces and tabs separate
 * words, command words are case-insensitive, and addresses come back in canonical text
 * (RFC 5952) so they can be used as map keys. Bad input is never thrown: the parser returns a
 * ConsoleCommandError with a one-line message and the usage to show the operator.
 */
import { canonicalIPv6 } from '../protocol/address';

/** Longest datagram accepted, in octets (UTF-8), before any trimming. */
export const MAX_CONSOLE_COMMAND_BYTES = 1024;

/** Largest context id the console accepts (context ids are positive 31-bit integers). */
export const MAX_CONSOLE_CONTEXT_ID = 2 ** 31 - 1;

export type ConsoleCommand =
  /** List the commands. */
  | { kind: 'help' }
  /**
   * Show the contexts, in id order from `from` (default: the first), as many as one reply
   * holds; as one JSON document if `json`. The reply says where the next page starts.
   */
  | { kind: 'dump'; json: boolean; from?: number }
  /** Daemon counters. */
  | { kind: 'stats' }
  /** Start the context exchange (I1) for this ULID pair now. */
  | { kind: 'context'; srcUlid: string; dstUlid: string }
  /** Tear down the context of this ULID pair. */
  | { kind: 'delete'; srcUlid: string; dstUlid: string }
  /** Send a locator update for this context. */
  | { kind: 'update'; contextId: number }
  /** Move this context to the locator pair given. */
  | { kind: 'shim'; contextId: number; srcLocator: string; dstLocator: string }
  /** Move this context back to its ULID pair. */
  | { kind: 'deshim'; contextId: number };

export type ConsoleCommandKind = ConsoleCommand['kind'];

/** Why a datagram is not a command, and what the operator should have sent. Returned, never thrown. */
export class ConsoleCommandError {
  readonly name = 'ConsoleCommandError';
  constructor(
    /** One line, e.g. `shim: 'zz::1' is not an IPv6 address`. */
    readonly message: string,
    /** The usage line of the command concerned, or the command list if no command was recognised. */
    readonly usage: string,
    /** The command concerned, if the first word named one. */
    readonly command?: ConsoleCommandKind,
  ) {}

  toString(): string {
    return `${this.message} (usage: ${this.usage})`;
  }
}

type ArgumentType = 'address' | 'context-id';

interface CommandSpec {
  /** Argument names as shown in the usage, in order. */
  readonly args: readonly { readonly name: string; readonly type: ArgumentType }[];
  /** Text after the arguments in the usage (optional words). */
  readonly optional?: string;
  readonly meaning: string;
}

const SRC_ULID = { name: 'src-ulid', type: 'address' } as const;
const DST_ULID = { name: 'dst-ulid', type: 'address' } as const;
const CONTEXT_ID = { name: 'context-id', type: 'context-id' } as const;

const SPECS: { readonly [K in ConsoleCommandKind]: CommandSpec } = {
  help: { args: [], meaning: 'list the commands' },
  dump: { args: [], optional: '[json] [from <context-id>]', meaning: "show the contexts from this id on, as many as one reply holds (one JSON document with 'json')" },
  stats: { args: [], meaning: 'show the daemon counters' },
  context: { args: [SRC_ULID, DST_ULID], meaning: 'start the context exchange for this ULID pair now' },
  delete: { args: [SRC_ULID, DST_ULID], meaning: 'tear down the context of this ULID pair' },
  update: { args: [CONTEXT_ID], meaning: 'send a locator update for this context' },
  shim: {
    args: [CONTEXT_ID, { name: 'src-loc', type: 'address' }, { name: 'dst-loc', type: 'address' }],
    meaning: 'move the context to this locator pair',
  },
  deshim: { args: [CONTEXT_ID], meaning: 'move the context back to its ULID pair' },
};

/** The command words, in the order help lists them. */
export const CONSOLE_COMMANDS: readonly ConsoleCommandKind[] = ['help', 'dump', 'stats', 'context', 'delete', 'update', 'shim', 'deshim'];

function isCommandKind(word: string): word is ConsoleCommandKind {
  return Object.prototype.hasOwnProperty.call(SPECS, word);
}

/** The usage line of a command, e.g. `shim <context-id> <src-loc> <dst-loc>`. */
export function usageOf(kind: ConsoleCommandKind): string {
  const spec = SPECS[kind];
  return [kind, ...spec.args.map((a) => `<${a.name}>`), ...(spec.optional ? [spec.optional] : [])].join(' ');
}

/** The usage shown when no command was recognised: every command word, on one line. */
export const CONSOLE_COMMAND_LIST = `${CONSOLE_COMMANDS.map((k) => (k === 'dump' ? usageOf(k) : k)).join(' | ')} ('help' shows the arguments)`;

const usageWidth = Math.max(...CONSOLE_COMMANDS.map((k) => usageOf(k).length));

/** The reply to `help`: every command with its arguments and what it does. */
export const CONSOLE_HELP = [
  'shim6d admin console: one command per datagram, one reply.',
  ...CONSOLE_COMMANDS.map((k) => `  ${usageOf(k).padEnd(usageWidth)}  ${SPECS[k].meaning}`),
  'Addresses are IPv6 literals; a context id is a decimal integer 1..2147483647.',
  '',
].join('\n');

/** Controls and other non-printable code points (Unicode category C), except the ASCII whitespace. */
const NON_PRINTABLE = /(?![\t\n\v\f\r])[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}]/u;
const EDGE_WHITESPACE = /^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g;
const LINE_BREAK = /[\n\v\f\r]/;

function describeCodePoint(text: string, index: number): string {
  const cp = text.codePointAt(index) ?? 0;
  return `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
}

function parseAddress(word: string): string | undefined {
  // parseIPv6 drops a zone index; on the console it would be silently ignored, so refuse it.
  if (word.includes('%')) return undefined;
  return canonicalIPv6(word);
}

function parseContextId(word: string): number | undefined {
  if (!/^[0-9]+$/.test(word)) return undefined;
  const digits = word.replace(/^0+(?=.)/, '');
  if (digits.length > 10) return undefined;
  const n = Number(digits);
  return n >= 1 && n <= MAX_CONSOLE_CONTEXT_ID ? n : undefined;
}

/** Parses one datagram's text into a command, or says what is wrong with it. */
export function parseConsoleCommand(text: string): ConsoleCommand | ConsoleCommandError {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_CONSOLE_COMMAND_BYTES) {
    return new ConsoleCommandError(`datagram too long (${bytes} bytes; at most ${MAX_CONSOLE_COMMAND_BYTES})`, CONSOLE_COMMAND_LIST);
  }
  const bad = NON_PRINTABLE.exec(text);
  if (bad) {
    return new ConsoleCommandError(
      `non-printable character ${describeCodePoint(text, bad.index)} at offset ${bad.index}`,
      CONSOLE_COMMAND_LIST,
    );
  }
  const line = text.replace(EDGE_WHITESPACE, '');
  if (line === '') return new ConsoleCommandError('empty command', CONSOLE_COMMAND_LIST);
  if (LINE_BREAK.test(line)) return new ConsoleCommandError('one command per datagram (found a line break inside)', CONSOLE_COMMAND_LIST);

  const [first = '', ...words] = line.split(/[ \t]+/);
  const kind = first.toLowerCase();
  if (!isCommandKind(kind)) return new ConsoleCommandError(`unknown command '${first}'`, CONSOLE_COMMAND_LIST);
  const fail = (message: string): ConsoleCommandError => new ConsoleCommandError(`${kind}: ${message}`, usageOf(kind), kind);

  if (kind === 'dump') {
    let rest = words;
    const json = rest[0]?.toLowerCase() === 'json';
    if (json) rest = rest.slice(1);
    let from: number | undefined;
    if (rest[0]?.toLowerCase() === 'from') {
      const word = rest[1];
      if (word === undefined) return fail('missing <context-id> after from');
      from = parseContextId(word);
      if (from === undefined) return fail(`'${word}' is not a context id (a decimal integer 1..${MAX_CONSOLE_CONTEXT_ID})`);
      rest = rest.slice(2);
    }
    const extra = rest[0];
    if (extra !== undefined) {
      return fail(rest === words ? `unknown option '${extra}'` : `unexpected argument '${extra}'`);
    }
    return from === undefined ? { kind, json } : { kind, json, from };
  }

  const spec = SPECS[kind];
  const missing = spec.args.slice(words.length);
  if (missing.length > 0) return fail(`missing ${missing.map((a) => `<${a.name}>`).join(' ')}`);
  const extra = words[spec.args.length];
  if (extra !== undefined) return fail(`unexpected argument '${extra}'`);

  // Validated arguments by position: addresses (canonical text) and context ids.
  const address: string[] = [];
  const id: number[] = [];
  for (const [i, arg] of spec.args.entries()) {
    const word = words[i] ?? '';
    if (arg.type === 'context-id') {
      const n = parseContextId(word);
      if (n === undefined) return fail(`'${word}' is not a context id (a decimal integer 1..${MAX_CONSOLE_CONTEXT_ID})`);
      id[i] = n;
    } else {
      const a = parseAddress(word);
      if (a === undefined) return fail(`'${word}' is not an IPv6 address`);
      address[i] = a;
    }
  }
  switch (kind) {
    case 'help':
    case 'stats':
      return { kind };
    case 'context':
    case 'delete':
      return { kind, srcUlid: address[0], dstUlid: address[1] };
    case 'update':
    case 'deshim':
      return { kind, contextId: id[0] };
    case 'shim':
      return { kind, contextId: id[0], srcLocator: address[1], dstLocator: address[2] };
  }
}
