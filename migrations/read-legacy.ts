/**
 * One entry point that reads any file emdb-rs wrote (log v1, log v2, page file v3 + `P.wal`)
 * into its final live content, sorted by key bytes, without modifying anything on disk.
 *
 * No on-disk structure of its own: the layouts are in legacy-record.ts, legacy-log.ts and
 * page-v3.ts; the live state is a LiveSet (live-set.ts), whose memory follows the live data,
 * not the file size.
 */
import { EmdbError } from "../src/errors.js";
import { detectFormat } from "./detect.js";
import { type ReplayResult, type ReplayStop, readLegacyLog } from "./legacy-log.js";
import { type EntryRangeVisitor, LiveSet } from "./live-set.js";
import { readPageFileV3 } from "./page-v3.js";
import { openReadOnly } from "./readonly-file.js";

/**
 * One live entry. `key` and `value` are views into slabs of about 1 MiB shared by many
 * entries (copy them to keep a few entries while dropping the rest).
 */
export interface LegacyEntry {
  key: Buffer;
  value: Buffer;
  /** Absolute expiry in ms since the epoch; 0 = none. */
  expiresAt: number;
}

export interface LegacyStop {
  /** Where the valid prefix ends (emdb-rs would have truncated the file here). */
  offset: number;
  reason: ReplayStop["reason"];
  /** The record that made the replay stop. */
  recordOffset: number;
  detail: string;
}

export interface LegacyContent {
  format: "log-v1" | "log-v2" | "page-v3";
  /** max(header last_tx_id, every tx_id of a valid BatchEnd in the log, legacy tail or WAL). */
  lastTxId: number;
  /** Live entries sorted by unsigned key bytes. */
  entries: LegacyEntry[];
  /** End of the valid prefix of the main file (log: records; page-v3: pages plus legacy tail). */
  validBytes: number;
  /** Why the replay of the main file stopped early, if it did. */
  stoppedAt?: LegacyStop;
  /** Entries left out because `expiresAt <= now`. */
  expiredDropped: number;
  /** page-v3 only: the `P.wal` sidecar, when it exists. */
  wal?: { path: string; size: number; validBytes: number; stoppedAt?: LegacyStop };
}

export interface LegacyProgress {
  phase: "log" | "pages" | "legacy-tail" | "wal";
  bytesDone: number;
  bytesTotal: number;
}

export interface ReadLegacyOptions {
  /** Drop entries with `expiresAt <= now` (and count them). Without it nothing is dropped. */
  now?: number;
  onProgress?: (p: LegacyProgress) => void;
  /** Positional read size for the log regions (default 1 MiB). */
  chunkSize?: number;
}

/** Everything `readLegacy` reports except the entries. */
export type LegacyScan = Omit<LegacyContent, "entries"> & {
  /** Entries handed to the visitor. */
  count: number;
};

/**
 * Reads the emdb-rs database at `path`. Throws `EMDB_MAGIC_MISMATCH` for a file that is not a
 * legacy emdb-rs file (including an empty one or one in this package's own format),
 * `EMDB_VERSION_MISMATCH` for an unknown version, `EMDB_CORRUPTED` (with the offset) for a
 * damaged header or page, `EMDB_IO` when the file is missing. A torn or inconsistent log tail
 * is not an error: it ends the replay, and `validBytes`/`stoppedAt` say where and why.
 */
export function readLegacy(path: string, opts: ReadLegacyOptions = {}): LegacyContent {
  const { state, meta } = replayFile(path, opts);
  const { entries, expiredDropped } = state.finish(opts.now);
  return { ...meta, entries, expiredDropped };
}

/**
 * `readLegacy` without the entries array: each live entry goes to `visit` in key order as
 * ranges of a buffer (`bytes[keyStart, keyEnd)`, `bytes[valueStart, valueEnd)`). No object is
 * made per entry, so a bulk loader streaming millions of entries saves the array's memory and
 * most of the time it costs. The bytes are never overwritten; views of them may be kept.
 */
export function readLegacyEach(
  path: string,
  visit: EntryRangeVisitor,
  opts: ReadLegacyOptions = {},
): LegacyScan {
  const { state, meta } = replayFile(path, opts);
  const { count, expiredDropped } = state.drain(opts.now, visit);
  return { ...meta, count, expiredDropped };
}

type Meta = Omit<LegacyContent, "entries" | "expiredDropped">;

function replayFile(path: string, opts: ReadLegacyOptions): { state: LiveSet; meta: Meta } {
  const fmt = detectFormat(path);
  const state = new LiveSet();
  const { onProgress } = opts;
  const chunk = opts.chunkSize !== undefined ? { chunkSize: opts.chunkSize } : {};

  if (fmt.kind === "log") {
    const f = openReadOnly(path);
    if (f === undefined) throw missing(path);
    let result: ReturnType<typeof readLegacyLog>;
    try {
      result = readLegacyLog(f, f.size, state, {
        ...chunk,
        file: path,
        ...(onProgress !== undefined
          ? {
              onProgress: (done: number) =>
                onProgress({ phase: "log", bytesDone: 64 + done, bytesTotal: f.size }),
            }
          : {}),
      });
    } finally {
      f.close();
    }
    const { header, replay } = result;
    const meta: Meta = {
      format: header.version === 1 ? "log-v1" : "log-v2",
      lastTxId: Math.max(header.lastTxId, replay.maxBatchTxId),
      validBytes: replay.validEnd,
      ...stopOf(replay),
    };
    return { state, meta };
  }

  if (fmt.kind === "page-v3") {
    const r = readPageFileV3(path, state, {
      ...chunk,
      ...(onProgress !== undefined
        ? {
            onProgress: (phase, bytesDone, bytesTotal) =>
              onProgress({ phase, bytesDone, bytesTotal }),
          }
        : {}),
    });
    const meta: Meta = {
      format: "page-v3",
      lastTxId: Math.max(r.header.lastTxId, r.tail?.maxBatchTxId ?? 0, r.wal?.maxBatchTxId ?? 0),
      validBytes: r.validEnd,
      ...(r.tail !== undefined ? stopOf(r.tail) : {}),
    };
    if (r.wal !== undefined) {
      meta.wal = {
        path: r.wal.path,
        size: r.wal.size,
        validBytes: r.wal.validEnd,
        ...stopOf(r.wal),
      };
    }
    return { state, meta };
  }

  if (fmt.kind === "missing") throw missing(path);
  throw new EmdbError("EMDB_MAGIC_MISMATCH", `not an emdb-rs file (${fmt.kind})`, { file: path });
}

function stopOf(r: ReplayResult): { stoppedAt?: LegacyStop } {
  return r.stoppedAt !== undefined ? { stoppedAt: { ...r.stoppedAt } } : {};
}

function missing(path: string): EmdbError {
  return new EmdbError("EMDB_IO", "file does not exist", { file: path });
}
