/**
 * The replay target of the legacy readers: key → (value, expires_at), last write wins, Clear
 * empties it, and at the end the live entries come out sorted by unsigned key bytes.
 *
 * A V8 Map of a million string keys spends most of its time in the garbage collector, which
 * capped a legacy read at ~400k records/s; this set keeps everything in typed arrays and
 * 1 MiB byte slabs instead, so replaying a record allocates no JS object at all.
 *
 * In-memory layout (nothing here is written to disk):
 *
 * | Structure       | Type               | Per entry                                         |
 * |-----------------|--------------------|---------------------------------------------------|
 * | slab chunks     | Buffer[] (1 MiB)   | key bytes, then value bytes at `valueRel`         |
 * | slot arrays     | typed arrays       | chunk, offset, keyLen, valueRel, valueLen, expiresAt, hash, live |
 * | table           | Int32Array (2^k)   | slot + 1; 0 empty, -1 deleted (linear probing)    |
 *
 * Overwritten and removed bytes become garbage in the slabs; when garbage outgrows the live
 * bytes the set compacts itself, so memory follows the live data rather than the file.
 * The sort is an MSD radix sort: up to four key bytes per pass packed with the entry's index
 * into one float64, sorted by the native Float64Array sort.
 */
import type { ReplaySink } from "./legacy-log.js";

const CHUNK = 1 << 20;
/** Entries at least this large get a slab of their own instead of fragmenting a shared one. */
const OWN_CHUNK = CHUNK >>> 2;
const MIN_SLOTS = 1024;
/** Garbage (bytes, dead slots) tolerated before compaction, on top of the live amount. */
const GARBAGE_BYTES_SLACK = 8 * CHUNK;
const DEAD_SLOTS_SLACK = 65536;

export interface LiveEntry {
  key: Buffer;
  value: Buffer;
  /** ms since the epoch, 0 = none. */
  expiresAt: number;
}

export class LiveSet implements ReplaySink {
  private chunks: Buffer[] = [];
  private cur: Buffer = Buffer.alloc(0);
  private curIdx = -1;
  private curUsed = 0;

  private n = 0;
  private sChunk = new Uint32Array(MIN_SLOTS);
  private sOff = new Uint32Array(MIN_SLOTS);
  private sKeyLen = new Uint32Array(MIN_SLOTS);
  private sValRel = new Uint32Array(MIN_SLOTS);
  private sValLen = new Uint32Array(MIN_SLOTS);
  private sExp = new Float64Array(MIN_SLOTS);
  private sHash = new Int32Array(MIN_SLOTS);
  private sLive = new Uint8Array(MIN_SLOTS);

  private table = new Int32Array(MIN_SLOTS * 2);
  private mask = MIN_SLOTS * 2 - 1;
  /** Table cells not empty (live or deleted). */
  private used = 0;

  private liveCount = 0;
  private liveBytes = 0;
  private garbageBytes = 0;

  /** Live entries (expired ones included until `finish`). */
  get size(): number {
    return this.liveCount;
  }

  /** Bytes of slab memory held (live entries plus garbage not yet compacted away). */
  get heldBytes(): number {
    let sum = 0;
    for (const c of this.chunks) sum += c.length;
    return sum;
  }

  insert(
    buf: Buffer,
    keyStart: number,
    keyEnd: number,
    valueStart: number,
    valueEnd: number,
    expiresAt: number,
  ): void {
    const klen = keyEnd - keyStart;
    const h = hashBytes(buf, keyStart, keyEnd);
    const span = valueEnd - keyStart;
    const mask = this.mask;
    const table = this.table;
    let i = h & mask;
    let free = -1;
    for (;;) {
      const t = table[i]!;
      if (t === 0) break;
      if (t < 0) {
        if (free < 0) free = i;
      } else if (
        this.sHash[t - 1] === h &&
        this.sKeyLen[t - 1] === klen &&
        this.keyEquals(t - 1, buf, keyStart, keyEnd)
      ) {
        this.overwrite(t - 1, buf, keyStart, span, valueStart, valueEnd, expiresAt);
        return;
      }
      i = (i + 1) & mask;
    }
    if (this.n === this.sChunk.length) this.growSlots();
    const s = this.n++;
    this.place(s, buf, keyStart, span);
    this.sKeyLen[s] = klen;
    this.sValRel[s] = valueStart - keyStart;
    this.sValLen[s] = valueEnd - valueStart;
    this.sExp[s] = expiresAt;
    this.sHash[s] = h;
    this.sLive[s] = 1;
    this.liveCount++;
    this.liveBytes += span;
    if (free >= 0) {
      table[free] = s + 1;
    } else {
      table[i] = s + 1;
      if (++this.used * 2 > table.length) this.rebuild(false);
    }
  }

