/**
 * The engine behind the public API: the keyspace, the clock, the TTL default, the
 * transaction counter and the persistence seam. It works on internal (latin1) keys that the
 * API layer has already validated; `Emdb`, `Transaction` and `Focus` are thin shells on top.
 *
 * Every write goes to `persistence` first and to memory second, so a write that fails to
 * log leaves memory untouched.
 */
import { EmdbError } from "./errors.js";
import { hashInternalKey, keyToBuffer, keyTooLarge, MAX_KEY_SIZE } from "./keys.js";
import type { Batch, Persistence } from "./persistence.js";
import { Keyspace, type Stored, Timed } from "./shards/keyspace.js";
import { StagedWrites } from "./shards/staged-writes.js";
import { END, RECORD, RecordRun } from "./tree-scan.js";
import type { Clock } from "./ttl/ttl.js";

/** Entries a forward scan yields from memory before it reads clean keys from the tree. */
const TREE_SCAN_AFTER = 256;

/** Keys a memory scan reads ahead of the one it serves (`EntryIterator.memoryKey`). */
const READ_AHEAD = 64;

/** What a batch replaced, to restore it: each key and its previous entry (undefined: none). */
interface Undo {
  readonly keys: string[];
  readonly prev: (Stored | undefined)[];
}

export class Core {
  readonly ks = new Keyspace();
  closed = false;
  lastTxId = 0;
  /** The persistence's `maxKeySize`, read once: every write compares against it. */
  maxKeySize = MAX_KEY_SIZE;

  constructor(
    public persistence: Persistence,
    readonly clock: Clock,
    readonly defaultTtlMs: number | undefined,
    readonly dbPath: string | undefined,
  ) {}

  /**
   * A transaction's callback is running (`Emdb.transaction`). A write through the database
   * itself then would not be part of the transaction, and would stay applied if the callback
   * threw: refused, so the mistake shows instead of breaking atomicity. (lmdb-js counts such
   * writes in the transaction, so users coming from it would expect them to roll back.)
   */
  inTransaction = false;

  assertOpen(): void {
    if (this.closed) throw new EmdbError("EMDB_CLOSED", "the database has been closed");
  }

  private assertNotInTransaction(): void {
    if (this.inTransaction) {
      throw new EmdbError(
        "EMDB_BUSY",
        "a transaction's callback is running: write through its handle (tx.insert, tx.remove), not through the database",
      );
    }
  }

  /** The live entry for a key, or undefined when absent or expired. */
  live(k: string, hash: number): Stored | undefined {
    const e = this.ks.shard(hash).get(k);
    if (e instanceof Timed && e.expiresAt <= this.clock()) return undefined;
    return e;
  }

  put(k: string, hash: number, value: string, expiresAt: number | undefined): void {
    this.assertNotInTransaction();
    if (k.length > this.maxKeySize) throw keyTooLarge(k.length, this.maxKeySize);
    this.persistence.put(k, value, expiresAt);
    this.ks.set(k, hash, value, expiresAt);
    try {
      this.persistence.settle();
    } finally {
      this.ks.reclaimDue();
    }
  }

  /** Removes a key; returns the previous *live* value (a copy). */
  remove(k: string, hash: number): Buffer | undefined {
    this.assertNotInTransaction();
    const e = this.ks.shard(hash).get(k);
    // Nothing to log for a key that is not there (emdb-rs logged it anyway, §9.3 S5).
    if (e === undefined) return undefined;
    const out = e instanceof Timed && e.expiresAt <= this.clock() ? undefined : this.ks.out(e);
    this.persistence.delete(k);
    this.ks.delete(k, hash);
    try {
      this.persistence.settle();
    } finally {
      this.ks.reclaimDue();
    }
    return out;
  }

  clear(): void {
    this.assertNotInTransaction();
    if (this.ks.size === 0) return;
    this.persistence.clear();
    this.ks.clear();
    this.persistence.settle();
  }

  /**
   * Applies `ops` as one atomic unit with a fresh transaction id, and empties `ops`: a
   * million-write transaction's staging Maps are let go (or, loading an empty keyspace,
   * taken over as its shards) before the checkpoint it may trigger.
   */
  applyBatch(ops: Batch & { clear(): void }): void {
    this.assertNotInTransaction();
    const size = ops.size;
    if (size === 0) return;
    const txId = this.lastTxId + 1;
    const generation = this.persistence.durableGeneration;
    const deferred = this.persistence.batch(txId, ops);
    this.lastTxId = txId;
    const ks = this.ks;
    // A deferred batch is only durable once its checkpoint commits: keep what it replaced, so
    // a failure before that leaves memory as it was. Into an empty keyspace, undoing is clearing.
    const wasEmpty = ks.size === 0;
    let undo: Undo | undefined;
    // Deferred, it is written into the tree by `settle` next: keep its entries in key order.
    if (wasEmpty && ops instanceof StagedWrites && !ops.hasRemovals())
      ks.adopt(ops.take(), deferred);
    else undo = this.applyEach(ops, size, deferred && !wasEmpty);
    try {
      this.persistence.settle();
    } catch (err) {
      // A checkpoint can fail after its meta page is synced (emptying the WAL): the batch is
      // then durable, a reopen shows it, and memory keeps it too. Only the error is reported.
      if (deferred && this.persistence.durableGeneration === generation) {
        if (wasEmpty) ks.clear();
        else if (undo !== undefined) this.undo(undo);
        this.lastTxId = txId - 1;
      }
      throw err;
    } finally {
      ks.dropEntriesInOrder();
      // Only now: `undo` may have put back refs to values loaded at open.
      ks.reclaimDue();
    }
  }

