/**
 * Polling with a deadline: the only way tests wait for something to happen.
 *
 *   const n = await waitFor(async () => (await countEntries()) === 5000 || undefined,
 *                           { what: 'set to hold 5000 entries', timeoutMs: 5000 });
 *
 * The condition is evaluated at once, then every `intervalMs` until it returns a truthy value
 * (which waitFor returns) or the deadline passes (WaitTimeoutError naming `what`, with the last
 * value or error seen). An exception thrown by the condition counts as "not yet".
 */

export interface WaitOptions {
  /** Deadline, from the call (default 5000 ms). */
  timeoutMs?: number;
  /** Pause between evaluations (default 50 ms). */
  intervalMs?: number;
  /** What is awaited, for the error message ("B to receive the datagram"). */
  what?: string;
}

/** Values a condition returns while the awaited thing has not happened yet. */
export type Falsy = false | 0 | '' | null | undefined;

export class WaitTimeoutError extends Error {
  override readonly name = 'WaitTimeoutError';
  constructor(
    readonly what: string,
    readonly timeoutMs: number,
    readonly attempts: number,
    /** The condition's last exception, if its last evaluation threw. */
    readonly lastError: unknown,
  ) {
    const last = lastError === undefined ? '' : `; last error: ${lastError instanceof Error ? lastError.message : String(lastError)}`;
    super(`timed out after ${timeoutMs} ms (${attempts} attempts) waiting for ${what}${last}`);
  }
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export async function waitFor<T>(
  condition: () => T | Falsy | Promise<T | Falsy>,
  options: WaitOptions = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const intervalMs = options.intervalMs ?? 50;
  const what = options.what ?? 'a condition';
  if (!(timeoutMs >= 0) || !(intervalMs > 0)) throw new RangeError(`waitFor: bad timeoutMs ${timeoutMs} or intervalMs ${intervalMs}`);
  const deadline = Date.now() + timeoutMs;
  let attempts = 0;
  for (;;) {
    let lastError: unknown;
    attempts++;
    try {
      const value = await condition();
      if (value) return value as T;
    } catch (e) {
      lastError = e;
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw new WaitTimeoutError(what, timeoutMs, attempts, lastError);
    await pause(Math.min(intervalMs, remaining));
  }
}
