/**
 * Copy-on-write application of a sorted batch of changes.
 *
 * The batch is routed down from the root; only the pages on the paths it reaches are read,
 * rewritten to new ids and freed (pending while the durable meta still reaches them). A
 * node's replacement is first built in memory as a *draft*; the parent merges any underfull
 * draft with a neighbour (reading that neighbour only in that case). Drafts are written only
 * once the whole batch is placed, so when two branches merge, the children meeting at the
 * seam can still be merged too. A batch of c changes costs O(c × depth) page reads and
 * writes, whatever the size of the tree; its drafts hold O(c × depth) pages in memory.
 *
 * Invariants the parent relies on, for every node: the keys under child i lie in
 * [separator i-1, separator i). A child's new contents keep that range (the changes routed to
 * it were in it), so old separators stay valid between untouched and rewritten children; new
 * separators are computed only where a draft is split, and one is dropped where two drafts
 * merge or a child becomes empty.
 */
import { corrupted } from "../errors.js";
import { type PageId, PageType } from "../pager/page.js";
import type { Pager } from "../pager/pager.js";
import {
  BRANCH_FIXED,
  branchBytes,
  childIndex,
  decodeBranch,
  encodeBranch,
  separatorCost,
  shortestSeparator,
} from "./branch.js";
import {
  decodeLeaf,
  encodeInlineRecord,
  encodeLeaf,
  encodeOverflowRecord,
  isInline,
  type LeafRecord,
  parseRaw,
  REC_CONTIGUOUS,
  recordCost,
} from "./leaf.js";
import { leafBody } from "./limits.js";
import { freeOverflow, readOverflow, writeOverflow } from "./overflow.js";

/** One change of a batch; `value` undefined deletes the key. */
export interface Change {
  readonly key: Buffer;
  readonly value: Buffer | undefined;
  /** Absolute expiry in ms, 0 = never. */
  readonly expiresAt: number;
}

interface LeafDraft {
  readonly leaf: true;
  readonly recs: LeafRecord[];
  readonly bytes: number;
}

interface BranchDraft {
  readonly leaf: false;
  /** Children are drafts too until the whole batch is placed (see `writeItem`). */
  readonly children: Item[];
  readonly keys: Buffer[];
  readonly bytes: number;
}

export type Draft = LeafDraft | BranchDraft;
/** A child in a parent being rebuilt: an untouched page, or a draft not yet written. */
export type Item = PageId | Draft;

/** A run of siblings at one height, with the separators between them. */
interface Level {
  readonly height: number;
  readonly items: Item[];
  readonly seps: Buffer[];
}

function isDraft(item: Item): item is Draft {
  return typeof item !== "number";
}

/**
 * Cuts a sequence into pages. `cost(i)` is what item i adds to a page it does not start,
 * `first(i)` what it adds when it starts one; `fixed` is the page's own overhead. With
 * `balanced`, pages get roughly equal shares; otherwise each is filled to capacity.
 */
function partition(
  n: number,
  fixed: number,
  capacity: number,
  first: (i: number) => number,
  cost: (i: number) => number,
  balanced: boolean,
): number[] {
  let total = 0;
  for (let i = 0; i < n; i++) total += cost(i);
  const starts: number[] = [];
  let pagesLeft = Math.max(1, Math.ceil(total / (capacity - fixed)));
  let remaining = total;
  let i = 0;
  while (i < n) {
    starts.push(i);
    const target = balanced && pagesLeft > 1 ? remaining / pagesLeft : Number.POSITIVE_INFINITY;
    let used = fixed + first(i);
    let items = cost(i);
    i++;
    while (i < n) {
      const c = cost(i);
      if (used + c > capacity || items + c / 2 > target) break;
      used += c;
      items += c;
      i++;
    }
    remaining -= items;
    pagesLeft = Math.max(1, pagesLeft - 1);
  }
  return starts;
}

