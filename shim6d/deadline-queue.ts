/**
 * Keys by deadline: a binary min-heap that knows where each key sits, so that a deadline can
 * be set, moved or removed in O(log n) and the earliest one read in O(1). The context machine
 * keeps one entry per context (its earliest timer), so that nextDeadline() does not look at
 * every context and tick() visits only the ones that are due. Pure: no clock of its own.
 *
 * Keys with equal deadlines come out in the order their deadlines were set.
 */
export class DeadlineQueue<K> {
  /** The heap, as three parallel arrays: entry i is (keys[i], ats[i], seqs[i]). */
  private readonly keys: K[] = [];
  private readonly ats: number[] = [];
  /** When each entry's deadline was set: the tie-break between equal deadlines. */
  private readonly seqs: number[] = [];
  private readonly position = new Map<K, number>();
  private seq = 0;

  get size(): number {
    return this.keys.length;
  }

  has(key: K): boolean {
    return this.position.has(key);
  }

  /** The key's deadline; undefined when it has none. */
  get(key: K): number | undefined {
    const i = this.position.get(key);
    return i === undefined ? undefined : this.ats[i];
  }

  /** Sets (or moves) the key's deadline. Setting the one it has changes nothing, not even its place among equals. */
  set(key: K, at: number): void {
    if (Number.isNaN(at)) throw new RangeError('a deadline is a number, not NaN');
    const i = this.position.get(key);
    if (i === undefined) {
      const n = this.keys.length;
      this.keys.push(key);
      this.ats.push(at);
      this.seqs.push(this.seq++);
      this.position.set(key, n);
      this.up(n);
      return;
    }
    if (this.ats[i] === at) return;
    this.ats[i] = at;
    this.seqs[i] = this.seq++;
    this.restore(i);
  }

  /** Removes the key's deadline; false when it had none. */
  delete(key: K): boolean {
    const i = this.position.get(key);
    if (i === undefined) return false;
    this.position.delete(key);
    const last = this.keys.length - 1;
    if (i !== last) {
      this.move(last, i);
      this.truncate(last);
      this.restore(i);
    } else this.truncate(last);
    return true;
  }

  /** The key with the earliest deadline, without removing it. */
  peek(): K | undefined {
    return this.keys[0];
  }

  /** The earliest deadline. */
  peekAt(): number | undefined {
    return this.ats[0];
  }

  /** Removes and returns the key with the earliest deadline. */
  pop(): K | undefined {
    if (this.keys.length === 0) return undefined;
    const key = this.keys[0] as K;
    this.delete(key);
    return key;
  }

  /** Removes and returns every key whose deadline is at or before `now`, earliest first. */
  popDue(now: number): K[] {
    const due: K[] = [];
    while (this.keys.length > 0 && (this.ats[0] as number) <= now) due.push(this.pop() as K);
    return due;
  }

  clear(): void {
    this.keys.length = 0;
    this.ats.length = 0;
    this.seqs.length = 0;
    this.position.clear();
  }

  // -- the heap ---------------------------------------------------------------------------------

  /** True when entry i comes out before entry j. */
  private before(i: number, j: number): boolean {
    const a = this.ats[i] as number;
    const b = this.ats[j] as number;
    return a < b || (a === b && (this.seqs[i] as number) < (this.seqs[j] as number));
  }

  /** Entry i changed: moves it up or down to where it belongs. */
  private restore(i: number): void {
    if (i > 0 && this.before(i, (i - 1) >> 1)) this.up(i);
    else this.down(i);
  }

  private up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(i, parent)) return;
      this.swap(i, parent);
      i = parent;
    }
  }

  private down(i: number): void {
    const n = this.keys.length;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) return;
      const right = left + 1;
      const child = right < n && this.before(right, left) ? right : left;
      if (!this.before(child, i)) return;
      this.swap(i, child);
      i = child;
    }
  }

  private swap(i: number, j: number): void {
    const key = this.keys[i] as K;
    const at = this.ats[i] as number;
    const seq = this.seqs[i] as number;
    this.move(j, i);
    this.keys[j] = key;
    this.ats[j] = at;
    this.seqs[j] = seq;
    this.position.set(key, j);
  }

  /** Copies entry `from` into slot `to` (its old occupant is overwritten). */
  private move(from: number, to: number): void {
    const key = this.keys[from] as K;
    this.keys[to] = key;
    this.ats[to] = this.ats[from] as number;
    this.seqs[to] = this.seqs[from] as number;
    this.position.set(key, to);
  }

  private truncate(length: number): void {
    this.keys.length = length;
    this.ats.length = length;
    this.seqs.length = length;
  }
}
