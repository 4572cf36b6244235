/**
 * The emdb-rs legacy log (format v1 from 0.3, v2 from 0.4/0.5; reference §1.1, §1.3) and the
 * batch-aware replay of §1.6, which 0.6 also runs over the page file's legacy tail and the WAL.
 *
 * Header, 64 bytes at offset 0, no checksum; records (legacy-record.ts) start at byte 64:
 *
 * | Offset | Size | Field                                                                 |
 * |--------|------|-----------------------------------------------------------------------|
 * | 0      | 8    | magic `45 4D 44 42 00 00 00 00` ("EMDB" + 4 NUL)                       |
 * | 8      | 4    | u32 format version: 1 (0.3 writers) or 2 (0.4/0.5 writers)            |
 * | 12     | 4    | u32 feature flags: bit 0 ttl, bit 1 nested                            |
 * | 16     | 8    | u64 created_at (ms)                                                   |
 * | 24     | 8    | reserved, zero                                                        |
 * | 32     | 8    | u64 last_tx_id (0.4/0.5 rewrite it in place even under a v1 header)   |
 * | 40     | 24   | reserved, zero                                                        |
 *
 * The replay only ever reads. emdb-rs truncated the file at the cut point; here the cut point is
 * reported (`validEnd`, `stoppedAt`) and the source is left exactly as it was, so a migration
 * that fails can always start again from the untouched original.
 */
import { constants as bufferConstants } from "node:buffer";
import { readU64 } from "../src/codec.js";
import { corrupted, EmdbError } from "../src/errors.js";
import {
  type DecodeStatus,
  decodeRecord,
  type LegacyRecord,
  newRecord,
  OP_BATCH_BEGIN,
  OP_BATCH_END,
  OP_CHECKPOINT,
  OP_CLEAR,
  OP_INSERT,
  OP_REMOVE,
  type OpKind,
  RECORD_OVERHEAD,
  type RecordError,
} from "./legacy-record.js";

// Module-local copies of what the replay loop touches per record: tsx, which runs the tests
// and benchmarks, compiles every use of an imported binding into a getter call.
const decode = decodeRecord;
const INSERT = OP_INSERT;
const REMOVE = OP_REMOVE;
const CLEAR = OP_CLEAR;
const CHECKPOINT = OP_CHECKPOINT;
const BATCH_BEGIN = OP_BATCH_BEGIN;
const BATCH_END = OP_BATCH_END;
const OVERHEAD = RECORD_OVERHEAD;
const MAX_BUFFER = bufferConstants.MAX_LENGTH;

export const LOG_MAGIC = Buffer.from([0x45, 0x4d, 0x44, 0x42, 0, 0, 0, 0]);
export const LOG_HEADER_SIZE = 64;
export const FLAG_TTL = 1;
export const FLAG_NESTED = 2;

export interface LegacyLogHeader {
  version: 1 | 2;
  flags: number;
  lastTxId: number;
}

/** The subset of `StorageFile` the readers need; opened read-only by the caller. */
export interface PositionalReader {
  /** Reads up to `length` bytes at `position` into `buf[offset..]`; returns the count read. */
  read(buf: Buffer, offset: number, length: number, position: number): number;
}

/**
 * Validates the 64-byte header. `head` holds the first bytes of the file (all of them when the
 * file is shorter than 64). Checks run in the order magic, version, length, so a short file
 * with a foreign magic is a magic mismatch rather than "corrupted".
 */
export function parseLogHeader(head: Buffer, file?: string): LegacyLogHeader {
  if (head.length < 8 || !head.subarray(0, 8).equals(LOG_MAGIC)) {
    throw new EmdbError("EMDB_MAGIC_MISMATCH", "not an emdb-rs log (bad magic)", fileOpt(file));
  }
  if (head.length < 12) throw corrupted("emdb-rs log header is truncated", head.length, file);
  const version = head.readUInt32LE(8);
  if (version !== 1 && version !== 2) {
    throw new EmdbError(
      "EMDB_VERSION_MISMATCH",
      `emdb-rs log format version ${version} (expected 1 or 2)`,
      fileOpt(file),
    );
  }
  if (head.length < LOG_HEADER_SIZE) {
    throw corrupted("emdb-rs log header is truncated", head.length, file);
  }
  const lastTxId = readU64(head, 32);
  if (lastTxId < 0) throw corrupted("last_tx_id is larger than 2^53", 32, file);
  return { version, flags: head.readUInt32LE(12), lastTxId };
}

