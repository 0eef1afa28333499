/**
 * A tiny schema-combinator validator for JSON configuration files: each schema parses an
 * `unknown` into a typed value or throws a ConfigError naming the offending key by its dotted
 * path (`shim6d.contexts[0].locatorPair.local`). Objects are closed (unknown keys are errors,
 * so a typo never silently falls back to a default), and the result type of a schema is
 * inferred (`Infer<typeof schema>`).
 *
 *   const schema = object({
 *     port: withDefault(int({ min: 1, max: 65535 }), 19384),
 *     file: optional(absolutePath()),
 *     mtu: withDefault(union(oneOf(['auto'] as const), int({ min: 1280, max: 65535 })), 'auto'),
 *   });
 *   type Config = Infer<typeof schema>;   // { port: number; mtu: 'auto' | number; file?: string }
 *   const config = loadConfigFile('/etc/x.json', schema);
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { posix } from 'node:path';
import { canonicalIPv6 } from '../protocol/address';

/** A configuration value that does not fit its schema, or a file that cannot be read or parsed. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';

  /**
   * @param key dotted path of the offending value with array indices
   *   (`shim6d.contexts[0].locatorPair.local`); '' for the whole file
   * @param detail what is wrong, without the key
   * @param source the file (or other origin) the value came from, when known
   */
  constructor(
    readonly key: string,
    readonly detail: string,
    readonly source?: string,
  ) {
    super(key === '' ? `config: ${detail}` : `config key '${key}': ${detail}`);
  }
}

/** Parses an untrusted value into a T, or throws a ConfigError naming `key`. */
export interface Schema<T> {
  /** @param key the dotted path of `value`, for error messages ('' for the root) */
  parse(value: unknown, key: string): T;
  /** What the schema accepts, in a few words ("an integer from 1 to 65535"). */
  describe(): string;
}

/** The type a schema parses to. */
export type Infer<S> = S extends Schema<infer T> ? T : never;

/** The key of `child` (a property name or an array index) below `parent`. */
export function childKey(parent: string, child: string | number): string {
  if (typeof child === 'number') return `${parent}[${child}]`;
  return parent === '' ? child : `${parent}.${child}`;
}

/** Short text of a value for "got ..." in error messages (strings quoted and cut at 60 characters). */
export function showValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'string': {
      const s = JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
      return s;
    }
    case 'number':
    case 'boolean':
      return String(value);
    case 'object':
      return 'an object';
    default:
      return typeof value;
  }
}

function mismatch(schema: Schema<unknown>, value: unknown, key: string): ConfigError {
  return new ConfigError(key, `expected ${schema.describe()}, got ${showValue(value)}`);
}

function schema<T>(describe: () => string, parse: (self: Schema<T>, value: unknown, key: string) => T): Schema<T> {
  const self: Schema<T> = {
    describe,
    parse: (value, key) => parse(self, value, key),
  };
  return self;
}

export interface StrOptions {
  pattern?: RegExp;
  minLength?: number;
  maxLength?: number;
  /** Replaces the generated description in error messages ("a chain name"). */
  description?: string;
}

/** A string, optionally of bounded length (in UTF-16 code units) and matching a pattern. */
export function str(options: StrOptions = {}): Schema<string> {
  const { pattern, minLength = 0, maxLength = Infinity, description } = options;
  const describe = (): string => {
    if (description !== undefined) return description;
    let d = 'a string';
    if (minLength > 0 && maxLength < Infinity) d += ` of ${minLength} to ${maxLength} characters`;
    else if (minLength > 0) d += ` of at least ${minLength} character${minLength === 1 ? '' : 's'}`;
    else if (maxLength < Infinity) d += ` of at most ${maxLength} characters`;
    if (pattern) d += ` matching ${String(pattern)}`;
    return d;
  };
  return schema(describe, (self, value, key) => {
    if (typeof value !== 'string' || value.length < minLength || value.length > maxLength) throw mismatch(self, value, key);
    if (pattern) {
      pattern.lastIndex = 0;
      if (!pattern.test(value)) throw mismatch(self, value, key);
    }
    return value;
  });
}

/** An integer (a JSON number without fraction) from min to max inclusive. */
export function int(options: { min: number; max: number }): Schema<number> {
  const { min, max } = options;
  return schema(
    () => `an integer from ${min} to ${max}`,
    (self, value, key) => {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) throw mismatch(self, value, key);
      return value;
    },
  );
}

