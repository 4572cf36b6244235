/**
 * The file store's reads for long forward scans, straight from the committed B+tree
 * (DESIGN.md §2: ordered scans merge the tree with the changes not yet checkpointed).
 *
 * Two ways in, sharing one `TreeCursor`:
 * - `read(k)`: the value of a key the scan took from the ordered in-memory view, when that
 *   key is unchanged since the last checkpoint (some keys are dirty).
 * - `next(owner, …)`: the next record itself, when no key is dirty at all, so the tree and
 *   memory hold the same live entries: the scan then never touches the in-memory index.
 *   The iterator that last stepped the cursor (its `owner`) steps it on by one record;
 *   any other caller positions it after its own last key first.
 *
 * The cursor is made anew whenever the tree commits or is replaced: a commit may reuse the
 * pages it holds.
 */
import { TreeCursor } from "./btree/cursor.js";
import type { BTree } from "./btree/tree.js";

/** What a step of `TreeScan.next` (or of the store around it) found. */
export type TreeStep = typeof NOT_CLEAN | typeof END | typeof RECORD;
/** Memory holds changes the tree lacks: the caller reads memory. */
export const NOT_CLEAN = 0;
/** No record after the caller's last key, within its bound. */
export const END = 1;
/** The next record, in the caller's `out`. */
export const RECORD = 2;

/** A record read by `next`: fresh copies of key and value. */
export interface TreeRecord {
  key: Buffer;
  value: Buffer;
  expiresAt: number;
}

export class TreeScan {
  private cursor: TreeCursor | undefined;
  private tree: BTree | undefined;
  private generation = -1;
  /** The iterator whose last record the cursor is on; undefined after any other move. */
  private owner: object | undefined;
  /** expiresAt of the value `read` returned (0 = never). */
  expiresAt = 0;

  /**
   * Lets go of the cursor and the tree it reads: once a tree's file is replaced (`compact()`)
   * or closed, a cursor kept until the next scan would keep its pages, and through them the
   * memory map of a deleted file, alive.
   */
  reset(): void {
    this.cursor = undefined;
    this.tree = undefined;
    this.generation = -1;
    this.owner = undefined;
  }

  private cursorFor(tree: BTree, generation: number): TreeCursor {
    let c = this.cursor;
    if (c === undefined || this.tree !== tree || this.generation !== generation) {
      c = this.cursor = new TreeCursor(tree);
      this.tree = tree;
      this.generation = generation;
      this.owner = undefined;
    }
    return c;
  }

  /**
   * A copy of `k`'s value when the tree holds `k`; its expiry in `expiresAt`. `hi` bounds
   * the scan `k` belongs to (for reading ahead).
   */
  read(
    tree: BTree,
    generation: number,
    k: string,
    hi: string | undefined,
    hiInclusive: boolean,
  ): Buffer | undefined {
    const c = this.cursorFor(tree, generation);
    this.owner = undefined;
    c.limit(hi, hiInclusive);
    if (!c.seek(k)) return undefined;
    const value = c.value();
    this.expiresAt = c.current.expiresAt;
    return value;
  }

  /**
   * The record after `owner`'s last one (after `resumeAfter()`, an internal key, when the
   * cursor is not on it) into `out`; End past the last record or past `hi`.
   */
  next(
    tree: BTree,
    generation: number,
    owner: object,
    resumeAfter: () => string,
    hi: string | undefined,
    hiInclusive: boolean,
    out: TreeRecord,
  ): typeof END | typeof RECORD {
    const c = this.cursorFor(tree, generation);
    c.limit(hi, hiInclusive);
    // The owner's record is still the one it last read: any other move of the cursor clears
    // `owner`, and the store only calls here while no key is dirty, a state that, once a
    // write has broken it, only a commit restores, and a commit replaces the cursor.
    const on = this.owner === owner ? c.step() : c.seekAfter(resumeAfter());
    this.owner = owner;
    if (!on) return END;
    if (hi !== undefined) {
      const d = c.compareCurrent(hi);
      if (hiInclusive ? d > 0 : d >= 0) return END;
    }
    out.key = c.key(true);
    out.value = c.value(true);
    out.expiresAt = c.current.expiresAt;
    return RECORD;
  }
}
