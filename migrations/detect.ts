/**
 * Tells which format a file at a database path is in, from its first 64 bytes (and a few
 * 8-byte probes when the magic is unknown; never more than 4 KB in all), so opening a large
 * legacy file does not read it whole just to look at its magic as emdb-rs did (weakness P12).
 *
 * | Bytes 0..8                  | Format                              | Further checks here            |
 * |-----------------------------|-------------------------------------|--------------------------------|
 * | `45 4D 44 42 00 00 00 00`   | emdb-rs log v1/v2 (legacy-log.ts)   | version 1 or 2, 64-byte header |
 * | `EMDBPAGE`                  | emdb-rs 0.6 page file (page-v3.ts)  | u32 version at 8 is 3          |
 * | `EMDBNODE`                  | this package's own format           | none                           |
 *
 * A missing file and a 0-byte file are new databases (0.6 treated both as "nothing to
 * migrate"); 1–7 bytes or any other magic is `EMDB_MAGIC_MISMATCH`, unless the second meta
 * page (at any legal page size) carries `EMDBNODE`: then it is this package's file with a
 * damaged first meta page, and the pager decides whether that is a torn write or corruption
 * (`chooseMeta`). That check reads 8 bytes at each of the 8 legal page sizes.
 */
import { corrupted, EmdbError } from "../src/errors.js";
import { META_MAGIC } from "../src/pager/meta.js";
import { MAX_PAGE_SIZE, MIN_PAGE_SIZE } from "../src/pager/page.js";
import {
  FLAG_TTL,
  LOG_HEADER_SIZE,
  LOG_MAGIC,
  type PositionalReader,
  parseLogHeader,
} from "./legacy-log.js";
import { PAGE_MAGIC, PAGE_VERSION } from "./page-v3.js";
import { openReadOnly } from "./readonly-file.js";

/** The most a detection reads. */
export const DETECT_MAX_BYTES = 4096;

export type DetectedFormat =
  | { kind: "missing" }
  | { kind: "empty" }
  | { kind: "log"; version: 1 | 2; ttlFlag: boolean }
  | { kind: "page-v3" }
  | { kind: "emdb-ts" };

export function detectFormat(path: string): DetectedFormat {
  const f = openReadOnly(path);
  if (f === undefined) return { kind: "missing" };
  try {
    return detectFormatIn(f, f.size, path);
  } finally {
    f.close();
  }
}

/**
 * Detection over any positional reader of `size` bytes: the first 64 bytes, and 8 more at
 * each legal page size when the magic is unknown (`DETECT_MAX_BYTES` bounds the total).
 */
export function detectFormatIn(src: PositionalReader, size: number, file?: string): DetectedFormat {
  if (size === 0) return { kind: "empty" };
  const head = Buffer.alloc(Math.min(size, LOG_HEADER_SIZE, DETECT_MAX_BYTES));
  const got = src.read(head, 0, head.length, 0);
  const bytes = head.subarray(0, got);
  if (got === 0) return { kind: "empty" };
  if (got < 8) throw magicMismatch(`file of ${got} bytes`, file);
  const magic = bytes.subarray(0, 8);
  if (magic.equals(LOG_MAGIC)) {
    const h = parseLogHeader(bytes, file);
    return { kind: "log", version: h.version, ttlFlag: (h.flags & FLAG_TTL) !== 0 };
  }
  if (magic.equals(PAGE_MAGIC)) {
    if (got < 12) throw corrupted("emdb-rs page header is truncated", got, file);
    const version = bytes.readUInt32LE(8);
    if (version !== PAGE_VERSION) {
      throw new EmdbError(
        "EMDB_VERSION_MISMATCH",
        `emdb-rs page file version ${version} (expected ${PAGE_VERSION})`,
        file !== undefined ? { file } : {},
      );
    }
    return { kind: "page-v3" };
  }
  if (magic.equals(META_MAGIC) || secondMetaHasMagic(src, size)) return { kind: "emdb-ts" };
  throw magicMismatch(`unknown magic ${magic.toString("hex")}`, file);
}

function secondMetaHasMagic(src: PositionalReader, size: number): boolean {
  const probe = Buffer.alloc(META_MAGIC.length);
  for (let at = MIN_PAGE_SIZE; at <= MAX_PAGE_SIZE && at + probe.length <= size; at *= 2) {
    if (src.read(probe, 0, probe.length, at) === probe.length && probe.equals(META_MAGIC)) {
      return true;
    }
  }
  return false;
}

function magicMismatch(detail: string, file: string | undefined): EmdbError {
  return new EmdbError(
    "EMDB_MAGIC_MISMATCH",
    `not an emdb database (${detail})`,
    file !== undefined ? { file } : {},
  );
}
