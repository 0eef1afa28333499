/**
 * /64 prefixes as text ("2001:db8:1::/64") and as the 8 octets CGA Parameters carry.
 * CGAs and HBAs have 64-bit interface identifiers, so only /64 is meaningful.
 */
import { formatIPv6, parseIPv6 } from '../address';
import { SUBNET_PREFIX_LENGTH } from './params';

export type PrefixParse = { ok: true; prefix: Buffer } | { ok: false; message: string };

/** Parses "ADDR/64"; rejects other lengths and addresses with bits set past the first 64. */
export function parsePrefix64(text: string): PrefixParse {
  const slash = text.indexOf('/');
  if (slash < 0) return { ok: false, message: `prefix '${text}' has no length (expected ADDR/64)` };
  const lengthText = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(lengthText)) return { ok: false, message: `prefix '${text}' has a bad length '${lengthText}'` };
  const length = Number(lengthText);
  if (length !== 64) return { ok: false, message: `prefix '${text}' is a /${length}; CGAs and HBAs need a /64` };
  const addr = parseIPv6(text.slice(0, slash));
  if (!addr || text.slice(0, slash).includes('%')) return { ok: false, message: `prefix '${text}' is not an IPv6 prefix` };
  if (addr.subarray(SUBNET_PREFIX_LENGTH).some((b) => b !== 0)) {
    return { ok: false, message: `prefix '${text}' has bits set after the first 64` };
  }
  return { ok: true, prefix: Buffer.from(addr.subarray(0, SUBNET_PREFIX_LENGTH)) };
}

/** "2001:db8:1::/64" from 8 octets. */
export function formatPrefix64(prefix: Uint8Array): string {
  return `${formatIPv6(Buffer.concat([prefix.subarray(0, SUBNET_PREFIX_LENGTH), Buffer.alloc(8)]))}/64`;
}
