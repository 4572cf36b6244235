/**
 * How the B+tree and the in-memory keyspace correspond: the tree holds every key as of the
 * last checkpoint, memory holds every key now, and the keys changed since (the dirty set)
 * are the difference. Three uses: filling memory from the tree at open, streaming memory
 * into a full tree rewrite, and checking that the two agree (`db.check()`).
 */

import type { BulkEntry } from "./btree/bulk-load.js";
import type { BTree } from "./btree/tree.js";
import { PROGRESS_EVERY, type ProgressListener } from "./builder.js";
import { hashInternalKey, latin1Slice, MAX_KEY_SIZE, writeLatin1 } from "./keys.js";
import { type Keyspace, type Stored, Timed } from "./shards/keyspace.js";

/**
 * Fills an empty keyspace from the tree: keys arrive sorted, so this is O(n). With a
 * listener, reports `{ phase: "open", done, total }` every `PROGRESS_EVERY` records read and
 * once at the end, unless the tree is empty; `total` is the record count of the meta page.
 *
 * Records whose deadline is `<= now` never enter memory: a file of mostly expired records
 * (a cache reopened after a day) would otherwise load every one, only for the sweep after
 * the open to drop them. Their keys are returned, in order; the tree still holds
 * them, so the caller must mark them dirty and log their removal.
 */
export function loadTree(
  tree: BTree,
  ks: Keyspace,
  total: number,
  onProgress: ProgressListener | undefined,
  now: number,
): string[] {
  const expired: string[] = [];
  let read = 0;
  const arena = ks.arena;
  // Inline values stay in copies of their pages (see `value-arena.ts`): `page` is the ref of
  // the current leaf's copy; `remaining` bounds the page bytes still to come (every page of
  // the file counts, so it overshoots the leaves: the arena cuts its last chunk at the end).
  let page = 0;
  const P = tree.pager.pageSize;
  let remaining = tree.pager.pageCount * P;
  ks.startLoad(total);
  tree.forEachSpan(
    (kb, ks0, ke, vb, vs, ve, expiresAt, inlineAt) => {
      read++;
      if (onProgress !== undefined && read % PROGRESS_EVERY === 0) {
        onProgress({ phase: "open", done: read, total });
      }
      if (expiresAt !== 0 && expiresAt <= now) {
        expired.push(latin1Slice(kb, ks0, ke));
        return;
      }
      if (inlineAt >= 0) {
        // The record's bytes run from its offset to the end of its value, which follows the key.
        const ref = page + inlineAt;
        ks.loadEntry(kb, ks0, ke, expiresAt === 0 ? ref : new Timed(ref, expiresAt), ve - inlineAt);
      } else {
        const v = latin1Slice(vb, vs, ve);
        ks.loadEntry(kb, ks0, ke, expiresAt === 0 ? v : new Timed(v, expiresAt), 0);
      }
    },
    (leaf, id) => {
      page = arena.adopt(leaf, remaining, id * P);
    },
    (pages, position) => {
      const room = arena.place(pages, P, remaining, position);
      remaining -= room.pages * P;
      return room;
    },
  );
  ks.finishLoad();
  if (onProgress !== undefined && read > 0) onProgress({ phase: "open", done: read, total });
  return expired;
}

/** Values up to this size are written into `liveEntries`' reused buffer; larger get their own. */
const VALUE_SCRATCH_BYTES = 64 * 1024;

/**
 * Every live entry in key order, as one reused entry object whose key and value are written
 * into scratch buffers: a full rewrite of a million keys allocates nothing per key (only
 * values over 64 KiB get a buffer of their own).
 */
