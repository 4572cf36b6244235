import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as v8 from "node:v8";
import * as vm from "node:vm";
import { Emdb, EmdbError, MAX_KEY_SIZE, MAX_VALUE_SIZE, Ttl } from "../src/index.js";
import { assertConsistent, str } from "./helpers/db.js";

describe("basic operations (emdb-rs basic.rs)", () => {
  test("open_in_memory returns an empty instance", () => {
    const db = Emdb.openInMemory();
    assert.equal(db.len(), 0);
    assert.equal(db.isEmpty(), true);
    assert.equal(db.path(), undefined);
    assertConsistent(db);
  });

  test("insert, get, remove round trip", () => {
    const db = Emdb.openInMemory();
    db.insert("k", "v");
    assert.equal(str(db.get("k")), "v");
    assert.equal(db.containsKey("k"), true);
    assert.equal(str(db.remove("k")), "v");
    assert.equal(db.containsKey("k"), false);
    assert.equal(db.get("k"), undefined);
    assert.equal(db.remove("k"), undefined);
    assertConsistent(db);
  });

  test("the empty key is allowed", () => {
    const db = Emdb.openInMemory();
    db.insert("", "empty");
    assert.equal(str(db.get("")), "empty");
    assert.equal(str(db.get(new Uint8Array(0))), "empty");
    assert.deepEqual([...db.keys()], [Buffer.alloc(0)]);
    assertConsistent(db);
  });

  test("insert overwrites and len counts keys once", () => {
    const db = Emdb.openInMemory();
    db.insert("a", "1");
    db.insert("a", "2");
    assert.equal(db.len(), 1);
    assert.equal(str(db.get("a")), "2");
    assertConsistent(db);
  });

  test("string keys are UTF-8 and equal to their bytes", () => {
    const db = Emdb.openInMemory();
    db.insert("héllo ✓ 𝄞", "x");
    assert.equal(str(db.get(Buffer.from("héllo ✓ 𝄞", "utf8"))), "x");
    assert.deepEqual([...db.keys()][0], Buffer.from("héllo ✓ 𝄞", "utf8"));
    assertConsistent(db);
  });

  test("binary keys with every byte value round-trip", () => {
    const db = Emdb.openInMemory();
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    db.insert(all, "all bytes");
    db.insert(new Uint8Array([0]), "zero");
    db.insert(new Uint8Array([0xff, 0xff]), "ff");
    assert.equal(str(db.get(all)), "all bytes");
    assert.equal(str(db.get(Buffer.from([0]))), "zero");
    assert.equal(str(db.get(Buffer.from([0xff, 0xff]))), "ff");
    assertConsistent(db);
  });

  test("a Uint8Array view with an offset is read as its own bytes", () => {
    const db = Emdb.openInMemory();
    const backing = new Uint8Array([9, 9, 1, 2, 3, 9]);
    db.insert(backing.subarray(2, 5), backing.subarray(0, 2));
    assert.deepEqual(db.get(Buffer.from([1, 2, 3])), Buffer.from([9, 9]));
  });

  test("values are copied in and out: callers cannot change stored data", () => {
    const db = Emdb.openInMemory();
    const v = Buffer.from("abc");
    db.insert("k", v);
    v[0] = 0x7a;
    const out = db.get("k")!;
    assert.equal(out.toString(), "abc");
    out[1] = 0x7a;
    assert.equal(str(db.get("k")), "abc");
    const [[, iterValue]] = [...db.iter()] as [[Buffer, Buffer]];
    iterValue[2] = 0x7a;
    assert.equal(str(db.get("k")), "abc");
  });

  test("a stored string key or value does not keep the larger string it was cut from alive", () => {
    // V8 keeps a substring of 13 chars or more as a view of its parent: stored as it is, a
    // key or value sliced from a file's text would pin the whole text in memory.
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc") as () => void;
    const db = Emdb.openInMemory();
    const MB = 2 ** 20;
    const heap = () => {
      gc();
      return process.memoryUsage().heapUsed / MB;
    };
    for (const path of ["insert", "insertWithTtl", "transaction"] as const) {
      const before = heap();
      // Only the database may hold the slices once this returns.
      ((): void => {
        const text = `${path}:`.padEnd(64 * MB, "x");
        const key = text.slice(0, 13);
        const value = text.slice(1000, 1013);
        if (path === "insert") db.insert(key, value);
        else if (path === "insertWithTtl") db.insertWithTtl(key, value, Ttl.after(60_000));
        else db.transaction((tx) => tx.insert(key, value));
      })();
      assert.ok(heap() - before < 8, `${path}: the 64 MiB text was freed`);
      assert.equal(str(db.get(`${path}:${"x".repeat(13)}`.slice(0, 13))), "x".repeat(13));
    }
    assert.equal(db.len(), 3);
  });

  test("empty values are stored and returned as empty Buffers", () => {
    const db = Emdb.openInMemory();
    db.insert("a", "");
    db.insert("b", new Uint8Array(0));
    assert.deepEqual(db.get("a"), Buffer.alloc(0));
    assert.deepEqual(db.get("b"), Buffer.alloc(0));
    assert.equal(db.containsKey("a"), true);
  });

  test("iteration and keys() are in ascending unsigned byte order", () => {
    const db = Emdb.openInMemory();
    const keys = ["b", "a", "ab", "", "\u00ff", "Z", "a\u0000", "é"];
    for (const k of keys) db.insert(k, k);
    const expected = keys.map((k) => Buffer.from(k, "utf8")).sort(Buffer.compare);
    assert.deepEqual([...db.keys()], expected);
    assert.deepEqual(
      [...db.iter()].map(([k]) => k),
      expected,
    );
    assertConsistent(db);
  });
});

