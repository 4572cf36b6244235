/**
 * Reader for the emdb-rs 0.6 page file (format version 3, reference §2) and its `P.wal`
 * sidecar (§3). Read-only: nothing is written, truncated or repaired.
 *
 * Geometry: 4096-byte pages, page i at byte i × 4096, page 0 is the header, id 0 doubles as the
 * null link. Bytes past page_count × 4096 are a "legacy tail" of log records (§2.12).
 *
 * Page 0 (no common prefix):
 *
 * | Offset | Size | Field                                                 |
 * |--------|------|-------------------------------------------------------|
 * | 0      | 8    | magic "EMDBPAGE"                                      |
 * | 8      | 4    | u32 format version = 3                                |
 * | 12     | 4    | u32 feature flags (bit 0 ttl, bit 1 nested)           |
 * | 16     | 4    | u32 page_size = 4096                                  |
 * | 20     | 8    | u64 created_at (ms)                                   |
 * | 28     | 8    | u64 last_tx_id                                        |
 * | 36     | 8    | u64 page_count (page 0 included)                      |
 * | 44     | 8    | u64 root_page_id (0 = empty tree)                     |
 * | 52     | 8    | u64 free_list_head (0 = none)                         |
 * | 60     | 8    | u64 value_alloc_head (never used)                     |
 * | 68     | 32   | zero                                                  |
 * | 100    | 4    | u32 CRC-32 over bytes 0..100                          |
 * | 104    | 3992 | zero                                                  |
 *
 * Every other page starts with a 16-byte prefix:
 *
 * | Offset | Size | Field                                                           |
 * |--------|------|-----------------------------------------------------------------|
 * | 0      | 1    | page type: 1 B-tree node, 2 ValueLeaf, 3 FreeList, 4 Overflow   |
 * | 1      | 1    | flags (0)                                                       |
 * | 2      | 2    | reserved                                                        |
 * | 4      | 8    | lsn (0, unused)                                                 |
 * | 12     | 4    | u32 CRC-32 over bytes 16..4096 (the prefix is not covered)      |
 *
 * B-tree node (type 1):
 *
 * | Offset | Size | Field                                                                |
 * |--------|------|----------------------------------------------------------------------|
 * | 16     | 1    | node kind: 1 leaf, 0 internal                                        |
 * | 17     | 2    | u16 entry_count                                                      |
 * | 19     | 8    | leaf: u64 next leaf (0 = last); internal: u64 first child            |
 * | 27     | …    | entries: u16 key_len, key, u64 page id (leaf: ValueLeaf; internal: child) |
 *
 * ValueLeaf (type 2), one per value:
 *
 * | Offset | Size  | Field                                  |
 * |--------|-------|----------------------------------------|
 * | 16     | 4     | u32 total value length                 |
 * | 20     | 8     | u64 expires_at (ms, 0 = none)          |
 * | 28     | 8     | u64 first overflow page (0 = none)     |
 * | 36     | 4     | u32 inline length (≤ 4056)             |
 * | 40     | ≤4056 | inline bytes                           |
 *
 * Overflow (type 4):
 *
 * | Offset | Size  | Field                               |
 * |--------|-------|-------------------------------------|
 * | 16     | 8     | u64 next overflow page (0 = last)   |
 * | 24     | 4     | u32 chunk length (≤ 4068)           |
 * | 28     | ≤4068 | chunk bytes                         |
 *
 * Like 0.6, only the leftmost descent and the leaf chain are read; internal keys and the free
 * chain are never needed. Unlike 0.6, every chain is guarded (visited set) so a corrupt link is
 * `EMDB_CORRUPTED` at the link's offset instead of a hang (weakness D5).
 */
import * as path from "node:path";
import { crc32 } from "node:zlib";
import { ByteReader, readU64 } from "../src/codec.js";
import { corrupted, EmdbError } from "../src/errors.js";
import { clampExpiry } from "../src/ttl/ttl.js";
import {
  type PositionalReader,
  type ReplayOptions,
  type ReplayResult,
  type ReplaySink,
  replayLog,
} from "./legacy-log.js";
import { openReadOnly } from "./readonly-file.js";

export const PAGE_MAGIC = Buffer.from("EMDBPAGE", "latin1");
export const PAGE_SIZE = 4096;
export const PAGE_VERSION = 3;

export const PAGE_BTREE = 1;
export const PAGE_VALUE_LEAF = 2;
export const PAGE_FREE_LIST = 3;
export const PAGE_OVERFLOW = 4;