  /** Applies `ops` key by key and empties it; returns what it replaced when asked to. */
  private applyEach(ops: Batch & { clear(): void }, size: number, keepUndo: boolean) {
    const ks = this.ks;
    const undo: Undo | undefined = keepUndo
      ? { keys: new Array(size), prev: new Array(size) }
      : undefined;
    // Many new keys enter the ordered view in one sort and merge, not one splice each.
    const newKeys = ks.sorted.mergePays(size) ? ([] as string[]) : undefined;
    let i = 0;
    for (const [key, e] of ops) {
      const hash = hashInternalKey(key);
      const prev = e === null ? ks.delete(key, hash) : ks.setEntry(key, hash, e, newKeys);
      if (undo !== undefined) {
        undo.keys[i] = key;
        undo.prev[i] = prev;
      }
      i++;
    }
    if (newKeys !== undefined) ks.sorted.insertManyNew(newKeys);
    ops.clear();
    return undo;
  }

  private undo(u: Undo): void {
    const ks = this.ks;
    for (let j = u.prev.length - 1; j >= 0; j--) {
      const key = u.keys[j]!;
      const prev = u.prev[j];
      const hash = hashInternalKey(key);
      if (prev === undefined) ks.delete(key, hash);
      else ks.setEntry(key, hash, prev);
    }
  }

  /** Removes expired entries from memory and records them; returns how many. */
  sweep(): number {
    const now = this.clock();
    if (this.ks.nextDeadline() > now) return 0;
    const removed: string[] = [];
    this.ks.removeExpired(now, (k) => removed.push(k));
    if (removed.length > 0) {
      try {
        this.persistence.expired(removed);
        this.persistence.settle();
      } finally {
        // The removed values may be loaded ones: their pages may go now.
        this.ks.reclaimDue();
      }
    }
    return removed.length;
  }

  /** Live entry count. Drops expired entries first, so the count is exact. */
  liveCount(): number {
    this.sweep();
    return this.ks.size;
  }

  /**
   * Live entries within internal-key bounds, in order, as `[key, value]` Buffer copies.
   * Tolerates writes between steps (see `SortedKeys.range`).
   */
  entries(
    lo: string | undefined,
    loInclusive: boolean,
    hi: string | undefined,
    hiInclusive: boolean,
    reverse: boolean,
    limit: number,
  ): IterableIterator<[Buffer, Buffer]> {
    return new EntryIterator(
      this,
      this.ks.sorted.walker(lo, loInclusive, hi, hiInclusive, reverse),
      reverse,
      limit,
      hi,
      hiInclusive,
    );
  }

  *keys(): Generator<Buffer, void, undefined> {
    const keys = this.ks.sorted.range(undefined, true, undefined, true, false);
    for (;;) {
      this.assertOpen();
      const step = keys.next();
      if (step.done === true) return;
      const k = step.value;
      if (this.live(k, hashInternalKey(k)) !== undefined) yield keyToBuffer(k);
    }
  }

  /** Every key (live or expired) within [lo, hi): for group deletes. */
  keysIn(lo: string, hi: string): string[] {
    return [...this.ks.sorted.range(lo, true, hi, false, false)];
  }
}

/**
 * The iterator behind `iter`, `range` and `group`: a class, not a generator, because a scan
 * of a million entries pays for every generator resumption.
 */
class EntryIterator implements IterableIterator<[Buffer, Buffer]> {
  private n = 0;
  /** The last key returned from memory (internal form). */
  private last: string | undefined;
  /**
   * Records read from the tree, handed out from `run.at`: only while the keyspace has taken
   * no write since they were read (`runWrites`), else they may be stale.
   */
  private readonly run = new RecordRun();
  private runWrites = -1;
  /** The last entry passed came from `run` (its key: `run.keyOf(run.at - 1)`), not memory. */
  private lastFromRun = false;
  /** Keys `memoryKey` read ahead: served from `aheadAt` to `aheadEnd` while the view's version is `aheadVersion`. */
  private readonly ahead: string[] = [];
  private aheadAt = 0;
  private aheadEnd = 0;
  private aheadVersion = -1;
  private readonly aheadEntries: (Stored | undefined)[] = [];
  private aheadWrites = -1;
  /** What `memoryKey` found for the key it returned, when `entryKnown`. */
  private entry: Stored | undefined;
  private entryKnown = false;

  constructor(
    private readonly core: Core,
    private readonly nextKey: (resumeAfter?: string) => string | undefined,
    private readonly reverse: boolean,
    private readonly limit: number,
    private readonly hi: string | undefined,
    private readonly hiInclusive: boolean,
  ) {}

