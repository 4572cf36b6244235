/**
 * The free-list: which pages below the page count hold nothing a durable meta needs.
 *
 * Two kinds of id are listed. *Free* ids may be reused by the next allocation. *Pending*
 * ids were freed by a commit that is durable, but the meta before it may still reach them
 * (the engine may fall back to that meta while the WAL that produced the newest commit has
 * not been reset); they become free only when the engine calls `releasePending()`. Pending
 * ids are persisted too, so a reopen neither leaks them nor reuses them too early.
 *
 * On disk the list is a chain of free-list pages reachable from the meta, holding runs:
 *
 * | offset | size | field                                                              |
 * |-------:|-----:|--------------------------------------------------------------------|
 * |      0 |   16 | page header: type 4 (free-list), u16 at 6 = number of runs here    |
 * |     16 |    8 | next free-list page id u64 (0 = last page of the chain)            |
 * |     24 | 12·n | runs: u64 first page id, u32 length (bit 31 set = pending run)     |
 *
 * Runs keep the list small when large regions are free (after a clear or a big delete); the
 * whole list is rewritten by every commit, like bbolt's, so its size is the price of a commit
 * when free space is very fragmented.
 */
import { readU64, writeU64 } from "../codec.js";
import { corrupted } from "../errors.js";
import { type Meta, metaSlot } from "./meta.js";
import { NO_PAGE, newPage, OFF_AUX16, PAGE_HEADER_SIZE, type PageId, PageType } from "./page.js";

const OFF_NEXT = PAGE_HEADER_SIZE;
const OFF_RUNS = PAGE_HEADER_SIZE + 8;
const RUN_BYTES = 12;
const PENDING_BIT = 0x8000_0000;
const MAX_RUN = 0x7fff_ffff;

export function runsPerPage(pageSize: number): number {
  return Math.floor((pageSize - OFF_RUNS) / RUN_BYTES);
}

export interface Run {
  readonly start: number;
  readonly length: number;
  readonly pending: boolean;
}

/** Runs of consecutive ids in an ascending list. */
export function toRuns(ascending: readonly number[], pending: boolean): Run[] {
  const runs: Run[] = [];
  let i = 0;
  while (i < ascending.length) {
    const start = ascending[i]!;
    let j = i + 1;
    while (j < ascending.length && ascending[j] === start + (j - i) && j - i < MAX_RUN) j++;
    runs.push({ start, length: j - i, pending });
    i = j;
  }
  return runs;
}

export function countRuns(ascending: readonly number[]): number {
  let n = 0;
  for (let i = 0; i < ascending.length; i++) {
    if (i === 0 || ascending[i] !== ascending[i - 1]! + 1) n++;
  }
  return n;
}

/** Encodes one free-list page holding `runs` (at most `runsPerPage`). */
export function encodeFreelistPage(pageSize: number, runs: readonly Run[], next: PageId): Buffer {
  const page = newPage(pageSize, PageType.FreeList, runs.length);
  writeU64(page, next, OFF_NEXT);
  let at = OFF_RUNS;
  for (const r of runs) {
    writeU64(page, r.start, at);
    page.writeUInt32LE(r.length + (r.pending ? PENDING_BIT : 0), at + 8);
    at += RUN_BYTES;
  }
  return page;
}

/** Decodes a verified free-list page; `offset` is its file offset, for errors. */
export function decodeFreelistPage(
  page: Buffer,
  offset: number,
  file: string,
): { next: PageId; runs: Run[] } {
  const n = page.readUInt16LE(OFF_AUX16);
  if (n > runsPerPage(page.length)) {
    throw corrupted(`free-list page holds ${n} runs, more than fit`, offset + OFF_AUX16, file);
  }
  const next = readU64(page, OFF_NEXT);
  if (next < 0) throw corrupted("free-list next link above 2^53", offset + OFF_NEXT, file);
  const runs: Run[] = [];
  for (let i = 0, at = OFF_RUNS; i < n; i++, at += RUN_BYTES) {
    const start = readU64(page, at);
    const raw = page.readUInt32LE(at + 8);
    const length = raw & MAX_RUN;
    if (start < 0 || length === 0) throw corrupted("invalid free-list run", offset + at, file);
    runs.push({ start, length, pending: (raw & PENDING_BIT) !== 0 });
  }
  return { next: (next === 0 ? NO_PAGE : next) as PageId, runs };
}

