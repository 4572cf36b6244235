/**
 * Values loaded at open, held as copies of the leaf pages they were read from instead of
 * one string each.
 *
 * Why: loading a million records made a million value strings, and the young-generation
 * collector copied each of them twice (to the survivor space, then to the old space), since
 * all of them survive. That copying was the largest share of a reopen. A page copy is one
 * off-heap allocation per megabyte, and the index entry of a loaded value is a small
 * integer (a *ref*) that V8 stores in the Map unboxed: no heap object per value at all.
 *
 * Layout: chunks of up to `CHUNK_BYTES`, each a run of whole leaf pages copied as they are
 * (byte layout in `btree/leaf.ts`). A ref names the record a value belongs to:
 *
 * | ref bits                      | meaning                                   |
 * |-------------------------------|-------------------------------------------|
 * | ref / CHUNK_BYTES (integer)   | chunk index                               |
 * | ref mod CHUNK_BYTES           | byte offset of the record in that chunk   |
 *
 * With `useMmap(true)` the chunks are private maps of the page file instead (`mapFrom`):
 * chunk c is then the file's bytes from c * CHUNK_BYTES on, leaves and other pages alike,
 * so a ref is the file offset of its record; `beforeFileChange` keeps those bytes when the
 * pager writes over or cuts off the file there (see `pager/private-map.ts`).
 *
 * Only records with an inline value get a ref (`flags` 0 or 1: the key length at +1, the
 * value length at +3, the expiry at +7 when flag 1 is set, then the key, then the value);
 * overflow values are loaded as strings, as before. A ref to a record with an expiry is
 * held in a `Timed`, which carries the same deadline. Below 2^30 (1 GiB of leaf pages) a
 * ref is a V8 small integer on every build (below 2^31 without pointer compression, as in
 * stock Node); past that it is a boxed number, which is still correct, only less compact.
 *
 * A chunk counts its live refs and the bytes of their records (header, key and value). A
 * write, a removal or an expiry that replaces or removes a loaded value releases its ref;
 * once the records still referred to fill a quarter of the chunk's leaves or less, it is
 * *due*: at the next safe point (`Keyspace.reclaimDue`, after a write has settled, a sweep,
 * a `flush()` or a `compact()`) its remaining live values become strings and the chunk is
 * let go. The same test runs when the load ends, so a chunk of leaves whose records mostly
 * loaded as strings (overflow values) goes at once. So the copies never hold more than four
 * times the bytes of the loaded records still in use (in a private map, counting the leaves
 * only: its other pages are never touched), and overwriting everything once frees them
 * all. The reclaim cannot run in the middle of a write or a checkpoint: a failed batch
 * puts back the refs it replaced, which must still point at their chunk.
 */
import { inlineKeyAt, leafCount, PLAIN_KEY_AT, REC_EXPIRES, recordOffset } from "../btree/leaf.js";
import { readU64 } from "../codec.js";
import { latin1Slice } from "../keys.js";
import type { PrivateMapper } from "../pager/private-map.js";

/** The stride of chunk indexes in a ref, and the largest chunk. */
export const CHUNK_BYTES = 1 << 20;

export interface PlacedRoom {
  readonly buf: Buffer;
  readonly at: number;
  readonly pages: number;
  /** Bytes of the file the room already holds (a private map of it); else undefined. */
  readonly filled?: number;
}

/** What `adopted` holds for a page of a chunk: not a loaded leaf, or one of these. */
const LEAF = 1;
/** A loaded leaf in a private map that still shows the file: to be made private first. */
const SHARED_LEAF = 2;
/** Stores into a mapped page one such apart reach every memory page of it (4 KiB or more). */
const TOUCH_STRIDE = 4096;

