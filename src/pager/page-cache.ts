/**
 * The cache of verified pages, keyed by page id. Pages are immutable once written (a commit
 * writes new ids, never over a page a durable meta reaches), so a cached page is valid until
 * its id is freed and allocated again; the pager drops the entry at that moment.
 *
 * Raw pages rather than decoded nodes: a checkpoint decodes only the few pages on the paths it
 * touches, while the full scan at open reads pages around the cache, so decoding cost is not
 * what a cache would save here; holding raw bytes keeps the capacity in pages exact.
 */
import { LRUCache } from "lru-cache";
import type { PageId } from "./page.js";

export const DEFAULT_CACHE_PAGES = 2048;

export class PageCache {
  private readonly lru: LRUCache<number, Buffer>;
  hits = 0;
  misses = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`page cache capacity must be a positive integer, got ${capacity}`);
    }
    this.lru = new LRUCache<number, Buffer>({ max: capacity });
  }

  get(id: PageId): Buffer | undefined {
    const page = this.lru.get(id);
    if (page === undefined) this.misses++;
    else this.hits++;
    return page;
  }

  set(id: PageId, page: Buffer): void {
    this.lru.set(id, page);
  }

  delete(id: PageId): void {
    this.lru.delete(id);
  }

  clear(): void {
    this.lru.clear();
  }

  get size(): number {
    return this.lru.size;
  }
}
