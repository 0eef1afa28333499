/**
 * A daemon's one protocol timer (shim6d's context machine, reapd's REAP machine): the pure
 * state machine says when it next needs the clock (nextDeadline), and this wakes it then.
 * Every input that may change a deadline calls reschedule(); nothing else in the daemon sets
 * timers for protocol work.
 */
export class DeadlineTimer {
  private timer: NodeJS.Timeout | undefined;
  private armedFor: number | undefined;
  private stopped = false;

  constructor(
    private readonly nextDeadline: () => number | undefined,
    private readonly fire: () => void,
    private readonly now: () => number = Date.now,
    /** Never sleep longer than this (a coarse safety net for deadlines set outside an input). */
    private readonly maxSleepMs = 1000,
  ) {}

  reschedule(): void {
    if (this.stopped) return;
    const next = this.nextDeadline();
    const at = Math.min(next ?? Infinity, this.now() + this.maxSleepMs);
    if (this.timer && this.armedFor !== undefined && this.armedFor <= at) return;
    if (this.timer) clearTimeout(this.timer);
    this.armedFor = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.armedFor = undefined;
      try {
        this.fire();
      } finally {
        this.reschedule();
      }
    }, Math.max(0, at - this.now()));
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
