/**
 * Size limits that follow from the page size. They are chosen together so that any leaf
 * holds at least three records and any branch at least three separators, whatever the keys:
 *
 * - a key is at most `pageSize / 4` bytes (1024 for 4 KiB pages: the engine's MAX_KEY_SIZE);
 * - a value stays inline when its whole record takes at most a quarter of the leaf body,
 *   or when it is at most 8 bytes (then inline is never larger than an overflow pointer);
 *   otherwise it goes to an overflow chain and the record keeps only its length and head.
 *
 * The largest record is then `25 + pageSize / 4` bytes with its slot, and three of them fit
 * in `pageSize - 16` for every legal page size (>= 512). The largest branch entry is
 * `12 + pageSize / 4`, and three of them fit beside the branch's 24-byte head.
 */
import { PAGE_HEADER_SIZE } from "../pager/page.js";

/** The longest key a tree with this page size accepts. */
export function maxKeySize(pageSize: number): number {
  return Math.floor(pageSize / 4);
}

/** Bytes available for slots and records in a leaf. */
export function leafBody(pageSize: number): number {
  return pageSize - PAGE_HEADER_SIZE;
}

/** The largest record (without its slot) that may carry its value inline. */
export function maxInlineRecord(pageSize: number): number {
  return Math.floor(leafBody(pageSize) / 4) - 2;
}

/** Values longer than this are rejected (the record stores a u32 length). */
export const MAX_VALUE_LENGTH = 0xffff_ffff;
