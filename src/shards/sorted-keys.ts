/**
 * The ordered view of the keyspace: every key (latin1 form) in ascending byte order.
 *
 * The hash shards answer point lookups; this answers "the keys from here to there, in
 * order" in O(log n + k), which iteration, `range`, `group` and `deleteGroup` need.
 *
 * Structure: a list of sorted chunks of at most 2 × LOAD keys, plus the last key of each
 * chunk for a binary search (the layout of Python's sortedcontainers). A lookup is two
 * binary searches; an insert shifts at most one chunk; splitting a chunk shifts the chunk
 * list, which is n / LOAD entries long. At 16.8 million keys that is ~33k pointers.
 *
 * Cursors survive mutation: each iterator remembers the last key it returned and the
 * structure's `version`; after any change it seeks again from that key.
 */
import { sortLatin1 } from "./radix-sort.js";

const LOAD_SHIFT = 9;
const LOAD = 1 << LOAD_SHIFT;
/** Fewer new keys than this are inserted one by one whatever the view's size. */
const MERGE_MIN_KEYS = 1024;

export class SortedKeys {
  private chunks: string[][] = [];
  private maxes: string[] = [];
  private count = 0;
  /** Bumped by every change, so cursors know to seek again. */
  version = 0;

  get size(): number {
    return this.count;
  }

