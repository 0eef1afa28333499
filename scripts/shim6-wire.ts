/**
 * shim6-wire — send and receive single Shim6 control messages on a raw IPv6 socket, for
 * troubleshooting a path ("does Shim6 get through between these two locators?") and for
 * the demo. Run it as root, inside the network namespace of the host.
 *
 *   shim6-wire listen [--count N] [--timeout-ms MS]
 *   shim6-wire send --from ADDR --to ADDR --type TYPE [--tag N] [--nonce N]
 *
 * listen prints one JSON line per message received: {"source","type",...} when it decodes,
 * {"source","error":{code,offset,message}} when it does not (the daemon would count it).
 * Exit codes: 0 done, 1 listen timed out before N messages / send failed, 2 usage.
 */
import { canonicalIPv6 } from '../protocol/address';
import { ControlMessage, decodeControlMessage, encodeControlMessage } from '../protocol/control-message';
import { MessageType, MessageTypeName } from '../protocol/constants';
import { Shim6Receiver, Shim6Sender } from '../protocol/shim6-socket';

const USAGE = `usage: shim6-wire listen [--count N] [--timeout-ms MS]
       shim6-wire send --from ADDR --to ADDR --type TYPE [--tag N] [--nonce N]

TYPE: ${Object.keys(MessageType).join(', ')}
listen prints one JSON line per Shim6 message received; send sends one message of TYPE
from the exact source locator ADDR. Exit codes: 0 done, 1 timeout or send failure, 2 usage.`;

class UsageError extends Error {}

function parseArgs(argv: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--help' || a === '-h') throw new UsageError('');
    if (!a.startsWith('--')) throw new UsageError(`unexpected argument '${a}'`);
    const v = argv[i + 1];
    if (v === undefined) throw new UsageError(`${a} needs a value`);
    out.set(a.slice(2), v);
    i++;
  }
  return out;
}

function num(args: Map<string, string>, key: string, fallback: number): number {
  const v = args.get(key);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new UsageError(`--${key}: not a non-negative integer: '${v}'`);
  return n;
}

/** A message of the given type with plausible fields (tags and nonces from the arguments). */
export function sampleOf(type: MessageTypeName, tag: number, nonce: number, from: string, to: string): ControlMessage {
  const locators = [{ address: from, verificationMethod: 1 }];
  switch (type) {
    case 'I1': return { type, initiatorContextTag: tag, initiatorNonce: nonce, options: [] };
    case 'R1': return { type, initiatorNonce: nonce, responderNonce: nonce + 1, options: [{ kind: 'ResponderValidator', validator: Buffer.alloc(20, 0x5a) }] };
    case 'I2': return { type, initiatorContextTag: tag, initiatorNonce: nonce, responderNonce: nonce + 1, options: [{ kind: 'ResponderValidator', validator: Buffer.alloc(20, 0x5a) }, { kind: 'LocatorList', generation: 1, locators }] };
    case 'R2': return { type, responderContextTag: tag, initiatorNonce: nonce, options: [{ kind: 'LocatorList', generation: 1, locators }] };
    case 'R1bis': return { type, packetContextTag: tag, responderNonce: nonce, options: [{ kind: 'ResponderValidator', validator: Buffer.alloc(20, 0x5a) }] };
    case 'I2bis': return { type, initiatorContextTag: tag, initiatorNonce: nonce, responderNonce: nonce + 1, packetContextTag: tag + 1, options: [{ kind: 'ResponderValidator', validator: Buffer.alloc(20, 0x5a) }, { kind: 'LocatorList', generation: 1, locators }] };
    case 'UpdateRequest': return { type, receiverContextTag: tag, requestNonce: nonce, options: [{ kind: 'LocatorList', generation: 2, locators }] };
    case 'UpdateAcknowledgement': return { type, receiverContextTag: tag, requestNonce: nonce, options: [] };
    case 'Keepalive': return { type, receiverContextTag: tag, options: [] };
    case 'Probe': return { type, receiverContextTag: tag, reapState: 1, sentProbes: [{ source: from, destination: to, nonce, data: 0 }], receivedProbes: [], options: [] };
    case 'Error': return { type, errorCode: 0, pointer: 42, packetInError: Buffer.alloc(48) };
  }
}

/** One line of what a message says, without its options' octets. */
function summary(m: ControlMessage): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(m)) {
    if (k === 'options' && Array.isArray(v)) out[k] = v.map((o: { kind: string }) => o.kind);
    else if (Buffer.isBuffer(v)) out[k] = `${v.length} octets`;
    else out[k] = v;
  }
  return out;
}

async function listen(args: Map<string, string>): Promise<number> {
  const count = num(args, 'count', 1);
  const timeoutMs = num(args, 'timeout-ms', 10_000);
  const socket = new Shim6Receiver();
  let seen = 0;
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      socket.close();
      resolve(1);
    }, timeoutMs);
    socket.on('error', (e) => console.error(`shim6-wire: ${e.message}`));
    socket.on('message', ({ message, source }) => {
      const r = decodeControlMessage(message, { strictReserved: false });
      const line = r.ok ? { source, ...summary(r.value.message) } : { source, error: r.error };
      process.stdout.write(`${JSON.stringify(line)}\n`);
      if (++seen >= count) {
        clearTimeout(timer);
        socket.close();
        resolve(0);
      }
    });
    process.stderr.write(`shim6-wire: listening for ${count} Shim6 message(s)\n`);
  });
}

function send(args: Map<string, string>): number {
  const from = canonicalIPv6(args.get('from') ?? '');
  const to = canonicalIPv6(args.get('to') ?? '');
  if (!from || !to) throw new UsageError('--from and --to must be IPv6 addresses');
  const type = args.get('type') as MessageTypeName | undefined;
  if (type === undefined || !(type in MessageType)) throw new UsageError(`--type must be one of: ${Object.keys(MessageType).join(', ')}`);
  const wire = encodeControlMessage(sampleOf(type, num(args, 'tag', 1), num(args, 'nonce', 1), from, to));
  const sender = new Shim6Sender();
  try {
    sender.send(wire, from, to);
  } finally {
    sender.close();
  }
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === 'listen') return await listen(parseArgs(rest));
    if (command === 'send') return send(parseArgs(rest));
    if (command === '--help' || command === '-h') {
      console.log(USAGE);
      return 0;
    }
    throw new UsageError(command === undefined ? 'no command given' : `unknown command '${command}'`);
  } catch (e) {
    if (e instanceof UsageError) {
      if (e.message) console.error(`shim6-wire: ${e.message}`);
      console.error(USAGE);
      return e.message ? 2 : 0;
    }
    console.error(`shim6-wire: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

/** Runs the tool with `argv` (without node and script) and exits with its code. */
export function cli(argv: string[]): void {
  main(argv).then((code) => process.exit(code), () => process.exit(1));
}

if (require.main === module) cli(process.argv.slice(2));