  remove(buf: Buffer, keyStart: number, keyEnd: number): void {
    const klen = keyEnd - keyStart;
    const h = hashBytes(buf, keyStart, keyEnd);
    const mask = this.mask;
    let i = h & mask;
    for (;;) {
      const t = this.table[i]!;
      if (t === 0) return;
      if (
        t > 0 &&
        this.sHash[t - 1] === h &&
        this.sKeyLen[t - 1] === klen &&
        this.keyEquals(t - 1, buf, keyStart, keyEnd)
      ) {
        const s = t - 1;
        this.table[i] = -1;
        this.sLive[s] = 0;
        const span = this.spanOf(s);
        this.liveCount--;
        this.liveBytes -= span;
        this.garbageBytes += span;
        this.maybeCompact();
        return;
      }
      i = (i + 1) & mask;
    }
  }

  clear(): void {
    this.chunks = [];
    this.cur = Buffer.alloc(0);
    this.curIdx = -1;
    this.curUsed = 0;
    this.n = 0;
    this.table.fill(0);
    this.used = 0;
    this.liveCount = 0;
    this.liveBytes = 0;
    this.garbageBytes = 0;
  }

  /**
   * The live entries sorted by unsigned key bytes, as views into the slabs (no copy). Entries
   * with `0 < expiresAt <= now` are left out and counted when `now` is given. The set is empty
   * afterwards.
   */
  finish(now?: number): { entries: LiveEntry[]; expiredDropped: number } {
    // Views pin their slab, so do not hand out slabs that are mostly garbage.
    if (this.garbageBytes > this.liveBytes >>> 2) this.rebuild(true);
    const order = new Uint32Array(this.liveCount);
    let m = 0;
    let expiredDropped = 0;
    for (let s = 0; s < this.n; s++) {
      if (this.sLive[s] === 0) continue;
      const e = this.sExp[s]!;
      if (now !== undefined && e !== 0 && e <= now) expiredDropped++;
      else order[m++] = s;
    }
    const live = order.subarray(0, m);
    this.sort(live);
    const entries: LiveEntry[] = new Array(m);
    for (let i = 0; i < m; i++) {
      const s = live[i]!;
      const c = this.chunks[this.sChunk[s]!]!;
      const off = this.sOff[s]!;
      const v = off + this.sValRel[s]!;
      entries[i] = {
        key: c.subarray(off, off + this.sKeyLen[s]!),
        value: c.subarray(v, v + this.sValLen[s]!),
        expiresAt: this.sExp[s]!,
      };
    }
    this.clear();
    return { entries, expiredDropped };
  }

  // -------------------------------------------------------------------------------------------

  private spanOf(s: number): number {
    return this.sValRel[s]! + this.sValLen[s]!;
  }

  private keyEquals(s: number, buf: Buffer, start: number, end: number): boolean {
    const c = this.chunks[this.sChunk[s]!]!;
    let o = this.sOff[s]!;
    for (let j = start; j < end; j++) if (c[o++] !== buf[j]) return false;
    return true;
  }

