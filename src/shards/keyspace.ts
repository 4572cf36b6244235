/**
 * The in-memory primary index: every key → its value and expiry, in 32 hash shards, plus
 * the ordered view (`SortedKeys`) and the expiry heap.
 *
 * Why shards: one V8 Map holds at most 2^24 entries ("Map maximum size exceeded" at
 * 16,777,216), so 32 of them lift the limit to 2^29. The shard is picked by FNV-1a of the
 * key bytes, computed while the key is validated (see `keys.ts`), so a read is one hash and
 * one Map lookup.
 *
 * An entry is the value itself, a latin1 string (see `keys.ts`), when it never expires (no
 * wrapper object per key: memory is the cost of an in-memory index), or a `Timed` when it
 * has a deadline. A value loaded at open and not written since is a number instead (in a
 * `Timed`, when it has a deadline): a ref into the page copies of `value-arena.ts`, which
 * spares the collector a string per value.
 */
import { hashKeyBytes, hashInternalKey as hashOf, valueOut } from "../keys.js";
import { ExpiryHeap } from "../ttl/expiry-heap.js";
import { LoadStaging } from "./load-staging.js";
import { sortLatin1 } from "./radix-sort.js";
import { SortedKeys } from "./sorted-keys.js";
import { ValueArena } from "./value-arena.js";

export const SHARD_COUNT = 32;
const SHARD_MASK = SHARD_COUNT - 1;

/** Which of the 32 shards holds a key of this FNV-1a hash. */
export function shardIndex(hash: number): number {
  return (hash ^ (hash >>> 15)) & SHARD_MASK;
}

export class Timed {
  constructor(
    /** The value, or a ref to it when it was loaded at open (only in the index). */
    readonly value: string | number,
    readonly expiresAt: number,
  ) {}
}

/** A value as a write gives it: the string, or a `Timed`. */
export type Entry = string | Timed;

/** What the index holds for a key: an `Entry`, or a ref to a value loaded at open. */
export type Stored = Entry | number;

/** The arena ref an entry holds, or -1. */
function refOf(e: Stored): number {
  if (typeof e === "number") return e;
  return e instanceof Timed && typeof e.value === "number" ? e.value : -1;
}

/** Deadline of an entry, or undefined when it never expires. */
export function entryExpiry(e: Entry): number | undefined {
  return e instanceof Timed ? e.expiresAt : undefined;
}

export class Keyspace {
  readonly shards: Map<string, Stored>[] = [];
  readonly arena = new ValueArena();
  readonly sorted = new SortedKeys();
  readonly expiries = new ExpiryHeap();
  /** Number of entries (live and expired-but-not-yet-removed). */
  private total = 0;
  /**
   * Counts changes to the shards (every set, delete, clear and load, and a loaded value
   * turned into a string): a scan that looked entries up ahead serves them only while this
   * is unchanged.
   */
  writes = 0;
  /** Entries that carry a deadline (for heap maintenance). */
  private timed = 0;
  /** Set while a rewrite holds refs it looked up ahead (`FileStore.compact`): no reclaim. */
  holdReclaims = false;
  /** Entries between `loadEntry` and `finishLoad`. */
  private loading: LoadStaging | undefined;
  /** What `adopt` kept: the entries of the ordered view's keys, position for position. */
  private inOrder: { writes: number; entries: Entry[] } | undefined;

  constructor() {
    for (let i = 0; i < SHARD_COUNT; i++) this.shards.push(new Map());
  }

  get size(): number {
    return this.total;
  }

  get timedCount(): number {
    return this.timed;
  }

  shard(hash: number): Map<string, Stored> {
    return this.shards[shardIndex(hash)]!;
  }

  /** Stores an entry; returns the previous one. */
  set(k: string, hash: number, value: string, expiresAt: number | undefined): Stored | undefined {
    return this.setEntry(k, hash, expiresAt === undefined ? value : new Timed(value, expiresAt));
  }

  /**
   * Stores an entry as it is (a transaction's staged one); returns the previous one. With
   * `newKeys`, a new key is pushed there instead of entering the ordered view, so a large
   * batch can add them all at once (`sorted.insertManyNew`), which it must do before
   * anything reads the view.
   */
  setEntry(k: string, hash: number, entry: Stored, newKeys?: string[]): Stored | undefined {
    const shard = this.shard(hash);
    const prev = shard.get(k);
    shard.set(k, entry);
    this.writes++;
    const ref = refOf(entry);
    if (ref >= 0) this.arena.retain(ref);
    if (prev === undefined) {
      this.total++;
      if (newKeys === undefined) this.sorted.insertNew(k);
      else newKeys.push(k);
    } else {
      const prevRef = refOf(prev);
      if (prevRef >= 0) this.arena.release(prevRef);
      if (prev instanceof Timed) this.timed--;
    }
    if (entry instanceof Timed) {
      this.timed++;
      this.expiries.push(entry.expiresAt, k);
      this.maybeShedHeap();
    }
    return prev;
  }

