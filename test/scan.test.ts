/**
 * Ordered scans of a file database read unchanged keys from the tree's leaves (btree/cursor.ts)
 * and changed ones from memory. These tests force deep trees (512-byte pages), mix clean,
 * dirty, expiring and deleted keys, and write, expire, clear and checkpoint between the steps
 * of a live iterator, against a Map model of what each step must return.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, test } from "node:test";
import * as v8 from "node:v8";
import * as vm from "node:vm";
import { TreeCursor } from "../src/btree/cursor.js";
import { decodeLeaf } from "../src/btree/leaf.js";
import type { Change } from "../src/btree/tree.js";
import { BTree } from "../src/btree/tree.js";
import { isEmdbError } from "../src/errors.js";
import { Emdb, manual, Ttl } from "../src/index.js";
import { MemoryBackend } from "../src/pager/backend.js";
import { native } from "../src/pager/native.js";
import { PAGE_HEADER_SIZE, type PageId, PageType, sealPage } from "../src/pager/page.js";
import { Pager } from "../src/pager/pager.js";
import { RECORD, RecordRun, TreeScan } from "../src/tree-scan.js";
import { assertConsistent, FakeClock } from "./helpers/db.js";
import { withPrng } from "./helpers/prng.js";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-scan-"));
after(() => fs.rmSync(root, { recursive: true, force: true }));

const key = (i: number) => `k${String(i).padStart(5, "0")}`;

/**
 * Counts what long scans take from the tree (`TreeScan.nextRun`) until `restore()`: the runs
 * and the records in them.
 */
function countTreeRecords(): { count: number; runs: number; restore(): void } {
  const nextRun = TreeScan.prototype.nextRun;
  const counter = {
    count: 0,
    runs: 0,
    restore: () => {
      TreeScan.prototype.nextRun = nextRun;
    },
  };
  TreeScan.prototype.nextRun = function (this: TreeScan, ...args: Parameters<typeof nextRun>) {
    const step = nextRun.apply(this, args);
    if (step === RECORD) {
      counter.runs++;
      counter.count += args[6].count;
    }
    return step;
  };
  return counter;
}

