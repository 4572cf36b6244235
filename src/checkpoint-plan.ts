/**
 * What a checkpoint writes, and how: the changed keys in byte order, whether a rebuild of the
 * tree from memory is cheaper than routing each change copy-on-write, and the changes
 * themselves, in runs. Functions of the dirty set and the keyspace only; `FileStore`
 * decides when a checkpoint runs and does its I/O.
 */

import type { Change } from "./btree/tree.js";
import { hashInternalKey } from "./keys.js";
import { type Keyspace, Timed } from "./shards/keyspace.js";
import { sortLatin1 } from "./shards/radix-sort.js";

/** A checkpoint of at least this many changed keys may rebuild the tree from memory. */
export const FULL_REWRITE_MIN_OPS = 16_384;
/** Changed keys a checkpoint routes into the tree at a time (see `changeRuns`). */
const APPLY_RUN = 16_384;

/** Whether every one of `keys` is past the last key held (never true of an empty keyspace). */
export function appendsOnly(ks: Keyspace, keys: Iterable<string>): boolean {
  const last = ks.sorted.lastKey();
  if (last === undefined) return false;
  for (const k of keys) if (k <= last) return false;
  return true;
}

/**
 * Whether a rebuild in order from memory is the cheaper way to the new tree. Routing d
 * changes copy-on-write costs several times what streaming one entry into the bulk loader
 * does, and random changes touch most leaves long before d nears n: past n / 8 a rebuild
 * wins. Keys past every unchanged one (time-ordered keys, appended) are not counted while
 * they are fewer than the others, nor are keys removed before every one still held (the
 * oldest of a rolling window, deleted or expired): they all sit at one edge of the tree,
 * where copy-on-write writes only the leaves there, and a rebuild would rewrite the whole
 * tree into fresh pages, leaving the file at about twice its size until a compaction.
 */
export function rebuildPays(dirty: ReadonlySet<string>, ks: Keyspace): boolean {
  const n = ks.size;
  if (dirty.size < FULL_REWRITE_MIN_OPS || dirty.size * 8 <= n) return false;
  const appended = ks.sorted.countFromEnd((k) => dirty.has(k));
  if (appended * 2 > n) return true;
  // Every tree key memory no longer holds is dirty: those before the first key held are
  // the tree's left edge.
  const first = ks.sorted.firstKey();
  let leading = 0;
  for (const k of dirty) if ((first === undefined || k < first) && !ks.has(k)) leading++;
  const scattered = dirty.size - appended - leading;
  return scattered >= FULL_REWRITE_MIN_OPS && scattered * 8 > n;
}

/**
 * The dirty keys in byte order. When they are a large part of the database (a bulk load),
 * walking the ordered view is O(n) where sorting strings would be O(n log n) comparisons.
 */
export function sortedDirty(dirty: ReadonlySet<string>, ks: Keyspace): string[] {
  if (dirty.size * 8 < ks.size) {
    const keys = [...dirty];
    sortLatin1(keys);
    return keys;
  }
  const present: string[] = [];
  for (const k of ks.sorted.all()) if (dirty.has(k)) present.push(k);
  if (present.length === dirty.size) return present;
  const absent: string[] = [];
  for (const k of dirty) if (!ks.has(k)) absent.push(k);
  sortLatin1(absent);
  const out: string[] = new Array(present.length + absent.length);
  let i = 0;
  let j = 0;
  let o = 0;
  while (i < present.length && j < absent.length)
    out[o++] = present[i]! < absent[j]! ? present[i++]! : absent[j++]!;
  while (i < present.length) out[o++] = present[i++]!;
  while (j < absent.length) out[o++] = absent[j++]!;
  return out;
}

/**
 * The changes of `keys` (sorted) as memory holds them at `now`, in runs of APPLY_RUN keys,
 * at least one run even when there are none (a pending `clear()` is applied with the first).
 * In runs: each change holds copies of its key and value, and the tree keeps the leaves it
 * drafts until its run is placed, so a whole checkpoint at once would hold a few hundred
 * bytes per changed key. Between runs only the path to the last leaf touched is written
 * again, into pages the checkpoint allocated and may reuse at once.
 */
export function* changeRuns(ks: Keyspace, keys: readonly string[], now: number) {
  for (let from = 0; from === 0 || from < keys.length; from += APPLY_RUN) {
    const to = Math.min(keys.length, from + APPLY_RUN);
    const changes: Change[] = new Array(to - from);
    for (let i = from; i < to; i++) {
      const k = keys[i]!;
      const e = ks.shard(hashInternalKey(k)).get(k);
      const key = Buffer.from(k, "latin1");
      let c: Change;
      if (e === undefined || (e instanceof Timed && e.expiresAt <= now)) {
        c = { key, value: undefined, expiresAt: 0 };
      } else if (e instanceof Timed) {
        c = { key, value: ks.out(e), expiresAt: e.expiresAt };
      } else {
        // A ref only when a failed batch put a loaded value back: the key stays dirty.
        c = { key, value: ks.out(e), expiresAt: 0 };
      }
      changes[i - from] = c;
    }
    yield changes;
  }
}
