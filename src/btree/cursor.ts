/**
 * A forward cursor over the tree's leaves for ordered scans: given keys in ascending order,
 * it says whether the tree holds each one and copies its value straight out of the leaf
 * (`seek`), or it hands out the records after a key a leaf at a time (`seekAfter`,
 * `takeRun`; see tree-scan.ts).
 *
 * Why: an ordered scan of the in-memory index pays a hash-table lookup and a copy from a
 * scattered value Buffer per key, both cache misses at a million keys. Keys the last
 * checkpoint wrote are read here instead, from pages that hold them contiguously and in the
 * scan's order (DESIGN §2: ordered scans merge the tree with the not-yet-checkpointed
 * changes). The caller decides which keys are clean; this only reads the tree.
 *
 * It keeps the path from the root, so the next leaf is one step away; a key past the next
 * leaf (a gap in the scan) or before the last one sought descends from the root again.
 * Once a scan has stepped through a few leaves in a row, it reads the following leaves of
 * the same parent in one run (`leafAhead`): at a million keys that made a full scan about
 * 1.5× faster than one `pread`, one buffer and one cache insertion per leaf.
 * The pages it holds may be views into a memory map: a cursor must not be used after the
 * tree commits or is replaced (its owner drops it then; see `TreeScan.cursorFor`).
 */
import { corrupted } from "../errors.js";
import { NO_PAGE, type PageId, PageType } from "../pager/page.js";
import type { RecordRun } from "../tree-scan.js";
import { type BranchNode, childIndex, decodeBranch } from "./branch.js";
import { checkedCount, compareRecordKey, copyRecordValue, takeRecords } from "./leaf.js";
import type { BTree } from "./tree.js";

/** Leaves a scan steps through one by one before it starts reading ahead. */
const READ_AHEAD_AFTER = 4;
/** Leaves read ahead at a time: 128 KiB of 4 KiB pages. */
const READ_AHEAD_PAGES = 32;
/** The slab leaf copies for callers are carved from (see `copyOut`): 4 pages of 4 KiB. */
const SLAB_BYTES = 16 * 1024;

interface Level {
  readonly node: BranchNode;
  idx: number;
}

export class TreeCursor {
  private path: Level[] = [];
  private page: Buffer | undefined;
  private base = 0;
  private i = 0;
  private n = 0;
  /** The last key sought; a smaller one means the caller went back. */
  private last = "";
  /**
   * `seekAfter` or `takeRun` moved past `last`, so the records before the position are no
   * longer known to be below it: the next seek that does not find its key right here
   * descends.
   */
  private stepped = false;
  /** Past the last leaf (or the tree is empty): nothing at or after `last` (after it, when stepped). */
  private atEnd = false;
  /**
   * Branches decoded so far, by page id: a short range scan starts with a descent from the
   * root, and decoding a branch's keys costs more than the scan itself. A cursor lives only
   * as long as the tree does not change, so these stay exact.
   */
  private readonly branches = new Map<PageId, BranchNode>();
  /** expiresAt of the record `value()` last copied (0 = never). */
  readonly current = { expiresAt: 0 };
  /**
   * A long forward scan reads leaves ahead in runs (one `pread` and one buffer for many
   * pages, none of them put in the page cache, where a full scan would only evict the hot
   * pages): `ahead[j]` is the page of `aheadNode.children[aheadFrom + j]`.
   */
  private ahead: Buffer[] = [];
  private aheadNode: BranchNode | undefined;
  private aheadFrom = 0;
  /** Leaves stepped into one after another since the last descent. */
  private run = 0;
  /** The scan's upper bound (see `limit`), as bytes for comparing with branch keys. */
  private bound: Buffer | undefined;
  private boundKey: string | undefined;
  private boundInclusive = false;
  /** The slab `copyOut` carves leaf copies from, and how much of it they use. */
  private slab: Buffer = Buffer.alloc(0);
  private slabUsed = 0;

  constructor(private readonly tree: BTree) {}

  /**
   * The upper bound (an internal key) of the scan the next moves serve, or undefined: a
   * run read ahead stops at the last leaf that may hold a key within it.
   */
  limit(hi: string | undefined, inclusive: boolean): void {
    this.boundInclusive = inclusive;
    if (hi === this.boundKey) return;
    this.boundKey = hi;
    this.bound = hi === undefined ? undefined : Buffer.from(hi, "latin1");
  }

