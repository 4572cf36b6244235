/**
 * Small measuring tools shared by the child tasks: a clock, a GC fence, peak RSS, on-disk
 * size, and the raw append + fdatasync loop that bounds any durable single-record commit.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { MaybePromise } from "./engine.js";

/** Milliseconds since an arbitrary origin, from the monotonic nanosecond clock. */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** The profiler turns the fence off: it collects before it starts sampling instead. */
export const heapFence = { enabled: true };

/**
 * Collects garbage before a timed phase when the child runs with --expose-gc, so one
 * phase's leftovers are not charged to the next engine phase's clock.
 */
export function settleHeap(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc !== undefined && heapFence.enabled) {
    gc();
    gc();
  }
}

/** Peak resident set size of this process so far, in bytes (maxRSS is in KiB). */
export function peakRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

export function isPromise<T>(x: MaybePromise<T>): x is Promise<T> {
  return typeof (x as { then?: unknown } | undefined)?.then === "function";
}

export interface DiskSize {
  /** st_blocks × 512: what the files occupy. */
  allocated: number;
  /** Sum of st_size. */
  apparent: number;
  files: number;
}

/** Every file under `dir`, recursively: each engine keeps its own directory. */
export function diskSize(dir: string): DiskSize {
  const out: DiskSize = { allocated: 0, apparent: 0, files: 0 };
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      const sub = diskSize(p);
      out.allocated += sub.allocated;
      out.apparent += sub.apparent;
      out.files += sub.files;
    } else if (entry.isFile()) {
      const st = fs.statSync(p);
      out.allocated += st.blocks * 512;
      out.apparent += st.size;
      out.files++;
    }
  }
  return out;
}

/**
 * The physical limit for durable single-record commits on this disk: append one record's
 * worth of bytes (16-byte key + 100-byte value) and fdatasync, `count` times.
 */
export function rawFsyncLoop(dir: string, count: number, recordBytes: number): number {
  const file = path.join(dir, "raw-fsync.log");
  const fd = fs.openSync(file, "a");
  const record = Buffer.alloc(recordBytes, 0x61);
  try {
    // One untimed round so the file exists on disk and its metadata is settled.
    fs.writeSync(fd, record);
    fs.fdatasyncSync(fd);
    const t0 = nowMs();
    for (let i = 0; i < count; i++) {
      fs.writeSync(fd, record);
      fs.fdatasyncSync(fd);
    }
    return (count / (nowMs() - t0)) * 1000;
  } finally {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
  }
}
