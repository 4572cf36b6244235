/**
 * One checkpoint of keys appended past the last one (time-ordered keys) over a loaded
 * database: its time, how far it raises the process's peak RSS, and the page file's size
 * after it. Such a checkpoint adds the keys copy-on-write at the tree's right edge, in runs
 * of 16,384 changed keys, rather than rewriting the whole tree into fresh pages.
 *
 *   node --expose-gc --import tsx bench/append-flush.ts [--n 1000000] [--append 450000]
 *
 * Loads n records (the workload's key shape, 100-byte values) in one transaction, reopens
 * under `manual()` with a checkpoint threshold above everything, inserts the appended keys
 * one by one, then times `flush()`.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { Emdb, manual } from "../src/index.js";
import { keyOf, VALUE_BYTES } from "./workload.js";

const { values } = parseArgs({
  options: {
    n: { type: "string", default: "1000000" },
    append: { type: "string", default: "450000" },
  },
});
const n = Number(values.n);
const append = Number(values.append);
const MiB = 2 ** 20;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-append-flush-"));
const file = path.join(dir, "db");
const v = Buffer.alloc(VALUE_BYTES, 3);
try {
  let db = Emdb.builder().path(file).build();
  db.transaction((tx) => {
    for (let i = 0; i < n; i++) tx.insert(keyOf(i), v);
  });
  db.close();
  db = Emdb.builder()
    .path(file)
    .flushPolicy(manual())
    .checkpointThreshold(2 ** 40)
    .build();
  for (let i = n; i < n + append; i++) db.insert(keyOf(i), v);
  globalThis.gc?.();
  const peakBefore = process.resourceUsage().maxRSS / 1024;
  const t0 = performance.now();
  db.flush();
  const ms = performance.now() - t0;
  const peakAfter = process.resourceUsage().maxRSS / 1024;
  const size = fs.statSync(file).size / MiB;
  process.stdout.write(
    `${append} keys appended to ${n}: flush ${ms.toFixed(0)} ms, peak RSS ${peakBefore.toFixed(0)} -> ${peakAfter.toFixed(0)} MiB, page file ${size.toFixed(0)} MiB\n`,
  );
  db.close();
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
