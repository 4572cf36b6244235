/**
 * The two meta pages. Page 0 is slot A and page 1 is slot B; the commit of generation `g`
 * writes slot `g % 2`, so the previous commit's meta survives any torn meta write.
 *
 * | offset | size | field                                                            |
 * |-------:|-----:|------------------------------------------------------------------|
 * |      0 |    8 | magic, ASCII `EMDBNODE`                                          |
 * |      8 |    4 | format version u32 = 1                                           |
 * |     12 |    4 | page size u32 (a power of two, 512 .. 65536)                     |
 * |     16 |   16 | fileId: random bytes chosen at creation (binds the WAL to file)  |
 * |     32 |    8 | generation u64, +1 per commit; its parity must equal the slot    |
 * |     40 |    8 | root page id u64 (0 = empty tree)                                |
 * |     48 |    8 | page count u64 (pages 0 .. count-1 belong to this generation)    |
 * |     56 |    8 | free-list root page id u64 (0 = no free-list pages)              |
 * |     64 |    8 | free page count u64 (free + pending ids listed in the free-list) |
 * |     72 |    8 | lastTxId u64                                                     |
 * |     80 |    8 | entryCount u64                                                   |
 * |     88 |    8 | createdAt u64 (ms since the Unix epoch)                          |
 * |     96 |    4 | xxh32 of bytes 0 .. 96 (seed 0)                                  |
 * |    100 |    … | zero up to the end of the page                                   |
 *
 * Meta pages have no common page header: byte 0 is the magic, so `file(1)`-style sniffing
 * works. Only the first `META_BYTES` are written by a commit: a smaller write is less likely
 * to be torn, and the checksum covers all of it.
 *
 * The version is checked before the checksum so that a file from a future format (which
 * may checksum differently) reports EMDB_VERSION_MISMATCH rather than corruption.
 */
import { randomBytes } from "node:crypto";
import { xxh32 } from "@node-rs/xxhash";
import { readU64, writeU64 } from "../codec.js";
import { corrupted, EmdbError } from "../errors.js";
import { dirOf, type StorageBackend, type StorageFile } from "./backend.js";
import {
  DEFAULT_PAGE_SIZE,
  isValidPageSize,
  MAX_PAGE_SIZE,
  MIN_PAGE_SIZE,
  NO_PAGE,
} from "./page.js";

export const META_MAGIC = Buffer.from("EMDBNODE", "latin1");
export const FORMAT_VERSION = 1;
export const META_BYTES = 100;
const CHECKSUM_AT = 96;

export interface Meta {
  readonly pageSize: number;
  readonly fileId: Buffer;
  readonly generation: number;
  readonly root: number;
  readonly pageCount: number;
  readonly freelistRoot: number;
  readonly freePageCount: number;
  readonly lastTxId: number;
  readonly entryCount: number;
  readonly createdAt: number;
}

export function metaSlot(generation: number): 0 | 1 {
  return generation % 2 === 0 ? 0 : 1;
}

export function encodeMeta(m: Meta): Buffer {
  const b = Buffer.alloc(META_BYTES);
  META_MAGIC.copy(b, 0);
  b.writeUInt32LE(FORMAT_VERSION, 8);
  b.writeUInt32LE(m.pageSize, 12);
  m.fileId.copy(b, 16, 0, 16);
  writeU64(b, m.generation, 32);
  writeU64(b, m.root, 40);
  writeU64(b, m.pageCount, 48);
  writeU64(b, m.freelistRoot, 56);
  writeU64(b, m.freePageCount, 64);
  writeU64(b, m.lastTxId, 72);
  writeU64(b, m.entryCount, 80);
  writeU64(b, m.createdAt, 88);
  b.writeUInt32LE(xxh32(b.subarray(0, CHECKSUM_AT), 0), CHECKSUM_AT);
  return b;
}

/**
 * Writes `m` into its slot (the one its generation's parity names) and syncs the file;
 * `written` runs between the write and the sync (a failpoint).
 */
export function writeMeta(file: StorageFile, m: Meta, written?: () => void): void {
  const bytes = encodeMeta(m);
  file.write(bytes, 0, bytes.length, metaSlot(m.generation) * m.pageSize);
  written?.();
  file.sync();
}

export type MetaDecode =
  | { readonly ok: true; readonly meta: Meta }
  | {
      readonly ok: false;
      /** `magic`: not an emdb page file; `version`: another format version; `corrupt`: the rest. */
      readonly kind: "magic" | "version" | "corrupt";
      readonly reason: string;
      /** Offset inside the slot where the problem is. */
      readonly at: number;
    };

