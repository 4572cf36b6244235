/**
 * Private (copy-on-write) memory maps of the page file, for memory that must keep the bytes
 * the file held when it was mapped: the page copies an open loads values into
 * (`shards/value-arena.ts`), with `builder().useMmap(true)`.
 *
 * Why: reading the pages of a 1M-record file into fresh memory makes the kernel fault in
 * some 31,000 new pages: 66–83 ms, against 24–30 ms to read them through private maps of
 * the page cache that already holds them, 16 pages per fault, with nothing copied.
 *
 * The catch: an untouched page of a MAP_PRIVATE mapping still shows the file, so a page the
 * pager later overwrites (a freed leaf reused by a checkpoint) would change under the values
 * that point into it; and a truncation takes every page past the new end out of the
 * mapping, even the process's own copies (the next touch raises SIGBUS). So the pager's
 * file is a `WatchedFile`, which tells the mapping's holder about every write and
 * truncation before it happens. Before a write, the holder stores into each mapped page it
 * still needs in that range, which gives the process its own copy of that page (a 4 KiB
 * copy, once); before a truncation, it copies every mapping that reaches past the new end
 * into memory of its own (a checkpoint cuts only free pages off the tail, so rarely more
 * than a mapping or two).
 */
import type { StorageBackend, StorageFile } from "./backend.js";
import type { NativeApi } from "./native.js";

/** The file's bytes `[from, to)` are about to be overwritten, or cut off (`cut`). */
export type FileChangeListener = (from: number, to: number, cut: boolean) => void;

/** A page file whose writes and truncations are announced first (see the module comment). */
export class WatchedFile implements StorageFile {
  onChange: FileChangeListener | undefined;

  constructor(private readonly inner: StorageFile) {}

  get name(): string {
    return this.inner.name;
  }

  get fd(): number | undefined {
    return this.inner.fd;
  }

  size(): number {
    return this.inner.size();
  }

  read(buf: Buffer, offset: number, length: number, position: number): number {
    return this.inner.read(buf, offset, length, position);
  }

  write(buf: Buffer, offset: number, length: number, position: number): void {
    this.onChange?.(position, position + length, false);
    this.inner.write(buf, offset, length, position);
  }

  truncate(length: number): void {
    const size = this.inner.size();
    if (length < size) this.onChange?.(length, size, true);
    this.inner.truncate(length);
  }

  sync(): void {
    this.inner.sync();
  }

  close(): void {
    this.inner.close();
  }
}

/** A backend whose file `watched` opens as a `WatchedFile`, kept in `file`. */
export class WatchingBackend implements StorageBackend {
  file: WatchedFile | undefined;

  constructor(
    private readonly inner: StorageBackend,
    private readonly watched: string,
  ) {}

  open(name: string, create: boolean): StorageFile {
    const f = this.inner.open(name, create);
    if (name !== this.watched) return f;
    this.file = new WatchedFile(f);
    return this.file;
  }

  exists(name: string): boolean {
    return this.inner.exists(name);
  }

  remove(name: string): void {
    this.inner.remove(name);
  }

  rename(from: string, to: string): void {
    this.inner.rename(from, to);
  }

  syncDir(dir: string): void {
    this.inner.syncDir(dir);
  }
}

/** What a holder of private maps needs: mappings, and word of every change to the file. */
export interface PrivateMapper {
  /**
   * A private mapping of the file's bytes from `offset` (a multiple of the OS page size), `length`
   * long or up to the end of the file; undefined when there is nothing there or the
   * mapping failed (the caller then reads into memory of its own).
   */
  map(offset: number, length: number): Buffer | undefined;
  /** Set by the holder: called before the file's bytes `[from, to)` change. */
  onChange: FileChangeListener | undefined;
}

/** The `PrivateMapper` of a watched page file with a descriptor. */
export function privateMapper(file: WatchedFile, api: NativeApi): PrivateMapper | undefined {
  const fd = file.fd;
  if (fd === undefined) return undefined;
  return {
    map(offset, length) {
      const size = file.size();
      if (offset >= size) return undefined;
      try {
        return api.mmapPrivate(fd, Math.min(length, size - offset), offset);
      } catch {
        return undefined; // out of address space or mappings: the caller copies instead
      }
    },
    get onChange() {
      return file.onChange;
    },
    set onChange(listener) {
      file.onChange = listener;
    },
  };
}
