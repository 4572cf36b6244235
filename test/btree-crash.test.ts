import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { BTree, type Change } from "../src/btree/tree.js";
import { MemoryBackend } from "../src/pager/backend.js";
import { META_BYTES } from "../src/pager/meta.js";
import { type CommitFailpoint, Pager } from "../src/pager/pager.js";
import { type Prng, withPrng } from "./helpers/prng.js";
import {
  applyToModel,
  dumpTree,
  type Model,
  randomBatch,
  sameContents,
} from "./helpers/tree-model.js";

const P = 512;

interface Base {
  readonly image: Buffer;
  readonly before: Model;
  readonly batches: Change[][];
  readonly after: Model;
}

/** A committed file (with pending pages from its last commit) and the next checkpoint. */
function makeBase(rng: Prng): Base {
  const be = new MemoryBackend();
  const tree = new BTree(Pager.open(be, "db", { pageSize: P }));
  const model: Model = new Map();
  for (let r = 1; r <= 6; r++) {
    const b = randomBatch(rng, model, {
      size: 120,
      keySpace: 800,
      deleteRatio: 0.3,
      maxValue: 2500,
    });
    tree.apply(b);
    applyToModel(model, b);
    tree.commit(r);
    if (r < 6) tree.pager.releasePending();
  }
  tree.pager.close();
  const after: Model = new Map(model);
  const batches: Change[][] = [];
  for (let k = 0; k < 2; k++) {
    const b = randomBatch(rng, after, {
      size: 80,
      keySpace: 800,
      deleteRatio: 0.4,
      maxValue: 2500,
    });
    applyToModel(after, b);
    batches.push(b);
  }
  return { image: be.bytes("db"), before: model, batches, after };
}

interface Run {
  readonly be: MemoryBackend;
  readonly tree: BTree;
}

function start(base: Base, spillBytes: number, release: boolean): Run {
  const be = new MemoryBackend();
  be.setBytes("db", base.image);
  const tree = new BTree(Pager.open(be, "db", { pageSize: P, spillBytes, cachePages: 16 }));
  if (release) tree.pager.releasePending();
  return { be, tree };
}

/** The checkpoint under test: two batches applied, then one commit. */
function checkpoint(run: Run, base: Base): void {
  for (const b of base.batches) run.tree.apply(b);
  run.tree.commit(7);
}

/**
 * Power loss with a volatile write cache: any subset of the writes since the last sync may
 * have reached the disk, in whole pages, and the page holding the meta may be torn.
 */
function powerLoss(rng: Prng, be: MemoryBackend): void {
  const img = be.image("db");
  const live = img.live;
  const durable = Buffer.alloc(Math.max(live.length, img.durable.length));
  img.durable.copy(durable);
  for (let at = 0; at < live.length; at += P) {
    const end = Math.min(at + P, live.length);
    if (live.subarray(at, end).equals(durable.subarray(at, end))) continue;
    const roll = rng.next() / 0x1_0000_0000;
    if (roll < 0.4) live.copy(durable, at, at, end);
    else if (roll < 0.6) {
      const cut = at + rng.int(Math.min(META_BYTES, end - at));
      live.copy(durable, at, at, cut);
    }
  }
  img.durable = durable.subarray(0, rng.chance(0.5) ? live.length : img.durable.length);
  be.crash();
}

/** Reopens after the crash: the tree is exactly the old or the new state, and consistent. */
function verify(be: MemoryBackend, base: Base, expect: "old" | "new" | "either"): "old" | "new" {
  const tree = new BTree(Pager.open(be, "db"));
  assert.deepEqual(tree.check(), [], "check() after the crash");
  const got = dumpTree(tree);
  const isOld = sameContents(got, base.before);
  const isNew = sameContents(got, base.after);
  assert.ok(isOld || isNew, `after the crash the tree is neither state (${got.size} entries)`);
  const state = isNew ? "new" : "old";
  if (expect !== "either") assert.equal(state, expect);
  assert.equal(tree.pager.meta.generation, state === "new" ? 7 : 6);
  // The file goes on working from there.
  tree.pager.releasePending();
  tree.apply([{ key: Buffer.from("zz-after-crash"), value: Buffer.from("ok"), expiresAt: 0 }]);
  tree.commit(8);
  assert.deepEqual(tree.check(), []);
  tree.pager.close();
  return state;
}

