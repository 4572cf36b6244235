/**
 * The public database handle. It validates arguments, converts keys to their internal form
 * and calls the engine (`Core`); the hot paths (`get`, `insert`) are one key pass, one shard
 * lookup and, for writes, one log append.
 */
import { type MigrationReport, prepareDatabaseFile } from "../migrations/migrate.js";
import { EmdbBuilder, type EmdbConfig, type ProgressListener } from "./builder.js";
import { Core } from "./core.js";
import { EmdbError } from "./errors.js";
import { FileStore } from "./file-store.js";
import type { FlushPolicy } from "./flush-policy.js";
import { Focus } from "./focus.js";
import { groupBounds } from "./groups.js";
import {
  encodeBound,
  encodeKey,
  encodeValue,
  hashInternalKey,
  type Key,
  keyHash,
  type Value,
  valueOut,
} from "./keys.js";
import { canonicalPath } from "./pager/db-path.js";
import { acquireLock } from "./pager/lock.js";
import { DEFAULT_PAGE_SIZE } from "./pager/page.js";
import { MemoryPersistence, type PersistenceStats } from "./persistence.js";
import { openFileStore } from "./recovery.js";
import { SHARD_COUNT, Timed } from "./shards/keyspace.js";
import { Transaction } from "./transaction.js";
import { checkedClock, MAX_EXPIRY_MS, resolveExpiry, systemClock, Ttl } from "./ttl/ttl.js";

export interface RangeOptions {
  gt?: Key;
  gte?: Key;
  lt?: Key;
  lte?: Key;
  /** Descending key order. */
  reverse?: boolean;
  /** At most this many entries (default: no limit). */
  limit?: number;
}

export interface EmdbStats {
  /** Entries that are live now (expired ones are dropped before counting). */
  liveKeys: number;
  /** Entries that carry an expiry. */
  expiringKeys: number;
  /** Number of hash shards of the in-memory index. */
  shardCount: number;
  /** Keys held by each shard. */
  shardSizes: number[];
  /**
   * Bytes of leaf-page copies that hold values loaded at open and not written since, in
   * place of one string per value (see docs/design.md, "Values loaded at open"). A chunk
   * (up to 1 MiB) is let go once the loaded records still in use fill a quarter of it or
   * less, as those values are overwritten or removed; 0 for an in-memory database.
   */
  loadedPageBytes: number;
  /** Id of the last committed transaction. */
  lastTxId: number;
  /** "memory" for in-memory databases, "file" for file-backed ones. */
  storage: "memory" | "file";
  path: string | undefined;
  flushPolicy: FlushPolicy["kind"];
  /**
   * For file-backed databases: how pages are read ("mmap" or "pread"), page size and count,
   * free pages, page-file size, WAL size in bytes (`walBytes`: its records, header included;
   * `walFileBytes`: the file, with the zeros preallocated after them), checkpoint
   * generation, dirty keys; what the open's WAL replay found: `replayedRecords`, and for a
   * torn tail it cut, `tornTailAt` (offset in the WAL of the damage; the log is cut there, or
   * back to the start of the transaction it interrupted), `tornTailReason` and
   * `droppedRecords` (valid records cut with it; 0 without one).
   */
  disk: PersistenceStats | undefined;
}

type Options = RangeOptions | undefined;

export class Emdb implements Disposable {
  private readonly core: Core;
  private readonly config: EmdbConfig;

  private constructor(config: EmdbConfig) {
    this.config = config;
    this.core = new Core(new MemoryPersistence(), config.clock, config.defaultTtlMs, config.path);
    if (config.path !== undefined) {
      const store = openFileStore(
        {
          path: resolvePath(config.path),
          flushPolicy: config.flushPolicy,
          useMmap: config.useMmap,
          pageSize: config.pageSize,
          cachePages: config.cachePages,
          checkpointBytes: config.checkpointBytes,
          clock: config.clock,
          onProgress: config.onProgress,
        },
        this.core.ks,
      );
      this.core.persistence = store;
      this.core.lastTxId = store.lastTxId;
      this.core.maxKeySize = store.maxKeySize;
      // Expired entries found at open are dropped (and logged) before anyone can see them.
      // A failure there (its checkpoint) must not leave the files open and the lock held.
      try {
        this.core.sweep();
      } catch (err) {
        try {
          store.close();
        } catch {
          // The sweep's error is the one to report.
        }
        throw err;
      }
    }
  }

