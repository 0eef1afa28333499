import { parsePrefix64 } from '../../protocol/cga';

/** The 8 octets of a `2001:db8:1::/64` prefix; throws on bad text (test data is ours). */
export function prefix64(text: string): Buffer {
  const p = parsePrefix64(text);
  if (!p.ok) throw new Error(p.message);
  return p.prefix;
}