describe("bad input is refused and changes nothing", () => {
  test("wrong key and value types are TypeErrors", () => {
    const db = Emdb.openInMemory();
    db.insert("keep", "1");
    for (const bad of [1, null, undefined, {}, [], true, Symbol("x"), new ArrayBuffer(2)]) {
      assert.throws(() => db.insert(bad as never, "v"), TypeError);
      assert.throws(() => db.get(bad as never), TypeError);
      assert.throws(() => db.remove(bad as never), TypeError);
      assert.throws(() => db.insert("k", bad as never), TypeError);
    }
    assert.throws(() => (db.insert as (k: string) => void)("k"), TypeError);
    assert.equal(db.len(), 1);
    assert.equal(db.get("k"), undefined);
    assertConsistent(db);
  });

  test("keys up to MAX_KEY_SIZE are accepted, longer ones are EMDB_KEY_TOO_LARGE", () => {
    const db = Emdb.openInMemory();
    assert.ok(MAX_KEY_SIZE >= 1024);
    db.insert("k".repeat(MAX_KEY_SIZE), "ok");
    db.insert(Buffer.alloc(MAX_KEY_SIZE, 1), "ok");
    const tooLong = "k".repeat(MAX_KEY_SIZE + 1);
    assert.throws(
      () => db.insert(tooLong, "v"),
      (e: unknown) => e instanceof EmdbError && e.code === "EMDB_KEY_TOO_LARGE",
    );
    assert.throws(() => db.insert(Buffer.alloc(MAX_KEY_SIZE + 1), "v"), {
      code: "EMDB_KEY_TOO_LARGE",
    });
    // Multi-byte characters count as their UTF-8 bytes.
    assert.throws(() => db.insert("é".repeat(MAX_KEY_SIZE / 2 + 1), "v"), {
      code: "EMDB_KEY_TOO_LARGE",
    });
    assert.throws(() => db.transaction((tx) => tx.insert(tooLong, "v")), {
      code: "EMDB_KEY_TOO_LARGE",
    });
    assert.equal(db.len(), 2);
    assertConsistent(db);
  });

  test("values over MAX_VALUE_SIZE are EMDB_VALUE_TOO_LARGE", () => {
    const db = Emdb.openInMemory();
    const big = new Uint8Array(MAX_VALUE_SIZE + 1);
    assert.throws(() => db.insert("k", big), { code: "EMDB_VALUE_TOO_LARGE" });
    assert.equal(db.len(), 0);
  });
});

describe("close", () => {
  test("every method throws EMDB_CLOSED after close; closing twice is harmless", () => {
    const db = Emdb.openInMemory();
    db.insert("a", "1");
    const it = db.iter();
    db.close();
    db.close();
    db[Symbol.dispose]();
    assert.equal(db.closed, true);
    const calls: [string, () => unknown][] = [
      ["get", () => db.get("a")],
      ["insert", () => db.insert("a", "1")],
      ["insertWithTtl", () => db.insertWithTtl("a", "1", undefined as never)],
      ["remove", () => db.remove("a")],
      ["containsKey", () => db.containsKey("a")],
      ["len", () => db.len()],
      ["isEmpty", () => db.isEmpty()],
      ["clear", () => db.clear()],
      ["iter", () => db.iter()],
      ["keys", () => db.keys()],
      ["range", () => db.range({})],
      ["transaction", () => db.transaction(() => 1)],
      ["ttl", () => db.ttl("a")],
      ["expiresAt", () => db.expiresAt("a")],
      ["persist", () => db.persist("a")],
      ["sweepExpired", () => db.sweepExpired()],
      ["focus", () => db.focus("a")],
      ["group", () => db.group("a")],
      ["deleteGroup", () => db.deleteGroup("a")],
      ["flush", () => db.flush()],
      ["compact", () => db.compact()],
      ["migrate", () => db.migrate()],
      ["stats", () => db.stats()],
      ["path", () => db.path()],
      ["check", () => db.check()],
      ["iterator.next", () => it.next()],
    ];
    for (const [name, call] of calls) {
      assert.throws(call, { code: "EMDB_CLOSED" }, `${name} after close`);
    }
  });

  test("a focus handle and a transaction handle fail with EMDB_CLOSED after close", () => {
    const db = Emdb.openInMemory();
    const f = db.focus("a");
    db.close();
    assert.throws(() => f.set("b", "1"), { code: "EMDB_CLOSED" });
    assert.throws(() => f.get("b"), { code: "EMDB_CLOSED" });
  });

  test("Symbol.dispose closes the database", () => {
    const db = Emdb.openInMemory();
    db[Symbol.dispose]();
    assert.throws(() => db.len(), { code: "EMDB_CLOSED" });
  });
});
