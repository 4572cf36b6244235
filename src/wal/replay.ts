/**
 * Replays the WAL sidecar: checks that it belongs to the expected page-file state, then
 * delivers every effective operation in order, whole batches at once.
 *
 * File layout: the 64-byte header (`header.ts`) followed by records (`record.ts`).
 *
 * Outcomes (`status`):
 *
 * | status             | when                                                     | replays |
 * |--------------------|----------------------------------------------------------|---------|
 * | `missing`          | no file                                                  | no      |
 * | `empty-unbound`    | file shorter than a header, or an invalid header (bad magic or checksum) that is either alone in the file or followed by a first record that fails the checksum seeds of the expected generation and the next: it holds no record of this checkpoint, so nothing can be lost (a crash inside `reset`/`create` leaves this) | no |
 * | `foreign`          | valid header, other `fileId` (never replayed, D15); `holdsRecords` says whether a record follows the header under that header's own checksum seed (writes of another page file: the open refuses to discard them) | no |
 * | `older-generation` | valid header, generation below the expected one          | no      |
 * | `newer-generation` | valid header, generation above the expected one          | no      |
 * | `ok`               | valid header, same fileId and generation                 | yes     |
 *
 * Errors: a bad header magic or checksum followed by a record that validates under the
 * expected header → `EMDB_CORRUPTED` at offset 0; an unknown version →
 * `EMDB_VERSION_MISMATCH` (in a header-only file, only when the checksum is valid:
 * otherwise it is a torn header, `empty-unbound`).
 *
 * Records after a valid header are read by `RecordScanner` (`record-scanner.ts`), which says
 * when a bad record is the end of the log, a torn tail, or `EMDB_CORRUPTED`. Ops are delivered
 * while reading: if the replay later throws, the caller must discard what it applied (the open
 * fails anyway).
 */
import { isEmdbError } from "../errors.js";
import type { StorageBackend, StorageFile } from "../pager/backend.js";
import {
  decodeWalHeader,
  encodeWalHeader,
  WAL_HEADER_SIZE,
  type WalHeader,
  walHeaderChecksumOk,
} from "./header.js";
import { MAX_BODY_LENGTH, RECORD_OVERHEAD, recordChecksumOk, type WalDataOp } from "./record.js";
import { RecordScanner, readExactly } from "./record-scanner.js";

export type { WalDataOp } from "./record.js";

/** An operation to apply: a data op, or a complete batch to apply atomically. */
export type WalOp = WalDataOp | { kind: "batch"; txId: number; ops: WalDataOp[] };

export type WalStatus =
  | "ok"
  | "missing"
  | "foreign"
  | "older-generation"
  | "newer-generation"
  | "empty-unbound";

export interface WalReplayResult {
  status: WalStatus;
  /** The decoded header; undefined for `missing` and `empty-unbound`. */
  header: WalHeader | undefined;
  /** Size of the file when the replay read it (0 when missing). */
  fileSize: number;
  /** Offset just past the last record kept; where appends continue. 0 unless `ok`. */
  validEnd: number;
  /** LSN of the last record kept (0 when none). */
  lastLsn: number;
  /** Largest txId among the complete batches delivered (0 when none). */
  maxTxId: number;
  /** Records kept, batch markers included. */
  records: number;
  /**
   * For `foreign` only: the first record after the header validates under that header, so
   * the file holds writes of another page file (or of this path's page file before it was
   * deleted or emptied). False when only stale records of older generations follow.
   */
  holdsRecords?: boolean;
  /**
   * Set when bytes past `validEnd` were dropped: where the damage starts and why, and how many
   * valid records after it were dropped with it (written since the last sync the log proves).
   */
  tornTail?: TornTail;
}

export interface TornTail {
  offset: number;
  reason: string;
  validAfter?: number;
  /**
   * Valid records dropped with the tail: those of an unfinished batch before the damage,
   * plus `validAfter`. The damaged record itself is not counted.
   */
  dropped: number;
}

export interface WalExpectation {
  fileId: Uint8Array;
  generation: number;
}

function notReplayed(
  status: WalStatus,
  header: WalHeader | undefined,
  fileSize: number,
  tornTail?: TornTail,
): WalReplayResult {
  const result: WalReplayResult = {
    status,
    header,
    fileSize,
    validEnd: 0,
    lastLsn: 0,
    maxTxId: 0,
    records: 0,
  };
  if (tornTail !== undefined) result.tornTail = tornTail;
  return result;
}

/**
 * A look at the WAL at `walPath` without replaying it: undefined when it is missing or its
 * header is not valid; otherwise whether a record follows the header and validates under it
 * (the file holds writes, whichever page file it belongs to).
 */
export function probeWal(
  backend: StorageBackend,
  walPath: string,
): { header: WalHeader; holdsRecords: boolean } | undefined {
  if (!backend.exists(walPath)) return undefined;
  const file = backend.open(walPath, false);
  try {
    const size = file.size();
    if (size < WAL_HEADER_SIZE) return undefined;
    const raw = Buffer.alloc(WAL_HEADER_SIZE);
    readExactly(file, raw, 0, WAL_HEADER_SIZE, 0, walPath);
    let header: WalHeader;
    try {
      header = decodeWalHeader(raw, walPath);
    } catch {
      return undefined;
    }
    return { header, holdsRecords: holdsOwnRecords(file, size, walPath, header) };
  } finally {
    file.close();
  }
}

