/**
 * The page file: fixed-size pages, two meta pages, a persisted free-list and a page cache.
 *
 * File layout: page `n` occupies bytes `[n * pageSize, (n + 1) * pageSize)`. Pages 0 and 1
 * are the meta slots (`meta.ts`); every other page carries the common header of `page.ts`.
 *
 * Transactions are copy-on-write. Between two commits the caller allocates pages, writes
 * them (only pages allocated in this transaction may be written) and frees the pages the new
 * tree no longer uses. Freed pages that the durable meta reaches become *pending*; pages that
 * were allocated and freed within the same transaction are reusable at once. `commit()`:
 *
 *  1. rewrites the free-list into newly allocated pages (the old free-list pages go pending),
 *  2. writes every dirty page, adjacent pages coalesced into one write   failpoint `commit:pages-written`
 *  3. `sync()`                                                           failpoint `commit:pages-synced`
 *  4. writes the meta slot of generation + 1                             failpoint `commit:meta-written`
 *  5. `sync()`                                                           failpoint `commit:meta-synced`
 *
 * Nothing in steps 1–3 touches a page the durable meta reaches, so a crash anywhere leaves
 * the old meta and everything it reaches intact; after step 5 the new meta is the durable
 * one. A failure in steps 1–3 rolls the transaction back; a failure in 4–5 leaves the
 * file's state unknown (the meta may or may not be on disk), so the pager refuses further
 * use and must be reopened.
 *
 * Pending pages become free only at `releasePending()`, which the engine calls once falling
 * back to the previous meta is no longer legitimate (new meta synced and WAL reset).
 *
 * Open uses the page size recorded in the file, whatever `options.pageSize` says (that
 * option only applies when the file is created). Meta slot B is looked for at offset
 * `pageSize` of slot A; when A is unreadable every legal page size is tried for B.
 */
import { corrupted, EmdbError } from "../errors.js";
import type { StorageBackend, StorageFile } from "./backend.js";
import { checkPager, type PageVisitor } from "./check.js";
import { DirtyPages, type Keep, MAX_WRITE_BYTES } from "./dirty-pages.js";
import {
  countRuns,
  encodeFreelistPage,
  FreeSet,
  type Run,
  readFreelist,
  runsPerPage,
  toRuns,
} from "./freelist.js";
import {
  type Meta,
  type MetaStatus,
  type OpenPageFileOptions,
  openPageFile,
  writeMeta,
} from "./meta.js";
import {
  DEFAULT_PAGE_SIZE,
  isValidPageSize,
  MAX_PAGE_SIZE,
  MIN_PAGE_SIZE,
  NO_PAGE,
  type PageId,
  PageType,
  sealPage,
  verifyPage,
} from "./page.js";
import { DEFAULT_CACHE_PAGES, PageCache } from "./page-cache.js";
import { type PageSource, PreadSource } from "./page-source.js";

export type { PageVisitor } from "./check.js";
export type { Meta, MetaStatus } from "./meta.js";

export type CommitFailpoint =
  | "commit:pages-written"
  | "commit:pages-synced"
  | "commit:meta-written"
  | "commit:meta-synced";

/** `now`, `temporary` and `failpoint` apply to the creation of a new file (`openPageFile`). */
export interface PagerOptions extends OpenPageFileOptions {
  /** Page size for a new file (power of two, 512..65536). An existing file keeps its own. */
  readonly pageSize?: number;
  /** Page cache capacity, in pages. */
  readonly cachePages?: number;
  /** Uncommitted dirty pages are written early (not synced) once they exceed this many bytes. */
  readonly spillBytes?: number;
  /** Builds the reader; defaults to positional reads. */
  readonly source?: (file: StorageFile) => PageSource;
}

export interface CommitFields {
  readonly root: number;
  readonly entryCount: number;
  readonly lastTxId: number;
}

export interface PagerStats {
  readonly pageSize: number;
  readonly pageCount: number;
  /** Ids reusable now. */
  readonly freePages: number;
  /** Ids freed by durable commits, reusable after `releasePending()`. */
  readonly pendingPages: number;
  readonly fileBytes: number;
  readonly generation: number;
  readonly cacheHits: number;
  readonly cacheMisses: number;
  /** Pages written since open (tree, overflow and free-list pages, not meta). */
  readonly pagesWritten: number;
  /** Pages read from the file since open (cache misses and runs of `readMany`). */
  readonly pagesRead: number;
}

