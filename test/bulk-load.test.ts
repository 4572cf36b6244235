import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type BulkEntry, bulkLoad } from "../src/btree/bulk-load.js";
import { treeShape } from "../src/btree/check.js";
import { maxKeySize } from "../src/btree/limits.js";
import { BTree } from "../src/btree/tree.js";
import { MemoryBackend } from "../src/pager/backend.js";
import { Pager } from "../src/pager/pager.js";
import { type Prng, withPrng } from "./helpers/prng.js";
import {
  applyToModel,
  assertSameContents,
  dumpTree,
  type Model,
  randomBatch,
} from "./helpers/tree-model.js";

function randomEntries(rng: Prng, n: number, maxValue: number, pageSize: number): BulkEntry[] {
  const keys = new Map<string, Buffer>();
  while (keys.size < n) {
    const key = rng.bytes(1 + rng.int(Math.min(40, maxKeySize(pageSize))));
    keys.set(key.toString("hex"), key);
  }
  return [...keys.values()].sort(Buffer.compare).map((key) => ({
    key,
    value: rng.bytes(rng.chance(0.05) ? rng.int(maxValue + 1) : rng.int(50)),
    expiresAt: rng.chance(0.2) ? 1 + rng.int(2 ** 45) : 0,
  }));
}

function toModel(entries: readonly BulkEntry[]): Model {
  return new Map(
    entries.map((e) => [e.key.toString("hex"), { value: e.value, expiresAt: e.expiresAt }]),
  );
}

function load(pageSize: number, entries: Iterable<BulkEntry>): { be: MemoryBackend; tree: BTree } {
  const be = new MemoryBackend();
  const pager = Pager.open(be, "db", { pageSize });
  const result = bulkLoad(pager, entries);
  pager.commit({ ...result, lastTxId: 1 });
  return { be, tree: new BTree(pager) };
}

describe("bulk load", () => {
  for (const pageSize of [512, 4096]) {
    test(`equals the model, checks clean, packs pages (${pageSize}-byte pages)`, () => {
      withPrng((rng) => {
        const entries = randomEntries(rng, 5000, 3 * pageSize, pageSize);
        const { be, tree } = load(pageSize, entries);
        const model = toModel(entries);
        assert.deepEqual(tree.check(), []);
        assert.equal(tree.entryCount, entries.length);
        assertSameContents(dumpTree(tree), model, "bulk loaded");
        const shape = treeShape(tree.pager, tree.root);
        assert.ok(shape.leafFill > 0.9, `leaf fill ${shape.leafFill}`);
        assert.equal(shape.underfullLeaves, 0);
        tree.pager.close();

        // Reopened, then updated copy-on-write like any other tree.
        const re = new BTree(Pager.open(be, "db"));
        assertSameContents(dumpTree(re), model, "reopened");
        for (let r = 2; r <= 6; r++) {
          const b = randomBatch(rng, model, {
            size: 200,
            keySpace: 3000,
            deleteRatio: 0.3,
            maxValue: 2 * pageSize,
          });
          re.apply(b);
          applyToModel(model, b);
          re.commit(r);
          re.pager.releasePending();
          assert.deepEqual(re.check(), []);
        }
        assertSameContents(dumpTree(re), model, "updated after bulk load");
        re.pager.close();
      });
    });
  }

  test("small inputs: nothing, one entry, a page and a bit", () => {
    for (const n of [0, 1, 2, 20, 21, 22, 60]) {
      const entries = Array.from({ length: n }, (_, i) => ({
        key: Buffer.from(`key${String(i).padStart(4, "0")}`),
        value: Buffer.alloc(10, i),
        expiresAt: 0,
      }));
      const { tree } = load(512, entries);
      assert.equal(tree.root === 0, n === 0);
      assert.deepEqual(tree.check(), [], `n=${n}`);
      assertSameContents(dumpTree(tree), toModel(entries), `n=${n}`);
      if (n > 0) {
        const shape = treeShape(tree.pager, tree.root);
        // The last two leaves are rebalanced: none is left nearly empty.
        assert.ok(shape.underfullLeaves === 0 || shape.leaves === 1, `n=${n}`);
      }
      tree.pager.close();
    }
  });

  test("unsorted or oversized input is rejected and leaves no transaction behind", () => {
    const be = new MemoryBackend();
    const pager = Pager.open(be, "db", { pageSize: 512 });
    const e = (k: string) => ({ key: Buffer.from(k), value: Buffer.from("v"), expiresAt: 0 });
    const many = Array.from({ length: 300 }, (_, i) => e(`k${String(i).padStart(4, "0")}`));
    assert.throws(() => bulkLoad(pager, [...many, e("a")]), /sorted/);
    assert.equal(pager.inTransaction, false);
    assert.throws(() => bulkLoad(pager, [e("a"), e("a")]), /sorted/);
    assert.throws(
      () => bulkLoad(pager, [{ key: Buffer.alloc(129), value: Buffer.alloc(0), expiresAt: 0 }]),
      RangeError,
    );
    assert.equal(pager.inTransaction, false);
    assert.equal(pager.pageCount, 2);
    pager.close();
  });

  test("consumes any iterable lazily, even one that reuses its buffers", () => {
    const key = Buffer.alloc(8);
    const value = Buffer.alloc(100);
    function* reused() {
      for (let i = 0; i < 3000; i++) {
        key.writeBigUInt64BE(BigInt(i));
        value.fill(i & 0xff);
        yield { key, value, expiresAt: 0 };
      }
    }
    const { tree } = load(512, reused());
    assert.deepEqual(tree.check(), []);
    let i = 0;
    tree.forEach((k, v) => {
      assert.equal(k.readBigUInt64BE(), BigInt(i));
      assert.equal(v[0], i & 0xff);
      i++;
    });
    assert.equal(i, 3000);
    tree.pager.close();
  });
});