  /** Positions on `k` (an internal key); true when the tree holds it. */
  seek(k: string): boolean {
    // The common step of a scan: k is at (or just after) the current record. A smaller k
    // cannot match here (the record is at least the last key sought), so this needs no
    // comparison with that key.
    if (this.page !== undefined && this.advanceTo(k) === 0) {
      this.last = k;
      this.stepped = false;
      return true;
    }
    if (this.stepped || k < this.last || (this.page === undefined && !this.atEnd)) {
      this.descend(k);
    }
    this.last = k;
    if (this.atEnd) return false;
    let c = this.advanceTo(k);
    if (c !== undefined) return c === 0;
    // Every key of this leaf is below k: try the next leaf, or jump there from the root.
    if (!this.nextLeaf()) return false;
    if (this.n === 0 || this.compare(this.n - 1, k) < 0) this.descend(k);
    c = this.advanceTo(k);
    return c === 0;
  }

  /** Positions on the first record after `k`; false when the tree holds none. */
  seekAfter(k: string): boolean {
    if (this.seek(k)) {
      // Past k itself: the record before the position is no longer below `last`.
      this.i++;
      this.stepped = true;
    }
    return this.settle();
  }

  /** On a record, stepping into the following leaves as needed; false past the last. */
  private settle(): boolean {
    while (this.page !== undefined) {
      if (this.i < this.n) return true;
      if (!this.nextLeaf()) return false;
    }
    return false;
  }

  /** A copy of the value `seek` found; its expiresAt goes to `current`. */
  value(): Buffer {
    const page = this.page;
    if (page === undefined || this.i >= this.n) throw new Error("internal: cursor not on a record");
    const tree = this.tree;
    return copyRecordValue(page, this.i, this.base, tree.pager.path, tree.overflow, this.current);
  }

  /**
   * The current record and those after it in its leaf, at most `max` and below `hi` (an
   * internal key; `hiInclusive` as for `limit`), into `run`; their count. The cursor stays on
   * the last one taken.
   *
   * Keys and inline values are views into one copy of the leaf made for the run (no two
   * runs share one, so each caller may change what it got): one native copy per leaf
   * instead of two allocations and copies per record. The copies are carved from a 16 KiB
   * slab (`copyOut`), so keeping one view keeps that slab, much as a small Buffer keeps
   * Node's 8 KiB pool slab. The run also keeps a private copy of the leaf of its own, for
   * the key a scan resumes after, whatever the caller did to its views.
   */
  takeRun(run: RecordRun, max: number, hi: string | undefined, hiInclusive: boolean): number {
    const page = this.page;
    if (page === undefined || this.i >= this.n) throw new Error("internal: cursor not on a record");
    const tree = this.tree;
    const own = this.copyOut(page);
    const first = this.i;
    const count = takeRecords(
      page,
      this.n,
      first,
      max,
      hi,
      hiInclusive,
      this.base,
      tree.pager.path,
      tree.overflow,
      own,
      run,
    );
    // Only now: when the first record throws, the run still resumes after its own last key.
    let leaf = run.leaf;
    if (leaf.length !== page.length) leaf = run.leaf = Buffer.allocUnsafe(page.length);
    page.copy(leaf);
    if (count > 0) this.i = first + count - 1;
    this.stepped = true;
    run.from = first;
    run.base = this.base;
    run.file = tree.pager.path;
    run.count = count;
    run.at = 0;
    return count;
  }

  /**
   * A copy of `page` for views handed to a caller, carved from a slab of `SLAB_BYTES` as
   * Node's pool carves small Buffers: a Buffer of its own per leaf cost about 1.8 µs under
   * the profiler (`Buffer.allocUnsafe` of a page size does not use the pool), several times
   * the copy itself. A larger slab would save a little more and keep more memory alive
   * behind one kept view.
   */
  private copyOut(page: Buffer): Buffer {
    const size = page.length;
    if (this.slabUsed + size > this.slab.length) {
      this.slab = Buffer.allocUnsafe(Math.max(SLAB_BYTES, size));
      this.slabUsed = 0;
    }
    const at = this.slabUsed;
    this.slabUsed = at + size;
    page.copy(this.slab, at);
    return this.slab.subarray(at, at + size);
  }