interface TxnSnapshot {
  readonly free: number[];
  readonly pending: Set<number>;
  readonly pageCount: number;
}

const DEFAULT_SPILL_BYTES = 8 << 20;

/**
 * Where `readMany` may put up to `count` pages from file offset `position` on: room for
 * `pages` (1 ≤ pages ≤ count) at `buf[at..]`. With `filled`, the room already holds that
 * many bytes of the file from `position` (a memory map of it), so nothing is read into it.
 */
export type PagePlacer = (
  count: number,
  position: number,
) => { buf: Buffer; at: number; pages: number; filled?: number };

export class Pager {
  readonly pageSize: number;
  readonly fileId: Buffer;
  /** The last durable meta. */
  meta: Meta;
  metaStatus: MetaStatus;
  /** Called at each durability boundary of a commit; throw from it to simulate a crash there. */
  failpoint: ((name: CommitFailpoint) => void) | undefined;

  private readonly cache: PageCache;
  private readonly source: PageSource;
  private readonly freeSet = new FreeSet();
  /** Freed by durable commits, not yet released. */
  private pending = new Set<number>();
  /** Freed in this transaction, reachable from the durable meta. */
  private txnFreed = new Set<number>();
  /** Allocated in this transaction: the only pages that may be written. */
  private readonly txnAllocated = new Set<number>();
  private readonly dirty: DirtyPages;
  private txn: TxnSnapshot | undefined;
  private workingPageCount: number;
  private freelistPages: PageId[];
  private closed = false;
  private broken: unknown;
  private pagesWritten = 0;
  private pagesRead = 0;
  /** Whether this transaction wrote any page (early spills included), so commit must sync. */
  private txnWrote = false;

  private constructor(
    readonly file: StorageFile,
    readonly path: string,
    status: MetaStatus,
    options: PagerOptions,
  ) {
    this.meta = status.chosen;
    this.metaStatus = status;
    this.pageSize = status.chosen.pageSize;
    this.fileId = status.chosen.fileId;
    this.workingPageCount = status.chosen.pageCount;
    this.cache = new PageCache(options.cachePages ?? DEFAULT_CACHE_PAGES);
    this.source = (options.source ?? ((f) => new PreadSource(f)))(file);
    this.dirty = new DirtyPages(this.pageSize, options.spillBytes ?? DEFAULT_SPILL_BYTES);
    this.freelistPages = this.loadFreelist();
  }

  /** Opens the page file at `path`, creating it whole when missing or blank (`openPageFile`). */
  static open(backend: StorageBackend, path: string, options: PagerOptions = {}): Pager {
    const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
    if (!isValidPageSize(pageSize)) {
      throw new EmdbError(
        "EMDB_INVALID_CONFIG",
        `page size must be a power of two from ${MIN_PAGE_SIZE} to ${MAX_PAGE_SIZE}, got ${pageSize}`,
      );
    }
    const { file, status } = openPageFile(backend, path, pageSize, options);
    try {
      return new Pager(file, path, status, options);
    } catch (err) {
      file.close();
      throw err;
    }
  }

  /** Page count including pages allocated by the open transaction. */
  get pageCount(): number {
    return this.workingPageCount;
  }

  get inTransaction(): boolean {
    return this.txn !== undefined;
  }

  /** The generation the open transaction will commit as. */
  get nextGeneration(): number {
    return this.meta.generation + 1;
  }

  private usable(): void {
    if (this.closed) throw new EmdbError("EMDB_CLOSED", "the page file is closed");
    if (this.broken !== undefined) {
      throw new EmdbError(
        "EMDB_IO",
        "a commit failed while writing the meta page; reopen the page file",
        { cause: this.broken, file: this.path },
      );
    }
  }

  private outOfRange(id: number, from: number | undefined): EmdbError {
    return corrupted(
      `page id ${id} out of range (page count ${this.workingPageCount})`,
      from ?? id * this.pageSize,
      this.path,
    );
  }

  /**
   * A verified page. `from` is the file offset of the link that named `id`, reported when
   * the id is out of range. The buffer is shared: never write into it.
   */
  read(id: PageId, type: PageType | undefined, from?: number): Buffer {
    this.usable();
    if (!(id >= 2 && id < this.workingPageCount)) throw this.outOfRange(id, from);
    const known = this.dirty.get(id) ?? this.cache.get(id);
    if (known !== undefined) {
      if (type !== undefined && known[4] !== type) {
        verifyPage(known, id, type, id * this.pageSize, this.path);
      }
      return known;
    }
    const fresh = this.readFromFile(id, type);
    // A mapped view could change under a caller once the id is reused: keep a private copy.
    const page = this.source.returnsViews ? Buffer.from(fresh) : fresh;
    this.cache.set(id, page);
    return page;
  }

