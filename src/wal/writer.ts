/**
 * Appends records to the WAL sidecar. Layouts: `header.ts` (64-byte header) and `record.ts`.
 *
 * Appends encode into an in-memory buffer and cost no I/O; `writeOut()` hands everything
 * buffered to the OS in one write, `sync()` also makes it durable (fdatasync). Which of the
 * two runs when is the engine's flush policy. Two exceptions keep memory bounded: a record of
 * 1 MiB or more is written straight through at append time (value bytes go from the caller's
 * buffer to the file, never copied), and the buffer is written out once it holds 4 MiB.
 *
 * After each fdatasync (and after `openAt`, which syncs what the replay kept) the next append
 * starts with a Synced record naming the last LSN made durable, and the next `sync()` ends
 * its write with another, so a replay can tell a hole a power loss left in unsynced bytes from
 * damage to synced ones (`record.ts`, `record-scanner.ts`). Two, because damage is contiguous: it
 * may take the first along with the end of the records before it.
 *
 * Preallocation. fdatasync of an append that grows the file must also commit the new size
 * (a journal commit on ext4); an overwrite inside the file's existing blocks flushes only the
 * data: about 95 µs instead of 135–150 µs per 116-byte commit on this project's reference
 * disk (`bench/wal-fsync.ts`; SQLite's WAL, reused in place, beats a raw append loop for the
 * same reason). So the file is kept ahead of the records: when a write passes the allocated
 * end, zeros are written `GROW_MIN`..`GROW_MAX` further, and a reset keeps the file's length
 * (up to `RETAIN_BYTES`) and rewrites only the header. Bytes past the last record are
 * therefore zeros or records of an older generation; neither can validate (record checksums
 * are seeded with the header checksum, and kind 0 never frames a record): replay reads zeros
 * as the end of the log and old records as a torn tail. `openAt` truncates what follows the
 * last valid record before appending, and `close` trims the file to its records.
 *
 * Crash points of `reset(generation)`, and what a power loss at each leaves on disk:
 *
 * | step                             | failpoint after it          | on disk after a crash here                  | replay   |
 * |----------------------------------|-----------------------------|---------------------------------------------|----------|
 * | (before reset)                   |                             | old header, old records                     | old generation (`older-generation` against the new meta) |
 * | trim to `RETAIN_BYTES` (only a larger file) |                  | old header, a prefix of the old records     | `older-generation` |
 * | write the new header in place    | `wal:reset:header-written`  | old header, the new one, or a torn mix; old records after it | `older-generation`; `ok` with no records (old records fail the new seed: a torn tail); a torn header is `empty-unbound` (see `replay.ts`) |
 * | fdatasync                        | `wal:after-sync`            | new header, old records after it            | `ok` with no records |
 *
 * `create` truncates instead (it may replace a file of another page file or format):
 *
 * | step                             | failpoint after it          | on disk after a crash here                  | replay   |
 * |----------------------------------|-----------------------------|---------------------------------------------|----------|
 * | truncate to 0, fdatasync         | `wal:create:truncated`      | empty file                                  | `empty-unbound` |
 * | write the new header             | `wal:reset:header-written`  | empty file, or the header (torn or whole)   | `empty-unbound`, or `ok` with no records |
 * | fdatasync                        | `wal:after-sync`            | new header, no records                      | `ok` with no records |
 *
 * A header is 64 bytes at offset 0, inside one disk sector, so a torn header needs a disk that
 * tears sectors; `replay.ts` still tells such a header from a damaged one by whether the first
 * record validates under the header the page file expects.
 * `create` then fsyncs the directory: until that returns, a crash may lose a newly created
 * file altogether (replay: `missing`), which loses nothing either.
 *
 * Errors: a failed write or fdatasync leaves the file in an unknown state (after a failed
 * fdatasync the kernel may already have dropped the dirty pages), so the writer refuses every
 * later append, `writeOut` and `sync` with `EMDB_IO` until a `reset` succeeds.
 */