test("the tree cursor finds exactly the keys the tree holds, forward, with gaps, and after going back", () => {
  withPrng((rng) => {
    const tree = new BTree(Pager.open(new MemoryBackend(), "c.emdb", { pageSize: 512 }));
    const held = new Map<string, string>();
    const changes: Change[] = [];
    for (let i = 0; i < 3000; i++) {
      if (!rng.chance(0.6)) continue;
      const v = rng.chance(0.02) ? "x".repeat(600 + rng.int(900)) : `v${i}`;
      held.set(key(i), v);
      changes.push({
        key: Buffer.from(key(i)),
        value: Buffer.from(v),
        expiresAt: i % 7 === 0 ? 1e12 + i : 0,
      });
    }
    tree.apply(changes);
    tree.commit();

    const cursor = new TreeCursor(tree);
    const probe = (i: number) => {
      const k = key(i);
      const found = cursor.seek(k);
      assert.equal(found, held.has(k), `seek ${k}`);
      if (found) {
        assert.equal(cursor.value().toString(), held.get(k), `value of ${k}`);
        assert.equal(cursor.current.expiresAt, i % 7 === 0 ? 1e12 + i : 0);
      }
    };
    // Every key in order, then ascending runs with gaps of up to 400 keys, then random order.
    for (let i = 0; i < 3100; i++) probe(i);
    for (let i = 0; i < 3100; i += 1 + rng.int(400)) probe(i);
    for (let n = 0; n < 500; n++) probe(rng.int(3100));
    // seekAfter lands on the next held key, and a seek of the key it passed still finds it.
    const sorted = [...held.keys()].sort();
    // Which leaf each key lies in, read from the tree by its own walk: a run ends there.
    const leafOf = new Map<string, number>();
    let leaves = -1;
    tree.forEachSpan(
      (kb, ks, ke) => leafOf.set(kb.toString("latin1", ks, ke), leaves),
      () => leaves++,
    );
    assert.ok(leaves > 20, `a deep tree of ${leaves + 1} leaves`);
    for (let n = 0; n < 300; n++) {
      const k = n === 0 ? sorted[sorted.length - 1]! : key(rng.int(3100));
      const next = sorted.find((h) => h > k);
      assert.equal(cursor.seekAfter(k), next !== undefined, `seekAfter ${k}`);
      if (next !== undefined) {
        // A run from `next`, where seekAfter left the cursor: the held keys that follow it
        // in its leaf, their values and expiries; the cursor is left on the last of them.
        const run = new RecordRun();
        const max = n % 3 === 0 ? 1 + rng.int(60) : 1;
        const count = cursor.takeRun(run, max, undefined, false);
        assert.ok(count >= 1 && count <= max, `run of ${count} (max ${max})`);
        const at = sorted.indexOf(next);
        for (let j = 0; j < count; j++) {
          const want = sorted[at + j]!;
          assert.equal(run.keys[j]!.toString(), want, `run record ${j} after ${k}`);
          assert.equal(run.keyOf(j), want);
          assert.equal(run.values[j]!.toString(), held.get(want));
          const i = Number(want.slice(1));
          assert.equal(run.expiries[j], i % 7 === 0 ? 1e12 + i : 0);
        }
        // All of one leaf, and short of max only at that leaf's end.
        const leaf = leafOf.get(next);
        assert.equal(leafOf.get(sorted[at + count - 1]!), leaf, "a run stays in its leaf");
        if (count < max && at + count < sorted.length) {
          assert.notEqual(leafOf.get(sorted[at + count]!), leaf, "a short run ends its leaf");
        }
        assert.equal(cursor.seek(next), true, `seek ${next} after a run`);
      }
      assert.equal(cursor.seek(k), held.has(k), `seek ${k} after seekAfter`);
    }
    assert.equal(cursor.seek("zzz"), false, "past the last key");
    assert.equal(cursor.seek(key(0)), held.has(key(0)), "back to the start");
    assert.equal(
      new TreeCursor(new BTree(Pager.open(new MemoryBackend(), "e", { pageSize: 512 }))).seek("a"),
      false,
    );
    assert.deepEqual(tree.check(), []);
  });
});

/** A memory backend that reports the length of every read of its files. */
function readWatchedBackend(onRead: (length: number) => void): MemoryBackend {
  const backend = new MemoryBackend();
  const open = backend.open.bind(backend);
  backend.open = (name, create) => {
    const f = open(name, create);
    const read = f.read.bind(f);
    f.read = (buf, offset, length, position) => {
      onRead(length);
      return read(buf, offset, length, position);
    };
    return f;
  };
  return backend;
}

/** 4,000 keys committed to a tree of 512-byte pages in `name`; the pager is left open. */
function fourThousandKeys(backend: MemoryBackend, name: string) {
  const keys = Array.from({ length: 4000 }, (_, i) => key(i));
  const pager = Pager.open(backend, name, { pageSize: 512 });
  const built = new BTree(pager);
  built.apply(
    keys.map((k) => ({ key: Buffer.from(k), value: Buffer.from(`v-${k}`), expiresAt: 0 })),
  );
  built.commit();
  return { keys, pager, built };
}

test("a long forward scan reads leaves in runs, its first four leaves one by one", () => {
  let lengths: number[] = [];
  const backend = readWatchedBackend((length) => lengths.push(length));
  const P = 512;
  const { keys, pager, built } = fourThousandKeys(backend, "r.emdb");
  const pages = pager.stats().pageCount;
  const root = pager.read(built.root, PageType.Branch);
  const branchLevels = root[5]!; // a branch's height: its children are leaves at height 1
  pager.close();

  const reopened = Pager.open(backend, "r.emdb", { pageSize: P });
  lengths = [];
  const cursor = new TreeCursor(new BTree(reopened));
  for (const k of keys) assert.equal(cursor.seek(k), true, k);
  reopened.close();
  const reads = lengths.filter((l) => l >= P); // not the meta reads at open

  // One read per leaf would be nearly one per page; runs (of up to 32 leaves, fewer where a
  // parent has fewer children) need a small fraction.
  assert.ok(reads.length * 4 < pages, `a full scan made ${reads.length} reads for ${pages} pages`);
  const firstRun = reads.findIndex((l) => l > P);
  assert.ok(firstRun >= 0 && reads[firstRun]! >= 16 * P, `reads: ${reads.join(", ")}`);
  // The descent reads the branches, then four leaves come one at a time: a range that ends
  // within four leaves reads none it does not use.
  assert.equal(firstRun - branchLevels, 4, `reads: ${reads.join(", ")}`);
});

