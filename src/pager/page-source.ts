/**
 * How the pager reads bytes from the page file. A seam so that the engine can plug in an
 * mmap reader (`MappedFile.view(offset, length)`) instead of `pread`; the pager calls
 * `invalidate()` whenever the file was written, extended or truncated, so a mapping can be
 * refreshed lazily.
 */
import type { StorageFile } from "./backend.js";

export interface PageSource {
  /**
   * Returns up to `length` bytes at file offset `position`; fewer at the end of the file.
   * The result may be a view into a mapping: the pager never writes into it and never keeps
   * it across `invalidate()` unless it copied it.
   */
  read(position: number, length: number): Buffer;
  /** `read` into `dest` at `at`; returns the bytes read (fewer at the end of the file). */
  readInto(dest: Buffer, at: number, position: number, length: number): number;
  /** The file changed (written, extended, truncated). */
  invalidate(): void;
  /** True when `read` returns views that may be invalidated (the cache then copies). */
  readonly returnsViews: boolean;
}

/** Positional reads into fresh buffers. */
export class PreadSource implements PageSource {
  readonly returnsViews = false;

  constructor(private readonly file: StorageFile) {}

  read(position: number, length: number): Buffer {
    const buf = Buffer.allocUnsafe(length);
    const n = this.file.read(buf, 0, length, position);
    return n === length ? buf : buf.subarray(0, n);
  }

  readInto(dest: Buffer, at: number, position: number, length: number): number {
    return this.file.read(dest, at, length, position);
  }

  invalidate(): void {}
}
