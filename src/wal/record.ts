/**
 * One WAL record: what `WalWriter` appends and `replayWal` decodes. Records follow the header
 * back to back, with no alignment or padding.
 *
 * Frame (`L` = body length; a record occupies `L + 17` bytes):
 *
 * | Offset | Size | Field                                                        |
 * |-------:|-----:|--------------------------------------------------------------|
 * |      0 |    4 | `L` u32                                                      |
 * |      4 |    8 | `lsn` u64: 1 for the first record after a reset, then +1     |
 * |     12 |    1 | `kind` u8 (table below)                                      |
 * |     13 |    L | body                                                         |
 * | 13 + L |    4 | checksum u32 = xxh32(bytes 0 .. 13+L, seed = header checksum) |
 *
 * Bodies:
 *
 * | Kind | Name       | Body                                                           | L          |
 * |-----:|------------|----------------------------------------------------------------|------------|
 * |    1 | Put        | u16 keyLen, key, u64 expiresAt (Unix ms, 0 = never), u32 valueLen, value | 14 + k + v |
 * |    2 | Delete     | u16 keyLen, key                                                | 2 + k      |
 * |    3 | Clear      | (empty)                                                        | 0          |
 * |    4 | BatchBegin | u64 txId, u32 opCount                                          | 12         |
 * |    5 | BatchEnd   | u64 txId, u32 opCount                                          | 12         |
 * |    6 | Synced     | u64 upTo: the last LSN synced before this record was written   | 8          |
 *
 * Why it looks like this (compare emdb-rs, reference §1.2 and §9.2):
 * - The checksum covers the length too, so a damaged length cannot send the reader to a
 *   wrong but checksum-valid place.
 * - The checksum is seeded with the header checksum, which hashes `fileId` and `generation`:
 *   a record validates only under the header it was written under, so stale records left
 *   after a header for another generation can never replay (D15).
 * - The LSN makes reordered, repeated or missing records detectable, and lets the replay tell
 *   a torn tail (nothing valid follows) from damage in the middle (a later LSN decodes).
 * - One layout for every build: `expiresAt` is always present (D14); no write timestamp (P14).
 * - BatchEnd repeats the opCount so a batch is checked from both ends.
 * - Synced records let the replay tell damage from a power loss. A power loss can keep any
 *   subset of the bytes written since the last fdatasync, not only a prefix (the disk's
 *   cache writes sectors back in any order), so a hole followed by valid records is no proof
 *   of damage by itself. It is when a later Synced record says the hole's LSN had been synced.
 *   The writer puts one before the first record it appends after each fdatasync (or open),
 *   and one at the end of each sync's write (see `writer.ts`).
 * - Kind 0 is unused so a zero-filled region never frames a record.
 * - Keys are capped at 1024 bytes and values at 256 MiB; a decoder rejects anything larger,
 *   which also bounds what a damaged length field can make the reader allocate.
 */
import { xxh32 } from "@node-rs/xxhash";
import { ByteReader, writeU64 } from "../codec.js";
import { corrupted } from "../errors.js";
import { MAX_KEY_SIZE, MAX_VALUE_SIZE } from "../keys.js";

/** Largest key the WAL stores: the engine's own limit (the u16 length field holds it). */
export const WAL_MAX_KEY_BYTES = MAX_KEY_SIZE;
/** Largest value the WAL stores: the engine's own limit. */
export const WAL_MAX_VALUE_BYTES = MAX_VALUE_SIZE;

/** Bytes before the body: length, lsn, kind. */
export const RECORD_PREFIX_SIZE = 13;
/** Prefix plus the trailing checksum: the size of an empty-bodied record. */
export const RECORD_OVERHEAD = 17;
/** Body of a Put without its key and value. */
const PUT_FIXED = 14;
const BATCH_BODY = 12;
const SYNCED_BODY = 8;
export const MAX_BODY_LENGTH = PUT_FIXED + WAL_MAX_KEY_BYTES + WAL_MAX_VALUE_BYTES;
/** How many bytes from a record's start the frame check may need to look at. */
export const FRAME_LOOKAHEAD = RECORD_PREFIX_SIZE + PUT_FIXED + WAL_MAX_KEY_BYTES;

