import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Emdb } from "../src/index.js";
import { SortedKeys } from "../src/shards/sorted-keys.js";
import { assertConsistent } from "./helpers/db.js";
import { Prng, testSeed, withPrng, withSeed } from "./helpers/prng.js";

const keysOf = (it: Iterable<[Buffer, Buffer]>) => [...it].map(([k]) => k.toString());

function lettersDb(): Emdb {
  const db = Emdb.openInMemory();
  for (const k of ["a", "b", "c", "d", "e"]) db.insert(k, k.toUpperCase());
  return db;
}

describe("range()", () => {
  test("bounds: gt, gte, lt, lte", () => {
    const db = lettersDb();
    assert.deepEqual(keysOf(db.range({ gte: "b", lte: "d" })), ["b", "c", "d"]);
    assert.deepEqual(keysOf(db.range({ gt: "b", lt: "d" })), ["c"]);
    assert.deepEqual(keysOf(db.range({ gt: "bb" })), ["c", "d", "e"]);
    assert.deepEqual(keysOf(db.range({ lt: "a" })), []);
    assert.deepEqual(keysOf(db.range()), ["a", "b", "c", "d", "e"]);
    assert.deepEqual(keysOf(db.range({ gte: "z" })), []);
    assert.deepEqual(keysOf(db.range({ gte: "d", lte: "b" })), []);
  });

  test("reverse and limit", () => {
    const db = lettersDb();
    assert.deepEqual(keysOf(db.range({ reverse: true })), ["e", "d", "c", "b", "a"]);
    assert.deepEqual(keysOf(db.range({ reverse: true, lt: "d", gt: "a" })), ["c", "b"]);
    assert.deepEqual(keysOf(db.range({ reverse: true, lte: "d", limit: 2 })), ["d", "c"]);
    assert.deepEqual(keysOf(db.range({ limit: 0 })), []);
    assert.deepEqual(keysOf(db.range({ gte: "b", limit: 1 })), ["b"]);
    assert.deepEqual(keysOf(db.range({ limit: Number.POSITIVE_INFINITY })).length, 5);
  });

  test("values come with their keys", () => {
    const db = lettersDb();
    assert.deepEqual(
      [...db.range({ gte: "c", limit: 1 })].map(([k, v]) => [String(k), String(v)]),
      [["c", "C"]],
    );
  });

  test("binary bounds compare as unsigned bytes", () => {
    const db = Emdb.openInMemory();
    for (const b of [0x00, 0x7f, 0x80, 0xff]) db.insert(Buffer.from([b]), "v");
    assert.deepEqual(
      [...db.range({ gte: Buffer.from([0x7f]), lt: Buffer.from([0xff]) })].map(([k]) => k[0]),
      [0x7f, 0x80],
    );
  });

  test("invalid options are TypeErrors or RangeErrors", () => {
    const db = lettersDb();
    assert.throws(() => db.range({ gt: "a", gte: "a" }), TypeError);
    assert.throws(() => db.range({ lt: "a", lte: "a" }), TypeError);
    assert.throws(() => db.range({ gt: 5 as never }), TypeError);
    assert.throws(() => db.range({ limit: -1 }), RangeError);
    assert.throws(() => db.range({ limit: 1.5 }), RangeError);
    assert.throws(() => db.range({ reverse: "yes" as never }), TypeError);
    assert.throws(() => db.range({ limit: null as never }), TypeError);
    assert.throws(() => db.range({ limit: "3" as never }), TypeError);
    assert.throws(() => db.range(null as never), TypeError);
  });

  test("iterators tolerate writes between steps: no repeats, no skips of untouched keys", () => {
    const db = Emdb.openInMemory();
    for (let i = 0; i < 3000; i++) db.insert(`k${String(i).padStart(5, "0")}`, "v");
    const seen: string[] = [];
    for (const [k] of db.iter()) {
      seen.push(k.toString());
      db.remove(k); // the classic "delete while iterating" pattern
    }
    assert.equal(seen.length, 3000);
    assert.equal(new Set(seen).size, 3000);
    assert.equal(db.len(), 0);
    for (let i = 0; i < 100; i++) db.insert(`k${String(i).padStart(5, "0")}`, "v");
    const seenRev: string[] = [];
    for (const [k] of db.range({ reverse: true })) {
      seenRev.push(k.toString());
      db.insert(`${k.toString()}x`, "new after the cursor in reverse order");
    }
    assert.equal(seenRev.length, 100, "keys inserted behind a reverse cursor are not visited");
    assertConsistent(db);
  });
});

