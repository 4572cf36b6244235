/**
 * A transaction's writes: each key's final state, an entry to store or null for "removed
 * in this transaction", kept in up to 32 Maps split exactly like the keyspace's shards.
 *
 * Why split: a transaction that loads an empty database (the first bulk import) hands its
 * Maps to the keyspace as they are (`Keyspace.adopt`). Filling 32 shards from one staging
 * Map would hold every key in two hash tables at once and, for a million keys, cost about a
 * second and tens of MiB of peak memory for a copy that is thrown away.
 */
import { type Entry, shardIndex } from "./keyspace.js";

export class StagedWrites {
  private readonly maps: (Map<string, Entry | null> | undefined)[] = [];
  /**
   * Whether a removal may be staged: set by every staged removal, made exact by
   * `pruneRemovals` (a removal overwritten since may leave it true before that).
   */
  private removalStaged = false;

  /** Keys staged (removals included). */
  get size(): number {
    let n = 0;
    for (const m of this.maps) if (m !== undefined) n += m.size;
    return n;
  }

  /** The staged state of `k` (`hash` as `hashInternalKey` gives it), or undefined if none. */
  get(k: string, hash: number): Entry | null | undefined {
    return this.maps[shardIndex(hash)]?.get(k);
  }

  set(k: string, hash: number, e: Entry | null): void {
    const i = shardIndex(hash);
    let m = this.maps[i];
    if (m === undefined) {
      m = new Map();
      this.maps[i] = m;
    }
    m.set(k, e);
    if (e === null) this.removalStaged = true;
  }

  *[Symbol.iterator](): IterableIterator<[string, Entry | null]> {
    for (const m of this.maps) if (m !== undefined) yield* m;
  }

  *keys(): IterableIterator<string> {
    for (const m of this.maps) if (m !== undefined) yield* m.keys();
  }

  /** False only when no key is staged as removed (exact after `pruneRemovals`). */
  hasRemovals(): boolean {
    return this.removalStaged;
  }

  /**
   * Drops the staged removals of keys `present` says are not stored (removing what is not
   * there needs no log record); afterwards `hasRemovals` is exact.
   */
  pruneRemovals(present: (k: string) => boolean): void {
    if (!this.removalStaged) return;
    let left = false;
    for (const m of this.maps) {
      if (m === undefined) continue;
      for (const [k, e] of m) {
        if (e !== null) continue;
        if (present(k)) left = true;
        else m.delete(k);
      }
    }
    this.removalStaged = left;
  }

  /**
   * Hands the Maps over (index = shard index) and leaves this empty. The caller must know
   * there are no removals (`hasRemovals`).
   */
  take(): (Map<string, Entry> | undefined)[] {
    const maps = this.maps.slice() as (Map<string, Entry> | undefined)[];
    this.clear();
    return maps;
  }

  clear(): void {
    this.maps.length = 0;
    this.removalStaged = false;
  }
}
