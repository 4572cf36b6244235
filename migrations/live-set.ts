/**
 * The replay target of the legacy readers: key → (value, expires_at), last write wins, Clear
 * empties it, and at the end the live entries come out sorted by unsigned key bytes.
 *
 * A V8 Map of a million string keys spends most of its time in the garbage collector, which
 * capped a legacy read at ~400k records/s. This set keeps no JS object per entry: slots are
 * 32-byte records in one typed array, and the bytes live in 1 MiB slabs.
 *
 * In-memory layout (nothing here is written to disk). Slot s, at u32 index 8s:
 *
 * | u32 index | Field                                                        |
 * |-----------|--------------------------------------------------------------|
 * | 8s + 0    | chunk: index into `chunks`, or PENDING (bytes in `foreign`)  |
 * | 8s + 1    | offset of the key in that chunk                              |
 * | 8s + 2    | key length                                                   |
 * | 8s + 3    | value offset, relative to the key                            |
 * | 8s + 4    | value length                                                 |
 * | 8s + 5    | key hash                                                     |
 * | 8s + 6..7 | expiresAt as a float64 (f64 index 4s + 3)                    |
 *
 * plus `live` (one byte per slot) and the hash table, an Int32Array of slot + 1 (0 empty,
 * -1 deleted; linear probing, load at most 1/2). One record per slot keeps the random
 * accesses of probing, sorting and output to one cache line.
 *
 * Copying each record on its own cost more than decoding it, so an insert only records where
 * its bytes are in the caller's buffer (the slot is PENDING). When that buffer is about to be
 * reused (`detach`) or another one shows up, the whole range the pending slots span, framing
 * included, is copied into a slab with one memcpy. Bytes no live entry uses (framing,
 * overwritten and removed records) are garbage; when it outgrows the live bytes the live
 * entries are copied into fresh slabs, so memory follows the live data, not the file.
 *
 * The sort is an MSD radix sort: as many key bytes per pass as fit beside the entry's index in
 * a float64, sorted by the native Float64Array sort, after skipping the bytes a range shares.
 */
import type { ReplaySink } from "./legacy-log.js";

const CHUNK = 1 << 20;
/** Regions at least this large get a slab of their own instead of fragmenting a shared one. */
const OWN_CHUNK = CHUNK >>> 2;
const MIN_SLOTS = 1024;
/** Garbage (bytes, dead slots) tolerated before compaction, on top of the live amount. */
const GARBAGE_BYTES_SLACK = 8 * CHUNK;
const DEAD_SLOTS_SLACK = 65536;
/** Chunk field of a slot whose bytes are still in `foreign`. */
const PENDING = 0xffff_ffff;
/** u32 fields per slot. */
const W = 8;

/** One live entry as ranges of `bytes`: key `[keyStart, keyEnd)`, value `[valueStart, valueEnd)`. */
export type EntryRangeVisitor = (
  bytes: Buffer,
  keyStart: number,
  keyEnd: number,
  valueStart: number,
  valueEnd: number,
  expiresAt: number,
) => void;

export interface LiveEntry {
  key: Buffer;
  value: Buffer;
  /** ms since the epoch, 0 = none. */
  expiresAt: number;
}

export class LiveSet implements ReplaySink {
  private chunks: Buffer[] = [];
  /** Slab being filled by `settle` and compaction. */
  private cur: Buffer = Buffer.alloc(0);
  private curIdx = -1;
  private curUsed = 0;

  /** The caller's buffer that pending slots point into, and the range they span. */
  private foreign: Buffer | undefined;
  private foreignLo = Number.POSITIVE_INFINITY;
  private foreignHi = 0;
  private pending = new Uint32Array(MIN_SLOTS);
  private pendingN = 0;

  private n = 0;
  private slots = new Uint32Array(MIN_SLOTS * W);
  private exps = new Float64Array(this.slots.buffer);
  private live = new Uint8Array(MIN_SLOTS);

  private table = new Int32Array(MIN_SLOTS * 2);
  private mask = MIN_SLOTS * 2 - 1;
  /** Table cells not empty (live or deleted). */
  private used = 0;