export class ValueArena {
  private readonly chunks: (Buffer | undefined)[] = [];
  /** Refs stored in the index, by chunk. */
  private readonly live: number[] = [];
  /** Bytes of the records those refs name, by chunk: what the reclaim test weighs. */
  private readonly liveBytes: number[] = [];
  /** Bytes of pages in each chunk (a chunk's tail past them is uninitialised). */
  private readonly used: number[] = [];
  private pageSize = 0;
  private readonly due = new Set<number>();
  /** Chunk index by the memory a chunk's Buffer views (for `adopt`). */
  private readonly byBuffer = new Map<ArrayBufferLike, number>();
  /** By chunk, one byte per page slot: 0, `LEAF` or `SHARED_LEAF`. */
  private readonly adopted: (Uint8Array | undefined)[] = [];
  /**
   * Bytes of the loaded leaves in each chunk, what the reclaim test weighs the records in
   * use against: a private map also spans the file's other pages, which it never touches.
   */
  private readonly leafBytes: number[] = [];
  /**
   * Set for a load from private maps (`mapFrom`): chunk c is then the file's bytes
   * `[c * CHUNK_BYTES, (c + 1) * CHUNK_BYTES)`, so a ref is the file offset of its record.
   */
  private mapper: PrivateMapper | undefined;
  /** Chunks that are private maps (see `beforeFileChange`). */
  private readonly mapped: boolean[] = [];
  private held = 0;

  /** Bytes of page copies held. */
  get bytes(): number {
    return this.held;
  }

  /**
   * The coming load takes its chunks from private maps of the page file instead of memory
   * of its own (see `pager/private-map.ts`): no page is copied, and the pages the file's
   * later writes and truncations would change are made private just before
   * (`beforeFileChange`, which this makes the mapper's listener).
   */
  mapFrom(mapper: PrivateMapper): void {
    this.mapper = mapper;
    mapper.onChange = (from, to, cut) => this.beforeFileChange(from, to, cut);
  }

  /**
   * Room for up to `pages` leaf pages of `pageSize` bytes from file offset `position`, for
   * the pager to read them into (`Pager.readMany`'s placer): through `pread`, reading
   * straight into the arena costs no copy, and no second set of fresh memory pages for the
   * kernel to fault in. `remaining` bounds the page bytes still to come (all pages of the
   * file, so it may overshoot the leaves: `finishLoad` cuts a chunk to the pages it got).
   * From private maps, the room is the pages themselves, already `filled`.
   */
  place(pages: number, pageSize: number, remaining: number, position: number): PlacedRoom {
    this.pageSize = pageSize;
    if (this.mapper !== undefined) return this.placeMapped(pages, pageSize, position);
    let c = this.chunks.length - 1;
    let chunk = this.chunks[c];
    if (chunk === undefined || this.used[c]! + pageSize > chunk.length) {
      const size = Math.min(CHUNK_BYTES, Math.max(remaining, pageSize));
      // Never a slice of Node's shared pool: `byBuffer` tells chunks apart by their memory.
      chunk = Buffer.allocUnsafeSlow(size);
      this.chunks.push(chunk);
      this.byBuffer.set(chunk.buffer, ++c);
      this.live.push(0);
      this.liveBytes.push(0);
      this.used.push(0);
      this.adopted.push(new Uint8Array(Math.ceil(size / pageSize)));
      this.leafBytes.push(0);
      this.mapped.push(false);
      this.held += size;
    }
    const at = this.used[c]!;
    const fit = Math.min(pages, Math.floor((chunk.length - at) / pageSize));
    this.used[c] = at + fit * pageSize;
    return { buf: chunk, at, pages: fit };
  }

  /** `place` from private maps: chunk c maps the file from `c * CHUNK_BYTES` on. */
  private placeMapped(pages: number, pageSize: number, position: number): PlacedRoom {
    const c = Math.floor(position / CHUNK_BYTES);
    const chunk = this.chunks[c] ?? this.openChunk(c, pageSize);
    const at = position - c * CHUNK_BYTES;
    // At least one page, even one past the mapped end: the pager then finds it short (a
    // file cut shorter than its page count) and reports it.
    const fit = Math.max(1, Math.min(pages, Math.floor((chunk.length - at) / pageSize)));
    if (!this.mapped[c]) {
      if (at + fit * pageSize > chunk.length)
        return { buf: Buffer.alloc(pageSize), at: 0, pages: 1 };
      return { buf: chunk, at, pages: fit };
    }
    return {
      buf: chunk,
      at,
      pages: fit,
      filled: Math.max(0, Math.min(fit * pageSize, chunk.length - at)),
    };
  }

