/**
 * How a store opens its page file: the pager, with reads through a memory map when asked for
 * and available (pread otherwise).
 */
import { failpoint } from "./failpoints.js";
import type { FileStoreOptions } from "./file-store.js";
import type { StorageBackend, StorageFile } from "./pager/backend.js";
import { MmapSource } from "./pager/mmap-source.js";
import { PreadSource } from "./pager/page-source.js";
import { Pager } from "./pager/pager.js";

/** Pagers whose reads go through a memory map (for `stats()`). */
const mapped = new WeakSet<Pager>();

export function readsThroughMmap(pager: Pager): boolean {
  return mapped.has(pager);
}

export function openPager(backend: StorageBackend, opts: FileStoreOptions): Pager {
  let viaMmap = false;
  const pager = Pager.open(backend, opts.path, {
    pageSize: opts.pageSize,
    cachePages: opts.cachePages,
    now: opts.clock,
    failpoint,
    source: (file: StorageFile) => {
      if (!opts.useMmap) return new PreadSource(file);
      const m = MmapSource.open(file);
      viaMmap = m !== undefined;
      return m ?? new PreadSource(file);
    },
  });
  if (viaMmap) mapped.add(pager);
  return pager;
}
