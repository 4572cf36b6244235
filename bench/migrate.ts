/**
 * Migration benchmark: writes a 1,000,000-record emdb-rs v2 log (16-byte keys, 100-byte
 * values, with the test helpers' legacy writer) and times `Emdb.migrate` on it.
 * Run with `npx tsx bench/migrate.ts [--quick]`. emdb-rs 0.6 needs 7.5 s for 8,000 records.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Emdb } from "../src/index.js";
import { LogFileWriter } from "../test/helpers/legacy-writer.js";

const n = process.argv.includes("--quick") ? 50_000 : 1_000_000;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-bench-migrate-"));
try {
  const file = path.join(dir, "legacy.emdb");
  const w = new LogFileWriter(file, { version: 2 });
  const value = Buffer.alloc(100);
  let x = 1;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < 100; j += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      value.writeUInt32LE(x >>> 0, j);
    }
    // Shuffled key order, as a log written by a real application would be.
    const k = (i * 7_919) % n;
    w.append({ op: "insert", key: `user:${String(k).padStart(11, "0")}`, value, expiresAt: 0 });
  }
  w.close();
  const legacyBytes = fs.statSync(file).size;
  const t0 = process.hrtime.bigint();
  const report = Emdb.migrate(file)!;
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  console.log(
    `migrated ${report.entries} records (${(legacyBytes / 2 ** 20).toFixed(1)} MiB log v2) in ${ms.toFixed(0)} ms = ${Math.round((report.entries / ms) * 1000).toLocaleString("en")} records/s; new file ${(fs.statSync(file).size / 2 ** 20).toFixed(1)} MiB`,
  );
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
