/**
 * Durable storage under the keyspace: the page file (copy-on-write B+tree), the WAL
 * sidecar, the lock, checkpoints and compaction. The open that recovers them is
 * `recovery.ts`. See docs/design.md for the formats and the crash points.
 *
 * Write path: the record is appended to the WAL buffer and synced as the flush policy says
 * *before* memory changes (Core applies it after this returns). Checkpoints run in
 * `settle()`, after memory has the write, at batch boundaries only.
 *
 * Checkpoint: the dirty keys, sorted, are applied copy-on-write to the tree; pages are
 * written and synced; the other meta slot is written and synced; the WAL is reset to
 * "empty, follows this generation"; only then may the pages freed by this checkpoint be
 * reused (the previous meta still reached them until the WAL stopped pointing at it).
 * Which keys, and whether to rebuild the tree instead: `checkpoint-plan.ts`.
 */

import type { MigrationReport } from "../migrations/migrate.js";
import { BTree } from "./btree/tree.js";
import type { ProgressListener } from "./builder.js";
import {
  appendsOnly,
  changeRuns,
  FULL_REWRITE_MIN_OPS,
  rebuildPays,
  sortedDirty,
} from "./checkpoint-plan.js";
import { EmdbError, isEmdbError } from "./errors.js";
import { failpoint } from "./failpoints.js";
import type { FlushPolicy } from "./flush-policy.js";
import { keyLimit } from "./keys.js";
import { openPager, readsThroughMmap } from "./open-pager.js";
import { dirOf, type StorageBackend } from "./pager/backend.js";
import type { FileLock } from "./pager/lock.js";
import { Pager } from "./pager/pager.js";
import type { Batch, Persistence, PersistenceStats } from "./persistence.js";
import { type Keyspace, Timed } from "./shards/keyspace.js";
import { compareTreeWithMemory, liveEntries, withProgress } from "./tree-memory.js";
import { NOT_CLEAN, type RecordRun, TreeScan, type TreeStep } from "./tree-scan.js";
import { type Clock, NO_EXPIRY } from "./ttl/ttl.js";
import type { TornTail } from "./wal/replay.js";
import { WalWriter } from "./wal/writer.js";

export interface FileStoreOptions {
  readonly path: string;
  readonly flushPolicy: FlushPolicy;
  readonly useMmap: boolean;
  readonly pageSize: number;
  readonly cachePages: number;
  readonly checkpointBytes: number;
  readonly clock: Clock;
  readonly onProgress?: ProgressListener | undefined;
  /** Tests inject a MemoryBackend; real databases use files. */
  readonly backend?: StorageBackend;
}

/** What an open hands the store: its files, and what the WAL's replay left to checkpoint. */
export interface RecoveredFiles {
  readonly pager: Pager;
  readonly wal: WalWriter;
  readonly lock: FileLock | undefined;
  /** Keys the replay changed. */
  readonly dirty: Set<string>;
  /** The replay met a Clear. */
  readonly cleared: boolean;
  readonly lastTxId: number;
  readonly migration: MigrationReport | undefined;
  /** What the WAL's replay found. */
  readonly replay: WalRecovery;
}

/** What the open's WAL replay found, for `stats()`. */
export interface WalRecovery {
  /** Records replayed (framing and Synced records included). */
  readonly records: number;
  /** Where the damage that ended the log was found and why, with the valid records cut. */
  readonly tornTail: TornTail | undefined;
}

export class FileStore implements Persistence {
  readonly durable = true;
  private readonly walPath: string;
  private pager: Pager;
  private tree: BTree;
  private wal: WalWriter;
  private lock: FileLock | undefined;
  /** Keys changed since the last checkpoint (the WAL's, at open). */
  private readonly dirty: Set<string>;
  /** `compact()` is rewriting the file (its progress listener may call back in). */
  private compacting = false;
  private cleared = false;
  /** A batch too large to log is waiting for the checkpoint that makes it durable. */
  private checkpointDue = false;
  /** So much changed that the next checkpoint rewrites the tree from memory, in order. */
  private allDirty = false;
  /** The cursor of `readClean` and `nextRun`. */
  private readonly scan = new TreeScan();
  cleanExpiresAt = 0;
  private unsyncedWrites = 0;
  private broken: unknown;
  lastTxId = 0;
  /** A quarter of the page size when pages are smaller than 4 KiB (`btree/limits.ts`). */
  get maxKeySize(): number {
    return keyLimit(this.pager.pageSize);
  }
  /** The pager takes a new meta page only once it is synced: a checkpoint's commit point. */
  get durableGeneration(): number {
    return this.pager.meta.generation;
  }
  /** What the open migrated from an emdb-rs file, if it did. */
  migration: MigrationReport | undefined;
  private readonly replay: WalRecovery;

