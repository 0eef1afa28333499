/**
 * The messages between shim6d and reapd, and their validator. Every message is one JSON
 * object with a `type`; ipc/README.md describes each one and when it is sent.
 *
 *   const msg = validateMessage(JSON.parse(text));      // throws IpcProtocolError
 *   const m = validateShimdToReapd(value);              // also refuses a reapd-to-shim6d type
 *   catch (e) { if (e instanceof IpcProtocolError) log.warn('bad IPC message', { path: e.path, error: e.detail }) }
 *
 * Validation is total and closed: every field is checked (type, range, canonical RFC 5952
 * address text, list sizes, duplicates) and a key that is not part of the message is an
 * error naming it, so a peer speaking another version is noticed instead of half understood.
 * The validator returns its argument, typed; it never copies or changes it.
 */
import { childKey as at, showValue } from '../common/config-schema';
import { canonicalIPv6 } from '../protocol/address';
import { MAX_CONTEXT_TAG } from '../protocol/constants';
import { isContextTag } from '../protocol/context-tag';

/** The protocol version. A peer whose hello carries another one is refused (ipc/README.md). */
export const IPC_VERSION = 1;

/** Most contexts in one `sync` (and entries in one `activity`). */
export const MAX_IPC_CONTEXTS = 100_000;
/** Most locators in each locator list of a context. */
export const MAX_IPC_LOCATORS = 64;
/** Most entries in a REAP status's probe history. */
export const MAX_PROBE_HISTORY = 32;
/** Longest `reason` or error `message`, in UTF-16 code units. */
export const MAX_IPC_TEXT = 256;
/** Bounds of a `reap-packet`'s decoded octets: an IPv6 header and a Shim6 message, up to 65535. */
export const MIN_REAP_PACKET_BYTES = 48;
export const MAX_REAP_PACKET_BYTES = 65535;

export type IpcDaemon = 'shim6d' | 'reapd';

/** A locator pair, each address in canonical text (RFC 5952). */
export interface IpcLocatorPair {
  local: string;
  peer: string;
}

/** A context as reapd needs it. */
export interface IpcContext {
  /** shim6d's context id: a positive integer, unique in a sync. */
  id: number;
  localUlid: string;
  peerUlid: string;
  /** 47-bit context tag the peer puts in packets to us (unique in a sync). */
  localContextTag: number;
  /** 47-bit context tag we put in packets to the peer. */
  peerContextTag: number;
  /** 1..64 canonical addresses, no duplicates. */
  localLocators: string[];
  /** 1..64 canonical addresses, no duplicates. */
  peerLocators: string[];
  /** The locator pair the context uses now. */
  current: IpcLocatorPair;
  /** The Keepalive Timeout the peer asked for (RFC 5534 section 5.2), seconds 1..65535. */
  peerKeepaliveTimeout?: number;
}

/** REAP's states (RFC 5534 section 4.2). */
export type ReapStateName = 'operational' | 'exploring' | 'inbound-ok';

export const REAP_STATE_NAMES: readonly ReapStateName[] = ['operational', 'exploring', 'inbound-ok'];

/** One Probe sent or received. */
export interface ProbeRecord {
  /** Milliseconds since the epoch. */
  at: number;
  direction: 'sent' | 'received';
  local: string;
  peer: string;
  /** The Probe's 32-bit nonce. */
  nonce: number;
}

/** What reapd knows of one context. */
export interface IpcReapStatus {
  id: number;
  state: ReapStateName;
  /** When the context entered `state`, milliseconds since the epoch. */
  since: number;
  probesSent: number;
  probesReceived: number;
  keepalivesSent: number;
  keepalivesReceived: number;
  current: IpcLocatorPair;
  /** The latest Probes, oldest first, at most 32. */
  history: ProbeRecord[];
}

/** Both directions: the first message on a connection. */
export interface IpcHelloMessage {
  type: 'hello';
  version: number;
  daemon: IpcDaemon;
  pid: number;
}

/** Both directions: why the sender is closing (version mismatch, a bad hello). */
export interface IpcErrorMessage {
  type: 'error';
  message: string;
}

