/**
 * The 64-byte header at offset 0 of the WAL sidecar `<path>.wal`.
 *
 * | Offset | Size | Field                                                              |
 * |-------:|-----:|--------------------------------------------------------------------|
 * |      0 |    8 | magic `45 4D 44 42 57 41 4C 00` ("EMDBWAL\0")                      |
 * |      8 |    4 | format version u32 = 1                                             |
 * |     12 |    4 | reserved, written as zero                                          |
 * |     16 |   16 | `fileId` of the page file these records belong to                  |
 * |     32 |    8 | `generation` u64: the page-file checkpoint the records apply on top of |
 * |     40 |   20 | reserved, written as zero                                          |
 * |     60 |    4 | xxh32 (seed 0) of bytes 0..60                                      |
 *
 * Why each field exists:
 * - `fileId` + `generation` bind the WAL to one state of one page file (emdb-rs weakness D15:
 *   its WAL had no header, so a stale sidecar was replayed into whatever file sat beside it).
 * - The checksum doubles as the seed of every record checksum (see `record.ts`), so a record
 *   only validates under the header it was written under.
 * - Magic, version and checksum stay where they are in every future version. The checksum is
 *   checked before the version, so a flipped version byte reads as damage, not as a newer
 *   format; a real newer header still checks out and is reported as a version mismatch.
 * - Reserved bytes are covered by the checksum and ignored on read, so they cannot change
 *   silently and a later version can give them a meaning together with a version bump.
 */
import { xxh32 } from "@node-rs/xxhash";
import { readU64, writeU64 } from "../codec.js";
import { corrupted, EmdbError } from "../errors.js";

export const WAL_MAGIC: Buffer = Buffer.from("EMDBWAL\0", "latin1");
export const WAL_VERSION = 1;
export const WAL_HEADER_SIZE = 64;
export const FILE_ID_SIZE = 16;

const OFF_VERSION = 8;
const OFF_FILE_ID = 16;
const OFF_GENERATION = 32;
const OFF_CHECKSUM = 60;

export interface WalHeader {
  readonly version: number;
  /** 16 bytes; an owned copy. */
  readonly fileId: Buffer;
  readonly generation: number;
  /** xxh32 of bytes 0..60; also the seed of every record checksum under this header. */
  readonly checksum: number;
}

export function encodeWalHeader(fileId: Uint8Array, generation: number): Buffer {
  if (fileId.length !== FILE_ID_SIZE) {
    throw new RangeError(`fileId must be ${FILE_ID_SIZE} bytes, got ${fileId.length}`);
  }
  const buf = Buffer.alloc(WAL_HEADER_SIZE);
  WAL_MAGIC.copy(buf, 0);
  buf.writeUInt32LE(WAL_VERSION, OFF_VERSION);
  buf.set(fileId, OFF_FILE_ID);
  writeU64(buf, generation, OFF_GENERATION);
  buf.writeUInt32LE(xxh32(buf.subarray(0, OFF_CHECKSUM)), OFF_CHECKSUM);
  return buf;
}

/** Whether bytes 60..64 are the checksum of bytes 0..60, whatever the rest says. */
export function walHeaderChecksumOk(buf: Buffer): boolean {
  return (
    buf.length >= WAL_HEADER_SIZE &&
    xxh32(buf.subarray(0, OFF_CHECKSUM)) === buf.readUInt32LE(OFF_CHECKSUM)
  );
}

/**
 * Decodes `buf[0..64]`. Throws `EMDB_CORRUPTED` (offset 0) for a bad magic or checksum and
 * `EMDB_VERSION_MISMATCH` for a checksum-valid header of a version this build does not know.
 */
export function decodeWalHeader(buf: Buffer, file?: string): WalHeader {
  if (buf.length < WAL_HEADER_SIZE) {
    throw corrupted(`WAL header is ${buf.length} bytes, expected ${WAL_HEADER_SIZE}`, 0, file);
  }
  if (!buf.subarray(0, WAL_MAGIC.length).equals(WAL_MAGIC)) {
    throw corrupted("WAL header magic is not EMDBWAL\\0", 0, file);
  }
  // The checksum comes first: a flipped version byte is damage, not a newer format. Every
  // version keeps magic, version and checksum where they are, so a real newer header still
  // checks out and is reported as a version mismatch.
  if (!walHeaderChecksumOk(buf)) throw corrupted("WAL header checksum mismatch", 0, file);
  const version = buf.readUInt32LE(OFF_VERSION);
  if (version !== WAL_VERSION) {
    throw new EmdbError(
      "EMDB_VERSION_MISMATCH",
      `WAL format version ${version} is not supported (this build reads ${WAL_VERSION})`,
      file !== undefined ? { file, offset: OFF_VERSION } : { offset: OFF_VERSION },
    );
  }
  const checksum = buf.readUInt32LE(OFF_CHECKSUM);
  const generation = readU64(buf, OFF_GENERATION);
  if (generation < 0) throw corrupted("WAL header generation is larger than 2^53", 0, file);
  return {
    version,
    fileId: Buffer.from(buf.subarray(OFF_FILE_ID, OFF_FILE_ID + FILE_ID_SIZE)),
    generation,
    checksum,
  };
}