export function* liveEntries(ks: Keyspace, now: number): Generator<BulkEntry, void, undefined> {
  const keyScratch = Buffer.allocUnsafe(MAX_KEY_SIZE);
  const valueScratch = Buffer.allocUnsafe(VALUE_SCRATCH_BYTES);
  const entry: { key: Buffer; value: Buffer; expiresAt: number } = {
    key: keyScratch,
    value: valueScratch,
    expiresAt: 0,
  };
  // Lookups go in blocks, in a tight loop: the hash-table misses of one block overlap,
  // where one lookup per step of the rewrite waits for each in turn.
  const keys = new Array<string>(LOOKUP_BLOCK);
  const found = new Array<Stored | undefined>(LOOKUP_BLOCK);
  const nextKey = ks.sorted.walker(undefined, true, undefined, true, false);
  // Right after a first import, its entries in key order: no lookup at all while the
  // keyspace takes no write (`Keyspace.adopt`; see docs/design.md, "Transactions").
  const inOrder = ks.takeEntriesInOrder();
  const writesThen = ks.writes;
  let at = 0;
  for (;;) {
    let n = 0;
    for (; n < LOOKUP_BLOCK; n++) {
      const k = nextKey();
      if (k === undefined) break;
      keys[n] = k;
    }
    if (inOrder !== undefined && ks.writes === writesThen) {
      for (let j = 0; j < n; j++) found[j] = inOrder[at + j];
    } else {
      for (let j = 0; j < n; j++) {
        const k = keys[j]!;
        found[j] = ks.shard(hashInternalKey(k)).get(k);
      }
    }
    at += n;
    for (let j = 0; j < n; j++) {
      const e = found[j];
      if (e === undefined) continue;
      const k = keys[j]!;
      entry.key = keyScratch.subarray(0, writeLatin1(keyScratch, k, 0));
      if (typeof e === "number") {
        // A loaded value is inline in a page, so it fits the scratch buffer.
        entry.value = valueScratch.subarray(0, ks.arena.copyInto(e, valueScratch));
        entry.expiresAt = 0;
        yield entry;
        continue;
      }
      let v: string;
      if (e instanceof Timed) {
        if (e.expiresAt <= now) continue;
        entry.expiresAt = e.expiresAt;
        if (typeof e.value === "number") {
          entry.value = valueScratch.subarray(0, ks.arena.copyInto(e.value, valueScratch));
          yield entry;
          continue;
        }
        v = e.value;
      } else {
        v = e;
        entry.expiresAt = 0;
      }
      entry.value =
        v.length <= VALUE_SCRATCH_BYTES
          ? valueScratch.subarray(0, writeLatin1(valueScratch, v, 0))
          : Buffer.from(v, "latin1");
      yield entry;
    }
    if (n < LOOKUP_BLOCK) return;
  }
}

/** Keys `liveEntries` looks up at a time. */
const LOOKUP_BLOCK = 256;

/**
 * Problems between the tree and memory (none when they agree): every key that is not dirty,
 * expired or not, must be in the tree with the same value and expiry, and the other way round. After
 * a `clear()` not yet checkpointed (`cleared`), memory may hold only dirty keys.
 */
export function compareTreeWithMemory(
  tree: BTree,
  ks: Keyspace,
  dirty: ReadonlySet<string>,
  cleared: boolean,
): string[] {
  const problems: string[] = [];
  // Expired entries count too: memory lets one go only in a sweep, which marks it dirty even
  // when logging it fails (`FileStore.expired`), or when a tree write leaves it out
  // (`FileStore.dropExpired`), so a clean entry is in both.
  let cleanInMemory = 0;
  for (const shard of ks.shards) {
    for (const k of shard.keys()) if (!dirty.has(k)) cleanInMemory++;
  }
  if (cleared) {
    // Every checkpointed key was cleared since: memory must hold only logged keys.
    if (cleanInMemory !== 0) {
      problems.push(`memory holds ${cleanInMemory} keys that are neither checkpointed nor logged`);
    }
    return problems;
  }
  let inTree = 0;
  tree.forEachSpan((kb, ks0, ke, vb, vs, ve, expiresAt) => {
    const k = latin1Slice(kb, ks0, ke);
    if (dirty.has(k)) return;
    inTree++;
    const e = ks.shard(hashInternalKey(k)).get(k);
    if (e === undefined) {
      problems.push(`tree holds ${JSON.stringify(k)} but memory does not`);
      return;
    }
    // A ref into a chunk let go has no value to compare: the keyspace's check reports it.
    const ref = typeof e === "number" ? e : e instanceof Timed ? e.value : undefined;
    if (typeof ref === "number" && !ks.arena.holds(ref)) return;
    const at = e instanceof Timed ? e.expiresAt : 0;
    if (ks.str(e) !== latin1Slice(vb, vs, ve) || at !== expiresAt) {
      problems.push(`tree and memory differ for ${JSON.stringify(k)}`);
    }
  });
  if (cleanInMemory !== inTree) {
    problems.push(`memory holds ${cleanInMemory} checkpointed keys but the tree holds ${inTree}`);
  }
  return problems;
}

/**
 * Passes `entries` through, reporting `{ phase: "compact", done, total }` every
 * `PROGRESS_EVERY` entries and once at the end. `total` counts expired entries not
 * yet swept, so `done` may end below it.
 */
export function* withProgress<T>(
  entries: Iterable<T>,
  total: number,
  onProgress: ProgressListener | undefined,
): Generator<T, void, undefined> {
  if (onProgress === undefined) {
    yield* entries;
    return;
  }
  let done = 0;
  for (const e of entries) {
    yield e;
    if (++done % PROGRESS_EVERY === 0) onProgress({ phase: "compact", done, total });
  }
  onProgress({ phase: "compact", done, total });
}
