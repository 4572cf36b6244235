/**
 * The copy-on-write B+tree over the pager: one instance per open page file.
 *
 * The engine keeps every live entry in memory, so the tree is read in full only at open
 * (`forEach`), along the paths a checkpoint touches (`apply`), and by long ordered scans,
 * which read unchanged keys through a `TreeCursor` (`cursor.ts`). Between commits the
 * tree's root lives here; `commit()` makes it durable through the pager.
 *
 * Page formats: `leaf.ts`, `branch.ts`, `overflow.ts`. Size limits: `limits.ts`.
 */
import { corrupted } from "../errors.js";
import type { Meta } from "../pager/meta.js";
import { NO_PAGE, type PageId, PageType } from "../pager/page.js";
import type { PagePlacer, Pager } from "../pager/pager.js";
import { Applier, type Change } from "./apply.js";
import { type BranchNode, decodeBranch } from "./branch.js";
import { type BulkEntry, bulkLoad } from "./bulk-load.js";
import { checkTree } from "./check.js";
import { TreeCursor } from "./cursor.js";
import { leafCount, leafRecordAt, REC_CONTIGUOUS, type RecordSpans, scanLeaf } from "./leaf.js";
import { MAX_VALUE_LENGTH, maxKeySize } from "./limits.js";
import { freeOverflow, readOverflow } from "./overflow.js";

export type { Change } from "./apply.js";

export interface ApplyOptions {
  /** Free the whole tree first (the user called `clear()` since the last checkpoint). */
  readonly clearFirst?: boolean;
}

function* putsOf(changes: readonly Change[]): Generator<BulkEntry> {
  for (const c of changes) {
    if (c.value !== undefined) yield { key: c.key, value: c.value, expiresAt: c.expiresAt };
  }
}

/** Checks a batch before anything is written (emdb-rs D9: never fail halfway on bad input). */
function validateChanges(changes: readonly Change[], pageSize: number): void {
  const maxKey = maxKeySize(pageSize);
  let prev: Buffer | undefined;
  for (let i = 0; i < changes.length; i++) {
    const ch = changes[i]!;
    if (!Buffer.isBuffer(ch.key)) throw new TypeError(`change ${i}: key must be a Buffer`);
    if (ch.key.length > maxKey) {
      throw new RangeError(
        `change ${i}: key of ${ch.key.length} bytes exceeds the maximum of ${maxKey} for ${pageSize}-byte pages`,
      );
    }
    if (prev !== undefined && Buffer.compare(prev, ch.key) >= 0) {
      throw new RangeError(
        `change ${i}: changes must be sorted ascending by key, without duplicates`,
      );
    }
    prev = ch.key;
    if (ch.value !== undefined) {
      if (!Buffer.isBuffer(ch.value)) throw new TypeError(`change ${i}: value must be a Buffer`);
      if (ch.value.length > MAX_VALUE_LENGTH) {
        throw new RangeError(`change ${i}: value of ${ch.value.length} bytes is too large`);
      }
    }
    if (!Number.isSafeInteger(ch.expiresAt) || ch.expiresAt < 0) {
      throw new RangeError(`change ${i}: expiresAt must be a non-negative safe integer`);
    }
  }
}

export class BTree {
  /** Root of the working tree (uncommitted changes included); 0 when empty. */
  root: PageId;
  /** Entries in the working tree. */
  entryCount: number;

  constructor(readonly pager: Pager) {
    this.root = pager.meta.root as PageId;
    this.entryCount = pager.meta.entryCount;
  }

  /**
   * Applies changes sorted ascending by unsigned key bytes, keys unique. Invalid input is a
   * TypeError/RangeError before anything of this call is written. If this call fails (bad
   * input, I/O, corruption), everything since the last commit is rolled back, earlier calls
   * included. Returns the new root.
   */
  apply(changes: readonly Change[], options: ApplyOptions = {}): PageId {
    try {
      // Inside the try: a checkpoint applies its changes in runs, and a refused later run
      // must undo the earlier ones of the same commit too.
      validateChanges(changes, this.pager.pageSize);
      if (options.clearFirst) this.clearAll();
      if (changes.length === 0) return this.root;
      if (this.root === NO_PAGE) {
        // Into an empty tree (first checkpoint, or right after a clear) the puts stream
        // straight into packed pages, without building a record object per change.
        const loaded = bulkLoad(this.pager, putsOf(changes));
        this.root = loaded.root;
        this.entryCount = loaded.entryCount;
        return this.root;
      }
      const applier = new Applier(this.pager, changes);
      this.root = applier.run(this.root);
      this.entryCount += applier.delta;
      return this.root;
    } catch (err) {
      this.rollback();
      throw err;
    }
  }

  /**
   * Replaces the whole tree with `entries` (sorted ascending, keys unique), streamed into
   * packed pages by the bulk loader: the old pages are freed (pending, as in `apply`). The
   * entry objects and their buffers may be reused between items. On failure everything since
   * the last commit is rolled back.
   */
  rebuild(entries: Iterable<BulkEntry>): PageId {
    try {
      this.clearAll();
      const loaded = bulkLoad(this.pager, entries);
      this.root = loaded.root;
      this.entryCount = loaded.entryCount;
      return this.root;
    } catch (err) {
      this.rollback();
      throw err;
    }
  }

