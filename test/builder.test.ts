import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, test } from "node:test";
import { Emdb, EmdbError, everyN, FlushPolicy, manual, onEachWrite } from "../src/index.js";

const invalidConfig = (e: unknown) => e instanceof EmdbError && e.code === "EMDB_INVALID_CONFIG";

describe("flush policies", () => {
  test("are exported as functions and as FlushPolicy.*", () => {
    assert.deepEqual(onEachWrite(), { kind: "onEachWrite" });
    assert.deepEqual(manual(), { kind: "manual" });
    assert.deepEqual(everyN(64), { kind: "everyN", n: 64 });
    assert.deepEqual(FlushPolicy.onEachWrite(), onEachWrite());
    assert.deepEqual(FlushPolicy.everyN(3), everyN(3));
    assert.deepEqual(FlushPolicy.manual(), manual());
  });

  test("everyN(0), negative, fractional or non-number n is EMDB_INVALID_CONFIG", () => {
    for (const n of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, "4" as unknown as number]) {
      assert.throws(() => everyN(n), invalidConfig, `everyN(${String(n)})`);
      assert.throws(() => FlushPolicy.everyN(n), invalidConfig);
    }
  });

  test("the builder accepts every policy and rejects anything else", () => {
    for (const p of [onEachWrite(), everyN(1), everyN(64), manual()]) {
      const db = Emdb.builder().flushPolicy(p).build();
      assert.equal(db.stats().flushPolicy, p.kind);
      db.close();
    }
    assert.throws(
      () => Emdb.builder().flushPolicy({ kind: "everyN", n: 0 } as never),
      invalidConfig,
    );
    assert.throws(() => Emdb.builder().flushPolicy("manual" as never), invalidConfig);
  });
});

describe("builder options", () => {
  test("defaultTtl must be a positive integer", () => {
    for (const ms of [0, -5, 1.5, Number.NaN]) {
      assert.throws(() => Emdb.builder().defaultTtl(ms), invalidConfig, `defaultTtl(${ms})`);
    }
    assert.throws(() => Emdb.builder().defaultTtl("10" as never), TypeError);
    // Past the latest Date: no insert could ever succeed.
    assert.throws(() => Emdb.builder().defaultTtl(2 ** 53 - 1), invalidConfig);
  });

  test("clock must be a function, useMmap a boolean, path a non-empty string", () => {
    assert.throws(() => Emdb.builder().clock(5 as never), TypeError);
    assert.throws(() => Emdb.builder().useMmap("yes" as never), TypeError);
    assert.throws(() => Emdb.builder().path(5 as never), TypeError);
    assert.throws(() => Emdb.builder().path(""), invalidConfig);
    assert.throws(() => Emdb.builder().path("a\0b"), invalidConfig);
  });

  test("a builder without a path builds an in-memory database", () => {
    const db = Emdb.builder().useMmap(true).build();
    assert.equal(db.stats().storage, "memory");
    assert.equal(db.path(), undefined);
  });

  test("a builder with a path builds a file-backed database", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-builder-"));
    try {
      const db = Emdb.builder().path(path.join(dir, "x.emdb")).build();
      assert.equal(db.stats().storage, "file");
      db.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("pageSize, cacheSize and checkpointThreshold are validated", () => {
    for (const bad of [0, 256, 1000, 131072])
      assert.throws(() => Emdb.builder().pageSize(bad), invalidConfig);
    assert.throws(() => Emdb.builder().cacheSize(1), invalidConfig);
    assert.throws(() => Emdb.builder().checkpointThreshold(0), invalidConfig);
    assert.throws(() => Emdb.builder().onProgress(5 as never), TypeError);
    // A wrong type is a TypeError, as for every option.
    assert.throws(() => Emdb.builder().pageSize("4096" as never), TypeError);
    assert.throws(() => Emdb.builder().cacheSize("20" as never), TypeError);
    assert.throws(() => Emdb.builder().checkpointThreshold(null as never), TypeError);
  });
});