/** Decodes one meta slot. `bytes` may be shorter than META_BYTES when the file is short. */
export function decodeMeta(bytes: Buffer, slot: 0 | 1): MetaDecode {
  const fail = (kind: "magic" | "version" | "corrupt", reason: string, at: number): MetaDecode => ({
    ok: false,
    kind,
    reason,
    at,
  });
  if (bytes.length < META_MAGIC.length || !bytes.subarray(0, 8).equals(META_MAGIC)) {
    if (bytes.length >= 8 && bytes.subarray(0, 8).every((x) => x === 0)) {
      return fail("corrupt", `meta slot ${slot} is empty`, 0);
    }
    return fail("magic", `meta slot ${slot} has no EMDBNODE magic`, 0);
  }
  if (bytes.length < META_BYTES) return fail("corrupt", `meta slot ${slot} is truncated`, 0);
  const version = bytes.readUInt32LE(8);
  if (version !== FORMAT_VERSION) {
    return fail("version", `meta slot ${slot} has format version ${version}`, 8);
  }
  if (bytes.readUInt32LE(CHECKSUM_AT) !== xxh32(bytes.subarray(0, CHECKSUM_AT), 0)) {
    return fail("corrupt", `meta slot ${slot} checksum mismatch`, CHECKSUM_AT);
  }
  const pageSize = bytes.readUInt32LE(12);
  if (!isValidPageSize(pageSize)) {
    return fail("corrupt", `meta slot ${slot} has invalid page size ${pageSize}`, 12);
  }
  const u64 = [32, 40, 48, 56, 64, 72, 80, 88].map((at) => readU64(bytes, at));
  const bad = u64.findIndex((v) => v < 0);
  if (bad >= 0) return fail("corrupt", `meta slot ${slot} has a u64 above 2^53`, 32 + 8 * bad);
  const [
    generation,
    root,
    pageCount,
    freelistRoot,
    freePageCount,
    lastTxId,
    entryCount,
    createdAt,
  ] = u64 as [number, number, number, number, number, number, number, number];
  if (metaSlot(generation) !== slot) {
    return fail(
      "corrupt",
      `meta slot ${slot} holds generation ${generation} of the other slot`,
      32,
    );
  }
  if (pageCount < 2) return fail("corrupt", `meta slot ${slot} has page count ${pageCount}`, 48);
  if (root !== 0 && (root < 2 || root >= pageCount)) {
    return fail("corrupt", `meta slot ${slot} root ${root} out of range`, 40);
  }
  if (freelistRoot !== 0 && (freelistRoot < 2 || freelistRoot >= pageCount)) {
    return fail("corrupt", `meta slot ${slot} free-list root ${freelistRoot} out of range`, 56);
  }
  if (freePageCount > pageCount) {
    return fail("corrupt", `meta slot ${slot} free page count ${freePageCount} out of range`, 64);
  }
  return {
    ok: true,
    meta: {
      pageSize,
      fileId: Buffer.from(bytes.subarray(16, 32)),
      generation,
      root,
      pageCount,
      freelistRoot,
      freePageCount,
      lastTxId,
      entryCount,
      createdAt,
    },
  };
}

export interface MetaStatus {
  /** The meta the pager opened with: the valid one with the highest generation. */
  readonly chosen: Meta;
  /** The other slot, when it is valid too. */
  readonly other: Meta | undefined;
  /** Why the other slot is not valid. */
  readonly otherError?: string;
}

// ---------------------------------------------------------------------------------------------
// Creating a file and choosing the meta to open with.

/** Whether the file holds no database yet (empty, or zero-filled by a crash at creation). */
export function isBlank(file: StorageFile): boolean {
  const size = file.size();
  if (size === 0) return true;
  // A crash while creating the file can leave it extended but zero-filled; no real page
  // file is all zeros (its meta has a magic), so such a file is treated as new.
  if (size > 2 * MAX_PAGE_SIZE) return false;
  const bytes = Buffer.alloc(size);
  file.read(bytes, 0, size, 0);
  return bytes.every((b) => b === 0);
}

export interface OpenPageFileOptions {
  /** Clock for `createdAt`. */
  readonly now?: (() => number) | undefined;
  /**
   * The file is itself a temporary that its caller renames into place (compaction,
   * migration): a new one is written in place, not through `<path>.create.tmp`.
   */
  readonly temporary?: boolean | undefined;
  /** Crash-test hook between the temporary file and its rename. */
  readonly failpoint?: ((name: "pager:create:tmp-written") => void) | undefined;
}

/**
 * Opens the page file at `path` and picks the meta to open with; a missing or blank file is
 * created first. Creation writes the first meta into `<path>.create.tmp`, syncs it and renames
 * it over `path`, then syncs the directory, so a crash (or power cut) leaves either no
 * database or a complete one, never a torn first meta page that would read as corruption.
 */