import { Xxh32 } from "@node-rs/xxhash";
import { EmdbError } from "../errors.js";
import { dirOf, type StorageBackend, type StorageFile } from "../pager/backend.js";
import { decodeWalHeader, encodeWalHeader, WAL_HEADER_SIZE, type WalHeader } from "./header.js";
import {
  BATCH_RECORD_SIZE,
  CLEAR_RECORD_SIZE,
  deleteRecordSize,
  encodeBatchMarker,
  encodeClear,
  encodeDelete,
  encodePut,
  encodeSynced,
  KIND_BATCH_BEGIN,
  KIND_BATCH_END,
  putRecordSize,
  SYNCED_RECORD_SIZE,
  WAL_MAX_KEY_BYTES,
  WAL_MAX_VALUE_BYTES,
  writePutHead,
} from "./record.js";
import type { WalReplayResult } from "./replay.js";

const INITIAL_BUFFER = 64 * 1024;
/** Records at least this large bypass the buffer. */
const WRITE_THROUGH_BYTES = 1024 * 1024;
/** The buffer is written out once it holds this much. */
const SPILL_BYTES = 4 * 1024 * 1024;
/** Zeros written ahead of the records when they pass the allocated end: a quarter of the file, within these bounds. */
const GROW_MIN = 1024 * 1024;
const GROW_MAX = 16 * 1024 * 1024;
/** A reset keeps at most this much of the file allocated. */
export const RETAIN_BYTES = 64 * 1024 * 1024;
const ZEROS = Buffer.alloc(1024 * 1024);

export type WalFailpoint =
  | "wal:before-write"
  | "wal:after-write"
  | "wal:after-sync"
  | "wal:create:truncated"
  | "wal:reset:header-written";

const CLOSED = Symbol("closed");

export class WalWriter {
  /** Called at each named durability boundary; a test throws from it to "crash" there. */
  failpoint: ((name: WalFailpoint) => void) | undefined;

  private buf = Buffer.allocUnsafe(INITIAL_BUFFER);
  private len = 0;
  /** End of the records written out: header plus every record handed to the OS. */
  private fileSize: number;
  /** Length of the file: `fileSize` plus the zeros or stale records after it. */
  private allocated: number;
  /** Written to the file since the last fdatasync. */
  private dirty = false;
  /** Set after a failed write/sync (the error) or close; blocks further appends. */
  private broken: unknown;
  private header: WalHeader;
  private seed: number;
  private lsn: number;
  /** LSN of the last record an fdatasync of this writer has covered since the last reset. */
  private syncedLsn = 0;
  /** The `upTo` of the last Synced record appended since the last reset. */
  private markedLsn = 0;

  private constructor(
    private readonly file: StorageFile,
    readonly path: string,
    header: WalHeader,
    fileSize: number,
    lastLsn: number,
  ) {
    this.header = header;
    this.seed = header.checksum;
    this.fileSize = fileSize;
    this.allocated = fileSize;
    this.lsn = lastLsn;
  }

  /**
   * Creates (or replaces) the WAL as "empty, follows `generation` of page file `fileId`":
   * header written and synced, directory entry synced. `failpoint` is wired before the
   * first I/O, so crash tests reach the points inside `create` too.
   */
  static create(
    backend: StorageBackend,
    walPath: string,
    fileId: Uint8Array,
    generation: number,
    failpoint?: (name: WalFailpoint) => void,
  ): WalWriter {
    const headerBytes = encodeWalHeader(fileId, generation);
    const file = backend.open(walPath, true);
    try {
      const writer = new WalWriter(file, walPath, decodeWalHeader(headerBytes, walPath), 0, 0);
      writer.failpoint = failpoint;
      writer.rebind(headerBytes, true);
      backend.syncDir(dirOf(walPath));
      return writer;
    } catch (err) {
      file.close();
      throw err;
    }
  }

