/**
 * Storage benchmark for the page file (issue "Durable storage"): not a test, run with
 * `npx tsx bench/storage.ts [--quick]`.
 *
 * 1. Checkpoint cost: a checkpoint of 100 changed keys at 10k and at 1M keys. Copy-on-write
 *    touches O(changes × depth) pages, so the two should cost about the same.
 * 2. Reopen time and file size at 1M records of 16-byte keys and 100-byte values (the
 *    node-peers.md §4 workload). Reopen runs in a fresh child process (module import
 *    excluded), as the peers were measured: four opens with the default pread reads, four
 *    with `useMmap(true)` (values stay in private maps of the file), alternating.
 *
 * One-shot phases are timed with hrtime, not tinybench: each is a single long operation on
 * a database that the measurement itself changes.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { Emdb, manual } from "../src/index.js";

const quick = process.argv.includes("--quick");
const child = process.argv[2] === "--reopen";

function key(i: number): Buffer {
  return Buffer.from(`user:${String(i).padStart(11, "0")}`, "latin1");
}

/** Deterministic 100-byte values (xorshift), so runs are comparable. */
function valueMaker(seed: number): () => Buffer {
  let x = seed >>> 0 || 1;
  return () => {
    const b = Buffer.allocUnsafe(100);
    for (let i = 0; i < 100; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      b.writeUInt32LE(x >>> 0, i);
    }
    return b;
  };
}

function ms(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function build(p: string, n: number): void {
  const db = Emdb.builder()
    .path(p)
    .flushPolicy(manual())
    .checkpointThreshold(1 << 30)
    .build();
  const value = valueMaker(n);
  db.transaction((tx) => {
    for (let i = 0; i < n; i++) tx.insert(key(i), value());
  });
  db.flush();
  db.close();
}

function checkpointCost(n: number): number {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-bench-"));
  try {
    const p = path.join(dir, "db.emdb");
    build(p, n);
    const db = Emdb.builder()
      .path(p)
      .flushPolicy(manual())
      .checkpointThreshold(1 << 30)
      .build();
    const value = valueMaker(7);
    const times: number[] = [];
    for (let round = 0; round < 15; round++) {
      for (let j = 0; j < 100; j++) db.insert(key(Math.floor(Math.random() * n)), value());
      const t0 = process.hrtime.bigint();
      db.flush();
      times.push(ms(t0));
    }
    db.close();
    return median(times);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function reopenAndSize(n: number): {
  build: number;
  reopen: number[];
  reopenMmap: number[];
  fileMiB: number;
  ratio: number;
} {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-bench-"));
  try {
    const p = path.join(dir, "db.emdb");
    const t0 = process.hrtime.bigint();
    build(p, n);
    const buildMs = ms(t0);
    const bytes = fs.statSync(p).size + fs.statSync(`${p}.wal`).size;
    const self = fileURLToPath(import.meta.url);
    const reopen: number[] = [];
    const reopenMmap: number[] = [];
    for (let r = 0; r < 8; r++) {
      const mmap = r % 2 === 1;
      const args = ["--import", "tsx", self, "--reopen", p, ...(mmap ? ["--mmap"] : [])];
      const out = execFileSync(process.execPath, args, { encoding: "utf8" });
      (mmap ? reopenMmap : reopen).push(Number(out.trim().split("\n").pop()));
    }
    const raw = n * 116;
    return { build: buildMs, reopen, reopenMmap, fileMiB: bytes / 2 ** 20, ratio: bytes / raw };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (child) {
  const p = process.argv[3]!;
  const t0 = process.hrtime.bigint();
  const db = Emdb.builder().path(p).useMmap(process.argv.includes("--mmap")).build();
  db.get(key(42));
  const t = ms(t0);
  db.close();
  process.stdout.write(`${t}\n`);
} else {
  const small = quick ? 2_000 : 10_000;
  const large = quick ? 20_000 : 1_000_000;
  console.log(
    `checkpoint of 100 changed keys at ${small} keys: ${checkpointCost(small).toFixed(2)} ms (median of 15)`,
  );
  console.log(
    `checkpoint of 100 changed keys at ${large} keys: ${checkpointCost(large).toFixed(2)} ms (median of 15)`,
  );
  const r = reopenAndSize(large);
  console.log(`build ${large} records (one transaction + flush): ${r.build.toFixed(0)} ms`);
  console.log(
    `reopen ${large} (fresh process, open + one get): first ${r.reopen[0]!.toFixed(0)} ms, steady median ${median(r.reopen.slice(1)).toFixed(0)} ms`,
  );
  console.log(
    `reopen ${large} with useMmap(true): ${r.reopenMmap.map((t) => t.toFixed(0)).join(", ")} ms, median ${median(r.reopenMmap).toFixed(0)} ms`,
  );
  console.log(
    `files on disk: ${r.fileMiB.toFixed(1)} MiB = ${r.ratio.toFixed(3)} × raw (16 + 100 bytes per record)`,
  );
}
