/**
 * File-backed databases: reopen round trips under every flush policy, with TTLs, overflow
 * values, empty and binary keys, 100k records; mmap and pread reads; stats; space reuse;
 * bad input; large transactions; the consistency checker. Compaction is in
 * compaction.test.ts, damaged files and locking in file-safety.test.ts. Every test ends with
 * the consistency checker.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { describe, test } from "node:test";
import { BTree } from "../src/btree/tree.js";
import type { Core } from "../src/core.js";
import { EmdbError } from "../src/errors.js";
import {
  Emdb,
  everyN,
  type FlushPolicy,
  manual,
  onEachWrite,
  type ProgressListener,
  Ttl,
} from "../src/index.js";
import { hashInternalKey } from "../src/keys.js";
import { MemoryBackend } from "../src/pager/backend.js";
import { type Entry, Keyspace, Timed } from "../src/shards/keyspace.js";
import { BATCH_RECORD_SIZE, deleteRecordSize, SYNCED_RECORD_SIZE } from "../src/wal/record.js";
import { FakeClock } from "./helpers/db.js";
import { Prng, testSeed, withPrng, withSeed } from "./helpers/prng.js";
import {
  contents,
  insertProgressKeys,
  openCore,
  openFile,
  openWatched,
  PROGRESS_KEYS,
  progressOfKeys,
  scratchDir,
  smallCoreOpener,
} from "./helpers/storage.js";

const { freshPath } = scratchDir("storage");

const isIoError = (e: unknown) => e instanceof EmdbError && e.code === "EMDB_IO";

describe("reopen round trips", () => {
  for (const [name, policy] of [
    ["onEachWrite", onEachWrite()],
    ["everyN(2)", everyN(2)],
    ["manual", manual()],
  ] as const) {
    test(`${name}: values, binary and empty keys, TTLs and overflow values survive close and reopen`, () => {
      const p = freshPath();
      const clock = new FakeClock();
      let db = openFile(p, policy, clock);
      db.insert("", "empty key");
      db.insert(Buffer.from(Array.from({ length: 256 }, (_, i) => i)), "all bytes");
      db.insert("big", Buffer.alloc(100_000, 7));
      db.insertWithTtl("ttl", "soon", Ttl.after(1_000));
      db.insertWithTtl("gone", "x", Ttl.after(10));
      db.transaction((tx) => {
        tx.insert("tx.a", "1");
        tx.insert("tx.b", "2");
      });
      db.remove("tx.b");
      const before = contents(db);
      db.close();
      clock.advance(10);
      db = openFile(p, policy, clock);
      before.delete(Buffer.from("gone").toString("hex"));
      assert.deepEqual(contents(db), before);
      assert.equal(db.ttl("ttl"), 990);
      assert.equal(db.get("gone"), undefined);
      assert.deepEqual(db.check(), []);
      db.close();
    });
  }

  test("a replayed WAL enters its keys into the ordered view, few or many, removed, re-added or cleared", () => {
    // The open adds the replay's new keys to the ordered view at its end, one by one or in
    // one merge: keys in random order, removed and added again, some with a deadline, a
    // clear among them. The view after a crash must hold exactly the model's keys, in order.
    withPrng((rng) => {
      for (const [ops, removals] of [
        [300, true],
        [6_000, true],
        [6_000, false],
      ] as const) {
        const be = new MemoryBackend();
        const open = smallCoreOpener(be, "/replay.emdb", 2 ** 30);
        let core = open();
        const model = new Map<string, string>();
        for (let i = 0; i < 2_000; i++) {
          const k = `t${String(i).padStart(5, "0")}`;
          core.put(k, hashInternalKey(k), `tree ${i}`, undefined);
          model.set(k, `tree ${i}`);
        }
        core.persistence.flush();
        const clearAt = rng.int(ops);
        for (let i = 0; i < ops; i++) {
          if (removals && i === clearAt && rng.chance(0.5)) {
            core.clear();
            model.clear();
            continue;
          }
          const k = rng.chance(0.3)
            ? `t${String(rng.int(2_500)).padStart(5, "0")}`
            : `n${rng.int(3 * ops)}`;
          if (removals && rng.chance(0.25)) {
            core.remove(k, hashInternalKey(k));
            model.delete(k);
          } else {
            const v = `v${i}`;
            core.put(k, hashInternalKey(k), v, rng.chance(0.2) ? 50_000 + i : undefined);
            model.set(k, v);
          }
        }
        be.crash();
        core = open();
        const want = [...model.keys()].sort();
        assert.deepEqual([...core.ks.sorted.all()], want, `${ops} ops, removals ${removals}`);
        for (const k of want) {
          const e = core.ks.shard(hashInternalKey(k)).get(k);
          assert.equal(core.ks.out(e!).toString("latin1"), model.get(k), k);
        }
        assert.deepEqual(
          [...core.ks.check(), ...core.persistence.check()],
          [],
          `${ops} ops, removals ${removals}`,
        );
        core.persistence.close();
      }
    });
  });

  test("100,000 records round-trip, through pread and through mmap", () => {
    const p = freshPath();
    let db = openFile(p, manual());
    for (let i = 0; i < 100_000; i++)
      db.insert(`key-${String(i).padStart(6, "0")}`, `value-${i}-payload`);
    db.flush();
    db.close();
    for (const mmap of [false, true]) {
      db = openFile(p, manual(), undefined, 4096, mmap);
      assert.equal(db.len(), 100_000);
      assert.equal(db.get("key-054321")?.toString(), "value-54321-payload");
      let i = 0;
      for (const [k] of db.iter())
        assert.equal(k.toString(), `key-${String(i++).padStart(6, "0")}`);
      assert.equal(db.stats().disk?.reads, mmap ? "mmap" : "pread");
      assert.deepEqual(db.check(), []);
      db.close();
    }
  });

  for (const mmap of [false, true]) {
    test(`randomized writes with tiny pages agree with a Map model across reopens (${mmap ? "mmap" : "pread"} reads)`, () => {
      const seed = testSeed();
      withSeed(seed, () => {
        const rng = new Prng(seed);
        const p = freshPath();
        const model = new Map<string, string>();
        for (let session = 0; session < 6; session++) {
          const db = Emdb.builder()
            .path(p)
            .pageSize(512)
            .checkpointThreshold(4096)
            .useMmap(mmap)
            .build();
          assert.equal(db.stats().disk?.reads, mmap ? "mmap" : "pread");
          assert.deepEqual(
            contents(db),
            new Map(
              [...model].map(([k, v]) => [
                Buffer.from(k).toString("hex"),
                Buffer.from(v).toString("hex"),
              ]),
            ),
          );
          for (let i = 0; i < 800; i++) {
            const k = `k${rng.int(400)}`;
            if (rng.chance(0.65)) {
              const v = rng.chance(0.05) ? "x".repeat(rng.int(3000)) : `v${rng.int(1e6)}`;
              db.insert(k, v);
              model.set(k, v);
            } else {
              db.remove(k);
              model.delete(k);
            }
          }
          if (session === 3) db.compact();
          assert.deepEqual(db.check(), []);
          db.close();
        }
      });
    });
  }

  test("clear is durable and the tree empties at the next checkpoint", () => {
    const p = freshPath();
    let db = openFile(p);
    for (let i = 0; i < 1000; i++) db.insert(`k${i}`, "v");
    db.flush();
    db.clear();
    db.insert("after", "clear");
    db.close();
    db = openFile(p);
    assert.deepEqual([...db.keys()].map(String), ["after"]);
    assert.deepEqual(db.check(), []);
    db.close();
  });

  test("expired entries are dropped at open and do not come back", () => {
    const p = freshPath();
    const clock = new FakeClock();
    let db = openFile(p, everyN(64), clock);
    db.insertWithTtl("t", "v", Ttl.after(5));
    db.flush();
    db.close();
    clock.advance(5);
    db = openFile(p, everyN(64), clock);
    assert.equal(db.len(), 0);
    db.close();
    clock.now -= 1_000; // even a clock that goes back does not revive it
    db = openFile(p, everyN(64), clock);
    assert.equal(db.get("t"), undefined);
    assert.deepEqual(db.check(), []);
    db.close();
  });

  describe("records of the tree that expired before the open", () => {
    const PATH = "/expired-at-open.emdb";
    const T = 1_000_000;
    /** Tree: 300 timed keys (deadline T + 10) and 100 plain ones; then `afterFlush`, synced to the WAL. */
    function killedWith(afterFlush: (core: Core) => void): MemoryBackend {
      const be = new MemoryBackend();
      const core = openCore(
        be,
        PATH,
        opts(() => T),
      );
      for (let i = 0; i < 300; i++) core.put(`t${i}`, hashInternalKey(`t${i}`), "old", T + 10);
      for (let i = 0; i < 100; i++) core.put(`p${i}`, hashInternalKey(`p${i}`), "plain", undefined);
      core.persistence.flush();
      afterFlush(core);
      return be; // killed: no close
    }
    function opts(clock: () => number, onProgress?: ProgressListener) {
      return {
        clock,
        flushPolicy: onEachWrite(),
        pageSize: 512,
        checkpointBytes: 2 ** 26,
        onProgress,
      };
    }
    function contentOf(core: Core): string[] {
      const out: string[] = [];
      for (const [k, v] of core.entries(undefined, true, undefined, true, false, Infinity)) {
        out.push(`${k}=${v}`);
      }
      return out;
    }
    /** Opens at clock `t` and checks it holds `want`, consistently; returns it open. */
    function openedAt(be: MemoryBackend, t: number, want: string[]): Core {
      const core = openCore(
        be,
        PATH,
        opts(() => t),
      );
      assert.deepEqual(contentOf(core), want);
      assert.deepEqual(core.persistence.check(), []);
      return core;
    }
    /** Counts the keys that enter memory from the tree during `fn`. */
    function loadedFromTree(fn: () => void): string[] {
      const loaded: string[] = [];
      const original = Keyspace.prototype.loadEntry;
      Keyspace.prototype.loadEntry = function (this: Keyspace, kb, start, end, e, bytes) {
        loaded.push(kb.toString("latin1", start, end));
        original.call(this, kb, start, end, e, bytes);
      };
      try {
        fn();
      } finally {
        Keyspace.prototype.loadEntry = original;
      }
      return loaded;
    }
    /** `key=value` lines in key order. */
    const lines = (m: Record<string, string>) =>
      Object.keys(m)
        .sort()
        .map((k) => `${k}=${m[k]}`);
    const plain = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`p${i}`, "plain"]));

    test("never enter memory, are removed for good, and the WAL's later writes of them win", () => {
      const be = killedWith((core) => {
        core.put("t5", hashInternalKey("t5"), "new", undefined);
        core.put("t6", hashInternalKey("t6"), "later", T + 10_000);
        core.remove("t7", hashInternalKey("t7"));
      });
      const progress: number[] = [];
      let core: Core | undefined;
      const loaded = loadedFromTree(() => {
        core = openCore(
          be,
          PATH,
          opts(
            () => T + 10,
            (p) => progress.push(p.done),
          ),
        );
      });
      assert.deepEqual(
        loaded.filter((k) => k.startsWith("t")),
        [],
        "expired records loaded",
      );
      assert.equal(loaded.length, 100);
      // Progress counts every record read, the expired ones too.
      assert.equal(progress.at(-1), 400);
      const want = lines({ ...plain, t5: "new", t6: "later" });
      assert.deepEqual(contentOf(core!), want);
      assert.deepEqual(core!.persistence.check(), []);
      // Killed again: the removals are not acknowledged writes, so they may be lost, and the
      // next open finds the same records expired.
      openedAt(be, T + 10, want).persistence.close();
      // Once checkpointed, the tree no longer holds them: a clock set back shows none.
      openedAt(be, T, want).persistence.close();
    });

    test("an open whose removals checkpoint lets go of the page copies that checkpoint emptied", () => {
      // Keys expired by the load log enough deletes to checkpoint inside the open; the clock
      // has moved on by then, so the checkpoint also drops loaded values that expired since.
      const be = new MemoryBackend();
      // Long keys (4 KiB pages): their deletes must pass half the page file to checkpoint.
      const big = (clock: () => number) => ({
        ...opts(clock),
        pageSize: 4096,
        checkpointBytes: 1 << 16,
      });
      const setup = openCore(
        be,
        PATH,
        big(() => T),
      );
      for (let i = 0; i < 1000; i++) {
        const k = `a${String(i).padStart(500, "0")}`;
        setup.put(k, hashInternalKey(k), "", T + 10);
      }
      for (let i = 0; i < 2000; i++) {
        const k = `b${String(i).padStart(6, "0")}`;
        setup.put(k, hashInternalKey(k), "y".repeat(100), T + 100);
      }
      setup.put("c", hashInternalKey("c"), "live", undefined);
      setup.persistence.close();
      const generation = (c: Core) => Number(c.persistence.stats().generation);
      const before = generation(setup);
      let reads = 0;
      const core = openCore(
        be,
        PATH,
        big(() => (reads++ === 0 ? T + 50 : T + 200)),
      );
      assert.ok(generation(core) > before, "the open checkpointed");
      assert.deepEqual(contentOf(core), ["c=live"]);
      assert.equal(core.ks.arena.bytes, 0, "no page copy is held for the dropped values");
      assert.deepEqual(core.persistence.check(), []);
      core.persistence.close();
    });

    test("after a clear in the WAL, only what followed it is there, with the clock set back too", () => {
      const be = killedWith((core) => {
        core.clear();
        core.put("t1", hashInternalKey("t1"), "again", undefined);
      });
      openedAt(be, T + 10, ["t1=again"]).persistence.close();
      openedAt(be, T, ["t1=again"]).persistence.close();
    });
  });

  for (const how of ["flush", "compact"] as const) {
    test(`entries expired when ${how}() writes the tree leave memory too: a clock set back shows them nowhere`, () => {
      // A clock that moves 1 ms at every reading while the tree is written, so some
      // deadline falls between any two readings (compact() sweeps before it writes).
      let now = 1_700_000_000_000;
      let ticking = false;
      const db = Emdb.builder()
        .path(freshPath())
        .flushPolicy(manual())
        .clock(() => (ticking ? now++ : now))
        .build();
      const key = (i: number) => `k${String(i).padStart(4, "0")}`;
      for (let i = 0; i < 600; i++) db.insert(key(i), `v${i}`);
      db.flush();
      // Clean ones (checkpointed before they expire) and dirty ones, early and past the
      // point where a long scan switches to reading the tree.
      const timed: string[] = [];
      for (let d = 1; d <= 40; d++) timed.push(key(d * 14));
      db.transaction((tx) => {
        for (const [d, k] of timed.entries()) tx.insertWithTtl(k, "t", Ttl.after(d + 1));
      });
      db.flush();
      for (let d = 1; d <= 40; d++) {
        const k = `${key(d * 14)}x`;
        timed.push(k);
        db.insertWithTtl(k, "t", Ttl.after(d));
      }
      now += 5;
      ticking = true;
      db[how]();
      ticking = false;
      now -= 1_000;
      const keys = new Set([...db.keys()].map((k) => k.toString()));
      let shown = 0;
      for (const k of timed) {
        const v = db.get(k);
        assert.equal(v !== undefined, keys.has(k), k);
        if (v !== undefined) shown++;
      }
      assert.ok(shown < timed.length, "some expired during the write");
      assert.equal(db.len(), keys.size);
      assert.deepEqual(db.check(), []);
      db.close();
    });
  }

  test("entries a sweep removes stay out of the tree when logging them fails or the store is broken", () => {
    const open = (be: MemoryBackend, clock: () => number, flushPolicy: FlushPolicy) =>
      openCore(be, "/sweep.emdb", { clock, flushPolicy, pageSize: 4096, checkpointBytes: 2 ** 26 });
    const put = (core: Core, k: string, at: number | undefined) =>
      core.put(k, hashInternalKey(k), "v", at);
    // A store a failed sync has latched: the sweep logs nothing, but the tree must not be
    // taken for what memory holds.
    let now = 1_000;
    let be = new MemoryBackend();
    let core = open(be, () => now, onEachWrite());
    put(core, "t", 2_000);
    core.persistence.flush();
    be.hook = (op) => {
      if (op === "sync") throw new Error("EIO (injected)");
    };
    assert.throws(() => put(core, "b", undefined), /EIO/);
    be.hook = undefined;
    now = 3_000;
    assert.equal(core.sweep(), 1);
    assert.deepEqual(core.persistence.check(), []);
    // A sweep whose log write fails part way: the store stops (no checkpoint may reset the
    // WAL under it), and every key the sweep removed stays out of what scans, the checker
    // and a later sweep see, even with the clock set back.
    now = 1_000;
    be = new MemoryBackend();
    core = open(be, () => now, manual());
    const key = (i: number) => `${String(i).padStart(6, "0")}${"k".repeat(994)}`;
    for (let i = 0; i < 9_000; i++) put(core, key(i), i % 3 === 0 ? undefined : 2_000);
    core.persistence.flush();
    now = 3_000;
    let failed = false;
    be.hook = (op, name) => {
      if (op === "write" && name.endsWith(".wal") && !failed) {
        failed = true;
        throw new Error("EIO (injected)");
      }
    };
    assert.throws(() => core.sweep(), /EIO/);
    be.hook = undefined;
    assert.ok(failed);
    assert.deepEqual(core.persistence.check(), []);
    assert.throws(() => core.persistence.flush(), isIoError);
    now = 1_000;
    let scanned = 0;
    for (const _ of core.entries(undefined, true, undefined, true, false, Infinity)) scanned++;
    assert.equal(scanned, 3_000);
    assert.equal(core.ks.size, 3_000);
    assert.deepEqual([...core.ks.check(), ...core.persistence.check()], []);
    // After a crash the open sweeps them again: nothing acknowledged was lost.
    be.crash();
    now = 3_000;
    core = open(be, () => now, manual());
    core.sweep();
    assert.equal(core.ks.size, 3_000);
    assert.deepEqual([...core.ks.check(), ...core.persistence.check()], []);
  });

  test("a failed WAL write stops the store: writes and flush() throw EMDB_IO until a reopen, reads and sweeps go on", () => {
    let now = 1_000;
    const be = new MemoryBackend();
    const open = () =>
      openCore(be, "/stopped.emdb", {
        clock: () => now,
        flushPolicy: manual(),
        pageSize: 4096,
        checkpointBytes: 2 ** 30,
      });
    let core = open();
    const put = (k: string, v: string, at?: number) => core.put(k, hashInternalKey(k), v, at);
    put("a", "A");
    put("t", "T", 1_010);
    core.persistence.flush();
    put("b", "B");
    // A value of 1 MiB goes to the WAL file at once; that write fails.
    be.hook = (op, name) => {
      if (op === "write" && name.endsWith(".wal")) throw new Error("EIO (injected)");
    };
    assert.throws(() => put("big", "x".repeat(2 ** 20)), /EIO \(injected\)/);
    be.hook = undefined;
    assert.equal(core.ks.has("big"), false, "a write that failed changes nothing in memory");
    assert.throws(() => core.persistence.flush(), isIoError);
    assert.throws(() => put("c", "C"), isIoError);
    assert.throws(() => core.remove("a", hashInternalKey("a")), isIoError);
    now = 1_100; // "t" expires: the sweep drops it from memory and logs nothing
    assert.equal(core.liveCount(), 2);
    assert.equal(core.ks.out(core.live("b", hashInternalKey("b"))!).toString(), "B");
    assert.deepEqual([...core.ks.check(), ...core.persistence.check()], []);
    core.persistence.close();
    // The reopen finds the last flush: "b" was never flushed under manual().
    core = open();
    core.sweep();
    assert.deepEqual(
      [...core.entries(undefined, true, undefined, true, false, Infinity)].map(String),
      ["a,A"],
    );
    assert.deepEqual([...core.ks.check(), ...core.persistence.check()], []);
  });

  test("an open reports the records it loads to the builder's onProgress", () => {
    const p = freshPath();
    const first = openWatched(p);
    assert.deepEqual(first.seen, [], "a new database has nothing to load");
    insertProgressKeys(first.db);
    first.db.close();
    const { db, seen } = openWatched(p);
    assert.deepEqual(seen, progressOfKeys("open"));
    assert.equal(db.len(), PROGRESS_KEYS);
    assert.deepEqual(db.check(), []);
    db.close();
  });

  test("stats report page and file sizes", () => {
    const p = freshPath();
    const db = openFile(p);
    db.insert("a", "1");
    db.flush();
    const disk = db.stats().disk!;
    assert.equal(disk.storage, "file");
    assert.equal(disk.pageSize, 4096);
    assert.ok((disk.pageCount as number) >= 3);
    assert.equal(disk.fileBytes, fs.statSync(p).size);
    assert.equal(disk.walBytes, fs.statSync(`${p}.wal`).size);
    assert.equal(disk.walFileBytes, disk.walBytes);
    // Once records reach the file, zeros are preallocated after them: the file is longer.
    for (let i = 0; i < 64; i++) db.insert(`k${i}`, "v"); // everyN(64): written and synced
    const grown = db.stats().disk!;
    assert.equal(grown.walFileBytes, fs.statSync(`${p}.wal`).size);
    assert.ok((grown.walBytes as number) > 64);
    assert.ok((grown.walFileBytes as number) > (grown.walBytes as number));
    assert.equal(db.path(), p);
    assert.deepEqual(db.check(), []);
    db.close();
  });
});

