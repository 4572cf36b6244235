/**
 * How the WAL's records enter the in-memory keyspace at open: each record is applied as the
 * replay decodes it (a batch once its BatchEnd is read), so no list of them is held, and the
 * keys they add enter the ordered view at the end rather than one splice each.
 */
import { hashInternalKey, toLatin1 } from "./keys.js";
import type { StorageBackend } from "./pager/backend.js";
import { type Keyspace, Timed } from "./shards/keyspace.js";
import { replayWal, type WalExpectation, type WalOp, type WalReplayResult } from "./wal/replay.js";

/** What the replay changed: the keys the next checkpoint must write, and a `clear()`. */
export interface ReplayedIntoMemory {
  readonly result: WalReplayResult;
  readonly dirty: Set<string>;
  readonly cleared: boolean;
}

interface State {
  readonly dirty: Set<string>;
  cleared: boolean;
  /**
   * Keys the replay added, not yet in the ordered view: a WAL of random keys would otherwise
   * splice them in one by one. After a removal, may hold keys removed again, or twice.
   */
  readonly newKeys: string[];
  removals: boolean;
}

export function replayIntoMemory(
  backend: StorageBackend,
  walPath: string,
  expect: WalExpectation,
  ks: Keyspace,
): ReplayedIntoMemory {
  const s: State = { dirty: new Set(), cleared: false, newKeys: [], removals: false };
  // `apply` copies each value into a string at once: lone puts may hand over views.
  const result = replayWal(backend, walPath, expect, (op) => apply(ks, s, op), {
    transientValues: true,
  });
  // A removal in the replay found nothing in the view for a key still pending there: after
  // one, a key removed and added again is listed twice, one removed for good is gone.
  const keys = s.removals ? [...new Set(s.newKeys)].filter((k) => ks.has(k)) : s.newKeys;
  ks.sorted.insertNewKeys(keys);
  return { result, dirty: s.dirty, cleared: s.cleared };
}

function apply(ks: Keyspace, s: State, op: WalOp): void {
  if (op.kind === "batch") {
    for (const o of op.ops) apply(ks, s, o);
  } else if (op.kind === "put") {
    const k = op.key;
    const v = toLatin1(op.value);
    const e = op.expiresAt === 0 ? v : new Timed(v, op.expiresAt);
    ks.setEntry(k, hashInternalKey(k), e, s.newKeys);
    s.dirty.add(k);
  } else if (op.kind === "delete") {
    ks.delete(op.key, hashInternalKey(op.key));
    s.dirty.add(op.key);
    s.removals = true;
  } else {
    ks.clear();
    s.dirty.clear();
    s.cleared = true;
    s.removals = true;
  }
}
