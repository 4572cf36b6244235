/**
 * Record framing of the emdb-rs legacy log (v1, v2), the 0.6 "legacy tail" and the 0.6 WAL
 * sidecar (reference §1.2). Read-only: emdb never writes this format.
 *
 * Framing (records packed back to back, no padding):
 *
 * | Offset  | Size | Field                                                        |
 * |---------|------|--------------------------------------------------------------|
 * | 0       | 4    | u32 L, payload length (a record with L < 9 is corrupt)       |
 * | 4       | L    | payload                                                      |
 * | 4 + L   | 4    | u32 CRC-32 (IEEE, `zlib.crc32`) over the L payload bytes only |
 *
 * Payload:
 *
 * | Offset | Size | Field                                                  |
 * |--------|------|--------------------------------------------------------|
 * | 0      | 1    | op kind (table below)                                  |
 * | 1      | 8    | u64 write timestamp (ms); written always, never read   |
 * | 9      | …    | body, by kind                                          |
 *
 * | Kind | Name       | Body                                                                    |
 * |------|------------|-------------------------------------------------------------------------|
 * | 0    | Insert     | u32 klen, key, u32 vlen, value, then u64 expires_at only from ttl builds |
 * | 1    | Remove     | u32 klen, key                                                           |
 * | 2    | Clear      | empty                                                                   |
 * | 3    | Checkpoint | u32 record_count (ignored on replay)                                    |
 * | 4    | BatchBegin | u64 tx_id, u32 op_count                                                 |
 * | 5    | BatchEnd   | u64 tx_id                                                               |
 *
 * The payload must be consumed exactly. emdb-rs decided at compile time whether an Insert has
 * `expires_at`, so a build with the other setting saw every Insert as corrupt (weakness D14).
 * Here it is decided per record from L: 17 + klen + vlen means no field, 25 + klen + vlen means
 * one. Both lengths are explicit in the payload, so the choice is never a guess.
 */
import { crc32 } from "node:zlib";
import { readU64 } from "../src/codec.js";
import { clampExpiry } from "../src/ttl/ttl.js";

/** Local alias: tsx, which runs the tests, compiles each use of an import into a getter call. */
const u64 = readU64;

export const OP_INSERT = 0;
export const OP_REMOVE = 1;
export const OP_CLEAR = 2;
export const OP_CHECKPOINT = 3;
export const OP_BATCH_BEGIN = 4;
export const OP_BATCH_END = 5;

export type OpKind = 0 | 1 | 2 | 3 | 4 | 5;

/** Length field + CRC trailer. */
export const RECORD_OVERHEAD = 8;
/** kind + timestamp: the smallest legal payload (a Clear). */
export const MIN_PAYLOAD = 9;

/**
 * Why a record does not decode. Every one of them is "corruption" to emdb-rs; the replay
 * (legacy-log.ts) decides what to cut. `truncated` is the torn-tail case: the record runs past
 * the end of the data.
 */
export type RecordError =
  | "truncated"
  | "length-too-small"
  | "crc-mismatch"
  | "unknown-kind"
  | "field-overrun"
  | "trailing-bytes"
  | "tx-id-too-large";

export type DecodeStatus = "ok" | RecordError;

/**
 * One decoded record. Offsets point into the buffer that was decoded, so decoding copies
 * nothing; the object is reused from record to record by the replay loop.
 */
export interface LegacyRecord {
  kind: OpKind;
  /** Whole record size in bytes (L + 8). */
  size: number;
  keyStart: number;
  keyEnd: number;
  valueStart: number;
  valueEnd: number;
  /** Insert: absolute expiry in ms, 0 = none (also 0 when the record has no expiry field). */
  expiresAt: number;
  /** Insert: whether the payload carried the `expires_at` field. */
  hasExpiry: boolean;
  /** BatchBegin / BatchEnd. */
  txId: number;
  /** BatchBegin: op_count. Checkpoint: record_count. */
  count: number;
}

export function newRecord(): LegacyRecord {
  return {
    kind: 0,
    size: 0,
    keyStart: 0,
    keyEnd: 0,
    valueStart: 0,
    valueEnd: 0,
    expiresAt: 0,
    hasExpiry: false,
    txId: 0,
    count: 0,
  };
}

/**
 * Decodes the record starting at `buf[pos]`, where `end` is the end of the available data.
 * Returns "ok" and fills `out`, or the reason it does not decode. Never throws, so the replay
 * can tell a torn tail from a corrupt record and cut at the right place.
 */
export function decodeRecord(
  buf: Buffer,
  pos: number,
  end: number,
  out: LegacyRecord,
): DecodeStatus {
  if (end - pos < RECORD_OVERHEAD) return "truncated";
  const len = buf.readUInt32LE(pos);
  if (len < MIN_PAYLOAD) return "length-too-small";
  const p0 = pos + 4;
  const pEnd = p0 + len;
  if (pEnd + 4 > end) return "truncated";
  // A plain Uint8Array view is cheaper to make than a Buffer subarray, once per record.
  if (crc32(new Uint8Array(buf.buffer, buf.byteOffset + p0, len)) !== buf.readUInt32LE(pEnd)) {
    return "crc-mismatch";
  }

  const kind = buf[p0]!;
  let p = p0 + 9;
  switch (kind) {
    case OP_INSERT:
    case OP_REMOVE: {
      // Both bodies open with the same u32-length key.
      if (p + 4 > pEnd) return "field-overrun";
      const klen = buf.readUInt32LE(p);
      p += 4;
      if (klen > pEnd - p) return "field-overrun";
      out.keyStart = p;
      p += klen;
      out.keyEnd = p;
      if (kind === OP_REMOVE) {
        if (p !== pEnd) return "trailing-bytes";
        break;
      }
      if (p + 4 > pEnd) return "field-overrun";
      const vlen = buf.readUInt32LE(p);
      p += 4;
      if (vlen > pEnd - p) return "field-overrun";
      out.valueStart = p;
      p += vlen;
      out.valueEnd = p;
      const rest = pEnd - p;
      if (rest === 0) {
        out.hasExpiry = false;
        out.expiresAt = 0;
      } else if (rest === 8) {
        out.hasExpiry = true;
        const e = u64(buf, p);
        out.expiresAt = clampExpiry(e);
      } else {
        return rest < 8 ? "field-overrun" : "trailing-bytes";
      }
      break;
    }
    case OP_CLEAR:
      if (p !== pEnd) return "trailing-bytes";
      break;
    case OP_CHECKPOINT:
      if (p + 4 > pEnd) return "field-overrun";
      out.count = buf.readUInt32LE(p);
      if (p + 4 !== pEnd) return "trailing-bytes";
      break;
    case OP_BATCH_BEGIN:
    case OP_BATCH_END: {
      const want = kind === OP_BATCH_BEGIN ? 12 : 8;
      if (p + want > pEnd) return "field-overrun";
      if (p + want !== pEnd) return "trailing-bytes";
      // tx ids are compared for equality, so one that a JS number cannot hold exactly is
      // reported rather than rounded (emdb-rs counts them up from 1; 2^53 is unreachable).
      const tx = u64(buf, p);
      if (tx < 0) return "tx-id-too-large";
      out.txId = tx;
      if (kind === OP_BATCH_BEGIN) out.count = buf.readUInt32LE(p + 8);
      break;
    }
    default:
      return "unknown-kind";
  }
  out.kind = kind as OpKind;
  out.size = len + RECORD_OVERHEAD;
  return "ok";
}
