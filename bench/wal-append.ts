/**
 * WAL append throughput without I/O: 16-byte keys, 100-byte values, into a writer whose file
 * discards writes (so only encoding, checksumming and buffer management are measured), plus
 * replay throughput from a MemoryBackend. Run: `npx tsx bench/wal-append.ts`.
 * Plain hrtime loops: tinybench is not a dependency of this package yet.
 */
import { MemoryBackend, type StorageBackend, type StorageFile } from "../src/pager/backend.js";
import { replayWal } from "../src/wal/replay.js";
import { WalWriter } from "../src/wal/writer.js";

class NullFile implements StorageFile {
  readonly fd = undefined;
  private length = 0;
  constructor(readonly name: string) {}
  size(): number {
    return this.length;
  }
  read(): number {
    return 0;
  }
  write(_buf: Buffer, _offset: number, length: number, position: number): void {
    this.length = Math.max(this.length, position + length);
  }
  truncate(length: number): void {
    this.length = length;
  }
  sync(): void {}
  close(): void {}
}

const nullBackend: StorageBackend = {
  open: (name) => new NullFile(name),
  exists: () => true,
  remove: () => {},
  rename: () => {},
  syncDir: () => {},
};

const N = 1_000_000;
const fileId = Buffer.alloc(16, 7);
const value = Buffer.alloc(100, 0x61);
const stringKeys = Array.from({ length: N }, (_, i) => `key:${i.toString().padStart(12, "0")}`);
const bufferKeys = stringKeys.slice(0, 100_000).map((k) => Buffer.from(k, "latin1"));

function run(label: string, count: number, body: (w: WalWriter, i: number) => void): void {
  const w = WalWriter.create(nullBackend, "bench.wal", fileId, 1);
  for (let i = 0; i < 50_000; i++) body(w, i); // warm-up
  w.reset(2);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < count; i++) body(w, i);
  w.writeOut();
  const ns = Number(process.hrtime.bigint() - t0);
  console.log(
    `${label}: ${((count / ns) * 1e9).toFixed(0)} appends/s (${(ns / count).toFixed(0)} ns/op)`,
  );
}

run("appendPut string key", N, (w, i) => w.appendPut(stringKeys[i]!, value, 0));
run("appendPut Buffer key", N, (w, i) => w.appendPut(bufferKeys[i % bufferKeys.length]!, value, 0));
run("appendDelete string key", N, (w, i) => w.appendDelete(stringKeys[i]!));

const mem = new MemoryBackend();
const w = WalWriter.create(mem, "r.wal", fileId, 1);
for (let i = 0; i < N; i++) w.appendPut(stringKeys[i]!, value, 0);
w.sync();
const t0 = process.hrtime.bigint();
let ops = 0;
const r = replayWal(mem, "r.wal", { fileId, generation: 1 }, () => {
  ops++;
});
const ns = Number(process.hrtime.bigint() - t0);
console.log(
  `replay: ${ops} ops, ${(r.fileSize / 1048576).toFixed(0)} MiB in ${(ns / 1e6).toFixed(0)} ms (${((ops / ns) * 1e9).toFixed(0)} records/s)`,
);

// A 64 MiB value on real files: append (written straight through), sync, replay; then the
// forward scan over a torn 64 MiB record (every byte offset checked for a following record).
{
  const fs = await import("node:fs");
  const os = await import("node:os");
  const path = await import("node:path");
  const { FileBackend } = await import("../src/pager/backend.js");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-wal-bench-"));
  try {
    const backend = new FileBackend();
    const walPath = path.join(dir, "big.wal");
    const big = Buffer.alloc(64 * 1024 * 1024, 0x42);
    const ms = (t: bigint) => (Number(process.hrtime.bigint() - t) / 1e6).toFixed(0);
    let t = process.hrtime.bigint();
    const bw = WalWriter.create(backend, walPath, fileId, 1);
    bw.appendPut("big", big, 0);
    bw.sync();
    bw.close();
    console.log(`64 MiB put + fdatasync: ${ms(t)} ms`);
    t = process.hrtime.bigint();
    replayWal(backend, walPath, { fileId, generation: 1 }, () => {});
    console.log(`64 MiB replay: ${ms(t)} ms`);
    fs.truncateSync(walPath, fs.statSync(walPath).size - 1);
    t = process.hrtime.bigint();
    const r = replayWal(backend, walPath, { fileId, generation: 1 }, () => {});
    console.log(`64 MiB torn record, forward scan: ${ms(t)} ms (torn at ${r.tornTail?.offset})`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
