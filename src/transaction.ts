/**
 * A transaction: writes are staged in an overlay and applied as one atomic unit when the
 * callback returns; reads see the overlay first (read-your-writes).
 *
 * JS runs the callback to completion without interleaving, so a synchronous transaction is
 * serializable by construction: no other write can land between its reads and its commit
 * (emdb-rs had no isolation at all, §9.3 S3). The overlay keeps only the final state of each
 * key, so the logged batch has one op per key touched.
 */
import type { Core } from "./core.js";
import { EmdbError } from "./errors.js";
import { encodeKey, encodeValue, type Key, keyHash, keyTooLarge, type Value } from "./keys.js";
import { type Stored, Timed } from "./shards/keyspace.js";
import { StagedWrites } from "./shards/staged-writes.js";
import { resolveExpiry, Ttl } from "./ttl/ttl.js";

export class Transaction {
  /** Final state per key: an entry, or null for "removed in this transaction". */
  private readonly staged = new StagedWrites();
  private open = true;

  /** @internal */
  constructor(private readonly core: Core) {}

  private assertOpen(): void {
    if (!this.open) {
      throw new EmdbError(
        "EMDB_TRANSACTION_CLOSED",
        "this transaction has finished; use the handle only inside its callback",
      );
    }
    this.core.assertOpen();
  }

  /** Stages an insert using the database's default TTL. */
  insert(key: Key, value: Value): void {
    this.insertWithTtl(key, value, Ttl.default());
  }

  insertWithTtl(key: Key, value: Value, ttl: Ttl): void {
    this.assertOpen();
    const k = encodeKey(key, true);
    const hash = keyHash;
    const core = this.core;
    if (k.length > core.maxKeySize) throw keyTooLarge(k.length, core.maxKeySize);
    const v = encodeValue(value);
    const at =
      ttl === Ttl.default() && core.defaultTtlMs === undefined
        ? undefined
        : resolveExpiry(ttl, core.clock(), core.defaultTtlMs);
    this.staged.set(k, hash, at === undefined ? v : new Timed(v, at));
  }

  /** The value as this transaction sees it (its own writes first), or undefined. */
  get(key: Key): Buffer | undefined {
    this.assertOpen();
    const e = this.visible(encodeKey(key), keyHash);
    if (e === undefined) return undefined;
    return this.core.ks.out(e);
  }

  containsKey(key: Key): boolean {
    this.assertOpen();
    return this.visible(encodeKey(key), keyHash) !== undefined;
  }

  /** Stages a removal; returns the value the transaction saw before it. */
  remove(key: Key): Buffer | undefined {
    this.assertOpen();
    const k = encodeKey(key);
    const hash = keyHash;
    const prev = this.visible(k, hash);
    this.staged.set(k, hash, null);
    if (prev === undefined) return undefined;
    return this.core.ks.out(prev);
  }

  private visible(k: string, hash: number): Stored | undefined {
    const e = this.staged.get(k, hash);
    if (e === undefined) return this.core.live(k, hash);
    if (e === null) return undefined;
    if (e instanceof Timed && e.expiresAt <= this.core.clock()) return undefined;
    return e;
  }

  /** @internal Applies the staged writes atomically and closes the handle. */
  commit(): void {
    this.assertOpen();
    this.open = false;
    const staged = this.staged;
    const ks = this.core.ks;
    staged.pruneRemovals((key) => ks.has(key));
    try {
      this.core.applyBatch(staged);
    } finally {
      // Emptied by applyBatch unless it threw: a handle kept past its callback must not pin
      // a million staged values either way.
      staged.clear();
    }
  }

  /** @internal Discards the staged writes and closes the handle. */
  abort(): void {
    this.open = false;
    this.staged.clear();
  }
}
