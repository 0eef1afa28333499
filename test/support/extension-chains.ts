/**
 * fast-check arbitraries for IPv6 extension-header chains around the place where a Shim6
 * payload header goes (RFC 5533 section 5: after the routing-related headers, before the
 * endpoint ones), as descriptions that each test lays out in octets itself.
 */
import fc from 'fast-check';
import { IPPROTO_AH, IPPROTO_DSTOPTS, IPPROTO_ESP, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_ICMPV6, IPPROTO_NONE, IPPROTO_ROUTING, IPPROTO_TCP, IPPROTO_UDP } from '../../protocol/ipv6-packet';

/** An extension header to build: its type and length in octets (generic: a multiple of 8). */
export interface ExtensionHeaderSpec {
  type: number;
  length?: number;
  /** Fragment only: a non-zero 13-bit Fragment Offset makes a later fragment. */
  fragmentOffset?: number;
}

/** A header of `type` of 8 to 32 octets. */
const generic = (type: number): fc.Arbitrary<ExtensionHeaderSpec> => fc.integer({ min: 1, max: 4 }).map((n) => ({ type, length: n * 8 }));

/** Routing-related part: Routing, optionally preceded by a Destination Options header. */
const routingPart = fc.tuple(fc.boolean(), generic(IPPROTO_ROUTING), generic(IPPROTO_DSTOPTS)).map(([withDst, r, d]) => (withDst ? [d, r] : [r]));

/** What comes before the payload header: perhaps Hop-by-Hop, then up to two routing-related parts. */
export const routingChain: fc.Arbitrary<ExtensionHeaderSpec[]> = fc
  .tuple(fc.option(generic(IPPROTO_HOPOPTS), { nil: undefined }), fc.array(routingPart, { maxLength: 2 }))
  .map(([hbh, parts]) => [...(hbh ? [hbh] : []), ...parts.flat()]);

const endpointHeader: fc.Arbitrary<ExtensionHeaderSpec> = fc.oneof(
  fc.constant({ type: IPPROTO_FRAGMENT }),
  generic(IPPROTO_DSTOPTS),
  fc.integer({ min: 2, max: 5 }).map((n) => ({ type: IPPROTO_AH, length: n * 8 })),
);

/** What comes after it: up to three Fragment, Destination Options or AH headers, perhaps a later fragment last. */
export const endpointChain: fc.Arbitrary<ExtensionHeaderSpec[]> = fc
  .tuple(fc.array(endpointHeader, { maxLength: 3 }), fc.option(fc.integer({ min: 1, max: 8191 }), { nil: undefined }))
  .map(([hs, later]) => (later === undefined ? hs : [...hs, { type: IPPROTO_FRAGMENT, fragmentOffset: later }]));

/** The upper layer after the chain. */
export const upperLayer = fc.constantFrom(IPPROTO_UDP, IPPROTO_TCP, IPPROTO_ICMPV6, IPPROTO_NONE, IPPROTO_ESP);
