/**
 * The engine's contract with its persistence layer, checked with a scripted persistence:
 * a batch whose durability is deferred to settle() is undone in memory when settle() fails
 * before committing it (and kept when it fails after), and a batch into an empty keyspace
 * takes its staging Maps over as the shards.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Core } from "../src/core.js";
import { hashInternalKey } from "../src/keys.js";
import { MemoryPersistence } from "../src/persistence.js";
import { type Entry, Timed } from "../src/shards/keyspace.js";
import { StagedWrites } from "../src/shards/staged-writes.js";

class FailingSettle extends MemoryPersistence {
  fail = false;
  /** Fail past the commit point: the batch is durable when settle() throws. */
  failAfterCommit = false;
  override durableGeneration = 0;
  override batch(): boolean {
    return true;
  }
  override settle(): void {
    if (this.failAfterCommit) this.durableGeneration++;
    if (this.fail || this.failAfterCommit) throw new Error("disk full");
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

test("a deferred batch whose settle() fails after committing it stays applied", () => {
  for (const into of ["an empty keyspace", "a loaded one"] as const) {
    const p = new FailingSettle();
    const core = new Core(p, () => 1000, undefined, undefined);
    if (into === "a loaded one") core.applyBatch(new Map<string, Entry | null>([["a", "A"]]));
    const before = core.lastTxId;
    p.failAfterCommit = true;
    const batch = new Map<string, Entry | null>([
      ["a", null],
      ["b", "B"],
      ["c", new Timed("C", 9000)],
    ]);
    assert.throws(() => core.applyBatch(batch), /disk full/, into);
    assert.equal(core.lastTxId, before + 1, into);
    const ks = core.ks;
    assert.equal(ks.shard(hashInternalKey("a")).get("a"), undefined, into);
    assert.equal(String(ks.shard(hashInternalKey("b")).get("b")), "B", into);
    assert.ok(ks.shard(hashInternalKey("c")).get("c") instanceof Timed, into);
    assert.equal(ks.size, 2, into);
    assert.deepEqual(ks.check(), [], into);
  }
});

test("a deferred batch into an empty keyspace whose settle() fails leaves it empty, adopted or not", () => {
  for (const staging of ["adopted", "with removals", "a Map"] as const) {
    const p = new FailingSettle();
    const core = new Core(p, () => 1000, undefined, undefined);
    const ops = staging === "a Map" ? new Map<string, Entry | null>() : new StagedWrites();
    for (let i = 0; i < 2000; i++) {
      const k = `k${i}`;
      const e = i % 3 === 0 ? new Timed(`t${i}`, 5000) : `v${i}`;
      if (ops instanceof StagedWrites) ops.set(k, hashInternalKey(k), e);
      else ops.set(k, e);
    }
    if (staging === "with removals" && ops instanceof StagedWrites) {
      ops.set("k5", hashInternalKey("k5"), null);
    }
    p.fail = true;
    assert.throws(() => core.applyBatch(ops), /disk full/, staging);
    assert.equal(core.lastTxId, 0, staging);
    assert.equal(core.ks.size, 0, staging);
    assert.equal(core.ks.timedCount, 0, staging);
    assert.deepEqual([...core.ks.sorted.all()], [], staging);
    assert.deepEqual(core.ks.check(), [], staging);
    // And the keyspace takes writes again once settle() succeeds.
    p.fail = false;
    core.applyBatch(new Map<string, Entry | null>([["after", "x"]]));
    assert.equal(core.ks.size, 1, staging);
    assert.deepEqual(core.ks.check(), [], staging);
  }
});

test("a batch into an empty keyspace: the staging Maps become its shards, unless a removal is staged", () => {
  // A transaction prunes removals of absent keys first (pruneRemovals), which re-enables it.
  for (const removal of ["none", "staged", "pruned"] as const) {
    const core = new Core(new MemoryPersistence(), () => 1000, undefined, undefined);
    const ops = new StagedWrites();
    for (let i = 0; i < 100; i++) ops.set(`k${i}`, hashInternalKey(`k${i}`), `v${i}`);
    if (removal !== "none") ops.set("gone", hashInternalKey("gone"), null);
    if (removal === "pruned") ops.pruneRemovals((k) => core.ks.has(k));
    const staged = hashInternalKey("k1");
    const map = (ops as unknown as { maps: Map<string, Entry | null>[] }).maps.find((m) =>
      m?.has("k1"),
    );
    core.applyBatch(ops);
    assert.equal(ops.size, 0, "the staging is emptied either way");
    const adopted = removal !== "staged";
    assert.equal(core.ks.shard(staged) === map, adopted, `${removal}: adopted ${adopted}`);
    assert.equal(core.ks.size, 100);
    assert.equal(core.ks.shard(hashInternalKey("gone")).has("gone"), false);
    assert.deepEqual(core.ks.check(), []);
  }
});