  /**
   * Verified pages for a full scan: runs of adjacent ids are read with one call, and the
   * pages are not put in the cache (a scan of the whole file would only evict the hot
   * pages). Returned buffers are valid until the next write.
   *
   * With `place`, the pages are read into memory the caller owns and keeps (see
   * `PagePlacer`). Pages the pager already holds are then copied there, so every page
   * returned lies in it.
   */
  readMany(ids: readonly PageId[], type: PageType, from?: number, place?: PagePlacer): Buffer[] {
    this.usable();
    const P = this.pageSize;
    const out = new Array<Buffer>(ids.length);
    let i = 0;
    while (i < ids.length) {
      const id = ids[i]!;
      if (id < 2 || id >= this.workingPageCount) throw this.outOfRange(id, from);
      const known = this.dirty.get(id) ?? this.cache.get(id);
      if (known !== undefined) {
        if (known[4] !== type) verifyPage(known, id, type, id * P, this.path);
        if (place === undefined) out[i++] = known;
        else {
          const room = place(1, id * P);
          known.copy(room.buf, room.at, 0, P);
          out[i++] = room.buf.subarray(room.at, room.at + P);
        }
        continue;
      }
      let j = i + 1;
      while (
        j < ids.length &&
        ids[j] === id + (j - i) &&
        (j - i + 1) * P <= MAX_WRITE_BYTES &&
        ids[j]! < this.workingPageCount &&
        !this.dirty.has(ids[j]!)
      ) {
        j++;
      }
      let bytes: Buffer;
      let base = 0;
      if (place === undefined) bytes = this.source.read(id * P, (j - i) * P);
      else {
        const room = place(j - i, id * P);
        j = i + room.pages;
        bytes = room.buf;
        base = room.at;
        const n = room.filled ?? this.source.readInto(bytes, base, id * P, (j - i) * P);
        bytes = bytes.subarray(0, base + n);
      }
      this.pagesRead += j - i;
      for (let k = i; k < j; k++) {
        const pid = ids[k]!;
        const at = base + (k - i) * P;
        if (bytes.length < at + P) {
          throw corrupted(`page ${pid} lies beyond the end of the file`, pid * P, this.path);
        }
        const page = bytes.subarray(at, at + P);
        verifyPage(page, pid, type, pid * P, this.path);
        out[k] = page;
      }
      i = j;
    }
    return out;
  }

  private readFromFile(id: number, type: PageType | undefined): Buffer {
    const offset = id * this.pageSize;
    this.pagesRead++;
    const page = this.source.read(offset, this.pageSize);
    if (page.length < this.pageSize) {
      throw corrupted(`page ${id} lies beyond the end of the file`, offset, this.path);
    }
    verifyPage(page, id as PageId, type, offset, this.path);
    return page;
  }

  private beginTxn(): void {
    this.usable();
    if (this.txn !== undefined) return;
    this.txn = {
      free: this.freeSet.snapshot(),
      pending: new Set(this.pending),
      pageCount: this.workingPageCount,
    };
  }

  private claimFresh(id: number): PageId {
    this.txnAllocated.add(id);
    this.cache.delete(id as PageId);
    return id as PageId;
  }

  /** A page id for this transaction: the lowest free id, else a new page at the end. */
  allocate(): PageId {
    this.beginTxn();
    return this.claimFresh(this.freeSet.pop() ?? this.workingPageCount++);
  }

  /**
   * `n` adjacent page ids (an overflow chain then reads with one call); returns the first.
   * Takes the lowest free run of that length, else extends the file, unless `extend` is
   * false: then it returns undefined and allocates nothing.
   */
  allocateRun(n: number, extend = true): PageId | undefined {
    this.beginTxn();
    let first = this.freeSet.takeRun(n);
    if (first === undefined) {
      if (!extend) return undefined;
      first = this.workingPageCount;
      this.workingPageCount += n;
    }
    for (let k = 0; k < n; k++) this.claimFresh(first + k);
    return first as PageId;
  }

