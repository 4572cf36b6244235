/**
 * Full ordered scans of one freshly loaded database, repeated in one process: for comparing
 * two builds' scan paths where the full suite's scan line (one pass per run) moves with the
 * machine as much as with the code.
 *
 *   npx tsx bench/scan-time.ts [--n 100000] [--passes 15] [--flush]
 *
 * Inserts the workload's n records (shuffled) one by one under `manual()`, so that, below the
 * checkpoint threshold, they stay in the WAL and the scans read the in-memory index; with
 * `--flush`, checkpoints them so the scans read the tree (as after the suite's bulk line, a
 * transaction into an empty database that is checkpointed at once). Then times `passes` full
 * `iter()` scans and prints each rate and their median. To compare two builds, run it from
 * each checkout, alternately.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { Emdb, manual } from "../src/index.js";
import { buildWorkload } from "./workload.js";

const { values } = parseArgs({
  options: {
    n: { type: "string", default: "100000" },
    passes: { type: "string", default: "15" },
    flush: { type: "boolean", default: false },
  },
});
const n = Number(values.n);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-scan-time-"));
try {
  const wl = buildWorkload(n, true);
  const db = Emdb.builder().path(path.join(dir, "db")).flushPolicy(manual()).build();
  for (const i of wl.insertOrder) db.insert(wl.keys[i]!, wl.values[i]!);
  if (values.flush) db.flush();
  const rates: number[] = [];
  for (let p = 0; p < Number(values.passes); p++) {
    const t0 = performance.now();
    let count = 0;
    let bytes = 0;
    for (const [, v] of db.iter()) {
      count++;
      bytes += v.length;
    }
    const ms = performance.now() - t0;
    if (count !== n || bytes === 0) throw new Error(`scan saw ${count} entries, expected ${n}`);
    rates.push((n / ms) * 1000);
  }
  db.close();
  const sorted = [...rates].sort((a, b) => a - b);
  console.log(rates.map((r) => `${(r / 1e6).toFixed(2)}M`).join(" "));
  console.log(
    `median of ${rates.length}: ${(sorted[sorted.length >> 1]! / 1e6).toFixed(3)}M rec/s`,
  );
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
