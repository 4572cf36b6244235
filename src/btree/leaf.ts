/**
 * Leaf pages: slotted pages packing many records, in ascending unsigned key order.
 *
 * | offset     | size | field                                                         |
 * |-----------:|-----:|---------------------------------------------------------------|
 * |          0 |   16 | page header: type 1 (leaf), u16 at 6 = record count n         |
 * |         16 |  2·n | slots: u16 page offset of record i, records in key order      |
 * |   16 + 2·n |    … | free space                                                    |
 * | P - sum(r) |    … | the records, packed up to the end of the page (in slot order) |
 *
 * A record:
 *
 * | offset | size | field                                                            |
 * |-------:|-----:|------------------------------------------------------------------|
 * |      0 |    1 | flags: 1 = has expiresAt, 2 = value in an overflow chain,        |
 * |        |      |        4 = that chain's pages are adjacent (head, head+1, …)     |
 * |      1 |    2 | key length u16                                                   |
 * |      3 |    4 | value length u32                                                 |
 * |      7 |    8 | expiresAt u64, ms (only with flag 1; absent means 0 = never)     |
 * |      … |    8 | overflow head page id u64 (only with flag 2)                     |
 * |      … |    k | key bytes                                                        |
 * |      … |    v | value bytes (only without flag 2)                                |
 *
 * expiresAt is optional because most records never expire: for 16-byte keys and 100-byte
 * values a record then costs 125 bytes with its slot instead of 133 (a 1M-entry file is
 * 1.11x the raw data instead of 1.18x). The slots give record i's offset in O(1), so a
 * cursor (`cursor.ts`) can step through a leaf and compare keys in place; a checkpoint
 * rewrites a whole leaf anyway, so records are kept in order and contiguous, which also makes
 * the full scan at open a linear walk through memory.
 */
import { copyBytes, readU64, writeU64 } from "../codec.js";
import { corrupted } from "../errors.js";
import { latin1Slice } from "../keys.js";
import { newPage, OFF_AUX16, PAGE_HEADER_SIZE, PageType } from "../pager/page.js";
import { maxInlineRecord } from "./limits.js";

export const REC_EXPIRES = 1;
export const REC_OVERFLOW = 2;
export const REC_CONTIGUOUS = 4;
const KNOWN_FLAGS = REC_EXPIRES | REC_OVERFLOW | REC_CONTIGUOUS;
const REC_FIXED = 7;
const SLOTS_AT = PAGE_HEADER_SIZE;

/** A record as a key plus its encoded bytes; unchanged records are copied verbatim. */
export interface LeafRecord {
  readonly key: Buffer;
  readonly raw: Buffer;
}

/** The decoded header of one record. */
export interface RecordInfo {
  readonly flags: number;
  readonly valueLength: number;
  readonly expiresAt: number;
  /** Overflow head page id, 0 when inline. */
  readonly head: number;
  readonly key: Buffer;
  /** The inline value, or undefined when it is in an overflow chain. */
  readonly inline: Buffer | undefined;
  /** Bytes the record occupies. */
  readonly size: number;
}

export function inlineRecordSize(
  keyLength: number,
  valueLength: number,
  expiresAt: number,
): number {
  return REC_FIXED + (expiresAt !== 0 ? 8 : 0) + keyLength + valueLength;
}

/** Whether a value of this length is stored inside the leaf. */
export function isInline(
  pageSize: number,
  keyLength: number,
  valueLength: number,
  expiresAt: number,
): boolean {
  return (
    valueLength <= 8 ||
    inlineRecordSize(keyLength, valueLength, expiresAt) <= maxInlineRecord(pageSize)
  );
}

function encodeHead(
  size: number,
  flags: number,
  key: Buffer,
  valueLength: number,
  expiresAt: number,
): { rec: Buffer; at: number } {
  const rec = Buffer.allocUnsafe(size);
  rec[0] = flags;
  rec.writeUInt16LE(key.length, 1);
  rec.writeUInt32LE(valueLength, 3);
  let at = REC_FIXED;
  if (flags & REC_EXPIRES) {
    writeU64(rec, expiresAt, at);
    at += 8;
  }
  return { rec, at };
}

export function encodeInlineRecord(key: Buffer, value: Buffer, expiresAt: number): Buffer {
  const size = inlineRecordSize(key.length, value.length, expiresAt);
  const { rec, at } = encodeHead(
    size,
    expiresAt !== 0 ? REC_EXPIRES : 0,
    key,
    value.length,
    expiresAt,
  );
  key.copy(rec, at);
  value.copy(rec, at + key.length);
  return rec;
}

