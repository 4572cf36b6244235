/**
 * compact(): it shrinks the file and keeps the content, reports progress, refuses writes
 * from its own progress listener (EMDB_BUSY), survives a failure before its rename, and
 * leaves no stray file. Crashes during compaction are in crash.test.ts.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, test } from "node:test";
import { Emdb, isEmdbError, onEachWrite, Ttl } from "../src/index.js";
import { FakeClock } from "./helpers/db.js";
import {
  insertProgressKeys,
  openFile,
  openWatched,
  PROGRESS_KEYS,
  progressOfKeys,
  scratchDir,
} from "./helpers/storage.js";

const { root, freshPath } = scratchDir("compaction");

describe("compaction", () => {
  test("compact shrinks the file and keeps the content", () => {
    const p = freshPath();
    let db = openFile(p);
    for (let i = 0; i < 5000; i++) db.insert(`k${i}`, "x".repeat(45));
    db.flush();
    for (let i = 0; i < 4000; i++) db.remove(`k${i}`);
    for (let i = 4000; i < 4100; i++) db.insert(`k${i}`, "new");
    db.flush();
    const before = fs.statSync(p).size;
    db.compact();
    assert.ok(fs.statSync(p).size < before, `${fs.statSync(p).size} < ${before}`);
    db.close();
    db = openFile(p);
    assert.equal(db.len(), 1000);
    assert.equal(db.get("k4050")?.toString(), "new");
    assert.deepEqual(db.check(), []);
    db.close();
  });

  test("compact() reports its progress to the builder's onProgress", () => {
    const { db, seen } = openWatched(freshPath());
    insertProgressKeys(db);
    assert.deepEqual(seen, [], "nothing to report before the compaction");
    db.compact();
    assert.deepEqual(seen, progressOfKeys("compact"));
    assert.equal(db.len(), PROGRESS_KEYS);
    assert.deepEqual(db.check(), []);
    db.close();
  });

  test("compact()'s progress listener may read but not write: EMDB_BUSY, and nothing reaches the old WAL", () => {
    // A write made while compact() rewrites the file went to the WAL being replaced: a crash
    // right after compact() returned lost it though onEachWrite() had acknowledged it.
    const p = freshPath();
    const clock = new FakeClock();
    const attempts: [string, () => unknown][] = [];
    const outcomes = new Map<string, string>();
    let db: Emdb | undefined;
    let reads = "";
    let swept = -1;
    let walDuring = -1;
    db = Emdb.builder()
      .path(p)
      .clock(clock.fn)
      .flushPolicy(onEachWrite())
      .onProgress((e) => {
        if (e.phase !== "compact" || e.done !== 65_536 || db === undefined) return;
        const d = db;
        reads = `${String(d.get("k1"))} ${[...d.range({ limit: 2 })].length}`;
        walDuring = Number(d.stats().disk?.walBytes);
        clock.advance(2_000);
        swept = d.sweepExpired();
        attempts.push(
          ["insert", () => d.insert("during", "x")],
          ["insertWithTtl", () => d.insertWithTtl("during", "x", Ttl.after(10))],
          ["remove", () => d.remove("k1")],
          ["persist", () => d.persist("long")],
          ["transaction", () => d.transaction((tx) => tx.insert("during", "x"))],
          ["deleteGroup", () => d.deleteGroup("g")],
          ["focus", () => d.focus("g").set("b", "x")],
          ["clear", () => d.clear()],
          ["flush", () => d.flush()],
          ["compact", () => d.compact()],
          ["close", () => d.close()],
        );
        for (const [name, fn] of attempts) {
          try {
            fn();
            outcomes.set(name, "accepted");
          } catch (err) {
            outcomes.set(name, isEmdbError(err) ? err.code : String(err));
          }
        }
        assert.equal(Number(d.stats().disk?.walBytes), walDuring, "nothing was logged meanwhile");
      })
      .build();
    const n = PROGRESS_KEYS;
    insertProgressKeys(db, (tx) => {
      tx.insert("g.a", "grouped");
      tx.insertWithTtl("short", "lived", Ttl.after(1_000));
      tx.insertWithTtl("long", "lived", Ttl.after(1_000_000));
    });
    db.compact();
    assert.equal(reads, "v 2", "reads work from the listener");
    assert.equal(swept, 1, "an expiry sweep runs, unlogged");
    assert.deepEqual(
      Object.fromEntries(outcomes),
      Object.fromEntries(attempts.map(([name]) => [name, "EMDB_BUSY"])),
    );
    assert.equal(db.closed, false);
    assert.equal(db.len(), n + 2);
    assert.equal(db.get("during"), undefined);
    assert.deepEqual(db.check(), []);
    db.insert("after", "fine");
    db.close();
    db = openFile(p, onEachWrite(), clock);
    assert.equal(db.len(), n + 3);
    assert.equal(db.get("short"), undefined);
    assert.deepEqual(db.check(), []);
    db.close();
  });

  test("a compaction that fails before its rename leaves the database usable and no temp file", () => {
    const p = freshPath();
    let fail = true;
    const db = Emdb.builder()
      .path(p)
      .onProgress(() => {
        if (fail) throw new Error("listener bug");
      })
      .build();
    const n = PROGRESS_KEYS;
    insertProgressKeys(db);
    assert.throws(() => db.compact(), /listener bug/);
    assert.equal(fs.existsSync(`${p}.compact.tmp`), false, "the temp file is removed");
    db.insert("after", "works");
    assert.equal(db.len(), n + 1);
    assert.deepEqual(db.check(), []);
    fail = false;
    db.compact();
    db.close();
    const re = openFile(p);
    assert.equal(re.len(), n + 1);
    assert.equal(String(re.get("after")), "works");
    assert.deepEqual(re.check(), []);
    re.close();
  });

  test("creating, writing and compacting leave only the page file, its WAL and its lock", () => {
    const dir = fs.mkdtempSync(path.join(root, "files-"));
    const p = path.join(dir, "db.emdb");
    const db = openFile(p);
    db.insert("k", "v");
    db.flush();
    db.compact();
    assert.deepEqual(db.check(), []);
    db.close();
    assert.deepEqual(fs.readdirSync(dir).sort(), ["db.emdb", "db.emdb.lock", "db.emdb.wal"]);
  });
});
