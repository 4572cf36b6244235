/**
 * Values loaded at open live in copies of their leaf pages (`src/shards/value-arena.ts`),
 * the index holding a number (a ref) for each. These tests check that the copies are used,
 * that every way of reading, writing, removing, checkpointing and reopening agrees with a
 * Map model while refs and strings mix, that a mostly overwritten chunk is let go with its
 * last values kept, and that a failed batch puts refs back where they can still be read.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Core } from "../src/core.js";
import { type Emdb, everyN, manual, type Transaction, Ttl } from "../src/index.js";
import { hashInternalKey } from "../src/keys.js";
import { MemoryBackend } from "../src/pager/backend.js";
import { Timed } from "../src/shards/keyspace.js";
import { StagedWrites } from "../src/shards/staged-writes.js";
import { CHUNK_BYTES } from "../src/shards/value-arena.js";
import { assertConsistent, FakeClock } from "./helpers/db.js";
import { Prng, testSeed, withSeed } from "./helpers/prng.js";
import { contents, openFile, scratchDir, smallCoreOpener } from "./helpers/storage.js";

const { freshPath } = scratchDir("arena");

/** A model entry: the value as hex and its deadline (0: none). */
type Model = Map<string, { v: string; at: number }>;

function liveModel(model: Model, now: number): Map<string, string> {
  const m = new Map<string, string>();
  for (const [k, e] of model) if (e.at === 0 || e.at > now) m.set(k, e.v);
  return new Map(
    [...m].sort(([a], [b]) => Buffer.compare(Buffer.from(a, "hex"), Buffer.from(b, "hex"))),
  );
}

