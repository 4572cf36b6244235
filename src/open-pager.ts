/**
 * How a store opens its page file: the pager, with reads through a memory map when asked for
 * and available (pread otherwise), and then also private maps for the open's page copies.
 */
import { failpoint } from "./failpoints.js";
import type { FileStoreOptions } from "./file-store.js";
import type { StorageBackend, StorageFile } from "./pager/backend.js";
import { MmapSource } from "./pager/mmap-source.js";
import { native } from "./pager/native.js";
import { PreadSource } from "./pager/page-source.js";
import { Pager } from "./pager/pager.js";
import { type PrivateMapper, privateMapper, WatchingBackend } from "./pager/private-map.js";

/** Pagers whose reads go through a memory map (for `stats()`). */
const mapped = new WeakSet<Pager>();
/** Their private mappers, for the page copies of the open (see `pager/private-map.ts`). */
const mappers = new WeakMap<Pager, PrivateMapper>();

export function readsThroughMmap(pager: Pager): boolean {
  return mapped.has(pager);
}

/** The private mapper of a pager that reads through a memory map; undefined otherwise. */
export function privateMapperOf(pager: Pager): PrivateMapper | undefined {
  return mappers.get(pager);
}

export function openPager(backend: StorageBackend, opts: FileStoreOptions): Pager {
  let viaMmap = false;
  // Only with mmap reads: a private map shares their hazards (an I/O error or a file cut
  // short by another program raises SIGBUS instead of an error), which the user opted into.
  const watching =
    opts.useMmap && native !== undefined ? new WatchingBackend(backend, opts.path) : undefined;
  const pager = Pager.open(watching ?? backend, opts.path, {
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
  if (viaMmap) {
    mapped.add(pager);
    const file = watching?.file;
    const mapper =
      file !== undefined && native !== undefined ? privateMapper(file, native) : undefined;
    if (mapper !== undefined) mappers.set(pager, mapper);
  }
  return pager;
}
