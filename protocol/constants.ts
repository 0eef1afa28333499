/**
 * Numbers that Shim6 puts on the wire: IANA's registries for RFC 5533 and RFC 5534.
 */

/** IPv6 Next Header value of the Shim6 header (RFC 5533 section 5). */
export const IPPROTO_SHIM6 = 140;
/** "No Next Header": what follows a control message (RFC 5533 section 5.2). */
export const NO_NEXT_HEADER = 59;

/** Shim6 message types (the 7-bit Type field of a control message). */
export const MessageType = {
  I1: 1,
  R1: 2,
  I2: 3,
  R2: 4,
  R1bis: 5,
  I2bis: 6,
  UpdateRequest: 64,
  UpdateAcknowledgement: 65,
  Keepalive: 66,
  Probe: 67,
  Error: 68,
} as const;
export type MessageTypeName = keyof typeof MessageType;

/** Message type number → name, for the types this implementation knows. */
export const messageTypeName: ReadonlyMap<number, MessageTypeName> = new Map(
  (Object.entries(MessageType) as [MessageTypeName, number][]).map(([k, v]) => [v, k]),
);

/** Shim6 option types (the 15-bit Type field of an option). */
export const OptionType = {
  ResponderValidator: 1,
  LocatorList: 2,
  LocatorPreferences: 3,
  CgaParameterDataStructure: 4,
  CgaSignature: 5,
  UlidPair: 6,
  ForkedInstanceIdentifier: 7,
  /** RFC 5534 section 5.2. */
  KeepaliveTimeout: 10,
} as const;
export type OptionTypeName = keyof typeof OptionType;

/** Error Codes of the Shim6 Error message (RFC 5533 section 5.14). */
export const ErrorCode = {
  UnknownMessageType: 0,
  CriticalOptionNotRecognized: 1,
  LocatorVerificationMethodFailed: 2,
  LocatorListGenerationOutOfSync: 3,
  LocatorPreferencesCountMismatch: 4,
} as const;

/** Verification methods of a Locator List option (RFC 5533 section 5.15.2). */
export const VerificationMethod = { HBA: 1, CGA: 2 } as const;

/** Flags of a Locator Preferences element (RFC 5533 section 5.15.3). */
export const LocatorFlag = { BROKEN: 0x01, TRANSIENT: 0x02 } as const;

/** The REAP state carried in the Sta field of a Probe message (RFC 5534 section 5.3). */
export const ReapState = { Operational: 0, Exploring: 1, InboundOk: 2 } as const;
export type ReapStateName = keyof typeof ReapState;

/** Largest 47-bit context tag. */
export const MAX_CONTEXT_TAG = 2 ** 47 - 1;

/** Largest Shim6 header: Hdr Ext Len 255 → 256 units of 8 octets. */
export const MAX_SHIM6_HEADER_LENGTH = 256 * 8;

/** IPv6 minimum MTU; an Error message with its IPv6 header stays within it. */
export const IPV6_MIN_MTU = 1280;