/** shim6d → reapd: every context, after each connect; reapd forgets the contexts not in it. */
export interface IpcSyncMessage {
  type: 'sync';
  contexts: IpcContext[];
}

/** shim6d → reapd: one context added or changed. */
export interface IpcContextMessage {
  type: 'context';
  context: IpcContext;
}

/** shim6d → reapd: a context is gone. */
export interface IpcContextRemovedMessage {
  type: 'context-removed';
  id: number;
  reason: string;
}

/** Cumulative packet counts of one context; a change means traffic. */
export interface IpcActivityEntry {
  id: number;
  sent: number;
  received: number;
}

/** shim6d → reapd: packet counters of the contexts with traffic. */
export interface IpcActivityMessage {
  type: 'activity';
  contexts: IpcActivityEntry[];
}

/** shim6d → reapd: a whole received IPv6 packet carrying a Keepalive or a Probe, base64. */
export interface IpcReapPacketMessage {
  type: 'reap-packet';
  packet: string;
}

/** shim6d → reapd: explore now (the locator in use disappeared). */
export interface IpcExploreMessage {
  type: 'explore';
  id: number;
  reason: string;
}

/** reapd → shim6d: exploration found this working pair; move the context there. */
export interface IpcPairMessage {
  type: 'pair';
  id: number;
  local: string;
  peer: string;
}

/** reapd → shim6d: REAP's view of one context. */
export interface IpcReapStatusMessage {
  type: 'reap-status';
  status: IpcReapStatus;
}

/** reapd → shim6d: reapd no longer tracks this context. */
export interface IpcReapRemovedMessage {
  type: 'reap-removed';
  id: number;
}

export type ShimdToReapd =
  | IpcHelloMessage
  | IpcSyncMessage
  | IpcContextMessage
  | IpcContextRemovedMessage
  | IpcActivityMessage
  | IpcReapPacketMessage
  | IpcExploreMessage
  | IpcErrorMessage;

export type ReapdToShimd = IpcHelloMessage | IpcPairMessage | IpcReapStatusMessage | IpcReapRemovedMessage | IpcErrorMessage;

export type IpcMessage = ShimdToReapd | ReapdToShimd;

export type IpcMessageType = IpcMessage['type'];

/** Message types shim6d sends. */
export const SHIMD_TO_REAPD_TYPES: ReadonlySet<IpcMessageType> = new Set<ShimdToReapd['type']>([
  'hello',
  'sync',
  'context',
  'context-removed',
  'activity',
  'reap-packet',
  'explore',
  'error',
]);

/** Message types reapd sends. */
export const REAPD_TO_SHIMD_TYPES: ReadonlySet<IpcMessageType> = new Set<ReapdToShimd['type']>(['hello', 'pair', 'reap-status', 'reap-removed', 'error']);

/** A message (or frame body) that is not a valid IPC message; `path` names the bad field. */
export class IpcProtocolError extends Error {
  override readonly name = 'IpcProtocolError';

  /**
   * @param path the offending field, dotted with array indices (`contexts[3].current.peer`);
   *   '' for the message as a whole
   * @param detail what is wrong, without the path
   */
  constructor(
    readonly path: string,
    readonly detail: string,
  ) {
    super(path === '' ? `IPC message: ${detail}` : `IPC message field '${path}': ${detail}`);
  }
}

// ---- checkers: each returns its value typed, or throws an IpcProtocolError at `path` ----

type Fields = Record<string, unknown>;

function fail(path: string, detail: string): never {
  throw new IpcProtocolError(path, detail);
}

/** A plain object with exactly `required` keys and any of `optional`; unknown keys are errors. */
function object(value: unknown, path: string, required: readonly string[], optional: readonly string[] = []): Fields {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(path, `expected an object, got ${showValue(value)}`);
  const fields = value as Fields;
  for (const key of Object.keys(fields)) {
    if (!required.includes(key) && !optional.includes(key)) {
      fail(at(path, key), `unknown key (expected one of: ${[...required, ...optional].join(', ')})`);
    }
  }
  for (const key of required) {
    if (fields[key] === undefined) fail(at(path, key), 'missing');
  }
  return fields;
}