export function encodeOverflowRecord(
  key: Buffer,
  valueLength: number,
  expiresAt: number,
  head: number,
  contiguous: boolean,
): Buffer {
  const flags =
    REC_OVERFLOW | (expiresAt !== 0 ? REC_EXPIRES : 0) | (contiguous ? REC_CONTIGUOUS : 0);
  const size = REC_FIXED + (expiresAt !== 0 ? 8 : 0) + 8 + key.length;
  const { rec, at } = encodeHead(size, flags, key, valueLength, expiresAt);
  writeU64(rec, head, at);
  key.copy(rec, at + 8);
  return rec;
}

/**
 * Parses the record at `off`, checking that it lies within `[lo, end)`. `base` is the file
 * offset of `buf[0]`, so errors name the byte that is wrong.
 */
export function parseRecord(
  buf: Buffer,
  off: number,
  lo: number,
  end: number,
  base: number,
  file: string,
): RecordInfo {
  if (off < lo || off + REC_FIXED > end) {
    throw corrupted(`leaf record offset ${off} out of bounds`, base + off, file);
  }
  const flags = buf[off]!;
  if (
    (flags & ~KNOWN_FLAGS) !== 0 ||
    (flags & (REC_OVERFLOW | REC_CONTIGUOUS)) === REC_CONTIGUOUS
  ) {
    throw corrupted(`leaf record has unknown flags ${flags}`, base + off, file);
  }
  const keyLength = buf.readUInt16LE(off + 1);
  const valueLength = buf.readUInt32LE(off + 3);
  let p = off + REC_FIXED;
  let expiresAt = 0;
  let head = 0;
  if (flags & REC_EXPIRES) {
    if (p + 8 > end) throw corrupted("leaf record expiry out of bounds", base + p, file);
    expiresAt = readU64(buf, p);
    if (expiresAt <= 0) throw corrupted("leaf record expiry is invalid", base + p, file);
    p += 8;
  }
  if (flags & REC_OVERFLOW) {
    if (p + 8 > end) throw corrupted("leaf record overflow link out of bounds", base + p, file);
    head = readU64(buf, p);
    if (head < 2) throw corrupted(`leaf record overflow head ${head} invalid`, base + p, file);
    p += 8;
  }
  const inlineLength = flags & REC_OVERFLOW ? 0 : valueLength;
  if (p + keyLength + inlineLength > end) {
    throw corrupted("leaf record key or value runs past the page", base + off, file);
  }
  const key = buf.subarray(p, p + keyLength);
  const inline =
    flags & REC_OVERFLOW ? undefined : buf.subarray(p + keyLength, p + keyLength + inlineLength);
  return {
    flags,
    valueLength,
    expiresAt,
    head,
    key,
    inline,
    size: p + keyLength + inlineLength - off,
  };
}

export function leafCount(page: Buffer): number {
  return page.readUInt16LE(OFF_AUX16);
}

/**
 * A little-endian u16 or u32 by index, without `readUInt16LE`'s argument checks, whose cost
 * shows on paths run once per record. No bounds check either: only for ranges the caller
 * has checked (past the end of the buffer, the result is not meaningful).
 */
function u16(b: Buffer, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}

function u32(b: Buffer, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16)) + b[o + 3]! * 0x100_0000;
}

/** The record count, refused as corrupt when its slots would not fit in the page. */
export function checkedCount(page: Buffer, base: number, file: string): number {
  const n = page.readUInt16LE(OFF_AUX16);
  if (SLOTS_AT + 2 * n > page.length) {
    throw corrupted(`leaf claims ${n} records, more than fit`, base + OFF_AUX16, file);
  }
  return n;
}

/** Page offset of record `i` (its slot; not bounds-checked). */
export function recordOffset(page: Buffer, i: number): number {
  return page.readUInt16LE(SLOTS_AT + 2 * i);
}

/**
 * A record with an inline value (flags 0, or 1 with an expiry) has its key length at +1,
 * its value length at +3, its key at `inlineKeyAt(flags)` (after the expiry when there is
 * one) and its value right after the key.
 */
export const PLAIN_KEY_AT = REC_FIXED;

/** Where an inline record's key starts, from its flags byte (0 or `REC_EXPIRES`). */
export function inlineKeyAt(flags: number): number {
  return flags === REC_EXPIRES ? REC_FIXED + 8 : REC_FIXED;
}

