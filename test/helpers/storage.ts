/**
 * What the file-backed tests share: a temporary directory removed after the file's tests,
 * a builder shortcut, the engine over an injected backend, a hex snapshot of a database's
 * content, and the 70,000-key load the compaction tests need (its rewrite reports progress
 * every 65,536 records).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after } from "node:test";
import { Core } from "../../src/core.js";
import {
  Emdb,
  everyN,
  type FlushPolicy,
  onEachWrite,
  type ProgressListener,
  type ProgressPhase,
  type Transaction,
} from "../../src/index.js";
import type { MemoryBackend } from "../../src/pager/backend.js";
import { MemoryPersistence } from "../../src/persistence.js";
import { openFileStore } from "../../src/recovery.js";
import type { FakeClock } from "./db.js";

/** A directory for this test file's databases, removed when its tests are done. */
export function scratchDir(prefix: string): { root: string; freshPath: () => string } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), `emdb-${prefix}-`));
  after(() => fs.rmSync(root, { recursive: true, force: true }));
  let n = 0;
  return { root, freshPath: () => path.join(root, `db${n++}.emdb`) };
}

export function openFile(
  p: string,
  policy: FlushPolicy = everyN(64),
  clock?: FakeClock,
  pageSize = 4096,
  mmap = false,
): Emdb {
  const b = Emdb.builder().path(p).flushPolicy(policy).pageSize(pageSize).useMmap(mmap);
  if (clock !== undefined) b.clock(clock.fn);
  return b.build();
}

/** Every entry as hex, so binary keys and values compare exactly. */
export function contents(db: Emdb): Map<string, string> {
  const m = new Map<string, string>();
  for (const [k, v] of db.iter()) m.set(k.toString("hex"), v.toString("hex"));
  return m;
}

/** Enough keys for compact() to report progress once before it ends. */
export const PROGRESS_KEYS = 70_000;

type Progress = Parameters<ProgressListener>[0];

/** A database at `p` whose progress reports are collected in `seen`. */
export function openWatched(p: string): { db: Emdb; seen: Progress[] } {
  const seen: Progress[] = [];
  const db = Emdb.builder()
    .path(p)
    .onProgress((e) => seen.push(e))
    .build();
  return { db, seen };
}

/** What a phase that counts the `PROGRESS_KEYS` records must report: 65,536 and the end. */
export function progressOfKeys(phase: ProgressPhase): Progress[] {
  return [
    { phase, done: 65_536, total: PROGRESS_KEYS },
    { phase, done: PROGRESS_KEYS, total: PROGRESS_KEYS },
  ];
}

/** Inserts k0 … k69999 (value "v") and whatever `more` adds, in one transaction. */
export function insertProgressKeys(db: Emdb, more?: (tx: Transaction) => void): void {
  db.transaction((tx) => {
    for (let i = 0; i < PROGRESS_KEYS; i++) tx.insert(`k${i}`, "v");
    more?.(tx);
  });
}

/**
 * An opener of `openCore` at `path` as most engine-level tests want it: 512-byte pages (deep
 * trees, overflow chains), `onEachWrite()` (memory and a crash agree), a clock at 1,000.
 */
export function smallCoreOpener(
  backend: MemoryBackend,
  path: string,
  checkpointBytes: number,
): () => Core {
  return () =>
    openCore(backend, path, {
      clock: () => 1_000,
      flushPolicy: onEachWrite(),
      pageSize: 512,
      checkpointBytes,
    });
}

/**
 * The engine without the API, its file store on `backend` (a MemoryBackend whose hook can
 * fail any write or sync), at `path`: for tests that reach memory and storage directly.
 */
export function openCore(
  backend: MemoryBackend,
  path: string,
  o: {
    clock: () => number;
    flushPolicy: FlushPolicy;
    pageSize: number;
    checkpointBytes: number;
    onProgress?: ProgressListener;
  },
): Core {
  const core = new Core(new MemoryPersistence(), o.clock, undefined, path);
  const store = openFileStore({ path, useMmap: false, cachePages: 16, ...o, backend }, core.ks);
  core.persistence = store;
  core.lastTxId = store.lastTxId; // as Emdb's open does
  return core;
}
