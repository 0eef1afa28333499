/**
 * The typed outcome of every decoder in protocol/: a value, or an error that says what is
 * wrong and at which octet offset. Decoders never throw on bad input.
 */

export type DecodeErrorCode =
  /** The input ends before a field or header it must contain. */
  | 'TRUNCATED'
  /** A length field disagrees with the input or with the message type's fixed part. */
  | 'LENGTH_MISMATCH'
  /** The Shim6 checksum does not verify. */
  | 'BAD_CHECKSUM'
  /** The S bit is set: a HIP packet, not Shim6 (RFC 5533 section 5.2). */
  | 'NOT_SHIM6'
  /** P bit set where a control message was expected, or clear where a payload header was. */
  | 'WRONG_P_BIT'
  /** A reserved field or padding is not zero (only in strict mode). */
  | 'RESERVED_NONZERO'
  /** A message type this implementation does not know (answer: Error code 0). */
  | 'UNKNOWN_MESSAGE_TYPE'
  /** An option with the critical bit that we do not know (answer: Error code 1). */
  | 'UNKNOWN_CRITICAL_OPTION'
  /** An option's total length runs past the end of the message. */
  | 'OPTION_OVERRUN'
  /** A known option whose content length does not fit its format. */
  | 'BAD_OPTION_LENGTH'
  /** A field holds a value its format does not allow. */
  | 'BAD_VALUE'
  /** Not an IPv6 packet, or its extension-header chain is malformed. */
  | 'BAD_PACKET'
  /** A decoder bug caught by the last-resort guard; the fuzz tests assert it never happens. */
  | 'INTERNAL';

export interface DecodeError {
  code: DecodeErrorCode;
  message: string;
  /** Octet offset, from the start of the decoded input, where the problem was found. */
  offset: number;
  /** The message type, when the error is inside a control message whose type was read. */
  messageType?: number;
  /** The option type, when the error is inside an option. */
  optionType?: number;
}

export type DecodeResult<T> = { ok: true; value: T } | { ok: false; error: DecodeError };

export function ok<T>(value: T): DecodeResult<T> {
  return { ok: true, value };
}

export function fail<T>(code: DecodeErrorCode, offset: number, message: string, extra?: Partial<DecodeError>): DecodeResult<T> {
  return { ok: false, error: { code, offset, message, ...extra } };
}

/** Runs a decoder body, turning any exception (a bug) into an INTERNAL error instead of a crash. */
export function guarded<T>(body: () => DecodeResult<T>): DecodeResult<T> {
  try {
    return body();
  } catch (e) {
    return fail('INTERNAL', 0, `decoder fault: ${e instanceof Error ? e.message : String(e)}`);
  }
}
