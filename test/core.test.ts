/**
 * The engine's contract with its persistence layer, checked with a scripted persistence:
 * a batch whose durability is deferred to settle() is undone in memory when settle() fails.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Core } from "../src/core.js";
import { hashInternalKey } from "../src/keys.js";
import { MemoryPersistence } from "../src/persistence.js";
import { type Entry, Timed } from "../src/shards/keyspace.js";

class FailingSettle extends MemoryPersistence {
  fail = false;
  override batch(): boolean {
    return true;
  }
  override settle(): void {
    if (this.fail) throw new Error("disk full");
  }
}

test("a deferred batch whose settle() fails leaves memory and the tx counter as they were", () => {
  const p = new FailingSettle();
  const core = new Core(p, () => 1000, undefined, undefined);
  core.put("keep", hashInternalKey("keep"), "1", undefined);
  core.put("timed", hashInternalKey("timed"), "t", 5000);
  core.applyBatch(new Map<string, Entry | null>([["a", "A"]]));
  assert.equal(core.lastTxId, 1);
  p.fail = true;
  assert.throws(
    () =>
      core.applyBatch(
        new Map<string, Entry | null>([
          ["keep", "changed"],
          ["timed", null],
          ["new", new Timed("n", 9000)],
          ["a", null],
        ]),
      ),
    /disk full/,
  );
  assert.equal(core.lastTxId, 1);
  const ks = core.ks;
  assert.equal(String(ks.shard(hashInternalKey("keep")).get("keep")), "1");
  const timed = ks.shard(hashInternalKey("timed")).get("timed");
  assert.ok(timed instanceof Timed && timed.expiresAt === 5000);
  assert.equal(ks.shard(hashInternalKey("new")).get("new"), undefined);
  assert.equal(String(ks.shard(hashInternalKey("a")).get("a")), "A");
  assert.equal(ks.size, 3);
  assert.deepEqual(ks.check(), []);
});
