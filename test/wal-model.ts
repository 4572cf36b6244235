/**
 * Test helpers for the WAL: a seeded PRNG, random operation scripts, and the model of what a
 * replay of any byte prefix of a written WAL must deliver. Not a test file itself.
 */
import type { StorageBackend } from "../src/pager/backend.js";
import { SYNCED_RECORD_SIZE, type WalDataOp } from "../src/wal/record.js";
import {
  replayWal,
  type WalExpectation,
  type WalOp,
  type WalReplayResult,
} from "../src/wal/replay.js";
import type { WalWriter } from "../src/wal/writer.js";

/** The suite's one seeded PRNG, as a `() => number in [0, 1)`. */
export { uniform as prng } from "./helpers/prng.js";

export function randInt(rand: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1));
}

export function randBytes(rand: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

/** One thing the engine writes: a data op, or a transaction (unfinished = no BatchEnd). */
export type Step =
  | WalDataOp
  | { kind: "batch"; txId: number; ops: WalDataOp[]; unfinished?: boolean };

export interface WrittenRecord {
  offset: number;
  end: number;
  lsn: number;
  /** A Synced record the writer put before the step's first record (after a sync). */
  synced?: true;
}

export interface Written {
  /** A step, or the Synced record a `sync()` ends its write with (`syncRecorded`). */
  step: Step | { kind: "synced" };
  records: WrittenRecord[];
}

/** `w.sync()`, keeping the Synced record it may end its write with as a step of its own. */
export function syncRecorded(w: WalWriter, written: Written[]): void {
  const offset = w.size;
  const before = w.lastLsn;
  w.sync();
  if (w.lastLsn === before) return;
  const end = offset + SYNCED_RECORD_SIZE;
  written.push({
    step: { kind: "synced" },
    records: [{ offset, end, lsn: w.lastLsn, synced: true }],
  });
}

export function randomOp(rand: () => number): WalDataOp {
  const r = rand();
  const key = randBytes(rand, randInt(rand, 0, 24)).toString("latin1");
  if (r < 0.6) {
    const expiresAt = rand() < 0.7 ? 0 : randInt(rand, 1, 2 ** 53 - 1);
    return { kind: "put", key, value: randBytes(rand, randInt(rand, 0, 120)), expiresAt };
  }
  if (r < 0.95) return { kind: "delete", key };
  return { kind: "clear" };
}

/** `n` steps; transactions get increasing txIds starting after `txBase`. */
export function randomSteps(rand: () => number, n: number, txBase = 0): Step[] {
  const steps: Step[] = [];
  let tx = txBase;
  for (let i = 0; i < n; i++) {
    if (rand() < 0.25) {
      const ops = Array.from({ length: randInt(rand, 0, 4) }, () => randomOp(rand));
      steps.push({ kind: "batch", txId: ++tx, ops });
    } else {
      steps.push(randomOp(rand));
    }
  }
  return steps;
}

/** The record just appended over `[offset, w.size)`, after the Synced record it may start with. */
function landed(w: WalWriter, offset: number, before: number, lsn: number): WrittenRecord[] {
  if (lsn === before + 1) return [{ offset, end: w.size, lsn }];
  const end = offset + SYNCED_RECORD_SIZE;
  return [
    { offset, end, lsn: lsn - 1, synced: true },
    { offset: end, end: w.size, lsn },
  ];
}

function appendOp(w: WalWriter, op: WalDataOp): WrittenRecord[] {
  const offset = w.size;
  const before = w.lastLsn;
  let lsn: number;
  switch (op.kind) {
    case "put":
      lsn = w.appendPut(op.key, op.value, op.expiresAt);
      break;
    case "delete":
      lsn = w.appendDelete(op.key);
      break;
    case "clear":
      lsn = w.appendClear();
      break;
  }
  return landed(w, offset, before, lsn);
}

/** Appends one step (no writeOut or sync) and records where its records landed. */
export function appendStep(w: WalWriter, step: Step): Written {
  if (step.kind !== "batch") return { step, records: appendOp(w, step) };
  let offset = w.size;
  const before = w.lastLsn;
  let lsn = w.appendBatchBegin(step.txId, step.ops.length);
  const records = landed(w, offset, before, lsn);
  for (const op of step.ops) records.push(...appendOp(w, op));
  if (!step.unfinished) {
    offset = w.size;
    lsn = w.appendBatchEnd(step.txId, step.ops.length);
    records.push({ offset, end: w.size, lsn });
  }
  return { step, records };
}

/**
 * `synced` random steps, each followed by a sync with probability `syncChance`, a sync, then
 * `unsynced` more steps handed to the OS and never synced (their txIds start at 100). Returns
 * the steps' records and the WAL's size at that last sync.
 */
export function syncedThenUnsynced(
  w: WalWriter,
  rand: () => number,
  synced: number,
  unsynced: number,
  syncChance: number,
): { written: Written[]; syncedSize: number } {
  const written: Written[] = [];
  for (const s of randomSteps(rand, synced)) {
    written.push(appendStep(w, s));
    if (rand() < syncChance) syncRecorded(w, written);
  }
  syncRecorded(w, written);
  const syncedSize = w.size;
  for (const s of randomSteps(rand, unsynced, 100)) written.push(appendStep(w, s));
  w.writeOut();
  return { written, syncedSize };
}

export function toOp(step: Step): WalOp {
  return step.kind === "batch" ? { kind: "batch", txId: step.txId, ops: step.ops } : step;
}

export interface Expected {
  ops: WalOp[];
  validEnd: number;
  lastLsn: number;
  records: number;
  maxTxId: number;
}

/**
 * What replaying the first `cut` bytes of the WAL must give: every standalone op whose record
 * is complete and every batch whose BatchEnd is complete, stopping at the first that is not
 * (whose leading Synced record, when complete, is kept: it stands outside any batch).
 */
export function expectedPrefix(written: Written[], cut: number, headerEnd = 64): Expected {
  const e: Expected = { ops: [], validEnd: headerEnd, lastLsn: 0, records: 0, maxTxId: 0 };
  for (const { step, records } of written) {
    const last = records[records.length - 1]!;
    const complete = !(step.kind === "batch" && step.unfinished) && last.end <= cut;
    if (step.kind === "synced") {
      if (!complete) break;
      e.validEnd = last.end;
      e.lastLsn = last.lsn;
      e.records++;
      continue;
    }
    if (!complete) {
      const first = records[0];
      if (first?.synced && first.end <= cut) {
        e.validEnd = first.end;
        e.lastLsn = first.lsn;
        e.records++;
      }
      break;
    }
    e.ops.push(toOp(step));
    e.validEnd = last.end;
    e.lastLsn = last.lsn;
    e.records += records.length;
    if (step.kind === "batch") e.maxTxId = Math.max(e.maxTxId, step.txId);
  }
  return e;
}

/** Runs a replay and collects what it delivers. */
export function replayAll(
  backend: StorageBackend,
  path: string,
  expect: WalExpectation,
): { result: WalReplayResult; ops: WalOp[] } {
  const ops: WalOp[] = [];
  const result = replayWal(backend, path, expect, (op) => ops.push(op));
  return { result, ops };
}

/** Runs `body` for each seed; a failure names the seed so it can be replayed alone. */
export function forSeeds(first: number, count: number, body: (seed: number) => void): void {
  for (let seed = first; seed < first + count; seed++) {
    try {
      body(seed);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      throw new Error(`failed with seed ${seed}: ${message}`, { cause: err });
    }
  }
}