export function splitLeafRecords(pageSize: number, recs: LeafRecord[], balanced: boolean): Level {
  const level: Level = { height: 0, items: [], seps: [] };
  if (recs.length === 0) return level;
  const cost = (i: number) => recordCost(recs[i]!);
  const starts = partition(recs.length, 0, leafBody(pageSize), cost, cost, balanced);
  for (let s = 0; s < starts.length; s++) {
    const from = starts[s]!;
    const to = starts[s + 1] ?? recs.length;
    const part = recs.slice(from, to);
    let bytes = 0;
    for (const r of part) bytes += recordCost(r);
    if (s > 0) level.seps.push(shortestSeparator(recs[from - 1]!.key, recs[from]!.key));
    level.items.push({ leaf: true, recs: part, bytes });
  }
  return level;
}

export function splitBranchEntries(
  pageSize: number,
  height: number,
  children: Item[],
  keys: Buffer[],
  balanced: boolean,
): Level {
  const level: Level = { height, items: [], seps: [] };
  if (children.length === 0) return level;
  // Child i (i >= 1) costs its separator keys[i-1] unless it starts a page, where that
  // separator moves up to the parent instead.
  const starts = partition(
    children.length,
    BRANCH_FIXED,
    pageSize,
    () => 0,
    (i) => (i === 0 ? 0 : separatorCost(keys[i - 1]!)),
    balanced,
  );
  for (let s = 0; s < starts.length; s++) {
    const from = starts[s]!;
    const to = starts[s + 1] ?? children.length;
    if (s > 0) level.seps.push(keys[from - 1]!);
    const ks = keys.slice(from, to - 1);
    level.items.push({
      leaf: false,
      children: children.slice(from, to),
      keys: ks,
      bytes: branchBytes(ks),
    });
  }
  return level;
}

