/**
 * Read speed of the emdb-rs legacy log reader. Writes a v2 log of N records (16-byte keys,
 * 100-byte values, ttl Inserts, one 10-op batch every 1,000 records) to a temp dir, then reads
 * it with readLegacy in fresh child processes (so one run's garbage does not slow the next)
 * and prints records/s.
 *
 *   tsx bench/legacy-read.ts [N] [--shuffle] [--each]
 *
 * --shuffle writes the keys in random order; --each reads with readLegacyEach (no entry array).
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { readLegacy, readLegacyEach } from "../migrations/read-legacy.js";
import { LogFileWriter } from "../test/helpers/legacy-writer.js";

const RUNS = Number(process.env.RUNS ?? 5);

function write(file: string, n: number, shuffle: boolean): void {
  const ids = new Uint32Array(n);
  for (let i = 0; i < n; i++) ids[i] = i;
  if (shuffle) {
    let seed = 0x9e3779b9;
    for (let i = n - 1; i > 0; i--) {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      const j = seed % (i + 1);
      const t = ids[i]!;
      ids[i] = ids[j]!;
      ids[j] = t;
    }
  }
  const w = new LogFileWriter(file, { version: 2, flags: 1, lastTxId: 0 });
  const key = Buffer.alloc(16);
  const value = Buffer.alloc(100, 0x61);
  const put = (i: number) => {
    key.write(ids[i]!.toString(16).padStart(16, "0"), "latin1");
    value.writeUInt32LE(i, 0);
    w.append({ op: "insert", key, value, expiresAt: 0 });
  };
  let tx = 0;
  for (let i = 0; i < n; ) {
    if (i % 1000 === 0 && i + 10 <= n) {
      w.append({ op: "batchBegin", txId: ++tx, opCount: 10 });
      for (let j = 0; j < 10; j++) put(i++);
      w.append({ op: "batchEnd", txId: tx });
    } else {
      put(i++);
    }
  }
  w.close();
}

function readOnce(file: string, n: number, each: boolean): void {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const c = each
    ? readLegacyEach(file, () => {}, { now: Date.now() })
    : readLegacy(file, { now: Date.now() });
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  // CPU time as well as wall time: on a shared machine the wall time includes waiting.
  const cpuMs = (cpu.user + cpu.system) / 1000;
  const count = "entries" in c ? c.entries.length : c.count;
  if (count !== n) throw new Error(`read ${count} of ${n}`);
  const size = fs.statSync(file).size;
  const rss = process.memoryUsage().rss;
  console.log(
    `${n} records, ${(size / 1e6).toFixed(1)} MB in ${ms.toFixed(0)} ms = ` +
      `${Math.round((n / ms) * 1000).toLocaleString("en-US")} records/s, ` +
      `${(((size / ms) * 1000) / 1e6).toFixed(0)} MB/s; cpu ${cpuMs.toFixed(0)} ms = ` +
      `${Math.round((n / cpuMs) * 1000).toLocaleString("en-US")} records/cpu-s; rss ${(rss / 1e6).toFixed(0)} MB`,
  );
}

const args = process.argv.slice(2);
if (args[0] === "--read") {
  readOnce(args[1]!, Number(args[2]), args[3] === "--each");
} else {
  const n = Number(args.find((a) => !a.startsWith("--")) ?? 1_000_000);
  const shuffle = args.includes("--shuffle");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-legacy-bench-"));
  try {
    const file = path.join(dir, "big.emdb");
    write(file, n, shuffle);
    const self = fileURLToPath(import.meta.url);
    const times: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      const out = execFileSync(
        process.execPath,
        [
          ...process.execArgv,
          self,
          "--read",
          file,
          String(n),
          ...(args.includes("--each") ? ["--each"] : []),
        ],
        {
          encoding: "utf8",
        },
      );
      process.stdout.write(out);
      times.push(Number(/ in (\d+) ms/.exec(out)![1]));
    }
    times.sort((a, b) => a - b);
    const rate = (ms: number) => Math.round((n / ms) * 1000).toLocaleString("en-US");
    console.log(
      `best ${times[0]} ms = ${rate(times[0]!)} records/s; median ${times[times.length >> 1]} ms = ${rate(times[times.length >> 1]!)} records/s`,
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