const HEADER_CRC_AT = 100;
const PAGE_CRC_AT = 12;
const PREFIX_SIZE = 16;
const NODE_ENTRIES_AT = 27;
const VALUE_INLINE_AT = 40;
const VALUE_INLINE_MAX = 4056;
const OVERFLOW_CHUNK_AT = 28;
const OVERFLOW_CHUNK_MAX = 4068;

export interface PageFileHeader {
  flags: number;
  lastTxId: number;
  pageCount: number;
  rootPageId: number;
  freeListHead: number;
}

/**
 * Validates page 0 in the order 0.6 does (§2.2), which the error results make observable:
 * length, magic, version (before the CRC), CRC, page size. Feature flags are not checked:
 * they only told 0.6 which build may open the file, and this reader handles every build.
 */
export function parsePageHeader(page0: Buffer, fileSize: number, file?: string): PageFileHeader {
  if (fileSize < PAGE_SIZE || page0.length < PAGE_SIZE) {
    throw corrupted(
      "page file is shorter than its header page",
      Math.min(fileSize, page0.length),
      file,
    );
  }
  if (!page0.subarray(0, 8).equals(PAGE_MAGIC)) {
    throw new EmdbError(
      "EMDB_MAGIC_MISMATCH",
      "not an emdb-rs page file (bad magic)",
      fileOpt(file),
    );
  }
  const version = page0.readUInt32LE(8);
  if (version !== PAGE_VERSION) {
    throw new EmdbError(
      "EMDB_VERSION_MISMATCH",
      `emdb-rs page file version ${version} (expected ${PAGE_VERSION})`,
      fileOpt(file),
    );
  }
  if (crc32(page0.subarray(0, HEADER_CRC_AT)) !== page0.readUInt32LE(HEADER_CRC_AT)) {
    throw corrupted("page header crc mismatch", HEADER_CRC_AT, file);
  }
  if (page0.readUInt32LE(16) !== PAGE_SIZE) throw corrupted("page size is not 4096", 16, file);
  const field = (at: number, what: string): number => {
    const v = readU64(page0, at);
    if (v < 0) throw corrupted(`${what} is larger than 2^53`, at, file);
    return v;
  };
  const lastTxId = field(28, "last_tx_id");
  const pageCount = field(36, "page_count");
  if (pageCount < 1 || pageCount > Number.MAX_SAFE_INTEGER / PAGE_SIZE) {
    throw corrupted(`page_count ${pageCount} is impossible`, 36, file);
  }
  return {
    flags: page0.readUInt32LE(12),
    lastTxId,
    pageCount,
    rootPageId: field(44, "root_page_id"),
    freeListHead: field(52, "free_list_head"),
  };
}

function fileOpt(file: string | undefined): { file?: string } {
  return file !== undefined ? { file } : {};
}

/** `P.wal` as 0.6 names it: the final path component with ".wal" appended, same directory. */
export function walPathFor(file: string): string {
  const base = path.basename(file);
  return path.join(path.dirname(file), base === "" ? "emdb.wal" : `${base}.wal`);
}

/** Reads pages by id with the checks of §2.3 (bounds, type, CRC). */
class PageReader {
  constructor(
    private readonly src: PositionalReader,
    private readonly fileSize: number,
    private readonly pageCount: number,
    private readonly file: string | undefined,
  ) {}

  /** Reads page `id` into `buf`, which was reached through the link field at `linkAt`. */
  read(buf: Buffer, id: number, type: number, what: string, linkAt: number): void {
    if (id === 0 || id >= this.pageCount) {
      throw corrupted(
        `${what} link to page ${id} is out of range (page_count ${this.pageCount})`,
        linkAt,
        this.file,
      );
    }
    const at = id * PAGE_SIZE;
    const got = at + PAGE_SIZE <= this.fileSize ? this.src.read(buf, 0, PAGE_SIZE, at) : 0;
    if (got !== PAGE_SIZE)
      throw corrupted(`${what} page ${id} lies past the end of the file`, at, this.file);
    const actual = buf[0]!;
    if (actual < PAGE_BTREE || actual > PAGE_OVERFLOW) {
      throw corrupted(`invalid page type ${actual} in ${what} page ${id}`, at, this.file);
    }
    if (crc32(buf.subarray(PREFIX_SIZE, PAGE_SIZE)) !== buf.readUInt32LE(PAGE_CRC_AT)) {
      throw corrupted(`page crc mismatch in ${what} page ${id}`, at + PAGE_CRC_AT, this.file);
    }
    if (actual !== type) {
      throw corrupted(`${what} page ${id} has type ${actual}, expected ${type}`, at, this.file);
    }
  }

