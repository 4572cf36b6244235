/**
 * Open time of one file, in fresh processes: for comparing two builds' opens on the very
 * same file, alternating runs, where the full suite's reopen line (3 runs, each on its own
 * freshly loaded file) moves with the machine as much as with the code.
 *
 *   npx tsx bench/open-time.ts [--n 1000000] [--runs 7] [--file PATH] [--wal | --expired | --ttl] [--reads] [--mmap]
 *
 * Without `--file`, it writes one (the workload's keys and values in key order, one
 * transaction, then `flush()`) in a temporary directory and removes it afterwards. With
 * `--wal`, the n records are left in the WAL instead, as after a crash: inserted one by one,
 * in random key order, under `everyN(1000)` with a checkpoint threshold above their size, by a process that exits
 * without `close()`. With `--expired`, every record has a deadline that has passed by the open
 * (a cache reopened after a day): the open drops them all, checkpointing that, so each run
 * opens a fresh copy of the file. With `--ttl`, every record has a deadline a day ahead.
 * Each run is a child process timing `Emdb.builder().path(p).build()` plus
 * one `get`; it exits without closing, so a WAL is replayed by every run. It prints each
 * run's milliseconds, RSS after the open and peak RSS, then the medians. To compare two
 * builds, run it from each checkout, alternately, on the same `--file`. With `--reads`, each
 * child then also times a million random point reads of the loaded keys (three rounds, the
 * best counted): how the index an open builds serves reads, which a change to the load
 * must not slow. With `--mmap`, the children open with `useMmap(true)`.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Emdb, everyN, manual, Ttl } from "../src/index.js";
import { keyOf, prng, VALUE_BYTES } from "./workload.js";

const { values } = parseArgs({
  options: {
    n: { type: "string", default: "1000000" },
    runs: { type: "string", default: "7" },
    file: { type: "string" },
    wal: { type: "boolean", default: false },
    expired: { type: "boolean", default: false },
    ttl: { type: "boolean", default: false },
    reads: { type: "boolean", default: false },
    mmap: { type: "boolean", default: false },
    child: { type: "string" },
    "write-wal": { type: "string" },
  },
});

const MiB = 2 ** 20;

if (values.child !== undefined) {
  const t0 = performance.now();
  const db = Emdb.builder().path(values.child).useMmap(values.mmap).build();
  db.get(keyOf(123));
  const ms = performance.now() - t0;
  const peak = (process.resourceUsage().maxRSS * 1024) / MiB;
  let readRate = 0;
  if (values.reads) {
    const n = db.len();
    const next = prng(7);
    const keys = Array.from({ length: 1_000_000 }, () => keyOf(next() % n).toString("latin1"));
    for (let round = 0; round < 3; round++) {
      const t = performance.now();
      for (const k of keys) if (db.get(k) === undefined) throw new Error(`key ${k} missing`);
      readRate = Math.max(readRate, keys.length / ((performance.now() - t) / 1000));
    }
  }
  process.stdout.write(`${ms} ${process.memoryUsage().rss / MiB} ${peak} ${readRate}\n`);
  // No close(): it would checkpoint, and the next run would find the WAL empty.
  process.exit(0);
} else if (values["write-wal"] !== undefined) {
  const n = Number(values.n);
  const db = Emdb.builder()
    .path(values["write-wal"])
    .flushPolicy(everyN(1000))
    .checkpointThreshold(2 ** 40)
    .build();
  const next = prng(1);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = next() % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const v = Buffer.alloc(VALUE_BYTES);
  for (const i of order) {
    for (let j = 0; j + 4 <= VALUE_BYTES; j += 4) v.writeUInt32LE(next(), j);
    db.insert(keyOf(i), v);
  }
  process.exit(0); // no close(): every record stays in the WAL
} else {
  const n = Number(values.n);
  const runs = Number(values.runs);
  let dir: string | undefined;
  let file = values.file;
  if (file === undefined) {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-open-time-"));
    file = path.join(dir, "db");
  }
  const self = fileURLToPath(import.meta.url);
  if (values.file === undefined && values.wal) {
    const out = spawnSync(
      process.execPath,
      ["--import", "tsx", self, "--write-wal", file, "--n", String(n)],
      {
        encoding: "utf8",
      },
    );
    if (out.status !== 0) throw new Error(`WAL writer failed: ${out.stderr}`);
  } else if (values.file === undefined) {
    // With --expired, written a day ago with an hour to live.
    const then = Date.now() - 24 * 3600_000;
    const builder = Emdb.builder().path(file).flushPolicy(manual());
    if (values.expired) builder.clock(() => then);
    const db = builder.build();
    const next = prng(1);
    const v = Buffer.alloc(VALUE_BYTES);
    const ttl = values.expired
      ? Ttl.after(3600_000)
      : values.ttl
        ? Ttl.after(24 * 3600_000)
        : Ttl.never();
    db.transaction((tx) => {
      for (let i = 0; i < n; i++) {
        for (let j = 0; j + 4 <= VALUE_BYTES; j += 4) v.writeUInt32LE(next(), j);
        tx.insertWithTtl(keyOf(i), v, ttl);
      }
    });
    db.flush();
    db.close();
  }
  const ms: number[] = [];
  const rss: number[] = [];
  const peaks: number[] = [];
  const rates: number[] = [];
  // The open of expired records changes the file: each run gets its own copy.
  const runFile = values.expired ? `${file}.run` : file;
  for (let r = 0; r < runs; r++) {
    if (values.expired) {
      for (const f of [runFile, `${runFile}.wal`]) fs.rmSync(f, { force: true });
      fs.copyFileSync(file, runFile);
    }
    const args = [
      "--import",
      "tsx",
      self,
      "--child",
      runFile,
      ...(values.reads ? ["--reads"] : []),
      ...(values.mmap ? ["--mmap"] : []),
    ];
    const out = spawnSync(process.execPath, args, { encoding: "utf8" });
    if (out.status !== 0) throw new Error(`open child failed: ${out.stderr}`);
    const [t, m, pk, rate] = out.stdout.trim().split(" ").map(Number);
    ms.push(t!);
    rss.push(m!);
    peaks.push(pk!);
    rates.push(rate!);
    const reads = values.reads ? `, ${(rate! / 1e3).toFixed(0)}k reads/s` : "";
    process.stdout.write(
      `run ${r + 1}: ${t!.toFixed(0)} ms, RSS ${m!.toFixed(0)} MiB, peak ${pk!.toFixed(0)} MiB${reads}\n`,
    );
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  process.stdout.write(
    `median of ${runs}: ${median(ms).toFixed(0)} ms, RSS ${median(rss).toFixed(0)} MiB, peak ${median(peaks).toFixed(0)} MiB${values.reads ? `, ${(median(rates) / 1e3).toFixed(0)}k reads/s` : ""}\n`,
  );
  if (values.expired) {
    for (const f of [runFile, `${runFile}.wal`, `${runFile}.lock`]) fs.rmSync(f, { force: true });
  }
  if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
}
