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
import { xxh32 } from "@node-rs/xxhash";
import { readU64, writeU64 } from "../codec.js";
import { isValidPageSize } from "./page.js";

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