test("a run read ahead stops at the last leaf a bounded scan may need", () => {
  let bytesRead = 0;
  const backend = readWatchedBackend((length) => {
    bytesRead += length;
  });
  const P = 512;
  const { pager, built } = fourThousandKeys(backend, "b.emdb");
  // The leaf of each key, counted in key order.
  const leafOf: number[] = [];
  let leaf = -1;
  built.forEachSpan(
    () => leafOf.push(leaf),
    () => leaf++,
  );
  const branchLevels = pager.read(built.root, PageType.Branch)[5]!;
  pager.close();

  const from = 1000;
  const to = leafOf.indexOf(leafOf[from]! + 12); // the first key 12 leaves on
  const spanned = leafOf[to - 1]! - leafOf[from]! + 1;
  const pagesRead = (bound: boolean, inclusive: boolean): number => {
    const reopened = Pager.open(backend, "b.emdb", { pageSize: P });
    const cursor = new TreeCursor(new BTree(reopened));
    const last = inclusive ? to - 1 : to;
    if (bound) cursor.limit(key(last), inclusive);
    bytesRead = 0;
    for (let i = from; i < to; i++) assert.equal(cursor.seek(key(i)), true, key(i));
    reopened.close();
    return bytesRead / P;
  };
  for (const inclusive of [false, true]) {
    const bounded = pagesRead(true, inclusive);
    // The branches of the descent, the leaves the range spans, and at most the next one
    // (a separator below the bound, as shortest separators may be).
    assert.ok(bounded <= branchLevels + spanned + 1, `read ${bounded} pages for ${spanned} leaves`);
    const unbounded = pagesRead(false, inclusive);
    assert.ok(unbounded >= bounded + 8, `unbounded: ${unbounded}, bounded: ${bounded}`);
  }
});

/** What the next step of a live ascending iterator must return: the first live key > last. */
function nextInModel(
  model: Map<string, { v: string; exp: number }>,
  after: string | undefined,
  now: number,
): [string, string] | undefined {
  let best: string | undefined;
  for (const [k, e] of model) {
    if (e.exp !== 0 && e.exp <= now) continue;
    if (after !== undefined && k <= after) continue;
    if (best === undefined || k < best) best = k;
  }
  return best === undefined ? undefined : [best, model.get(best)!.v];
}