  reader(buf: Buffer, id: number): ByteReader {
    return new ByteReader(buf, 0, PAGE_SIZE, id * PAGE_SIZE, this.file);
  }
}

export interface PageReadOptions {
  file?: string;
  /** Called about every 1 MiB of pages read; `bytesDone` counts page bytes visited. */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
}

/**
 * Emits every (key, value, expires_at) of the tree in key order (leftmost descent, then the
 * leaf chain), reading each value's ValueLeaf and overflow chain. Returns the entry count.
 */
export function readPageEntries(
  src: PositionalReader,
  fileSize: number,
  header: PageFileHeader,
  sink: ReplaySink,
  opts: PageReadOptions = {},
): number {
  if (header.rootPageId === 0) return 0;
  const { file, onProgress } = opts;
  const pages = new PageReader(src, fileSize, header.pageCount, file);
  const node = Buffer.allocUnsafe(PAGE_SIZE);
  const val = Buffer.allocUnsafe(PAGE_SIZE);
  const treeSeen = new Set<number>();
  const total = header.pageCount * PAGE_SIZE;
  let pagesRead = 0;
  let nextReport = 256;
  let entries = 0;

  const enter = (id: number, what: string, linkAt: number): void => {
    if (treeSeen.has(id))
      throw corrupted(`cycle: ${what} link returns to page ${id}`, linkAt, file);
    treeSeen.add(id);
    pages.read(node, id, PAGE_BTREE, what, linkAt);
    pagesRead++;
  };

  // Leftmost descent: first-child pointers down to the first leaf.
  let id = header.rootPageId;
  enter(id, "B-tree root", 44);
  while (node[16] !== 1) {
    if (node[16] !== 0)
      throw corrupted(`unknown B-tree node kind ${node[16]}`, id * PAGE_SIZE + 16, file);
    const linkAt = id * PAGE_SIZE + 19;
    id = readLink(node, 19, linkAt, file);
    enter(id, "B-tree first-child", linkAt);
  }

  // Leaf chain.
  for (;;) {
    const r = pages.reader(node, id);
    r.pos = 17;
    const count = r.u16("leaf entry_count");
    const nextAt = id * PAGE_SIZE + 19;
    const next = readLink(node, 19, nextAt, file);
    r.pos = NODE_ENTRIES_AT;
    for (let i = 0; i < count; i++) {
      const key = r.bytes(r.u16("leaf key_len"), "leaf key");
      const linkAt = id * PAGE_SIZE + r.pos;
      const valueId = r.u64("leaf value page id");
      pagesRead += readValue(pages, val, valueId, key, linkAt, file, sink);
      entries++;
    }
    if (onProgress !== undefined && pagesRead >= nextReport) {
      onProgress(Math.min(pagesRead * PAGE_SIZE, total), total);
      nextReport = pagesRead + 256;
    }
    if (next === 0) break;
    id = next;
    enter(id, "leaf-chain next", nextAt);
    if (node[16] !== 1)
      throw corrupted(`leaf chain reaches non-leaf page ${id}`, id * PAGE_SIZE + 16, file);
  }
  onProgress?.(Math.min(pagesRead * PAGE_SIZE, total), total);
  return entries;
}

function readLink(page: Buffer, at: number, absAt: number, file: string | undefined): number {
  const v = readU64(page, at);
  if (v < 0) throw corrupted("page link is larger than 2^53", absAt, file);
  return v;
}

/**
 * Reads one value (ValueLeaf + overflow chain) and inserts it under `key` into `sink`. Returns
 * the number of pages it read, for progress.
 */