export const KIND_PUT = 1;
export const KIND_DELETE = 2;
export const KIND_CLEAR = 3;
export const KIND_BATCH_BEGIN = 4;
export const KIND_BATCH_END = 5;
export const KIND_SYNCED = 6;

/** A data operation. Keys are latin1 strings: one char per key byte. */
export type WalDataOp =
  | { kind: "put"; key: string; value: Buffer; expiresAt: number }
  | { kind: "delete"; key: string }
  | { kind: "clear" };

export type WalEntry =
  | WalDataOp
  | { kind: "batch-begin"; txId: number; opCount: number }
  | { kind: "batch-end"; txId: number; opCount: number }
  | { kind: "synced"; upTo: number };

export interface WalRecord {
  lsn: number;
  entry: WalEntry;
}

// `latin1Write` exists on every Node Buffer but is missing from @types/node; it encodes a
// string straight into the buffer without the encoding dispatch of `buf.write`.
interface Latin1Buffer extends Buffer {
  latin1Write(value: string, offset: number, length: number): number;
}

const TWO_32 = 0x1_0000_0000;

function writePrefix(buf: Buffer, p: number, bodyLength: number, lsn: number, kind: number): void {
  buf.writeUInt32LE(bodyLength, p);
  buf.writeUInt32LE(lsn % TWO_32, p + 4);
  buf.writeUInt32LE(Math.floor(lsn / TWO_32), p + 8);
  buf[p + 12] = kind;
}

function writeKey(buf: Buffer, p: number, key: Uint8Array | string): number {
  buf.writeUInt16LE(key.length, p);
  if (typeof key === "string") (buf as Latin1Buffer).latin1Write(key, p + 2, key.length);
  else buf.set(key, p + 2);
  return p + 2 + key.length;
}

/** Appends the checksum over `buf[start..end]`; returns the record's end. */
function seal(buf: Buffer, start: number, end: number, seed: number): number {
  buf.writeUInt32LE(xxh32(buf.subarray(start, end), seed), end);
  return end + 4;
}

/** Encoded size of a Put record. */
export function putRecordSize(keyLength: number, valueLength: number): number {
  return RECORD_OVERHEAD + PUT_FIXED + keyLength + valueLength;
}

export function deleteRecordSize(keyLength: number): number {
  return RECORD_OVERHEAD + 2 + keyLength;
}

export const CLEAR_RECORD_SIZE = RECORD_OVERHEAD;
export const BATCH_RECORD_SIZE = RECORD_OVERHEAD + BATCH_BODY;
export const SYNCED_RECORD_SIZE = RECORD_OVERHEAD + SYNCED_BODY;

/**
 * Writes everything of a Put record that precedes the value; returns where the value goes.
 * Lengths are the caller's to check. Throws RangeError (before writing) for a bad expiresAt.
 */
export function writePutHead(
  buf: Buffer,
  p: number,
  lsn: number,
  key: Uint8Array | string,
  valueLength: number,
  expiresAt: number,
): number {
  const kl = key.length;
  writeU64(buf, expiresAt, p + RECORD_PREFIX_SIZE + 2 + kl);
  writePrefix(buf, p, PUT_FIXED + kl + valueLength, lsn, KIND_PUT);
  const q = writeKey(buf, p + RECORD_PREFIX_SIZE, key) + 8;
  buf.writeUInt32LE(valueLength, q);
  return q + 4;
}

/** Encodes a Put at `buf[p..]`; returns the record's end. `buf` must have room. */
export function encodePut(
  buf: Buffer,
  p: number,
  lsn: number,
  key: Uint8Array | string,
  value: Uint8Array | string,
  expiresAt: number,
  seed: number,
): number {
  const q = writePutHead(buf, p, lsn, key, value.length, expiresAt);
  if (typeof value === "string") (buf as Latin1Buffer).latin1Write(value, q, value.length);
  else buf.set(value, q);
  return seal(buf, p, q + value.length, seed);
}

export function encodeDelete(
  buf: Buffer,
  p: number,
  lsn: number,
  key: Uint8Array | string,
  seed: number,
): number {
  writePrefix(buf, p, 2 + key.length, lsn, KIND_DELETE);
  return seal(buf, p, writeKey(buf, p + RECORD_PREFIX_SIZE, key), seed);
}