export function openPageFile(
  backend: StorageBackend,
  path: string,
  pageSize: number,
  options: OpenPageFileOptions,
): { file: StorageFile; status: MetaStatus } {
  const now = options.now ?? Date.now;
  let file: StorageFile | undefined = backend.open(path, true);
  try {
    if (!isBlank(file)) return { file, status: chooseMeta(file, path, pageSize) };
    let meta: Meta;
    if (options.temporary === true) {
      meta = createMeta(file, pageSize, now);
    } else {
      file.close();
      file = undefined;
      const tmp = `${path}.create.tmp`;
      const t = backend.open(tmp, true);
      try {
        meta = createMeta(t, pageSize, now);
      } finally {
        t.close();
      }
      options.failpoint?.("pager:create:tmp-written");
      backend.rename(tmp, path);
      backend.syncDir(dirOf(path));
      file = backend.open(path, false);
    }
    return {
      file,
      status: { chosen: meta, other: undefined, otherError: "meta slot 1 is empty (new file)" },
    };
  } catch (err) {
    file?.close();
    throw err;
  }
}

/**
 * Writes a new, empty page file: slot A holds generation 0, slot B stays zero (it is reported
 * as empty until the first commit fills it). Synced before returning; the caller syncs the
 * directory entry.
 */
export function createMeta(file: StorageFile, pageSize: number, now: () => number): Meta {
  const meta: Meta = {
    pageSize,
    fileId: randomBytes(16),
    generation: 0,
    root: NO_PAGE,
    pageCount: 2,
    freelistRoot: NO_PAGE,
    freePageCount: 0,
    lastTxId: 0,
    entryCount: 0,
    createdAt: Math.max(0, Math.floor(now())),
  };
  const both = Buffer.alloc(2 * pageSize);
  encodeMeta(meta).copy(both, 0);
  file.truncate(0);
  file.write(both, 0, both.length, 0);
  file.sync();
  return meta;
}

function readAt(file: StorageFile, position: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  const n = file.read(buf, 0, length, position);
  return buf.subarray(0, n);
}

/**
 * Reads both slots and picks the valid one with the highest generation. Slot B is read at
 * slot A's page size; when A is unreadable, every legal page size is tried (the preferred one
 * first) and B must name the page size it was found at. With no valid slot: a format version
 * other than 1 is EMDB_VERSION_MISMATCH, no magic anywhere is EMDB_MAGIC_MISMATCH, anything
 * else EMDB_CORRUPTED.
 */
export function chooseMeta(file: StorageFile, path: string, preferredPageSize: number): MetaStatus {
  const a = decodeMeta(readAt(file, 0, META_BYTES), 0);
  let b: ReturnType<typeof decodeMeta> | undefined;
  let bOffset = 0;
  if (a.ok) {
    bOffset = a.meta.pageSize;
    b = decodeMeta(readAt(file, bOffset, META_BYTES), 1);
    if (b.ok && b.meta.pageSize !== a.meta.pageSize) {
      b = { ok: false, kind: "corrupt", reason: "meta slot 1 disagrees on the page size", at: 12 };
    } else if (b.ok && !b.meta.fileId.equals(a.meta.fileId)) {
      b = { ok: false, kind: "corrupt", reason: "meta slot 1 has another file id", at: 16 };
    }
  } else {
    const sizes = [preferredPageSize, DEFAULT_PAGE_SIZE];
    for (let s = MIN_PAGE_SIZE; s <= MAX_PAGE_SIZE; s *= 2) sizes.push(s);
    for (const size of new Set(sizes)) {
      const r = decodeMeta(readAt(file, size, META_BYTES), 1);
      if (r.ok && r.meta.pageSize !== size) continue;
      if (b === undefined || r.ok) {
        b = r;
        bOffset = size;
      }
      if (r.ok) break;
    }
  }
  if (b === undefined) throw new Error("unreachable");
  if (a.ok && b.ok) {
    const [chosen, other] =
      a.meta.generation > b.meta.generation ? [a.meta, b.meta] : [b.meta, a.meta];
    return { chosen, other };
  }
  if (a.ok && !b.ok) return { chosen: a.meta, other: undefined, otherError: b.reason };
  if (b.ok && !a.ok) return { chosen: b.meta, other: undefined, otherError: a.reason };
  if (a.ok || b.ok) throw new Error("unreachable");
  const reasons = `${a.reason}; ${b.reason}`;
  if (a.kind === "version" || b.kind === "version") {
    throw new EmdbError("EMDB_VERSION_MISMATCH", reasons, {
      file: path,
      offset: a.kind === "version" ? a.at : bOffset + b.at,
    });
  }
  const hasMagic = (at: number) => readAt(file, at, 8).equals(META_MAGIC);
  if (!hasMagic(0) && !hasMagic(bOffset)) {
    throw new EmdbError("EMDB_MAGIC_MISMATCH", reasons, { file: path, offset: 0 });
  }
  throw corrupted(`both meta pages are invalid: ${reasons}`, a.at, path);
}
