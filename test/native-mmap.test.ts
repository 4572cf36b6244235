/**
 * Memory maps: the addon's mmap/msync/madvise and MappedFile (src/pager/mmap-reader.ts).
 * Most tests need the native addon and are skipped, with the reason, when it is missing.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import * as v8 from "node:v8";
import * as vm from "node:vm";
import { Emdb, manual } from "../src/index.js";
import { FileBackend, MemoryBackend, type StorageFile } from "../src/pager/backend.js";
import { MappedFile } from "../src/pager/mmap-reader.js";
import { native, nativeLoadError } from "../src/pager/native.js";
import { runToEnd } from "./helpers/kill-child.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const FALLBACK_HELPER = fileURLToPath(new URL("./helpers/mmap-fallback.ts", import.meta.url));
const NO_NATIVE = native === undefined ? `native addon not built: ${nativeLoadError}` : false;
if (native === undefined) console.log(`# mmap tests skipped: ${nativeLoadError}`);

const KiB = 1024;
const GiB = 2 ** 30;
/** Small windows, so several windows and their boundaries fit in a few hundred KiB. */
const WINDOW = 64 * KiB;

function tempFile(t: { after(fn: () => void): void }, name = "data.bin"): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-mmap-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, name);
}

function openFile(t: { after(fn: () => void): void }, file: string): StorageFile {
  const f = new FileBackend().open(file, true);
  t.after(() => f.close());
  return f;
}