  private overwrite(
    s: number,
    buf: Buffer,
    keyStart: number,
    span: number,
    valueStart: number,
    valueEnd: number,
    expiresAt: number,
  ): void {
    const old = this.spanOf(s);
    if (span === old) {
      copyBytes(buf, keyStart, span, this.chunks[this.sChunk[s]!]!, this.sOff[s]!);
    } else {
      this.place(s, buf, keyStart, span);
      this.garbageBytes += old;
      this.liveBytes += span - old;
    }
    this.sValRel[s] = valueStart - keyStart;
    this.sValLen[s] = valueEnd - valueStart;
    this.sExp[s] = expiresAt;
    this.maybeCompact();
  }

  /** Copies `span` bytes at `buf[start]` into slab space and points slot `s` at them. */
  private place(s: number, buf: Buffer, start: number, span: number): void {
    if (span >= OWN_CHUNK) {
      const own = Buffer.allocUnsafeSlow(span);
      buf.copy(own, 0, start, start + span);
      this.sChunk[s] = this.chunks.push(own) - 1;
      this.sOff[s] = 0;
      return;
    }
    if (this.curUsed + span > this.cur.length) {
      this.cur = Buffer.allocUnsafeSlow(CHUNK);
      this.curIdx = this.chunks.push(this.cur) - 1;
      this.curUsed = 0;
    }
    copyBytes(buf, start, span, this.cur, this.curUsed);
    this.sChunk[s] = this.curIdx;
    this.sOff[s] = this.curUsed;
    this.curUsed += span;
  }

  private growSlots(): void {
    const cap = this.sChunk.length * 2;
    const grow = <T extends Uint32Array | Int32Array | Float64Array | Uint8Array>(
      a: T,
      make: (n: number) => T,
    ): T => {
      const b = make(cap);
      b.set(a as never);
      return b;
    };
    this.sChunk = grow(this.sChunk, (n) => new Uint32Array(n));
    this.sOff = grow(this.sOff, (n) => new Uint32Array(n));
    this.sKeyLen = grow(this.sKeyLen, (n) => new Uint32Array(n));
    this.sValRel = grow(this.sValRel, (n) => new Uint32Array(n));
    this.sValLen = grow(this.sValLen, (n) => new Uint32Array(n));
    this.sExp = grow(this.sExp, (n) => new Float64Array(n));
    this.sHash = grow(this.sHash, (n) => new Int32Array(n));
    this.sLive = grow(this.sLive, (n) => new Uint8Array(n));
  }

  private maybeCompact(): void {
    if (
      this.garbageBytes > this.liveBytes + GARBAGE_BYTES_SLACK ||
      this.n - this.liveCount > this.liveCount + DEAD_SLOTS_SLACK
    ) {
      this.rebuild(true);
    }
  }

  /**
   * Rebuilds the hash table (sized for the live entries), dropping deleted cells; with
   * `compact`, also moves the live entries into fresh slabs and drops dead slots.
   */
  private rebuild(compact: boolean): void {
    if (compact) {
      const oldChunks = this.chunks;
      const { sChunk, sOff } = this;
      this.chunks = [];
      this.cur = Buffer.alloc(0);
      this.curIdx = -1;
      this.curUsed = 0;
      let w = 0;
      for (let s = 0; s < this.n; s++) {
        if (this.sLive[s] === 0) continue;
        const span = this.spanOf(s);
        const from = oldChunks[sChunk[s]!]!;
        const off = sOff[s]!;
        // Slot w <= s, so moving its fields down never overwrites a slot still to be read.
        this.place(w, from, off, span);
        this.sKeyLen[w] = this.sKeyLen[s]!;
        this.sValRel[w] = this.sValRel[s]!;
        this.sValLen[w] = this.sValLen[s]!;
        this.sExp[w] = this.sExp[s]!;
        this.sHash[w] = this.sHash[s]!;
        this.sLive[w] = 1;
        w++;
      }
      this.n = w;
      this.garbageBytes = 0;
    }
    let size = MIN_SLOTS * 2;
    while (size < this.liveCount * 4) size *= 2;
    const table = new Int32Array(size);
    const mask = size - 1;
    for (let s = 0; s < this.n; s++) {
      if (this.sLive[s] === 0) continue;
      let i = this.sHash[s]! & mask;
      while (table[i] !== 0) i = (i + 1) & mask;
      table[i] = s + 1;
    }
    this.table = table;
    this.mask = mask;
    this.used = this.liveCount;
  }

