/**
 * Child-process body of the "more than 2^24 keys" test: run with a large heap so the
 * parent test process stays small. Prints one JSON line with what it observed.
 */
import { Emdb } from "../../src/index.js";

const n = Number(process.argv[2] ?? 2 ** 24 + 1000);
const db = Emdb.openInMemory();
const t0 = Date.now();
for (let i = 0; i < n; i++) db.insert(`k${i.toString(36).padStart(6, "0")}`, "");
const stats = db.stats();
const last = [...db.range({ reverse: true, limit: 2 })].map(([k]) => k.toString());
const probe = [0, 2 ** 24 - 1, 2 ** 24, n - 1].map((i) =>
  db.containsKey(`k${i.toString(36).padStart(6, "0")}`),
);
db.remove(`k${(0).toString(36).padStart(6, "0")}`);
process.stdout.write(
  `${JSON.stringify({
    len: db.len(),
    liveKeys: stats.liveKeys,
    maxShard: Math.max(...stats.shardSizes),
    minShard: Math.min(...stats.shardSizes),
    last,
    probe,
    ms: Date.now() - t0,
  })}\n`,
);