/** Record `i`'s parsed header (bounds-checked). */
export function leafRecordAt(page: Buffer, i: number, base: number, file: string): RecordInfo {
  const n = checkedCount(page, base, file);
  const off = page.readUInt16LE(SLOTS_AT + 2 * i);
  return parseRecord(page, off, SLOTS_AT + 2 * n, page.length, base, file);
}

/** Every record of a verified leaf page as (key, raw bytes) views. */
export function decodeLeaf(page: Buffer, base: number, file: string): LeafRecord[] {
  const n = checkedCount(page, base, file);
  const out = new Array<LeafRecord>(n);
  for (let i = 0; i < n; i++) {
    const off = page.readUInt16LE(SLOTS_AT + 2 * i);
    const r = parseRecord(page, off, SLOTS_AT + 2 * n, page.length, base, file);
    out[i] = { key: r.key, raw: page.subarray(off, off + r.size) };
  }
  return out;
}

/** Parses a standalone raw record (one built by `encode*Record` or cut from a page). */
export function parseRaw(raw: Buffer): RecordInfo {
  return parseRecord(raw, 0, 0, raw.length, 0, "<record>");
}

/** Bytes a record costs in a leaf, slot included. */
export function recordCost(r: LeafRecord): number {
  return r.raw.length + 2;
}

/** Encodes records (which must fit) into a new leaf page. */
export function encodeLeaf(
  pageSize: number,
  recs: readonly LeafRecord[],
  from = 0,
  to = recs.length,
): Buffer {
  const page = newPage(pageSize, PageType.Leaf, to - from);
  let bytes = 0;
  for (let i = from; i < to; i++) bytes += recs[i]!.raw.length;
  let at = pageSize - bytes;
  if (at < SLOTS_AT + 2 * (to - from)) throw new Error("internal: leaf records do not fit");
  for (let i = from; i < to; i++) {
    const raw = recs[i]!.raw;
    page.writeUInt16LE(at, SLOTS_AT + 2 * (i - from));
    raw.copy(page, at);
    at += raw.length;
  }
  return page;
}

/**
 * A record as `scanLeaf` reports it, without making views: the key is `kb[ks..ke)`, the value
 * `vb[vs..ve)` (both in the page, or the value in its assembled overflow chain).
 */
export type RecordSpans = (
  kb: Buffer,
  ks: number,
  ke: number,
  vb: Buffer,
  vs: number,
  ve: number,
  expiresAt: number,
  /** The record's page offset when its value is inline (flags 0 or 1), else -1. */
  inlineAt: number,
) => void;

/**
 * The scan loop of `forEach`, kept tight: per record it reads the header fields and calls
 * back with where the key and value are, so the caller makes views or strings as it needs.
 * Overflow values are fetched through `overflow`.
 */
export function scanLeaf(
  page: Buffer,
  base: number,
  file: string,
  overflow: (head: number, length: number, contiguous: boolean, at: number) => Buffer,
  cb: RecordSpans,
): number {
  const n = checkedCount(page, base, file);
  const lo = SLOTS_AT + 2 * n;
  const end = page.length;
  // Plain index reads, not `readUInt16LE` and kin: each range is checked first (the slots by
  // `checkedCount`, the header by the test below), and their own argument checks cost an
  // open of a million records about 30 ms: `bench/open-time.ts`, two rounds of 15 opens
  // alternating with the build before, medians 490 → 448 and 488 → 461 ms.
  for (let i = 0; i < n; i++) {
    const off = u16(page, SLOTS_AT + 2 * i);
    const p = inlineRecord(page, off, lo, end);
    if (p >= 0) {
      const v = p + inlineKeyLength;
      cb(page, p, v, page, v, v + inlineValueLength, inlineExpiresAt, off);
      continue;
    }
    // An overflow record, or damage, which `parseRecord` throws the precise error for.
    const r = parseRecord(page, off, lo, end, base, file);
    const value =
      r.inline ?? overflow(r.head, r.valueLength, (r.flags & REC_CONTIGUOUS) !== 0, base + off);
    cb(r.key, 0, r.key.length, value, 0, value.length, r.expiresAt, -1);
  }
  return n;
}

/** What `inlineRecord` read last: variables, so that it returns no object. */
let inlineKeyLength = 0;
let inlineValueLength = 0;
let inlineExpiresAt = 0;

