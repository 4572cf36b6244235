import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Core } from "../src/core.js";
import { Emdb, EmdbError, MAX_KEY_SIZE, Ttl } from "../src/index.js";
import { assertConsistent, entriesAsStrings, FakeClock, memDb, str } from "./helpers/db.js";

const invalidPath = { code: "EMDB_INVALID_PATH" };

describe("groups and focus (emdb-rs nested.rs)", () => {
  test("deleteGroup of an empty prefix is an error", () => {
    assert.throws(() => Emdb.openInMemory().deleteGroup(""), invalidPath);
  });

  test("deleteGroup matching nothing returns 0", () => {
    const db = Emdb.openInMemory();
    db.insert("other.name", "x");
    assert.equal(db.deleteGroup("product"), 0);
    assert.equal(db.len(), 1);
  });

  test("group returns every key under the prefix", () => {
    const db = Emdb.openInMemory();
    for (const k of ["product.a", "product.b", "product.c"]) db.insert(k, k);
    assert.equal([...db.group("product")].length, 3);
  });

  test("a three-deep focus chain stores the joined key", () => {
    const db = Emdb.openInMemory();
    db.focus("a").focus("b").focus("c").set("d", "v");
    assert.equal(str(db.get("a.b.c.d")), "v");
  });

  test("deleteAll on an empty focus returns 0", () => {
    assert.equal(Emdb.openInMemory().focus("nothing").deleteAll(), 0);
  });

  test("keys inserted with dots directly belong to the group", () => {
    const db = Emdb.openInMemory();
    db.insert("literal.dot", "v");
    assert.deepEqual(entriesAsStrings(db.group("literal")), [["literal.dot", "v"]]);
  });

  test("focus setWithTtl and sweepExpired interoperate", () => {
    const db = memDb(new FakeClock());
    const s = db.focus("session");
    s.setWithTtl("a", "1", Ttl.after(0));
    s.setWithTtl("b", "2", Ttl.never());
    assert.equal(db.get("session.a"), undefined);
    assert.equal(str(db.get("session.b")), "2");
    assert.equal(db.sweepExpired(), 1);
  });

  test("group skips the bare prefix and sibling prefixes (product vs products.x)", () => {
    const db = Emdb.openInMemory();
    for (const k of [
      "product",
      "products.x",
      "product.name",
      "product.a.b",
      "product/",
      "product-",
      "producta",
      "produc",
    ]) {
      db.insert(k, k);
    }
    assert.deepEqual(
      entriesAsStrings(db.group("product")).map(([k]) => k),
      ["product.a.b", "product.name"],
    );
  });

  test("focus paths are equivalent however they are spelled", () => {
    const db = Emdb.openInMemory();
    db.focus("a").set("b.c", "1");
    assert.equal(str(db.focus("a.b").get("c")), "1");
    assert.equal(str(db.focus("a").focus("b").get("c")), "1");
    assert.equal(db.focus("a").focus("b").containsKey("c"), true);
  });

  test("deleteAll on a nested focus deletes its keys only", () => {
    const db = Emdb.openInMemory();
    for (const k of ["product.details.a", "product.details.b", "product.name", "product.detailsX"])
      db.insert(k, "v");
    assert.equal(db.focus("product").focus("details").deleteAll(), 2);
    assert.deepEqual([...db.keys()].map(String), ["product.detailsX", "product.name"]);
    assertConsistent(db);
  });

  test("Focus methods: set, get, remove, containsKey, iter with full keys", () => {
    const db = Emdb.openInMemory();
    const f = db.focus("user");
    assert.equal(f.prefix, "user");
    f.set("2", "b");
    f.set("1", "a");
    assert.deepEqual(entriesAsStrings(f.iter()), [
      ["user.1", "a"],
      ["user.2", "b"],
    ]);
    assert.equal(str(f.remove("1")), "a");
    assert.equal(f.containsKey("1"), false);
    assert.equal(str(f.get("2")), "b");
  });
});