  /** @internal Made by `openFileStore` (`recovery.ts`), once the files are recovered. */
  constructor(
    private readonly opts: FileStoreOptions,
    private readonly backend: StorageBackend,
    private readonly ks: Keyspace,
    files: RecoveredFiles,
  ) {
    this.dirty = files.dirty;
    this.walPath = `${opts.path}.wal`;
    this.pager = files.pager;
    this.tree = new BTree(files.pager);
    this.wal = files.wal;
    this.lock = files.lock;
    this.cleared = files.cleared;
    this.lastTxId = files.lastTxId;
    this.migration = files.migration;
    this.replay = files.replay;
    this.wireFailpoints();
  }

  private wireFailpoints(): void {
    this.pager.failpoint = failpoint;
    this.wal.failpoint = failpoint;
  }

  // ---- write path ------------------------------------------------------------------------

  private guard(): void {
    this.assertIdle();
    if (this.broken !== undefined) {
      throw new EmdbError(
        "EMDB_IO",
        "an earlier write or checkpoint failed; the database refuses writes until it is reopened",
        { file: this.opts.path, cause: this.broken },
      );
    }
  }

  /** Makes the just-logged write as durable as the flush policy promises. */
  private acknowledge(): void {
    const policy = this.opts.flushPolicy;
    try {
      if (policy.kind === "onEachWrite") {
        this.wal.sync();
      } else if (policy.kind === "everyN") {
        if (++this.unsyncedWrites >= policy.n) {
          this.wal.sync();
          this.unsyncedWrites = 0;
        }
      }
    } catch (err) {
      this.latch(err);
    }
  }

  put(key: string, value: string, expiresAt: number | undefined): void {
    this.guard();
    try {
      this.logPut(key, value, expiresAt);
    } catch (err) {
      this.latch(err);
    }
    this.dirty.add(key);
    this.acknowledge();
  }

  /**
   * Logs a write. In the log a deadline of 0 means "never", and a write whose deadline is 0
   * (a clock at 0, `Ttl.after(0)`) is expired at once: it is logged as the removal it is.
   */
  private logPut(key: string, value: string, expiresAt: number | undefined): void {
    if (expiresAt === NO_EXPIRY) this.wal.appendDelete(key);
    else this.wal.appendPut(key, value, expiresAt ?? NO_EXPIRY);
  }

  readClean(k: string, hi: string | undefined, hiInclusive: boolean): Buffer | undefined {
    if (!this.readsClean() || this.dirty.has(k)) return undefined;
    const value = this.scan.read(this.tree, this.pager.meta.generation, k, hi, hiInclusive);
    this.cleanExpiresAt = this.scan.expiresAt;
    return value;
  }

  nextRun(
    after: string,
    hi: string | undefined,
    hiInclusive: boolean,
    max: number,
    run: RecordRun,
  ): TreeStep {
    if (!this.treeServesScans() || this.dirty.size !== 0) return NOT_CLEAN;
    const gen = this.pager.meta.generation;
    return this.scan.nextRun(this.tree, gen, after, hi, hiInclusive, max, run);
  }

  readsClean(): boolean {
    // With many changed keys most reads would fall back to memory after paying for the
    // dirty lookup too: read memory straight away.
    return this.treeServesScans() && this.dirty.size * 4 <= this.ks.size;
  }

  /** Whether the tree holds every key not in the dirty set as memory does. */
  private treeServesScans(): boolean {
    return !this.cleared && !this.allDirty && this.broken === undefined;
  }