function readValue(
  pages: PageReader,
  page: Buffer,
  id: number,
  key: Buffer,
  linkAt: number,
  file: string | undefined,
  sink: ReplaySink,
): number {
  pages.read(page, id, PAGE_VALUE_LEAF, "value", linkAt);
  const r = pages.reader(page, id);
  r.pos = PREFIX_SIZE;
  const totalLen = r.u32("value total length");
  r.need(8, "value expires_at");
  const expiresAt = clampExpiry(readU64(page, r.pos));
  r.pos += 8;
  const overflowAt = id * PAGE_SIZE + r.pos;
  let next = r.u64("value overflow link");
  const inlineAt = id * PAGE_SIZE + r.pos;
  const inlineLen = r.u32("value inline length");
  if (inlineLen > VALUE_INLINE_MAX || inlineLen > totalLen) {
    throw corrupted(`value inline length ${inlineLen} (total ${totalLen})`, inlineAt, file);
  }
  // The sink takes key and value as ranges of one buffer: [key][value].
  const k = key.length;
  const entry = Buffer.allocUnsafe(k + totalLen);
  key.copy(entry, 0);
  page.copy(entry, k, VALUE_INLINE_AT, VALUE_INLINE_AT + inlineLen);
  let filled = inlineLen;
  let read = 1;
  let linkFrom = overflowAt;
  let seen: Set<number> | undefined;
  while (next !== 0) {
    seen ??= new Set();
    if (seen.has(next))
      throw corrupted(`cycle: overflow link returns to page ${next}`, linkFrom, file);
    seen.add(next);
    const oid = next;
    pages.read(page, oid, PAGE_OVERFLOW, "overflow", linkFrom);
    read++;
    linkFrom = oid * PAGE_SIZE + 16;
    next = readLink(page, 16, linkFrom, file);
    const chunk = page.readUInt32LE(24);
    if (chunk > OVERFLOW_CHUNK_MAX || chunk > totalLen - filled) {
      throw corrupted(
        `overflow chunk length ${chunk} (value ${totalLen}, ${filled} read)`,
        oid * PAGE_SIZE + 24,
        file,
      );
    }
    page.copy(entry, k + filled, OVERFLOW_CHUNK_AT, OVERFLOW_CHUNK_AT + chunk);
    filled += chunk;
  }
  if (filled !== totalLen) {
    throw corrupted(`value chain holds ${filled} of ${totalLen} bytes`, linkFrom, file);
  }
  sink.insert(entry, 0, k, k, k + totalLen, expiresAt);
  return read;
}

export interface PageFileResult {
  header: PageFileHeader;
  /** Entries read from the tree. */
  pageEntries: number;
  /** End of the valid data in the page file: page_count × 4096 plus the valid legacy tail. */
  validEnd: number;
  /** Replay of the bytes past page_count × 4096, when there are any. */
  tail: ReplayResult | undefined;
  /** Replay of `P.wal`, when it exists. */
  wal: (ReplayResult & { path: string; size: number }) | undefined;
}

export interface PageFileOptions {
  /** Progress per phase: "pages", "legacy-tail", "wal". */
  onProgress?: (
    phase: "pages" | "legacy-tail" | "wal",
    bytesDone: number,
    bytesTotal: number,
  ) => void;
  chunkSize?: number;
}

/**
 * Reads a 0.6 database at `file` into `sink` in the order 0.6's open applies it (§3.6 step 5):
 * the tree's entries, then the legacy tail, then `P.wal`. Both log regions use the replay of
 * §1.6. Neither file is modified.
 */
export function readPageFileV3(
  file: string,
  sink: ReplaySink,
  opts: PageFileOptions = {},
): PageFileResult {
  const main = openReadOnly(file);
  if (main === undefined) throw new EmdbError("EMDB_IO", "page file does not exist", { file });
  try {
    const page0 = Buffer.alloc(Math.min(main.size, PAGE_SIZE));
    main.read(page0, 0, page0.length, 0);
    const header = parsePageHeader(page0, main.size, file);
    const { onProgress } = opts;
    const pageEntries = readPageEntries(main, main.size, header, sink, {
      file,
      ...(onProgress !== undefined ? { onProgress: (d, t) => onProgress("pages", d, t) } : {}),
    });

    const tailStart = header.pageCount * PAGE_SIZE;
    let tail: ReplayResult | undefined;
    if (main.size > tailStart) {
      tail = replayLog(
        main,
        tailStart,
        main.size,
        sink,
        replayOpts(opts, "legacy-tail", main.size - tailStart),
      );
    }
    const validEnd = tail !== undefined ? tail.validEnd : Math.min(main.size, tailStart);

    const walPath = walPathFor(file);
    const walFile = openReadOnly(walPath);
    let wal: PageFileResult["wal"];
    if (walFile !== undefined) {
      try {
        const r = replayLog(walFile, 0, walFile.size, sink, replayOpts(opts, "wal", walFile.size));
        wal = { ...r, path: walPath, size: walFile.size };
      } finally {
        walFile.close();
      }
    }
    return { header, pageEntries, validEnd, tail, wal };
  } finally {
    main.close();
  }
}

function replayOpts(
  opts: PageFileOptions,
  phase: "legacy-tail" | "wal",
  total: number,
): ReplayOptions {
  const out: ReplayOptions = {};
  if (opts.chunkSize !== undefined) out.chunkSize = opts.chunkSize;
  const cb = opts.onProgress;
  if (cb !== undefined) out.onProgress = (done) => cb(phase, done, total);
  return out;
}
