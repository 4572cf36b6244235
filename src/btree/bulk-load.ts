/**
 * Bottom-up construction of a packed tree from sorted entries, in one pass: O(n) time and
 * O(height) memory besides the page ids and separators of the levels above the leaves
 * (about 1/100 of the data). Used by `compact()` and by migration from the Rust files.
 *
 * Records are encoded straight into a page-sized scratch buffer and leaves are filled to
 * capacity, except that the last two leaves (and the last two pages of every branch level)
 * are rebalanced so no page at the right edge is left nearly empty. The leaves are written
 * as they fill, so they get adjacent ids and the scan at open reads them in long runs; the
 * branch levels are written at the end.
 *
 * The result is not committed: the caller commits `{ root, entryCount }`. The pager should
 * hold no other tree (a new file, or one whose tree was cleared).
 */
import { writeU64 } from "../codec.js";
import { type PageId, PageType } from "../pager/page.js";
import type { Pager } from "../pager/pager.js";
import { splitBranchEntries, splitLeafRecords } from "./apply.js";
import { encodeBranch, shortestSeparator } from "./branch.js";
import {
  decodeLeaf,
  encodeLeaf,
  inlineRecordSize,
  isInline,
  REC_CONTIGUOUS,
  REC_EXPIRES,
  REC_OVERFLOW,
} from "./leaf.js";
import { leafBody, MAX_VALUE_LENGTH, maxKeySize } from "./limits.js";
import { writeOverflow } from "./overflow.js";

export interface BulkEntry {
  readonly key: Buffer;
  readonly value: Buffer;
  /** Absolute expiry in ms, 0 = never. */
  readonly expiresAt: number;
}

export interface BulkLoadResult {
  readonly root: PageId;
  readonly entryCount: number;
}

interface FinishedLeaf {
  readonly page: Buffer;
  readonly firstKey: Buffer;
  readonly lastKey: Buffer;
  readonly bytes: number;
}

const SLOTS_AT = 16;

class Loader {
  private readonly P: number;
  private readonly body: number;
  private readonly maxKey: number;
  /** Reused for every leaf; keys in it are tracked by offset, so no view per record. */
  private readonly scratch: Buffer;
  private used = 0;
  private slots: number[] = [];
  private firstKeyAt = 0;
  private firstKeyLength = 0;
  private lastKeyAt = 0;
  private lastKeyLength = 0;
  private held: FinishedLeaf | undefined;
  private prevLastKey: Buffer | undefined;
  readonly children: PageId[] = [];
  readonly seps: Buffer[] = [];
  count = 0;

  constructor(private readonly pager: Pager) {
    this.P = pager.pageSize;
    this.body = leafBody(this.P);
    this.maxKey = maxKeySize(this.P);
    this.scratch = Buffer.allocUnsafe(this.P);
  }

  add(e: BulkEntry): void {
    const { key, value, expiresAt } = e;
    if (!Buffer.isBuffer(key) || !Buffer.isBuffer(value)) {
      throw new TypeError(`entry ${this.count}: key and value must be Buffers`);
    }
    if (key.length > this.maxKey) {
      throw new RangeError(
        `entry ${this.count}: key of ${key.length} bytes exceeds the maximum of ${this.maxKey}`,
      );
    }
    if (value.length > MAX_VALUE_LENGTH) {
      throw new RangeError(`entry ${this.count}: value of ${value.length} bytes is too large`);
    }
    if (!Number.isSafeInteger(expiresAt) || expiresAt < 0) {
      throw new RangeError(`entry ${this.count}: expiresAt must be a non-negative safe integer`);
    }
    const ascends =
      this.slots.length > 0
        ? key.compare(this.scratch, this.lastKeyAt, this.lastKeyAt + this.lastKeyLength) > 0
        : this.held === undefined || key.compare(this.held.lastKey) > 0;
    if (!ascends) {
      throw new RangeError(
        `entry ${this.count}: entries must be sorted ascending by key, without duplicates`,
      );
    }
    const inline = isInline(this.P, key.length, value.length, expiresAt);
    const size = inline
      ? inlineRecordSize(key.length, value.length, expiresAt)
      : inlineRecordSize(key.length, 8, expiresAt);
    if (SLOTS_AT + 2 * (this.slots.length + 1) + this.used + size > this.P) this.finishLeaf();
    let flags = expiresAt !== 0 ? REC_EXPIRES : 0;
    let head = 0;
    if (!inline) {
      const chain = writeOverflow(this.pager, value);
      head = chain.head;
      flags |= REC_OVERFLOW | (chain.contiguous ? REC_CONTIGUOUS : 0);
    }
    const s = this.scratch;
    let at = this.used;
    this.slots.push(at);
    s[at] = flags;
    s.writeUInt16LE(key.length, at + 1);
    s.writeUInt32LE(value.length, at + 3);
    at += 7;
    if (expiresAt !== 0) {
      writeU64(s, expiresAt, at);
      at += 8;
    }
    if (!inline) {
      writeU64(s, head, at);
      at += 8;
    }
    key.copy(s, at);
    if (this.slots.length === 1) {
      this.firstKeyAt = at;
      this.firstKeyLength = key.length;
    }
    this.lastKeyAt = at;
    this.lastKeyLength = key.length;
    at += key.length;
    if (inline) {
      value.copy(s, at);
      at += value.length;
    }
    this.used = at;
    this.count++;
  }