/** Bytes that differ at every offset, so a view at the wrong place cannot match. */
function pattern(length: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = seed >>> 0;
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

function preadAt(f: StorageFile, offset: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  assert.equal(f.read(buf, 0, length, offset), length);
  return buf;
}

function append(f: StorageFile, data: Buffer): void {
  f.write(data, 0, data.length, f.size());
}

test("MappedFile.open is undefined for a file without an OS descriptor", () => {
  const f = new MemoryBackend().open("mem", true);
  assert.equal(MappedFile.open(f), undefined);
});

test("MappedFile.open is undefined with EMDB_DISABLE_NATIVE=1", async (t) => {
  const file = tempFile(t);
  const env: NodeJS.ProcessEnv = { ...process.env, EMDB_DISABLE_NATIVE: "1" };
  const r = await runToEnd(["--import", "tsx", FALLBACK_HELPER, file], { cwd: ROOT, env });
  const out = r.stdout + r.stderr;
  const code = r.code;
  assert.equal(code, 0, out);
  assert.deepEqual(JSON.parse(out), { native: false, mapped: false });
});

test("views equal what pread returns, inside and across windows", { skip: NO_NATIVE }, (t) => {
  const f = openFile(t, tempFile(t));
  const size = 3 * WINDOW + 1234;
  append(f, pattern(size, 7));
  const m = MappedFile.open(f, { windowSize: WINDOW })!;
  assert.equal(m.size, size);
  const cases: Array<[number, number]> = [
    [0, 1],
    [0, WINDOW],
    [1, 4096],
    [WINDOW - 1, 1],
    [WINDOW - 5, 10], // crosses into window 1
    [WINDOW, WINDOW],
    [2 * WINDOW - 100, WINDOW + 200], // spans all of window 2's start
    [3 * WINDOW, 1234], // the partial last window
    [size - 1, 1],
    [0, size], // all windows
    [12345, 0],
  ];
  for (const [offset, length] of cases) {
    assert.deepEqual(
      m.view(offset, length),
      preadAt(f, offset, length),
      `view(${offset}, ${length})`,
    );
  }
});

test("a view inside one window is the mapping itself, not a copy", { skip: NO_NATIVE }, (t) => {
  const f = openFile(t, tempFile(t));
  append(f, pattern(2 * WINDOW, 1));
  const m = MappedFile.open(f, { windowSize: WINDOW })!;
  const inside = m.view(100, 8);
  const across = m.view(WINDOW - 4, 8);
  const before = Buffer.from(across);
  f.write(Buffer.from("ABCDEFGH"), 0, 8, 100);
  f.write(Buffer.from("abcdefgh"), 0, 8, WINDOW - 4);
  assert.equal(inside.toString("latin1"), "ABCDEFGH", "MAP_SHARED: sees the later write");
  assert.deepEqual(across, before, "a view across a window boundary is a copy");
  assert.equal(m.view(WINDOW - 4, 8).toString("latin1"), "abcdefgh");
});

test("offsets past 2 GiB work (sparse 3 GiB file)", { skip: NO_NATIVE }, (t) => {
  const file = tempFile(t, "sparse.bin");
  const f = openFile(t, file);
  f.truncate(3 * GiB); // sparse: no blocks are allocated
  const marker = Buffer.from("emdb-marker-at-2.5GiB");
  f.write(marker, 0, marker.length, 2.5 * GiB);
  const straddle = Buffer.from("<2GiB>");
  f.write(straddle, 0, straddle.length, 2 * GiB - 3);
  const m = MappedFile.open(f)!;
  assert.equal(m.size, 3 * GiB);
  assert.deepEqual(m.view(2.5 * GiB, marker.length), marker);
  assert.deepEqual(m.view(2 * GiB - 3, straddle.length), straddle);
  assert.deepEqual(m.view(3 * GiB - 4, 4), Buffer.alloc(4));
  assert.ok(fs.statSync(file).blocks * 512 < 64 * 1024 * 1024, "the file stayed sparse");
});

test("remap after growth maps only what changed", { skip: NO_NATIVE }, (t) => {
  const f = openFile(t, tempFile(t));
  const m = MappedFile.open(f, { windowSize: WINDOW })!;
  assert.equal(m.size, 0, "an empty file maps nothing");
  assert.throws(() => m.view(0, 1), RangeError);

  const data = pattern(4 * WINDOW, 3);
  append(f, data.subarray(0, WINDOW + 100));
  assert.throws(() => m.view(WINDOW, 1), RangeError, "not viewable before remap");
  m.remap(f.size());
  const window0 = m.view(0, 1).buffer;
  const partial = m.view(WINDOW, 100);
  assert.deepEqual(partial, data.subarray(WINDOW, WINDOW + 100));

  append(f, data.subarray(WINDOW + 100, 2 * WINDOW)); // fills window 1 exactly
  m.remap(f.size());
  assert.equal(m.view(0, 1).buffer, window0, "a full window is kept, not mapped again");
  assert.notEqual(m.view(WINDOW, 1).buffer, partial.buffer, "a partial window is mapped again");
  assert.deepEqual(partial, data.subarray(WINDOW, WINDOW + 100), "old views stay readable");
  const window1 = m.view(WINDOW, 1).buffer;

  append(f, data.subarray(2 * WINDOW, 3 * WINDOW + 10));
  m.remap(f.size());
  assert.equal(m.view(WINDOW, 1).buffer, window1);
  assert.deepEqual(m.view(0, m.size), data.subarray(0, 3 * WINDOW + 10));

  assert.throws(() => m.remap(f.size() + 1), RangeError, "never past the end of the file");
  m.remap(WINDOW + 5);
  assert.equal(m.size, WINDOW + 5);
  assert.throws(() => m.view(WINDOW + 5, 1), RangeError);
  m.remap(f.size());
  assert.deepEqual(m.view(0, m.size), data.subarray(0, 3 * WINDOW + 10));
});

test("views beyond the mapped size or with bad arguments are RangeErrors", {
  skip: NO_NATIVE,
}, (t) => {
  const f = openFile(t, tempFile(t));
  append(f, pattern(1000, 5));
  const m = MappedFile.open(f, { windowSize: WINDOW })!;
  assert.equal(m.view(1000, 0).length, 0);
  assert.equal(m.view(0, 1000).length, 1000);
  for (const [offset, length] of [
    [999, 2],
    [1000, 1],
    [-1, 1],
    [0, -1],
    [1.5, 1],
    [0, Number.NaN],
    [2 ** 53, 1],
  ] as Array<[number, number]>) {
    assert.throws(() => m.view(offset, length), RangeError, `view(${offset}, ${length})`);
  }
  assert.throws(() => MappedFile.open(f, { windowSize: 1000 }), RangeError);
  assert.throws(() => MappedFile.open(f, { windowSize: 0 }), RangeError);
  assert.throws(() => MappedFile.open(f, { windowSize: 8 * GiB }), RangeError);
});

test("native mmap: a writable map, msync and madvise", { skip: NO_NATIVE }, (t) => {
  const api = native!;
  const f = openFile(t, tempFile(t));
  const page = api.PAGE_SIZE;
  f.truncate(4 * page);
  const map = api.mmap(f.fd!, 3 * page, page, true);
  assert.equal(map.length, 3 * page);
  map.write("written through the map", page + 10, "latin1");
  api.msync(map, page, page, true);
  api.msync(map, 0, map.length, false);
  assert.equal(preadAt(f, 2 * page + 10, 23).toString("latin1"), "written through the map");
  for (const advice of [api.MADV_RANDOM, api.MADV_SEQUENTIAL, api.MADV_WILLNEED, api.MADV_NORMAL]) {
    api.madvise(map, advice);
  }
  // DONTNEED on a shared file mapping drops clean pages; they come back from the file.
  api.madvise(map, api.MADV_DONTNEED);
  assert.equal(map.toString("latin1", page + 10, page + 33), "written through the map");

  assert.throws(() => api.msync(map, 1, 10, true), RangeError, "unaligned msync offset");
  assert.throws(() => api.msync(map, 0, map.length + 1, true), RangeError);
  assert.throws(() => api.msync(map.subarray(0, page), 0, page, true), TypeError);
  assert.throws(() => api.madvise(Buffer.alloc(page), api.MADV_DONTNEED), TypeError);
  assert.throws(() => api.madvise(map, 12345), RangeError);
});

test("native mmap: argument checks and errno codes", { skip: NO_NATIVE }, (t) => {
  const api = native!;
  const file = tempFile(t);
  const f = openFile(t, file);
  f.truncate(2 * api.PAGE_SIZE);
  assert.throws(() => api.mmap(f.fd!, api.PAGE_SIZE, 100, false), RangeError, "unaligned offset");
  assert.throws(() => api.mmap(f.fd!, 0, 0, false), RangeError, "empty map");
  assert.throws(() => api.mmap(f.fd!, 1.5, 0, false), RangeError);
  assert.throws(() => api.mmap(f.fd!, -4096, 0, false), RangeError);
  const readOnly = fs.openSync(file, "r");
  t.after(() => fs.closeSync(readOnly));
  assert.throws(
    () => api.mmap(readOnly, api.PAGE_SIZE, 0, true),
    (err: unknown) =>
      (err as NodeJS.ErrnoException).code === "EACCES" &&
      (err as NodeJS.ErrnoException).syscall === "mmap" &&
      (err as NodeJS.ErrnoException).errno === -13,
  );
  // Read-only maps of a read-only descriptor are fine.
  assert.equal(api.mmap(readOnly, api.PAGE_SIZE, api.PAGE_SIZE, false).length, api.PAGE_SIZE);
});

test("after compact() and a collection, no memory map of the replaced file is left", {
  skip: NO_NATIVE || (fs.existsSync("/proc/self/maps") ? false : "no /proc/self/maps"),
}, async (t) => {
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  const file = tempFile(t, "db.emdb");
  const maps = () =>
    fs
      .readFileSync("/proc/self/maps", "utf8")
      .split("\n")
      .filter((line) => line.endsWith(file) || line.endsWith(`${file} (deleted)`));
  const db = Emdb.builder().path(file).flushPolicy(manual()).useMmap(true).build();
  for (let i = 0; i < 20_000; i++) db.insert(`k${i}`, "v".repeat(50));
  db.flush();
  let n = 0;
  for (const _ of db.iter()) n++; // a long scan: its cursor holds views of the map
  assert.equal(n, 20_000);
  assert.equal(db.stats().disk?.reads, "mmap");
  db.compact();
  // The mapping goes when its buffer is collected and the addon's finalizer has run, which
  // Node defers: collect and wait until it is gone, or give up after about two seconds.
  const deleted = () => maps().filter((line) => line.endsWith("(deleted)"));
  for (let i = 0; i < 100 && deleted().length > 0; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.ok(maps().length > 0, "the new file is mapped");
  assert.deepEqual(deleted(), [], "the replaced file is no longer mapped");
  assert.deepEqual(db.check(), []);
  db.close();
});