function integer(value: unknown, path: string, min: number, max: number, what?: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(path, `expected ${what ?? `an integer from ${min} to ${max}`}, got ${showValue(value)}`);
  }
  return value;
}

function id(value: unknown, path: string): number {
  return integer(value, path, 1, Number.MAX_SAFE_INTEGER, 'a context id (a positive integer)');
}

function count(value: unknown, path: string): number {
  return integer(value, path, 0, Number.MAX_SAFE_INTEGER, 'a count (a non-negative safe integer)');
}

function time(value: unknown, path: string): number {
  return integer(value, path, 0, Number.MAX_SAFE_INTEGER, 'a time in milliseconds since the epoch');
}

function contextTag(value: unknown, path: string): number {
  if (typeof value !== 'number' || !isContextTag(value)) fail(path, `expected a 47-bit context tag (0 to ${MAX_CONTEXT_TAG}), got ${showValue(value)}`);
  return value;
}

function text(value: unknown, path: string): string {
  if (typeof value !== 'string' || value.length > MAX_IPC_TEXT) fail(path, `expected a string of at most ${MAX_IPC_TEXT} characters, got ${showValue(value)}`);
  return value;
}

function oneOf<T extends string>(value: unknown, path: string, options: readonly T[]): T {
  if (typeof value !== 'string' || !(options as readonly string[]).includes(value)) {
    fail(path, `expected one of ${options.map((o) => `'${o}'`).join(', ')}, got ${showValue(value)}`);
  }
  return value as T;
}

/**
 * Texts already found canonical. A context names each address several times (the ULID is
 * usually a locator and in `current` too), and the host's own locators recur in every context
 * of a sync: remembering them makes a 100000-context sync several times faster. Emptied when
 * it reaches its bound.
 */
const knownCanonical = new Set<string>();
const KNOWN_CANONICAL_BOUND = 65536;

/** An IPv6 address in canonical text (RFC 5952: lower case, longest zero run compressed, no zone). */
function address(value: unknown, path: string): string {
  if (typeof value !== 'string') fail(path, `expected an IPv6 address, got ${showValue(value)}`);
  if (knownCanonical.has(value)) return value;
  const canonical = canonicalIPv6(value);
  if (canonical === undefined) fail(path, `expected an IPv6 address, got ${showValue(value)}`);
  if (canonical !== value) fail(path, `IPv6 address not in canonical form (RFC 5952): got ${showValue(value)}, expected "${canonical}"`);
  if (knownCanonical.size >= KNOWN_CANONICAL_BOUND) knownCanonical.clear();
  knownCanonical.add(value);
  return value;
}

function array(value: unknown, path: string, min: number, max: number): unknown[] {
  if (!Array.isArray(value)) fail(path, `expected an array, got ${showValue(value)}`);
  if (value.length < min || value.length > max) {
    fail(path, `expected ${min > 0 ? `${min} to ${max}` : `at most ${max}`} entries, got ${value.length}`);
  }
  return value as unknown[];
}

/** Throws at `path[i].key` (or `path[i]`) for the second occurrence of a value. */
function noDuplicates<T>(values: readonly T[], path: string, key?: string): void {
  const first = new Map<T, number>();
  values.forEach((v, i) => {
    const j = first.get(v);
    if (j !== undefined) {
      const here = key === undefined ? at(path, i) : at(at(path, i), key);
      const there = key === undefined ? at(path, j) : at(at(path, j), key);
      fail(here, `duplicate of ${there} (${String(v)})`);
    }
    first.set(v, i);
  });
}

function locatorList(value: unknown, path: string): string[] {
  const list = array(value, path, 1, MAX_IPC_LOCATORS).map((a, i) => address(a, at(path, i)));
  noDuplicates(list, path);
  return list;
}

function locatorPair(value: unknown, path: string): IpcLocatorPair {
  const o = object(value, path, ['local', 'peer']);
  address(o.local, at(path, 'local'));
  address(o.peer, at(path, 'peer'));
  return o as unknown as IpcLocatorPair;
}

