/**
 * With `useMmap(true)`, the values an open loads lie in private (copy-on-write) maps of the
 * page file (`src/pager/private-map.ts`, `src/shards/value-arena.ts`). These tests check
 * that they keep their bytes while the pager overwrites and truncates the leaves they came
 * from (in a child process: a page lost to a truncation raises SIGBUS), that a mapping
 * that fails falls back to reading, and that `compact()` leaves no map of the replaced
 * file. Skipped, with the reason, without the native addon.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import * as v8 from "node:v8";
import * as vm from "node:vm";
import { BTree } from "../src/btree/tree.js";
import { Emdb, manual } from "../src/index.js";
import { hashInternalKey } from "../src/keys.js";
import { FileBackend } from "../src/pager/backend.js";
import { native, nativeLoadError } from "../src/pager/native.js";
import { Pager } from "../src/pager/pager.js";
import { type PrivateMapper, privateMapper, WatchingBackend } from "../src/pager/private-map.js";
import { Keyspace } from "../src/shards/keyspace.js";
import { CHUNK_BYTES } from "../src/shards/value-arena.js";
import { loadTree } from "../src/tree-memory.js";
import { runToEnd } from "./helpers/kill-child.js";
import { scratchDir } from "./helpers/storage.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CHILD = fileURLToPath(new URL("./helpers/private-map-child.ts", import.meta.url));
const NO_NATIVE = native === undefined ? `native addon not built: ${nativeLoadError}` : false;
const { freshPath } = scratchDir("private-map");

interface ChildReport {
  reads: string;
  loadedPageBytes: number;
  stillLoaded: number;
  bytesBefore: number;
  bytesAfter: number;
  pagesChanged: number;
  wrong: string[];
  wrongCount: number;
  problems: string[];
}

async function runChild(pageSize: number, scenario: "reuse" | "truncate"): Promise<ChildReport> {
  const r = await runToEnd(["--import", "tsx", CHILD, freshPath(), String(pageSize), scenario], {
    cwd: ROOT,
    env: process.env,
  });
  assert.equal(r.code, 0, `child exited ${r.code} (135 or null: SIGBUS)\n${r.stdout}${r.stderr}`);
  const report = JSON.parse(r.stdout) as ChildReport;
  assert.equal(report.reads, "mmap");
  assert.ok(report.loadedPageBytes > 0, "values were loaded into private maps");
  assert.ok(report.stillLoaded > 0, "loaded values still lie in the maps at the end");
  assert.deepEqual(report.wrong, [], `${report.wrongCount} values came back wrong`);
  assert.deepEqual(report.problems, []);
  return report;
}

for (const pageSize of [4096, 512]) {
  test(`values loaded into private maps keep their bytes when the pager writes over their leaves (${pageSize}-byte pages)`, {
    skip: NO_NATIVE,
  }, async () => {
    const r = await runChild(pageSize, "reuse");
    // Freed leaves were written over: the file's first bytes are not what was mapped.
    assert.ok(r.pagesChanged > 10, `only ${r.pagesChanged} pages of the loaded file changed`);
  });

  test(`values loaded into private maps survive the file being cut below their leaves (${pageSize}-byte pages)`, {
    skip: NO_NATIVE,
  }, async () => {
    const r = await runChild(pageSize, "truncate");
    assert.ok(r.bytesAfter < r.bytesBefore, `the file was not cut (${r.bytesAfter} bytes)`);
  });
}

test("a chunk whose private map fails is read into memory instead, and every value loads", {
  skip: NO_NATIVE,
}, () => {
  const p = freshPath();
  const key = (i: number) => `k${String(i).padStart(6, "0")}`;
  const value = (i: number) => `value ${i} `.repeat(4);
  const db = Emdb.builder().path(p).flushPolicy(manual()).build();
  db.transaction((tx) => {
    for (let i = 0; i < 80_000; i++) tx.insert(key(i), value(i));
  });
  db.close();
  const backend = new WatchingBackend(new FileBackend(), p);
  const pager = Pager.open(backend, p);
  try {
    const real = privateMapper(backend.file!, native!)!;
    const asked: number[] = [];
    // Every other chunk's map fails.
    const flaky: PrivateMapper = {
      map: (offset, length) => {
        asked.push(offset);
        return (offset / CHUNK_BYTES) % 2 === 1 ? undefined : real.map(offset, length);
      },
      onChange: undefined,
    };
    const ks = new Keyspace();
    ks.arena.mapFrom(flaky);
    loadTree(new BTree(pager), ks, pager.meta.entryCount, undefined, 0);
    assert.ok(asked.length >= 3, `only ${asked.length} chunks were mapped`);
    for (let i = 0; i < 80_000; i++) {
      const e = ks.shard(hashInternalKey(key(i))).get(key(i));
      assert.equal(typeof e, "number", `${key(i)} is held as a ref`);
      assert.equal(ks.out(e!).toString(), value(i), key(i));
    }
    assert.deepEqual(ks.check(), []);
  } finally {
    pager.close();
  }
});

test("after compact() and a collection, no private map of the replaced file is left", {
  skip: NO_NATIVE || (fs.existsSync("/proc/self/maps") ? false : "no /proc/self/maps"),
}, async () => {
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  const file = freshPath();
  const name = path.resolve(file);
  const deleted = () =>
    fs
      .readFileSync("/proc/self/maps", "utf8")
      .split("\n")
      .filter((line) => line.endsWith(`${name} (deleted)`));
  let db = Emdb.builder().path(file).flushPolicy(manual()).build();
  for (let i = 0; i < 20_000; i++) db.insert(`k${i}`, "v".repeat(50));
  db.close();
  db = Emdb.builder().path(file).flushPolicy(manual()).useMmap(true).build();
  assert.ok(db.stats().loadedPageBytes > 0);
  db.compact();
  // A mapping goes when its buffer is collected and the addon's finalizer has run, which
  // Node defers: collect and wait until it is gone, or give up after about two seconds.
  for (let i = 0; i < 100 && deleted().length > 0; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.deepEqual(deleted(), [], "the replaced file is no longer mapped");
  assert.equal(db.get("k19999")?.toString(), "v".repeat(50));
  assert.deepEqual(db.check(), []);
  db.close();
});

test("a file mostly of overflow pages keeps its loaded values in private maps (weighed against its leaves)", {
  skip: NO_NATIVE,
}, () => {
  const p = freshPath();
  const key = (i: number) => `k${String(i).padStart(6, "0")}`;
  // Every third value spans two overflow pages, so leaves are a small part of each MiB.
  const value = (i: number) => (i % 3 === 0 ? `big ${i} `.repeat(800) : `small ${i}`);
  let db = Emdb.builder().path(p).flushPolicy(manual()).build();
  db.transaction((tx) => {
    for (let i = 0; i < 6000; i++) tx.insert(key(i), value(i));
  });
  db.close();
  db = Emdb.builder().path(p).flushPolicy(manual()).useMmap(true).build();
  try {
    const mapped = db.stats().loadedPageBytes;
    assert.ok(mapped >= CHUNK_BYTES, `only ${mapped} bytes of private maps kept after the load`);
    for (let i = 0; i < 6000; i++) assert.equal(db.get(key(i))?.toString(), value(i), key(i));
    // Overwriting most small values lets the maps go, as it does copies.
    for (let i = 0; i < 6000; i++) if (i % 3 !== 0 && i % 10 !== 1) db.insert(key(i), "new");
    db.flush();
    assert.equal(db.stats().loadedPageBytes, 0);
    for (let i = 0; i < 6000; i++) {
      const want = i % 3 !== 0 && i % 10 !== 1 ? "new" : value(i);
      assert.equal(db.get(key(i))?.toString(), want, key(i));
    }
    assert.deepEqual(db.check(), []);
  } finally {
    db.close();
  }
});