  /** Moves within the leaf to the first record >= k; its comparison, or undefined past the end. */
  private advanceTo(k: string): number | undefined {
    while (this.i < this.n) {
      const c = this.compare(this.i, k);
      if (c >= 0) return c;
      this.i++;
    }
    return undefined;
  }

  private compare(i: number, k: string): number {
    return compareRecordKey(this.page!, i, k, this.base, this.tree.pager.path);
  }

  private descend(k: string): void {
    this.path = [];
    this.run = 0;
    this.stepped = false;
    const key = Buffer.from(k, "latin1");
    this.enter(this.tree.root, (node) => childIndex(node.keys, key));
  }

  /** The leaf after the current one; false (and at end) when there is none. */
  private nextLeaf(): boolean {
    const path = this.path;
    while (path.length > 0) {
      const top = path[path.length - 1]!;
      if (top.idx + 1 < top.node.children.length) {
        top.idx++;
        const page = top.node.height === 1 ? this.leafAhead(top) : undefined;
        if (page === undefined) this.enter(top.node.children[top.idx]!, () => 0);
        else this.onLeaf(page, top.node.children[top.idx]!);
        return true;
      }
      path.pop();
    }
    this.page = undefined;
    this.atEnd = true;
    return false;
  }

  /**
   * The leaf `top` now points at, from a run read ahead; undefined until the scan has
   * stepped through `READ_AHEAD_AFTER` leaves, so short ranges read only what they use.
   */
  private leafAhead(top: Level): Buffer | undefined {
    if (++this.run < READ_AHEAD_AFTER) return undefined;
    const j = top.idx - this.aheadFrom;
    if (top.node === this.aheadNode && j >= 0 && j < this.ahead.length) return this.ahead[j];
    const { children, keys } = top.node;
    let end = Math.min(children.length, top.idx + READ_AHEAD_PAGES);
    const bound = this.bound;
    if (bound !== undefined) {
      // children[j] holds no key below keys[j - 1]: from the first past the bound, none is due.
      for (let j = top.idx + 1; j < end; j++) {
        const c = Buffer.compare(keys[j - 1]!, bound);
        if (this.boundInclusive ? c > 0 : c >= 0) {
          end = j;
          break;
        }
      }
    }
    const ids = children.slice(top.idx, end);
    this.ahead = this.tree.pager.readMany(ids, PageType.Leaf);
    this.aheadNode = top.node;
    this.aheadFrom = top.idx;
    return this.ahead[0];
  }

  private onLeaf(page: Buffer, id: PageId): void {
    this.atEnd = false;
    this.page = page;
    this.base = id * this.tree.pager.pageSize;
    this.n = checkedCount(page, this.base, this.tree.pager.path);
    this.i = 0;
  }

  /** Walks down from `id`, choosing each branch's child with `pick`, to a leaf. */
  private enter(id: PageId, pick: (node: BranchNode) => number): void {
    const pager = this.tree.pager;
    this.atEnd = false;
    this.page = undefined;
    if (id === NO_PAGE) {
      this.atEnd = true;
      return;
    }
    for (;;) {
      const page = pager.read(id, undefined);
      const base = id * pager.pageSize;
      if (page[4] === PageType.Leaf) {
        this.onLeaf(page, id);
        return;
      }
      if (page[4] !== PageType.Branch) {
        throw corrupted(`page ${id} is not a tree page`, base + 4, pager.path);
      }
      let node = this.branches.get(id);
      if (node === undefined) {
        node = decodeBranch(page, base, pager.path);
        this.branches.set(id, node);
      }
      const parent = this.path[this.path.length - 1];
      // Heights fall by one per level, so a damaged link cannot make the walk loop.
      if (parent !== undefined && node.height !== parent.node.height - 1) {
        throw corrupted(
          `branch ${id} has height ${node.height}, expected ${parent.node.height - 1}`,
          base + 5,
          pager.path,
        );
      }
      const idx = pick(node);
      this.path.push({ node, idx });
      id = node.children[idx]!;
    }
  }
}
