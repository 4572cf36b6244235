/**
 * Sorts internal keys (latin1 strings: one char per byte) in unsigned byte order, the order
 * of `Array.prototype.sort()` for them, by most-significant-digit radix sort.
 *
 * Why: a first import sorts all its keys once for the ordered view, and the comparison sort
 * was 15% of a million-record bulk load (`bench/profile.ts --line bulk`). Each comparison
 * reads two strings strewn across the heap from their first char on. Here each level reads
 * each string's char at one depth once, into `codes`, and then moves only references:
 * a million workload keys (`user:` + 11 digits, shuffled) sort in 0.19–0.25 s instead of
 * 0.52–0.59 s (four rounds each, one process), and a 1M bulk load took 3.86 s instead of
 * 4.02 s (medians of eight runs alternating with the build before).
 *
 * A level whose strings all share their char at that depth is skipped without moving
 * anything (so long common prefixes cost one read per string each), a string that ends at
 * the depth sorts first, and ranges of up to `SMALL` strings are sorted by insertion.
 * (`migrations/live-set.ts` radix-sorts key bytes packed in typed arrays, several bytes a
 * pass; these keys are strings, one char a pass.)
 */

const SMALL = 32;
/** Buckets: strings that end at the depth, then one per byte value. */
const BUCKETS = 257;

/** Sorts `a`; with `along` (as long as `a`), moves `along[i]` wherever `a[i]` goes. */
export function sortLatin1<T>(a: string[], along?: T[]): void {
  if (along !== undefined && along.length !== a.length) {
    throw new Error("internal: sortLatin1's arrays differ in length");
  }
  if (a.length <= SMALL) {
    insertion(a, along, 0, a.length);
    return;
  }
  const s = new Sorter(a, along);
  s.sort(0, a.length, 0);
}

class Sorter<T> {
  private readonly aux: string[];
  private readonly auxAlong: T[] | undefined;
  private readonly codes: Uint16Array;
  /** One count array per depth: siblings at a depth use it in turn, never at once. */
  private readonly counts: Int32Array[] = [];

  constructor(
    private readonly a: string[],
    private readonly along: T[] | undefined,
  ) {
    this.aux = new Array<string>(a.length);
    this.auxAlong = along === undefined ? undefined : new Array<T>(a.length);
    this.codes = new Uint16Array(a.length);
  }

  sort(lo: number, hi: number, d: number): void {
    const a = this.a;
    const codes = this.codes;
    for (;;) {
      if (hi - lo <= SMALL) {
        insertion(a, this.along, lo, hi);
        return;
      }
      const cnt = this.countsAt(d);
      for (let i = lo; i < hi; i++) {
        const s = a[i]!;
        const c = d < s.length ? s.charCodeAt(d) + 1 : 0;
        if (c > 256) throw new Error("internal: a key that is not latin1");
        codes[i] = c;
        cnt[c + 1]!++;
      }
      // All in one bucket: the next depth, nothing moved (a string that ended is alone).
      let first = 1;
      while (cnt[first] === 0) first++;
      if (cnt[first] === hi - lo && first > 1) {
        d++;
        continue;
      }
      for (let b = 1; b <= BUCKETS; b++) cnt[b]! += cnt[b - 1]!;
      const aux = this.aux;
      const along = this.along;
      if (along === undefined) {
        for (let i = lo; i < hi; i++) aux[cnt[codes[i]!]!++] = a[i]!;
      } else {
        const auxAlong = this.auxAlong!;
        for (let i = lo; i < hi; i++) {
          const to = cnt[codes[i]!]!++;
          aux[to] = a[i]!;
          auxAlong[to] = along[i]!;
        }
        for (let i = lo; i < hi; i++) along[i] = auxAlong[i - lo]!;
      }
      for (let i = lo; i < hi; i++) a[i] = aux[i - lo]!;
      // cnt[b] is now where bucket b ends; bucket 0 holds at most equal strings: sorted.
      let start = lo + cnt[0]!;
      for (let b = 1; b < BUCKETS; b++) {
        const end = lo + cnt[b]!;
        if (end - start > 1) this.sort(start, end, d + 1);
        start = end;
      }
      return;
    }
  }

  private countsAt(d: number): Int32Array {
    let c = this.counts[d];
    if (c === undefined) {
      c = new Int32Array(BUCKETS + 1);
      this.counts[d] = c;
    } else c.fill(0);
    return c;
  }
}

function insertion<T>(a: string[], along: T[] | undefined, lo: number, hi: number): void {
  for (let i = lo + 1; i < hi; i++) {
    const x = a[i]!;
    const y = along?.[i];
    let j = i - 1;
    while (j >= lo && a[j]! > x) {
      a[j + 1] = a[j]!;
      if (along !== undefined) along[j + 1] = along[j]!;
      j--;
    }
    a[j + 1] = x;
    if (along !== undefined) along[j + 1] = y!;
  }
}
