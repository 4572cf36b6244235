import assert from "node:assert/strict";
import { test } from "node:test";
import { hashInternalKey, hashKeyBytes, MAX_KEY_SIZE } from "../src/keys.js";
import { Timed } from "../src/shards/keyspace.js";
import { type Drained, LoadStaging } from "../src/shards/load-staging.js";
import { SortedKeys } from "../src/shards/sorted-keys.js";
import { withPrng } from "./helpers/prng.js";

/** Each drained key's entry: its ref, or the next of `others`. */
function entriesOf(d: Drained): unknown[] {
  let other = 0;
  return d.keys.map((_, j) => (d.refs[j]! >= 0 ? d.refs[j] : d.others[other++]));
}

test("staged keys come back whole, with their entries and shards", () => {
  withPrng((rng) => {
    // One shard, so its arrays and byte run may grow many times over.
    const n = 5000;
    // Whatever room the hint makes: none, too little, enough, too much.
    const staging = new LoadStaging(1, rng.pick([0, 10, n, 4 * n]));
    const keys: Buffer[] = [];
    const entries: (number | string | Timed)[] = [];
    for (let i = 0; i < n; i++) {
      const len = rng.pick([0, 1, 12, 13, 16, 200, MAX_KEY_SIZE, rng.int(MAX_KEY_SIZE + 1)]);
      const key = rng.bytes(len);
      // Staged from inside a larger page, as a leaf scan passes it.
      const page = Buffer.concat([rng.bytes(7), key, rng.bytes(5)]);
      const e = rng.pick([i * 3, `v${i}`, new Timed(i, 1000 + i)]);
      staging.add(0, page, 7, 7 + len, e);
      keys.push(key);
      entries.push(e);
    }
    assert.equal(staging.count, n);
    assert.deepEqual([...staging.shardOf], new Array(n).fill(0));
    const out = staging.drain(0);
    assert.equal(out.keys.length, n);
    const got = entriesOf(out);
    for (let j = 0; j < n; j++) {
      assert.equal(out.keys[j], keys[j]!.toString("latin1"), `key ${j}`);
      assert.equal(got[j], entries[j]);
    }
  });
});

test("entries spread over shards keep their places in key order", () => {
  withPrng((rng) => {
    const shards = 32;
    const staging = new LoadStaging(shards, rng.pick([0, 500, 5000]));
    const sorted = Array.from({ length: 5000 }, (_, i) => `key${String(i).padStart(5, "0")}`);
    for (let i = 0; i < sorted.length; i++) {
      const b = Buffer.from(sorted[i]!, "latin1");
      staging.add(hashKeyBytes(b, 0, b.length) & (shards - 1), b, 0, b.length, i);
    }
    const shardOf = [...staging.shardOf];
    assert.equal(shardOf.length, sorted.length);
    const byShard: string[][] = [];
    for (let s = 0; s < shards; s++) {
      const drained = staging.drain(s);
      const { keys } = drained;
      const entries = entriesOf(drained);
      // A shard's keys come back in key order, each with its entry (here its place).
      const places = shardOf.flatMap((x, r) => (x === s ? [r] : []));
      assert.deepEqual(
        keys,
        places.map((r) => sorted[r]),
      );
      assert.deepEqual(entries, places);
      for (const k of keys) assert.equal(hashInternalKey(k) & (shards - 1), s, "in its shard");
      byShard.push(keys);
    }
    const view = new SortedKeys();
    view.insertNew("stale");
    view.loadInterleaved(staging.shardOf, byShard);
    assert.deepEqual([...view.all()], sorted);
    assert.equal(view.size, sorted.length);
    assert.deepEqual(view.check(), []);
  });
});

test("loadInterleaved builds what loadSorted builds, at any count", () => {
  withPrng((rng) => {
    for (const n of [0, 1, 511, 512, 513, 1024, 1537]) {
      const keys = Array.from({ length: n }, (_, i) => `k${String(i).padStart(6, "0")}`);
      // Dealt at random into three sorted lists, as shards hold them.
      const from = Uint8Array.from(keys, () => rng.int(3));
      const lists: string[][] = [[], [], []];
      for (let r = 0; r < n; r++) lists[from[r]!]!.push(keys[r]!);
      const merged = new SortedKeys();
      merged.loadInterleaved(from, lists);
      const sorted = new SortedKeys();
      sorted.loadSorted(keys);
      assert.deepEqual([...merged.all()], [...sorted.all()], `n=${n}`);
      assert.equal(merged.size, n);
      assert.deepEqual(merged.check(), []);
      merged.insertNew("k0000005a");
      assert.deepEqual(merged.check(), []);
    }
  });
});

test("loadInterleaved refuses an order that does not use every list exactly", () => {
  const view = new SortedKeys();
  assert.throws(() => view.loadInterleaved(Uint8Array.of(0, 0), [["a"]]), /ran out/);
  assert.throws(() => view.loadInterleaved(Uint8Array.of(0), [["a"], ["b"]]), /keys left/);
});