export function encodeClear(buf: Buffer, p: number, lsn: number, seed: number): number {
  writePrefix(buf, p, 0, lsn, KIND_CLEAR);
  return seal(buf, p, p + RECORD_PREFIX_SIZE, seed);
}

export function encodeBatchMarker(
  buf: Buffer,
  p: number,
  lsn: number,
  kind: typeof KIND_BATCH_BEGIN | typeof KIND_BATCH_END,
  txId: number,
  opCount: number,
  seed: number,
): number {
  writeU64(buf, txId, p + RECORD_PREFIX_SIZE);
  if (!Number.isInteger(opCount) || opCount < 0 || opCount >= TWO_32) {
    throw new RangeError(`opCount out of range: ${opCount}`);
  }
  writePrefix(buf, p, BATCH_BODY, lsn, kind);
  buf.writeUInt32LE(opCount, p + RECORD_PREFIX_SIZE + 8);
  return seal(buf, p, p + RECORD_PREFIX_SIZE + BATCH_BODY, seed);
}

/** Encodes a Synced record saying that every record up to LSN `upTo` is durable. */
export function encodeSynced(
  buf: Buffer,
  p: number,
  lsn: number,
  upTo: number,
  seed: number,
): number {
  writeU64(buf, upTo, p + RECORD_PREFIX_SIZE);
  writePrefix(buf, p, SYNCED_BODY, lsn, KIND_SYNCED);
  return seal(buf, p, p + RECORD_PREFIX_SIZE + SYNCED_BODY, seed);
}

