/**
 * Page reads through a memory map (`builder().useMmap(true)`): a page read is a zero-copy
 * view of the mapping instead of a `pread` into a fresh buffer.
 *
 * The mapping is refreshed lazily: after the pager says the file changed, the next read
 * past the mapped end remaps to the file's new size (only the grown part is mapped again).
 * Reads the mapping cannot serve fall back to `pread`, so correctness never depends on it.
 */
import type { StorageFile } from "./backend.js";
import { MappedFile } from "./mmap-reader.js";
import { type PageSource, PreadSource } from "./page-source.js";

export class MmapSource implements PageSource {
  readonly returnsViews = true;
  private stale = false;
  private readonly fallback: PreadSource;

  private constructor(
    private readonly file: StorageFile,
    private readonly map: MappedFile,
  ) {
    this.fallback = new PreadSource(file);
  }

  /** A mapped source, or undefined when no mapping is available (no addon, no fd). */
  static open(file: StorageFile): MmapSource | undefined {
    if (file.size() === 0) return undefined;
    const map = MappedFile.open(file);
    return map === undefined ? undefined : new MmapSource(file, map);
  }

  read(position: number, length: number): Buffer {
    if (position + length > this.map.size && this.stale) {
      this.stale = false;
      const size = this.file.size();
      if (size > this.map.size) this.map.remap(size);
    }
    if (position + length <= this.map.size) return this.map.view(position, length);
    return this.fallback.read(position, length);
  }

  readInto(dest: Buffer, at: number, position: number, length: number): number {
    return this.read(position, length).copy(dest, at);
  }

  invalidate(): void {
    this.stale = true;
  }
}
