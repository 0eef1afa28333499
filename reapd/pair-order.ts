/**
 * The order in which REAP explores candidate locator pairs (RFC 5534 section 4.3: the
 * exploration order is a local choice; prefer pairs unlikely to share the failure). Pure.
 *
 * When the pair in use failed, the failure is most likely on one of its two locators (a
 * provider, an interface, the peer's provider), so:
 *   1. pairs that differ from the failed pair in BOTH locators;
 *   2. pairs that differ in exactly one locator;
 *   3. the failed pair itself, last (the failure may have been transient).
 * Within a class, pairs come in the order of the locator lists (the caller lists its preferred
 * locators first): by the sum of the two positions, then by the local position. So the first
 * candidates pair the first alternatives on both sides, and no locator is tried twice before
 * every locator of its side has been tried once when the lists are the same length.
 */

export interface LocatorPair {
  local: string;
  peer: string;
}

export function samePair(a: LocatorPair, b: LocatorPair): boolean {
  return a.local === b.local && a.peer === b.peer;
}

export function pairText(p: LocatorPair): string {
  return `${p.local} -> ${p.peer}`;
}

/** How far a pair is from the failed one: 0 both locators differ, 1 one does, 2 the same pair. */
export function pairClass(pair: LocatorPair, failed: LocatorPair | undefined): 0 | 1 | 2 {
  if (!failed) return 0;
  const same = (pair.local === failed.local ? 1 : 0) + (pair.peer === failed.peer ? 1 : 0);
  return same as 0 | 1 | 2;
}

function unique(xs: readonly string[]): string[] {
  return [...new Set(xs)];
}

/**
 * Every (local, peer) pair of the two locator sets, in exploration order (above). Duplicate
 * locators count once. Addresses are compared as given: pass canonical text.
 */
export function orderCandidatePairs(localLocators: readonly string[], peerLocators: readonly string[], failed?: LocatorPair): LocatorPair[] {
  const locals = unique(localLocators);
  const peers = unique(peerLocators);
  const ranked: Array<{ pair: LocatorPair; cls: number; sum: number; li: number }> = [];
  locals.forEach((local, li) => {
    peers.forEach((peer, pi) => {
      const pair = { local, peer };
      ranked.push({ pair, cls: pairClass(pair, failed), sum: li + pi, li });
    });
  });
  ranked.sort((a, b) => a.cls - b.cls || a.sum - b.sum || a.li - b.li);
  return ranked.map((r) => r.pair);
}