  /** Maps chunk `c` of the file, or, where that fails, gives it memory of its own. */
  private openChunk(c: number, pageSize: number): Buffer {
    const mapping = this.mapper!.map(c * CHUNK_BYTES, CHUNK_BYTES);
    const chunk = mapping ?? Buffer.allocUnsafeSlow(CHUNK_BYTES);
    while (this.chunks.length <= c) {
      this.chunks.push(undefined);
      this.live.push(0);
      this.liveBytes.push(0);
      this.used.push(0);
      this.adopted.push(undefined);
      this.leafBytes.push(0);
      this.mapped.push(false);
    }
    this.chunks[c] = chunk;
    this.byBuffer.set(chunk.buffer, c);
    this.used[c] = chunk.length;
    this.adopted[c] = new Uint8Array(Math.ceil(chunk.length / pageSize));
    this.mapped[c] = mapping !== undefined;
    this.held += chunk.length;
    return chunk;
  }

  /**
   * The ref of a leaf page's first byte (the record at page offset `o` is that plus `o`): of
   * the page itself when `place` put it in the arena, else of a copy made now (a page read
   * through a memory map or kept by the page cache may change or be reused later).
   * `position` is the page's offset in the file.
   */
  adopt(page: Buffer, remaining: number, position: number): number {
    let c = this.byBuffer.get(page.buffer);
    let at: number;
    let shared = false;
    if (c !== undefined) {
      at = page.byteOffset - this.chunks[c]!.byteOffset;
      shared = this.mapped[c]!;
    } else {
      // Into a private map, the copy's stores make the page private at once.
      const room = this.place(1, page.length, remaining, position);
      c = this.byBuffer.get(room.buf.buffer);
      if (c === undefined || room.at + page.length > room.buf.length) {
        throw new Error(`internal: no room in the page copies for the leaf at ${position}`);
      }
      page.copy(room.buf, room.at);
      at = room.at;
    }
    const slots = this.adopted[c]!;
    if (slots[at / page.length] === 0) this.leafBytes[c]! += page.length;
    slots[at / page.length] = shared ? SHARED_LEAF : LEAF;
    return c * CHUNK_BYTES + at;
  }

  /**
   * The page file's bytes `[from, to)` are about to be overwritten (`cut` false) or cut
   * off (`cut` true). An overwrite: each loaded leaf in that range that a private map still
   * shares with the file gets a store into every memory page of it, which makes the
   * kernel give the process its own copy. A cut: every private map reaching into the range
   * is replaced by a copy, since a truncation takes even the process's own copies out of a
   * private map (Linux unmaps them, and the next touch raises SIGBUS).
   */
  beforeFileChange(from: number, to: number, cut: boolean): void {
    const P = this.pageSize;
    const last = Math.min(this.chunks.length - 1, Math.floor((to - 1) / CHUNK_BYTES));
    for (let c = Math.floor(from / CHUNK_BYTES); c <= last; c++) {
      const chunk = this.chunks[c];
      if (chunk === undefined || !this.mapped[c]) continue;
      const base = c * CHUNK_BYTES;
      if (cut) {
        // A map ends where the file ended when it was made; the file may have grown since.
        if (from < base + chunk.length) this.detachChunk(c, chunk);
        continue;
      }
      const slots = this.adopted[c]!;
      const end = Math.min(slots.length, Math.ceil((to - base) / P));
      for (let k = Math.max(0, Math.floor((from - base) / P)); k < end; k++) {
        if (slots[k] !== SHARED_LEAF) continue;
        const stop = Math.min((k + 1) * P, chunk.length);
        for (let o = k * P; o < stop; o += TOUCH_STRIDE) chunk[o] = chunk[o]!;
        slots[k] = LEAF;
      }
    }
  }

  /**
   * Replaces every private map by memory of its own (`compact()` replaced the file: a map
   * would keep the old file's disk space).
   */
  detachFile(): void {
    for (let c = 0; c < this.chunks.length; c++) {
      const chunk = this.chunks[c];
      if (chunk !== undefined && this.mapped[c]) this.detachChunk(c, chunk);
    }
    if (this.mapper !== undefined) this.mapper.onChange = undefined;
    this.mapper = undefined;
  }