  /** Removes a key; returns the entry it held. */
  delete(k: string, hash: number): Stored | undefined {
    const shard = this.shard(hash);
    const prev = shard.get(k);
    if (prev === undefined) return undefined;
    shard.delete(k);
    this.writes++;
    this.total--;
    if (prev instanceof Timed) this.timed--;
    const ref = refOf(prev);
    if (ref >= 0) this.arena.release(ref);
    this.sorted.delete(k);
    return prev;
  }

  /**
   * Bulk fill of an empty keyspace from keys in ascending order (as a B+tree scan yields
   * them): `startLoad`, `loadEntry` for each, then `finishLoad`. O(n), with no per-key
   * search of the ordered view. Each shard's Map is filled in one go at `finishLoad`, from
   * the entries staged for it (`load-staging.ts`): filling the 32 Maps side by side, each
   * growing in turn, misses the cache on nearly every insert, and a million keys load about
   * 1.7× faster this way. The key is `kb[start..end)`, read before the next call.
   * `recordBytes`: for a ref (alone or in a `Timed`), the length of its record as the scan
   * found it (the arena weighs chunks by it); else unused.
   */
  loadEntry(kb: Buffer, start: number, end: number, e: Stored, recordBytes: number): void {
    this.loadingNow().add(shardIndex(hashKeyBytes(kb, start, end)), kb, start, end, e);
    if (typeof e === "number") this.arena.loaded(e, recordBytes);
    else if (e instanceof Timed && typeof e.value === "number") {
      this.arena.loaded(e.value, recordBytes);
    }
  }

  /** Starts a load of about `expected` entries (a hint: room is made for them up front). */
  startLoad(expected: number): void {
    if (this.total !== 0) throw new Error("internal: load into a keyspace that holds keys");
    this.loading = new LoadStaging(SHARD_COUNT, expected);
  }

  private loadingNow(): LoadStaging {
    if (this.loading === undefined) throw new Error("internal: load not started");
    return this.loading;
  }

  finishLoad(): void {
    const staged = this.loadingNow();
    this.loading = undefined;
    this.writes++;
    const count = staged.count;
    const byShard: string[][] = [];
    for (let i = 0; i < SHARD_COUNT; i++) {
      const { keys, refs, others } = staged.drain(i);
      byShard.push(keys);
      const m = this.shards[i]!;
      let other = 0;
      for (let j = 0; j < keys.length; j++) {
        const k = keys[j]!;
        const ref = refs[j]!;
        if (ref >= 0) {
          m.set(k, ref);
          continue;
        }
        const e = others[other++]!;
        m.set(k, e);
        if (e instanceof Timed) {
          this.timed++;
          this.expiries.push(e.expiresAt, k);
        }
      }
    }
    this.sorted.loadInterleaved(staged.shardOf, byShard);
    this.total = count;
    this.arena.finishLoad();
    this.reclaimDue();
  }

  /**
   * Takes over `maps` as the shards of this empty keyspace (index = `shardIndex`): a
   * transaction's staging Maps, when it loads an empty database. O(n) besides one sort of
   * the keys for the ordered view; the Maps are not copied. With `inOrder` (a checkpoint
   * writes them next), the entries are sorted along with their keys and kept for
   * `takeEntriesInOrder`, so that the tree is written without looking each key up again.
   */
  adopt(maps: readonly (Map<string, Entry> | undefined)[], inOrder = false): void {
    if (this.total !== 0) throw new Error("internal: adopt into a keyspace that holds keys");
    this.writes++;
    let n = 0;
    for (const m of maps) if (m !== undefined) n += m.size;
    const keys = new Array<string>(n);
    const entries = inOrder ? new Array<Entry>(n) : undefined;
    let o = 0;
    for (let i = 0; i < SHARD_COUNT; i++) {
      const m = maps[i];
      if (m === undefined) continue;
      this.shards[i] = m;
      for (const [k, e] of m) {
        if (entries !== undefined) entries[o] = e;
        keys[o++] = k;
        if (e instanceof Timed) {
          this.timed++;
          this.expiries.push(e.expiresAt, k);
        }
      }
    }
    this.total = n;
    if (entries === undefined) {
      this.sorted.insertManyNew(keys);
      return;
    }
    sortLatin1(keys, entries);
    this.sorted.loadSorted(keys);
    this.inOrder = { writes: this.writes, entries };
  }

  /**
   * The entries `adopt` sorted, each at its key's place in the ordered view, if no write
   * has come since (else undefined); let go either way. A caller must stop using them as
   * soon as `writes` changes.
   */
  takeEntriesInOrder(): readonly Entry[] | undefined {
    const kept = this.inOrder;
    this.inOrder = undefined;
    return kept !== undefined && kept.writes === this.writes ? kept.entries : undefined;
  }

  /** Lets go of what `adopt` kept, if nothing took it (the batch's write is over). */
  dropEntriesInOrder(): void {
    this.inOrder = undefined;
  }

