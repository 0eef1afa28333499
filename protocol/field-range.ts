/**
 * The range check every encoder in protocol/ makes before writing a field: encoder input
 * comes from our own code, so a value that does not fit is a bug and throws RangeError.
 */
export function checkUint(value: number, bits: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 2 ** bits - 1) throw new RangeError(`${what} must fit ${bits} bits: ${value}`);
}
