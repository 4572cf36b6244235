import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, test } from "node:test";
import { Emdb, EmdbError, type Transaction, Ttl } from "../src/index.js";
import { assertConsistent, FakeClock, memDb, str } from "./helpers/db.js";
import { withPrng } from "./helpers/prng.js";

describe("transactions (emdb-rs transactions.rs)", () => {
  test("a commit inserts every key", () => {
    const db = Emdb.openInMemory();
    db.transaction((tx) => {
      tx.insert("a", "1");
      tx.insert("b", "2");
      tx.insert("c", "3");
    });
    assert.deepEqual([...db.keys()].map(String), ["a", "b", "c"]);
  });

  test("throwing EMDB_TRANSACTION_ABORTED rolls back and is rethrown unchanged", () => {
    const db = Emdb.openInMemory();
    const abort = new EmdbError("EMDB_TRANSACTION_ABORTED", "changed my mind");
    assert.throws(
      () =>
        db.transaction((tx) => {
          tx.insert("a", "1");
          tx.insert("b", "2");
          throw abort;
        }),
      (e: unknown) => e === abort,
    );
    assert.equal(db.len(), 0);
  });

  test("any thrown value rolls back and is rethrown as the same value", () => {
    const db = Emdb.openInMemory();
    db.insert("k", "before");
    const thrown = { not: "an error" };
    assert.throws(
      () =>
        db.transaction((tx) => {
          tx.insert("k", "after");
          tx.remove("k");
          throw thrown;
        }),
      (e: unknown) => e === thrown,
    );
    assert.equal(str(db.get("k")), "before");
    assertConsistent(db);
  });

  test("reads see the transaction's own writes", () => {
    const db = Emdb.openInMemory();
    db.transaction((tx) => {
      assert.equal(tx.get("a"), undefined);
      tx.insert("a", "1");
      assert.equal(str(tx.get("a")), "1");
      assert.equal(tx.containsKey("a"), true);
      assert.equal(db.get("a"), undefined, "not visible outside before commit");
    });
    assert.equal(str(db.get("a")), "1");
  });

  test("remove then get inside a transaction returns undefined", () => {
    const db = Emdb.openInMemory();
    db.insert("k", "v");
    db.transaction((tx) => {
      assert.equal(str(tx.remove("k")), "v");
      assert.equal(tx.get("k"), undefined);
      assert.equal(tx.containsKey("k"), false);
      assert.equal(tx.remove("k"), undefined);
    });
    assert.equal(db.get("k"), undefined);
    assertConsistent(db);
  });

  test("an empty transaction commits and uses no transaction id", () => {
    const db = Emdb.openInMemory();
    assert.equal(
      db.transaction(() => 42),
      42,
    );
    assert.equal(db.len(), 0);
    assert.equal(db.stats().lastTxId, 0);
  });

  test("transaction ids increase by one per committed transaction", () => {
    const db = Emdb.openInMemory();
    for (let i = 1; i <= 100; i++) {
      db.transaction((tx) => tx.insert(`k${i}`, "v"));
      assert.equal(db.stats().lastTxId, i);
    }
    try {
      db.transaction((tx) => {
        tx.insert("x", "y");
        throw new Error("no");
      });
    } catch {}
    assert.equal(db.stats().lastTxId, 100, "a rolled-back transaction uses no id");
  });
});