  /** A builder for every option: `Emdb.builder().path("app.emdb").build()`. */
  static builder(): EmdbBuilder {
    return new EmdbBuilder((config) => new Emdb(config));
  }

  /** Opens (or creates) the database at `path` with default options. */
  static open(path: string): Emdb {
    return Emdb.builder().path(path).build();
  }

  /** A database that lives in memory only, with no default TTL. */
  static openInMemory(): Emdb {
    return Emdb.builder().build();
  }

  // ---- reads ---------------------------------------------------------------------------

  /** The value stored under `key` (a copy), or undefined when absent or expired. */
  get(key: Key): Buffer | undefined {
    const core = this.core;
    if (core.closed) core.assertOpen();
    const k = encodeKey(key);
    const e = core.ks.shard(keyHash).get(k);
    // The hottest path: `Keyspace.out` spelled out, the common forms tested first.
    if (typeof e === "string") return valueOut(e);
    if (typeof e === "number") return core.ks.arena.out(e);
    if (e === undefined) return undefined;
    return e.expiresAt <= core.clock() ? undefined : core.ks.out(e);
  }

  containsKey(key: Key): boolean {
    const core = this.core;
    core.assertOpen();
    const k = encodeKey(key);
    return core.live(k, keyHash) !== undefined;
  }

  /** Number of live entries. */
  len(): number {
    this.core.assertOpen();
    return this.core.liveCount();
  }

  isEmpty(): boolean {
    return this.len() === 0;
  }

  /** Every live `[key, value]`, in ascending byte order of keys. */
  iter(): IterableIterator<[Buffer, Buffer]> {
    this.core.assertOpen();
    return this.core.entries(undefined, true, undefined, true, false, Number.POSITIVE_INFINITY);
  }

  /** Every live key, in ascending byte order. */
  keys(): IterableIterator<Buffer> {
    this.core.assertOpen();
    return this.core.keys();
  }

  /** Live entries between bounds, in key order (or reversed), optionally limited. */
  range(options: RangeOptions = {}): IterableIterator<[Buffer, Buffer]> {
    this.core.assertOpen();
    if (typeof options !== "object" || options === null) {
      throw new TypeError("range(options) needs an object such as { gte, lt, reverse, limit }");
    }
    const o: Options = options;
    if (o.gt !== undefined && o.gte !== undefined)
      throw new TypeError("range: give gt or gte, not both");
    if (o.lt !== undefined && o.lte !== undefined)
      throw new TypeError("range: give lt or lte, not both");
    const lo =
      o.gt !== undefined
        ? encodeBound(o.gt, "gt")
        : o.gte !== undefined
          ? encodeBound(o.gte, "gte")
          : undefined;
    const hi =
      o.lt !== undefined
        ? encodeBound(o.lt, "lt")
        : o.lte !== undefined
          ? encodeBound(o.lte, "lte")
          : undefined;
    const limit = o.limit === undefined ? Number.POSITIVE_INFINITY : o.limit;
    if (typeof limit !== "number") {
      throw new TypeError(
        `range: limit must be a number, got ${limit === null ? "null" : typeof limit}`,
      );
    }
    if (Number.isNaN(limit) || limit < 0 || (Number.isFinite(limit) && !Number.isInteger(limit))) {
      throw new RangeError(
        `range: limit must be a non-negative integer or Infinity, got ${String(limit)}`,
      );
    }
    if (o.reverse !== undefined && typeof o.reverse !== "boolean") {
      throw new TypeError("range: reverse must be a boolean");
    }
    return this.core.entries(
      lo,
      o.gt === undefined,
      hi,
      o.lt === undefined,
      o.reverse === true,
      limit,
    );
  }

  // ---- writes --------------------------------------------------------------------------

  /** Stores `value` under `key`, with the database's default TTL (if any). */
  insert(key: Key, value: Value): void {
    const core = this.core;
    core.assertOpen();
    const k = encodeKey(key, true);
    const hash = keyHash;
    const v = encodeValue(value);
    const at =
      core.defaultTtlMs === undefined
        ? undefined
        : resolveExpiry(Ttl.default(), core.clock(), core.defaultTtlMs);
    core.put(k, hash, v, at);
  }

