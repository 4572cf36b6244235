import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, test } from "node:test";
import type { Core } from "../src/core.js";
import { Emdb, EmdbError, everyN, onEachWrite, Ttl } from "../src/index.js";
import { hashInternalKey } from "../src/keys.js";
import { MemoryBackend } from "../src/pager/backend.js";
import { Timed } from "../src/shards/keyspace.js";
import { StagedWrites } from "../src/shards/staged-writes.js";
import { MAX_EXPIRY_MS } from "../src/ttl/ttl.js";
import { assertConsistent, FakeClock, memDb, str } from "./helpers/db.js";
import { openCore } from "./helpers/storage.js";

describe("TTL (emdb-rs ttl.rs)", () => {
  test("Ttl.default() without a builder default never expires", () => {
    const clock = new FakeClock();
    const db = memDb(clock);
    db.insertWithTtl("k", "v", Ttl.default());
    clock.advance(10 * 365 * 86_400_000);
    assert.equal(str(db.get("k")), "v");
    assert.equal(db.ttl("k"), Number.POSITIVE_INFINITY);
  });

  test("Ttl.after(0) is expired at once", () => {
    const db = memDb(new FakeClock());
    db.insertWithTtl("k", "v", Ttl.after(0));
    assert.equal(db.get("k"), undefined);
    assert.equal(db.containsKey("k"), false);
    assert.equal(db.ttl("k"), undefined);
    assert.equal(db.len(), 0);
  });

  test("re-inserting resets the TTL", () => {
    const db = memDb(new FakeClock());
    db.insertWithTtl("k", "old", Ttl.after(0));
    db.insertWithTtl("k", "new", Ttl.never());
    assert.equal(str(db.get("k")), "new");
    assert.equal(db.expiresAt("k"), undefined);
  });

  test("persist on a missing key returns false; sweep on an empty db returns 0", () => {
    const db = memDb(new FakeClock());
    assert.equal(db.persist("nope"), false);
    assert.equal(db.sweepExpired(), 0);
  });

  test("the expiry boundary is expired (expiresAt <= now)", () => {
    const clock = new FakeClock();
    const db = memDb(clock);
    db.insertWithTtl("k", "v", Ttl.after(100));
    clock.advance(99);
    assert.equal(db.ttl("k"), 1);
    assert.equal(str(db.get("k")), "v");
    clock.advance(1);
    assert.equal(db.get("k"), undefined);
    assert.equal(db.ttl("k"), undefined);
  });

  test("a large TTL is supported and expiresAt is its Date", () => {
    const clock = new FakeClock(1_000);
    const db = memDb(clock);
    db.insertWithTtl("k", "v", Ttl.after(86_400_000));
    assert.deepEqual(db.expiresAt("k"), new Date(1_000 + 86_400_000));
    assert.equal(db.ttl("k"), 86_400_000);
  });

  test("an expiry past the latest Date (8.64e15 ms) is EMDB_TTL_OVERFLOW and changes nothing; up to it, expiresAt is that Date", () => {
    const clock = new FakeClock();
    const db = memDb(clock);
    const overflow = (e: unknown) => e instanceof EmdbError && e.code === "EMDB_TTL_OVERFLOW";
    for (const ms of [Number.MAX_SAFE_INTEGER, MAX_EXPIRY_MS - clock.now + 1]) {
      assert.throws(() => db.insertWithTtl("k", "v", Ttl.after(ms)), overflow);
    }
    assert.equal(db.containsKey("k"), false);
    db.insertWithTtl("k", "v", Ttl.after(MAX_EXPIRY_MS - clock.now));
    assert.equal(db.expiresAt("k")?.getTime(), MAX_EXPIRY_MS);
  });

  test("Ttl.after rejects negative, fractional and non-number durations", () => {
    assert.throws(() => Ttl.after(-1), RangeError);
    assert.throws(() => Ttl.after(1.5), RangeError);
    assert.throws(() => Ttl.after("5" as never), TypeError);
    const db = memDb();
    assert.throws(() => db.insertWithTtl("k", "v", 5 as never), TypeError);
    assert.equal(db.len(), 0);
  });
});