  /** Chunk `c`, a private map, becomes a copy; refs stay valid (offsets do not change). */
  private detachChunk(c: number, chunk: Buffer): void {
    const copy = Buffer.allocUnsafeSlow(chunk.length);
    chunk.copy(copy);
    this.chunks[c] = copy;
    this.byBuffer.delete(chunk.buffer);
    this.byBuffer.set(copy.buffer, c);
    this.mapped[c] = false;
    this.adopted[c]!.forEach((v, k, a) => {
      if (v === SHARED_LEAF) a[k] = LEAF;
    });
  }

  /**
   * The load is over. A chunk sized for more pages than came (the file's other pages count
   * in `remaining`) is cut to its pages: refs are offsets from its start, so they stay
   * valid. Chunks its refs use little of are let go at the next reclaim.
   */
  finishLoad(): void {
    for (let c = 0; c < this.chunks.length; c++) {
      const chunk = this.chunks[c];
      if (chunk === undefined) continue; // a stretch of the file without leaves (private maps)
      const used = this.used[c]!;
      if (used < chunk.length) {
        const cut = Buffer.allocUnsafeSlow(used);
        chunk.copy(cut, 0, 0, used);
        this.chunks[c] = cut;
        this.byBuffer.delete(chunk.buffer);
        this.byBuffer.set(cut.buffer, c);
        this.held -= chunk.length - used;
      }
      if (this.sparse(c)) this.due.add(c);
    }
  }

  /** Counts a ref made while loading, whose record (header, key, value) is `bytes` long. */
  loaded(ref: number, bytes: number): void {
    const c = Math.floor(ref / CHUNK_BYTES);
    this.live[c]!++;
    this.liveBytes[c]! += bytes;
  }

  /** A ref enters the index (loaded, or a failed batch putting back what it replaced). */
  retain(ref: number): void {
    const c = Math.floor(ref / CHUNK_BYTES);
    this.live[c]!++;
    this.liveBytes[c]! += this.recordBytes(ref);
  }

  /** A ref leaves the index. */
  release(ref: number): void {
    const c = Math.floor(ref / CHUNK_BYTES);
    this.live[c]!--;
    this.liveBytes[c]! -= this.recordBytes(ref);
    if (this.sparse(c)) this.due.add(c);
  }

  /** Whether the records still referred to fill a quarter of chunk `c`'s leaves or less. */
  private sparse(c: number): boolean {
    return this.liveBytes[c]! * 4 <= this.leafBytes[c]!;
  }

  /** Bytes of a ref's record: header, key and value. */
  private recordBytes(ref: number): number {
    this.locate(ref);
    return this.end - (ref % CHUNK_BYTES);
  }

  /** The value of a ref, as the Buffer a caller gets (a copy). */
  out(ref: number): Buffer {
    const chunk = this.locate(ref);
    const out = Buffer.allocUnsafe(this.end - this.start);
    chunk.copy(out, 0, this.start, this.end);
    return out;
  }

  /** The value of a ref as an internal (latin1) string. */
  str(ref: number): string {
    return latin1Slice(this.locate(ref), this.start, this.end);
  }

  /** Copies a ref's value into `into` (which must be large enough); returns its length. */
  copyInto(ref: number, into: Buffer): number {
    return this.locate(ref).copy(into, 0, this.start, this.end);
  }

  /** The key a ref's record holds, as an internal string. */
  key(ref: number): string {
    const chunk = this.chunkOf(ref);
    const at = ref % CHUNK_BYTES;
    const start = at + inlineKeyAt(chunk[at]!);
    return latin1Slice(chunk, start, start + chunk.readUInt16LE(at + 1));
  }

  /** The deadline a ref's record holds, 0 when it has none. */
  expiresAt(ref: number): number {
    const chunk = this.chunkOf(ref);
    const at = ref % CHUNK_BYTES;
    return chunk[at] === REC_EXPIRES ? readU64(chunk, at + PLAIN_KEY_AT) : 0;
  }