  /** Stores `value` under `key` with an explicit TTL. */
  insertWithTtl(key: Key, value: Value, ttl: Ttl): void {
    const core = this.core;
    core.assertOpen();
    const k = encodeKey(key, true);
    const hash = keyHash;
    const v = encodeValue(value);
    core.put(k, hash, v, resolveExpiry(ttl, core.clock(), core.defaultTtlMs));
  }

  /** Removes `key`; returns the value it held if it was live. */
  remove(key: Key): Buffer | undefined {
    this.core.assertOpen();
    const k = encodeKey(key);
    return this.core.remove(k, keyHash);
  }

  /** Removes every entry. */
  clear(): void {
    this.core.assertOpen();
    this.core.clear();
  }

  /**
   * Runs `fn` with a transaction handle and applies its writes atomically when it returns.
   * If `fn` throws, nothing is applied and the same error is rethrown. `fn` must be
   * synchronous: a returned Promise is refused (its writes are discarded).
   */
  transaction<T>(fn: (tx: Transaction) => T): T {
    this.core.assertOpen();
    if (typeof fn !== "function") throw new TypeError("transaction(fn) needs a function");
    const core = this.core;
    if (core.inTransaction) {
      throw new EmdbError(
        "EMDB_BUSY",
        "a transaction's callback is running: transactions do not nest; use its handle",
      );
    }
    const tx = new Transaction(core);
    let result: T;
    core.inTransaction = true;
    try {
      result = fn(tx);
    } catch (err) {
      tx.abort();
      throw err;
    } finally {
      core.inTransaction = false;
    }
    let thenable: boolean;
    try {
      thenable = isThenable(result);
    } catch (err) {
      tx.abort(); // a `then` getter that throws: nothing is applied, as for a throwing callback
      throw err;
    }
    if (thenable) {
      tx.abort();
      // The promise is the caller's, but nobody can await it now: keep its rejection quiet.
      (result as PromiseLike<unknown>).then(undefined, () => {});
      throw new TypeError(
        "transaction callbacks must be synchronous; the returned Promise was discarded and nothing was applied",
      );
    }
    tx.commit();
    return result;
  }

  // ---- TTL -----------------------------------------------------------------------------

  /**
   * Milliseconds until `key` expires; `Infinity` for a live key that never expires;
   * undefined when the key is absent or expired.
   */
  ttl(key: Key): number | undefined {
    const core = this.core;
    core.assertOpen();
    const e = core.live(encodeKey(key), keyHash);
    if (e === undefined) return undefined;
    if (e instanceof Timed) return e.expiresAt - core.clock();
    return Number.POSITIVE_INFINITY;
  }

  /** When `key` expires, or undefined when it is absent, expired, or never expires. */
  expiresAt(key: Key): Date | undefined {
    const core = this.core;
    core.assertOpen();
    const e = core.live(encodeKey(key), keyHash);
    // Capped: a file may hold a later deadline (emdb-rs allowed any u64), past what a Date holds.
    return e instanceof Timed ? new Date(Math.min(e.expiresAt, MAX_EXPIRY_MS)) : undefined;
  }

  /**
   * Removes the expiry of a live key. Returns true only if the key was live and had an
   * expiry; an expired key stays expired (emdb-rs brought it back, §9.3 S2).
   */
  persist(key: Key): boolean {
    const core = this.core;
    core.assertOpen();
    const k = encodeKey(key);
    const hash = keyHash;
    const e = core.live(k, hash);
    if (!(e instanceof Timed)) return false;
    core.put(k, hash, core.ks.str(e), undefined);
    return true;
  }

  /** Removes every expired entry now; returns how many it removed. */
  sweepExpired(): number {
    this.core.assertOpen();
    return this.core.sweep();
  }

  // ---- groups --------------------------------------------------------------------------

  /** A handle on the dotted-prefix group `prefix` (keys `prefix.*`). */
  focus(prefix: string): Focus {
    this.core.assertOpen();
    // As `group(prefix)` checks it: a prefix over MAX_KEY_SIZE could hold no key.
    groupBounds(prefix);
    return new Focus(this, prefix);
  }

  /** The live entries whose keys start with `prefix.`, in key order. */
  group(prefix: string): IterableIterator<[Buffer, Buffer]> {
    this.core.assertOpen();
    const { lo, hi } = groupBounds(prefix);
    return this.core.entries(lo, true, hi, false, false, Number.POSITIVE_INFINITY);
  }