  /**
   * Reopens a WAL that `replayWal` reported `ok`, appending after its last valid record. A
   * torn tail is truncated away and the truncation synced first, so new records never follow
   * garbage.
   */
  static openAt(backend: StorageBackend, walPath: string, replay: WalReplayResult): WalWriter {
    if (replay.status !== "ok" || replay.header === undefined) {
      throw new RangeError(`cannot append to a WAL whose replay status is ${replay.status}`);
    }
    const file = backend.open(walPath, false);
    try {
      const size = file.size();
      if (size < replay.validEnd) {
        throw new EmdbError(
          "EMDB_IO",
          `the WAL is ${size} bytes, shorter than the ${replay.validEnd} its replay kept`,
          { file: walPath, offset: size },
        );
      }
      if (size > replay.validEnd) file.truncate(replay.validEnd);
      // Synced, so the first commit after this open can say the replayed records are durable
      // (its Synced records): without that, damage to them would read as a torn tail.
      if (size > replay.validEnd || replay.lastLsn > 0) file.sync();
      const writer = new WalWriter(file, walPath, replay.header, replay.validEnd, replay.lastLsn);
      writer.syncedLsn = replay.lastLsn;
      return writer;
    } catch (err) {
      file.close();
      throw err;
    }
  }

  get fileId(): Buffer {
    return this.header.fileId;
  }

  get generation(): number {
    return this.header.generation;
  }

  /** LSN of the last record appended (0 right after a reset). */
  get lastLsn(): number {
    return this.lsn;
  }

  /** Bytes appended but not yet handed to the OS. */
  get bufferedBytes(): number {
    return this.len;
  }

  /** Size of the WAL's records, buffered ones included (the header counts). */
  get size(): number {
    return this.fileSize + this.len;
  }

  /** Length of the file: its records plus the zeros (or old records) preallocated after them. */
  get fileLength(): number {
    return Math.max(this.allocated, this.fileSize);
  }

  // -------------------------------------------------------------------------------------------
  // Appends. Each returns the record's LSN. The LSN is taken only once encoding succeeded, so a
  // rejected argument never leaves a gap.

  /**
   * `key` and `value` are bytes, or latin1 strings (one char per byte); `expiresAt` is Unix
   * ms, 0 = never.
   */
  appendPut(key: Uint8Array | string, value: Uint8Array | string, expiresAt: number): number {
    checkKey(key);
    if (value.length > WAL_MAX_VALUE_BYTES) {
      throw new EmdbError(
        "EMDB_VALUE_TOO_LARGE",
        `value is ${value.length} bytes, the maximum is ${WAL_MAX_VALUE_BYTES}`,
      );
    }
    if (this.broken !== undefined) this.throwBroken();
    this.markSynced();
    const size = putRecordSize(key.length, value.length);
    if (size >= WRITE_THROUGH_BYTES) return this.appendLargePut(key, value, expiresAt);
    if (this.len + size > this.buf.length) this.grow(size);
    this.len = encodePut(this.buf, this.len, this.lsn + 1, key, value, expiresAt, this.seed);
    return this.appended();
  }

  appendDelete(key: Uint8Array | string): number {
    checkKey(key);
    if (this.broken !== undefined) this.throwBroken();
    this.markSynced();
    const size = deleteRecordSize(key.length);
    if (this.len + size > this.buf.length) this.grow(size);
    this.len = encodeDelete(this.buf, this.len, this.lsn + 1, key, this.seed);
    return this.appended();
  }

  appendClear(): number {
    if (this.broken !== undefined) this.throwBroken();
    this.markSynced();
    if (this.len + CLEAR_RECORD_SIZE > this.buf.length) this.grow(CLEAR_RECORD_SIZE);
    this.len = encodeClear(this.buf, this.len, this.lsn + 1, this.seed);
    return this.appended();
  }

  appendBatchBegin(txId: number, opCount: number): number {
    return this.appendMarker(KIND_BATCH_BEGIN, txId, opCount);
  }

  appendBatchEnd(txId: number, opCount: number): number {
    return this.appendMarker(KIND_BATCH_END, txId, opCount);
  }