  /** Gives a page back. Pages the durable meta reaches stay untouched until released. */
  free(id: PageId): void {
    this.beginTxn();
    if (id < 2 || id >= this.workingPageCount) {
      throw new Error(`internal: freeing page ${id} outside the file`);
    }
    if (this.txnAllocated.delete(id)) {
      this.dirty.delete(id);
      this.cache.delete(id);
      this.freeSet.add(id);
      return;
    }
    if (this.txnFreed.has(id) || this.pending.has(id) || this.freeSet.has(id)) {
      throw new Error(`internal: page ${id} freed twice`);
    }
    this.txnFreed.add(id);
  }

  /**
   * Stages a page of this transaction. The header's generation and checksum are stamped
   * here; the buffer must not be modified afterwards. `hot` pages (branches, which every
   * path goes through) stay in the cache once written; the others (leaves, overflow) are
   * unlikely to be read again soon and would only evict them.
   */
  write(id: PageId, page: Buffer, hot = false): void {
    this.stage(id, page, hot ? "cache" : "drop");
  }

  /** A zeroed page for `writeHandedOver`, on the buffer of a page already written out. */
  blankPage(type: PageType, aux16 = 0, aux8 = 0): Buffer {
    return this.dirty.blank(type, aux16, aux8);
  }

  /**
   * `write` for a page no one reads before the commit and whose buffer the caller drops:
   * once written out, the buffer is reused by `blankPage` (a bulk load writes thousands).
   */
  writeHandedOver(id: PageId, page: Buffer): void {
    this.stage(id, page, "recycle");
  }

  private stage(id: PageId, page: Buffer, keep: Keep): void {
    this.usable();
    if (!this.txnAllocated.has(id)) {
      throw new Error(`internal: page ${id} written without being allocated in this transaction`);
    }
    if (page.length !== this.pageSize) throw new Error("internal: page buffer of the wrong size");
    sealPage(page, id, this.nextGeneration);
    this.dirty.set(id, page, keep);
    this.cache.delete(id);
    if (this.dirty.full) this.flushDirty();
  }

  /** Writes the dirty pages, adjacent ones in one call; branches stay in the page cache. */
  private flushDirty(): number {
    if (this.dirty.size === 0) return 0;
    const n = this.dirty.writeOut(this.file, (id, page) => this.cache.set(id as PageId, page));
    this.pagesWritten += n;
    this.txnWrote = true;
    this.source.invalidate();
    return n;
  }

