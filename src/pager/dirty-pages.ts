/**
 * The pages the open transaction has written that are not yet in the file, and the writing
 * out of them: adjacent pages coalesced into one write of at most `MAX_WRITE_BYTES`.
 *
 * Page buffers are recycled. A full tree rebuild (a bulk load, a compaction, a migration)
 * writes a whole file of new pages that nothing reads again before the commit; with a fresh
 * `Buffer.alloc` for each, every written page waited for the garbage collector, which frees
 * such buffers only at its next cycle, and at 1M records tens of MiB of dead pages raised
 * the process's peak memory. A page staged as *handed over* gives its buffer back once
 * written, and `blank` reuses it; at most one spill's worth is kept, until the commit ends.
 */
import type { StorageFile } from "./backend.js";
import { newPage, type PageType } from "./page.js";

/** Coalesced writes are cut at this size so a huge commit does not build one huge buffer. */
export const MAX_WRITE_BYTES = 1 << 20;

/**
 * What becomes of a staged page's buffer once it is written out: `drop` (a leaf or an
 * overflow page, unlikely to be read again soon), `cache` (a branch, which every path goes
 * through), `recycle` (reused for a new page: the writer dropped it and no one has read it).
 */
export type Keep = "drop" | "cache" | "recycle";

export class DirtyPages {
  private readonly pages = new Map<number, Buffer>();
  private readonly keep = new Map<number, Keep>();
  private readonly spare: Buffer[] = [];
  private readonly spareCapacity: number;
  private runBuffer: Buffer | undefined;

  constructor(
    private readonly pageSize: number,
    private readonly spillBytes: number,
  ) {
    this.spareCapacity = Math.ceil(spillBytes / pageSize);
  }

  get size(): number {
    return this.pages.size;
  }

  /** Past the spill size: time to write them out (unsynced) before staging more. */
  get full(): boolean {
    return this.pages.size * this.pageSize >= this.spillBytes;
  }

  has(id: number): boolean {
    return this.pages.has(id);
  }

  /** A staged page for a reader, who may keep it: its buffer is no longer recycled. */
  get(id: number): Buffer | undefined {
    const page = this.pages.get(id);
    if (page !== undefined && this.keep.get(id) === "recycle") this.keep.set(id, "drop");
    return page;
  }

  set(id: number, page: Buffer, keep: Keep): void {
    this.pages.set(id, page);
    this.keep.set(id, keep);
  }

  delete(id: number): void {
    this.pages.delete(id);
    this.keep.delete(id);
  }

  /** A zeroed page with its header fields set (as `newPage`), on a recycled buffer if any. */
  blank(type: PageType, aux16 = 0, aux8 = 0): Buffer {
    const reused = this.spare.pop();
    if (reused === undefined) return newPage(this.pageSize, type, aux16, aux8);
    reused.fill(0);
    return newPage(this.pageSize, type, aux16, aux8, reused);
  }

  /**
   * Writes every staged page to `file` in id order and empties the set; `cache` receives
   * the pages staged to keep in the cache. Returns how many pages were written.
   */
  writeOut(file: StorageFile, cache: (id: number, page: Buffer) => void): number {
    const P = this.pageSize;
    const pages = this.pages;
    const ids = [...pages.keys()].sort((a, b) => a - b);
    const perWrite = Math.max(1, Math.floor(MAX_WRITE_BYTES / P));
    let i = 0;
    while (i < ids.length) {
      let j = i + 1;
      while (j < ids.length && ids[j] === ids[i]! + (j - i) && j - i < perWrite) j++;
      const first = ids[i]!;
      if (j - i === 1) {
        file.write(pages.get(first)!, 0, P, first * P);
      } else {
        this.runBuffer ??= Buffer.allocUnsafe(perWrite * P);
        const run = this.runBuffer;
        for (let k = i; k < j; k++) pages.get(ids[k]!)!.copy(run, (k - i) * P);
        file.write(run, 0, (j - i) * P, first * P);
      }
      i = j;
    }
    for (const id of ids) {
      const keep = this.keep.get(id);
      if (keep === "cache") cache(id, pages.get(id)!);
      else if (keep === "recycle" && this.spare.length < this.spareCapacity) {
        this.spare.push(pages.get(id)!);
      }
    }
    pages.clear();
    this.keep.clear();
    return ids.length;
  }

  /** Drops every staged page and the buffers kept for reuse (the commit ended). */
  clear(): void {
    this.pages.clear();
    this.keep.clear();
    this.spare.length = 0;
    this.runBuffer = undefined;
  }
}