  delete(key: string): void {
    this.guard();
    try {
      this.wal.appendDelete(key);
    } catch (err) {
      this.latch(err);
    }
    this.dirty.add(key);
    this.acknowledge();
  }

  clear(): void {
    this.guard();
    try {
      this.wal.appendClear();
    } catch (err) {
      this.latch(err);
    }
    this.dirty.clear();
    this.cleared = true;
    this.acknowledge();
  }

  batch(txId: number, ops: Batch): boolean {
    this.guard();
    if (ops.size >= DIRECT_BATCH_MIN_OPS) {
      let bytes = 0;
      for (const [key, e] of ops) bytes += key.length + (e === null ? 0 : this.ks.str(e).length);
      if (bytes >= this.opts.checkpointBytes || this.importsIntoSmallTree(ops.size, bytes)) {
        // Logging it and then checkpointing would write every byte twice: the checkpoint
        // that settle() runs next is atomic and durable on its own (meta switch).
        // Keys all past the last one stay in the dirty set, so the checkpoint can add them at
        // the tree's right edge instead of rewriting it (see checkpoint-plan.ts).
        if (ops.size >= FULL_REWRITE_MIN_OPS && !appendsOnly(this.ks, ops.keys())) {
          this.allDirty = true;
        } else for (const key of ops.keys()) this.dirty.add(key);
        this.lastTxId = txId;
        this.checkpointDue = true;
        return true;
      }
    }
    const wal = this.wal;
    try {
      wal.appendBatchBegin(txId, ops.size);
      for (const [key, e] of ops) {
        if (e === null) wal.appendDelete(key);
        else if (e instanceof Timed) this.logPut(key, this.ks.str(e), e.expiresAt);
        else this.logPut(key, e, undefined);
      }
      wal.appendBatchEnd(txId, ops.size);
    } catch (err) {
      this.latch(err);
    }
    for (const key of ops.keys()) this.dirty.add(key);
    this.lastTxId = txId;
    this.acknowledge();
    return false;
  }

  /**
   * Whether a batch of `bytes` too small to fill the WAL is still better written straight
   * into the tree: a first import, or any batch at least as large as the tree. Its
   * checkpoint rewrites at most the tree's records besides the batch's, about what logging
   * the batch and checkpointing it later would write, and it leaves a tree that
   * scans read without the in-memory index. Below a sixteenth of the WAL threshold (1 MiB
   * by default) a batch stays on the log: one sync against a checkpoint's two (a choice,
   * see docs/design.md).
   */
  private importsIntoSmallTree(ops: number, bytes: number): boolean {
    return bytes >= this.opts.checkpointBytes / 16 && this.tree.entryCount <= ops;
  }

  expired(keys: readonly string[]): void {
    // Memory has let them go already: marked dirty first, whatever happens to the log, so
    // the tree drops them at the next checkpoint and `check()` skips them until then.
    for (const k of keys) this.dirty.add(k);
    if (this.broken !== undefined || this.compacting) return;
    // Logged like removes but not acknowledged writes: losing them in a crash only means
    // they are swept again at the next open. Hence not logged during a compaction, whose
    // old WAL must stay empty (see `compact`): the next checkpoint still drops them.
    try {
      for (const k of keys) this.wal.appendDelete(k);
    } catch (err) {
      this.latch(err);
    }
  }

  /**
   * Stops the store after a failed WAL write: the writer refuses further records, and a
   * checkpoint, which would reset it and take writes again, must not run either. Until a
   * reopen, writes and `flush()` throw EMDB_IO and sweeps log nothing; reads go on.
   */
  private latch(err: unknown): never {
    // A refused argument wrote nothing: it does not stop the store.
    if (!isEmdbError(err, "EMDB_KEY_TOO_LARGE") && !isEmdbError(err, "EMDB_VALUE_TOO_LARGE")) {
      this.broken = err;
    }
    throw err;
  }

  /**
   * Throws EMDB_BUSY while `compact()` runs. Its progress listener may call back into the
   * database; a write then would go to the WAL of the file being replaced, where a crash
   * before the new WAL exists would lose it, or leave records the new file cannot accept.
   */
  assertIdle(): void {
    if (this.compacting) {
      throw new EmdbError(
        "EMDB_BUSY",
        "compact() is running: writes, flush(), compact() and close() must wait until it returns (reads are allowed from onProgress)",
        { file: this.opts.path },
      );
    }
  }