for (const mmap of [false, true]) {
  test(`a live iterator over a file database sees every write, expiry, clear and checkpoint between its steps (mmap ${mmap})`, () => {
    withPrng((rng) => {
      const clock = new FakeClock();
      const dir = fs.mkdtempSync(path.join(root, "db-"));
      const p = path.join(dir, "db.emdb");
      const open = () =>
        Emdb.builder()
          .path(p)
          .pageSize(512)
          .useMmap(mmap)
          .flushPolicy(manual())
          .checkpointThreshold(8 * 1024)
          .clock(clock.fn)
          .build();
      let db = open();
      const model = new Map<string, { v: string; exp: number }>();
      const write = (i: number) => {
        const k = key(i);
        const v = rng.chance(0.02) ? "y".repeat(700) : `v${i}.${rng.int(1000)}`;
        if (rng.chance(0.2)) {
          const ttl = 1 + rng.int(5000);
          db.insertWithTtl(k, v, Ttl.after(ttl));
          model.set(k, { v, exp: clock.now + ttl });
        } else {
          db.insert(k, v);
          model.set(k, { v, exp: 0 });
        }
      };
      for (let i = 0; i < 2000; i++) if (rng.chance(0.7)) write(i);
      db.flush(); // into the tree: from here most keys are clean
      db.close();
      db = open(); // and loaded from it
      assert.equal(db.stats().disk?.reads, mmap && native !== undefined ? "mmap" : "pread");
      const events = { write: 0, remove: 0, time: 0, flush: 0, clear: 0 };
      for (let round = 0; round < 6; round++) {
        const it = db.iter()[Symbol.iterator]();
        let last: string | undefined;
        for (let step = 0; ; step++) {
          const got = it.next();
          const want = nextInModel(model, last, clock.now);
          if (want === undefined) {
            assert.equal(got.done, true, `round ${round} step ${step}: iterator should end`);
            break;
          }
          assert.equal(
            got.done,
            false,
            `round ${round} step ${step}: ended early, want ${want[0]}`,
          );
          const [k, v] = got.value as [Buffer, Buffer];
          assert.deepEqual([k.toString(), v.toString()], want, `round ${round} step ${step}`);
          last = want[0];
          // Between steps: writes (ahead of and behind the iterator), removes, time passing,
          // checkpoints (flush, or the WAL passing the threshold) and, once, a clear followed
          // by new writes, so the later rounds still scan a full database.
          if (round === 3 && step === 50) {
            db.clear();
            model.clear();
            for (let i = 0; i < 1200; i++) write(rng.int(2100));
            events.clear++;
            continue;
          }
          const r = rng.next() / 2 ** 32;
          if (r < 0.25) {
            write(rng.int(2100));
            events.write++;
          } else if (r < 0.35) {
            const k = key(rng.int(2100));
            db.remove(k);
            model.delete(k);
            events.remove++;
          } else if (r < 0.4) {
            clock.advance(rng.int(400));
            events.time++;
          } else if (r < 0.42) {
            db.flush();
            events.flush++;
          }
        }
      }
      for (const [event, n] of Object.entries(events)) {
        assert.ok(n > 0, `no ${event} happened between steps`);
      }
      assert.ok(model.size > 500, `the final scans cover a populated database (${model.size})`);
      assertConsistent(db);
      db.close();
      // And what the files hold is the same: reopen and scan once more.
      db = open();
      const want: [string, string][] = [];
      for (let w = nextInModel(model, undefined, clock.now); w !== undefined; ) {
        want.push(w);
        w = nextInModel(model, w[0], clock.now);
      }
      assert.deepEqual(
        [...db.iter()].map(([k, v]) => [k.toString(), v.toString()]),
        want,
      );
      assertConsistent(db);
      db.close();
    });
  });
}

test("scans of a database that was cleared, compacted or rewritten after load stay exact", () => {
  const dir = fs.mkdtempSync(path.join(root, "db-"));
  const p = path.join(dir, "db.emdb");
  const db = Emdb.builder()
    .path(p)
    .pageSize(512)
    .flushPolicy(manual())
    .checkpointThreshold(8 * 1024)
    .build();
  for (let i = 0; i < 1500; i++) db.insert(key(i), `a${i}`);
  db.flush();
  const all = () => [...db.iter()].map(([k, v]) => `${k}=${v}`);
  assert.equal(all().length, 1500);
  db.clear(); // the tree still holds every key until the next checkpoint
  assert.deepEqual(all(), []);
  for (let i = 0; i < 1500; i += 3) db.insert(key(i), `b${i}`);
  const want = Array.from({ length: 500 }, (_, j) => `${key(3 * j)}=b${3 * j}`);
  assert.deepEqual(all(), want);
  db.flush();
  assert.deepEqual(all(), want);
  db.compact();
  assert.deepEqual(all(), want);
  // A transaction large enough to skip the WAL marks everything changed until it commits
  // (1500 writes over the 8 KiB threshold; that such a batch skips the WAL is proven in
  // storage.test.ts, where a policy that writes the WAL at once makes it visible).
  const generation = db.stats().disk?.generation as number;
  db.transaction((tx) => {
    for (let i = 0; i < 1500; i++) tx.insert(key(i), `c${i}`);
  });
  assert.ok((db.stats().disk?.generation as number) > generation, "and went into a checkpoint");
  assert.deepEqual(
    all(),
    Array.from({ length: 1500 }, (_, i) => `${key(i)}=c${i}`),
  );
  assertConsistent(db);
  db.close();
});

