/**
 * The file store's reads for long forward scans, straight from the committed B+tree
 * (DESIGN.md §2: ordered scans merge the tree with the changes not yet checkpointed).
 *
 * Two ways in, sharing one `TreeCursor`:
 * - `read(k)`: the value of a key the scan took from the ordered in-memory view, when that
 *   key is unchanged since the last checkpoint (some keys are dirty).
 * - `nextRun(after, …)`: the records after a key, up to the end of their leaf, when no key
 *   is dirty at all, so the tree and memory hold the same live entries: the scan then never
 *   touches the in-memory index.
 *
 * The cursor is made anew whenever the tree commits or is replaced: a commit may reuse the
 * pages it holds.
 */
import { TreeCursor } from "./btree/cursor.js";
import { recordKeyString } from "./btree/leaf.js";
import type { BTree } from "./btree/tree.js";

/** What a step of `TreeScan.nextRun` (or of the store around it) found. */
export type TreeStep = typeof NOT_CLEAN | typeof END | typeof RECORD;
/** Memory holds changes the tree lacks: the caller reads memory. */
export const NOT_CLEAN = 0;
/** No record after the caller's key, within its bound. */
export const END = 1;
/** Records, in the caller's run. */
export const RECORD = 2;

/**
 * A run's leaf before its first (every iterator starts with one, most never read the tree),
 * and what stands in its arrays for a record handed out or dropped.
 */
const NO_LEAF = Buffer.alloc(0);

/**
 * Consecutive records of one leaf, for a scan to hand out one by one: `keys[i]` and
 * `values[i]` are views into one copy of the leaf (the caller's to keep and to change; an
 * overflow value is a copy of its own),
 * `expiries[i]` their expiry (0 = never). A second, private copy of the leaf (`leaf`, with
 * the first record's index in it, `from`) gives the key to resume after, whatever the caller
 * did to the views.
 *
 * Why runs: a scan that asked the tree for one record at a time paid a dozen calls per
 * record, and a fresh process runs them unoptimised for its first tens of thousands of
 * records; a run is one tight loop per leaf (see `TreeCursor.takeRun`).
 */
export class RecordRun {
  readonly keys: Buffer[] = [];
  readonly values: Buffer[] = [];
  readonly expiries: number[] = [];
  count = 0;
  /** The next record to hand out. */
  at = 0;
  leaf: Buffer = NO_LEAF;
  from = 0;
  base = 0;
  file = "";

  /**
   * Record i as the entry a scan returns. The run lets go of it, so that it holds nothing a
   * caller has dropped (an overflow value may be 64 MiB), nor after `drop` anything it
   * never handed out.
   */
  take(i: number): [Buffer, Buffer] {
    const entry: [Buffer, Buffer] = [this.keys[i]!, this.values[i]!];
    this.keys[i] = NO_LEAF;
    this.values[i] = NO_LEAF;
    return entry;
  }

  /** Gives up the records not handed out yet. */
  drop(): void {
    for (let i = this.at; i < this.count; i++) {
      this.keys[i] = NO_LEAF;
      this.values[i] = NO_LEAF;
    }
    this.count = this.at;
  }

  /** The key (internal form) of the run's i-th record. */
  keyOf(i: number): string {
    return recordKeyString(this.leaf, this.from + i, this.base, this.file);
  }
}

export class TreeScan {
  private cursor: TreeCursor | undefined;
  private tree: BTree | undefined;
  private generation = -1;
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
  }

  private cursorFor(tree: BTree, generation: number): TreeCursor {
    let c = this.cursor;
    if (c === undefined || this.tree !== tree || this.generation !== generation) {
      c = this.cursor = new TreeCursor(tree);
      this.tree = tree;
      this.generation = generation;
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
    c.limit(hi, hiInclusive);
    if (!c.seek(k)) return undefined;
    const value = c.value();
    this.expiresAt = c.current.expiresAt;
    return value;
  }

  /**
   * The records after `after` (an internal key) to the end of their leaf, at most `max`,
   * within `hi`, into `run`; END when there is none.
   */
  nextRun(
    tree: BTree,
    generation: number,
    after: string,
    hi: string | undefined,
    hiInclusive: boolean,
    max: number,
    run: RecordRun,
  ): typeof END | typeof RECORD {
    const c = this.cursorFor(tree, generation);
    c.limit(hi, hiInclusive);
    if (!c.seekAfter(after)) return END;
    return c.takeRun(run, max, hi, hiInclusive) === 0 ? END : RECORD;
  }
}