function lowerBound(changes: readonly Change[], key: Buffer, lo: number, hi: number): number {
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (Buffer.compare(changes[mid]!.key, key) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class Applier {
  /** Net change in the number of entries. */
  delta = 0;
  private readonly P: number;
  private readonly leafMin: number;
  private readonly branchMin: number;

  constructor(
    private readonly pager: Pager,
    private readonly changes: readonly Change[],
  ) {
    this.P = pager.pageSize;
    this.leafMin = Math.floor(leafBody(this.P) / 4);
    this.branchMin = Math.floor(this.P / 4);
  }

  /**
   * Applies the batch to the non-empty tree at `root`; returns the new root (0 when the
   * tree became empty). An empty tree is filled by `bulkLoad` instead.
   */
  run(root: PageId): PageId {
    if (root === 0) throw new Error("internal: Applier.run on an empty tree");
    return this.finishRoot(this.update(root, undefined, 0, this.changes.length, 0));
  }

  private update(
    id: PageId,
    height: number | undefined,
    lo: number,
    hi: number,
    from: number,
  ): Level {
    const type = height === undefined ? undefined : height === 0 ? PageType.Leaf : PageType.Branch;
    const page = this.pager.read(id, type, from);
    const base = id * this.P;
    if (page[4] === PageType.Leaf) {
      const merged = this.merge(decodeLeaf(page, base, this.pager.path), lo, hi, base);
      this.pager.free(id);
      return splitLeafRecords(this.P, merged, true);
    }
    if (page[4] !== PageType.Branch) {
      throw corrupted(`page ${id} is not a tree page`, base + 4, this.pager.path);
    }
    const node = decodeBranch(page, base, this.pager.path);
    if (height !== undefined && node.height !== height) {
      throw corrupted(
        `branch ${id} has height ${node.height}, expected ${height}`,
        base + 5,
        this.pager.path,
      );
    }
    this.pager.free(id);
    const { children, keys } = node;
    const level: Level = { height: node.height - 1, items: [], seps: [] };
    const push = (boundary: Buffer | undefined, sub: Level) => {
      if (sub.items.length === 0) return;
      if (level.items.length > 0) level.seps.push(boundary!);
      level.items.push(...sub.items);
      level.seps.push(...sub.seps);
    };
    let pos = lo;
    let next = 0;
    while (next < children.length) {
      const c = pos < hi ? childIndex(keys, this.changes[pos]!.key) : children.length;
      for (let j = next; j < c; j++) {
        push(keys[j - 1], { height: level.height, items: [children[j]!], seps: [] });
      }
      if (c >= children.length) break;
      const end = c < keys.length ? lowerBound(this.changes, keys[c]!, pos, hi) : hi;
      push(keys[c - 1], this.update(children[c]!, level.height, pos, end, base));
      pos = end;
      next = c + 1;
    }
    this.fixUnderfull(level);
    return splitBranchEntries(this.P, node.height, level.items, level.seps, true);
  }

  /** Merges a leaf's records with the changes in [lo, hi). */
  private merge(recs: readonly LeafRecord[], lo: number, hi: number, base: number): LeafRecord[] {
    const out: LeafRecord[] = [];
    let i = 0;
    let j = lo;
    while (j < hi) {
      const ch = this.changes[j]!;
      const c = i < recs.length ? Buffer.compare(recs[i]!.key, ch.key) : 1;
      if (c < 0) {
        out.push(recs[i++]!);
        continue;
      }
      j++;
      if (c > 0) {
        if (ch.value !== undefined) {
          out.push(this.newRecord(ch, ch.value));
          this.delta++;
        }
        continue;
      }
      const old = recs[i++]!;
      if (ch.value !== undefined) out.push(this.replace(old, ch, ch.value, base));
      else {
        this.dropValue(old, base);
        this.delta--;
      }
    }
    while (i < recs.length) out.push(recs[i++]!);
    return out;
  }

  private newRecord(ch: Change, value: Buffer): LeafRecord {
    if (isInline(this.P, ch.key.length, value.length, ch.expiresAt)) {
      return { key: ch.key, raw: encodeInlineRecord(ch.key, value, ch.expiresAt) };
    }
    const { head, contiguous } = writeOverflow(this.pager, value);
    return {
      key: ch.key,
      raw: encodeOverflowRecord(ch.key, value.length, ch.expiresAt, head, contiguous),
    };
  }

  /** A new record for an existing key; an unchanged overflow value keeps its chain. */
  private replace(old: LeafRecord, ch: Change, value: Buffer, base: number): LeafRecord {
    const info = parseRaw(old.raw);
    if (info.inline !== undefined) {
      if (info.expiresAt === ch.expiresAt && info.inline.equals(value)) return old;
      return this.newRecord(ch, value);
    }
    const contiguous = (info.flags & REC_CONTIGUOUS) !== 0;
    if (
      value.length === info.valueLength &&
      !isInline(this.P, ch.key.length, value.length, ch.expiresAt) &&
      readOverflow(this.pager, info.head, info.valueLength, contiguous, base).equals(value)
    ) {
      if (info.expiresAt === ch.expiresAt) return old;
      return {
        key: ch.key,
        raw: encodeOverflowRecord(ch.key, value.length, ch.expiresAt, info.head, contiguous),
      };
    }
    freeOverflow(this.pager, info.head, info.valueLength, contiguous, base);
    return this.newRecord(ch, value);
  }

  private dropValue(old: LeafRecord, base: number): void {
    const info = parseRaw(old.raw);
    if (info.inline === undefined) {
      freeOverflow(
        this.pager,
        info.head,
        info.valueLength,
        (info.flags & REC_CONTIGUOUS) !== 0,
        base,
      );
    }
  }

  private isUnderfull(d: Draft): boolean {
    return d.bytes < (d.leaf ? this.leafMin : this.branchMin);
  }

  /** Reads an untouched sibling into a draft (its page is freed: it will be rewritten). */
  private toDraft(item: Item, height: number): Draft {
    if (isDraft(item)) return item;
    const base = item * this.P;
    if (height === 0) {
      const recs = decodeLeaf(this.pager.read(item, PageType.Leaf), base, this.pager.path);
      this.pager.free(item);
      let bytes = 0;
      for (const r of recs) bytes += recordCost(r);
      return { leaf: true, recs, bytes };
    }
    const node = decodeBranch(this.pager.read(item, PageType.Branch), base, this.pager.path);
    if (node.height !== height) {
      throw corrupted(
        `branch ${item} has height ${node.height}, expected ${height}`,
        base + 5,
        this.pager.path,
      );
    }
    this.pager.free(item);
    return { leaf: false, children: node.children, keys: node.keys, bytes: branchBytes(node.keys) };
  }

  /** Merges each underfull draft with a neighbour, re-splitting when the pair is too big. */
  private fixUnderfull(level: Level): void {
    const { items, seps, height } = level;
    let i = 0;
    while (i < items.length && items.length > 1) {
      const it = items[i]!;
      if (!isDraft(it) || !this.isUnderfull(it)) {
        i++;
        continue;
      }
      const a = i + 1 < items.length ? i : i - 1;
      const left = this.toDraft(items[a]!, height);
      const right = this.toDraft(items[a + 1]!, height);
      const sep = seps[a]!;
      const repl =
        left.leaf && right.leaf
          ? splitLeafRecords(this.P, left.recs.concat(right.recs), true)
          : !left.leaf && !right.leaf
            ? this.mergeBranches(left, right, sep, height)
            : undefined;
      if (repl === undefined) throw new Error("internal: merging a leaf with a branch");
      items.splice(a, 2, ...repl.items);
      seps.splice(a, 1, ...repl.seps);
      // A lone merged draft may still be underfull (two tiny ones): look at it again.
      i = repl.items.length === 1 ? a : a + repl.items.length;
    }
  }

  /**
   * Two sibling branches become one (or two balanced ones). Their children meet at the seam,
   * where a child that could not be merged before (it was its parent's only child) gets its
   * chance now: this is why drafts stay unwritten until the batch is placed.
   */
  private mergeBranches(left: BranchDraft, right: BranchDraft, sep: Buffer, height: number): Level {
    const kids: Level = {
      height: height - 1,
      items: left.children.concat(right.children),
      seps: [...left.keys, sep, ...right.keys],
    };
    this.fixUnderfull(kids);
    return splitBranchEntries(this.P, height, kids.items, kids.seps, true);
  }

  /** Writes a draft and, first, its draft children; returns its page id. */
  private writeItem(item: Item, height: number): PageId {
    if (!isDraft(item)) return item;
    let page: Buffer;
    if (item.leaf) page = encodeLeaf(this.P, item.recs);
    else {
      const ids = item.children.map((c) => this.writeItem(c, height - 1));
      page = encodeBranch(this.P, height, ids, item.keys);
    }
    const id = this.pager.allocate();
    this.pager.write(id, page, !item.leaf);
    return id;
  }

  private finishRoot(start: Level): PageId {
    let level = start;
    while (level.items.length > 1) {
      level = splitBranchEntries(this.P, level.height + 1, level.items, level.seps, true);
    }
    let top = level.items[0];
    if (top === undefined) return 0 as PageId;
    let height = level.height;
    // A root with a single child is just a longer path: drop it.
    while (isDraft(top) && !top.leaf && top.children.length === 1) {
      top = top.children[0]!;
      height--;
    }
    let root = this.writeItem(top, height);
    // An untouched page that became the root cannot be a lone-child branch unless the file
    // was built by something else; collapse it too, to keep the invariant unconditional.
    for (;;) {
      const page = this.pager.read(root, undefined);
      if (page[4] !== PageType.Branch) break;
      const node = decodeBranch(page, root * this.P, this.pager.path);
      if (node.keys.length > 0) break;
      this.pager.free(root);
      root = node.children[0]!;
    }
    return root;
  }
}