/**
 * Where the key starts of the record at page offset `off`, when it is a sound record with
 * an inline value: its header between the slots (`lo`) and `end`, flags 0 or an expiry
 * that is a positive safe integer, key and value within `end`. Its key length, value length
 * and expiry (0 = never) are left in `inlineKeyLength`, `inlineValueLength` and
 * `inlineExpiresAt`. -1 for anything else: an overflow record, or damage, which
 * `parseRecord` tells apart. The common record of every hot loop (the open's, the scan's,
 * a clean read's), read in place with no record object: the header checks that
 * `parseRecord` makes, for this one shape.
 */
function inlineRecord(page: Buffer, off: number, lo: number, end: number): number {
  const flags = page[off];
  if ((flags !== 0 && flags !== REC_EXPIRES) || off < lo || off + REC_FIXED > end) return -1;
  let p = off + REC_FIXED;
  let expiresAt = 0;
  if (flags === REC_EXPIRES) {
    if (p + 8 > end) return -1;
    expiresAt = readU64(page, p);
    if (expiresAt <= 0) return -1; // 0, or past 2^53 (-1)
    p += 8;
  }
  const keyLength = u16(page, off + 1);
  const valueLength = u32(page, off + 3);
  if (p + keyLength + valueLength > end) return -1;
  inlineKeyLength = keyLength;
  inlineValueLength = valueLength;
  inlineExpiresAt = expiresAt;
  return p;
}

/** Where `takeRecords` puts what it reads: record j of a run at index j of each array. */
export interface RecordSink {
  readonly keys: Buffer[];
  readonly values: Buffer[];
  readonly expiries: number[];
}

/**
 * Records `first` onwards of a leaf with `n` records (`checkedCount`), at most `max`, and
 * none whose key is past `hi` (an internal key; up to it with `hiInclusive`), into `out` as
 * views into `own`, a copy of `page`; their count. Overflow values are fresh copies (from
 * `overflow`).
 *
 * The scan's hot loop, so the common record (an inline value) is read in place here by
 * `inlineRecord`, as `scanLeaf` reads it, its key compared with `hi` there too, rather than
 * through `keyStart` and `sane` twice per record: a first scan in a fresh process runs
 * unoptimised at first, and that chain of helpers was what V8 had to optimise before the
 * scan ran at full speed. Anything else goes to `copyRecordKey` and `copyRecordValue`,
 * which read the same records the same way or throw the precise error.
 * A record that throws ends the records taken before it; with none taken, the error is the
 * caller's.
 */
export function takeRecords(
  page: Buffer,
  n: number,
  first: number,
  max: number,
  hi: string | undefined,
  hiInclusive: boolean,
  base: number,
  file: string,
  overflow: (head: number, length: number, contiguous: boolean, at: number) => Buffer,
  own: Buffer,
  out: RecordSink,
): number {
  const { keys, values, expiries } = out;
  const lo = SLOTS_AT + 2 * n;
  const end = page.length;
  const last = Math.min(n, first + max);
  let count = 0;
  for (let i = first; i < last; i++) {
    try {
      const p = inlineRecord(page, u16(page, SLOTS_AT + 2 * i), lo, end);
      if (p >= 0) {
        const v = p + inlineKeyLength;
        const valueEnd = v + inlineValueLength;
        const expiresAt = inlineExpiresAt;
        if (hi !== undefined) {
          const d = compareKeyAt(page, p, v - p, hi);
          if (hiInclusive ? d > 0 : d >= 0) break;
        }
        keys[count] = own.subarray(p, v);
        values[count] = own.subarray(v, valueEnd);
        expiries[count] = expiresAt;
        count++;
        continue;
      }
      if (hi !== undefined) {
        const d = compareRecordKey(page, i, hi, base, file);
        if (hiInclusive ? d > 0 : d >= 0) break;
      }
      const at = { expiresAt: 0 };
      keys[count] = copyRecordKey(page, i, base, file, own);
      values[count] = copyRecordValue(page, i, base, file, overflow, at, own);
      expiries[count] = at.expiresAt;
      count++;
    } catch (err) {
      // A damaged record (or an overflow chain that fails to read) ends the run before it:
      // the records ahead of it are served, and the run that starts at it throws, as often
      // as it is asked for, never skipping it.
      if (count === 0) throw err;
      break;
    }
  }
  return count;
}

/**
 * Compares record `i`'s key with `k`, an internal key (one char per byte), without
 * allocating: negative when the record's key sorts first, 0 when equal.
 */
