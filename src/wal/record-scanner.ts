/**
 * Reads the records after a valid WAL header for `replayWal` (`replay.ts`): delivers every
 * complete record and batch, and judges the first bad one.
 *
 * Record rules (DESIGN §3.6). A record whose frame cannot be read (shorter than 17 bytes,
 * length over the maximum or past the end of file) or whose checksum fails is *bad*. A bad
 * record followed by nothing but zeros is the end of the log: the writer preallocates the
 * file with zeros (`writer.ts`). Otherwise the replay scans every later byte offset for the
 * records that follow: frames that are plausible (`plausibleFrame`), carry an LSN above the
 * last good one, and have a valid checksum (it hops over each one found). The bad record is
 * corruption in the middle, `EMDB_CORRUPTED` with its offset, if one of them is a Synced
 * record whose `upTo` reaches the bad record's LSN: that record had been synced, so no power
 * loss can have taken it. Otherwise it lies in what was written since the last sync the log
 * proves, which a power loss may keep any part of, in any order (`record.ts`): a torn tail.
 * Everything from the bad record, or from the start of the batch it sits in, is dropped
 * (`tornTail`, `validEnd`), the valid records after it too.
 *
 * A record with a valid checksum was written by our writer under this header, so a torn write
 * cannot explain it: if its fields do not decode, its LSN is not the previous one plus 1, or it
 * breaks the batch framing (BatchBegin inside a batch, BatchEnd without a batch or disagreeing
 * with its BatchBegin, more ops than the BatchBegin declared), that is `EMDB_CORRUPTED`.
 * An incomplete batch at the very end of the file is a torn tail.
 *
 * Bounded work: the file is read through a 1 MiB window (records larger than half of it get
 * their own buffer), so memory is the window plus the largest record plus the ops of one open
 * batch. The forward scan does O(1) work per byte offset, plus checksums of plausible frames;
 * those are capped at 4 × the scanned bytes + 1 MiB, and past the cap the replay reports
 * `EMDB_CORRUPTED` (it cannot prove the tail torn, so it refuses rather than drop data). Only
 * crafted bytes (values full of fake frames with plausible LSNs) come near the cap.
 *
 * Ops are delivered while reading: if the replay later throws, the caller must discard what it
 * applied (the open fails anyway).
 */
import { Xxh32 } from "@node-rs/xxhash";
import { readU64 } from "../codec.js";
import { corrupted, EmdbError } from "../errors.js";
import type { StorageFile } from "../pager/backend.js";
import { WAL_HEADER_SIZE, type WalHeader } from "./header.js";
import {
  decodeVerifiedRecord,
  FRAME_LOOKAHEAD,
  KIND_PUT,
  KIND_SYNCED,
  MAX_BODY_LENGTH,
  plausibleFrame,
  RECORD_OVERHEAD,
  RECORD_PREFIX_SIZE,
  recordChecksumOk,
  type WalDataOp,
} from "./record.js";
import type { TornTail, WalOp, WalReplayResult } from "./replay.js";

const WINDOW_SIZE = 1024 * 1024;
/** Records above this size are read into their own buffer instead of the window. */
const BIG_RECORD = WINDOW_SIZE / 2;

export function readExactly(
  file: StorageFile,
  buf: Buffer,
  offset: number,
  length: number,
  position: number,
  walPath: string,
): void {
  const n = file.read(buf, offset, length, position);
  if (n !== length) {
    throw new EmdbError("EMDB_IO", `short read at ${position}: the WAL changed during replay`, {
      file: walPath,
      offset: position,
    });
  }
}

interface OpenBatch {
  start: number;
  lsnBefore: number;
  recordsBefore: number;
  txId: number;
  opCount: number;
  ops: WalDataOp[];
}

export class RecordScanner {
  private readonly window = Buffer.allocUnsafe(WINDOW_SIZE);
  /** File offset of `window[0]` and how many bytes of it are loaded. */
  private windowStart = 0;
  private windowLength = 0;
  private readonly seed: number;

  private lastLsn = 0;
  private records = 0;
  private maxTxId = 0;
  private batch: OpenBatch | undefined;
  /** Bytes the forward scan after a bad record may still checksum (`findValidRecordAfter`). */
  private budget = 0;

  constructor(
    private readonly file: StorageFile,
    private readonly size: number,
    private readonly walPath: string,
    private readonly header: WalHeader,
    private readonly transientValues: boolean,
  ) {
    this.seed = header.checksum;
  }

  /** Loads the window so that `[pos, pos+n)` is in it (n ≤ WINDOW_SIZE); returns its index. */
  private at(pos: number, n: number): number {
    if (pos >= this.windowStart && pos + n <= this.windowStart + this.windowLength) {
      return pos - this.windowStart;
    }
    const length = Math.min(WINDOW_SIZE, this.size - pos);
    readExactly(this.file, this.window, 0, length, pos, this.walPath);
    this.windowStart = pos;
    this.windowLength = length;
    return 0;
  }