  settle(): void {
    if (this.broken !== undefined || this.compacting) return;
    if (this.checkpointDue) {
      // A batch that skipped the WAL is durable only once this commits: it must run, and
      // if it cannot, the batch is undone (`Core.applyBatch`).
      this.checkpointDue = false;
      this.checkpoint();
    } else if (this.wal.size >= this.checkpointThreshold()) {
      // The writes that filled the log are durable as their policy promised already: an
      // injected clock that gives a bad reading (EMDB_INVALID_CONFIG) or throws puts the
      // checkpoint off to a later write or flush(), which report it, instead of failing a
      // write that stands.
      let now: number;
      try {
        now = this.opts.clock();
      } catch {
        return;
      }
      this.checkpoint(now);
    }
  }

  // ---- checkpoint ------------------------------------------------------------------------

  /**
   * The WAL size that triggers a checkpoint: the configured bytes, or half the page file's
   * size when that is larger. A checkpoint rewrites the pages its changes touch, and random
   * changes touch most of a tree, so a fixed threshold makes a growing database rewrite
   * itself over and over; a threshold proportional to its size keeps that work amortized
   * O(1) per write (the ratio an LSM tree keeps between its levels).
   */
  private checkpointThreshold(): number {
    return Math.max(this.opts.checkpointBytes, (this.pager.pageCount * this.pager.pageSize) / 2);
  }

  /**
   * Writes every change since the last checkpoint into the tree and empties the WAL. `reading`:
   * the clock's reading, when the caller has taken it.
   */
  checkpoint(reading?: number): void {
    this.guard();
    if (this.dirty.size === 0 && !this.cleared && !this.allDirty) {
      // Nothing changed the tree; make sure any logged bytes are durable anyway.
      if (this.wal.bufferedBytes > 0 || this.unsyncedWrites > 0) this.wal.sync();
      this.unsyncedWrites = 0;
      return;
    }
    // Read before the store can stop: a bad reading of an injected clock (EMDB_INVALID_CONFIG)
    // is the caller's error, not a failed checkpoint.
    const now = reading ?? this.opts.clock();
    try {
      failpoint("checkpoint:before");
      this.dropExpired(now);
      if (this.allDirty || rebuildPays(this.dirty, this.ks)) {
        this.tree.rebuild(liveEntries(this.ks, now));
      } else {
        let first = true;
        for (const changes of changeRuns(this.ks, sortedDirty(this.dirty, this.ks), now)) {
          this.tree.apply(changes, { clearFirst: this.cleared && first });
          first = false;
        }
      }
      this.tree.commit(this.lastTxId);
      this.wal.reset(this.pager.meta.generation);
      failpoint("checkpoint:after-wal-reset");
      this.pager.releasePending();
      this.dirty.clear();
      this.cleared = false;
      this.allDirty = false;
      this.unsyncedWrites = 0;
    } catch (err) {
      this.broken = err;
      throw err;
    }
  }

  /**
   * Removes from memory the entries expired at `now`, the clock's current reading, and marks
   * them dirty. A tree write leaves out what has expired by then; were memory to
   * keep those entries until a sweep, a clock set back afterwards would show them to `get`
   * but not to scans of the tree, and `check()` would find the two apart.
   */
  private dropExpired(now: number): void {
    this.ks.removeExpired(now, (k) => this.dirty.add(k));
  }

  flush(): void {
    try {
      this.checkpoint();
    } finally {
      // It dropped expired entries, whose values may be loaded ones. Never inside
      // `checkpoint`: a failed batch's undo may still put back refs into due chunks.
      this.ks.reclaimDue();
    }
  }

  /**
   * Rewrites the whole database into `<path>.compact.tmp` with a bulk load (no free pages,
   * no expired data), syncs it, renames it over the page file, syncs the directory, and
   * binds a fresh WAL to it. A crash leaves either the old file (the temp file is ignored
   * and removed at the next compaction) or the new one with an empty WAL.
   */
  compact(): void {
    try {
      this.compactFile();
    } finally {
      this.ks.reclaimDue(); // as in `flush`
    }
  }