describe("path validation is the same everywhere", () => {
  const bad = ["", ".a", "a.", "a..b", ".", ".."];
  test("empty prefixes and empty segments are EMDB_INVALID_PATH in every entry point", () => {
    const db = Emdb.openInMemory();
    db.insert("a.b", "keep");
    const f = db.focus("ok");
    for (const p of bad) {
      assert.throws(() => db.focus(p), invalidPath, `focus(${JSON.stringify(p)})`);
      assert.throws(() => db.group(p), invalidPath, `group(${JSON.stringify(p)})`);
      assert.throws(() => db.deleteGroup(p), invalidPath, `deleteGroup(${JSON.stringify(p)})`);
      assert.throws(() => f.set(p, "v"), invalidPath, `focus.set(${JSON.stringify(p)})`);
      assert.throws(() => f.setWithTtl(p, "v", Ttl.never()), invalidPath);
      assert.throws(() => f.get(p), invalidPath);
      assert.throws(() => f.remove(p), invalidPath);
      assert.throws(() => f.containsKey(p), invalidPath);
      assert.throws(() => f.focus(p), invalidPath);
    }
    assert.throws(() => db.group(5 as never), TypeError);
    assert.throws(() => f.set(Buffer.from("x") as never, "v"), TypeError);
    assert.deepEqual([...db.keys()].map(String), ["a.b"]);
  });

  test("a focus prefix too long for any key is refused at focus(), as group() refuses it", () => {
    const db = Emdb.openInMemory();
    const long = "p".repeat(MAX_KEY_SIZE + 1);
    const tooLarge = (e: unknown) => e instanceof EmdbError && e.code === "EMDB_KEY_TOO_LARGE";
    assert.throws(() => db.group(long), tooLarge);
    assert.throws(() => db.focus(long), tooLarge);
    assert.throws(() => db.focus("p").focus("q".repeat(MAX_KEY_SIZE)), tooLarge);
    db.focus("p".repeat(MAX_KEY_SIZE - 2)).set("k", "v");
    assert.equal(db.len(), 1);
  });

  test("a focus handle's focus() after close() is EMDB_CLOSED, as every other call", () => {
    const db = Emdb.openInMemory();
    const f = db.focus("a");
    db.close();
    const closed = (e: unknown) => e instanceof EmdbError && e.code === "EMDB_CLOSED";
    assert.throws(() => f.focus("b"), closed);
    assert.throws(() => f.get("b"), closed);
  });
});

describe("group cost", () => {
  test("a group scan visits the group's keys, not the whole database", () => {
    const db = Emdb.openInMemory();
    for (let i = 0; i < 50_000; i++) db.insert(`bulk.${String(i).padStart(6, "0")}`, "v");
    for (let i = 0; i < 10; i++) db.insert(`target.${i}`, "v");
    const live = Core.prototype.live;
    let visits = 0;
    Core.prototype.live = function (this: Core, k: string, h: number) {
      visits++;
      return live.call(this, k, h);
    };
    try {
      assert.equal([...db.group("target")].length, 10);
      assert.equal(db.deleteGroup("target"), 10);
    } finally {
      Core.prototype.live = live;
    }
    assert.ok(visits <= 20, `visited ${visits} entries for a 10-key group`);
    assertConsistent(db);
  });

  test("deleteGroup is one atomic batch with one transaction id", () => {
    const db = Emdb.openInMemory();
    for (let i = 0; i < 5; i++) db.insert(`g.${i}`, "v");
    const before = db.stats().lastTxId;
    assert.equal(db.deleteGroup("g"), 5);
    assert.equal(db.stats().lastTxId, before + 1);
    assert.equal(db.len(), 0);
  });

  test("deleteGroup removes expired members too but counts only live ones", () => {
    const clock = new FakeClock();
    const db = memDb(clock);
    db.insertWithTtl("g.a", "1", Ttl.after(1));
    db.insert("g.b", "2");
    clock.advance(1);
    assert.equal(db.deleteGroup("g"), 1);
    assert.equal(db.stats().expiringKeys, 0);
    assertConsistent(db);
  });
});