describe("value bytes", () => {
  test("every value form keeps its exact bytes through checkpoint, compaction and reopen", () => {
    withPrng((rnd) => {
      const backing = rnd.bytes(40);
      // Stored values are latin1 strings inside emdb: every byte value, UTF-8 text, a view
      // with an offset, and sizes on both sides of the 64 KiB buffer a full rewrite reuses.
      const values: [string, string | Uint8Array][] = [
        ["all-bytes", Buffer.from(Array.from({ length: 256 }, (_, i) => i))],
        ["ascii", "plain text"],
        ["utf8", "héllo ✓ 𝄞 \u0000 ÿ"],
        ["lone-surrogate", "a\ud800b"],
        ["view", new Uint8Array(backing.buffer, backing.byteOffset + 7, 20)],
        ["empty", ""],
        ["64k-1", rnd.bytes(65_535)],
        ["64k", rnd.bytes(65_536)],
        ["64k+1", rnd.bytes(65_537)],
        ["300k", rnd.bytes(300_000)],
      ];
      // A string is stored as its UTF-8 bytes (a lone surrogate as U+FFFD, as Buffer.from does).
      const want = (v: string | Uint8Array) =>
        typeof v === "string" ? Buffer.from(v, "utf8") : Buffer.from(v);
      const p = freshPath();
      let db = openFile(p, manual());
      const expect = (stage: string) => {
        for (const [k, v] of values) assert.deepEqual(db.get(k), want(v), `${k} after ${stage}`);
        const seen = new Map([...db.iter()].map(([k, v]) => [k.toString(), v]));
        for (const [k, v] of values) assert.deepEqual(seen.get(k), want(v), `${k} iterated`);
        assert.deepEqual(db.check(), [], stage);
      };
      for (const [k, v] of values) db.insert(k, v);
      expect("insert");
      db.flush();
      expect("checkpoint");
      db.compact();
      expect("compaction");
      db.close();
      db = openFile(p, manual());
      expect("reopen");
      db.close();
    });
  });
});

