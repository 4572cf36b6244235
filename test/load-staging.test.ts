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

test("staged keys come back whole, with their entries and places", () => {
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
    const out = staging.drain(0);
    assert.equal(out.keys.length, n);
    const got = entriesOf(out);
    for (let j = 0; j < n; j++) {
      // Staged in key order with one shard: place j is entry j.
      assert.equal(out.order[j], j);
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
    const view = new SortedKeys();
    const loader = view.loadByRank(staging.count);
    for (let s = 0; s < shards; s++) {
      const drained = staging.drain(s);
      const { keys, order } = drained;
      const entries = entriesOf(drained);
      for (let j = 0; j < keys.length; j++) {
        const k = keys[j]!;
        assert.equal(hashInternalKey(k) & (shards - 1), s, "in its shard");
        assert.equal(sorted[order[j]!], k);
        assert.equal(entries[j], order[j]);
        loader.place(order[j]!, k);
      }
    }
    loader.done();
    assert.deepEqual([...view.all()], sorted);
    assert.deepEqual(view.check(), []);
  });
});

test("loadByRank builds what loadSorted builds, at any count", () => {
  for (const n of [0, 1, 511, 512, 513, 1024, 1537]) {
    const keys = Array.from({ length: n }, (_, i) => `k${String(i).padStart(6, "0")}`);
    const byRank = new SortedKeys();
    const loader = byRank.loadByRank(n);
    // Places given out of order, as the shards give them.
    for (let i = n - 1; i >= 0; i -= 2) loader.place(i, keys[i]!);
    for (let i = n - 2; i >= 0; i -= 2) loader.place(i, keys[i]!);
    loader.done();
    const sorted = new SortedKeys();
    sorted.loadSorted(keys);
    assert.deepEqual([...byRank.all()], [...sorted.all()], `n=${n}`);
    assert.equal(byRank.size, n);
    assert.deepEqual(byRank.check(), []);
    byRank.insertNew("k0000005a");
    assert.deepEqual(byRank.check(), []);
  }
});