/** true or false. */
export function bool(): Schema<boolean> {
  return schema(
    () => 'true or false',
    (self, value, key) => {
      if (typeof value !== 'boolean') throw mismatch(self, value, key);
      return value;
    },
  );
}

/** One of a fixed list of strings or numbers: `oneOf(['auto', 'pair-set'] as const)`. */
export function oneOf<const V extends readonly (string | number | boolean)[]>(values: V): Schema<V[number]> {
  return schema(
    () => (values.length === 1 ? JSON.stringify(values[0]) : `one of ${values.map((v) => JSON.stringify(v)).join(', ')}`),
    (self, value, key) => {
      const found = values.find((v) => v === value);
      if (found === undefined) throw mismatch(self, value, key);
      return found;
    },
  );
}

/** An IPv6 address in text; parses to its RFC 5952 canonical text. Zone ids (`%eth0`) are refused. */
export function ipv6(): Schema<string> {
  return schema(
    () => 'an IPv6 address',
    (self, value, key) => {
      const canonical = typeof value === 'string' && !value.includes('%') ? canonicalIPv6(value) : undefined;
      if (canonical === undefined) throw mismatch(self, value, key);
      return canonical;
    },
  );
}

const IPV4_RE = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** An IPv4 address in dotted-quad text (no leading zeros); parses to itself. */
export function ipv4(): Schema<string> {
  return schema(
    () => 'an IPv4 address',
    (self, value, key) => {
      if (typeof value !== 'string' || !IPV4_RE.test(value)) throw mismatch(self, value, key);
      return value;
    },
  );
}

/** Longest path Linux accepts (PATH_MAX includes the terminating NUL). */
const PATH_MAX = 4095;

/** An absolute file-system path (starts with '/', no NUL, at most 4095 characters); parses to itself. */
export function absolutePath(): Schema<string> {
  return schema(
    () => 'an absolute path',
    (self, value, key) => {
      if (typeof value !== 'string' || !posix.isAbsolute(value) || value.includes('\0') || value.length > PATH_MAX) throw mismatch(self, value, key);
      return value;
    },
  );
}

/** An array whose elements all parse with `element`; its length from min (default 0) to max. */
export function arrayOf<T>(element: Schema<T>, options: { min?: number; max?: number } = {}): Schema<T[]> {
  const { min = 0, max = Infinity } = options;
  const describe = (): string => {
    let count = '';
    if (min === max) count = `${min} `;
    else if (min > 0 && max < Infinity) count = `${min} to ${max} `;
    else if (min > 0) count = `at least ${min} `;
    else if (max < Infinity) count = `at most ${max} `;
    return `an array of ${count}${element.describe()}`;
  };
  return schema(describe, (self, value, key) => {
    if (!Array.isArray(value)) throw mismatch(self, value, key);
    if (value.length < min || value.length > max) {
      throw new ConfigError(key, `expected ${self.describe()}, got ${value.length} element${value.length === 1 ? '' : 's'}`);
    }
    return value.map((v: unknown, i) => element.parse(v, childKey(key, i)));
  });
}

/**
 * A value that parses with `a` or else with `b` (`union(oneOf(['auto'] as const), int(...))`).
 * When both fail, the error is the one from deeper inside the value if there is one (an object
 * alternative with a bad field), else "expected A or B".
 */
export function union<A, B>(a: Schema<A>, b: Schema<B>): Schema<A | B> {
  return schema(
    () => `${a.describe()} or ${b.describe()}`,
    (self, value, key) => {
      const errors: ConfigError[] = [];
      for (const alternative of [a, b] as const) {
        try {
          return alternative.parse(value, key);
        } catch (err) {
          if (!(err instanceof ConfigError)) throw err;
          errors.push(err);
        }
      }
      const deeper = errors.find((e) => e.key !== key);
      throw deeper ?? mismatch(self, value, key);
    },
  );
}

/**
 * A value parsed by another schema, then mapped (derived defaults, normalisation). `fn` may
 * throw ConfigError for checks that need the mapped value.
 */
export function transform<A, B>(inner: Schema<A>, fn: (value: A, key: string) => B): Schema<B> {
  return schema(
    () => inner.describe(),
    (_self, value, key) => fn(inner.parse(value, key), key),
  );
}

/** An object field that may be absent (its property is then absent from the result). */
export interface OptionalField<T> {
  readonly kind: 'optional';
  readonly schema: Schema<T>;
}