  /** Removes every key starting with `prefix.` atomically; returns how many live keys it removed. */
  deleteGroup(prefix: string): number {
    const core = this.core;
    core.assertOpen();
    const { lo, hi } = groupBounds(prefix);
    const keys = core.keysIn(lo, hi);
    let live = 0;
    for (const k of keys) if (core.live(k, hashInternalKey(k)) !== undefined) live++;
    core.applyBatch(new Map(keys.map((key) => [key, null])));
    return live;
  }

  // ---- maintenance ---------------------------------------------------------------------

  /** Makes every acknowledged write durable (a no-op in memory). */
  flush(): void {
    this.core.assertOpen();
    this.core.persistence.flush();
  }

  /** Rewrites the file without free space or expired data (a no-op in memory). */
  compact(): void {
    this.core.assertOpen();
    this.core.sweep();
    this.core.persistence.compact();
  }

  /**
   * Upgrades a file written by emdb-rs. An open database is always current (opening
   * migrates), so this returns what the open migrated, or undefined when it found the file
   * already in emdb's format (and in memory). Use `Emdb.migrate(path)` to upgrade a file
   * without opening it.
   */
  migrate(): MigrationReport | undefined {
    this.core.assertOpen();
    const p = this.core.persistence;
    return p instanceof FileStore ? p.migration : undefined;
  }

  /**
   * Upgrades the emdb-rs file at `path` to emdb's format without opening the database:
   * the original is kept byte for byte as `<path>.v1.bak` / `.v2.bak` / `.v3.bak` (and a v3
   * WAL as `<path>.v3.bak.wal`). Returns undefined, changing nothing, when the file is
   * missing or already current. Takes the database's lock while it works.
   */
  static migrate(
    path: string,
    options: { pageSize?: number; clock?: () => number; onProgress?: ProgressListener } = {},
  ): MigrationReport | undefined {
    if (typeof path !== "string" || path.length === 0 || path.endsWith("/"))
      throw new TypeError("migrate(path) needs a file path");
    if (options.clock !== undefined && typeof options.clock !== "function")
      throw new TypeError("migrate(path, { clock }) needs a function returning ms");
    const file = resolvePath(path);
    const lock = acquireLock(file);
    try {
      return prepareDatabaseFile(file, {
        pageSize: options.pageSize ?? DEFAULT_PAGE_SIZE,
        now: options.clock !== undefined ? checkedClock(options.clock) : systemClock,
        onProgress: options.onProgress,
      });
    } finally {
      lock.release();
    }
  }

  stats(): EmdbStats {
    const core = this.core;
    core.assertOpen();
    const liveKeys = core.liveCount();
    return {
      liveKeys,
      expiringKeys: core.ks.timedCount,
      shardCount: SHARD_COUNT,
      shardSizes: core.ks.shards.map((s) => s.size),
      loadedPageBytes: core.ks.arena.bytes,
      lastTxId: core.lastTxId,
      storage: core.persistence.durable ? "file" : "memory",
      path: this.config.path,
      flushPolicy: this.config.flushPolicy.kind,
      disk: core.persistence.durable ? core.persistence.stats() : undefined,
    };
  }

  /** The database file, or undefined for an in-memory database. */
  path(): string | undefined {
    this.core.assertOpen();
    return this.config.path;
  }

  /**
   * Consistency check of everything the database holds; returns the problems found
   * (an empty array when consistent).
   */
  check(): string[] {
    this.core.assertOpen();
    return [...this.core.ks.check(), ...this.core.persistence.check()];
  }

  /** Flushes and releases the database. Closing twice is harmless. */
  close(): void {
    const core = this.core;
    if (core.closed) return;
    // Closing from compact()'s progress listener would pull the files from under it.
    core.persistence.assertIdle();
    try {
      core.persistence.close();
    } finally {
      core.closed = true;
      core.ks.clear();
    }
  }

  get closed(): boolean {
    return this.core.closed;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function isThenable(x: unknown): boolean {
  return (
    x !== null &&
    (typeof x === "object" || typeof x === "function") &&
    typeof (x as { then?: unknown }).then === "function"
  );
}

/** The page file's one name (`db-path.ts`); a failure to resolve it is an I/O error. */
function resolvePath(p: string): string {
  try {
    return canonicalPath(p);
  } catch (cause) {
    const msg = cause instanceof Error ? cause.message : String(cause);
    throw new EmdbError("EMDB_IO", `resolving the database path failed: ${msg}`, {
      file: p,
      cause,
    });
  }
}
