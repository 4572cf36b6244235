import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, test } from "node:test";
import { decodeBranch } from "../src/btree/branch.js";
import { bulkLoad } from "../src/btree/bulk-load.js";
import { treeShape } from "../src/btree/check.js";
import { TreeCursor } from "../src/btree/cursor.js";
import { maxKeySize } from "../src/btree/limits.js";
import { BTree, type Change } from "../src/btree/tree.js";
import { writeU64 } from "../src/codec.js";
import { isEmdbError } from "../src/errors.js";
import { FileBackend, MemoryBackend } from "../src/pager/backend.js";
import { OFF_AUX16, PAGE_HEADER_SIZE, type PageId, PageType, sealPage } from "../src/pager/page.js";
import { Pager } from "../src/pager/pager.js";
import { RecordRun } from "../src/tree-scan.js";
import { withPrng } from "./helpers/prng.js";
import {
  applyToModel,
  assertSameContents,
  dumpTree,
  type Model,
  randomBatch,
  sortChanges,
} from "./helpers/tree-model.js";

const P = 512;

function open(be: MemoryBackend, pageSize = P, cachePages?: number): BTree {
  return new BTree(
    Pager.open(be, "db", cachePages === undefined ? { pageSize } : { pageSize, cachePages }),
  );
}

function assertClean(tree: BTree): void {
  assert.deepEqual(tree.check(), []);
}

function put(key: string, value: string | Buffer, expiresAt = 0): Change {
  return { key: Buffer.from(key), value: Buffer.from(value), expiresAt };
}

function del(key: string): Change {
  return { key: Buffer.from(key), value: undefined, expiresAt: 0 };
}