describe("transaction handles", () => {
  test("the callback's return value is returned", () => {
    const db = Emdb.openInMemory();
    const out = db.transaction((tx) => {
      tx.insert("a", "1");
      return { ok: true };
    });
    assert.deepEqual(out, { ok: true });
  });

  test("a handle used after its callback returned throws EMDB_TRANSACTION_CLOSED", () => {
    const db = Emdb.openInMemory();
    let leaked: Transaction | undefined;
    db.transaction((tx) => {
      leaked = tx;
    });
    assert.throws(() => leaked!.insert("a", "1"), { code: "EMDB_TRANSACTION_CLOSED" });
    assert.throws(() => leaked!.get("a"), { code: "EMDB_TRANSACTION_CLOSED" });
    assert.equal(db.len(), 0);
  });

  test("an async callback is refused and nothing it staged is applied", async () => {
    const db = Emdb.openInMemory();
    let later: Promise<void> | undefined;
    assert.throws(
      () =>
        db.transaction(async (tx) => {
          tx.insert("a", "1");
          later = Promise.resolve();
          await later;
          tx.insert("b", "2"); // throws EMDB_TRANSACTION_CLOSED inside the discarded promise
        }),
      TypeError,
    );
    await later;
    await new Promise((r) => setImmediate(r));
    assert.equal(db.len(), 0);
  });

  test("a result whose `then` getter throws rolls back and closes the handle", () => {
    const db = Emdb.openInMemory();
    let handle: Transaction | undefined;
    const result = {
      // biome-ignore lint/suspicious/noThenProperty: the test needs a `then` that throws
      get then(): never {
        throw new Error("then getter");
      },
    };
    assert.throws(
      () =>
        db.transaction((tx) => {
          handle = tx;
          tx.insert("k", "v");
          return result;
        }),
      /then getter/,
    );
    assert.equal(db.get("k"), undefined);
    assert.throws(() => handle!.insert("j", "v"), { code: "EMDB_TRANSACTION_CLOSED" });
    assertConsistent(db);
  });

  test("inside the callback, writes through the database and nested transactions are EMDB_BUSY; reads work", () => {
    // Such a write would not be part of the transaction and would survive its rollback.
    const db = Emdb.openInMemory();
    db.insert("a.x", "old");
    db.insertWithTtl("t", "v", Ttl.after(60_000));
    const busy = (e: unknown) => e instanceof EmdbError && e.code === "EMDB_BUSY";
    const writes: [string, () => unknown][] = [
      ["insert", () => db.insert("direct", "1")],
      ["insertWithTtl", () => db.insertWithTtl("direct", "1", Ttl.after(5))],
      ["remove", () => db.remove("a.x")],
      ["clear", () => db.clear()],
      ["deleteGroup", () => db.deleteGroup("a")],
      ["persist", () => db.persist("t")],
      ["focus().set", () => db.focus("a").set("y", "1")],
      ["transaction", () => db.transaction((inner) => inner.insert("inner", "2"))],
    ];
    const result = db.transaction((tx) => {
      tx.insert("outer", "1");
      for (const [name, write] of writes) assert.throws(write, busy, name);
      assert.equal(str(db.get("a.x")), "old", "reads through the database work");
      assert.equal(db.get("outer"), undefined, "and see what is committed");
      return db.len();
    });
    assert.equal(result, 2);
    assert.deepEqual([...db.keys()].map(String), ["a.x", "outer", "t"]);
    // After the callback, writes go through again, thrown callbacks included.
    assert.throws(() =>
      db.transaction(() => {
        throw new Error("no");
      }),
    );
    db.insert("direct", "1");
    assert.equal(str(db.get("direct")), "1");
    assertConsistent(db);
  });

  test("insertWithTtl in a transaction uses the injected clock", () => {
    const clock = new FakeClock();
    const db = memDb(clock);
    db.transaction((tx) => {
      tx.insertWithTtl("t", "v", Ttl.after(10));
      tx.insertWithTtl("gone", "v", Ttl.after(0));
      assert.equal(tx.get("gone"), undefined);
    });
    assert.equal(db.ttl("t"), 10);
    assert.equal(db.get("gone"), undefined);
    clock.advance(10);
    assert.equal(db.get("t"), undefined);
    assertConsistent(db);
  });

  test("bad input inside a transaction throws and rolls back everything", () => {
    const db = Emdb.openInMemory();
    assert.throws(
      () =>
        db.transaction((tx) => {
          tx.insert("good", "1");
          tx.insert(42 as never, "2");
        }),
      TypeError,
    );
    assert.equal(db.len(), 0);
  });
});

