/**
 * Why the WAL is preallocated (`src/wal/writer.ts`): the cost of a durable 116-byte commit
 * (`writeSync` + `fdatasyncSync`) when each write grows the file, against the same writes
 * into zeros written and synced beforehand, and through emdb's own `WalWriter`. Medians of
 * 3 runs of 2,000 commits each, in a temporary directory on the disk under test.
 * Run: `npx tsx bench/wal-fsync.ts [dir]`.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { FileBackend } from "../src/pager/backend.js";
import { WalWriter } from "../src/wal/writer.js";

const COMMITS = 2000;
const RECORD = Buffer.alloc(116, 7);
const dir = fs.mkdtempSync(path.join(process.argv[2] ?? os.tmpdir(), "emdb-wal-fsync-"));

function rawLoop(preallocate: boolean): number {
  const p = path.join(dir, "raw");
  const fd = fs.openSync(p, "w+");
  try {
    if (preallocate) {
      fs.writeSync(fd, Buffer.alloc(COMMITS * RECORD.length + 4096), 0);
      fs.fsyncSync(fd);
    }
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < COMMITS; i++) {
      fs.writeSync(fd, RECORD, 0, RECORD.length, i * RECORD.length);
      fs.fdatasyncSync(fd);
    }
    return Number(process.hrtime.bigint() - t0) / 1000 / COMMITS;
  } finally {
    fs.closeSync(fd);
    fs.rmSync(p);
  }
}

function walWriterLoop(): number {
  const p = path.join(dir, "db.wal");
  const w = WalWriter.create(new FileBackend(), p, Buffer.alloc(16, 1), 1);
  try {
    const key = "user:00000000000";
    const value = Buffer.alloc(100, 3);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < COMMITS; i++) {
      w.appendPut(key, value, 0);
      w.sync();
    }
    return Number(process.hrtime.bigint() - t0) / 1000 / COMMITS;
  } finally {
    w.close();
    fs.rmSync(p);
  }
}

const median = (f: () => number) => {
  const xs = [f(), f(), f()].sort((a, b) => a - b);
  return xs[1]!;
};
try {
  const grow = median(() => rawLoop(false));
  const inPlace = median(() => rawLoop(true));
  const wal = median(walWriterLoop);
  console.log(`durable 116-byte commits, median of 3 × ${COMMITS}, in ${dir}:`);
  console.log(`  write + fdatasync, growing the file:      ${grow.toFixed(1)} µs`);
  console.log(`  write + fdatasync, into synced zeros:     ${inPlace.toFixed(1)} µs`);
  console.log(`  WalWriter appendPut + sync (preallocates): ${wal.toFixed(1)} µs`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
