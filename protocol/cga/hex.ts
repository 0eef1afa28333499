/** Strict hexadecimal text to octets, for the CLI and configuration; never throws. */

export type HexParse = { ok: true; value: Buffer } | { ok: false; message: string };

/** Parses hex digits (white space between them is ignored, as is a leading "0x"). */
export function parseHex(text: string): HexParse {
  let s = text.replace(/\s+/g, '');
  if (/^0[xX]/.test(s)) s = s.slice(2);
  if (s.length === 0) return { ok: false, message: 'empty hex string' };
  const bad = s.search(/[^0-9a-fA-F]/);
  if (bad >= 0) return { ok: false, message: `not a hex digit '${s[bad] ?? ''}' at position ${bad}` };
  if (s.length % 2 !== 0) return { ok: false, message: `odd number of hex digits (${s.length})` };
  return { ok: true, value: Buffer.from(s, 'hex') };
}