  run(onOp: (op: WalOp) => void): WalReplayResult {
    let pos = WAL_HEADER_SIZE;
    while (pos < this.size) {
      const avail = this.size - pos;
      if (avail < RECORD_OVERHEAD) return this.bad(pos, "record frame cut short by end of file");
      const bodyLength = this.window.readUInt32LE(this.at(pos, RECORD_PREFIX_SIZE));
      if (bodyLength > MAX_BODY_LENGTH) {
        return this.bad(pos, `record length ${bodyLength} over the maximum`);
      }
      const total = RECORD_OVERHEAD + bodyLength;
      if (total > avail) return this.bad(pos, "record runs past the end of file");

      let buf: Buffer;
      let start: number;
      let owned: boolean;
      if (total <= BIG_RECORD) {
        start = this.at(pos, total);
        buf = this.window;
        owned = false;
      } else {
        // Its own exact-size buffer: the value handed out is a view of it, never copied again.
        buf = Buffer.allocUnsafe(total);
        readExactly(this.file, buf, 0, total, pos, this.walPath);
        start = 0;
        owned = true;
      }
      if (!recordChecksumOk(buf, start, start + total, this.seed)) {
        return this.bad(pos, "record checksum mismatch");
      }
      const { lsn, entry } = decodeVerifiedRecord(
        buf,
        start,
        start + total,
        pos - start,
        this.walPath,
      );
      if (lsn !== this.lastLsn + 1) {
        throw corrupted(
          `record has LSN ${lsn} where ${this.lastLsn + 1} was expected`,
          pos,
          this.walPath,
        );
      }

      const batch = this.batch;
      switch (entry.kind) {
        case "batch-begin":
          if (batch !== undefined) {
            throw corrupted(
              `BatchBegin (txId ${entry.txId}) inside the batch that starts at ${batch.start}`,
              pos,
              this.walPath,
            );
          }
          this.batch = {
            start: pos,
            lsnBefore: this.lastLsn,
            recordsBefore: this.records,
            txId: entry.txId,
            opCount: entry.opCount,
            ops: [],
          };
          break;
        case "batch-end":
          if (batch === undefined) {
            throw corrupted(`BatchEnd (txId ${entry.txId}) without BatchBegin`, pos, this.walPath);
          }
          if (
            entry.txId !== batch.txId ||
            entry.opCount !== batch.opCount ||
            batch.ops.length !== batch.opCount
          ) {
            throw corrupted(
              `BatchEnd (txId ${entry.txId}, ${entry.opCount} ops) does not match the batch at ` +
                `${batch.start} (txId ${batch.txId}, ${batch.opCount} ops declared, ` +
                `${batch.ops.length} present)`,
              pos,
              this.walPath,
            );
          }
          this.batch = undefined;
          if (batch.txId > this.maxTxId) this.maxTxId = batch.txId;
          onOp({ kind: "batch", txId: batch.txId, ops: batch.ops });
          break;
        case "synced":
          // Only the forward scan after a bad record reads these.
          break;
        default: {
          const view = owned || (batch === undefined && this.transientValues);
          const op =
            entry.kind === "put" && !view ? { ...entry, value: Buffer.from(entry.value) } : entry;
          if (batch === undefined) {
            onOp(op);
          } else {
            if (batch.ops.length === batch.opCount) {
              throw corrupted(
                `the batch at ${batch.start} declared ${batch.opCount} ops and has more`,
                pos,
                this.walPath,
              );
            }
            batch.ops.push(op);
          }
        }
      }
      this.lastLsn = lsn;
      this.records++;
      pos += total;
    }
    return this.endOfLog(pos);
  }

  private endOfLog(pos: number): WalReplayResult {
    if (this.batch !== undefined) {
      return this.torn(this.batch.start, "batch has no BatchEnd before the end of the log");
    }
    return this.result(pos);
  }

  private result(validEnd: number, tornTail?: TornTail) {
    const result: WalReplayResult = {
      status: "ok",
      header: this.header,
      fileSize: this.size,
      validEnd,
      lastLsn: this.lastLsn,
      maxTxId: this.maxTxId,
      records: this.records,
    };
    if (tornTail !== undefined) result.tornTail = tornTail;
    return result;
  }

  /**
   * The record at `pos` is bad: the end of the log if only zeros follow (the writer
   * preallocates); corruption if a later Synced record says it had been synced; else a torn
   * tail (see the rules at the top of this file).
   */
  private bad(pos: number, reason: string): WalReplayResult {
    if (this.zerosFrom(pos)) return this.endOfLog(pos);
    const lsn = this.lastLsn + 1;
    this.budget = 4 * (this.size - pos) + WINDOW_SIZE;
    let after = 0;
    let found = this.findValidRecordAfter(pos, pos + 1, lsn);
    while (found !== undefined) {
      after++;
      if (found.syncedUpTo !== undefined && found.syncedUpTo >= lsn) {
        throw corrupted(
          `${reason}, yet the record at offset ${found.offset} (LSN ${found.lsn}) says every ` +
            `record up to LSN ${found.syncedUpTo} had been synced, LSN ${lsn} here included`,
          pos,
          this.walPath,
        );
      }
      found = this.findValidRecordAfter(pos, found.end, found.lsn + 1, found.end);
    }
    if (after === 0) return this.torn(pos, reason);
    return this.torn(
      pos,
      `${reason}; the ${after} valid record(s) after it were written since the last sync the ` +
        "log proves, which a power loss may keep in part: dropped with it",
      after,
    );
  }