describe("TTL semantics emdb improves on", () => {
  test("persist keeps a live key forever but does not revive an expired one", () => {
    const clock = new FakeClock();
    const db = memDb(clock);
    db.insertWithTtl("live", "1", Ttl.after(10));
    db.insertWithTtl("dead", "2", Ttl.after(10));
    clock.advance(5);
    assert.equal(db.persist("live"), true);
    assert.equal(db.persist("live"), false, "no expiry left to remove");
    clock.advance(5);
    assert.equal(db.persist("dead"), false);
    assert.equal(db.get("dead"), undefined);
    clock.advance(1_000_000);
    assert.equal(str(db.get("live")), "1");
    assert.equal(db.ttl("live"), Number.POSITIVE_INFINITY);
  });

  test("ttl() tells a key without expiry (Infinity) from a missing one (undefined)", () => {
    const db = memDb(new FakeClock());
    db.insert("plain", "v");
    assert.equal(db.ttl("plain"), Number.POSITIVE_INFINITY);
    assert.equal(db.ttl("missing"), undefined);
  });

  test("the builder's default TTL applies to insert, tx.insert and focus.set; Ttl.never overrides it", () => {
    const clock = new FakeClock();
    const db = memDb(clock, 1_000);
    db.insert("a", "1");
    db.transaction((tx) => tx.insert("b", "2"));
    db.focus("g").set("c", "3");
    db.insertWithTtl("d", "4", Ttl.never());
    db.insertWithTtl("e", "5", Ttl.after(5_000));
    assert.equal(db.ttl("a"), 1_000);
    assert.equal(db.ttl("b"), 1_000);
    assert.equal(db.ttl("g.c"), 1_000);
    clock.advance(1_000);
    assert.deepEqual([...db.keys()].map(String), ["d", "e"]);
    assert.equal(db.len(), 2);
  });

  test("reads, len, iteration, ranges and groups never show expired entries", () => {
    const clock = new FakeClock();
    const db = memDb(clock);
    db.insertWithTtl("g.a", "1", Ttl.after(10));
    db.insert("g.b", "2");
    db.insertWithTtl("g.c", "3", Ttl.after(20));
    clock.advance(10);
    assert.equal(db.get("g.a"), undefined);
    assert.deepEqual([...db.keys()].map(String), ["g.b", "g.c"]);
    assert.deepEqual(
      [...db.iter()].map(([k]) => String(k)),
      ["g.b", "g.c"],
    );
    assert.deepEqual(
      [...db.range({ gte: "g" })].map(([k]) => String(k)),
      ["g.b", "g.c"],
    );
    assert.deepEqual(
      [...db.group("g")].map(([k]) => String(k)),
      ["g.b", "g.c"],
    );
    assert.equal(db.len(), 2);
    assert.equal(db.stats().liveKeys, 2);
    assertConsistent(db);
  });

  test("remove of an expired key deletes it and returns undefined", () => {
    const clock = new FakeClock();
    const db = memDb(clock);
    db.insertWithTtl("k", "v", Ttl.after(1));
    clock.advance(1);
    assert.equal(db.remove("k"), undefined);
    assert.equal(db.sweepExpired(), 0);
    assertConsistent(db);
  });

  test("sweepExpired removes exactly the expired entries and counts them", () => {
    const clock = new FakeClock();
    const db = memDb(clock);
    for (let i = 0; i < 100; i++) db.insertWithTtl(`k${i}`, "v", Ttl.after(i));
    db.insertWithTtl("k5", "overwritten", Ttl.after(1_000)); // its old deadline is stale
    db.remove("k6");
    clock.advance(50); // deadlines 0..50 are due
    assert.equal(db.sweepExpired(), 51 - 2);
    assert.equal(db.sweepExpired(), 0);
    assert.equal(db.len(), 100 - 51 + 1);
    assert.equal(str(db.get("k5")), "overwritten");
    assertConsistent(db);
  });

  test("many overwrites of TTL keys do not grow the expiry heap without bound", () => {
    const clock = new FakeClock();
    const db = memDb(clock);
    for (let i = 0; i < 20_000; i++) db.insertWithTtl(`k${i % 10}`, "v", Ttl.after(1_000_000 + i));
    assert.equal(db.len(), 10);
    assertConsistent(db);
    assert.equal(db.stats().expiringKeys, 10);
    // 20,000 deadlines were pushed for 10 live ones; stale pairs must have been shed.
    const heap = (db as unknown as { core: Core }).core.ks.expiries;
    assert.ok(heap.size <= 1024, `expiry heap holds ${heap.size} pairs for 10 live deadlines`);
  });

  test("a clock reading that is negative, fractional or not a number is EMDB_INVALID_CONFIG, at open for a file", () => {
    const invalid = (e: unknown) =>
      e instanceof EmdbError &&
      e.code === "EMDB_INVALID_CONFIG" &&
      /the clock returned/.test(e.message);
    for (const reading of [-1, 1.5, Number.NaN, "5", MAX_EXPIRY_MS + 1]) {
      let t: unknown = 0;
      const db = Emdb.builder()
        .clock(() => t as number)
        .build();
      db.insertWithTtl("k", "v", Ttl.after(10));
      t = reading;
      assert.throws(() => db.get("k"), invalid, String(reading));
      assert.throws(() => db.insertWithTtl("j", "v", Ttl.after(10)), invalid, String(reading));
      t = 5;
      assert.equal(db.ttl("k"), 5);
      assert.equal(db.containsKey("j"), false);
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-ttl-"));
    try {
      const open = () =>
        Emdb.builder()
          .path(path.join(dir, "db"))
          .clock(() => -1)
          .build();
      assert.throws(open, invalid);
      assert.throws(
        () => Emdb.migrate(path.join(dir, "db"), { clock: 5 as never }),
        (e: unknown) => e instanceof TypeError && /clock/.test(String(e)),
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a bad clock reading during a checkpoint is refused without stopping the store", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-ttl-"));
    try {
      let now: number = 1_700_000_000_000;
      const db = Emdb.builder()
        .path(path.join(dir, "db"))
        .clock(() => now)
        .build();
      db.insert("a", "1");
      now = 1_700_000_000_000.5; // say, performance.timeOrigin + performance.now()
      assert.throws(() => db.flush(), { code: "EMDB_INVALID_CONFIG" });
      now = 1_700_000_000_001;
      db.insert("b", "2");
      db.flush();
      assert.deepEqual([...db.keys()].map(String), ["a", "b"]);
      assert.deepEqual(db.check(), []);
      db.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a bad clock reading or a throwing clock when a write fills the WAL postpones the checkpoint; the write stands, and a kill then loses no more than its policy allows", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-ttl-"));
    try {
      let now: number = 1_700_000_000_000;
      let failing: Error | undefined;
      const p = path.join(dir, "db");
      const open = () =>
        Emdb.builder()
          .path(p)
          .flushPolicy(everyN(4))
          .checkpointThreshold(4096)
          .clock(() => {
            if (failing !== undefined) throw failing;
            return now;
          })
          .build();
      let db = open();
      const walBytes = () => Number(db.stats().disk?.walBytes);
      const value = "v".repeat(300);
      let i = 0;
      while (walBytes() < 3500) db.insert(`k${i++}`, value);
      now = Number.NaN;
      // Past the threshold now: the checkpoint it would run cannot read the clock.
      for (let j = 0; j < 10; j++) db.insert(`k${i++}`, value);
      assert.throws(() => db.flush(), { code: "EMDB_INVALID_CONFIG" }, "flush() reports it");
      failing = new Error("the clock is unplugged");
      for (let j = 0; j < 10; j++) db.insert(`k${i++}`, value);
      assert.throws(() => db.flush(), /unplugged/, "as it reports a clock that throws");
      // The files as a kill now would leave them: the postponed writes rest on the WAL, so
      // everyN(4) may lose at most the last 3 of them.
      const image = path.join(dir, "image");
      fs.copyFileSync(p, image);
      fs.copyFileSync(`${p}.wal`, `${image}.wal`);
      const killed = Emdb.builder()
        .path(image)
        .clock(() => 1_700_000_000_001)
        .build();
      assert.ok(killed.len() >= i - 3 && killed.len() <= i, `${killed.len()} of ${i} writes`);
      for (let j = 0; j < i - 3; j++) assert.equal(killed.get(`k${j}`)?.toString(), value, `k${j}`);
      assert.deepEqual(killed.check(), []);
      killed.close();
      failing = undefined; // back to NaN
      // A transaction written straight into the tree needs its checkpoint to be durable at
      // all: without a reading it is refused, and undone.
      assert.throws(
        () =>
          db.transaction((tx) => {
            for (let j = 0; j < 100; j++) tx.insert(`t${j}`, value);
          }),
        { code: "EMDB_INVALID_CONFIG" },
      );
      // (Reads that may sweep expired entries, as stats() and len() do, need the clock too.)
      now = 1_700_000_000_001;
      assert.ok(walBytes() > 4096, "the checkpoint waited: its records are still in the log");
      assert.equal(db.len(), i, "every write stands, and no write of the transaction");
      assert.equal(db.get("t0"), undefined);
      db.insert(`k${i++}`, value);
      assert.ok(walBytes() < 4096, "the next write with a good reading checkpoints");
      assert.deepEqual(db.check(), []);
      db.close();
      db = open();
      assert.equal(db.len(), i);
      assert.equal(db.get(`k${i - 1}`)?.toString(), value);
      assert.deepEqual(db.check(), []);
      db.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a deadline of 0 (a clock at 0, Ttl.after(0)) stays expired after a kill and a reopen", () => {
    // 0 is also "never expires" in the log: such a write is logged as the removal it is.
    const be = new MemoryBackend();
    const open = () =>
      openCore(be, "/zero.emdb", {
        clock: () => 0,
        flushPolicy: onEachWrite(),
        pageSize: 4096,
        checkpointBytes: 2 ** 26,
      });
    let core = open();
    core.put("live", hashInternalKey("live"), "1", undefined);
    core.put("k", hashInternalKey("k"), "old", undefined);
    core.put("k", hashInternalKey("k"), "v", 0);
    core.put("n", hashInternalKey("n"), "v", 0);
    const batch = new StagedWrites();
    batch.set("t", hashInternalKey("t"), new Timed("v", 0));
    batch.set("u", hashInternalKey("u"), "1");
    core.applyBatch(batch);
    const keys = (c: Core) =>
      [...c.entries(undefined, true, undefined, true, false, Infinity)].map(([k]) => String(k));
    assert.deepEqual(keys(core), ["live", "u"]);
    core = open(); // killed: no close, the WAL is replayed
    assert.deepEqual(keys(core), ["live", "u"]);
    assert.deepEqual(core.persistence.check(), []);
    core.persistence.close();
  });

  test("an injected clock is the only time source", () => {
    let t = 0;
    const db = Emdb.builder()
      .clock(() => t)
      .build();
    db.insertWithTtl("k", "v", Ttl.after(10));
    t = 9;
    assert.equal(db.ttl("k"), 1);
    t = 10;
    assert.equal(db.get("k"), undefined);
  });
});