describe("values loaded at open", () => {
  test("are held in page copies, which a full overwrite lets go", () => {
    const p = freshPath();
    let db = openFile(p, manual());
    db.transaction((tx) => {
      for (let i = 0; i < 20_000; i++) tx.insert(`k${String(i).padStart(6, "0")}`, `v${i}`);
    });
    assert.equal(db.stats().loadedPageBytes, 0, "values written in this session are strings");
    db.close();
    db = openFile(p, manual());
    const held = db.stats().loadedPageBytes;
    assert.ok(held >= 20_000 * 19, `held ${held}`); // 19: the smallest record, slot included
    assert.equal(db.get("k000123")?.toString(), "v123");
    db.transaction((tx) => {
      for (let i = 0; i < 20_000; i++) tx.insert(`k${String(i).padStart(6, "0")}`, `w${i}`);
    });
    assert.equal(db.stats().loadedPageBytes, 0);
    assert.equal(db.get("k000123")?.toString(), "w123");
    assertConsistent(db);
    db.close();
  });

  test("a chunk mostly overwritten is let go; its last values stay readable", () => {
    const p = freshPath();
    let db = openFile(p, everyN(64));
    const key = (i: number) => `key:${String(i).padStart(8, "0")}`;
    const value = (i: number, gen: string) => `${gen}${i}:${"x".repeat(100)}`;
    db.transaction((tx) => {
      for (let i = 0; i < 30_000; i++) tx.insert(key(i), value(i, "a"));
    });
    db.close();
    db = openFile(p, everyN(64));
    const before = db.stats().loadedPageBytes;
    assert.ok(before >= 3 * CHUNK_BYTES, `held ${before}`);
    // Keys load in order, 32 to a 4 KiB page: the first chunk (256 pages) holds keys 0 to
    // 8,191. Keep every tenth of the first 8,000, overwrite or remove the rest, one write at
    // a time: about 1,000 of its 8,192 records stay, 125 KiB of its 1 MiB, under a quarter.
    for (let i = 0; i < 8_000; i++) {
      if (i % 10 === 0) continue;
      if (i % 3 === 0) db.remove(key(i));
      else db.insert(key(i), value(i, "b"));
    }
    assert.ok(db.stats().loadedPageBytes <= before - CHUNK_BYTES, "the first chunk is let go");
    assertConsistent(db);
    for (let i = 0; i < 30_000; i++) {
      const want =
        i >= 8_000 || i % 10 === 0 ? value(i, "a") : i % 3 === 0 ? undefined : value(i, "b");
      assert.equal(db.get(key(i))?.toString(), want, key(i));
    }
    db.close();
    db = openFile(p, everyN(64));
    assert.equal(db.get(key(0))?.toString(), value(0, "a"));
    assert.equal(db.get(key(1))?.toString(), value(1, "b"));
    assert.equal(db.get(key(3)), undefined);
    assertConsistent(db);
    db.close();
  });

  test("copies are held only while the loaded records in use fill a quarter of them", () => {
    const key = (i: number) => `k${String(i).padStart(6, "0")}`;
    const reopened = (fill: (tx: Transaction) => void): Emdb => {
      const p = freshPath();
      const db = openFile(p, manual());
      db.transaction(fill);
      db.close();
      return openFile(p, manual());
    };
    // Expiring values stay in the pages too, each in a Timed with its deadline; overwriting
    // all of them but a few plain ones lets the pages go.
    let db = reopened((tx) => {
      for (let i = 0; i < 20_000; i++) {
        if (i % 100 === 0) tx.insert(key(i), `p${i}`);
        else tx.insertWithTtl(key(i), `t${i}`, Ttl.after(3_600_000));
      }
    });
    assert.ok(db.stats().loadedPageBytes > 0);
    const timed = (db as unknown as { core: Core }).core.ks.shard(hashInternalKey(key(501)));
    const e = timed.get(key(501));
    assert.ok(e instanceof Timed && typeof e.value === "number", "a ref in a Timed");
    assert.equal(db.get(key(500))?.toString(), "p500");
    assert.equal(db.get(key(501))?.toString(), "t501");
    assert.ok(db.ttl(key(501))! > 3_500_000);
    db.transaction((tx) => {
      for (let i = 0; i < 20_000; i++) if (i % 100 !== 0) tx.insert(key(i), "n");
    });
    assert.equal(db.stats().loadedPageBytes, 0);
    assert.equal(db.get(key(500))?.toString(), "p500");
    assert.equal(db.ttl(key(501)), Number.POSITIVE_INFINITY);
    assertConsistent(db);
    db.close();
    // Plain values beside 1,000 overflow pages, which count in the estimate a chunk is
    // sized by: it is cut to the leaves it got, and let go when they hold only two values.
    for (const plain of [2, 2_000]) {
      db = reopened((tx) => {
        for (let i = 0; i < plain; i++) tx.insert(`p${i}`, `${i}`);
        for (let i = 0; i < 200; i++) tx.insert(key(i), "o".repeat(20_000));
      });
      const held = db.stats().loadedPageBytes;
      if (plain === 2) assert.equal(held, 0);
      else assert.ok(held > 0 && held <= 32 * 4096, `${held} bytes held for ${plain} values`);
      assert.equal(db.get("p1")?.toString(), "1");
      assertConsistent(db);
      db.close();
    }
    // Large and small values alternating: overwriting every large one frees the copies,
    // though as many small loaded values stay in use.
    db = reopened((tx) => {
      for (let i = 0; i < 40_000; i++) tx.insert(key(i), i % 2 === 0 ? "L".repeat(900) : "s");
    });
    assert.ok(db.stats().loadedPageBytes > 15_000_000, `${db.stats().loadedPageBytes}`);
    db.transaction((tx) => {
      for (let i = 0; i < 40_000; i += 2) tx.insert(key(i), "n");
    });
    assert.equal(db.stats().loadedPageBytes, 0);
    assert.equal(db.get(key(0))?.toString(), "n");
    assert.equal(db.get(key(39_999))?.toString(), "s");
    assertConsistent(db);
    db.close();
  });

  test("check() reports a ref into a chunk let go (without throwing), to a record not inline, or with another deadline", () => {
    const p = freshPath();
    let db = openFile(p, manual());
    db.transaction((tx) => {
      for (let i = 0; i < 20_000; i++) tx.insert(`k${i}`, `v${i}`);
    });
    db.close();
    db = openFile(p, manual());
    const ks = (db as unknown as { core: Core }).core.ks;
    const shard = ks.shard(hashInternalKey("k7"));
    const ref = shard.get("k7");
    assert.equal(typeof ref, "number");
    shard.set("k7", (ref as number) + 50 * CHUNK_BYTES);
    const problems = db.check();
    assert.ok(
      problems.some((p) => p.includes("released value")),
      problems.join("\n"),
    );
    shard.set("k7", ref as number);
    // A ref must name a record whose value is inline: mark its record as an overflow one.
    const chunks = (ks.arena as unknown as { chunks: Buffer[] }).chunks;
    const chunk = chunks[Math.floor((ref as number) / CHUNK_BYTES)]!;
    const at = (ref as number) % CHUNK_BYTES;
    chunk[at] = 2;
    assert.ok(
      db.check().some((p) => p.includes("not inline")),
      "a ref to a record that is not inline is reported",
    );
    chunk[at] = 0;
    // And the deadline of its entry must be the record's: none for a bare ref.
    shard.set("k7", new Timed(ref as number, 123));
    assert.ok(
      db.check().some((p) => p.includes("expires at 123 but its record at 0")),
      "a deadline its record does not have is reported",
    );
    shard.set("k7", ref as number);
    assertConsistent(db);
    db.close();
  });

  test("mixed with written values, agree with a Map model (seeded, small pages, mmap and pread)", () => {
    const base = testSeed();
    for (let round = 0; round < 3; round++) {
      const seed = (base + round) >>> 0;
      withSeed(seed, () => runModel(seed, round % 2 === 1));
    }
  });

  test("a failed batch puts back the loaded values it replaced, still readable", () => {
    const be = new MemoryBackend();
    const open = smallCoreOpener(be, "/arena.emdb", 4096);
    const key = (i: number) => `k${String(i).padStart(4, "0")}`;
    let core = open();
    const load = new StagedWrites();
    for (let i = 0; i < 2000; i++) load.set(key(i), hashInternalKey(key(i)), `value ${i}`);
    core.applyBatch(load);
    core.persistence.close();
    core = open();
    assert.ok(core.ks.arena.bytes > 0);
    // Replace or remove nearly every loaded value of the first chunks in one batch, larger
    // than checkpointBytes: it is applied to memory, then its checkpoint fails to sync.
    const batch = new StagedWrites();
    for (let i = 0; i < 1900; i++) {
      batch.set(key(i), hashInternalKey(key(i)), i % 2 === 0 ? null : `changed ${i}`);
    }
    let failSync = true;
    be.hook = (op) => {
      if (op === "sync" && failSync) throw new Error("EIO: injected");
    };
    assert.throws(() => core.applyBatch(batch), /EIO: injected/);
    failSync = false;
    for (let i = 0; i < 2000; i++) {
      const e = core.ks.shard(hashInternalKey(key(i))).get(key(i));
      assert.equal(typeof e, "number", key(i));
      assert.equal(core.ks.out(e!).toString(), `value ${i}`, key(i));
    }
    assert.deepEqual(core.ks.check(), []);
  });
});

