import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Core } from "../src/core.js";
import { Emdb, EmdbError, Ttl } from "../src/index.js";
import { assertConsistent, FakeClock, memDb, str } from "./helpers/db.js";

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

  test("an expiry past 2^53 - 1 ms is EMDB_TTL_OVERFLOW and changes nothing", () => {
    const db = memDb(new FakeClock());
    assert.throws(
      () => db.insertWithTtl("k", "v", Ttl.after(Number.MAX_SAFE_INTEGER)),
      (e: unknown) => e instanceof EmdbError && e.code === "EMDB_TTL_OVERFLOW",
    );
    assert.equal(db.containsKey("k"), false);
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
