/**
 * A read-only memory map of a whole file, for zero-copy page reads.
 *
 * The file is mapped in fixed windows (1 GiB by default) at multiples of the window size,
 * because one Node 20 Buffer holds at most 4 GiB and a window boundary that is a multiple
 * of the page size never splits a page. A view that does cross a window boundary is
 * returned as a copy; everything else is a subarray of the mapping.
 *
 * Nothing is ever mapped past the file's size: touching a mapped page past EOF kills the
 * process with SIGBUS. The same holds for views already handed out, so the file must not be
 * truncated below what is mapped while any view of it may still be read.
 *
 * Mappings are released only by garbage collection (the addon has no munmap, because JS
 * views would outlive it), so grow the file and call `remap` in large steps rather than one
 * page at a time: every superseded window keeps its address space until it is collected,
 * and V8 counts each new window's length as external memory, which prompts a collection.
 */
import { constants as bufferConstants } from "node:buffer";
import { EmdbError } from "../errors.js";
import type { StorageFile } from "./backend.js";
import { type NativeApi, native } from "./native.js";

export const DEFAULT_WINDOW_SIZE = 2 ** 30;

export interface MappedFileOptions {
  /** Bytes per mapping window: a multiple of the page size, at most 4 GiB on Node 20. */
  windowSize?: number;
}

function checkRange(offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new RangeError(`offset must be a non-negative safe integer, got ${offset}`);
  }
  if (!Number.isSafeInteger(length) || length < 0) {
    throw new RangeError(`length must be a non-negative safe integer, got ${length}`);
  }
}

export class MappedFile {
  /** Window k maps file bytes [k * windowSize, k * windowSize + windows[k].length). */
  private windows: Buffer[] = [];
  private mapped = 0;

  private constructor(
    private readonly file: StorageFile,
    private readonly fd: number,
    private readonly api: NativeApi,
    readonly windowSize: number,
  ) {}

  /**
   * Maps all of `file` read-only. Returns undefined when mmap is unavailable (the native
   * addon is not loaded, or the file has no OS descriptor, as in `MemoryBackend`): the
   * caller then reads with `file.read`.
   */
  static open(file: StorageFile, options: MappedFileOptions = {}): MappedFile | undefined {
    const api = native;
    if (api === undefined || file.fd === undefined) return undefined;
    const windowSize = options.windowSize ?? DEFAULT_WINDOW_SIZE;
    if (
      !Number.isSafeInteger(windowSize) ||
      windowSize <= 0 ||
      windowSize % api.PAGE_SIZE !== 0 ||
      windowSize > bufferConstants.MAX_LENGTH
    ) {
      throw new RangeError(
        `windowSize must be a positive multiple of ${api.PAGE_SIZE} up to ${bufferConstants.MAX_LENGTH}, got ${windowSize}`,
      );
    }
    const mapped = new MappedFile(file, file.fd, api, windowSize);
    mapped.remap(file.size());
    return mapped;
  }

  /** Bytes of the file that views can reach. */
  get size(): number {
    return this.mapped;
  }

  /**
   * `length` bytes at `offset`: a zero-copy view of the mapping, which sees later writes to
   * the file; a copy when the range crosses a window boundary. RangeError past `size`.
   */
  view(offset: number, length: number): Buffer {
    checkRange(offset, length);
    if (offset + length > this.mapped) {
      throw new RangeError(
        `view [${offset}, ${offset + length}) is beyond the mapped size ${this.mapped}`,
      );
    }
    if (length === 0) return Buffer.alloc(0);
    const first = Math.floor(offset / this.windowSize);
    const start = offset - first * this.windowSize;
    const window = this.windows[first]!;
    if (start + length <= window.length) return window.subarray(start, start + length);

    const out = Buffer.allocUnsafe(length);
    let done = 0;
    for (let k = first; done < length; k++) {
      const from = k === first ? start : 0;
      const w = this.windows[k]!;
      done += w.copy(out, done, from, Math.min(w.length, from + length - done));
    }
    return out;
  }

  /**
   * Makes `[0, newSize)` viewable after the file grew (or shrank). Only windows whose extent
   * changes are mapped again; full windows that stay full are kept as they are.
   * Throws RangeError when `newSize` is beyond the file's current size.
   */
  remap(newSize: number): void {
    checkRange(0, newSize);
    const actual = this.file.size();
    if (newSize > actual) {
      throw new RangeError(`cannot map ${newSize} bytes: ${this.file.name} has only ${actual}`);
    }
    const count = Math.ceil(newSize / this.windowSize);
    // Dropping our references is all that shrinking can do; see the header comment.
    this.windows.length = Math.min(this.windows.length, count);
    for (let k = 0; k < count; k++) {
      const base = k * this.windowSize;
      const want = Math.min(this.windowSize, newSize - base);
      const have = this.windows[k];
      if (have !== undefined && have.length === want) continue;
      if (have !== undefined && have.length > want) {
        this.windows[k] = have.subarray(0, want);
        continue;
      }
      this.windows[k] = this.mapWindow(base, want);
    }
    this.mapped = newSize;
  }

  private mapWindow(offset: number, length: number): Buffer {
    try {
      return this.api.mmap(this.fd, length, offset, false);
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      throw new EmdbError("EMDB_IO", `mmap failed: ${msg}`, {
        file: this.file.name,
        offset,
        cause: err,
      });
    }
  }
}