  /** Makes the open transaction durable as generation + 1 (see the file comment). */
  commit(fields: CommitFields): Meta {
    this.usable();
    const { root, entryCount, lastTxId } = fields;
    if (root !== NO_PAGE && (!Number.isSafeInteger(root) || root < 2 || root >= this.pageCount)) {
      throw new RangeError(`commit: root ${root} out of range`);
    }
    for (const [name, v] of [
      ["entryCount", entryCount],
      ["lastTxId", lastTxId],
    ] as const) {
      if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`commit: bad ${name} ${v}`);
    }
    this.beginTxn();
    const generation = this.nextGeneration;
    let next: Meta;
    let newFreelist: PageId[];
    try {
      // The old free-list pages are reachable from the durable meta: pending, like tree pages.
      for (const id of this.freelistPages) this.txnFreed.add(id);
      this.workingPageCount = this.freeSet.trimTail(this.workingPageCount);
      const pendingAsc = [...this.pending, ...this.txnFreed].sort((a, b) => a - b);
      const pendingRuns = toRuns(pendingAsc, true);
      const perPage = runsPerPage(this.pageSize);
      newFreelist = [];
      let freeAsc = this.freeSet.ascending();
      // Taking the lowest free id never adds a run, so this settles after a few rounds.
      while (newFreelist.length < Math.ceil((countRuns(freeAsc) + pendingRuns.length) / perPage)) {
        newFreelist.push(this.allocate());
        freeAsc = this.freeSet.ascending();
      }
      const runs: Run[] = [...toRuns(freeAsc, false), ...pendingRuns];
      for (let k = 0; k < newFreelist.length; k++) {
        const chunk = runs.slice(k * perPage, (k + 1) * perPage);
        const link = newFreelist[k + 1] ?? NO_PAGE;
        this.write(newFreelist[k]!, encodeFreelistPage(this.pageSize, chunk, link));
      }
      next = {
        pageSize: this.pageSize,
        fileId: this.fileId,
        generation,
        root,
        pageCount: this.workingPageCount,
        freelistRoot: newFreelist[0] ?? NO_PAGE,
        freePageCount: freeAsc.length + pendingAsc.length,
        lastTxId,
        entryCount,
        createdAt: this.meta.createdAt,
      };
      this.flushDirty();
      this.failpoint?.("commit:pages-written");
      if (this.txnWrote) this.file.sync();
      this.failpoint?.("commit:pages-synced");
    } catch (err) {
      this.rollback();
      throw err;
    }
    try {
      writeMeta(this.file, next, () => this.failpoint?.("commit:meta-written"));
      this.failpoint?.("commit:meta-synced");
    } catch (err) {
      this.broken = err;
      throw err;
    }
    const previous = this.meta;
    this.meta = next;
    this.metaStatus = { chosen: next, other: previous };
    for (const id of this.txnFreed) this.pending.add(id);
    this.txnFreed = new Set();
    this.endTxn();
    this.freelistPages = newFreelist;
    this.trimFile();
    return next;
  }

  /**
   * Writes the current meta page again, byte for byte, and syncs the file. The open calls
   * it before it binds a new WAL to this generation: the process that wrote this meta page
   * may have died, or its sync failed, before the page was durable, and a power cut would
   * then bring the older meta back under a WAL that follows this one (unopenable, and the
   * old WAL's records gone). Written again rather than only synced: after a failed fsync,
   * Linux may mark a page clean that never reached the disk. A write torn here mixes this
   * slot's old and new bytes: the slot fails its checksum and the open falls back to the
   * other one, which the untouched WAL still follows.
   */
  persistMeta(): void {
    this.usable();
    try {
      writeMeta(this.file, this.meta);
    } catch (err) {
      this.broken = err;
      throw err;
    }
  }

  /** Drops the file tail past the page count (free pages the commit gave back). */
  private trimFile(): void {
    const want = this.meta.pageCount * this.pageSize;
    try {
      if (this.file.size() > want) {
        this.file.truncate(want);
        this.source.invalidate();
      }
    } catch {
      // The tail holds nothing either meta needs; the next commit tries again.
    }
  }

  /** Forgets everything since the last commit. Pages already written early are simply free. */
  rollback(): void {
    const t = this.txn;
    if (t === undefined) return;
    for (const id of this.txnAllocated) this.cache.delete(id as PageId);
    this.freeSet.restore(t.free);
    this.pending = t.pending;
    this.workingPageCount = t.pageCount;
    this.txnFreed = new Set();
    this.endTxn();
  }

  private endTxn(): void {
    this.dirty.clear();
    this.txnAllocated.clear();
    this.txn = undefined;
    this.txnWrote = false;
  }

  /**
   * Makes the pages freed by durable commits reusable. Call only when falling back to any
   * meta older than the current durable one is no longer legitimate.
   */
  releasePending(): void {
    this.usable();
    if (this.pending.size === 0) return;
    this.freeSet.addAll(this.pending);
    this.pending = new Set();
  }

  stats(): PagerStats {
    return {
      pageSize: this.pageSize,
      pageCount: this.workingPageCount,
      freePages: this.freeSet.size,
      pendingPages: this.pending.size + this.txnFreed.size,
      fileBytes: this.file.size(),
      generation: this.meta.generation,
      cacheHits: this.cache.hits,
      cacheMisses: this.cache.misses,
      pagesWritten: this.pagesWritten,
      pagesRead: this.pagesRead,
    };
  }

  close(): void {
    if (this.closed) return;
    this.rollback();
    this.closed = true;
    this.cache.clear();
    this.file.close();
  }

  private loadFreelist(): PageId[] {
    const list = readFreelist(this.meta, this.pageSize, this.path, (id) =>
      this.readFromFile(id, PageType.FreeList),
    );
    for (const id of list.pending) this.pending.add(id);
    this.freeSet.addAll(list.free);
    return list.chain;
  }

  /**
   * Consistency check of the last commit, as a reopen would see it (see `check.ts`);
   * `walkTree` claims the pages the tree reaches. Returns the problems found.
   */
  check(walkTree?: (visitor: PageVisitor) => void): string[] {
    this.usable();
    return checkPager(
      {
        meta: this.meta,
        pageSize: this.pageSize,
        path: this.path,
        readFromFile: (id, type) => this.readFromFile(id, type),
        inMemory:
          this.txn === undefined
            ? {
                free: this.freeSet.ascending(),
                pending: [...this.pending],
                freelistPages: this.freelistPages,
                pageCount: this.workingPageCount,
              }
            : undefined,
      },
      walkTree,
    );
  }
}