  private appendMarker(
    kind: typeof KIND_BATCH_BEGIN | typeof KIND_BATCH_END,
    txId: number,
    opCount: number,
  ): number {
    if (this.broken !== undefined) this.throwBroken();
    this.markSynced();
    if (this.len + BATCH_RECORD_SIZE > this.buf.length) this.grow(BATCH_RECORD_SIZE);
    this.len = encodeBatchMarker(this.buf, this.len, this.lsn + 1, kind, txId, opCount, this.seed);
    return this.appended();
  }

  /**
   * Before the first record after an fdatasync, a Synced record naming the last LSN that sync
   * covered: the replay's proof that a hole before that LSN is damage, not a power loss (see
   * `record.ts`). Written with the next append, in the same write; `sync()` writes another
   * after the last record.
   */
  private markSynced(): void {
    if (this.syncedLsn !== this.markedLsn) this.appendSynced();
  }

  private appendSynced(): void {
    if (this.len + SYNCED_RECORD_SIZE > this.buf.length) this.grow(SYNCED_RECORD_SIZE);
    this.len = encodeSynced(this.buf, this.len, this.lsn + 1, this.syncedLsn, this.seed);
    this.lsn++;
    this.markedLsn = this.syncedLsn;
  }

  private appended(): number {
    const lsn = ++this.lsn;
    if (this.len >= SPILL_BYTES) this.writeOut();
    return lsn;
  }