describe("space and size", () => {
  test("the file stops growing across reopens under a steady update workload (no page leak)", () => {
    const p = freshPath();
    const sizes: number[] = [];
    for (let session = 0; session < 12; session++) {
      const db = Emdb.builder().path(p).pageSize(512).checkpointThreshold(8192).build();
      for (let i = 0; i < 400; i++)
        db.insert(
          `k${i % 200}`,
          `session ${String(session).padStart(2, "0")} value ${String(i).padStart(3, "0")}`,
        );
      assert.deepEqual(db.check(), []);
      db.close();
      sizes.push(fs.statSync(p).size);
    }
    // Same live data every session: after warm-up the page count must not keep climbing.
    assert.ok(sizes[11]! <= sizes[5]! * 1.1, `file sizes per session: ${sizes.join(", ")}`);
  });

  test("a 64 MiB value is stored, survives a reopen, and is read back intact", () => {
    const p = freshPath();
    const big = Buffer.alloc(64 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
    let db = openFile(p, onEachWrite());
    db.insert("big", big);
    db.insert("small", "s");
    db.close();
    db = openFile(p);
    assert.ok(db.get("big")!.equals(big));
    assert.deepEqual(db.check(), []);
    db.remove("big");
    db.close();
    db = openFile(p);
    assert.equal(db.get("big"), undefined);
    assert.equal(db.get("small")?.toString(), "s");
    db.compact();
    assert.ok(fs.statSync(p).size < 1024 * 1024, "compaction returns the value's pages");
    db.close();
  });
});

describe("bad input never reaches the log", () => {
  test("a key over MAX_KEY_SIZE leaves the WAL untouched", () => {
    const p = freshPath();
    const db = openFile(p, onEachWrite());
    db.insert("ok", "1");
    const wal = fs.readFileSync(`${p}.wal`);
    assert.throws(() => db.insert("k".repeat(1025), "v"), { code: "EMDB_KEY_TOO_LARGE" });
    assert.throws(() => db.transaction((tx) => tx.insert("k".repeat(1025), "v")), {
      code: "EMDB_KEY_TOO_LARGE",
    });
    assert.deepEqual(fs.readFileSync(`${p}.wal`), wal);
    assert.deepEqual(db.check(), []);
    db.close();
  });

  test("with pages under 4 KiB, a key over a quarter of the page is refused the same way", () => {
    // The tree holds keys of at most pageSize / 4 bytes. Accepted and logged, a longer one
    // made every checkpoint fail, after every reopen too, and the WAL grew without end.
    const p = freshPath();
    let db = openFile(p, onEachWrite(), undefined, 512);
    const edge = "k".repeat(128);
    const over = "k".repeat(129);
    db.insert(edge, "1");
    const wal = fs.readFileSync(`${p}.wal`);
    const refused = { code: "EMDB_KEY_TOO_LARGE", message: /maximum is 128 .*page size/ };
    assert.throws(() => db.insert(over, "v"), refused);
    assert.throws(() => db.insertWithTtl(Buffer.from(over), "v", Ttl.after(1000)), refused);
    assert.throws(() => db.transaction((tx) => tx.insert(over, "v")), refused);
    assert.throws(() => db.focus("g").set("x".repeat(127), "v"), refused);
    assert.deepEqual(fs.readFileSync(`${p}.wal`), wal);
    db.insert("after", "2"); // a refusal does not stop the store
    db.flush();
    db.close();
    db = openFile(p, onEachWrite(), undefined, 512);
    assert.equal(db.get(edge)?.toString(), "1");
    assert.equal(db.get("after")?.toString(), "2");
    assert.equal(db.len(), 2);
    assert.deepEqual(db.check(), []);
    db.close();
  });

  test("a transaction logs no removal of a key that is not stored", () => {
    const p = freshPath();
    const db = openFile(p, onEachWrite());
    db.insert("present", "1");
    const walBytes = () => Number(db.stats().disk?.walBytes);
    const before = walBytes();
    db.transaction((tx) => {
      tx.remove("absent");
      tx.insert("brief", "x");
      tx.remove("brief");
    });
    assert.equal(walBytes(), before, "nothing to log, not even an empty batch");
    assert.equal(db.stats().lastTxId, 0, "and no transaction id used");
    db.transaction((tx) => {
      tx.remove("present");
      tx.remove("absent");
    });
    // BatchBegin, one Delete, BatchEnd, between two Synced records (the insert was synced).
    assert.equal(
      walBytes(),
      before + 2 * SYNCED_RECORD_SIZE + 2 * BATCH_RECORD_SIZE + deleteRecordSize("present".length),
    );
    assert.equal(db.len(), 0);
    assert.deepEqual(db.check(), []);
    db.close();
  });
});

describe("large transactions", () => {
  test("a transaction bigger than the checkpoint threshold goes straight to the page file, atomically", () => {
    const p = freshPath();
    // onEachWrite(): a batch that went through the WAL would be written and synced there
    // before the checkpoint, whose reset rewrites only the header and leaves those bytes.
    let db = Emdb.builder()
      .path(p)
      .flushPolicy(onEachWrite())
      .checkpointThreshold(64 * 1024)
      .build();
    db.insert("before", "1");
    const recordsEnd = Number(db.stats().disk?.walBytes);
    const walBefore = fs.readFileSync(`${p}.wal`);
    db.transaction((tx) => {
      for (let i = 0; i < 2000; i++)
        tx.insert(`bulk${String(i).padStart(5, "0")}`, "v".repeat(100));
      tx.remove("before");
    });
    assert.equal(db.stats().disk?.walBytes, 64, "the checkpoint emptied the WAL");
    assert.deepEqual(
      fs.readFileSync(`${p}.wal`).subarray(recordsEnd, walBefore.length),
      walBefore.subarray(recordsEnd),
      "nothing of the transaction was written to the WAL",
    );
    assert.deepEqual(db.check(), []);
    db.close();
    db = openFile(p);
    assert.equal(db.len(), 2000);
    assert.equal(db.get("before"), undefined);
    assert.deepEqual(db.check(), []);
    db.close();
  });

  test("a first import, or any batch as large as the tree, skips the WAL from a sixteenth of the threshold", () => {
    const p = freshPath();
    // 160 KiB: batches from 10 KiB into a tree holding no more records than they have.
    const open = () =>
      Emdb.builder()
        .path(p)
        .flushPolicy(onEachWrite())
        .checkpointThreshold(160 * 1024)
        .build();
    let db = open();
    const walBytes = () => Number(db.stats().disk?.walBytes);
    const pages = () => Number(db.stats().disk?.pageCount);
    const key = (i: number) => `imp${String(i).padStart(5, "0")}`;
    const put = (from: number, to: number, value: string) =>
      db.transaction((tx) => {
        for (let i = from; i < to; i++) tx.insert(key(i), value);
      });
    const pagesBefore = pages();
    put(0, 200, "a".repeat(100)); // 21.6 KB into an empty tree
    assert.equal(walBytes(), 64, "a first import of 21.6 KB is checkpointed at once");
    assert.ok(pages() > pagesBefore, "and its records are in the page file");
    put(1000, 1100, "b".repeat(100)); // 10.8 KB, but 100 records against the tree's 200
    const logged = walBytes();
    assert.ok(logged > 64, "a batch smaller than the tree is logged");
    put(2000, 2300, "c".repeat(20)); // 300 records but 8.4 KB, under 10 KiB
    assert.ok(walBytes() > logged, "a batch under a sixteenth of the threshold is logged");
    put(3000, 3400, "d".repeat(100)); // 400 records against the tree's 200
    assert.equal(walBytes(), 64, "a batch larger than the tree is checkpointed at once");
    assert.deepEqual(db.check(), []);
    db.close();
    db = open();
    assert.equal(db.len(), 1000);
    for (const [i, v] of [
      [199, "a".repeat(100)],
      [1099, "b".repeat(100)],
      [2299, "c".repeat(20)],
      [3399, "d".repeat(100)],
    ] as const)
      assert.equal(db.get(key(i))?.toString(), v, key(i));
    assert.deepEqual(db.check(), []);
    db.close();
  });

  test("a first import is written into the tree from its entries in key order, and by lookups once a write comes between (seeded, small pages)", () => {
    for (const expireSome of [false, true]) {
      withPrng((rng) => {
        const clock = new FakeClock();
        const p = freshPath();
        // About 0.4 MB of import: past a sixteenth of a 1 MiB threshold, so written at once.
        const open = () =>
          Emdb.builder()
            .path(p)
            .pageSize(512)
            .flushPolicy(onEachWrite())
            .checkpointThreshold(1 << 20)
            .clock(clock.fn)
            .build();
        let db = open();
        const takes: (readonly Entry[] | undefined)[] = [];
        const take = Keyspace.prototype.takeEntriesInOrder;
        Keyspace.prototype.takeEntriesInOrder = function (this: Keyspace) {
          const r = take.call(this);
          takes.push(r);
          return r;
        };
        // Binary keys of 0 to 24 bytes (some repeated: the last write wins), values inline
        // and in overflow chains, some with a deadline: 1 ms, expired by the checkpoint
        // when the clock moves on inside the transaction (a write before the rebuild).
        const model = new Map<string, { v: string; at: number }>();
        try {
          db.transaction((tx) => {
            for (let i = 0; i < 20_000; i++) {
              const k =
                rng.chance(0.02) && model.size > 0
                  ? rng.pick([...model.keys()].slice(-50))
                  : rng.bytes(rng.int(25)).toString("hex");
              const v = rng.chance(0.01) ? `${i}:${"o".repeat(600 + rng.int(1500))}` : `v${i}`;
              const ttl = rng.chance(0.1) ? (rng.chance(0.5) ? 1 : 1_000_000) : 0;
              if (ttl === 0) tx.insert(Buffer.from(k, "hex"), v);
              else tx.insertWithTtl(Buffer.from(k, "hex"), v, Ttl.after(ttl));
              model.set(k, { v, at: ttl === 0 ? 0 : clock.now + ttl });
            }
            if (expireSome) clock.advance(10);
          });
        } finally {
          Keyspace.prototype.takeEntriesInOrder = take;
        }
        assert.equal(takes.length, 1, "the import's checkpoint rebuilt the tree once");
        if (expireSome) {
          assert.equal(takes[0], undefined, "the expiries it dropped first void the kept order");
        } else {
          // Position for position, the entry of the key at that place in byte order.
          const order = [...model.keys()].sort((a, b) =>
            Buffer.compare(Buffer.from(a, "hex"), Buffer.from(b, "hex")),
          );
          const handed = takes[0]!;
          assert.equal(handed.length, order.length, "every entry of the import");
          order.forEach((k, i) => {
            const e = handed[i]!;
            const v = typeof e === "string" ? e : e.value;
            assert.equal(v, model.get(k)!.v, `entry ${i}: ${k}`);
          });
        }
        assert.equal(Number(db.stats().disk?.walBytes), 64, "checkpointed at once");
        const live = () =>
          [...model]
            .filter(([, e]) => e.at === 0 || e.at > clock.now)
            .map(([k, e]) => `${k}=${e.v}`)
            .sort((a, b) =>
              Buffer.compare(
                Buffer.from(a.split("=")[0]!, "hex"),
                Buffer.from(b.split("=")[0]!, "hex"),
              ),
            );
        const dump = () => [...db.iter()].map(([k, v]) => `${k.toString("hex")}=${v}`);
        assert.deepEqual(db.check(), []);
        db.close();
        db = open();
        assert.deepEqual(dump(), live(), "reopened");
        for (const [k, e] of model) {
          if (e.at === 0 || e.at > clock.now) {
            assert.equal(
              db.expiresAt(Buffer.from(k, "hex"))?.getTime(),
              e.at === 0 ? undefined : e.at,
              k,
            );
          }
        }
        assert.deepEqual(db.check(), []);
        db.close();
      });
    }
  });

  test("a large transaction whose checkpoint fails stays in memory exactly when its meta page was synced", () => {
    // Each write and sync of the checkpoint fails in turn. Before the meta page's sync the
    // transaction is undone; from then on (the WAL reset) it is in the file, and memory must
    // keep it too. Either way memory shows what a reopen after a crash finds.
    const key = (i: number) => `k${String(i).padStart(4, "0")}`;
    const dump = (core: Core) =>
      [...core.entries(undefined, true, undefined, true, false, Infinity)].map(
        ([k, v]) => `${k}=${v}`,
      );
    const outcomes = new Set<string>();
    for (let failAt = 0; ; failAt++) {
      const be = new MemoryBackend();
      const open = smallCoreOpener(be, "/big.emdb", 4096);
      let core = open();
      core.applyBatch(new Map(Array.from({ length: 600 }, (_, i) => [key(i), `first ${i}`])));
      const before = dump(core);
      const batch = new Map<string, Entry | null>();
      for (let i = 0; i < 900; i += 3) batch.set(key(i), i % 2 === 0 ? null : `second ${i}`);
      for (let i = 600; i < 700; i++) batch.set(key(i), new Timed(`timed ${i}`.repeat(4), 50_000));
      const model = new Map(before.map((line) => line.split("=") as [string, string]));
      for (const [k, e] of batch) {
        if (e === null) model.delete(k);
        else model.set(k, typeof e === "string" ? e : String(e.value));
      }
      const after = [...model].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${k}=${v}`);
      let ops = 0;
      be.hook = (op) => {
        if ((op === "write" || op === "sync") && ops++ === failAt)
          throw new Error("EIO (injected)");
      };
      // The batch must skip the WAL (too large to log), or this tests the logged path.
      const store = core.persistence;
      const logOrDefer = store.batch.bind(store);
      let deferred: boolean | undefined;
      store.batch = (txId, ops) => {
        deferred = logOrDefer(txId, ops);
        return deferred;
      };
      let threw = true;
      try {
        core.applyBatch(batch);
        threw = false;
      } catch (err) {
        assert.match(String(err), /EIO \(injected\)/);
      }
      be.hook = undefined;
      assert.equal(deferred, true);
      if (!threw) break;
      const shown = dump(core);
      const kept = shown.length !== before.length;
      assert.deepEqual(shown, kept ? after : before, `failing op ${failAt}`);
      assert.equal(core.lastTxId, kept ? 2 : 1, `failing op ${failAt}`);
      outcomes.add(kept ? "kept" : "undone");
      assert.deepEqual(core.ks.check(), [], `failing op ${failAt}`);
      be.crash();
      core = open();
      assert.deepEqual(dump(core), shown, `failing op ${failAt}: reopened`);
      assert.deepEqual([...core.ks.check(), ...core.persistence.check()], []);
      core.persistence.close();
    }
    assert.deepEqual([...outcomes].sort(), ["kept", "undone"]);
  });

  test("a transaction touching most keys rebuilds the tree in order", () => {
    const p = freshPath();
    let db = Emdb.builder()
      .path(p)
      .checkpointThreshold(1024 * 1024)
      .build();
    db.transaction((tx) => {
      for (let i = 0; i < 70_000; i++) tx.insert(`k${String(i).padStart(6, "0")}`, `v${i}`);
    });
    db.transaction((tx) => {
      for (let i = 0; i < 70_000; i += 2) tx.remove(`k${String(i).padStart(6, "0")}`);
      for (let i = 1; i < 70_000; i += 2) tx.insert(`k${String(i).padStart(6, "0")}`, `w${i}`);
    });
    assert.deepEqual(db.check(), []);
    db.close();
    db = openFile(p);
    assert.equal(db.len(), 35_000);
    assert.equal(db.get("k000003")?.toString(), "w3");
    assert.deepEqual(db.check(), []);
    db.close();
  });
});

describe("checkpoints of many changes", () => {
  /** Counts the tree rebuilds `body` runs (the checkpoint's other path routes each change). */
  function rebuildsDuring(body: () => void): number {
    const rebuild = BTree.prototype.rebuild;
    let n = 0;
    BTree.prototype.rebuild = function (this: BTree, entries) {
      n++;
      return rebuild.call(this, entries);
    };
    try {
      body();
    } finally {
      BTree.prototype.rebuild = rebuild;
    }
    return n;
  }

  const key = (i: number) => `k${String(i).padStart(6, "0")}`;
  const pages = (db: Emdb) => Number(db.stats().disk?.pageCount);
  /** A flush() of `db` must run `rebuilds` tree rebuilds. */
  const flushRebuilds = (db: Emdb, rebuilds: number) =>
    assert.equal(
      rebuildsDuring(() => db.flush()),
      rebuilds,
    );
  /** Checks `db`, closes it, and checks what `reopen` finds: its length and some values. */
  function reopenHolds(
    db: Emdb,
    reopen: () => Emdb,
    len: number,
    want: [number, string | undefined][],
  ): void {
    assert.deepEqual(db.check(), []);
    db.close();
    const again = reopen();
    assert.equal(again.len(), len);
    for (const [i, v] of want) assert.equal(again.get(key(i))?.toString(), v, key(i));
    assert.deepEqual(again.check(), []);
    again.close();
  }
  /** key(0) … key(59,999) in one transaction. */
  const load = (db: Emdb) =>
    db.transaction((tx) => {
      for (let i = 0; i < 60_000; i++) tx.insert(key(i), `v${i}`);
    });

  test("keys appended past the last one are added copy-on-write, not by rewriting the tree", () => {
    // 16,500 new keys, more than an eighth of the database and past the rebuild minimum, but
    // all after its last key: a rebuild would leave the file at about twice its size.
    const p = freshPath();
    const db = openFile(p, manual());
    load(db);
    // Into an empty tree, every key is appended: the rebuild is the cheaper way there.
    flushRebuilds(db, 1);
    const before = pages(db);
    for (let i = 60_000; i < 76_500; i++) db.insert(key(i), `v${i}`);
    flushRebuilds(db, 0);
    assert.ok(pages(db) < before * 1.5, `${before} pages before, ${pages(db)} after`);
    // The same number of changes spread over the keys still rebuilds.
    for (let i = 0; i < 76_500; i += 4) db.insert(key(i), `w${i}`);
    flushRebuilds(db, 1);
    reopenHolds(db, () => openFile(p), 76_500, [
      [76_499, "v76499"],
      [76_496, "w76496"],
      [60_001, "v60001"],
    ]);
  });

  test("a rolling window (the oldest keys removed, as many appended) is not rewritten either", () => {
    const p = freshPath();
    const db = openFile(p, manual());
    load(db);
    db.flush();
    const before = pages(db);
    for (let i = 0; i < 16_500; i++) {
      db.insert(key(60_000 + i), `v${60_000 + i}`);
      db.remove(key(i));
    }
    flushRebuilds(db, 0);
    assert.ok(pages(db) < before * 1.5, `${before} pages before, ${pages(db)} after`);
    // As many removals spread over the keys still rebuild.
    for (let i = 16_500; i < 76_500; i += 3) db.remove(key(i));
    flushRebuilds(db, 1);
    reopenHolds(db, () => openFile(p), 40_000, [
      [16_499, undefined],
      [16_500, undefined],
      [16_501, "v16501"],
      [76_499, "v76499"],
    ]);
  });

  test("a transaction of appended keys too large to log is added copy-on-write too", () => {
    const p = freshPath();
    const open = () =>
      Emdb.builder()
        .path(p)
        .checkpointThreshold(64 * 1024)
        .build();
    const db = open();
    load(db);
    const before = pages(db);
    const appended = rebuildsDuring(() =>
      db.transaction((tx) => {
        for (let i = 60_000; i < 76_500; i++) tx.insert(key(i), `v${i}`);
      }),
    );
    assert.equal(appended, 0);
    assert.equal(db.stats().disk?.walBytes, 64, "not logged: checkpointed at once");
    assert.ok(pages(db) < before * 1.5, `${before} pages before, ${pages(db)} after`);
    // One key before the last one makes it a rewrite again.
    const mixed = rebuildsDuring(() =>
      db.transaction((tx) => {
        tx.insert(key(5), "w5");
        for (let i = 76_500; i < 93_000; i++) tx.insert(key(i), `v${i}`);
      }),
    );
    assert.equal(mixed, 1);
    reopenHolds(db, open, 93_000, [
      [5, "w5"],
      [76_499, "v76499"],
    ]);
  });
});

describe("what the open's WAL replay reports", () => {
  test("records replayed, and a torn tail's offset, reason and the valid records cut with it", () => {
    const p = freshPath();
    const db = Emdb.builder().path(p).flushPolicy(onEachWrite()).build();
    const fresh = db.stats().disk;
    assert.equal(fresh?.replayedRecords, 0);
    assert.equal(fresh?.tornTailAt, undefined);
    assert.equal(fresh?.droppedRecords, 0);
    for (const k of ["a", "b", "c", "d", "e"]) db.insert(k, k.repeat(100));
    const beforeTx = Number(db.stats().disk?.walBytes);
    db.transaction((tx) => {
      for (const k of ["t1", "t2", "t3", "t4"]) tx.insert(k, k.repeat(200));
    });
    const afterTx = Number(db.stats().disk?.walBytes);
    // Every write was synced: a copy of the files now is what a crash would leave.
    const image = (name: string, walLength: number) => {
      const q = `${p}-${name}`;
      fs.copyFileSync(p, q);
      fs.writeFileSync(`${q}.wal`, fs.readFileSync(`${p}.wal`).subarray(0, walLength));
      return q;
    };
    const whole = image("whole", afterTx);
    // Cut in the middle of the transaction: its BatchBegin and first puts are whole.
    const cut = image("cut", Math.floor((beforeTx + afterTx) / 2) + 40);
    db.close();

    const a = openFile(whole);
    const wholeStats = a.stats().disk;
    assert.ok(Number(wholeStats?.replayedRecords) >= 5 + 6, "5 puts and a batch of 4");
    assert.equal(wholeStats?.tornTailAt, undefined);
    assert.equal(wholeStats?.droppedRecords, 0);
    assert.equal(a.get("t4")?.toString(), "t4".repeat(200));
    assert.deepEqual(a.check(), []);
    a.close();

    const b = openFile(cut);
    const cutStats = b.stats().disk;
    // The transaction's write starts with a Synced record (the last commit was synced), then
    // BatchBegin (29 bytes) and puts of 433 (17 + 14 + 2-byte key + 400-byte value): the cut,
    // 960 bytes into the 1,840 the write took, falls inside the third put.
    assert.equal(
      afterTx - beforeTx,
      SYNCED_RECORD_SIZE + 2 * BATCH_RECORD_SIZE + 4 * 433 + SYNCED_RECORD_SIZE,
    );
    // Reported where the damage is, the third put; the log is cut back to BatchBegin.
    assert.equal(
      cutStats?.tornTailAt,
      beforeTx + SYNCED_RECORD_SIZE + BATCH_RECORD_SIZE + 2 * 433,
      "the damage is at the third put",
    );
    assert.match(String(cutStats?.tornTailReason), /inside the batch/);
    assert.equal(cutStats?.walBytes, beforeTx + SYNCED_RECORD_SIZE, "cut back to BatchBegin");
    assert.equal(cutStats?.droppedRecords, 3, "BatchBegin and the two whole puts");
    assert.ok(
      Number(cutStats?.replayedRecords) < Number(wholeStats?.replayedRecords) - 5,
      "the cut batch's records are not counted as replayed",
    );
    assert.equal(b.get("e")?.toString(), "e".repeat(100));
    assert.equal(b.get("t1"), undefined, "no part of the transaction is kept");
    assert.equal(b.len(), 5);
    assert.deepEqual(b.check(), []);
    b.close();
    // The close checkpointed and emptied the WAL: the next open finds nothing torn.
    const c = openFile(cut);
    assert.equal(c.stats().disk?.tornTailAt, undefined);
    assert.equal(c.stats().disk?.droppedRecords, 0);
    assert.equal(c.len(), 5);
    assert.deepEqual(c.check(), []);
    c.close();
  });
});

describe("the consistency checker", () => {
  test("reports memory that disagrees with the checkpointed tree", () => {
    const p = freshPath();
    const db = openFile(p);
    for (let i = 0; i < 100; i++) db.insert(`k${i}`, `v${i}`);
    db.flush();
    assert.deepEqual(db.check(), []);
    // Change memory behind the log's back, as a bug in the write path would.
    const ks = (db as unknown as { core: Core }).core.ks;
    ks.set("k5", hashInternalKey("k5"), "not what the tree holds", undefined);
    assert.ok(
      db.check().some((problem) => problem.includes("differ")),
      "a changed value is reported",
    );
    ks.delete("k6", hashInternalKey("k6"));
    assert.ok(
      db.check().some((problem) => problem.includes("tree holds")),
      "a lost key is reported",
    );
    db.close();
  });
});