describe("keys added ahead of a live iterator, at the end of its range", () => {
  // A memory scan reads up to 64 keys ahead, so near the end of its range it has already
  // met the end when it serves its last keys: keys added past them must still come, every
  // one of them (the walker, back from its end, once forgot it was no longer there, and
  // served only the first).
  const key = (i: number) => `k${String(i).padStart(3, "0")}`;
  for (const n of [3, 100]) {
    test(`iter(), keys(), a reverse range and group() see keys added after the last of ${n}`, () => {
      const db = Emdb.openInMemory();
      for (let i = 0; i < n; i++) db.insert(key(i), "v");
      const keyStream = (entries: Iterable<[Buffer, Buffer]>) =>
        (function* () {
          for (const [k] of entries) yield k;
        })();
      // Each walk: its keys, the key at which some are added, and those keys in walk order.
      const walks: [string, () => Iterable<Buffer>, string, string[]][] = [
        [
          "iter()",
          () => keyStream(db.iter()),
          key(n - 1),
          ["+", "+1", "+2"].map((s) => key(n - 1) + s),
        ],
        ["keys()", () => db.keys(), key(n - 1), [`${key(n - 1)}~`, `${key(n - 1)}~~`]],
        ["range({ reverse })", () => keyStream(db.range({ reverse: true })), key(0), ["b", "a"]],
      ];
      for (const [name, walk, at, added] of walks) {
        const seen: string[] = [];
        for (const k of walk()) {
          seen.push(k.toString());
          if (k.toString() === at) for (const a of added) db.insert(a, "new");
        }
        assert.deepEqual(seen.slice(n), added, `${name}: ${seen.slice(-4).join(",")}`);
        assert.equal(seen.length, n + added.length, name);
        for (const a of added) db.remove(a);
      }
      const g = Emdb.openInMemory();
      for (let i = 0; i < n; i++) g.insert(`p.${key(i)}`, "v");
      g.insert("q", "v");
      const seen: string[] = [];
      for (const [k] of g.group("p")) {
        seen.push(k.toString());
        if (k.toString() === `p.${key(n - 1)}`) {
          g.insert(`p.${key(n)}`, "new");
          g.insert(`p.${key(n + 1)}`, "new");
        }
      }
      assert.deepEqual(seen.slice(n), [`p.${key(n)}`, `p.${key(n + 1)}`], "group()");
      assertConsistent(db);
      assertConsistent(g);
    });
  }
});

describe("SortedKeys (the ordered view)", () => {
  test("matches a sorted model under random inserts, deletes and range queries", () => {
    const seed = testSeed();
    withSeed(seed, () => {
      const rng = new Prng(seed);
      const sk = new SortedKeys();
      const model = new Set<string>();
      for (let round = 0; round < 20_000; round++) {
        const k = String.fromCharCode(
          ...Array.from({ length: 1 + rng.int(4) }, () => rng.int(256)),
        );
        if (rng.chance(0.65)) {
          if (!model.has(k)) {
            model.add(k);
            sk.insertNew(k);
          }
        } else if (model.has(k)) {
          model.delete(k);
          sk.delete(k);
        }
        if (round % 2000 === 0) {
          const sorted = [...model].sort();
          const lo = String.fromCharCode(rng.int(256));
          const hi = String.fromCharCode(rng.int(256), rng.int(256));
          const loInc = rng.chance(0.5);
          const hiInc = rng.chance(0.5);
          const expected = sorted.filter(
            (x) => (loInc ? x >= lo : x > lo) && (hiInc ? x <= hi : x < hi),
          );
          assert.deepEqual([...sk.range(lo, loInc, hi, hiInc, false)], expected);
          assert.deepEqual([...sk.range(lo, loInc, hi, hiInc, true)], [...expected].reverse());
        }
      }
      assert.deepEqual([...sk.all()], [...model].sort());
      assert.deepEqual(sk.check(), []);
      assert.ok(model.size > 5000, "enough keys to split many chunks");
    });
  });

  test("insertManyNew merges unsorted new keys into any state; live cursors resume after their key", () => {
    withPrng((rng) => {
      const sk = new SortedKeys();
      const model = new Set<string>();
      const fresh = () => {
        for (;;) {
          const k = String.fromCharCode(
            ...Array.from({ length: 1 + rng.int(4) }, () => rng.int(256)),
          );
          if (!model.has(k)) return k;
        }
      };
      for (let round = 0; round < 30; round++) {
        // Batches from empty to larger than the view, of any keys or of keys that sort above
        // (\xff\xff…) or below (\x00…) every key seen so far but those of earlier such batches.
        const n = rng.pick([0, 1, 7, 600, 3000]);
        const side = rng.pick(["any", "above", "below"] as const);
        const batch = new Set<string>();
        while (batch.size < n) {
          const k = fresh();
          const k2 = side === "above" ? `\u00ff\u00ff${k}` : side === "below" ? `\u0000${k}` : k;
          if (!model.has(k2)) batch.add(k2);
        }
        const live = sk.range(undefined, true, undefined, true, false);
        const taken = model.size > 0 ? live.next().value : undefined;
        sk.insertManyNew([...batch]);
        for (const k of batch) model.add(k);
        const sorted = [...model].sort();
        assert.deepEqual([...sk.all()], sorted, `round ${round}`);
        assert.deepEqual(sk.check(), [], `round ${round}`);
        assert.equal(sk.size, model.size);
        if (taken !== undefined) {
          assert.deepEqual(
            [...live],
            sorted.filter((k) => k > taken),
            "a cursor open across the merge continues after its last key",
          );
        }
        // Deletes and single inserts still work on the merged structure.
        for (const k of [...model].slice(0, 3)) {
          sk.delete(k);
          model.delete(k);
        }
        const one = fresh();
        sk.insertNew(one);
        model.add(one);
        assert.deepEqual(sk.check(), []);
      }
      assert.deepEqual([...sk.all()], [...model].sort());
    });
  });

  test("loadSorted builds the same structure as inserts", () => {
    const keys = Array.from({ length: 5000 }, (_, i) => `k${String(i).padStart(6, "0")}`);
    const sk = new SortedKeys();
    sk.loadSorted(keys);
    assert.deepEqual([...sk.all()], keys);
    assert.deepEqual(sk.check(), []);
    sk.insertNew("k0000005a");
    sk.delete("k000000");
    assert.deepEqual(sk.check(), []);
    assert.equal(sk.size, 5000);
  });
});
