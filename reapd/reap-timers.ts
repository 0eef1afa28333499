/**
 * REAP's timers and counts (RFC 5534), in seconds except the counts, and the arithmetic the
 * machine derives from them: the Keepalive interval, the exploration backoff and its jitter.
 * Pure: no clock, no I/O.
 *
 * Where the values come from (RFC 5534; LinShim6's reapd uses the same exploration numbers).
 * The RFC text was not at hand when this file was written: the values below agree with
 * LinShim6 and with the RFC as remembered, but re-check the section numbers against the text:
 * - Keepalive Timeout 10 s: the default a host assumes for its peer when no Keepalive Timeout
 *   option (section 5.2) was received; it is also what we announce in that option.
 * - Send Timeout 15 s: the Keepalive Timeout plus a margin for the round trip and the peer's
 *   timer granularity (section 4.1: the Send Timeout has to be longer than the Keepalive
 *   Timeout the peer works to, or a peer that only receives would look dead).
 * - Keepalives: sent while payload is received and none is sent, at an interval well inside
 *   the peer's Keepalive Timeout (section 4.1, 5.1, 6.1): we use one third of it, so two
 *   Keepalives can be lost before the peer's Send timer fires.
 * - Exploration (section 4.3 and 6.5): an initial burst of 4 Probes 0.5 s apart, then
 *   exponential backoff (doubling) up to 60 s, randomised so that contexts and peers do not
 *   synchronise. We use a jitter of ±20 % (LinShim6's choice; the RFC asks for randomisation
 *   without fixing an amount).
 * - The return to the ULID pair (ulidRetryInterval) is our own addition, not RFC 5534's.
 */

export interface ReapTimers {
  /** Ours, seconds: what we announce to the peer in the Keepalive Timeout option. */
  keepaliveTimeout: number;
  /** Seconds without hearing from the peer, while sending payload, before exploring. */
  sendTimeout: number;
  /**
   * Seconds between Keepalives. Unset: one third of the peer's Keepalive Timeout. Set: this,
   * but never more than a third of the peer's Keepalive Timeout.
   */
  keepaliveInterval?: number;
  /** Probes of the initial burst, sent initialProbeInterval apart. */
  initialProbes: number;
  initialProbeInterval: number;
  /** Ceiling of the exponential backoff between Probes. */
  maxProbeInterval: number;
  /** While the context is off its ULID pair: one Probe on the ULID pair this often (backed off while it fails). */
  ulidRetryInterval: number;
  /** Probe records kept per context for the console. */
  historyLength: number;
}

/** RFC 5534's recommended values (sections above), and ours for the ULID return. */
export const DEFAULT_REAP_TIMERS: Readonly<ReapTimers> = Object.freeze({
  keepaliveTimeout: 10,
  sendTimeout: 15,
  initialProbes: 4,
  initialProbeInterval: 0.5,
  maxProbeInterval: 60,
  ulidRetryInterval: 10,
  historyLength: 32,
});

/** The random part of every probe delay: nominal × [1 − PROBE_JITTER, 1 + PROBE_JITTER). */
export const PROBE_JITTER = 0.2;

/** At most this many sent and this many received probe reports in one Probe (4-bit counts, RFC 5534 section 5.3). */
export const MAX_PROBE_REPORTS = 15;

/** Largest value a Keepalive Timeout option can carry (16 bits of seconds). */
export const MAX_KEEPALIVE_TIMEOUT = 0xffff;

/**
 * DEFAULT_REAP_TIMERS with `overrides` applied, checked: every duration positive and finite,
 * the counts whole, the Send Timeout not shorter than our own Keepalive Timeout. Throws a
 * RangeError naming the key.
 */
export function reapTimers(overrides: Partial<ReapTimers> = {}): ReapTimers {
  const t: ReapTimers = { ...DEFAULT_REAP_TIMERS };
  for (const [k, v] of Object.entries(overrides) as Array<[keyof ReapTimers, number | undefined]>) {
    if (v !== undefined) t[k] = v;
  }
  const positive = (key: keyof ReapTimers): void => {
    const v = t[key];
    if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v > 0)) throw new RangeError(`REAP timer ${key} must be a positive number of seconds, not ${String(v)}`);
  };
  const whole = (key: 'initialProbes' | 'historyLength', min: number): void => {
    const v = t[key];
    if (!Number.isInteger(v) || v < min) throw new RangeError(`REAP ${key} must be a whole number of at least ${min}, not ${String(v)}`);
  };
  positive('keepaliveTimeout');
  positive('sendTimeout');
  positive('keepaliveInterval');
  positive('initialProbeInterval');
  positive('maxProbeInterval');
  positive('ulidRetryInterval');
  whole('initialProbes', 1);
  whole('historyLength', 0);
  if (t.keepaliveTimeout > MAX_KEEPALIVE_TIMEOUT) throw new RangeError(`REAP keepaliveTimeout must fit the option's 16 bits: at most ${MAX_KEEPALIVE_TIMEOUT} s, not ${t.keepaliveTimeout}`);
  if (t.sendTimeout < t.keepaliveTimeout) throw new RangeError(`REAP sendTimeout (${t.sendTimeout} s) must not be shorter than keepaliveTimeout (${t.keepaliveTimeout} s): a peer that only receives answers within its Keepalive Timeout`);
  if (t.maxProbeInterval < t.initialProbeInterval) throw new RangeError(`REAP maxProbeInterval (${t.maxProbeInterval} s) must not be shorter than initialProbeInterval (${t.initialProbeInterval} s)`);
  return t;
}

/**
 * Seconds between our Keepalives: a third of the peer's Keepalive Timeout (ours when the peer
 * sent no option), or the configured interval when that is shorter.
 */
export function keepaliveIntervalFor(timers: ReapTimers, peerKeepaliveTimeout: number | undefined): number {
  const peer = peerKeepaliveTimeout !== undefined && Number.isFinite(peerKeepaliveTimeout) && peerKeepaliveTimeout > 0 ? peerKeepaliveTimeout : timers.keepaliveTimeout;
  const third = peer / 3;
  return timers.keepaliveInterval !== undefined ? Math.min(timers.keepaliveInterval, third) : third;
}

/**
 * Nominal seconds to wait after the probe numbered `sent` (0 for the first of an exploration):
 * initialProbeInterval between the probes of the initial burst, then doubling from the last
 * of them on, capped. With the defaults: 0.5, 0.5, 0.5, 1, 2, 4, ... 32, 60, 60 s.
 */
export function nominalProbeInterval(timers: ReapTimers, sent: number): number {
  const doublings = sent + 2 - timers.initialProbes;
  if (doublings <= 0) return timers.initialProbeInterval;
  // 2^doublings grows past any cap quickly; stop before it overflows to Infinity.
  return Math.min(timers.maxProbeInterval, timers.initialProbeInterval * 2 ** Math.min(doublings, 1024));
}

/**
 * Milliseconds to wait, with jitter: `nominalSeconds` × [0.8, 1.2) from `random` in [0, 1),
 * never more than `capSeconds`.
 */
export function jitteredMs(nominalSeconds: number, random: number, capSeconds: number): number {
  const r = Number.isFinite(random) ? Math.min(Math.max(random, 0), 1) : 0.5;
  const factor = 1 - PROBE_JITTER + 2 * PROBE_JITTER * r;
  return Math.round(Math.min(nominalSeconds * factor, capSeconds) * 1000);
}