  // -------------------------------------------------------------------------------------------
  // Sorting by key bytes

  /** Byte `pos` of slot `s`'s key plus 1, or 0 past its end (so a prefix sorts first). */
  private digit(s: number, pos: number): number {
    if (pos >= this.sKeyLen[s]!) return 0;
    return this.chunks[this.sChunk[s]!]![this.sOff[s]! + pos]! + 1;
  }

  private compare(a: number, b: number, depth: number): number {
    const ca = this.chunks[this.sChunk[a]!]!;
    const cb = this.chunks[this.sChunk[b]!]!;
    const oa = this.sOff[a]!;
    const ob = this.sOff[b]!;
    const la = this.sKeyLen[a]!;
    const lb = this.sKeyLen[b]!;
    const l = la < lb ? la : lb;
    for (let i = depth; i < l; i++) {
      const d = ca[oa + i]! - cb[ob + i]!;
      if (d !== 0) return d;
    }
    return la - lb;
  }

  private sort(order: Uint32Array): void {
    let sorted = true;
    for (let i = 1; i < order.length; i++) {
      if (this.compare(order[i - 1]!, order[i]!, 0) > 0) {
        sorted = false;
        break;
      }
    }
    if (sorted) return;
    const packed = new Float64Array(order.length);
    const slots = new Uint32Array(order.length);
    this.radix(order, packed, slots, 0, order.length, 0);
  }

  /** Sorts `order[lo, hi)`, whose keys are all equal before byte `depth`. */
  private radix(
    order: Uint32Array,
    packed: Float64Array,
    slots: Uint32Array,
    lo: number,
    hi: number,
    depth: number,
  ): void {
    const m = hi - lo;
    if (m < 2) return;
    if (m <= 24) {
      for (let i = lo + 1; i < hi; i++) {
        const s = order[i]!;
        let j = i - 1;
        while (j >= lo && this.compare(order[j]!, s, depth) > 0) {
          order[j + 1] = order[j]!;
          j--;
        }
        order[j + 1] = s;
      }
      return;
    }
    // As many base-257 digits as fit beside the index in a float64's 53-bit mantissa.
    const scale = 2 ** (32 - Math.clz32(m - 1));
    let digits = 0;
    let radixPow = 1;
    while (radixPow * 257 * scale <= 2 ** 53) {
      radixPow *= 257;
      digits++;
    }
    let min = Number.POSITIVE_INFINITY;
    let max = -1;
    for (let i = 0; i < m; i++) {
      const s = order[lo + i]!;
      let v = 0;
      for (let d = 0; d < digits; d++) v = v * 257 + this.digit(s, depth + d);
      if (v < min) min = v;
      if (v > max) max = v;
      packed[lo + i] = v * scale + i;
      slots[lo + i] = s;
    }
    if (min === max) {
      // One shared prefix: nothing to sort at this depth. Ended keys would be duplicates.
      if (min % 257 !== 0) this.radix(order, packed, slots, lo, hi, depth + digits);
      return;
    }
    const view = packed.subarray(lo, hi);
    view.sort();
    for (let i = 0; i < m; i++) order[lo + i] = slots[lo + (view[i]! % scale)]!;
    let i = lo;
    while (i < hi) {
      const v = Math.floor(packed[i]! / scale);
      let j = i + 1;
      while (j < hi && Math.floor(packed[j]! / scale) === v) j++;
      if (j - i > 1 && v % 257 !== 0) this.radix(order, packed, slots, i, j, depth + digits);
      i = j;
    }
  }
}

/** `Buffer#copy` validates its arguments and wraps the source on every call; this does not. */
function copyBytes(src: Buffer, start: number, n: number, dst: Buffer, at: number): void {
  dst.set(new Uint8Array(src.buffer, src.byteOffset + start, n), at);
}

/** FNV-1a over the key bytes with a final avalanche, so sequential keys spread over the table. */
function hashBytes(buf: Buffer, start: number, end: number): number {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return h & 0x7fffffff;
}
