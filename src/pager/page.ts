/**
 * The common header every page carries except the two meta pages (0 and 1).
 *
 * | offset | size | field                                                                   |
 * |-------:|-----:|-------------------------------------------------------------------------|
 * |      0 |    4 | checksum u32: xxh32(page[4 .. pageSize], seed = pageId mod 2^32)        |
 * |      4 |    1 | page type (`PageType`)                                                  |
 * |      5 |    1 | type-specific u8 (branch: height above the leaves)                      |
 * |      6 |    2 | type-specific u16 (leaf/branch/free-list: entry count; overflow: chunk) |
 * |      8 |    8 | generation u64 of the commit that wrote the page                        |
 * |     16 |    … | body, laid out by the page type's own module                            |
 *
 * Hashing everything after the checksum field is equivalent to hashing the page with the
 * field zeroed, without a copy. Seeding with the page id makes a page that was written to
 * the wrong place (or read from the wrong place) fail its checksum even though its bytes
 * are intact. The generation is not needed to read the tree; `check()` uses it to prove no
 * page claims to come from a commit newer than the meta that reaches it.
 */
import { xxh32 } from "@node-rs/xxhash";
import { readU64, writeU64 } from "../codec.js";
import { corrupted } from "../errors.js";

/** A page number. Page `n` starts at byte `n * pageSize`. Branded so it cannot mix with offsets. */
export type PageId = number & { readonly __brand: "PageId" };

export function pageId(n: number): PageId {
  return n as PageId;
}

/** Page 0 is never a tree page, so it doubles as "no page" in every link. */
export const NO_PAGE = 0 as PageId;

export const PageType = {
  Leaf: 1,
  Branch: 2,
  Overflow: 3,
  FreeList: 4,
} as const;
export type PageType = (typeof PageType)[keyof typeof PageType];

const TYPE_NAMES: Record<number, string> = {
  1: "leaf",
  2: "branch",
  3: "overflow",
  4: "free-list",
};

export function pageTypeName(t: number): string {
  return TYPE_NAMES[t] ?? `unknown(${t})`;
}

export const PAGE_HEADER_SIZE = 16;
export const OFF_CHECKSUM = 0;
export const OFF_TYPE = 4;
export const OFF_AUX8 = 5;
export const OFF_AUX16 = 6;
export const OFF_GENERATION = 8;

export const MIN_PAGE_SIZE = 512;
export const MAX_PAGE_SIZE = 65536;
export const DEFAULT_PAGE_SIZE = 4096;

export function isValidPageSize(n: number): boolean {
  return Number.isInteger(n) && n >= MIN_PAGE_SIZE && n <= MAX_PAGE_SIZE && (n & (n - 1)) === 0;
}

/**
 * A zeroed page buffer with the type and the type-specific fields filled in; `into`, when
 * given, is a zeroed buffer of the page size to use instead of a new one.
 */
export function newPage(
  pageSize: number,
  type: PageType,
  aux16 = 0,
  aux8 = 0,
  into?: Buffer,
): Buffer {
  const page = into ?? Buffer.alloc(pageSize);
  page[OFF_TYPE] = type;
  page[OFF_AUX8] = aux8;
  page.writeUInt16LE(aux16, OFF_AUX16);
  return page;
}

export function pageChecksum(page: Buffer, id: number): number {
  return xxh32(page.subarray(OFF_CHECKSUM + 4), id >>> 0);
}

/** Stamps the generation and the checksum; the page must not change afterwards. */
export function sealPage(page: Buffer, id: PageId, generation: number): void {
  writeU64(page, generation, OFF_GENERATION);
  page.writeUInt32LE(pageChecksum(page, id), OFF_CHECKSUM);
}

/**
 * Verifies a page read from the file. `offset` is the page's absolute file offset, so the
 * error names a position inside the page.
 */
export function verifyPage(
  page: Buffer,
  id: PageId,
  expected: PageType | undefined,
  offset: number,
  file: string,
): void {
  if (page.readUInt32LE(OFF_CHECKSUM) !== pageChecksum(page, id)) {
    throw corrupted(`page ${id} checksum mismatch`, offset + OFF_CHECKSUM, file);
  }
  const t = page[OFF_TYPE]!;
  if (expected !== undefined ? t !== expected : TYPE_NAMES[t] === undefined) {
    throw corrupted(
      `page ${id} has type ${pageTypeName(t)}, expected ${expected === undefined ? "a known type" : pageTypeName(expected)}`,
      offset + OFF_TYPE,
      file,
    );
  }
}

export function pageGeneration(page: Buffer): number {
  return readU64(page, OFF_GENERATION);
}
