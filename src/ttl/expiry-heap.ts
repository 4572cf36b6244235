/**
 * A binary min-heap of (deadline, key) pairs, so sweeping expired entries costs
 * O(expired × log n) instead of a scan of the whole database.
 *
 * It is lazy: overwriting or removing a key does not touch the heap. A popped pair is only
 * acted on if the key still holds that exact deadline, which the caller checks. Stale pairs
 * are dropped when popped, and the heap is rebuilt when they outnumber the live ones.
 */
export class ExpiryHeap {
  private at: number[] = [];
  private keys: string[] = [];

  get size(): number {
    return this.at.length;
  }

  push(deadline: number, key: string): void {
    const at = this.at;
    const keys = this.keys;
    let i = at.length;
    at.push(deadline);
    keys.push(key);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (at[p]! <= deadline) break;
      at[i] = at[p]!;
      keys[i] = keys[p]!;
      i = p;
    }
    at[i] = deadline;
    keys[i] = key;
  }

  /** The earliest deadline, or Infinity when empty. */
  peek(): number {
    return this.at.length === 0 ? Number.POSITIVE_INFINITY : this.at[0]!;
  }

  peekKey(): string | undefined {
    return this.keys[0];
  }

  pop(): void {
    const at = this.at;
    const keys = this.keys;
    const lastAt = at.pop()!;
    const lastKey = keys.pop()!;
    const n = at.length;
    if (n === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && at[r]! < at[l]! ? r : l;
      if (at[c]! >= lastAt) break;
      at[i] = at[c]!;
      keys[i] = keys[c]!;
      i = c;
    }
    at[i] = lastAt;
    keys[i] = lastKey;
  }

  clear(): void {
    this.at = [];
    this.keys = [];
  }

  /** Replaces the contents with exactly these pairs (used to shed stale pairs). */
  rebuild(pairs: Iterable<[number, string]>): void {
    this.clear();
    for (const [d, k] of pairs) this.push(d, k);
  }
}