  /** Frees every page of the tree (pending, like any page the durable meta reaches). */
  clearAll(): void {
    const P = this.pager.pageSize;
    const path = this.pager.path;
    this.walk(
      (page, id) => {
        const n = leafCount(page);
        for (let i = 0; i < n; i++) {
          const r = leafRecordAt(page, i, id * P, path);
          if (r.inline === undefined) {
            freeOverflow(
              this.pager,
              r.head,
              r.valueLength,
              (r.flags & REC_CONTIGUOUS) !== 0,
              id * P,
            );
          }
        }
        this.pager.free(id);
      },
      (id) => this.pager.free(id),
    );
    this.root = NO_PAGE;
    this.entryCount = 0;
  }

  /** Commits the working tree through the pager; on failure the tree returns to the durable state. */
  commit(lastTxId: number = this.pager.meta.lastTxId): Meta {
    try {
      return this.pager.commit({ root: this.root, entryCount: this.entryCount, lastTxId });
    } catch (err) {
      this.root = this.pager.meta.root as PageId;
      this.entryCount = this.pager.meta.entryCount;
      throw err;
    }
  }

  /** Drops every change since the last commit. */
  rollback(): void {
    this.pager.rollback();
    this.root = this.pager.meta.root as PageId;
    this.entryCount = this.pager.meta.entryCount;
  }

  /**
   * Point lookup (tests and tools; the engine serves reads from memory). One descent of a
   * fresh `TreeCursor`, so lookups and scans share one way down the tree.
   */
  get(key: Buffer): { value: Buffer; expiresAt: number } | undefined {
    const cursor = new TreeCursor(this);
    if (!cursor.seek(key.toString("latin1"))) return undefined;
    const value = cursor.value();
    return { value, expiresAt: cursor.current.expiresAt };
  }

  /** Reads an overflow chain (for scans and cursors over this tree's leaves). */
  readonly overflow = (head: number, length: number, contiguous: boolean, at: number): Buffer =>
    readOverflow(this.pager, head, length, contiguous, at);

  /**
   * Calls `cb` for every entry in ascending key order. `key` and (inline) `value` are views
   * into page buffers, valid only during the callback: copy them to keep them. Leaves under
   * one branch are read with as few reads as their ids allow and bypass the page cache.
   */
  forEach(cb: (key: Buffer, value: Buffer, expiresAt: number) => void): void {
    this.forEachSpan((kb, ks, ke, vb, vs, ve, at) =>
      cb(kb.subarray(ks, ke), vb.subarray(vs, ve), at),
    );
  }

  /**
   * `forEach` that reports where each key and value are instead of making views: loading a
   * million entries as strings then skips two million short-lived Buffer objects. `onLeaf`
   * sees each leaf page, and its id, before its records.
   */
  forEachSpan(
    cb: RecordSpans,
    onLeaf?: (page: Buffer, id: PageId) => void,
    place?: PagePlacer,
  ): void {
    const P = this.pager.pageSize;
    const path = this.pager.path;
    this.walk(
      (page, id) => {
        onLeaf?.(page, id);
        scanLeaf(page, id * P, path, this.overflow, cb);
      },
      undefined,
      place,
    );
  }

  /**
   * Depth-first walk in key order. Heights must decrease by one per level and no page may
   * be reached twice, so a corrupt link can neither loop nor blow up into a huge DAG walk.
   * `onBranch` runs after the branch's children.
   */
  private walk(
    onLeaf: (page: Buffer, id: PageId) => void,
    onBranch?: (id: PageId, node: BranchNode) => void,
    place?: PagePlacer,
  ): void {
    if (this.root === NO_PAGE) return;
    const P = this.pager.pageSize;
    const path = this.pager.path;
    const seen = new Uint8Array(this.pager.pageCount);
    const mark = (id: PageId, from: number) => {
      if (id < 2 || id >= seen.length) {
        throw corrupted(`tree link to page ${id} out of range`, from, path);
      }
      if (seen[id] !== 0) throw corrupted(`page ${id} is reached twice in the tree`, from, path);
      seen[id] = 1;
    };
    const visit = (id: PageId, page: Buffer, height: number | undefined): void => {
      if (page[4] === PageType.Leaf) {
        onLeaf(page, id);
        return;
      }
      if (page[4] !== PageType.Branch)
        throw corrupted(`page ${id} is not a tree page`, id * P + 4, path);
      const node = decodeBranch(page, id * P, path);
      if (height !== undefined && node.height !== height) {
        throw corrupted(
          `branch ${id} has height ${node.height}, expected ${height}`,
          id * P + 5,
          path,
        );
      }
      for (const c of node.children) mark(c, id * P);
      if (node.height === 1) {
        const leaves = this.pager.readMany(node.children, PageType.Leaf, id * P, place);
        for (let i = 0; i < leaves.length; i++) onLeaf(leaves[i]!, node.children[i]!);
      } else {
        for (const c of node.children) {
          visit(c, this.pager.read(c, PageType.Branch, id * P), node.height - 1);
        }
      }
      onBranch?.(id, node);
    };
    mark(this.root, 0);
    visit(this.root, this.pager.read(this.root, undefined), undefined);
  }

  /** Consistency check of the last commit (pager accounting plus tree order); [] when clean. */
  check(): string[] {
    return checkTree(this.pager);
  }
}