function context(value: unknown, path: string): IpcContext {
  const o = object(
    value,
    path,
    ['id', 'localUlid', 'peerUlid', 'localContextTag', 'peerContextTag', 'localLocators', 'peerLocators', 'current'],
    ['peerKeepaliveTimeout'],
  );
  id(o.id, at(path, 'id'));
  address(o.localUlid, at(path, 'localUlid'));
  address(o.peerUlid, at(path, 'peerUlid'));
  contextTag(o.localContextTag, at(path, 'localContextTag'));
  contextTag(o.peerContextTag, at(path, 'peerContextTag'));
  locatorList(o.localLocators, at(path, 'localLocators'));
  locatorList(o.peerLocators, at(path, 'peerLocators'));
  locatorPair(o.current, at(path, 'current'));
  if (o.peerKeepaliveTimeout !== undefined) integer(o.peerKeepaliveTimeout, at(path, 'peerKeepaliveTimeout'), 1, 65535, 'a number of seconds from 1 to 65535');
  return o as unknown as IpcContext;
}

function probeRecord(value: unknown, path: string): ProbeRecord {
  const o = object(value, path, ['at', 'direction', 'local', 'peer', 'nonce']);
  time(o.at, at(path, 'at'));
  oneOf(o.direction, at(path, 'direction'), ['sent', 'received'] as const);
  address(o.local, at(path, 'local'));
  address(o.peer, at(path, 'peer'));
  integer(o.nonce, at(path, 'nonce'), 0, 0xffff_ffff, 'a 32-bit nonce (0 to 4294967295)');
  return o as unknown as ProbeRecord;
}

function reapStatus(value: unknown, path: string): IpcReapStatus {
  const o = object(value, path, ['id', 'state', 'since', 'probesSent', 'probesReceived', 'keepalivesSent', 'keepalivesReceived', 'current', 'history']);
  id(o.id, at(path, 'id'));
  oneOf(o.state, at(path, 'state'), REAP_STATE_NAMES);
  time(o.since, at(path, 'since'));
  for (const key of ['probesSent', 'probesReceived', 'keepalivesSent', 'keepalivesReceived']) count(o[key], at(path, key));
  locatorPair(o.current, at(path, 'current'));
  array(o.history, at(path, 'history'), 0, MAX_PROBE_HISTORY).forEach((r, i) => probeRecord(r, at(at(path, 'history'), i)));
  return o as unknown as IpcReapStatus;
}

/** Longest base64 text of MAX_REAP_PACKET_BYTES octets. */
const MAX_REAP_PACKET_TEXT = 4 * Math.ceil(MAX_REAP_PACKET_BYTES / 3);
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Standard base64 with padding, canonical (the unused bits of the last symbol are zero). */
function reapPacket(value: unknown, path: string): string {
  if (typeof value !== 'string') fail(path, `expected base64 text, got ${showValue(value)}`);
  if (value.length > MAX_REAP_PACKET_TEXT) fail(path, `packet longer than ${MAX_REAP_PACKET_BYTES} octets`);
  if (!BASE64_RE.test(value)) fail(path, 'not base64 text (RFC 4648 section 4, with padding)');
  const octets = Buffer.from(value, 'base64');
  if (octets.toString('base64') !== value) fail(path, 'base64 text not in canonical form (non-zero unused bits)');
  if (octets.length < MIN_REAP_PACKET_BYTES || octets.length > MAX_REAP_PACKET_BYTES) {
    fail(path, `expected a packet of ${MIN_REAP_PACKET_BYTES} to ${MAX_REAP_PACKET_BYTES} octets, got ${octets.length}`);
  }
  return value;
}

type Validators = { [K in IpcMessageType]: (o: unknown) => Extract<IpcMessage, { type: K }> };