  /** Index of the first chunk whose last key is >= k (chunks.length when none). */
  private chunkFor(k: string): number {
    const maxes = this.maxes;
    let lo = 0;
    let hi = maxes.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (maxes[mid]! < k) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Inserts a key the caller knows is absent. */
  insertNew(k: string): void {
    this.version++;
    this.count++;
    const chunks = this.chunks;
    if (chunks.length === 0) {
      chunks.push([k]);
      this.maxes.push(k);
      return;
    }
    let ci = this.chunkFor(k);
    if (ci === chunks.length) {
      // Larger than every key: append to the last chunk (the fast path for ordered loads).
      ci--;
      const last = chunks[ci]!;
      last.push(k);
      this.maxes[ci] = k;
      if (last.length > 2 * LOAD) this.split(ci);
      return;
    }
    const chunk = chunks[ci]!;
    chunk.splice(lowerBound(chunk, k), 0, k);
    if (chunk.length > 2 * LOAD) this.split(ci);
  }

  /**
   * Inserts keys the caller knows are absent and distinct, in any order; sorts `keys` in
   * place. One sort and one O(n + m) merge: for a million new keys about 2.5× faster than
   * inserting them one by one, whose splices also leave old chunk arrays behind as garbage.
   */
  insertManyNew(keys: string[]): void {
    if (keys.length === 0) return;
    sortLatin1(keys);
    if (this.count === 0) {
      this.loadSorted(keys);
      return;
    }
    const merged = new Array<string>(this.count + keys.length);
    let o = 0;
    let j = 0;
    for (const chunk of this.chunks) {
      for (let i = 0; i < chunk.length; i++) {
        const k = chunk[i]!;
        while (j < keys.length && keys[j]! < k) merged[o++] = keys[j++]!;
        merged[o++] = k;
      }
    }
    while (j < keys.length) merged[o++] = keys[j++]!;
    this.loadSorted(merged);
  }

  /** Whether `count` new keys enter faster in one sort and merge (O(n)) than one by one. */
  mergePays(count: number): boolean {
    return count >= MERGE_MIN_KEYS && count * 8 >= this.count;
  }

  /** Inserts keys known absent and distinct: in one merge when that pays, else one by one. */
  insertNewKeys(keys: string[]): void {
    if (this.mergePays(keys.length)) this.insertManyNew(keys);
    else for (const k of keys) this.insertNew(k);
  }

  /** The smallest key, or undefined when there is none. */
  firstKey(): string | undefined {
    return this.chunks[0]?.[0];
  }

  /** The largest key, or undefined when there is none. */
  lastKey(): string | undefined {
    return this.maxes[this.maxes.length - 1];
  }

  /** How many keys, counting back from the last, satisfy `pred` before one does not. */
  countFromEnd(pred: (k: string) => boolean): number {
    let n = 0;
    for (let c = this.chunks.length - 1; c >= 0; c--) {
      const chunk = this.chunks[c]!;
      for (let i = chunk.length - 1; i >= 0; i--) {
        if (!pred(chunk[i]!)) return n;
        n++;
      }
    }
    return n;
  }

  private split(ci: number): void {
    const chunk = this.chunks[ci]!;
    const right = chunk.splice(LOAD);
    this.chunks.splice(ci + 1, 0, right);
    this.maxes.splice(ci, 0, chunk[chunk.length - 1]!);
  }

  /** Removes a key the caller knows is present. */
  delete(k: string): void {
    const ci = this.chunkFor(k);
    const chunk = this.chunks[ci];
    if (chunk === undefined) return;
    const i = lowerBound(chunk, k);
    if (chunk[i] !== k) return;
    this.version++;
    this.count--;
    chunk.splice(i, 1);
    if (chunk.length === 0) {
      this.chunks.splice(ci, 1);
      this.maxes.splice(ci, 1);
    } else if (i === chunk.length) {
      this.maxes[ci] = chunk[chunk.length - 1]!;
    }
  }

  clear(): void {
    this.version++;
    this.chunks = [];
    this.maxes = [];
    this.count = 0;
  }

  /** Replaces the contents with keys that are already sorted and unique (O(n), for open). */
  loadSorted(keys: readonly string[]): void {
    this.clear();
    for (let i = 0; i < keys.length; i += LOAD) {
      const chunk = keys.slice(i, i + LOAD);
      this.chunks.push(chunk);
      this.maxes.push(chunk[chunk.length - 1]!);
    }
    this.count = keys.length;
  }

  /**
   * Replaces the contents with the keys of `lists`, each already sorted, all distinct, given
   * their merged order: the `r`th key is the next unused one of `lists[from[r]]` (for open,
   * whose keys arrive by shard). O(n), with no comparison; the keys go straight into the
   * chunks that `loadSorted` would have cut.
   */
  loadInterleaved(from: Uint8Array, lists: readonly (readonly string[])[]): void {
    this.clear();
    const next = new Int32Array(lists.length);
    const count = from.length;
    for (let i = 0; i < count; i += LOAD) {
      const chunk = new Array<string>(Math.min(LOAD, count - i));
      for (let j = 0; j < chunk.length; j++) {
        const l = from[i + j]!;
        const k = lists[l]![next[l]!++];
        if (k === undefined) throw new Error("internal: an interleaved list ran out of keys");
        chunk[j] = k;
      }
      this.chunks.push(chunk);
      this.maxes.push(chunk[chunk.length - 1]!);
    }
    for (let l = 0; l < lists.length; l++) {
      if (next[l] !== lists[l]!.length)
        throw new Error("internal: an interleaved list has keys left");
    }
    this.count = count;
  }

  /**
   * Keys within the bounds, ascending (or descending with `reverse`). `undefined` bounds are
   * open. The generator tolerates changes made between its steps: it continues after the
   * last key it returned, so it never repeats or skips a key that stayed in place.
   */
  *range(
    lo: string | undefined,
    loInclusive: boolean,
    hi: string | undefined,
    hiInclusive: boolean,
    reverse: boolean,
  ): Generator<string, void, undefined> {
    const next = this.walker(lo, loInclusive, hi, hiInclusive, reverse);
    for (let k = next(); k !== undefined; k = next()) yield k;
  }

  /**
   * `range` as a function that returns the next key (undefined at the end, and from then
   * on while the view is unchanged: a key added since past the last one returned is still
   * found, which a caller that read ahead to the end and served those keys afterwards
   * needs): a plain call per step where a generator pays for a resumption, which a full
   * scan of a million keys notices. Given `resumeAfter`, it continues after that key
   * instead of its own last one (the caller went on without it, and returns to it).
   */
  walker(
    lo: string | undefined,
    loInclusive: boolean,
    hi: string | undefined,
    hiInclusive: boolean,
    reverse: boolean,
  ): (resumeAfter?: string) => string | undefined {
    let version = -1;
    let ci = 0;
    let pi = 0;
    let last: string | undefined;
    let finished = false;
    return (resumeAfter?: string) => {
      if (resumeAfter !== undefined) {
        last = resumeAfter;
        version = -1;
        finished = false;
      } else if (finished && version === this.version) return undefined;
      if (version !== this.version) {
        version = this.version;
        finished = false;
        // The first step, or the structure changed while the caller held `last`: resume
        // strictly after it.
        [ci, pi] = reverse
          ? last === undefined
            ? this.seekBackward(hi, hiInclusive)
            : this.seekBackward(last, false)
          : last === undefined
            ? this.seekForward(lo, loInclusive)
            : this.seekForward(last, false);
      }
      const chunks = this.chunks;
      for (;;) {
        if (reverse) {
          if (ci < 0) break;
          if (pi < 0) {
            ci--;
            pi = ci >= 0 ? chunks[ci]!.length - 1 : -1;
            continue;
          }
          const k = chunks[ci]![pi]!;
          if (lo !== undefined && (loInclusive ? k < lo : k <= lo)) break;
          pi--;
          last = k;
          return k;
        }
        const chunk = chunks[ci];
        if (chunk === undefined) break;
        if (pi >= chunk.length) {
          ci++;
          pi = 0;
          continue;
        }
        const k = chunk[pi]!;
        if (hi !== undefined && (hiInclusive ? k > hi : k >= hi)) break;
        pi++;
        last = k;
        return k;
      }
      finished = true;
      return undefined;
    };
  }

  /** Position of the first key > lo (or >= lo when inclusive). */
  private seekForward(lo: string | undefined, inclusive: boolean): [number, number] {
    if (lo === undefined) return [0, 0];
    const ci = this.chunkFor(lo);
    const chunk = this.chunks[ci];
    if (chunk === undefined) return [ci, 0];
    let pi = lowerBound(chunk, lo);
    if (!inclusive && chunk[pi] === lo) pi++;
    return [ci, pi];
  }

  /** Position of the last key < hi (or <= hi when inclusive); ci = -1 when none. */
  private seekBackward(hi: string | undefined, inclusive: boolean): [number, number] {
    const chunks = this.chunks;
    if (hi === undefined) {
      const ci = chunks.length - 1;
      return [ci, ci >= 0 ? chunks[ci]!.length - 1 : -1];
    }
    let ci = this.chunkFor(hi);
    if (ci === chunks.length) {
      ci--;
      return [ci, ci >= 0 ? chunks[ci]!.length - 1 : -1];
    }
    const chunk = chunks[ci]!;
    let pi = lowerBound(chunk, hi);
    // pi is the first key >= hi.
    if (inclusive && chunk[pi] === hi) return [ci, pi];
    pi--;
    if (pi < 0) {
      ci--;
      return [ci, ci >= 0 ? chunks[ci]!.length - 1 : -1];
    }
    return [ci, pi];
  }

  /** Every key in order (for tests and the consistency checker). */
  *all(): Generator<string, void, undefined> {
    for (const chunk of this.chunks) yield* chunk;
  }

  /** Structural invariants, as a list of problems (empty when sound). */
  check(): string[] {
    const problems: string[] = [];
    let prev: string | undefined;
    let n = 0;
    for (let ci = 0; ci < this.chunks.length; ci++) {
      const chunk = this.chunks[ci]!;
      if (chunk.length === 0) problems.push(`sorted keys: chunk ${ci} is empty`);
      if (this.maxes[ci] !== chunk[chunk.length - 1])
        problems.push(`sorted keys: chunk ${ci} max is stale`);
      for (const k of chunk) {
        if (prev !== undefined && !(prev < k))
          problems.push(`sorted keys: ${JSON.stringify(k)} out of order`);
        prev = k;
        n++;
      }
    }
    if (n !== this.count) problems.push(`sorted keys: count ${this.count} but ${n} keys held`);
    return problems;
  }
}

/** First index i with a[i] >= k. */
function lowerBound(a: readonly string[], k: string): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < k) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