/** An object field that takes `value` when absent. */
export interface DefaultField<T> {
  readonly kind: 'default';
  readonly schema: Schema<T>;
  readonly value: T;
}

export function optional<T>(inner: Schema<T>): OptionalField<T> {
  return { kind: 'optional', schema: inner };
}

/** A field that defaults to `value` (a fresh deep copy each time, so results never share state). */
export function withDefault<T>(inner: Schema<T>, value: T): DefaultField<T> {
  return { kind: 'default', schema: inner, value };
}

/** The fields of an object schema: a bare schema is a required field. */
export type Shape = Record<string, Schema<unknown> | OptionalField<unknown> | DefaultField<unknown>>;

type FieldType<F> = F extends Schema<infer T> ? T : F extends OptionalField<infer T> ? T : F extends DefaultField<infer T> ? T : never;
type Simplify<T> = { [K in keyof T]: T[K] } & {};

/** The parsed type of an object schema's shape: optional fields become optional properties. */
export type ObjectOf<S extends Shape> = Simplify<
  { [K in keyof S as S[K] extends OptionalField<unknown> ? never : K]: FieldType<S[K]> } & {
    [K in keyof S as S[K] extends OptionalField<unknown> ? K : never]?: FieldType<S[K]>;
  }
>;

export interface ObjectOptions<T> {
  /** Cross-field checks on the parsed object (`key` is its own key); throws ConfigError. */
  check?: (value: T, key: string) => void;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * A JSON object with exactly the fields of `shape` (unknown keys are errors). Fields are
 * required unless wrapped in optional() or withDefault().
 */
export function object<S extends Shape>(shape: S, options: ObjectOptions<ObjectOf<S>> = {}): Schema<ObjectOf<S>> {
  const names = Object.keys(shape);
  return schema(
    () => 'an object',
    (self, value, key) => {
      if (!isPlainObject(value)) throw mismatch(self, value, key);
      for (const k of Object.keys(value)) {
        if (!Object.hasOwn(shape, k)) {
          throw new ConfigError(childKey(key, k), `unknown key (expected one of: ${names.join(', ')})`);
        }
      }
      const out: Record<string, unknown> = {};
      for (const name of names) {
        const field = shape[name];
        if (field === undefined) continue;
        const k = childKey(key, name);
        const present = Object.hasOwn(value, name);
        if ('parse' in field) {
          if (!present) throw new ConfigError(k, `missing (expected ${field.describe()})`);
          out[name] = field.parse(value[name], k);
        } else if (present) {
          out[name] = field.schema.parse(value[name], k);
        } else if (field.kind === 'default') {
          out[name] = structuredClone(field.value);
        }
      }
      const result = out as ObjectOf<S>;
      options.check?.(result, key);
      return result;
    },
  );
}

/** Line and column (both from 1) of a UTF-16 offset in text. */
function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 0x0a) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

const JSON_LITERAL = /true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

interface JsonFault {
  offset: number;
  /** For duplicate keys: the key path. */
  key?: string;
  detail: string;
}

/**
 * A strict JSON (RFC 8259) syntax scan that locates the first error and finds duplicate keys,
 * which JSON.parse reports without a position (V8's "Unexpected token") or not at all.
 */