  private liveCount = 0;
  /** Sum of the live entries' spans (key through value). */
  private liveBytes = 0;
  /** Slab bytes no live entry uses. */
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
    if (buf !== this.foreign) this.adopt(buf);
    const h = hashBytes(buf, keyStart, keyEnd);
    const span = valueEnd - keyStart;
    const t = this.find(buf, keyStart, keyEnd, h);
    let s: number;
    const slots = this.slots;
    if (t >= 0) {
      // Overwrite. Old bytes in a slab are garbage now; old pending bytes become garbage
      // when their range is settled.
      s = this.table[t]! - 1;
      const old = slots[s * W + 3]! + slots[s * W + 4]!;
      if (slots[s * W] !== PENDING) this.garbageBytes += old;
      this.liveBytes += span - old;
    } else {
      if (this.n === this.live.length) this.growSlots();
      s = this.n++;
      const b = s * W;
      this.slots[b] = 0;
      this.slots[b + 2] = keyEnd - keyStart;
      this.slots[b + 5] = h;
      this.live[s] = 1;
      this.liveCount++;
      this.liveBytes += span;
      const cell = -t - 1;
      if (this.table[cell] === 0) this.used++;
      this.table[cell] = s + 1;
    }
    const b = s * W;
    const all = this.slots;
    if (all[b] !== PENDING) {
      if (this.pendingN === this.pending.length) {
        this.pending = grown(this.pending, this.pendingN * 2);
      }
      this.pending[this.pendingN++] = s;
      all[b] = PENDING;
    }
    all[b + 1] = keyStart;
    all[b + 3] = valueStart - keyStart;
    all[b + 4] = valueEnd - valueStart;
    this.exps[s * 4 + 3] = expiresAt;
    if (keyStart < this.foreignLo) this.foreignLo = keyStart;
    if (valueEnd > this.foreignHi) this.foreignHi = valueEnd;
    if (this.used * 2 > this.table.length) this.rebuild(false);
    else this.maybeCompact();
  }

  remove(buf: Buffer, keyStart: number, keyEnd: number): void {
    const t = this.find(buf, keyStart, keyEnd, hashBytes(buf, keyStart, keyEnd));
    if (t < 0) return;
    const s = this.table[t]! - 1;
    this.table[t] = -1;
    this.live[s] = 0;
    const b = s * W;
    const span = this.slots[b + 3]! + this.slots[b + 4]!;
    if (this.slots[b] !== PENDING) this.garbageBytes += span;
    this.liveCount--;
    this.liveBytes -= span;
    this.maybeCompact();
  }

  clear(): void {
    this.chunks = [];
    this.cur = Buffer.alloc(0);
    this.curIdx = -1;
    this.curUsed = 0;
    this.foreign = undefined;
    this.foreignLo = Number.POSITIVE_INFINITY;
    this.foreignHi = 0;
    this.pendingN = 0;
    this.n = 0;
    this.table.fill(0);
    this.used = 0;
    this.liveCount = 0;
    this.liveBytes = 0;
    this.garbageBytes = 0;
  }

  /** The replay is about to overwrite `buf`: copy out what pending slots still need from it. */
  detach(buf: Buffer): void {
    if (buf === this.foreign) {
      this.settle();
      this.maybeCompact();
    }
  }

  /**
   * The live entries sorted by unsigned key bytes, as views into the slabs (no copy). Entries
   * with `0 < expiresAt <= now` are left out and counted when `now` is given. The set is empty
   * afterwards.
   */
  finish(now?: number): { entries: LiveEntry[]; expiredDropped: number } {
    const entries: LiveEntry[] = [];
    const { expiredDropped } = this.drain(now, (bytes, ks, ke, vs, ve, expiresAt) => {
      entries.push({ key: bytes.subarray(ks, ke), value: bytes.subarray(vs, ve), expiresAt });
    });
    return { entries, expiredDropped };
  }

  /**
   * Like `finish`, but hands each live entry to `visit` in key order as ranges of a slab
   * instead of building an array: no object per entry, for callers that stream the entries
   * somewhere else. Slabs are never written again, so the ranges stay valid after the call.
   */
  drain(
    now: number | undefined,
    visit: EntryRangeVisitor,
  ): { count: number; expiredDropped: number } {
    this.settle();
    // Views pin their slabs: do not hand out slabs that are mostly garbage.
    if (this.garbageBytes > this.liveBytes) this.rebuild(true);
    const order = new Uint32Array(this.liveCount);
    let m = 0;
    let expiredDropped = 0;
    for (let s = 0; s < this.n; s++) {
      if (this.live[s] === 0) continue;
      const e = this.exps[s * 4 + 3]!;
      if (now !== undefined && e !== 0 && e <= now) expiredDropped++;
      else order[m++] = s;
    }
    const live = order.subarray(0, m);
    this.sort(live);
    const slots = this.slots;
    const exps = this.exps;
    const chunks = this.chunks;
    this.clear();
    for (let i = 0; i < m; i++) {
      const s = live[i]!;
      const b = s * W;
      const off = slots[b + 1]!;
      const v = off + slots[b + 3]!;
      visit(chunks[slots[b]!]!, off, off + slots[b + 2]!, v, v + slots[b + 4]!, exps[s * 4 + 3]!);
    }
    return { count: m, expiredDropped };
  }

  // -------------------------------------------------------------------------------------------

  /**
   * The table cell holding the key, or, when it is absent, `-(cell + 1)` for the cell to put it
   * in (the first deleted cell on its probe path, else the empty cell that ended it).
   */
  private find(buf: Buffer, start: number, end: number, h: number): number {
    const table = this.table;
    const mask = this.mask;
    const slots = this.slots;
    const klen = end - start;
    let i = h & mask;
    let free = -1;
    for (;;) {
      const t = table[i]!;
      if (t === 0) return -((free >= 0 ? free : i) + 1);
      if (t < 0) {
        if (free < 0) free = i;
      } else {
        const b = (t - 1) * W;
        if (slots[b + 5] === h && slots[b + 2] === klen) {
          const c = slots[b] === PENDING ? this.foreign! : this.chunks[slots[b]!]!;
          let o = slots[b + 1]!;
          let j = start;
          while (j < end && c[o] === buf[j]) {
            o++;
            j++;
          }
          if (j === end) return i;
        }
      }
      i = (i + 1) & mask;
    }
  }

  /** Makes `buf` the foreign buffer, settling the previous one. */
  private adopt(buf: Buffer): void {
    this.settle();
    this.maybeCompact();
    this.foreign = buf;
  }

  /** Copies the range the pending slots span into a slab and points them at it. */
  private settle(): void {
    const src = this.foreign;
    if (src === undefined) return;
    this.foreign = undefined;
    const n = this.pendingN;
    this.pendingN = 0;
    const lo = this.foreignLo;
    const hi = this.foreignHi;
    this.foreignLo = Number.POSITIVE_INFINITY;
    this.foreignHi = 0;
    if (n === 0) return;
    const [idx, base] = this.reserve(hi - lo);
    copyBytes(src, lo, hi - lo, this.chunks[idx]!, base);
    const slots = this.slots;
    let live = 0;
    for (let i = 0; i < n; i++) {
      const s = this.pending[i]!;
      const b = s * W;
      slots[b] = idx;
      slots[b + 1] = base + slots[b + 1]! - lo;
      if (this.live[s] === 1) live += slots[b + 3]! + slots[b + 4]!;
    }
    this.garbageBytes += hi - lo - live;
  }

  /** Slab space for `len` bytes: [chunk index, offset]. */
  private reserve(len: number): [number, number] {
    if (len >= OWN_CHUNK) {
      return [this.chunks.push(Buffer.allocUnsafeSlow(len)) - 1, 0];
    }
    if (this.curUsed + len > this.cur.length) {
      this.garbageBytes += this.cur.length - this.curUsed;
      this.cur = Buffer.allocUnsafeSlow(CHUNK);
      this.curIdx = this.chunks.push(this.cur) - 1;
      this.curUsed = 0;
    }
    const at = this.curUsed;
    this.curUsed += len;
    return [this.curIdx, at];
  }

  private growSlots(): void {
    const cap = this.live.length * 2;
    this.slots = grown(this.slots, cap * W);
    this.exps = new Float64Array(this.slots.buffer);
    this.live = grown(this.live, cap);
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
   * `compact`, also copies the live entries (pending ones included) into fresh slabs and
   * drops dead slots.
   */
  private rebuild(compact: boolean): void {
    const slots = this.slots;
    if (compact) {
      const oldChunks = this.chunks;
      const foreign = this.foreign;
      this.chunks = [];
      this.cur = Buffer.alloc(0);
      this.curIdx = -1;
      this.curUsed = 0;
      this.foreign = undefined;
      this.pendingN = 0;
      this.foreignLo = Number.POSITIVE_INFINITY;
      this.foreignHi = 0;
      let w = 0;
      for (let s = 0; s < this.n; s++) {
        if (this.live[s] === 0) continue;
        const b = s * W;
        const span = slots[b + 3]! + slots[b + 4]!;
        const from = slots[b] === PENDING ? foreign! : oldChunks[slots[b]!]!;
        const [idx, at] = this.reserve(span);
        copyBytes(from, slots[b + 1]!, span, this.chunks[idx]!, at);
        // Slot w <= s, so moving it down never overwrites a slot still to be read.
        slots.copyWithin(w * W, b, b + W);
        slots[w * W] = idx;
        slots[w * W + 1] = at;
        this.live[w] = 1;
        w++;
      }
      this.n = w;
      this.garbageBytes = 0;
    }
    let size = MIN_SLOTS * 2;
    // Load at most one half: probing stays short, and the table small enough to cache.
    while (size <= this.liveCount * 2) size *= 2;
    const table = new Int32Array(size);
    const mask = size - 1;
    for (let s = 0; s < this.n; s++) {
      if (this.live[s] === 0) continue;
      let i = slots[s * W + 5]! & mask;
      while (table[i] !== 0) i = (i + 1) & mask;
      table[i] = s + 1;
    }
    this.table = table;
    this.mask = mask;
    this.used = this.liveCount;
  }

  // -------------------------------------------------------------------------------------------
  // Sorting by key bytes (only after `settle`, so no slot is pending)

  private compare(a: number, b: number, depth: number): number {
    const slots = this.slots;
    const ca = this.chunks[slots[a * W]!]!;
    const cb = this.chunks[slots[b * W]!]!;
    const oa = slots[a * W + 1]!;
    const ob = slots[b * W + 1]!;
    const la = slots[a * W + 2]!;
    const lb = slots[b * W + 2]!;
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
    scratch: Uint32Array,
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
    const slots = this.slots;
    // Skip the bytes every key in the range shares: long common prefixes ("user.1234…")
    // would otherwise take a pass each.
    const first = order[lo]! * W;
    const fc = this.chunks[slots[first]!]!;
    const fo = slots[first + 1]! + depth;
    let shared = slots[first + 2]! - depth;
    for (let i = lo + 1; i < hi && shared > 0; i++) {
      const b = order[i]! * W;
      const c = this.chunks[slots[b]!]!;
      const o = slots[b + 1]! + depth;
      const l = Math.min(shared, slots[b + 2]! - depth);
      let k = 0;
      while (k < l && c[o + k] === fc[fo + k]) k++;
      shared = k;
    }
    const at = depth + shared;
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
      const b = s * W;
      const c = this.chunks[slots[b]!]!;
      const o = slots[b + 1]!;
      const len = slots[b + 2]!;
      let v = 0;
      for (let d = at; d < at + digits; d++) v = v * 257 + (d < len ? c[o + d]! + 1 : 0);
      if (v < min) min = v;
      if (v > max) max = v;
      packed[lo + i] = v * scale + i;
      scratch[lo + i] = s;
    }
    if (min === max) {
      // One shared prefix: nothing to sort at this depth. Ended keys would be duplicates.
      if (min % 257 !== 0) this.radix(order, packed, scratch, lo, hi, at + digits);
      return;
    }
    const view = packed.subarray(lo, hi);
    view.sort();
    for (let i = 0; i < m; i++) order[lo + i] = scratch[lo + (view[i]! % scale)]!;
    let i = lo;
    while (i < hi) {
      const v = Math.floor(packed[i]! / scale);
      let j = i + 1;
      while (j < hi && Math.floor(packed[j]! / scale) === v) j++;
      if (j - i > 1 && v % 257 !== 0) this.radix(order, packed, scratch, i, j, at + digits);
      i = j;
    }
  }
}

function grown<T extends Uint32Array | Uint8Array>(a: T, cap: number): T {
  const b = new (a.constructor as new (n: number) => T)(cap);
  b.set(a as never);
  return b;
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