test("with no change pending, long scans come from the tree alone: bounds, expiry, limits and interleaved iterators stay exact", () => {
  withPrng((rng) => {
    const clock = new FakeClock();
    const dir = fs.mkdtempSync(path.join(root, "db-"));
    const db = Emdb.builder()
      .path(path.join(dir, "db.emdb"))
      .pageSize(512)
      .flushPolicy(manual())
      .clock(clock.fn)
      .build();
    const model = new Map<string, { v: string; exp: number }>();
    for (let i = 0; i < 3000; i++) {
      if (!rng.chance(0.8)) continue;
      const k = i % 5 === 0 ? `g.${key(i)}` : key(i);
      const v = rng.chance(0.02) ? "z".repeat(600 + rng.int(900)) : `v${i}`;
      const ttl = rng.chance(0.15) ? 1 + rng.int(2000) : 0;
      if (ttl === 0) db.insert(k, v);
      else db.insertWithTtl(k, v, Ttl.after(ttl));
      model.set(k, { v, exp: ttl === 0 ? 0 : clock.now + ttl });
    }
    db.flush(); // every key is now clean
    clock.advance(1000); // about half the TTL'd keys are expired, in memory and tree alike

    const tree = countTreeRecords();
    try {
      const live = [...model]
        .filter(([, e]) => e.exp === 0 || e.exp > clock.now)
        .map(([k, e]) => `${k}=${e.v}`)
        .sort();
      const show = (it: Iterable<[Buffer, Buffer]>) => [...it].map(([k, v]) => `${k}=${v}`);
      const within = (lo: string, hi: string, hiInclusive: boolean) =>
        live.filter((e) => {
          const k = e.slice(0, e.indexOf("="));
          return k >= lo && (hiInclusive ? k <= hi : k < hi);
        });
      assert.deepEqual(show(db.iter()), live, "iter()");
      // Past its first 256 entries, the whole scan read the tree.
      assert.ok(tree.count >= live.length - 256, `${tree.count} records came from the tree`);
      const lo = key(400);
      // k02600 itself is never stored (every fifth key is stored as g.…), so lt and lte
      // agree here; the loop below bounds on stored keys.
      const hi = key(2600);
      assert.deepEqual(show(db.range({ gte: lo, lt: hi })), within(lo, hi, false), "lt");
      assert.deepEqual(show(db.range({ gte: lo, lte: hi })), within(lo, hi, true), "lte");
      for (const k of [...model.keys()].filter((k) => !k.startsWith("g.")).slice(900, 960)) {
        assert.deepEqual(show(db.range({ gte: lo, lte: k })), within(lo, k, true), `lte ${k}`);
        assert.deepEqual(show(db.range({ gte: lo, lt: k })), within(lo, k, false), `lt ${k}`);
      }
      assert.deepEqual(
        show(db.group("g")),
        live.filter((e) => e.startsWith("g.")),
        "group",
      );
      assert.deepEqual(
        show(db.range({ gte: lo, limit: 700 })),
        within(lo, "~", false).slice(0, 700),
      );

      // Two long iterators over the one tree cursor: B reads 300 (into the tree), A runs 900
      // ahead, then B goes on from its own place, not from A's.
      const a = db.iter()[Symbol.iterator]();
      const b = db.iter()[Symbol.iterator]();
      const take = (it: Iterator<[Buffer, Buffer]>, n: number) => {
        const out: string[] = [];
        for (let i = 0; i < n; i++) {
          const r = it.next();
          if (r.done === true) break;
          out.push(`${r.value[0]}=${r.value[1]}`);
        }
        return out;
      };
      const bSeen = take(b, 300);
      const aSeen = take(a, 900);
      bSeen.push(...take(b, 200));
      aSeen.push(...take(a, 1e6));
      bSeen.push(...take(b, 1e6));
      assert.deepEqual(aSeen, live, "iterator A");
      assert.deepEqual(bSeen, live, "iterator B");
    } finally {
      tree.restore();
    }
    assertConsistent(db);
    db.close();
  });
});