  /** True when the key has an entry (live or expired). */
  has(k: string): boolean {
    return this.shard(hashOf(k)).has(k);
  }

  /** A stored value as the Buffer a caller gets (a copy). */
  out(e: Stored): Buffer {
    if (typeof e === "string") return valueOut(e);
    if (typeof e === "number") return this.arena.out(e);
    const v = e.value;
    return typeof v === "string" ? valueOut(v) : this.arena.out(v);
  }

  /** A stored value as an internal (latin1) string. */
  str(e: Stored): string {
    if (typeof e === "string") return e;
    if (typeof e === "number") return this.arena.str(e);
    const v = e.value;
    return typeof v === "string" ? v : this.arena.str(v);
  }

  /**
   * Lets go of the arena chunks that few loaded values still use (see `value-arena.ts`),
   * making those values strings. Only between writes: a batch being applied may still put
   * back refs it replaced.
   */
  reclaimDue(): void {
    if (this.holdReclaims) return;
    this.arena.reclaimDue((k, ref) => {
      const shard = this.shard(hashOf(k));
      const e = shard.get(k);
      if (e === ref) shard.set(k, this.arena.str(ref));
      // The same deadline: the expiry heap's pair for the key stays valid.
      else if (e instanceof Timed && e.value === ref) {
        shard.set(k, new Timed(this.arena.str(ref), e.expiresAt));
      } else return false;
      this.writes++;
      return true;
    });
  }

  clear(): void {
    for (const s of this.shards) s.clear();
    this.writes++;
    this.inOrder = undefined;
    this.arena.clear();
    this.sorted.clear();
    this.expiries.clear();
    this.total = 0;
    this.timed = 0;
  }

  /**
   * Removes every entry whose deadline is <= now and calls `onRemoved` for each, in deadline
   * order. Costs O(removed × log n) thanks to the heap.
   */
  removeExpired(now: number, onRemoved?: (k: string) => void): number {
    const heap = this.expiries;
    let removed = 0;
    while (heap.peek() <= now) {
      const deadline = heap.peek();
      const k = heap.peekKey()!;
      heap.pop();
      const hash = hashOf(k);
      const e = this.shard(hash).get(k);
      // A stale pair: the key was removed, overwritten or given another deadline since.
      if (!(e instanceof Timed) || e.expiresAt !== deadline) continue;
      this.delete(k, hash);
      removed++;
      onRemoved?.(k);
    }
    return removed;
  }

  /** The earliest deadline still in the heap (may be stale), or Infinity. */
  nextDeadline(): number {
    return this.expiries.peek();
  }

  private maybeShedHeap(): void {
    const heap = this.expiries;
    if (heap.size <= 1024 || heap.size <= 2 * this.timed) return;
    const pairs: [number, string][] = [];
    for (const shard of this.shards) {
      for (const [k, e] of shard) if (e instanceof Timed) pairs.push([e.expiresAt, k]);
    }
    heap.rebuild(pairs);
  }

  /** Invariants between the shards, the ordered view and the counters. */
  check(): string[] {
    const problems = this.sorted.check();
    let n = 0;
    let timed = 0;
    const refs: number[] = [];
    for (let i = 0; i < SHARD_COUNT; i++) {
      for (const [k, e] of this.shards[i]!) {
        n++;
        if (e instanceof Timed) timed++;
        const ref = refOf(e);
        if (ref >= 0) {
          const name = `key ${JSON.stringify(k)}`;
          if (!this.arena.holds(ref)) {
            problems.push(`${name} refers to a released value`);
          } else {
            const deadline = e instanceof Timed ? e.expiresAt : 0;
            if (!this.arena.inline(ref)) {
              problems.push(`${name} refers to a record whose value is not inline`);
            } else if (this.arena.key(ref) !== k) {
              problems.push(`${name} refers to the value of another key`);
            } else if (this.arena.expiresAt(ref) !== deadline) {
              problems.push(
                `${name} expires at ${deadline} but its record at ${this.arena.expiresAt(ref)}`,
              );
            }
            refs.push(ref);
          }
        }
        if (this.shard(hashOf(k)) !== this.shards[i])
          problems.push(`key ${JSON.stringify(k)} in the wrong shard`);
      }
    }
    problems.push(...this.arena.check(refs, !this.holdReclaims));
    if (n !== this.total) problems.push(`keyspace: count ${this.total} but shards hold ${n}`);
    if (timed !== this.timed)
      problems.push(`keyspace: timed count ${this.timed} but ${timed} held`);
    if (this.sorted.size !== n)
      problems.push(`keyspace: ordered view has ${this.sorted.size} keys, shards ${n}`);
    for (const k of this.sorted.all()) {
      if (!this.shard(hashOf(k)).has(k))
        problems.push(`ordered key ${JSON.stringify(k)} missing from shards`);
    }
    return problems;
  }
}