  private compactFile(): void {
    this.checkpoint();
    const path = this.opts.path;
    const tmp = `${path}.compact.tmp`;
    const backend = this.backend;
    this.compacting = true;
    let replaced = false;
    try {
      if (backend.exists(tmp)) backend.remove(tmp);
      const next = Pager.open(backend, tmp, {
        temporary: true,
        pageSize: this.pager.pageSize,
        cachePages: this.opts.cachePages,
        now: this.opts.clock,
      });
      try {
        const tree = new BTree(next);
        const now = this.opts.clock();
        this.dropExpired(now);
        // Its progress listener may read (a sweep) or try to flush: no page copy may go while
        // the rewrite holds refs it looked up ahead.
        this.ks.holdReclaims = true;
        try {
          tree.rebuild(withProgress(liveEntries(this.ks, now), this.ks.size, this.opts.onProgress));
        } finally {
          this.ks.holdReclaims = false;
        }
        tree.commit(this.lastTxId);
      } finally {
        next.close();
      }
      failpoint("compact:tmp-written");
      backend.rename(tmp, path);
      replaced = true;
      // Loaded values may lie in private maps of the replaced file, which would keep its
      // disk space; the new file is not mapped (nothing was loaded from it).
      this.ks.arena.detachFile();
      backend.syncDir(dirOf(path));
      failpoint("compact:renamed");
      this.scan.reset();
      this.pager.close();
      this.pager = openPager(backend, this.opts);
      this.lock?.guardPageFile(path);
      this.tree = new BTree(this.pager);
      this.wal.close();
      this.wal = WalWriter.create(
        backend,
        this.walPath,
        this.pager.fileId,
        this.pager.meta.generation,
        failpoint,
      );
      this.wireFailpoints();
    } catch (err) {
      if (replaced) {
        this.broken = err;
      } else {
        // The old files are untouched and nothing was logged meanwhile (see assertIdle):
        // the database stays usable after, say, a progress listener threw or the disk filled.
        try {
          if (backend.exists(tmp)) backend.remove(tmp);
        } catch {
          // Left for the next compaction, which removes it first.
        }
      }
      throw err;
    } finally {
      this.compacting = false;
    }
  }

  close(): void {
    this.assertIdle();
    try {
      if (this.broken === undefined) this.checkpoint();
    } finally {
      this.scan.reset();
      // Each step runs whatever the one before threw: a WAL whose trim failed must not keep
      // the page file open and the lock held (a reopen would get EMDB_LOCK_BUSY).
      try {
        this.wal.close();
      } finally {
        try {
          this.pager.close();
        } finally {
          this.lock?.release();
          this.lock = undefined;
        }
      }
    }
  }

  stats(): PersistenceStats {
    const p = this.pager.stats();
    return {
      storage: "file",
      reads: readsThroughMmap(this.pager) ? "mmap" : "pread",
      pageSize: p.pageSize,
      pageCount: p.pageCount,
      freePages: p.freePages + p.pendingPages,
      fileBytes: p.fileBytes,
      walBytes: this.wal.size,
      walFileBytes: this.wal.fileLength,
      generation: p.generation,
      dirtyKeys: this.dirty.size,
      migratedFrom: this.migration?.from,
      migrationBackup: this.migration?.backup,
      replayedRecords: this.replay.records,
      tornTailAt: this.replay.tornTail?.offset,
      tornTailReason: this.replay.tornTail?.reason,
      droppedRecords: this.replay.tornTail?.dropped ?? 0,
    };
  }

  /**
   * The page file is sound, and the tree plus the changes not yet checkpointed equal the
   * keyspace.
   */
  check(): string[] {
    const problems = this.tree.check();
    if (problems.length > 0) return problems;
    return compareTreeWithMemory(this.tree, this.ks, this.dirty, this.cleared);
  }
}

/**
 * A batch at least this long whose bytes pass the checkpoint threshold (or, into a tree no
 * larger than the batch, a sixteenth of it) skips the WAL.
 */
const DIRECT_BATCH_MIN_OPS = 64;