/** Random writes, transactions, flushes and reopens over a loaded database, against a Map. */
function runModel(seed: number, mmap: boolean): void {
  const rng = new Prng(seed);
  const clock = new FakeClock();
  const p = freshPath();
  const model: Model = new Map();
  const keys: string[] = [];
  const newKey = () => {
    const k = rng.chance(0.2)
      ? rng.bytes(1 + rng.int(12)).toString("hex")
      : Buffer.from(`u:${rng.int(1_000_000)}`).toString("hex");
    if (!model.has(k)) keys.push(k);
    return k;
  };
  // Mostly short values (loaded as refs), some past the inline limit of a 512-byte page
  // (overflow chains, loaded as strings), some empty, some with a deadline.
  const newValue = () => {
    const r = rng.int(20);
    return rng.bytes(r === 0 ? 0 : r === 1 ? 300 + rng.int(900) : rng.int(60)).toString("hex");
  };
  const newDeadline = () => (rng.chance(0.1) ? clock.now + 1 + rng.int(5000) : 0);
  const open = () => openFile(p, everyN(8), clock, 512, mmap);
  let db = open();
  db.transaction((tx) => {
    for (let i = 0; i < 3000; i++) {
      const k = newKey();
      const v = newValue();
      const at = newDeadline();
      if (at === 0) tx.insert(Buffer.from(k, "hex"), Buffer.from(v, "hex"));
      else
        tx.insertWithTtl(Buffer.from(k, "hex"), Buffer.from(v, "hex"), Ttl.after(at - clock.now));
      model.set(k, { v, at });
    }
  });
  db.close();
  db = open();
  assert.ok(db.stats().loadedPageBytes > 0);
  const agree = () => {
    assert.deepEqual(contents(db), liveModel(model, clock.now));
    assertConsistent(db);
  };
  agree();
  for (let step = 0; step < 3000; step++) {
    const r = rng.int(100);
    const k = rng.chance(0.8) && keys.length > 0 ? rng.pick(keys) : newKey();
    const kb = Buffer.from(k, "hex");
    const m = model.get(k);
    const live = m !== undefined && (m.at === 0 || m.at > clock.now) ? m : undefined;
    if (r < 40) {
      const v = newValue();
      db.insert(kb, Buffer.from(v, "hex"));
      model.set(k, { v, at: 0 });
    } else if (r < 55) {
      assert.equal(db.remove(kb)?.toString("hex"), live?.v, `remove ${k}`);
      model.delete(k);
    } else if (r < 75) {
      assert.equal(db.get(kb)?.toString("hex"), live?.v, `get ${k}`);
    } else if (r < 82) {
      // A transaction that reads, overwrites and removes loaded keys, committed or thrown.
      const commit = rng.chance(0.7);
      const staged = new Map(model);
      try {
        db.transaction((tx) => {
          for (let j = 0; j < 1 + rng.int(20); j++) {
            const tk = rng.pick(keys);
            const tm = staged.get(tk);
            const tlive = tm !== undefined && (tm.at === 0 || tm.at > clock.now) ? tm : undefined;
            assert.equal(tx.get(Buffer.from(tk, "hex"))?.toString("hex"), tlive?.v, `tx get ${tk}`);
            if (rng.chance(0.3)) {
              assert.equal(tx.remove(Buffer.from(tk, "hex"))?.toString("hex"), tlive?.v);
              staged.delete(tk);
            } else {
              const v = newValue();
              tx.insert(Buffer.from(tk, "hex"), Buffer.from(v, "hex"));
              staged.set(tk, { v, at: 0 });
            }
          }
          if (!commit) throw new Error("rolled back");
        });
      } catch (err) {
        if (!(err instanceof Error) || err.message !== "rolled back") throw err;
      }
      if (commit) {
        model.clear();
        for (const [sk, sv] of staged) model.set(sk, sv);
      }
    } else if (r < 86) {
      if (live !== undefined && live.at !== 0) {
        assert.equal(db.persist(kb), true);
        model.set(k, { v: live.v, at: 0 });
      }
    } else if (r < 90) {
      const want = [...liveModel(model, clock.now)].filter(([mk]) => mk >= k).slice(0, 20);
      const got = [...db.range({ gte: kb, limit: 20 })].map(([a, b]) => [
        a.toString("hex"),
        b.toString("hex"),
      ]);
      assert.deepEqual(got, want, `range from ${k}`);
    } else if (r < 95) {
      clock.advance(rng.int(200));
    } else if (r < 98) {
      db.flush();
    } else {
      db.close();
      db = open();
    }
    if (step % 500 === 499) agree();
  }
  agree();
  db.close();
}