  [Symbol.iterator](): this {
    return this;
  }

  next(): IteratorResult<[Buffer, Buffer], undefined> {
    // The common step of a long scan is `fromRun`, kept small: V8 optimises a function
    // after an amount of work that grows with its size, and a scan's first pass in a fresh
    // process runs unoptimised until then. Anything else is `step`'s.
    return this.fromRun() ?? this.step();
  }

  /**
   * The next live record of the run read from the tree; undefined once it has none left,
   * or when a write since it was read has dropped what it held.
   */
  private fromRun(): IteratorResult<[Buffer, Buffer], undefined> | undefined {
    const run = this.run;
    const core = this.core;
    while (run.at < run.count && this.n < this.limit) {
      core.assertOpen();
      if (core.ks.writes !== this.runWrites) {
        run.drop(); // the records left in it may be stale
        return undefined;
      }
      const i = run.at++;
      this.lastFromRun = true;
      const entry = run.take(i);
      const at = run.expiries[i]!;
      if (at !== 0 && at <= core.clock()) continue;
      this.n++;
      return { done: false, value: entry };
    }
    return undefined;
  }

  private step(): IteratorResult<[Buffer, Buffer], undefined> {
    const core = this.core;
    const storage = core.persistence;
    const run = this.run;
    while (this.n < this.limit) {
      // Checked before each step, so an iterator kept past close() fails loudly.
      core.assertOpen();
      // Long forward scans read the tree (see btree/cursor.ts): a leaf's records at a time
      // while memory holds no change the tree lacks, else the keys of the in-memory view with
      // the values of the clean ones. Short scans stay in memory, where a descent from the
      // root would cost more than the lookups it saves.
      const long = !this.reverse && this.n >= TREE_SCAN_AFTER;
      if (long) {
        const after = this.lastFromRun ? run.keyOf(run.at - 1) : this.last!;
        const step = storage.nextRun(after, this.hi, this.hiInclusive, this.limit - this.n, run);
        if (step === END) break;
        if (step === RECORD) {
          this.runWrites = core.ks.writes;
          // Keys read ahead from memory lie behind the tree's position now.
          this.aheadAt = this.aheadEnd = 0;
          const r = this.fromRun();
          if (r !== undefined) return r;
          continue;
        }
      }
      // Looking ahead in memory pays unless the tree is about to serve most of those keys.
      const k = this.memoryKey(!long || !storage.readsClean());
      if (k === undefined) break;
      this.last = k;
      const clean = long ? storage.readClean(k, this.hi, this.hiInclusive) : undefined;
      if (clean !== undefined) {
        const at = storage.cleanExpiresAt;
        if (at !== 0 && at <= core.clock()) continue;
        this.n++;
        return { done: false, value: [keyToBuffer(k), clean] };
      }
      const e = this.entryKnown ? this.entry : core.ks.shard(hashInternalKey(k)).get(k);
      if (e === undefined || (e instanceof Timed && e.expiresAt <= core.clock())) continue;
      this.n++;
      return { done: false, value: [keyToBuffer(k), core.ks.out(e)] };
    }
    this.n = this.limit;
    return { done: true, value: undefined };
  }

  /**
   * The next key of the in-memory view, with its entry in `entry` when `entryKnown`. With
   * `batch`, it reads up to `READ_AHEAD` keys past it from the walker and looks them all up
   * in a tight loop: the hash-table misses of a block overlap, where one lookup per step
   * waits for each in turn. An entry looked up ahead is served only while the keyspace has
   * taken no write since (`Keyspace.writes`); after one, each key is looked up again when it
   * is served. A key added or removed meanwhile changes the view's version, and the keys
   * still ahead are dropped for a walk resumed after the last one served.
   */
  private memoryKey(batch: boolean): string | undefined {
    const ks = this.core.ks;
    if (this.aheadAt < this.aheadEnd) {
      if (ks.sorted.version === this.aheadVersion) {
        const i = this.aheadAt++;
        this.entryKnown = ks.writes === this.aheadWrites;
        this.entry = this.aheadEntries[i];
        return this.ahead[i];
      }
      this.aheadAt = this.aheadEnd = 0;
      this.entryKnown = false;
      return this.nextKey(this.last);
    }
    this.entryKnown = false;
    const first = this.nextKey(this.lastFromRun ? this.run.keyOf(this.run.at - 1) : undefined);
    this.lastFromRun = false;
    const room = Math.min(READ_AHEAD, this.limit - this.n - 1);
    if (first === undefined || !batch || room < 2) return first;
    const ahead = this.ahead;
    let end = 0;
    for (; end < room; end++) {
      const k = this.nextKey();
      if (k === undefined) break;
      ahead[end] = k;
    }
    const entries = this.aheadEntries;
    for (let j = 0; j < end; j++) {
      const k = ahead[j]!;
      entries[j] = ks.shard(hashInternalKey(k)).get(k);
    }
    this.aheadAt = 0;
    this.aheadEnd = end;
    this.aheadVersion = ks.sorted.version;
    this.aheadWrites = ks.writes;
    return first;
  }
}