/**
 * Reads the free-list chain of `meta` at open. Every link and run is validated: a link
 * out of range or looping, an id listed twice (or a free-list page listing itself), or a
 * total that disagrees with the meta is EMDB_CORRUPTED, so a damaged list can never hand
 * out a page that is in use.
 */
export function readFreelist(
  meta: Meta,
  pageSize: number,
  file: string,
  read: (id: PageId) => Buffer,
): { chain: PageId[]; free: number[]; pending: number[] } {
  const P = pageSize;
  const chain: PageId[] = [];
  const inChain = new Set<number>();
  const listed = new Set<number>();
  const free: number[] = [];
  const pending: number[] = [];
  let id = meta.freelistRoot;
  let from = metaSlot(meta.generation) * P + 56;
  while (id !== NO_PAGE) {
    if (id < 2 || id >= meta.pageCount || inChain.has(id) || listed.has(id)) {
      throw corrupted(`free-list link to page ${id} is invalid or forms a cycle`, from, file);
    }
    chain.push(id as PageId);
    inChain.add(id);
    const { next, runs } = decodeFreelistPage(read(id as PageId), id * P, file);
    for (const r of runs) {
      if (r.start < 2 || r.start + r.length > meta.pageCount) {
        throw corrupted(`free-list run ${r.start}+${r.length} out of range`, id * P, file);
      }
      for (let p = r.start; p < r.start + r.length; p++) {
        if (listed.has(p) || inChain.has(p)) {
          throw corrupted(`page ${p} listed twice in the free-list`, id * P, file);
        }
        listed.add(p);
        (r.pending ? pending : free).push(p);
      }
    }
    from = id * P + OFF_NEXT;
    id = next;
  }
  for (const p of chain) {
    if (listed.has(p)) throw corrupted(`free-list page ${p} lists itself`, p * P, file);
  }
  if (listed.size !== meta.freePageCount) {
    throw corrupted(
      `free-list holds ${listed.size} pages, the meta says ${meta.freePageCount}`,
      metaSlot(meta.generation) * P + 64,
      file,
    );
  }
  return { chain, free, pending };
}

/**
 * The reusable ids, kept sorted in descending order so the smallest id (the one that keeps
 * the file compact) is taken with a `pop()`.
 */
export class FreeSet {
  private desc: number[] = [];

  get size(): number {
    return this.desc.length;
  }

  /** Smallest free id, removed from the set. */
  pop(): number | undefined {
    return this.desc.pop();
  }

  /** The lowest run of `n` consecutive free ids, removed from the set; its first id. */
  takeRun(n: number): number | undefined {
    if (n === 1) return this.desc.pop();
    const d = this.desc;
    let runLen = 0;
    for (let i = d.length - 1; i >= 0; i--) {
      runLen = i < d.length - 1 && d[i] === d[i + 1]! + 1 ? runLen + 1 : 1;
      if (runLen === n) {
        const first = d[i + n - 1]!;
        d.splice(i, n);
        return first;
      }
    }
    return undefined;
  }

  private indexOf(id: number): number {
    // Binary search over descending values: first index whose value is <= id.
    let lo = 0;
    let hi = this.desc.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.desc[mid]! > id) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  has(id: number): boolean {
    return this.desc[this.indexOf(id)] === id;
  }

  add(id: number): void {
    const i = this.indexOf(id);
    if (this.desc[i] === id) throw new Error(`internal: page ${id} freed twice`);
    this.desc.splice(i, 0, id);
  }

  addAll(ids: Iterable<number>): void {
    const merged = this.desc.concat([...ids]).sort((a, b) => b - a);
    for (let i = 1; i < merged.length; i++) {
      if (merged[i] === merged[i - 1]) throw new Error(`internal: page ${merged[i]} freed twice`);
    }
    this.desc = merged;
  }

  /** Drops free ids at the end of the file; returns the new page count. */
  trimTail(pageCount: number): number {
    let k = 0;
    while (k < this.desc.length && this.desc[k] === pageCount - 1 - k) k++;
    if (k > 0) this.desc.splice(0, k);
    return pageCount - k;
  }

  ascending(): number[] {
    return this.desc.slice().reverse();
  }

  snapshot(): number[] {
    return this.desc.slice();
  }

  restore(snapshot: number[]): void {
    this.desc = snapshot;
  }
}