describe("btree", () => {
  test("randomized against a Map model, 512-byte pages, with reopen", () => {
    withPrng((rng) => {
      const be = new MemoryBackend();
      let tree = open(be, P, 8 + rng.int(64));
      const model: Model = new Map();
      for (let round = 1; round <= 70; round++) {
        if (rng.chance(0.1)) {
          // An abandoned checkpoint: nothing of it may stay.
          tree.apply(
            randomBatch(rng, model, { size: 40, keySpace: 1500, deleteRatio: 0.5, maxValue: 3000 }),
          );
          tree.rollback();
        }
        const batches = rng.chance(0.2) ? 2 : 1;
        for (let b = 0; b < batches; b++) {
          const batch = randomBatch(rng, model, {
            size: 1 + rng.int(round < 20 ? 150 : 60),
            keySpace: 1500,
            deleteRatio: round > 50 ? 0.7 : 0.35,
            maxValue: 3000,
          });
          tree.apply(batch);
          applyToModel(model, batch);
        }
        tree.apply([]);
        tree.commit(round);
        if (rng.chance(0.8)) tree.pager.releasePending();
        assertClean(tree);
        assert.equal(tree.entryCount, model.size);
        assertSameContents(dumpTree(tree), model, `round ${round}`);
        for (const k of [...model.keys()].slice(0, 3)) {
          const hit = tree.get(Buffer.from(k, "hex"));
          assert.ok(hit?.value.equals(model.get(k)!.value), `get ${k}`);
        }
        assert.equal(tree.get(Buffer.from("no such key")), undefined);
        if (round % 10 === 0) {
          tree.pager.close();
          tree = open(be, P, 8 + rng.int(64));
          assertClean(tree);
          assertSameContents(dumpTree(tree), model, `reopen after round ${round}`);
        }
      }
      const shape = treeShape(tree.pager, tree.root);
      assert.equal(shape.entries, model.size);
      // Merges leave no leaf under a quarter full, except a lone root leaf.
      assert.ok(shape.underfullLeaves <= (shape.leaves === 1 ? 1 : 0), JSON.stringify(shape));
      tree.pager.close();
    });
  });

  for (const pageSize of [1024, 65536]) {
    test(`model test with ${pageSize}-byte pages`, () => {
      withPrng((rng) => {
        const be = new MemoryBackend();
        let tree = open(be, pageSize);
        const model: Model = new Map();
        for (let round = 1; round <= 12; round++) {
          const batch = randomBatch(rng, model, {
            size: 400,
            keySpace: 3000,
            deleteRatio: 0.4,
            // Big enough for multi-page chains at 1 KiB; one-page chains at 64 KiB (the
            // memory backend copies the whole file on every extension).
            maxValue: Math.min(3 * pageSize, 80_000),
          });
          tree.apply(batch);
          applyToModel(model, batch);
          tree.commit(round);
          tree.pager.releasePending();
          assertClean(tree);
        }
        tree.pager.close();
        tree = open(be, pageSize);
        assertSameContents(dumpTree(tree), model, `${pageSize}-byte pages`);
        assertClean(tree);
        tree.pager.close();
      });
    });
  }

  test("key size limit: >= 1024 for 4 KiB pages; an oversized key is a RangeError before any write", () => {
    assert.ok(maxKeySize(4096) >= 1024);
    assert.equal(maxKeySize(512), 128);
    const be = new MemoryBackend();
    const tree = open(be, 4096);
    tree.apply([put("a", "1")]);
    tree.commit(1);
    const before = tree.pager.stats();
    const big = Buffer.alloc(maxKeySize(4096) + 1, 0x61);
    assert.throws(
      () => tree.apply([put("0", "ok"), { key: big, value: Buffer.from("v"), expiresAt: 0 }]),
      RangeError,
    );
    assert.equal(tree.pager.inTransaction, false, "nothing was allocated");
    assert.deepEqual(tree.pager.stats(), before);
    assert.equal(tree.get(Buffer.from("0")), undefined);
    assertClean(tree);
    tree.pager.close();
  });

  test("a batch refused after an earlier one of the same commit rolls both back", () => {
    // A checkpoint applies its changes in runs (checkpoint-plan.ts changeRuns), one commit.
    const be = new MemoryBackend();
    const tree = open(be);
    const key = (i: number) => `k${String(i).padStart(5, "0")}`;
    tree.apply(Array.from({ length: 2000 }, (_, i) => put(key(i), "v")));
    tree.commit(1);
    const pages = () => {
      const { pageCount, freePages, pendingPages, fileBytes } = tree.pager.stats();
      return { pageCount, freePages, pendingPages, fileBytes, root: tree.root };
    };
    const before = pages();
    tree.apply(Array.from({ length: 2000 }, (_, i) => put(key(2000 + i), "w")));
    assert.equal(tree.pager.inTransaction, true);
    const big = Buffer.alloc(maxKeySize(P) + 1, 0x7a);
    assert.throws(
      () => tree.apply([{ key: big, value: Buffer.from("v"), expiresAt: 0 }]),
      RangeError,
    );
    assert.equal(tree.pager.inTransaction, false, "the first run was rolled back too");
    assert.deepEqual(pages(), before);
    assert.equal(tree.get(Buffer.from(key(2500))), undefined);
    assert.equal(tree.get(Buffer.from(key(1500)))?.value.toString(), "v");
    assertClean(tree);
    tree.pager.close();
  });

  test("bad batches are rejected before anything is written", () => {
    const tree = open(new MemoryBackend());
    assert.throws(() => tree.apply([put("b", "1"), put("a", "2")]), /sorted/);
    assert.throws(() => tree.apply([put("a", "1"), put("a", "2")]), /sorted/);
    assert.throws(
      () => tree.apply([{ key: "a" as unknown as Buffer, value: undefined, expiresAt: 0 }]),
      TypeError,
    );
    assert.throws(() => tree.apply([put("a", "1", -1)]), RangeError);
    assert.throws(() => tree.apply([put("a", "1", 0.5)]), RangeError);
    assert.equal(tree.pager.inTransaction, false);
    tree.pager.close();
  });

  test("keys of the maximum size, empty keys and empty values", () => {
    withPrng((rng) => {
      const be = new MemoryBackend();
      const tree = open(be);
      const model: Model = new Map();
      const changes: Change[] = [{ key: Buffer.alloc(0), value: Buffer.alloc(0), expiresAt: 0 }];
      for (let i = 0; i < 150; i++) {
        const key = rng.bytes(maxKeySize(P));
        const value = rng.bytes(rng.chance(0.5) ? 8 : rng.int(400));
        changes.push({ key, value, expiresAt: rng.chance(0.5) ? 123456 : 0 });
      }
      sortChanges(changes);
      tree.apply(changes);
      applyToModel(model, changes);
      tree.commit(1);
      assertClean(tree);
      assertSameContents(dumpTree(tree), model, "max keys");
      assert.ok(tree.get(Buffer.alloc(0))?.value.length === 0);
      const drop = sortChanges(
        changes.filter(() => rng.chance(0.6)).map((c) => ({ ...c, value: undefined })),
      );
      tree.apply(drop);
      applyToModel(model, drop);
      tree.commit(2);
      assertClean(tree);
      assertSameContents(dumpTree(tree), model, "after deletes");
      tree.pager.close();
    });
  });

  test("a checkpoint writes O(changes x depth) pages, independent of the database size", () => {
    withPrng((rng) => {
      const written = (entries: number) => {
        const be = new MemoryBackend();
        const pager = Pager.open(be, "db", { pageSize: 4096 });
        const key = (i: number) => Buffer.from(`key-${String(i).padStart(10, "0")}`);
        const gen = function* () {
          for (let i = 0; i < entries; i++)
            // Even numbers exist; odd ones get inserted between them, all over the tree.
            yield { key: key(2 * i), value: Buffer.alloc(100, i), expiresAt: 0 };
        };
        const loaded = bulkLoad(pager, gen());
        pager.commit({ ...loaded, lastTxId: 1 });
        pager.releasePending();
        const tree = new BTree(pager);
        const height = treeShape(pager, tree.root).height;
        const seen = new Set<number>();
        const changes: Change[] = [];
        while (changes.length < 100) {
          const i = rng.int(entries * 2);
          if (seen.has(i)) continue;
          seen.add(i);
          changes.push({
            key: key(i),
            value: i % 2 === 0 && rng.chance(0.3) ? undefined : Buffer.alloc(100, 7),
            expiresAt: 0,
          });
        }
        const before = pager.stats().pagesWritten;
        tree.apply(sortChanges(changes));
        tree.commit(2);
        const count = pager.stats().pagesWritten - before;
        assertClean(tree);
        const total = pager.stats().pageCount;
        pager.close();
        return { count, height, total };
      };
      const small = written(10_000);
      const large = written(100_000);
      // Each change rewrites at most its leaf and the branches above it, plus a neighbour
      // when a merge is needed; the free-list adds a page or two. 10x the data may cost a
      // little more only because 100 changes collide less often in 3400 leaves than in 340
      // (and touch more of the branches): bounded by the per-change limit, not by size.
      for (const r of [small, large]) {
        assert.ok(r.count <= 100 * (r.height + 1) + 4, `${r.count} pages for height ${r.height}`);
      }
      assert.ok(
        large.count <= small.count * 1.75,
        `10k: ${small.count} pages, 100k: ${large.count} pages`,
      );
      assert.ok(large.count < large.total / 10, `100k: ${large.count} of ${large.total} pages`);
      process.stdout.write(
        `# pages written for 100 changes: 10k entries ${small.count} (height ${small.height}), 100k entries ${large.count} (height ${large.height})\n`,
      );
    });
  });

  test("an unchanged overflow value keeps its chain; a changed one frees it", () => {
    const be = new MemoryBackend();
    const tree = open(be);
    const big = Buffer.alloc(20_000, 0x42);
    const chain = Math.ceil(big.length / (P - 24));
    tree.apply([put("big", big), put("small", "s")]);
    tree.commit(1);
    tree.pager.releasePending();
    const pager = tree.pager;

    let before = pager.stats().pagesWritten;
    tree.apply([put("big", Buffer.from(big), 99)]);
    tree.commit(2);
    assert.ok(pager.stats().pagesWritten - before <= 3, "same bytes, new expiry: only the leaf");
    assert.equal(tree.get(Buffer.from("big"))?.expiresAt, 99);
    pager.releasePending();

    before = pager.stats().pagesWritten;
    const pendingBefore = pager.stats().pendingPages;
    const other = Buffer.alloc(20_000, 0x43);
    tree.apply([put("big", other)]);
    tree.commit(3);
    assert.ok(pager.stats().pagesWritten - before >= chain, "a new chain is written");
    assert.ok(pager.stats().pendingPages - pendingBefore >= chain, "the old chain is freed");
    assert.ok(tree.get(Buffer.from("big"))?.value.equals(other));
    assertClean(tree);

    pager.releasePending();
    tree.apply([del("big")]);
    tree.commit(4);
    pager.releasePending();
    assertClean(tree);
    assert.ok(pager.stats().freePages >= chain, "the deleted value's pages are free");
    pager.close();
  });

  test("a 64 MiB value round-trips through a real file", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-btree-"));
    try {
      const file = path.join(dir, "big.emdb");
      const value = Buffer.allocUnsafe(64 * 1024 * 1024);
      for (let i = 0; i < value.length; i += 4) value.writeUInt32LE((i * 2654435761) >>> 0, i);
      let pager = Pager.open(new FileBackend(), file);
      let tree = new BTree(pager);
      tree.apply([
        put("a", "before"),
        { key: Buffer.from("huge"), value, expiresAt: 5 },
        put("z", "after"),
      ]);
      tree.commit(1);
      pager.close();
      pager = Pager.open(new FileBackend(), file);
      tree = new BTree(pager);
      const seen: string[] = [];
      tree.forEach((k, v, exp) => {
        seen.push(k.toString());
        if (k.toString() === "huge") {
          assert.equal(exp, 5);
          assert.ok(v.equals(value), "64 MiB value intact");
        }
      });
      assert.deepEqual(seen, ["a", "huge", "z"]);
      assertClean(tree);
      tree.apply([del("huge")]);
      tree.commit(2);
      pager.releasePending();
      tree.apply([put("b", "x")]);
      tree.commit(3);
      assertClean(tree);
      pager.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("clearFirst frees the whole tree, and the space is reused after release", () => {
    withPrng((rng) => {
      const be = new MemoryBackend();
      const tree = open(be);
      const model: Model = new Map();
      for (let r = 1; r <= 5; r++) {
        const b = randomBatch(rng, model, {
          size: 200,
          keySpace: 2000,
          deleteRatio: 0.1,
          maxValue: 2000,
        });
        tree.apply(b);
        applyToModel(model, b);
        tree.commit(r);
        tree.pager.releasePending();
      }
      const full = tree.pager.stats().pageCount;
      tree.apply([put("only", "one")], { clearFirst: true });
      tree.commit(6);
      assertClean(tree);
      assert.deepEqual([...dumpTree(tree).keys()], [Buffer.from("only").toString("hex")]);
      assert.equal(tree.entryCount, 1);
      tree.pager.releasePending();
      const again: Model = new Map();
      for (let r = 7; r <= 11; r++) {
        const b = randomBatch(rng, again, {
          size: 200,
          keySpace: 2000,
          deleteRatio: 0.1,
          maxValue: 2000,
        });
        tree.apply(b);
        applyToModel(again, b);
        tree.commit(r);
        tree.pager.releasePending();
      }
      assert.ok(tree.pager.stats().pageCount <= full * 1.3, "freed pages were reused");
      tree.clearAll();
      tree.commit(12);
      assert.equal(tree.root, 0);
      assertClean(tree);
      tree.pager.close();
    });
  });

  test("deleting most keys merges pages back into a shallow tree", () => {
    withPrng((rng) => {
      const be = new MemoryBackend();
      const tree = open(be);
      const keys = Array.from({ length: 4000 }, (_, i) => `key${String(i).padStart(6, "0")}`);
      tree.apply(keys.map((k) => put(k, rng.bytes(rng.int(40)))));
      tree.commit(1);
      const tall = treeShape(tree.pager, tree.root);
      const keep = new Set(keys.filter((_, i) => i % 100 === 0));
      const doomed = keys.filter((k) => !keep.has(k));
      for (let i = 0; i < doomed.length; i += 300) {
        tree.apply(doomed.slice(i, i + 300).map(del));
        tree.commit(2 + i);
        tree.pager.releasePending();
        assertClean(tree);
      }
      const shape = treeShape(tree.pager, tree.root);
      assert.equal(shape.entries, keep.size);
      assert.ok(shape.height < tall.height, `height ${tall.height} -> ${shape.height}`);
      // 40 records of at most ~60 bytes: at most ~2.4 KB, i.e. 5 full leaves; with every
      // leaf at least a quarter full that is at most 20, and the merges do much better.
      assert.ok(shape.leaves <= 10, `${shape.leaves} leaves for ${keep.size} small entries`);
      assert.ok(
        shape.underfullLeaves <= (shape.leaves === 1 ? 1 : 0),
        `${shape.underfullLeaves} underfull leaves`,
      );
      tree.pager.close();
    });
  });

  test("deleting every key empties the tree and frees all its pages", () => {
    withPrng((rng) => {
      const tree = open(new MemoryBackend());
      const model: Model = new Map();
      for (let r = 1; r <= 3; r++) {
        const b = randomBatch(rng, model, {
          size: 300,
          keySpace: 2000,
          deleteRatio: 0,
          maxValue: 1500,
        });
        tree.apply(b);
        applyToModel(model, b);
        tree.commit(r);
      }
      const all = [...model.keys()].map((k) => Buffer.from(k, "hex")).sort(Buffer.compare);
      tree.apply(all.map((key) => ({ key, value: undefined, expiresAt: 0 })));
      assert.equal(tree.root, 0);
      assert.equal(tree.entryCount, 0);
      tree.commit(4);
      assertClean(tree);
      const stats = tree.pager.stats();
      assert.equal(
        stats.pageCount - 2,
        stats.freePages + stats.pendingPages + 1,
        "only the free-list page is in use",
      );
      tree.pager.releasePending();
      tree.apply([put("again", "x")]);
      tree.commit(5);
      assertClean(tree);
      assert.equal(tree.get(Buffer.from("again"))?.value.toString(), "x");
      tree.pager.close();
    });
  });

  test("random updates keep leaves reasonably full", () => {
    withPrng((rng) => {
      const tree = open(new MemoryBackend());
      const model: Model = new Map();
      for (let r = 1; r <= 40; r++) {
        const b = randomBatch(rng, model, {
          size: 100,
          keySpace: 3000,
          deleteRatio: 0.4,
          maxValue: 60,
        });
        tree.apply(b);
        applyToModel(model, b);
        tree.commit(r);
        tree.pager.releasePending();
      }
      assertClean(tree);
      const shape = treeShape(tree.pager, tree.root);
      assert.ok(shape.leafFill > 0.45, `leaf fill ${shape.leafFill}`);
      assert.equal(
        shape.underfullLeaves,
        0,
        `${shape.underfullLeaves} of ${shape.leaves} underfull`,
      );
      tree.pager.close();
    });
  });

  test("a sealed leaf whose record count, record offset, flags or expiry is malformed is EMDB_CORRUPTED to a cursor, naming the page", () => {
    const damages = ["count", "offset past the page", "offset into the slots", "flags", "expiry"];
    // Record 0 is read by the seek itself; record 1 only by the run after it, whose loop
    // reads records in place with checks of its own (`takeRecords`), and which stops
    // before it: the next run, starting at it, throws.
    for (const target of [0, 1]) {
      for (const damage of damages) {
        if (target === 1 && damage === "count") continue; // the count is the leaf's
        const be = new MemoryBackend();
        const tree = open(be);
        // The first two records carry an expiry, for the last case.
        tree.apply(
          Array.from({ length: 3000 }, (_, i) =>
            put(`k${String(i).padStart(5, "0")}`, "v".repeat(20), i <= 1 ? 4e12 + i : 0),
          ),
        );
        tree.commit(1);
        // The first leaf: down the first children from the root.
        let id = tree.root;
        for (;;) {
          const page = tree.pager.read(id, undefined);
          if (page[4] === PageType.Leaf) break;
          id = decodeBranch(page, id * P, "db").children[0]!;
        }
        const generation = tree.pager.meta.generation;
        tree.pager.close();
        const bytes = be.bytes("db");
        const page = bytes.subarray(id * P, (id + 1) * P);
        // Checksums sealed again: only the leaf's own checks can see the damage. Record
        // i's slot is at PAGE_HEADER_SIZE + 2i; its flags byte at its offset, its expiry 7 on.
        const slot = PAGE_HEADER_SIZE + 2 * target;
        const at = page.readUInt16LE(slot);
        if (damage === "count") page.writeUInt16LE(P, OFF_AUX16);
        else if (damage === "offset past the page") page.writeUInt16LE(P - 1, slot);
        else if (damage === "offset into the slots") {
          // A well-formed record (flags 0, the target's own key, empty value) written over
          // the next seven slots, and the target's slot pointing at it: only the slots'
          // bound can refuse it.
          assert.ok(page.readUInt16LE(OFF_AUX16) >= 9, "a leaf of at least 9 records");
          const fake = slot + 2;
          const k = Buffer.from(`k0000${target}`);
          Buffer.from([0, 6, 0, 0, 0, 0, 0, ...k]).copy(page, fake);
          page.writeUInt16LE(fake, slot);
        } else if (damage === "flags")
          page[at] = 4; // "pages adjacent" without an overflow
        else writeU64(page, 0, at + 7);
        sealPage(page, id as PageId, generation);
        be.setBytes("db", bytes);
        const re = open(be);
        const cursor = new TreeCursor(re);
        assert.throws(
          () => {
            cursor.seek("k00000");
            const run = new RecordRun();
            const taken = cursor.takeRun(run, 2, undefined, false);
            // A damaged record ends the run before it; the run that starts at it throws.
            assert.equal(taken, 1, `only record 0 is taken before damaged record ${target}`);
            cursor.seekAfter(run.keyOf(0));
            cursor.takeRun(new RecordRun(), 1, undefined, false);
          },
          (err) =>
            isEmdbError(err, "EMDB_CORRUPTED") &&
            (err.offset ?? -1) >= id * P &&
            (err.offset ?? -1) < (id + 1) * P,
          `${damage} of record ${target}`,
        );
        re.pager.close();
      }
    }
  });

  test("a corrupt link that loops is EMDB_CORRUPTED, never a hang", () => {
    const be = new MemoryBackend();
    const tree = open(be);
    tree.apply(
      Array.from({ length: 3000 }, (_, i) => put(`k${String(i).padStart(5, "0")}`, "v".repeat(20))),
    );
    tree.commit(1);
    const root = tree.root;
    const node = decodeBranch(tree.pager.read(root, PageType.Branch), 0, "db");
    assert.ok(node.height >= 2, "need a tree with two branch levels");
    const child = node.children[0]!;
    const pagerMeta = tree.pager.meta;
    tree.pager.close();
    const bytes = be.bytes("db");
    const page = bytes.subarray(child * P, (child + 1) * P);
    writeU64(page, root, 16); // the first child of a branch now points back at the root
    sealPage(page, child as PageId, pagerMeta.generation);
    be.setBytes("db", bytes);

    const re = open(be);
    assert.throws(
      () => re.forEach(() => {}),
      (err) => isEmdbError(err, "EMDB_CORRUPTED"),
    );
    const problems = re.check();
    assert.ok(problems.length > 0);
    re.pager.close();
  });
});
