/**
 * File-backed databases: reopen round trips under every flush policy, with TTLs, overflow
 * values, empty and binary keys, 100k records; mmap and pread reads; locking; stats.
 * Every test ends with the consistency checker.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import type { Core } from "../src/core.js";
import {
  Emdb,
  everyN,
  type FlushPolicy,
  isEmdbError,
  manual,
  onEachWrite,
  Ttl,
} from "../src/index.js";
import { hashInternalKey } from "../src/keys.js";
import { BATCH_RECORD_SIZE, deleteRecordSize } from "../src/wal/record.js";
import { FakeClock } from "./helpers/db.js";
import { EMDB_RS_FIXTURES } from "./helpers/emdb-rs-fixtures.js";
import { Prng, testSeed, withPrng, withSeed } from "./helpers/prng.js";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-storage-"));
after(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshPath = () => path.join(root, `db${n++}.emdb`);

function open(
  p: string,
  policy: FlushPolicy = everyN(64),
  clock?: FakeClock,
  pageSize = 4096,
  mmap = false,
): Emdb {
  const b = Emdb.builder().path(p).flushPolicy(policy).pageSize(pageSize).useMmap(mmap);
  if (clock !== undefined) b.clock(clock.fn);
  return b.build();
}

function contents(db: Emdb): Map<string, string> {
  const m = new Map<string, string>();
  for (const [k, v] of db.iter()) m.set(k.toString("hex"), v.toString("hex"));
  return m;
}

describe("reopen round trips", () => {
  for (const [name, policy] of [
    ["onEachWrite", onEachWrite()],
    ["everyN(2)", everyN(2)],
    ["manual", manual()],
  ] as const) {
    test(`${name}: values, binary and empty keys, TTLs and overflow values survive close and reopen`, () => {
      const p = freshPath();
      const clock = new FakeClock();
      let db = open(p, policy, clock);
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
      db = open(p, policy, clock);
      before.delete(Buffer.from("gone").toString("hex"));
      assert.deepEqual(contents(db), before);
      assert.equal(db.ttl("ttl"), 990);
      assert.equal(db.get("gone"), undefined);
      assert.deepEqual(db.check(), []);
      db.close();
    });
  }

  test("100,000 records round-trip, through pread and through mmap", () => {
    const p = freshPath();
    let db = open(p, manual());
    for (let i = 0; i < 100_000; i++)
      db.insert(`key-${String(i).padStart(6, "0")}`, `value-${i}-payload`);
    db.flush();
    db.close();
    for (const mmap of [false, true]) {
      db = open(p, manual(), undefined, 4096, mmap);
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
    let db = open(p);
    for (let i = 0; i < 1000; i++) db.insert(`k${i}`, "v");
    db.flush();
    db.clear();
    db.insert("after", "clear");
    db.close();
    db = open(p);
    assert.deepEqual([...db.keys()].map(String), ["after"]);
    assert.deepEqual(db.check(), []);
    db.close();
  });

  test("expired entries are dropped at open and do not come back", () => {
    const p = freshPath();
    const clock = new FakeClock();
    let db = open(p, everyN(64), clock);
    db.insertWithTtl("t", "v", Ttl.after(5));
    db.flush();
    db.close();
    clock.advance(5);
    db = open(p, everyN(64), clock);
    assert.equal(db.len(), 0);
    db.close();
    clock.now -= 1_000; // even a clock that goes back does not revive it
    db = open(p, everyN(64), clock);
    assert.equal(db.get("t"), undefined);
    assert.deepEqual(db.check(), []);
    db.close();
  });

  test("compact shrinks the file and keeps the content", () => {
    const p = freshPath();
    let db = open(p);
    for (let i = 0; i < 5000; i++) db.insert(`k${i}`, "x".repeat(45));
    db.flush();
    for (let i = 0; i < 4000; i++) db.remove(`k${i}`);
    for (let i = 4000; i < 4100; i++) db.insert(`k${i}`, "new");
    db.flush();
    const before = fs.statSync(p).size;
    db.compact();
    assert.ok(fs.statSync(p).size < before, `${fs.statSync(p).size} < ${before}`);
    db.close();
    db = open(p);
    assert.equal(db.len(), 1000);
    assert.equal(db.get("k4050")?.toString(), "new");
    assert.deepEqual(db.check(), []);
    db.close();
  });

  test("stats report page and file sizes", () => {
    const p = freshPath();
    const db = open(p);
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
      let db = open(p, manual());
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
      db = open(p, manual());
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
    let db = open(p, onEachWrite());
    db.insert("big", big);
    db.insert("small", "s");
    db.close();
    db = open(p);
    assert.ok(db.get("big")!.equals(big));
    assert.deepEqual(db.check(), []);
    db.remove("big");
    db.close();
    db = open(p);
    assert.equal(db.get("big"), undefined);
    assert.equal(db.get("small")?.toString(), "s");
    db.compact();
    assert.ok(fs.statSync(p).size < 1024 * 1024, "compaction returns the value's pages");
    db.close();
  });

  test("compact() reports its progress to the builder's onProgress", () => {
    const p = freshPath();
    const seen: { phase: string; done: number; total: number | undefined }[] = [];
    const db = Emdb.builder()
      .path(p)
      .onProgress((e) => seen.push(e))
      .build();
    const n = 70_000;
    db.transaction((tx) => {
      for (let i = 0; i < n; i++) tx.insert(`k${i}`, "v");
    });
    assert.deepEqual(seen, [], "nothing to report before the compaction");
    db.compact();
    assert.deepEqual(seen, [
      { phase: "compact", done: 65_536, total: n },
      { phase: "compact", done: n, total: n },
    ]);
    assert.equal(db.len(), n);
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
    const n = 70_000;
    db.transaction((tx) => {
      for (let i = 0; i < n; i++) tx.insert(`k${i}`, "v");
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
    db = open(p, onEachWrite(), clock);
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
    const n = 70_000;
    db.transaction((tx) => {
      for (let i = 0; i < n; i++) tx.insert(`k${i}`, "v");
    });
    assert.throws(() => db.compact(), /listener bug/);
    assert.equal(fs.existsSync(`${p}.compact.tmp`), false, "the temp file is removed");
    db.insert("after", "works");
    assert.equal(db.len(), n + 1);
    assert.deepEqual(db.check(), []);
    fail = false;
    db.compact();
    db.close();
    const re = open(p);
    assert.equal(re.len(), n + 1);
    assert.equal(String(re.get("after")), "works");
    assert.deepEqual(re.check(), []);
    re.close();
  });

  test("creating, writing and compacting leave only the page file, its WAL and its lock", () => {
    const dir = fs.mkdtempSync(path.join(root, "files-"));
    const p = path.join(dir, "db.emdb");
    const db = open(p);
    db.insert("k", "v");
    db.flush();
    db.compact();
    assert.deepEqual(db.check(), []);
    db.close();
    assert.deepEqual(fs.readdirSync(dir).sort(), ["db.emdb", "db.emdb.lock", "db.emdb.wal"]);
  });
});

describe("meta pages", () => {
  test("a damaged meta page of a completed checkpoint is EMDB_CORRUPTED, never a silent rollback", () => {
    const p = freshPath();
    const db = open(p);
    db.insert("k", "first");
    db.flush();
    db.insert("k", "second");
    db.flush(); // completed: the WAL now follows this generation
    const gen = db.stats().disk!.generation as number;
    db.close();
    const bytes = fs.readFileSync(p);
    // The newest meta lives in slot generation % 2 (page 0 or 1); damage its root field.
    const current = gen % 2;
    assert.equal(bytes.readUInt32LE(current * 4096 + 32), gen);
    bytes[current * 4096 + 40]! ^= 0xff;
    fs.writeFileSync(p, bytes);
    assert.throws(
      () => open(p),
      (e: unknown) => (e as { code?: string }).code === "EMDB_CORRUPTED",
    );
  });

  test("a torn meta write of a checkpoint that never completed falls back to the previous one", () => {
    const p = freshPath();
    let db = open(p, onEachWrite());
    db.insert("k", "first");
    db.flush();
    db.insert("k", "second"); // durable in the WAL only
    const gen = db.stats().disk!.generation as number;
    const wal = fs.readFileSync(`${p}.wal`);
    const page = fs.readFileSync(p);
    db.close();
    // Simulate a crash in the next checkpoint: its meta slot (the other one) is torn garbage,
    // and the WAL still follows generation `gen`.
    const torn = Buffer.from(page);
    const nextSlot = (gen + 1) % 2;
    torn.fill(0x5a, nextSlot * 4096 + 20, nextSlot * 4096 + 100);
    fs.writeFileSync(p, torn);
    fs.writeFileSync(`${p}.wal`, wal);
    db = open(p);
    assert.equal(db.get("k")?.toString(), "second");
    assert.deepEqual(db.check(), []);
    db.close();
  });
});

describe("a WAL without its page file", () => {
  /** The files a kill -9 would leave with acknowledged writes in the WAL only. */
  function walWithRecords(p: string): { wal: Buffer } {
    const db = open(p, onEachWrite());
    db.insert("kept", "checkpointed");
    db.flush();
    db.insert("only-in-wal", "acknowledged");
    const wal = fs.readFileSync(`${p}.wal`);
    db.close();
    return { wal };
  }

  for (const damage of ["emptied", "deleted"] as const) {
    test(`a page file ${damage} beside a WAL holding records is EMDB_CORRUPTED, and nothing on disk changes`, () => {
      const p = freshPath();
      const { wal } = walWithRecords(p);
      fs.writeFileSync(`${p}.wal`, wal);
      if (damage === "emptied") fs.writeFileSync(p, Buffer.alloc(0));
      else fs.rmSync(p);
      const files = () =>
        fs
          .readdirSync(root)
          .filter((f) => f.startsWith(path.basename(p)))
          .sort();
      const before = files();
      for (let attempt = 0; attempt < 2; attempt++) {
        assert.throws(
          () => open(p),
          (e: unknown) =>
            (e as { code?: string }).code === "EMDB_CORRUPTED" &&
            /missing or empty but its WAL sidecar holds records/.test(String(e)),
        );
        assert.ok(fs.readFileSync(`${p}.wal`).equals(wal), "the WAL must not be overwritten");
        if (damage === "emptied") assert.equal(fs.statSync(p).size, 0);
        else assert.equal(fs.existsSync(p), false, "no new page file is created");
        assert.deepEqual(files(), before, "no file appears or goes away");
      }
    });
  }

  test("an emdb-rs WAL beside a missing page file is EMDB_CORRUPTED, not overwritten", () => {
    const p = freshPath();
    const legacyWal = fs.readFileSync(path.join(EMDB_RS_FIXTURES, "v3.emdb.wal"));
    fs.writeFileSync(`${p}.wal`, legacyWal);
    assert.throws(
      () => open(p),
      (e: unknown) =>
        (e as { code?: string }).code === "EMDB_CORRUPTED" && /not an emdb WAL/.test(String(e)),
    );
    assert.ok(fs.readFileSync(`${p}.wal`).equals(legacyWal));
    assert.equal(fs.existsSync(p), false);
  });

  test("an empty WAL beside a missing page file is replaced: a new database", () => {
    const p = freshPath();
    fs.writeFileSync(`${p}.wal`, Buffer.alloc(0));
    const db = open(p);
    db.insert("k", "v");
    assert.deepEqual(db.check(), []);
    db.close();
  });

  test("a page file of another database beside a WAL holding records is EMDB_CORRUPTED", () => {
    const p = freshPath();
    const { wal } = walWithRecords(p);
    const q = freshPath();
    const other = open(q);
    other.insert("other", "db");
    other.close();
    fs.copyFileSync(q, p);
    fs.writeFileSync(`${p}.wal`, wal);
    assert.throws(
      () => open(p),
      (e: unknown) =>
        (e as { code?: string }).code === "EMDB_CORRUPTED" &&
        /belongs to another page file and holds records/.test(String(e)),
    );
    assert.ok(fs.readFileSync(`${p}.wal`).equals(wal));
  });

  test("a page file without any emdb magic beside an emdb WAL is EMDB_CORRUPTED, not 'not an emdb database'", () => {
    const p = freshPath();
    const { wal } = walWithRecords(p);
    const page = fs.readFileSync(p);
    const noMagic = Buffer.from(page);
    noMagic.fill(0x41, 0, 8); // slot A
    noMagic.fill(0x41, 4096, 4096 + 8); // slot B
    for (const image of [page.subarray(0, 3), page.subarray(0, 7), noMagic]) {
      fs.writeFileSync(p, image);
      fs.writeFileSync(`${p}.wal`, wal);
      assert.throws(
        () => open(p),
        (e: unknown) => (e as { code?: string }).code === "EMDB_CORRUPTED",
        `a page file of ${image.length} bytes`,
      );
    }
    // Without the WAL the same bytes are simply not a database.
    fs.rmSync(`${p}.wal`);
    assert.throws(
      () => open(p),
      (e: unknown) => (e as { code?: string }).code === "EMDB_MAGIC_MISMATCH",
    );
  });

  test("a cleanly closed database's WAL holds no records: deleting the page file starts afresh", () => {
    const p = freshPath();
    walWithRecords(p); // closed cleanly: the WAL is a bare header again
    fs.rmSync(p);
    const db = open(p);
    assert.equal(db.len(), 0);
    db.insert("new", "start");
    assert.deepEqual(db.check(), []);
    db.close();
  });
});