function scanJson(text: string): JsonFault | undefined {
  let i = 0;
  const ws = (): void => {
    while (i < text.length && ' \t\n\r'.includes(text.charAt(i))) i++;
  };
  const unexpected = (): JsonFault =>
    i >= text.length ? { offset: i, detail: 'unexpected end of input' } : { offset: i, detail: `unexpected character ${JSON.stringify(text.charAt(i))}` };
  const string = (): JsonFault | string => {
    if (text[i] !== '"') return unexpected();
    const start = i;
    i++;
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return JSON.parse(text.slice(start, i)) as string;
      }
      if (c < 0x20) return { offset: i, detail: 'control character in string' };
      if (c === 0x5c) {
        const e = text.charAt(i + 1);
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) return { offset: i, detail: 'bad \\u escape in string' };
          i += 6;
        } else if ('"\\/bfnrt'.includes(e) && e !== '') {
          i += 2;
        } else {
          return { offset: i, detail: 'bad escape in string' };
        }
      } else {
        i++;
      }
    }
    return { offset: i, detail: 'unterminated string' };
  };
  const value = (key: string, depth: number): JsonFault | undefined => {
    if (depth > 512) return { offset: i, detail: 'nesting too deep' };
    ws();
    const c = text.charAt(i);
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') {
        i++;
        return undefined;
      }
      const seen = new Set<string>();
      while (true) {
        ws();
        const nameAt = i;
        const name = string();
        if (typeof name !== 'string') return name;
        if (seen.has(name)) return { offset: nameAt, key: childKey(key, name), detail: 'duplicate key' };
        seen.add(name);
        ws();
        if (text[i] !== ':') return unexpected();
        i++;
        const fault = value(childKey(key, name), depth + 1);
        if (fault) return fault;
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return undefined;
        }
        return unexpected();
      }
    }
    if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return undefined;
      }
      for (let n = 0; ; n++) {
        const fault = value(childKey(key, n), depth + 1);
        if (fault) return fault;
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return undefined;
        }
        return unexpected();
      }
    }
    if (c === '"') {
      const s = string();
      return typeof s === 'string' ? undefined : s;
    }
    JSON_LITERAL.lastIndex = i;
    const literal = JSON_LITERAL.exec(text);
    if (!literal) return unexpected();
    i += literal[0].length;
    return undefined;
  };
  const fault = value('', 0);
  if (fault) return fault;
  ws();
  return i < text.length ? { offset: i, detail: `unexpected ${JSON.stringify(text.charAt(i))} after the end of the JSON value` } : undefined;
}

/**
 * Parses JSON text and validates it. JSON syntax errors are ConfigErrors with key '' naming
 * `source` and the line and column; duplicate keys are errors naming the key; schema errors
 * carry `source` in their `source` property (their message stays "config key '...': ...").
 */
export function parseJsonConfig<T>(text: string, schema: Schema<T>, source: string): T {
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  const fault = scanJson(body);
  if (fault) {
    const { line, column } = lineColumn(body, fault.offset);
    if (fault.key !== undefined) {
      throw new ConfigError(fault.key, `${fault.detail} (${source} line ${line}, column ${column})`, source);
    }
    throw new ConfigError('', `${source}: invalid JSON at line ${line}, column ${column}: ${fault.detail}`, source);
  }
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (err) {
    // The scan accepts exactly JSON; this is a safety net.
    throw new ConfigError('', `${source}: invalid JSON: ${(err as Error).message}`, source);
  }
  try {
    return schema.parse(value, '');
  } catch (err) {
    if (err instanceof ConfigError && err.source === undefined) throw new ConfigError(err.key, err.detail, source);
    throw err;
  }
}

export interface LoadOptions {
  /** Refuse files larger than this many bytes (default 1 MiB). */
  maxBytes?: number;
}

/** Default upper bound on the size of a configuration file. */
export const MAX_CONFIG_BYTES = 1024 * 1024;

function describeFsError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  switch (e.code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory';
    default:
      return e.code ? `${e.code}: ${e.message}` : String(err);
  }
}

/**
 * Reads a UTF-8 JSON file and validates it with `schema` (parseJsonConfig). Read errors
 * (ENOENT, EACCES, a directory), files over `maxBytes` and invalid UTF-8 are ConfigErrors
 * with key '' naming the file.
 */
export function loadConfigFile<T>(path: string, schema: Schema<T>, options: LoadOptions = {}): T {
  const maxBytes = options.maxBytes ?? MAX_CONFIG_BYTES;
  const fail = (detail: string): ConfigError => new ConfigError('', `cannot read config file ${path}: ${detail}`, path);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw fail(describeFsError(err));
  }
  let bytes: Buffer;
  try {
    const stat = fstatSync(fd);
    if (stat.isDirectory()) throw fail('is a directory');
    if (!stat.isFile()) throw fail('not a regular file');
    if (stat.size > maxBytes) throw fail(`larger than ${maxBytes} bytes (${stat.size})`);
    // Read at most maxBytes + 1 whatever stat said, so a growing file cannot exceed the bound.
    const buf = Buffer.alloc(maxBytes + 1);
    let length = 0;
    while (length < buf.length) {
      const n = readSync(fd, buf, length, buf.length - length, null);
      if (n === 0) break;
      length += n;
    }
    if (length > maxBytes) throw fail(`larger than ${maxBytes} bytes`);
    bytes = buf.subarray(0, length);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw fail(describeFsError(err));
  } finally {
    closeSync(fd);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new ConfigError('', `${path}: not valid UTF-8 text`, path);
  }
  return parseJsonConfig(text, schema, path);
}