  /** Turns the records in the scratch buffer into a leaf page (not yet written). */
  private seal(): FinishedLeaf {
    const n = this.slots.length;
    const page = this.pager.blankPage(PageType.Leaf, n);
    const start = this.P - this.used;
    this.scratch.copy(page, start, 0, this.used);
    for (let i = 0; i < n; i++) page.writeUInt16LE(this.slots[i]! + start, SLOTS_AT + 2 * i);
    const leaf: FinishedLeaf = {
      page,
      firstKey: page.subarray(
        start + this.firstKeyAt,
        start + this.firstKeyAt + this.firstKeyLength,
      ),
      lastKey: page.subarray(start + this.lastKeyAt, start + this.lastKeyAt + this.lastKeyLength),
      bytes: this.used + 2 * n,
    };
    this.used = 0;
    this.slots = [];
    return leaf;
  }

  /** The previous leaf is written only now: the last two may still be rebalanced. */
  private finishLeaf(): void {
    if (this.slots.length === 0) return;
    const leaf = this.seal();
    if (this.held !== undefined) this.emit(this.held);
    this.held = leaf;
  }

  private emit(leaf: FinishedLeaf): void {
    if (this.prevLastKey !== undefined) {
      this.seps.push(Buffer.from(shortestSeparator(this.prevLastKey, leaf.firstKey)));
    }
    // The page's buffer is reused for a later leaf once written out: copy the key it keeps.
    this.prevLastKey = Buffer.from(leaf.lastKey);
    const id = this.pager.allocate();
    this.pager.writeHandedOver(id, leaf.page);
    this.children.push(id);
  }

  /** Writes what is left, rebalancing the last two leaves when the last is under half full. */
  finish(): void {
    const tailBytes = this.used + 2 * this.slots.length;
    const held = this.held;
    if (held !== undefined && this.slots.length > 0 && tailBytes < this.body / 2) {
      const last = this.seal();
      this.held = undefined;
      const recs = [
        ...decodeLeaf(held.page, 0, this.pager.path),
        ...decodeLeaf(last.page, 0, this.pager.path),
      ];
      const level = splitLeafRecords(this.P, recs, true);
      for (const d of level.items) {
        if (typeof d === "number" || !d.leaf)
          throw new Error("internal: leaf split gave no leaf draft");
        this.emit({
          page: encodeLeaf(this.P, d.recs),
          firstKey: d.recs[0]!.key,
          lastKey: d.recs[d.recs.length - 1]!.key,
          bytes: d.bytes,
        });
      }
      return;
    }
    this.finishLeaf();
    if (this.held !== undefined) this.emit(this.held);
    this.held = undefined;
  }
}

function buildBranches(pager: Pager, leaves: PageId[], seps: Buffer[]): PageId {
  const P = pager.pageSize;
  let ids = leaves;
  let keys = seps;
  let height = 1;
  while (ids.length > 1) {
    const level = splitBranchEntries(P, height, ids, keys, false);
    const n = level.items.length;
    const a = level.items[n - 2];
    const b = level.items[n - 1];
    if (
      a !== undefined &&
      b !== undefined &&
      typeof a !== "number" &&
      typeof b !== "number" &&
      !a.leaf &&
      !b.leaf &&
      b.bytes < P / 2
    ) {
      const again = splitBranchEntries(
        P,
        height,
        a.children.concat(b.children),
        [...a.keys, level.seps[n - 2]!, ...b.keys],
        true,
      );
      level.items.splice(n - 2, 2, ...again.items);
      level.seps.splice(n - 2, 1, ...again.seps);
    }
    const next: PageId[] = [];
    for (const d of level.items) {
      if (typeof d === "number" || d.leaf) {
        throw new Error("internal: branch split gave no branch draft");
      }
      // The children here are the page ids written one level down.
      const id = pager.allocate();
      pager.write(id, encodeBranch(P, height, d.children as PageId[], d.keys), true);
      next.push(id);
    }
    ids = next;
    keys = level.seps;
    height++;
  }
  return ids[0] ?? (0 as PageId);
}

/**
 * Builds a tree from entries sorted ascending by unsigned key bytes (keys unique). Invalid
 * input is a TypeError/RangeError; everything since the last commit is then rolled back.
 */
export function bulkLoad(pager: Pager, entries: Iterable<BulkEntry>): BulkLoadResult {
  const b = new BulkLoader(pager);
  for (const e of entries) b.add(e);
  return b.finish();
}

/**
 * The push form of `bulkLoad`, for producers that call back (the legacy readers): `add`
 * each entry in order, then `finish`. The entry object and its buffers may be reused
 * between calls: the loader copies what it keeps.
 */
export class BulkLoader {
  private readonly loader: Loader;

  constructor(private readonly pager: Pager) {
    this.loader = new Loader(pager);
  }

  get count(): number {
    return this.loader.count;
  }

  add(e: BulkEntry): void {
    try {
      this.loader.add(e);
    } catch (err) {
      this.pager.rollback();
      throw err;
    }
  }

  finish(): BulkLoadResult {
    try {
      this.loader.finish();
      return {
        root: buildBranches(this.pager, this.loader.children, this.loader.seps),
        entryCount: this.loader.count,
      };
    } catch (err) {
      this.pager.rollback();
      throw err;
    }
  }
}