  private grow(needed: number): void {
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + needed));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  /**
   * Buffered records and this record's head go out in one write, then the value straight from
   * the caller's memory, then the checksum: a Buffer value is never copied (a latin1 string
   * value is encoded once).
   */
  private appendLargePut(
    key: Uint8Array | string,
    value: Uint8Array | string,
    expiresAt: number,
  ): number {
    const headSize = putRecordSize(key.length, 0) - 4;
    if (this.len + headSize > this.buf.length) this.grow(headSize);
    const headStart = this.len;
    const lsn = this.lsn + 1;
    const valueAt = writePutHead(this.buf, headStart, lsn, key, value.length, expiresAt);
    const v =
      typeof value === "string"
        ? Buffer.from(value, "latin1")
        : Buffer.isBuffer(value)
          ? value
          : Buffer.from(value.buffer, value.byteOffset, value.length);
    const hash = new Xxh32(this.seed);
    hash.update(this.buf.subarray(headStart, valueAt));
    hash.update(v);
    const trailer = Buffer.allocUnsafe(4);
    trailer.writeUInt32LE(hash.digest(), 0);
    // Until all three writes land, the buffer holds half a record: nothing may append.
    this.broken = new EmdbError("EMDB_IO", "a large WAL append was interrupted", {
      file: this.path,
    });
    this.failpoint?.("wal:before-write");
    this.dirty = true;
    this.writeRaw(this.buf, valueAt);
    this.len = 0;
    this.writeRaw(v, v.length);
    this.writeRaw(trailer, 4);
    this.broken = undefined;
    this.lsn = lsn;
    this.failpoint?.("wal:after-write");
    return lsn;
  }

  private writeRaw(buf: Buffer, length: number): void {
    try {
      this.file.write(buf, 0, length, this.fileSize);
      this.fileSize += length;
      if (this.fileSize > this.allocated) this.preallocate();
    } catch (err) {
      this.broken = err;
      throw err;
    }
  }

  /** Writes zeros past the records, so the next appends overwrite instead of growing the file. */
  private preallocate(): void {
    const step = Math.min(GROW_MAX, Math.max(GROW_MIN, Math.floor(this.fileSize / 4)));
    const end = this.fileSize + step;
    for (let at = this.fileSize; at < end; ) {
      const n = Math.min(ZEROS.length, end - at);
      this.file.write(ZEROS, 0, n, at);
      at += n;
    }
    this.allocated = end;
  }

  // -------------------------------------------------------------------------------------------
  // Durability

  /** Hands everything buffered to the OS in one write (no fdatasync). */
  writeOut(): void {
    if (this.broken !== undefined) this.throwBroken();
    if (this.len === 0) return;
    this.failpoint?.("wal:before-write");
    this.dirty = true;
    this.writeRaw(this.buf, this.len);
    this.len = 0;
    this.failpoint?.("wal:after-write");
  }

  /** `writeOut()` and fdatasync: every record appended so far is durable when this returns. */
  sync(): void {
    if (this.broken !== undefined) this.throwBroken();
    // A Synced record after the last record too: damage that also takes the one before the
    // first record since the last sync is still proven while this one survives.
    if (this.syncedLsn > 0 && this.lsn > this.syncedLsn) this.appendSynced();
    this.writeOut();
    if (!this.dirty) return;
    try {
      this.file.sync();
    } catch (err) {
      this.broken = err;
      throw err;
    }
    this.dirty = false;
    this.syncedLsn = this.lsn;
    this.failpoint?.("wal:after-sync");
  }

  /**
   * Empties the WAL and binds it to `generation` (called after a checkpoint committed that
   * generation). Buffered records are dropped: the checkpoint covers them. See the crash-point
   * table at the top of this file.
   */
  reset(generation: number): void {
    if (this.broken === CLOSED) this.throwBroken();
    this.rebind(encodeWalHeader(this.header.fileId, generation), false);
  }

  /**
   * Writes `headerBytes` at offset 0 and syncs it: the WAL then holds no record. `fresh`
   * (create) first truncates the file to nothing and syncs that; a reset keeps the file's
   * length (up to `RETAIN_BYTES`) and the old records, which fail the new header's seed.
   */
  private rebind(headerBytes: Buffer, fresh: boolean): void {
    // Latched until the new header is durable: an error half-way leaves the file unknown.
    this.broken = new EmdbError("EMDB_IO", "a WAL reset did not complete", { file: this.path });
    this.len = 0;
    try {
      if (fresh) {
        this.file.truncate(0);
        this.file.sync();
        this.allocated = 0;
        this.failpoint?.("wal:create:truncated");
      } else if (this.allocated > RETAIN_BYTES) {
        this.file.truncate(RETAIN_BYTES);
        this.allocated = RETAIN_BYTES;
      }
      this.file.write(headerBytes, 0, WAL_HEADER_SIZE, 0);
      this.allocated = Math.max(this.allocated, WAL_HEADER_SIZE);
      this.failpoint?.("wal:reset:header-written");
      this.file.sync();
    } catch (err) {
      this.broken = err;
      throw err;
    }
    this.fileSize = WAL_HEADER_SIZE;
    this.dirty = false;
    this.header = decodeWalHeader(headerBytes, this.path);
    this.seed = this.header.checksum;
    this.lsn = 0;
    this.syncedLsn = 0;
    this.markedLsn = 0;
    this.broken = undefined;
    this.failpoint?.("wal:after-sync");
  }

  /**
   * Writes out buffered records (no fdatasync: call `sync()` first for durability), trims the
   * preallocated zeros so the next open's replay has no tail to scan, and closes.
   */
  close(): void {
    if (this.broken === CLOSED) return;
    try {
      if (this.broken === undefined) {
        this.writeOut();
        if (this.allocated > this.fileSize) this.file.truncate(this.fileSize);
      }
    } finally {
      this.broken = CLOSED;
      this.file.close();
    }
  }

  private throwBroken(): never {
    if (this.broken === CLOSED) throw new EmdbError("EMDB_CLOSED", "the WAL writer is closed");
    throw new EmdbError(
      "EMDB_IO",
      "the WAL is unusable after a failed write, sync or reset; reset it or reopen",
      { file: this.path, cause: this.broken },
    );
  }
}

function checkKey(key: Uint8Array | string): void {
  if (key.length > WAL_MAX_KEY_BYTES) {
    throw new EmdbError(
      "EMDB_KEY_TOO_LARGE",
      `key is ${key.length} bytes, the maximum is ${WAL_MAX_KEY_BYTES}`,
    );
  }
}