function fileOpt(file: string | undefined): { file?: string } {
  return file !== undefined ? { file } : {};
}

// ---------------------------------------------------------------------------------------------
// Replay (§1.6)

/**
 * Receives the ops the replay emits, in order. Bytes are passed as ranges of `buf` rather than
 * as views because a view per key and value costs more than the rest of the decoding. They
 * stay valid until the replay calls `detach(buf)`, just before it reuses that buffer; a sink
 * without `detach` must copy what it keeps during the call.
 */
export interface ReplaySink {
  /** Key `buf[keyStart, keyEnd)`, value `buf[valueStart, valueEnd)` with `keyEnd <= valueStart`. */
  insert(
    buf: Buffer,
    keyStart: number,
    keyEnd: number,
    valueStart: number,
    valueEnd: number,
    expiresAt: number,
  ): void;
  remove(buf: Buffer, keyStart: number, keyEnd: number): void;
  clear(): void;
  /** `buf` is about to be overwritten: copy out whatever is still needed from it. */
  detach?(buf: Buffer): void;
}

export type StopReason =
  | RecordError
  /** BatchBegin while a batch is open: cut at the open batch. */
  | "nested-batch"
  /** BatchEnd with no open batch: cut at the BatchEnd. */
  | "orphan-batch-end"
  /** BatchEnd whose tx_id differs from its BatchBegin: cut at the batch. */
  | "batch-tx-mismatch"
  /** BatchEnd after a different number of ops than BatchBegin declared: cut at the batch. */
  | "batch-count-mismatch"
  /** Data ends inside a batch: cut at the batch. */
  | "unterminated-batch";

export interface ReplayStop {
  /** Absolute offset where the valid prefix ends (where emdb-rs would have truncated). */
  offset: number;
  reason: StopReason;
  /** Absolute offset of the record that made the replay stop (the end of data for "unterminated-batch"). */
  recordOffset: number;
  detail: string;
}

export interface ReplayResult {
  /** Absolute offset where the valid prefix ends; equals the end of data when nothing was cut. */
  validEnd: number;
  stoppedAt: ReplayStop | undefined;
  /** Insert/Remove/Clear ops handed to the sink. */
  applied: number;
  /** Complete batches applied. */
  batches: number;
  /** Largest tx_id of a valid BatchEnd, 0 if none. */
  maxBatchTxId: number;
}

export interface ReplayOptions {
  /** Bytes read per positional read (default 1 MiB). A record larger than this is read whole. */
  chunkSize?: number;
  /** Called about once per chunk with the bytes consumed since `start`. */
  onProgress?: (bytesDone: number) => void;
}

const DEFAULT_CHUNK = 1 << 20;

/** An op held inside an open batch: a copy of its key..value bytes, offsets relative to it. */
interface BufferedOp {
  kind: OpKind;
  bytes: Buffer;
  keyEnd: number;
  valueStart: number;
  expiresAt: number;
}

const NO_BYTES = Buffer.alloc(0);
const CHECKPOINT_OP: BufferedOp = {
  kind: CHECKPOINT,
  bytes: NO_BYTES,
  keyEnd: 0,
  valueStart: 0,
  expiresAt: 0,
};

/**
 * A window over the file that slides forward. A record that straddles two chunks is moved to
 * the front and completed by the next read, so memory stays one chunk (or one record) wide.
 */
class Window {
  buf: Buffer;
  /** File offset of `buf[0]`. */
  base: number;
  /** Valid bytes in `buf`. */
  len = 0;