export function compareRecordKey(
  page: Buffer,
  i: number,
  k: string,
  base: number,
  file: string,
): number {
  const p = keyStart(page, i, base, file);
  return compareKeyAt(page, p, startedKeyLength, k);
}

/** The key `page[p .. p + keyLength)` compared with `k`, an internal key. */
function compareKeyAt(page: Buffer, p: number, keyLength: number, k: string): number {
  const n = keyLength < k.length ? keyLength : k.length;
  for (let j = 0; j < n; j++) {
    const d = page[p + j]! - k.charCodeAt(j);
    if (d !== 0) return d;
  }
  return keyLength - k.length;
}

/**
 * A copy of record `i`'s key. With `own`, a copy of `page` that the caller owns, it is a
 * view into that copy instead (see `TreeCursor.takeRun`).
 */
export function copyRecordKey(
  page: Buffer,
  i: number,
  base: number,
  file: string,
  own?: Buffer,
): Buffer {
  const p = keyStart(page, i, base, file);
  const keyLength = startedKeyLength;
  if (own !== undefined) return own.subarray(p, p + keyLength);
  const key = Buffer.allocUnsafe(keyLength);
  copyBytes(page, p, key, 0, keyLength);
  return key;
}

/** Record `i`'s key in internal form (one char per byte). */
export function recordKeyString(page: Buffer, i: number, base: number, file: string): string {
  const p = keyStart(page, i, base, file);
  return latin1Slice(page, p, p + startedKeyLength);
}

/** The key length `keyStart` found last (a variable, so that it returns no object). */
let startedKeyLength = 0;

/**
 * Whether a record's header at `off` lies between the page's slots and its end, and its
 * flags are ones `parseRecord` accepts, of any shape (inline or overflow): what `keyStart`
 * checks before it reads a key in place (anything else goes to `leafRecordAt`, which throws
 * the precise error).
 */
function sane(page: Buffer, off: number, flags: number): boolean {
  return (
    off >= SLOTS_AT + 2 * u16(page, OFF_AUX16) &&
    off + REC_FIXED <= page.length &&
    (flags & ~KNOWN_FLAGS) === 0 &&
    (flags & (REC_OVERFLOW | REC_CONTIGUOUS)) !== REC_CONTIGUOUS
  );
}

/**
 * Where record `i`'s key starts, its length left in `startedKeyLength`. `i` must be below
 * the page's `checkedCount`, so that its slot lies in the page.
 */
function keyStart(page: Buffer, i: number, base: number, file: string): number {
  const off = u16(page, SLOTS_AT + 2 * i);
  const flags = page[off]!;
  const p = off + REC_FIXED + (flags & REC_EXPIRES ? 8 : 0) + (flags & REC_OVERFLOW ? 8 : 0);
  const keyLength = u16(page, off + 1);
  // The header's range and flags first: otherwise `flags` and `keyLength` mean nothing.
  if (!sane(page, off, flags) || p + keyLength > page.length) {
    leafRecordAt(page, i, base, file); // throws the precise error
  }
  startedKeyLength = keyLength;
  return p;
}

/**
 * Record `i`'s expiresAt (0 = never) and a copy of its value; overflow values via
 * `overflow`. With `own`, as for `copyRecordKey`, an inline value is a view into it.
 */
export function copyRecordValue(
  page: Buffer,
  i: number,
  base: number,
  file: string,
  overflow: (head: number, length: number, contiguous: boolean, at: number) => Buffer,
  out: { expiresAt: number },
  own?: Buffer,
): Buffer {
  const lo = SLOTS_AT + 2 * u16(page, OFF_AUX16);
  const p = inlineRecord(page, u16(page, SLOTS_AT + 2 * i), lo, page.length);
  if (p >= 0) {
    // Inline (the common case): read in place, no record object.
    out.expiresAt = inlineExpiresAt;
    const v = p + inlineKeyLength;
    const valueEnd = v + inlineValueLength;
    if (own !== undefined) return own.subarray(v, valueEnd);
    const value = Buffer.allocUnsafe(valueEnd - v);
    page.copy(value, 0, v, valueEnd);
    return value;
  }
  const r = leafRecordAt(page, i, base, file); // overflow, or throws the precise error
  out.expiresAt = r.expiresAt;
  if (r.inline !== undefined) return Buffer.from(r.inline);
  return overflow(r.head, r.valueLength, (r.flags & REC_CONTIGUOUS) !== 0, base);
}