for (const mmap of [false, true]) {
  test(`the keys and values a tree scan returns are the caller's: overwriting each as it comes changes no other record, no later scan and no page (mmap ${mmap})`, () => {
    withPrng((rng) => {
      const dir = fs.mkdtempSync(path.join(root, "db-"));
      const db = Emdb.builder()
        .path(path.join(dir, "db.emdb"))
        .pageSize(512)
        .flushPolicy(manual())
        .useMmap(mmap)
        .build();
      assert.equal(db.stats().disk?.reads, mmap && native !== undefined ? "mmap" : "pread");
      const model = new Map<string, string>();
      for (let i = 0; i < 2500; i++) {
        const v = rng.chance(0.03)
          ? `${i}:${"z".repeat(600 + rng.int(900))}`
          : `v${i}.${rng.int(1e6)}`;
        db.insert(key(i), v);
        model.set(key(i), v);
      }
      db.flush(); // every key is clean: past its first entries, a scan steps through the leaves
      const live = [...model].map(([k, v]) => `${k}=${v}`).sort();
      const tree = countTreeRecords();
      try {
        const seen: string[] = [];
        for (const [k, v] of db.iter()) {
          seen.push(`${k}=${v}`);
          k.fill(0xff);
          v.fill(0x21);
        }
        assert.ok(tree.count >= live.length - 256, `${tree.count} records came from the tree`);
        assert.deepEqual(
          seen,
          live,
          "each record as it came, after the ones before were overwritten",
        );
        const again = [...db.range({ gte: key(0), limit: 5000 })].map(([k, v]) => `${k}=${v}`);
        assert.deepEqual(again, live, "a second scan");
      } finally {
        tree.restore();
      }
      assertConsistent(db);
      db.close();
    });
  });
}

/** A new file database in its own directory, of 512-byte pages, flushed by hand. */
function smallPageDb(): Emdb {
  const dir = fs.mkdtempSync(path.join(root, "db-"));
  return Emdb.builder().path(path.join(dir, "db.emdb")).pageSize(512).flushPolicy(manual()).build();
}

test("two iterators resuming on one tree cursor never get views of the same bytes, even where a key they resume after is gone", () => {
  const db = smallPageDb();
  for (let i = 0; i < 1000; i++) db.insert(key(i), `v${i}`);
  db.flush();
  const gone = `${key(255)}x`; // between k00255 and k00256
  db.insert(gone, "tmp");
  const a = db.iter()[Symbol.iterator]();
  const b = db.iter()[Symbol.iterator]();
  // Both read their first 257 entries from memory, the last of them `gone`.
  for (let i = 0; i < 257; i++) {
    a.next();
    b.next();
  }
  db.remove(gone);
  db.flush(); // nothing dirty: both resume in the tree, after a key it does not hold
  const tree = countTreeRecords();
  try {
    const ra = a.next();
    const rb = b.next();
    assert.equal(tree.runs, 2, "both records came from the tree");
    assert.ok(ra.done !== true && rb.done !== true);
    const [ka, va] = ra.value;
    const [kb, vb] = rb.value;
    assert.equal(`${ka}=${va}`, `${key(256)}=v256`);
    assert.equal(`${kb}=${vb}`, `${key(256)}=v256`);
    ka.fill(0x21);
    va.fill(0x21);
    assert.equal(`${kb}=${vb}`, `${key(256)}=v256`, "A's caller changing its record changed B's");
  } finally {
    tree.restore();
  }
  assertConsistent(db);
  db.close();
});