/** The oracle test of emdb-rs: an LCG drives 512 steps over 32 keys, compared with a Map. */
test("a deterministic LCG-driven operation sequence matches the oracle", () => {
  const db = Emdb.openInMemory();
  const oracle = new Map<string, string>();
  const MASK = (1n << 64n) - 1n;
  let state = 0x123456789abcdef0n;
  const next = (): bigint => {
    state = (state * 6364136223846793005n + 1n) & MASK;
    return state;
  };
  for (let step = 0; step < 512; step++) {
    const r = next();
    const op = Number((r >> 33n) % 4n);
    const key = `key-${Number((r >> 40n) % 32n)}`;
    const value = `value-${step}`;
    switch (op) {
      case 0:
        db.insert(key, value);
        oracle.set(key, value);
        break;
      case 1:
        assert.equal(str(db.remove(key)), oracle.get(key));
        oracle.delete(key);
        break;
      case 2:
        db.transaction((tx) => tx.insert(key, value));
        oracle.set(key, value);
        break;
      default:
        db.transaction((tx) => tx.remove(key));
        oracle.delete(key);
    }
  }
  assert.equal(db.len(), oracle.size);
  const expected = [...oracle.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  assert.deepEqual(
    [...db.iter()].map(([k, v]) => [String(k), String(v)]),
    expected,
  );
  assertConsistent(db);
});

describe("large transactions match a Map model", () => {
  // A transaction into an empty keyspace hands its staging Maps over as the shards: its
  // removals (of keys inserted earlier in it, or never there) are of absent keys and are
  // pruned first. A later one of 1024+ writes adds its new keys to the ordered view in one
  // sort and merge. Both paths, with TTLs, overwrites and removals, in memory and on disk;
  // an empty keyspace with a removal left staged is core.test.ts's case.
  for (const storage of ["memory", "file"] as const) {
    test(`${storage}: first load with and without removals, then a large mixed batch`, () => {
      withPrng((rng) => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-bigtx-"));
        try {
          for (const removals of [false, true]) {
            const clock = new FakeClock();
            const b = Emdb.builder().clock(clock.fn);
            if (storage === "file") b.path(path.join(dir, `db-${removals}.emdb`)).pageSize(512);
            const db = b.build();
            const model = new Map<string, { v: string; at: number }>();
            const key = () => `k${rng.int(6000)}`;
            const round = (n: number, removeShare: number) => {
              db.transaction((tx) => {
                for (let i = 0; i < n; i++) {
                  const k = key();
                  if (rng.chance(removeShare)) {
                    tx.remove(k);
                    model.delete(k);
                  } else if (rng.chance(0.2)) {
                    const ms = 1 + rng.int(1000);
                    tx.insertWithTtl(k, `t${i}`, Ttl.after(ms));
                    model.set(k, { v: `t${i}`, at: clock.now + ms });
                  } else {
                    tx.insert(k, `v${i}`);
                    model.set(k, { v: `v${i}`, at: Infinity });
                  }
                }
              });
            };
            const compare = (stage: string) => {
              const live = [...model]
                .filter(([, e]) => e.at > clock.now)
                .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
                .map(([k, e]) => [k, e.v]);
              assert.deepEqual(
                [...db.iter()].map(([k, v]) => [String(k), String(v)]),
                live,
                stage,
              );
              assert.equal(db.len(), live.length, stage);
              for (const [k, v] of live.slice(0, 50)) assert.equal(str(db.get(k!)), v, stage);
              assertConsistent(db);
            };
            round(4000, removals ? 0.1 : 0);
            compare("first load");
            round(3000, 0.2);
            compare("large mixed batch");
            clock.advance(500);
            compare("half the TTLs expired");
            clock.advance(600);
            compare("every TTL expired");
            db.close();
          }
        } finally {
          fs.rmSync(dir, { recursive: true, force: true });
        }
      });
    });
  }
});