  /**
   * Lets go of the due chunks. `materialize(k, ref)` is called for every record of such a
   * chunk that may still be in the index (an inline value); it must replace the entry's ref
   * with a string when the index still holds that very ref, and return whether it did.
   */
  reclaimDue(materialize: (k: string, ref: number) => boolean): void {
    if (this.due.size === 0) return;
    for (const c of this.due) {
      const chunk = this.chunks[c];
      // Still used enough: a failed batch put back what it had released.
      if (chunk === undefined || !this.sparse(c)) continue;
      if (this.live[c]! > 0) {
        const pageSize = this.pageSize;
        const slots = this.adopted[c]!;
        for (let k = 0; k < slots.length; k++) {
          if (slots[k] === 0) continue;
          const at = k * pageSize;
          const page = chunk.subarray(at, at + pageSize);
          const n = leafCount(page);
          for (let i = 0; i < n; i++) {
            const off = recordOffset(page, i);
            if (page[off]! > REC_EXPIRES) continue; // an overflow value: loaded as a string
            const ref = c * CHUNK_BYTES + at + off;
            if (materialize(this.key(ref), ref)) this.live[c]!--;
          }
        }
        if (this.live[c] !== 0) throw new Error(`internal: ${this.live[c]} refs left in a chunk`);
      }
      this.liveBytes[c] = 0;
      this.chunks[c] = undefined;
      this.adopted[c] = undefined;
      this.leafBytes[c] = 0;
      this.mapped[c] = false;
      this.byBuffer.delete(chunk.buffer);
      this.held -= chunk.length;
    }
    this.due.clear();
  }

  /** Drops every chunk (the index was cleared). */
  clear(): void {
    this.chunks.length = 0;
    this.live.length = 0;
    this.liveBytes.length = 0;
    this.used.length = 0;
    this.adopted.length = 0;
    this.leafBytes.length = 0;
    this.mapped.length = 0;
    this.due.clear();
    this.byBuffer.clear();
    this.held = 0;
  }

  /**
   * Problems between the arena and `refs`, the refs the index holds into chunks still held
   * (the caller checked each against its key): each chunk's count and bytes must match
   * them, and, with `reclaimed`, no chunk may be held that the reclaim should have let go
   * (called between writes, when every due chunk has been reclaimed).
   */
  check(refs: readonly number[], reclaimed: boolean): string[] {
    const problems: string[] = [];
    const count: number[] = [];
    const bytes: number[] = [];
    for (const ref of refs) {
      const c = Math.floor(ref / CHUNK_BYTES);
      count[c] = (count[c] ?? 0) + 1;
      bytes[c] = (bytes[c] ?? 0) + this.recordBytes(ref);
    }
    for (let c = 0; c < this.chunks.length; c++) {
      if (this.chunks[c] === undefined) continue;
      if ((count[c] ?? 0) !== this.live[c] || (bytes[c] ?? 0) !== this.liveBytes[c]) {
        problems.push(
          `value arena: chunk ${c} counts ${this.live[c]} refs of ${this.liveBytes[c]} bytes but the index holds ${count[c] ?? 0} of ${bytes[c] ?? 0}`,
        );
      } else if (reclaimed && this.sparse(c)) {
        problems.push(
          `value arena: chunk ${c} is held for ${this.liveBytes[c]} bytes of records in use (of ${this.leafBytes[c]} in its leaves)`,
        );
      }
    }
    return problems;
  }

  /** Whether a ref's record has its value inline (flags 0 or 1, no overflow chain). */
  inline(ref: number): boolean {
    return this.chunkOf(ref)[ref % CHUNK_BYTES]! <= REC_EXPIRES;
  }

  /** Whether a ref points into a chunk still held, within its pages. */
  holds(ref: number): boolean {
    const c = Math.floor(ref / CHUNK_BYTES);
    return this.chunks[c] !== undefined && (ref % CHUNK_BYTES) + PLAIN_KEY_AT <= this.used[c]!;
  }

  /** Where `locate` found the last value: `[start, end)` of the chunk it returned. */
  private start = 0;
  private end = 0;

  /** The chunk of a ref's record; sets `start`/`end` to its value (no object per read). */
  private locate(ref: number): Buffer {
    const chunk = this.chunkOf(ref);
    const at = ref % CHUNK_BYTES;
    this.start = at + inlineKeyAt(chunk[at]!) + chunk.readUInt16LE(at + 1);
    this.end = this.start + chunk.readUInt32LE(at + 3);
    return chunk;
  }

  private chunkOf(ref: number): Buffer {
    const chunk = this.chunks[Math.floor(ref / CHUNK_BYTES)];
    if (chunk === undefined) throw new Error(`internal: value ref ${ref} into a released chunk`);
    return chunk;
  }
}