/**
 * `transientValues`: the value of a put outside a batch may be a view into the replay's read
 * buffer, valid only during `onOp` (a caller that converts it at once saves a copy per
 * record). Values inside a batch, held until its BatchEnd, are always copies.
 */
export interface ReplayOptions {
  readonly transientValues?: boolean;
}

export function replayWal(
  backend: StorageBackend,
  walPath: string,
  expect: WalExpectation,
  onOp: (op: WalOp) => void,
  options: ReplayOptions = {},
): WalReplayResult {
  if (!backend.exists(walPath)) return notReplayed("missing", undefined, 0);
  const file = backend.open(walPath, false);
  try {
    const size = file.size();
    if (size < WAL_HEADER_SIZE) {
      return notReplayed("empty-unbound", undefined, size, {
        offset: 0,
        reason: `file is ${size} bytes, shorter than a header`,
        dropped: 0,
      });
    }
    const raw = Buffer.alloc(WAL_HEADER_SIZE);
    readExactly(file, raw, 0, WAL_HEADER_SIZE, 0, walPath);
    let header: WalHeader;
    try {
      header = decodeWalHeader(raw, walPath);
    } catch (err) {
      // A header-sized file holds no record, so an invalid header there loses nothing: it is
      // a torn header write (which can tear inside the version field too). Only a version
      // mismatch under a valid checksum is a real header from another format version.
      const torn =
        isEmdbError(err, "EMDB_CORRUPTED") ||
        (isEmdbError(err, "EMDB_VERSION_MISMATCH") && !walHeaderChecksumOk(raw));
      if (torn && (size === WAL_HEADER_SIZE || !holdsCurrentRecords(file, size, expect))) {
        return notReplayed("empty-unbound", undefined, size, {
          offset: 0,
          reason: `invalid header and no records of this checkpoint (${err.message})`,
          dropped: 0,
        });
      }
      throw err;
    }
    if (!header.fileId.equals(expect.fileId)) {
      const result = notReplayed("foreign", header, size);
      result.holdsRecords = holdsOwnRecords(file, size, walPath, header);
      return result;
    }
    if (header.generation < expect.generation) {
      return notReplayed("older-generation", header, size);
    }
    if (header.generation > expect.generation) {
      return notReplayed("newer-generation", header, size);
    }
    return new RecordScanner(file, size, walPath, header, options.transientValues === true).run(
      onOp,
    );
  } finally {
    file.close();
  }
}

/**
 * Whether the first record validates under the header the page file expects (or the one
 * after it, in case that checkpoint's meta page is what got lost). A reset rewrites the
 * header in place over records of an older generation, so an invalid header over records
 * that fail both seeds is a torn reset: nothing of this checkpoint can be in the file. An
 * invalid header over a record that passes is damage to a WAL that holds records.
 */
function holdsCurrentRecords(file: StorageFile, size: number, expect: WalExpectation): boolean {
  const seeds = [expect.generation, expect.generation + 1].map(
    (generation) => decodeWalHeader(encodeWalHeader(expect.fileId, generation)).checksum,
  );
  return firstRecordPasses(file, size, seeds);
}

/**
 * Whether a WAL holds complete records under its own header, read as a replay would read it
 * (nothing is delivered). Records left by older generations fail the header's seed and read
 * as a torn tail; damage followed by valid records (`EMDB_CORRUPTED` in a replay, or a torn
 * tail that drops them) means here that records are there. Reads the whole file: only a WAL
 * about to be refused or replaced is probed.
 */
function holdsOwnRecords(
  file: StorageFile,
  size: number,
  walPath: string,
  header: WalHeader,
): boolean {
  try {
    const r = new RecordScanner(file, size, walPath, header, true).run(() => {});
    // Records after a hole count: writes of another page file are never dropped unasked.
    return r.records > 0 || (r.tornTail?.validAfter ?? 0) > 0;
  } catch (err) {
    if (isEmdbError(err, "EMDB_CORRUPTED")) return true;
    throw err;
  }
}

/** Whether the record right after the header has a valid checksum under one of `seeds`. */
function firstRecordPasses(file: StorageFile, size: number, seeds: readonly number[]): boolean {
  const head = Buffer.alloc(4);
  if (file.read(head, 0, 4, WAL_HEADER_SIZE) !== 4) return false;
  const length = head.readUInt32LE(0) + RECORD_OVERHEAD;
  if (length > MAX_BODY_LENGTH + RECORD_OVERHEAD || WAL_HEADER_SIZE + length > size) return false;
  const record = Buffer.alloc(length);
  if (file.read(record, 0, length, WAL_HEADER_SIZE) !== length) return false;
  return seeds.some((seed) => recordChecksumOk(record, 0, length, seed));
}