  constructor(
    private readonly src: PositionalReader,
    private readonly chunk: number,
    start: number,
    /** End of the data; lowered if the file turns out shorter than announced. */
    public end: number,
    /** Called with the buffer before its bytes are overwritten. */
    private readonly detach: ((buf: Buffer) => void) | undefined,
  ) {
    this.buf = Buffer.allocUnsafe(Math.min(chunk, Math.max(end - start, 0)));
    this.base = start;
  }

  /** Makes `[pos, pos + n)` resident (or as much of it as the file has); returns its local end. */
  ensure(pos: number, n: number): number {
    let local = pos - this.base;
    if (local + n <= this.len) return local + n;
    const keep = this.len - local;
    this.detach?.(this.buf);
    if (n > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(n, this.chunk));
      this.buf.copy(grown, 0, local, this.len);
      this.buf = grown;
    } else if (keep > 0) {
      this.buf.copy(this.buf, 0, local, this.len);
    }
    this.base = pos;
    this.len = keep;
    local = 0;
    const want = Math.min(this.buf.length, this.end - this.base);
    while (this.len < want) {
      const got = this.src.read(this.buf, this.len, want - this.len, this.base + this.len);
      if (got === 0) {
        this.end = this.base + this.len;
        break;
      }
      this.len += got;
    }
    return Math.min(n, this.len);
  }
}

/**
 * Replays the records in `[start, end)` of `src` into `sink` with the batch rules of §1.6:
 * ops outside a batch are applied at once; ops inside one are held until a matching BatchEnd.
 * The replay stops at the first undecodable record or inconsistent batch marker and reports
 * where the valid prefix ends: at the open batch's BatchBegin if one is open, otherwise at the
 * offending record. Everything after that point is ignored, valid or not, as in emdb-rs.
 */
