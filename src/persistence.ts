/**
 * The seam between the in-memory keyspace and durable storage.
 *
 * `Emdb` validates a write, hands it to its `Persistence` first and applies it to memory
 * only when that returned: a write that cannot be logged changes nothing (emdb-rs D10).
 * In-memory databases use `MemoryPersistence`, which logs nothing.
 * Keys and values are in internal latin1 form (see `keys.ts`); `expiresAt` 0 means no expiry.
 */

import { MAX_KEY_SIZE } from "./keys.js";
import type { Entry } from "./shards/keyspace.js";
import { NOT_CLEAN, type RecordRun, type TreeStep } from "./tree-scan.js";

/**
 * One atomic unit of writes: each key's final state, an entry to store or null to remove the
 * key, once per key. A transaction hands over its staging Maps as they are
 * (`StagedWrites`), so committing a million writes builds no second list of them.
 */
export interface Batch {
  readonly size: number;
  [Symbol.iterator](): Iterator<[string, Entry | null]>;
  keys(): Iterable<string>;
}

export interface PersistenceStats {
  readonly [name: string]: number | string | boolean | undefined;
}

export interface Persistence {
  readonly durable: boolean;
  /** `expiresAt` undefined: never expires. */
  put(key: string, value: string, expiresAt: number | undefined): void;
  delete(key: string): void;
  clear(): void;
  /**
   * One atomic unit (a transaction, a group delete): all of it survives a crash or none.
   * Returns true when the batch was not logged but will be made durable by the `settle()`
   * that follows (a large batch goes straight into a checkpoint): if that `settle()` throws
   * before the batch is durable (`durableGeneration` unchanged), the caller must undo the
   * batch in memory.
   */
  batch(txId: number, ops: Batch): boolean;
  /**
   * Changes each time a checkpoint is made durable (its meta page synced). A checkpoint can
   * fail after that point (emptying the WAL): what it wrote is then in the file.
   */
  readonly durableGeneration: number;
  /** The longest key this storage can hold, in bytes: at most `MAX_KEY_SIZE`. */
  readonly maxKeySize: number;
  /** Expired entries removed from memory, recorded so they do not come back at reopen. */
  expired(keys: readonly string[]): void;
  /**
   * Called after a logged write has been applied to memory: the point where background
   * work that reads memory (a checkpoint) may run. Never called in the middle of a batch.
   */
  settle(): void;
  flush(): void;
  compact(): void;
  /** Throws EMDB_BUSY while `compact()` runs (called back from its progress listener). */
  assertIdle(): void;
  close(): void;
  stats(): PersistenceStats;
  check(): string[];
  /**
   * For ordered scans, keys in ascending order: a copy of `k`'s value read from storage when
   * storage holds it unchanged since memory last wrote it there, with its expiry in
   * `cleanExpiresAt`; undefined when the caller must read memory instead. `hi` is the
   * scan's upper bound, so storage reads ahead no further than it.
   */
  readClean(k: string, hi: string | undefined, hiInclusive: boolean): Buffer | undefined;
  readonly cleanExpiresAt: number;
  /** False when `readClean` would now return undefined for every key. */
  readsClean(): boolean;
  /**
   * For long forward scans while memory holds no change the storage lacks: the records
   * after `after` (an internal key) to the end of their leaf, at most `max`, within `hi`,
   * read from storage into `run`; NOT_CLEAN when the caller must read memory instead.
   */
  nextRun(
    after: string,
    hi: string | undefined,
    hiInclusive: boolean,
    max: number,
    run: RecordRun,
  ): TreeStep;
}

export class MemoryPersistence implements Persistence {
  readonly durable = false;
  put(): void {}
  delete(): void {}
  clear(): void {}
  batch(_txId: number, _ops: Batch): boolean {
    return false;
  }
  readonly durableGeneration: number = 0;
  readonly maxKeySize: number = MAX_KEY_SIZE;
  expired(): void {}
  settle(): void {}
  flush(): void {}
  compact(): void {}
  assertIdle(): void {}
  readClean(): undefined {
    return undefined;
  }
  readsClean(): boolean {
    return false;
  }
  nextRun(): TreeStep {
    return NOT_CLEAN;
  }
  readonly cleanExpiresAt = 0;
  close(): void {}
  stats(): PersistenceStats {
    return { storage: "memory" };
  }
  check(): string[] {
    return [];
  }
}
