/**
 * Measures the page file's two bulk paths on the node-peers workload (16-byte keys,
 * 100-byte values): `bulkLoad` (compact, migration) and `forEach` (every open), plus the
 * file size and the cost of a small checkpoint at that size. A plain timing script, not a
 * peer comparison: `node --import tsx bench/btree-load-scan.ts [entries]`.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { bulkLoad } from "../src/btree/bulk-load.js";
import { treeShape } from "../src/btree/check.js";
import { BTree, type Change } from "../src/btree/tree.js";
import { FileBackend } from "../src/pager/backend.js";
import { Pager } from "../src/pager/pager.js";

const N = Number(process.argv[2] ?? 1_000_000);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-bench-"));
const file = path.join(dir, "bench.emdb");

function key(i: number): Buffer {
  const k = Buffer.allocUnsafe(16);
  k.writeUInt32BE(0x6b657900, 0); // "key\0"
  k.writeUInt32BE(0, 4);
  k.writeUInt32BE(Math.floor(i / 2 ** 32), 8);
  k.writeUInt32BE(i >>> 0, 12);
  return k;
}

try {
  const value = Buffer.alloc(100, 0x76);
  const entries = function* () {
    for (let i = 0; i < N; i++) yield { key: key(2 * i), value, expiresAt: 0 };
  };

  let t = performance.now();
  let pager = Pager.open(new FileBackend(), file);
  const loaded = bulkLoad(pager, entries());
  pager.commit({ ...loaded, lastTxId: 1 });
  const loadMs = performance.now() - t;
  const shape = treeShape(pager, loaded.root);
  pager.close();
  const size = fs.statSync(file).size;
  const raw = N * 116;
  console.log(
    `bulkLoad ${N} entries: ${loadMs.toFixed(0)} ms = ${((N / loadMs) * 1000).toFixed(0)} entries/s (incl. fdatasync)`,
  );
  console.log(
    `file size ${(size / 1e6).toFixed(1)} MB = ${(size / raw).toFixed(3)} x raw ${(raw / 1e6).toFixed(1)} MB; height ${shape.height}, ${shape.leaves} leaves (fill ${(shape.leafFill * 100).toFixed(1)}%), ${shape.branches} branches`,
  );

  for (let run = 0; run < 3; run++) {
    t = performance.now();
    pager = Pager.open(new FileBackend(), file);
    const tree = new BTree(pager);
    let n = 0;
    let bytes = 0;
    tree.forEach((k, v) => {
      n++;
      bytes += k.length + v.length;
    });
    const scanMs = performance.now() - t;
    console.log(
      `open + forEach: ${n} entries in ${scanMs.toFixed(0)} ms = ${((n / scanMs) * 1000).toFixed(0)} entries/s (${bytes} bytes)`,
    );
    pager.close();
  }

  pager = Pager.open(new FileBackend(), file);
  const tree = new BTree(pager);
  for (const size of [100, 1000, 10_000]) {
    const changes: Change[] = [];
    const step = Math.floor((2 * N) / size);
    for (let i = 0; i < size; i++) {
      const at = i * step + 1 + (i % 2); // alternate inserts (odd) and updates (even)
      changes.push({ key: key(at), value: Buffer.alloc(100, i), expiresAt: 0 });
    }
    const before = pager.stats().pagesWritten;
    t = performance.now();
    tree.apply(changes);
    tree.commit(2);
    pager.releasePending();
    const ms = performance.now() - t;
    console.log(
      `checkpoint of ${size} changes at ${N} entries: ${ms.toFixed(1)} ms, ${pager.stats().pagesWritten - before} pages written`,
    );
  }
  t = performance.now();
  const problems = tree.check();
  console.log(`check(): ${problems.length} problems in ${(performance.now() - t).toFixed(0)} ms`);
  pager.close();
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