test("a bounded range through the API reads ahead no further than its bound, clean or with writes pending", () => {
  const dir = fs.mkdtempSync(path.join(root, "db-"));
  const p = path.join(dir, "bounded.emdb");
  let db = Emdb.builder().path(p).flushPolicy(manual()).build();
  db.transaction((tx) => {
    for (let i = 0; i < 40_000; i++) tx.insert(key(i), `v${i}:${"x".repeat(80)}`);
  });
  db.close();
  // ~40 records to a 4 KiB leaf. A scan takes its first 256 records from memory, then the
  // tree: the other 744 of 1,000 span about 19 leaves, and the run read after the fourth of
  // them would be 32 leaves long without the bound.
  for (const dirty of [false, true]) {
    db = Emdb.builder().path(p).flushPolicy(manual()).build();
    if (dirty) db.insert(key(30_000), "pending"); // some key changed: values come by key
    const store = (db as unknown as { core: { persistence: { pager: Pager } } }).core.persistence;
    const before = store.pager.stats().pagesRead;
    let n = 0;
    for (const _ of db.range({ gte: key(10_000), lt: key(11_000) })) n++;
    assert.equal(n, 1_000);
    const read = store.pager.stats().pagesRead - before;
    assert.ok(read <= 26, `read ${read} pages for about 19 leaves (dirty: ${dirty})`);
    assertConsistent(db);
    db.close();
  }
});

test("a scan that looked entries up ahead serves each as it is when served: rewritten, expired, removed, added or no longer loaded", () => {
  // Memory scans look up a block of keys ahead of the one they serve (core.ts, memoryKey).
  const clock = new FakeClock();
  const dir = fs.mkdtempSync(path.join(root, "db-"));
  const p = path.join(dir, "db.emdb");
  const open = () => Emdb.builder().path(p).clock(clock.fn).flushPolicy(manual()).build();
  let db = open();
  const model = new Map<string, string>();
  for (let i = 0; i < 1000; i++) {
    db.insert(key(i), `loaded ${i}`);
    model.set(key(i), `loaded ${i}`);
  }
  db.close();
  db = open(); // every value is now a ref into a copy of its leaf page
  assert.ok(db.stats().loadedPageBytes > 0, "values are held as page copies");
  const it = db.iter()[Symbol.iterator]();
  const seen: [string, string][] = [];
  const step = () => {
    const r = it.next();
    assert.equal(r.done, false);
    const [k, v] = r.value as [Buffer, Buffer];
    seen.push([k.toString(), v.toString()]);
  };
  step(); // k00000, with the keys after it looked up ahead
  // Values rewritten and a key given a deadline that passes, both ahead of the cursor.
  db.insert(key(2), "rewritten");
  model.set(key(2), "rewritten");
  db.insertWithTtl(key(4), "short-lived", Ttl.after(10));
  model.delete(key(4));
  clock.advance(20);
  step();
  step(); // k00002
  // Most loaded values replaced, behind the lookahead: their page copies are let go, and the
  // values still loaded (the ones ahead among them) become strings.
  for (let i = 200; i < 1000; i++) {
    db.insert(key(i), `new ${i}`);
    model.set(key(i), `new ${i}`);
  }
  assert.equal(db.stats().loadedPageBytes, 0, "the page copies were let go mid-scan");
  step();
  // A key removed and one added, ahead of the cursor: the structure changed.
  db.remove(key(6));
  model.delete(key(6));
  db.insert(`${key(5)}a`, "added");
  model.set(`${key(5)}a`, "added");
  for (let r = it.next(); r.done !== true; r = it.next()) {
    const [k, v] = r.value;
    seen.push([k.toString(), v.toString()]);
  }
  assert.deepEqual(
    seen,
    [...model].sort(([a], [b]) => (a < b ? -1 : 1)),
  );
  assertConsistent(db);
  db.close();
});