  private zerosFrom(pos: number): boolean {
    const chunk = Buffer.allocUnsafe(Math.min(WINDOW_SIZE, this.size - pos));
    const zeros = Buffer.alloc(chunk.length);
    for (let at = pos; at < this.size; ) {
      const n = Math.min(chunk.length, this.size - at);
      readExactly(this.file, chunk, 0, n, at, this.walPath);
      if (!chunk.subarray(0, n).equals(zeros.subarray(0, n))) return false;
      at += n;
    }
    return true;
  }

  private torn(offset: number, reason: string, validAfter?: number): WalReplayResult {
    const batch = this.batch;
    const inBatch = batch === undefined ? 0 : this.records - batch.recordsBefore;
    const tail: TornTail = { offset, reason, dropped: inBatch + (validAfter ?? 0) };
    if (validAfter !== undefined) tail.validAfter = validAfter;
    if (batch === undefined) return this.result(offset, tail);
    this.lastLsn = batch.lsnBefore;
    this.records = batch.recordsBefore;
    this.batch = undefined;
    if (offset !== batch.start) tail.reason += ` (at offset ${offset}, inside the batch)`;
    return this.result(batch.start, tail);
  }

  /**
   * Looks for a record written by our writer at or after `from`, following the bad one at
   * `bad`: the first byte offset where a plausible frame with an LSN in
   * `[minLsn, minLsn + (p - base) / 17]` has a valid checksum (`base` is where the record of
   * LSN `minLsn` would start at the earliest). The LSN bound holds for any genuine record:
   * records are at least 17 bytes. Throws once the checksums exceed `budget`.
   */
  private findValidRecordAfter(
    bad: number,
    from: number,
    minLsn: number,
    base = bad,
  ): { offset: number; end: number; lsn: number; syncedUpTo: number | undefined } | undefined {
    for (let p = from; p + RECORD_OVERHEAD <= this.size; p++) {
      const avail = this.size - p;
      const i = this.at(p, Math.min(avail, FRAME_LOOKAHEAD));
      // Most offsets fail at the kind byte (always, in the zeros a preallocated WAL ends
      // with) or at the LSN's top byte, which is 0 for any LSN below 2^56 (maxLsn is below
      // 2^53): skip those in one tight loop over the loaded window, so stale bytes full of
      // kind-like values cost no frame check each.
      const w = this.window;
      const stop = this.windowLength - RECORD_PREFIX_SIZE;
      let j = i;
      while (j < stop) {
        const kind = w[j + 12]!;
        if (kind >= KIND_PUT && kind <= KIND_SYNCED && w[j + 11] === 0) break;
        j++;
      }
      if (j > i) {
        p += j - i - 1;
        continue;
      }
      const maxLsn = minLsn + Math.floor((p - base) / RECORD_OVERHEAD);
      const total = plausibleFrame(this.window, i, avail, minLsn, maxLsn);
      if (total < 0) continue;
      this.budget -= total;
      if (this.budget < 0) {
        throw corrupted(
          "cannot tell a torn tail from corruption: too many record-like frames follow the " +
            "damaged record (crafted data?)",
          bad,
          this.walPath,
        );
      }
      if (this.checksumAt(p, total)) {
        const synced = this.window[i + 12] === KIND_SYNCED;
        return {
          offset: p,
          end: p + total,
          lsn: this.window.readUInt32LE(i + 8) * 2 ** 32 + this.window.readUInt32LE(i + 4),
          syncedUpTo: synced ? readU64(this.window, i + RECORD_PREFIX_SIZE) : undefined,
        };
      }
    }
    return undefined;
  }

  /** Verifies the checksum of the `total`-byte frame at file offset `p` without moving the window. */
  private checksumAt(p: number, total: number): boolean {
    if (p >= this.windowStart && p + total <= this.windowStart + this.windowLength) {
      const i = p - this.windowStart;
      return recordChecksumOk(this.window, i, i + total, this.seed);
    }
    const hash = new Xxh32(this.seed);
    const chunk = Buffer.allocUnsafe(Math.min(WINDOW_SIZE, total));
    const bodyEnd = p + total - 4;
    for (let q = p; q < bodyEnd; ) {
      const n = Math.min(chunk.length, bodyEnd - q);
      readExactly(this.file, chunk, 0, n, q, this.walPath);
      hash.update(chunk.subarray(0, n));
      q += n;
    }
    readExactly(this.file, chunk, 0, 4, bodyEnd, this.walPath);
    return hash.digest() === chunk.readUInt32LE(0);
  }
}