/** Encodes one entry as a standalone record (tests and tools; the writer encodes in place). */
export function encodeRecord(lsn: number, entry: WalEntry, seed: number): Buffer {
  switch (entry.kind) {
    case "put": {
      const buf = Buffer.alloc(putRecordSize(entry.key.length, entry.value.length));
      encodePut(buf, 0, lsn, entry.key, entry.value, entry.expiresAt, seed);
      return buf;
    }
    case "delete": {
      const buf = Buffer.alloc(deleteRecordSize(entry.key.length));
      encodeDelete(buf, 0, lsn, entry.key, seed);
      return buf;
    }
    case "clear": {
      const buf = Buffer.alloc(CLEAR_RECORD_SIZE);
      encodeClear(buf, 0, lsn, seed);
      return buf;
    }
    case "batch-begin":
    case "batch-end": {
      const buf = Buffer.alloc(BATCH_RECORD_SIZE);
      const kind = entry.kind === "batch-begin" ? KIND_BATCH_BEGIN : KIND_BATCH_END;
      encodeBatchMarker(buf, 0, lsn, kind, entry.txId, entry.opCount, seed);
      return buf;
    }
    case "synced": {
      const buf = Buffer.alloc(SYNCED_RECORD_SIZE);
      encodeSynced(buf, 0, lsn, entry.upTo, seed);
      return buf;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/** Whether the checksum of the record occupying exactly `buf[start..end]` matches. */
export function recordChecksumOk(buf: Buffer, start: number, end: number, seed: number): boolean {
  return xxh32(buf.subarray(start, end - 4), seed) === buf.readUInt32LE(end - 4);
}

/**
 * Decodes the record that occupies exactly `buf[start..end]`, checksum included. Throws
 * `EMDB_CORRUPTED` naming the absolute offset (`base + start` for frame errors) when the
 * bytes are not exactly one valid record. `value` is a view into `buf`, not a copy.
 */
export function decodeRecord(
  buf: Buffer,
  start: number,
  end: number,
  seed: number,
  base = 0,
  file?: string,
): WalRecord {
  const size = end - start;
  if (size < RECORD_OVERHEAD) {
    throw corrupted(`record is ${size} bytes, shorter than a record frame`, base + start, file);
  }
  const claimed = RECORD_OVERHEAD + buf.readUInt32LE(start);
  if (claimed > size) {
    throw corrupted(`record length ${claimed} runs past the end of its data`, base + start, file);
  }
  if (claimed < size) {
    throw corrupted(`${size - claimed} trailing bytes after the record`, base + claimed, file);
  }
  if (!recordChecksumOk(buf, start, end, seed)) {
    throw corrupted("record checksum mismatch", base + start, file);
  }
  return decodeVerifiedRecord(buf, start, end, base, file);
}

/**
 * Decodes the fields of a record whose frame and checksum are already verified. Any error here
 * means bytes our writer could not have produced under a valid checksum.
 */
export function decodeVerifiedRecord(
  buf: Buffer,
  start: number,
  end: number,
  base = 0,
  file?: string,
): WalRecord {
  const r: ByteReader = new ByteReader(buf, start + 4, end - 4, base, file);
  const lsn = r.u64("lsn");
  const kind = r.u8("kind");
  let entry: WalEntry;
  switch (kind) {
    case KIND_PUT: {
      const key = readKey(r);
      const expiresAt = r.u64("expiresAt");
      const valueLength = r.u32("value length");
      if (valueLength > WAL_MAX_VALUE_BYTES) r.fail(`value length ${valueLength} over the maximum`);
      entry = { kind: "put", key, value: r.bytes(valueLength, "value"), expiresAt };
      break;
    }
    case KIND_DELETE:
      entry = { kind: "delete", key: readKey(r) };
      break;
    case KIND_CLEAR:
      entry = { kind: "clear" };
      break;
    case KIND_BATCH_BEGIN:
    case KIND_BATCH_END: {
      const txId = r.u64("txId");
      const opCount = r.u32("opCount");
      entry = { kind: kind === KIND_BATCH_BEGIN ? "batch-begin" : "batch-end", txId, opCount };
      break;
    }
    case KIND_SYNCED: {
      const upTo = r.u64("upTo");
      if (upTo < 1 || upTo >= lsn) r.fail(`Synced record (LSN ${lsn}) names LSN ${upTo}`);
      entry = { kind: "synced", upTo };
      break;
    }
    default:
      r.fail(`unknown record kind ${kind}`, start + 12);
  }
  if (r.remaining !== 0) r.fail(`${r.remaining} trailing bytes in the record body`);
  return { lsn, entry };
}

function readKey(r: ByteReader): string {
  const keyLength = r.u16("key length");
  if (keyLength > WAL_MAX_KEY_BYTES) r.fail(`key length ${keyLength} over the maximum`);
  r.need(keyLength, "key");
  const key = r.buf.toString("latin1", r.pos, r.pos + keyLength);
  r.pos += keyLength;
  return key;
}

/**
 * Judges, from its fixed fields only (no checksum), whether `buf[p..p+avail]` starts a record
 * our writer could have written with an LSN in `[minLsn, maxLsn]`. Returns the record's total
 * size, or -1. Needs `min(avail, FRAME_LOOKAHEAD)` readable bytes. Used by the replay's forward
 * scan, which calls it at every byte offset and must reject garbage in O(1).
 */
export function plausibleFrame(
  buf: Buffer,
  p: number,
  avail: number,
  minLsn: number,
  maxLsn: number,
): number {
  if (avail < RECORD_OVERHEAD) return -1;
  const kind = buf[p + 12]!;
  if (kind < KIND_PUT || kind > KIND_SYNCED) return -1;
  const lsn = buf.readUInt32LE(p + 8) * TWO_32 + buf.readUInt32LE(p + 4);
  if (lsn < minLsn || lsn > maxLsn) return -1;
  const bodyLength = buf.readUInt32LE(p);
  const total = RECORD_OVERHEAD + bodyLength;
  if (bodyLength > MAX_BODY_LENGTH || total > avail) return -1;
  const b = p + RECORD_PREFIX_SIZE;
  switch (kind) {
    case KIND_PUT: {
      if (bodyLength < PUT_FIXED) return -1;
      const keyLength = buf.readUInt16LE(b);
      if (keyLength > WAL_MAX_KEY_BYTES || PUT_FIXED + keyLength > bodyLength) return -1;
      const valueLength = buf.readUInt32LE(b + 2 + keyLength + 8);
      return valueLength === bodyLength - PUT_FIXED - keyLength ? total : -1;
    }
    case KIND_DELETE: {
      if (bodyLength < 2) return -1;
      const keyLength = buf.readUInt16LE(b);
      return keyLength <= WAL_MAX_KEY_BYTES && bodyLength === 2 + keyLength ? total : -1;
    }
    case KIND_CLEAR:
      return bodyLength === 0 ? total : -1;
    case KIND_SYNCED:
      return bodyLength === SYNCED_BODY ? total : -1;
    default:
      return bodyLength === BATCH_BODY ? total : -1;
  }
}