test("a paused long scan holds none of the values it handed out", async () => {
  // A run keeps the records of a leaf for the iterator to hand out; one it has handed out
  // and the caller dropped (here an 8 MiB overflow value) must not stay alive behind it.
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  const db = smallPageDb();
  const big = key(600);
  for (let i = 0; i < 1000; i++)
    db.insert(key(i), key(i) === big ? Buffer.alloc(8 << 20, 7) : `v${i}`);
  db.flush(); // every key is clean: past its first 256 entries, the scan reads runs
  const tree = countTreeRecords();
  const it = db.iter()[Symbol.iterator]();
  let ref: WeakRef<Buffer> | undefined;
  try {
    for (let i = 0; i <= 601; i++) {
      const r = it.next();
      assert.ok(r.done !== true);
      if (r.value[0].toString() === big) {
        assert.equal(r.value[1].length, 8 << 20);
        ref = new WeakRef(r.value[1]);
      }
    }
    assert.ok(tree.count > 0, "the big value came from the tree");
  } finally {
    tree.restore();
  }
  // WeakRefs hold their target until the current job ends.
  await new Promise((resolve) => setImmediate(resolve));
  gc();
  assert.equal(ref?.deref(), undefined, "the dropped 8 MiB value was collected");
  assert.equal(it.next().value?.[0].toString(), key(602), "and the scan goes on");
  assertConsistent(db);
  db.close();
});

for (const [damage, rec] of [
  ["value length", 5],
  ["flags", 5],
  ["value length", 0],
] as const) {
  test(`a long scan meeting a damaged record (${damage}, record ${rec} of its leaf) serves the records before it, then throws EMDB_CORRUPTED at each retry, never skipping it`, () => {
    const P = 512;
    const dir = fs.mkdtempSync(path.join(root, "db-"));
    const p = path.join(dir, "db.emdb");
    const build = () =>
      Emdb.builder().path(p).pageSize(P).flushPolicy(manual()).cacheSize(16).build();
    let db = build();
    for (let i = 0; i < 1000; i++) db.insert(key(i), `v${i}`);
    db.flush();
    db.close();
    db = build(); // loaded; the scan below reads the leaf again from the file
    // Record `rec` of the leaf holding k00700, damaged in the file, its checksum sealed again.
    const fd = fs.openSync(p, "r+");
    let leafId = -1;
    let damagedKey = "";
    for (let id = 2; id * P < fs.fstatSync(fd).size && leafId < 0; id++) {
      const page = Buffer.alloc(P);
      fs.readSync(fd, page, 0, P, id * P);
      if (page[4] !== PageType.Leaf) continue;
      const keys = decodeLeaf(page, id * P, p).map((r) => r.key.toString());
      if (!keys.includes(key(700)) || keys.length < 8) continue;
      const off = page.readUInt16LE(PAGE_HEADER_SIZE + 2 * rec);
      if (damage === "value length") page.writeUInt32LE(0xffff, off + 3);
      else page[off] = 4; // "pages adjacent" without an overflow
      sealPage(page, id as PageId, Number(page.readBigUInt64LE(8)));
      fs.writeSync(fd, page, 0, P, id * P);
      leafId = id;
      damagedKey = keys[rec]!;
    }
    fs.closeSync(fd);
    assert.ok(leafId >= 0, "found the leaf");
    const it = db.iter()[Symbol.iterator]();
    const seen: string[] = [];
    let errors = 0;
    while (errors < 3) {
      try {
        const r = it.next();
        assert.ok(r.done !== true, `the scan ended after ${seen.at(-1)}`);
        seen.push(r.value[0].toString());
      } catch (err) {
        assert.ok(
          isEmdbError(err, "EMDB_CORRUPTED") &&
            (err.offset ?? -1) >= leafId * P &&
            (err.offset ?? -1) < (leafId + 1) * P,
          `EMDB_CORRUPTED in leaf ${leafId}: ${String(err)}`,
        );
        errors++;
      }
    }
    const want = Array.from({ length: 1000 }, (_, i) => key(i)).filter((k) => k < damagedKey);
    assert.deepEqual(seen, want, "every record before the damaged one, then only errors");
    db.close();
  });
}