export function replayLog(
  src: PositionalReader,
  start: number,
  end: number,
  sink: ReplaySink,
  opts: ReplayOptions = {},
): ReplayResult {
  const chunk = Math.max(opts.chunkSize ?? DEFAULT_CHUNK, 64);
  const win = new Window(src, chunk, start, end, sink.detach?.bind(sink));
  const rec: LegacyRecord = newRecord();
  const onProgress = opts.onProgress;
  let nextReport = start + chunk;

  let batch: { txId: number; count: number; start: number; ops: BufferedOp[] } | undefined;
  let stop: ReplayStop | undefined;
  let applied = 0;
  let batches = 0;
  let maxBatchTxId = 0;
  let pos = start;

  const stopAt = (offset: number, reason: StopReason, recordOffset: number, detail: string) => {
    stop = { offset, reason, recordOffset, detail };
  };

  while (pos < win.end) {
    const avail = win.end - pos;
    let status: DecodeStatus;
    const headEnd = avail < OVERHEAD ? 0 : win.ensure(pos, OVERHEAD);
    if (headEnd - (pos - win.base) < OVERHEAD) {
      status = "truncated";
    } else {
      // Ask for the whole record only when the file can hold it; a wild length from a torn
      // or corrupt record is then reported as "truncated" without allocating for it.
      const full = win.buf.readUInt32LE(pos - win.base) + OVERHEAD;
      if (full <= avail && full > MAX_BUFFER) {
        throw new EmdbError("EMDB_VALUE_TOO_LARGE", `legacy record of ${full} bytes`, {
          offset: pos,
        });
      }
      const localEnd = win.ensure(pos, full <= avail ? full : OVERHEAD);
      status = decode(win.buf, pos - win.base, localEnd, rec);
    }
    if (status !== "ok") {
      const cut = batch !== undefined ? batch.start : pos;
      stopAt(cut, status, pos, `${status} record at offset ${pos}${inBatch(batch)}`);
      break;
    }
    const buf = win.buf;

    switch (rec.kind) {
      case BATCH_BEGIN:
        if (batch !== undefined) {
          stopAt(batch.start, "nested-batch", pos, `BatchBegin tx ${rec.txId}${inBatch(batch)}`);
        } else {
          batch = { txId: rec.txId, count: rec.count, start: pos, ops: [] };
        }
        break;
      case BATCH_END:
        if (batch === undefined) {
          stopAt(pos, "orphan-batch-end", pos, `BatchEnd tx ${rec.txId} with no open batch`);
        } else if (rec.txId !== batch.txId) {
          stopAt(batch.start, "batch-tx-mismatch", pos, `BatchEnd tx ${rec.txId}${inBatch(batch)}`);
        } else if (batch.ops.length !== batch.count) {
          stopAt(
            batch.start,
            "batch-count-mismatch",
            pos,
            `${batch.ops.length} ops, BatchBegin declared ${batch.count}${inBatch(batch)}`,
          );
        } else {
          for (const op of batch.ops) {
            applied += emit(
              sink,
              op.kind,
              op.bytes,
              0,
              op.keyEnd,
              op.valueStart,
              op.bytes.length,
              op.expiresAt,
            );
          }
          if (batch.txId > maxBatchTxId) maxBatchTxId = batch.txId;
          batches++;
          batch = undefined;
        }
        break;
      case CHECKPOINT:
        // Changes nothing, but inside a batch it is one of the declared ops.
        if (batch !== undefined) batch.ops.push(CHECKPOINT_OP);
        break;
      default: {
        const { keyStart, keyEnd } = rec;
        // Remove has no value: its value range is the empty range at the key's end.
        const valueStart = rec.kind === INSERT ? rec.valueStart : keyEnd;
        const valueEnd = rec.kind === INSERT ? rec.valueEnd : keyEnd;
        if (batch !== undefined) {
          // The window is reused, so a held op owns a copy of its bytes.
          batch.ops.push({
            kind: rec.kind,
            bytes: Buffer.from(buf.subarray(keyStart, valueEnd)),
            keyEnd: keyEnd - keyStart,
            valueStart: valueStart - keyStart,
            expiresAt: rec.expiresAt,
          });
        } else {
          applied += emit(
            sink,
            rec.kind,
            buf,
            keyStart,
            keyEnd,
            valueStart,
            valueEnd,
            rec.expiresAt,
          );
        }
      }
    }
    if (stop !== undefined) break;
    pos += rec.size;
    if (onProgress !== undefined && pos >= nextReport) {
      onProgress(pos - start);
      nextReport = pos + chunk;
    }
  }

  if (stop === undefined && batch !== undefined) {
    stopAt(batch.start, "unterminated-batch", pos, `data ends${inBatch(batch)}`);
  }
  const validEnd = stop !== undefined ? (stop as ReplayStop).offset : pos;
  onProgress?.(validEnd - start);
  return { validEnd, stoppedAt: stop, applied, batches, maxBatchTxId };
}

function emit(
  sink: ReplaySink,
  kind: OpKind,
  buf: Buffer,
  keyStart: number,
  keyEnd: number,
  valueStart: number,
  valueEnd: number,
  expiresAt: number,
): number {
  switch (kind) {
    case INSERT:
      sink.insert(buf, keyStart, keyEnd, valueStart, valueEnd, expiresAt);
      return 1;
    case REMOVE:
      sink.remove(buf, keyStart, keyEnd);
      return 1;
    case CLEAR:
      sink.clear();
      return 1;
    default:
      return 0;
  }
}

function inBatch(batch: { txId: number; start: number } | undefined): string {
  return batch === undefined ? "" : ` (inside batch tx ${batch.txId} begun at ${batch.start})`;
}

/**
 * Reads a whole legacy log: header, then the replay of every record after it.
 * `size` is the file length; the file is never written.
 */
export function readLegacyLog(
  src: PositionalReader,
  size: number,
  sink: ReplaySink,
  opts: ReplayOptions & { file?: string } = {},
): { header: LegacyLogHeader; replay: ReplayResult } {
  const head = Buffer.alloc(Math.min(size, LOG_HEADER_SIZE));
  const got = src.read(head, 0, head.length, 0);
  const header = parseLogHeader(head.subarray(0, got), opts.file);
  const replay = replayLog(src, LOG_HEADER_SIZE, size, sink, opts);
  return { header, replay };
}