const VALIDATORS: Validators = {
  hello(value) {
    const o = object(value, '', ['type', 'version', 'daemon', 'pid']);
    integer(o.version, 'version', 1, Number.MAX_SAFE_INTEGER, 'a version number (a positive integer)');
    oneOf(o.daemon, 'daemon', ['shim6d', 'reapd'] as const);
    integer(o.pid, 'pid', 1, 2 ** 31 - 1, 'a process id');
    return o as unknown as IpcHelloMessage;
  },
  error(value) {
    const o = object(value, '', ['type', 'message']);
    text(o.message, 'message');
    return o as unknown as IpcErrorMessage;
  },
  sync(value) {
    const o = object(value, '', ['type', 'contexts']);
    const contexts = array(o.contexts, 'contexts', 0, MAX_IPC_CONTEXTS).map((c, i) => context(c, at('contexts', i)));
    noDuplicates(
      contexts.map((c) => c.id),
      'contexts',
      'id',
    );
    noDuplicates(
      contexts.map((c) => c.localContextTag),
      'contexts',
      'localContextTag',
    );
    return o as unknown as IpcSyncMessage;
  },
  context(value) {
    const o = object(value, '', ['type', 'context']);
    context(o.context, 'context');
    return o as unknown as IpcContextMessage;
  },
  'context-removed'(value) {
    const o = object(value, '', ['type', 'id', 'reason']);
    id(o.id, 'id');
    text(o.reason, 'reason');
    return o as unknown as IpcContextRemovedMessage;
  },
  activity(value) {
    const o = object(value, '', ['type', 'contexts']);
    const ids = array(o.contexts, 'contexts', 0, MAX_IPC_CONTEXTS).map((entry, i) => {
      const path = at('contexts', i);
      const e = object(entry, path, ['id', 'sent', 'received']);
      count(e.sent, at(path, 'sent'));
      count(e.received, at(path, 'received'));
      return id(e.id, at(path, 'id'));
    });
    noDuplicates(ids, 'contexts', 'id');
    return o as unknown as IpcActivityMessage;
  },
  'reap-packet'(value) {
    const o = object(value, '', ['type', 'packet']);
    reapPacket(o.packet, 'packet');
    return o as unknown as IpcReapPacketMessage;
  },
  explore(value) {
    const o = object(value, '', ['type', 'id', 'reason']);
    id(o.id, 'id');
    text(o.reason, 'reason');
    return o as unknown as IpcExploreMessage;
  },
  pair(value) {
    const o = object(value, '', ['type', 'id', 'local', 'peer']);
    id(o.id, 'id');
    address(o.local, 'local');
    address(o.peer, 'peer');
    return o as unknown as IpcPairMessage;
  },
  'reap-status'(value) {
    const o = object(value, '', ['type', 'status']);
    reapStatus(o.status, 'status');
    return o as unknown as IpcReapStatusMessage;
  },
  'reap-removed'(value) {
    const o = object(value, '', ['type', 'id']);
    id(o.id, 'id');
    return o as unknown as IpcReapRemovedMessage;
  },
};

const MESSAGE_TYPES = Object.keys(VALIDATORS) as IpcMessageType[];

function messageType(value: unknown): IpcMessageType {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('', `expected an object, got ${showValue(value)}`);
  const type = (value as Fields).type;
  if (type === undefined) fail('type', 'missing');
  return oneOf(type, 'type', MESSAGE_TYPES);
}

/** Checks every field of a message from either daemon; throws IpcProtocolError naming the bad one. */
export function validateMessage(value: unknown): IpcMessage {
  return VALIDATORS[messageType(value)](value);
}

/** validateMessage, and the type must be one shim6d sends. */
export function validateShimdToReapd(value: unknown): ShimdToReapd {
  const type = messageType(value);
  if (!SHIMD_TO_REAPD_TYPES.has(type)) fail('type', `'${type}' is a message from reapd, not from shim6d`);
  return VALIDATORS[type](value) as ShimdToReapd;
}

/** validateMessage, and the type must be one reapd sends. */
export function validateReapdToShimd(value: unknown): ReapdToShimd {
  const type = messageType(value);
  if (!REAPD_TO_SHIMD_TYPES.has(type)) fail('type', `'${type}' is a message from shim6d, not from reapd`);
  return VALIDATORS[type](value) as ReapdToShimd;
}

/**
 * The version of a hello-like object, read without validating the rest: a hello of another
 * version may have other fields, yet must be answered with an `error` naming both versions.
 * Only `type: 'hello'` and an integer `version` are frozen across versions.
 */
export function helloVersion(value: unknown): number | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const fields = value as Fields;
  return fields.type === 'hello' && typeof fields.version === 'number' && Number.isInteger(fields.version) ? fields.version : undefined;
}
