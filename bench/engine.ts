/**
 * The one interface every engine under test implements. Methods may be synchronous or
 * return a Promise: the harness awaits only real promises, because an `await` on a plain
 * value still costs a microtask per call and would tax the synchronous engines' loops.
 */

export type EngineName = "emdb" | "lmdb" | "classic-level" | "sqlite" | "map";

export const ENGINE_NAMES: readonly EngineName[] = [
  "emdb",
  "lmdb",
  "classic-level",
  "sqlite",
  "map",
];

export type MaybePromise<T> = T | Promise<T>;

/** What a full ordered scan saw: the harness checks both against the expected store. */
export interface ScanResult {
  count: number;
  /** True when every key was strictly greater than the one before. */
  ordered: boolean;
  /** Sum of the value lengths: proves the values were materialized, not skipped. */
  valueBytes: number;
}

/**
 * Phases that need a different configuration (emdb's flush policy, lmdb's noSync, SQLite's
 * `synchronous`). `prepare` runs untimed, right before the phase.
 */
export type WritePhase = "durable" | "nonDurable";

/**
 * An engine over native keys of type K (Buffers for the native engines and emdb, latin1
 * strings for the Map, as node-peers.md §4 does). The harness converts keys with `key()`
 * before any timer starts.
 */
export interface Engine<K = unknown> {
  readonly name: EngineName;
  /** How this engine is configured and driven, one line per phase: printed in the report. */
  readonly describe: Readonly<Record<string, string>>;
  /** False for the in-memory Map: no durability, no files, no reopen. */
  readonly persistent: boolean;
  key(k: Buffer): K;
  /** Creates or opens the store in `dir` (an empty directory the first time). */
  open(dir: string): MaybePromise<void>;
  /** All pairs in one transaction, finished by a commit that fsyncs (where there is one). */
  bulkInsert(keys: readonly K[], values: readonly Buffer[]): MaybePromise<void>;
  get(key: K): Uint8Array | undefined;
  scanAll(): MaybePromise<ScanResult>;
  /** Entries with gte <= key < lt, ascending, at most `limit`; returns how many (checked). */
  prefixScan(gte: K, lt: K, limit: number): MaybePromise<number>;
  prepare(phase: WritePhase): MaybePromise<void>;
  /** One record, one commit, returns after fsync. Absent where there is no durability. */
  durablePut?(key: K, value: Buffer): MaybePromise<void>;
  /** One record, one commit, no wait for the disk. */
  nonDurablePut(key: K, value: Buffer): MaybePromise<void>;
  close(): MaybePromise<void>;
  /**
   * Opens the store in `dir` and reads one key. Called in a fresh child process that has
   * already imported the engine's module, so only open + get are timed (§4).
   */
  reopenAndGet?(dir: string, key: K): MaybePromise<Uint8Array | undefined>;
  /** Releases what `reopenAndGet` opened (untimed). */
  closeReopened?(): MaybePromise<void>;
}

/**
 * Variants an engine offers besides its headline configuration, by name, each described:
 * of the bulk load (emdb: manual()+flush()) and of the reopen (emdb: useMmap(true)).
 */
export interface EngineModule {
  create(variant?: string): Engine<unknown>;
  readonly bulkVariants?: Readonly<Record<string, string>>;
  readonly reopenVariants?: Readonly<Record<string, string>>;
}

/** Throws unless a range scan returned keys in strictly ascending order. */
export function assertOrdered(prev: Uint8Array | undefined, key: Uint8Array, engine: string): void {
  if (!checkOrder(prev, key)) throw new Error(`${engine}: range scan out of order`);
}

/** Compares two byte keys; Buffer.compare is a native call, the same cost for every engine. */
export function checkOrder(prev: Uint8Array | undefined, key: Uint8Array): boolean {
  return prev === undefined || Buffer.compare(prev, key) < 0;
}

/**
 * What a full scan does with each entry, the same for every engine: count it, add up the
 * value bytes, and check the key follows the previous one.
 */
export class ScanTally {
  private count = 0;
  private valueBytes = 0;
  private ordered = true;
  private prev: Uint8Array | undefined;

  add(key: Uint8Array, value: Uint8Array): void {
    if (!checkOrder(this.prev, key)) this.ordered = false;
    this.prev = key;
    this.count++;
    this.valueBytes += value.length;
  }

  result(): ScanResult {
    return { count: this.count, ordered: this.ordered, valueBytes: this.valueBytes };
  }
}