describe("locking", () => {
  test("a second open of the same path, in this process, is EMDB_LOCK_BUSY; after close it opens", () => {
    const p = freshPath();
    const db = open(p);
    assert.throws(() => open(p), { code: "EMDB_LOCK_BUSY" });
    db.close();
    const again = open(p);
    again.close();
  });

  test("a database held by another process is EMDB_LOCK_BUSY; once that process is killed it opens", async () => {
    const p = freshPath();
    const child = spawn(process.execPath, [
      "--import",
      "tsx",
      "-e",
      `import("${path.resolve("src/index.ts")}").then(({ Emdb }) => { Emdb.open(${JSON.stringify(p)}); console.log("open"); setInterval(() => {}, 1000); })`,
    ]);
    await new Promise<void>((resolve) => child.stdout.once("data", () => resolve()));
    assert.throws(() => open(p), { code: "EMDB_LOCK_BUSY" });
    child.kill("SIGKILL");
    await new Promise((resolve) => child.once("close", resolve));
    const db = open(p);
    assert.deepEqual(db.check(), []);
    db.close();
  });
});

describe("bad input never reaches the log", () => {
  test("a key over MAX_KEY_SIZE leaves the WAL untouched", () => {
    const p = freshPath();
    const db = open(p, onEachWrite());
    db.insert("ok", "1");
    const wal = fs.readFileSync(`${p}.wal`);
    assert.throws(() => db.insert("k".repeat(1025), "v"), { code: "EMDB_KEY_TOO_LARGE" });
    assert.throws(() => db.transaction((tx) => tx.insert("k".repeat(1025), "v")), {
      code: "EMDB_KEY_TOO_LARGE",
    });
    assert.deepEqual(fs.readFileSync(`${p}.wal`), wal);
    db.close();
  });

  test("a transaction logs no removal of a key that is not stored", () => {
    const p = freshPath();
    const db = open(p, onEachWrite());
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
    // BatchBegin, one Delete, BatchEnd.
    assert.equal(walBytes(), before + 2 * BATCH_RECORD_SIZE + deleteRecordSize("present".length));
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
    db = open(p);
    assert.equal(db.len(), 2000);
    assert.equal(db.get("before"), undefined);
    assert.deepEqual(db.check(), []);
    db.close();
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
    db = open(p);
    assert.equal(db.len(), 35_000);
    assert.equal(db.get("k000003")?.toString(), "w3");
    assert.deepEqual(db.check(), []);
    db.close();
  });
});

describe("the consistency checker", () => {
  test("reports memory that disagrees with the checkpointed tree", () => {
    const p = freshPath();
    const db = open(p);
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