describe("btree crash safety", () => {
  const failpoints: CommitFailpoint[] = [
    "commit:pages-written",
    "commit:pages-synced",
    "commit:meta-written",
    "commit:meta-synced",
  ];
  for (const fp of failpoints) {
    test(`crash at ${fp}`, () => {
      withPrng((rng) => {
        const base = makeBase(rng);
        for (const release of [false, true]) {
          const run = start(base, 1 << 20, release);
          run.tree.pager.failpoint = (name) => {
            if (name === fp) throw new Error(`crash at ${name}`);
          };
          assert.throws(() => checkpoint(run, base), /crash at/);
          run.be.crash();
          verify(run.be, base, fp === "commit:meta-synced" ? "new" : "old");
        }
      });
    });
  }

  test("crash after every possible number of writes and at each sync", () => {
    withPrng((rng) => {
      const base = makeBase(rng);
      for (const [spill, release] of [
        [1 << 20, true],
        [3 * P, false],
      ] as const) {
        // Count the operations of an undisturbed checkpoint.
        const dry = start(base, spill, release);
        let writes = 0;
        let syncs = 0;
        dry.be.hook = (op) => {
          if (op === "write") writes++;
          if (op === "sync") syncs++;
        };
        checkpoint(dry, base);
        assert.ok(writes > 2 && syncs === 2, `${writes} writes, ${syncs} syncs`);
        const outcomes = new Set<string>();
        for (let n = 0; n < writes; n++) {
          const run = start(base, spill, release);
          let seen = 0;
          run.be.hook = (op) => {
            if (op === "write" && seen++ === n) throw new Error(`crash before write ${n}`);
          };
          assert.throws(() => checkpoint(run, base), /crash before write/);
          run.be.crash();
          outcomes.add(verify(run.be, base, "old"));
        }
        for (let n = 0; n < syncs; n++) {
          const run = start(base, spill, release);
          let seen = 0;
          run.be.hook = (op) => {
            if (op === "sync" && seen++ === n) throw new Error(`crash before sync ${n}`);
          };
          assert.throws(() => checkpoint(run, base), /crash before sync/);
          run.be.crash();
          outcomes.add(verify(run.be, base, "old"));
        }
        assert.deepEqual([...outcomes], ["old"]);
      }
    });
  });

  test("power loss that keeps a random subset of unsynced writes, torn meta included", () => {
    withPrng((rng) => {
      const base = makeBase(rng);
      const outcomes = { old: 0, new: 0 };
      for (let i = 0; i < 40; i++) {
        const run = start(base, rng.chance(0.5) ? 3 * P : 1 << 20, rng.chance(0.5));
        const stopAt: CommitFailpoint = rng.chance(0.5)
          ? "commit:pages-written"
          : "commit:meta-written";
        run.tree.pager.failpoint = (name) => {
          if (name === stopAt) throw new Error("power loss");
        };
        assert.throws(() => checkpoint(run, base), /power loss/);
        powerLoss(rng, run.be);
        outcomes[verify(run.be, base, "either")]++;
      }
      // Both outcomes must be reachable, or the test proves less than it claims.
      assert.ok(outcomes.old > 0 && outcomes.new > 0, JSON.stringify(outcomes));
    });
  });

  test("a crash during a checkpoint right after a crash-recovered open", () => {
    withPrng((rng) => {
      const base = makeBase(rng);
      const run = start(base, 1 << 20, false);
      run.tree.pager.failpoint = (name) => {
        if (name === "commit:meta-written") throw new Error("first crash");
      };
      assert.throws(() => checkpoint(run, base), /first crash/);
      run.be.crash();
      // Reopen without releasing anything and crash again, mid-pages this time.
      const again = new BTree(Pager.open(run.be, "db", { spillBytes: 2 * P }));
      let n = 0;
      run.be.hook = (op) => {
        if (op === "write" && n++ === 5) throw new Error("second crash");
      };
      assert.throws(() => checkpoint({ be: run.be, tree: again }, base), /second crash/);
      run.be.crash();
      verify(run.be, base, "old");
    });
  });
});
