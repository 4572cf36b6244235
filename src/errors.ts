/**
 * The one place where emdb's error codes are defined.
 *
 * Codes are API: they stay stable across releases, messages may change. Programmer errors
 * (a number where a key was expected, a missing argument) are plain `TypeError`s or
 * `RangeError`s without a code, as in abstract-level.
 */

export const ERROR_CODES = {
  /** The database (or the handle the call was made on) has been closed. */
  EMDB_CLOSED: "the database is closed",
  /** Another handle, in this process or another, holds the database's lock file. */
  EMDB_LOCK_BUSY: "the database is locked by another handle",
  /** A file's bytes do not decode; the error's `offset` says where. */
  EMDB_CORRUPTED: "the database file is corrupted",
  /** The file does not start with any magic number emdb knows. */
  EMDB_MAGIC_MISMATCH: "the file is not an emdb database",
  /** The magic is known but the format version is not. */
  EMDB_VERSION_MISMATCH: "unsupported format version",
  /** A key is longer than `MAX_KEY_SIZE` bytes (a quarter of the page, for pages under 4 KiB). */
  EMDB_KEY_TOO_LARGE: "key too large",
  /** A value is longer than `MAX_VALUE_SIZE` bytes. */
  EMDB_VALUE_TOO_LARGE: "value too large",
  /** A builder option or flush policy is invalid, or an injected clock gave a bad reading. */
  EMDB_INVALID_CONFIG: "invalid configuration",
  /** A group prefix or focus key is empty or has an empty dotted segment. */
  EMDB_INVALID_PATH: "invalid dotted path",
  /** An expiry time is past the latest a JS Date holds (8.64e15 ms since 1970). */
  EMDB_TTL_OVERFLOW: "ttl overflow",
  /** Thrown by user code to roll a transaction back; emdb rethrows it unchanged. */
  EMDB_TRANSACTION_ABORTED: "transaction aborted",
  /** A transaction handle was used after its callback returned. */
  EMDB_TRANSACTION_CLOSED: "the transaction has already finished",
  /** An operating-system I/O call failed; `cause` holds the original error. */
  EMDB_IO: "i/o error",
  /**
   * A write, `flush`, `compact` or `close` was called while `compact()` runs, from its
   * `onProgress` listener: a write then could be lost in a crash. Or a write through the
   * database, or a nested `transaction`, inside a transaction's callback: it would not be
   * part of the transaction. Reads are allowed in both.
   */
  EMDB_BUSY: "the database is busy (compacting, or in a transaction's callback)",
} as const;

export type EmdbErrorCode = keyof typeof ERROR_CODES;

export interface EmdbErrorOptions {
  /** Byte offset in the file where the problem was found (`EMDB_CORRUPTED`). */
  offset?: number;
  /** The file the problem was found in. */
  file?: string;
  /** The underlying error, when there is one. */
  cause?: unknown;
}

export class EmdbError extends Error {
  readonly code: EmdbErrorCode;
  readonly offset: number | undefined;
  readonly file: string | undefined;

  constructor(code: EmdbErrorCode, message?: string, options: EmdbErrorOptions = {}) {
    const detail = message ?? ERROR_CODES[code] ?? code;
    super(
      `${code}: ${detail}${options.file !== undefined ? ` (${options.file}${options.offset !== undefined ? ` at offset ${options.offset}` : ""})` : options.offset !== undefined ? ` (at offset ${options.offset})` : ""}`,
      options.cause !== undefined ? { cause: options.cause } : undefined,
    );
    this.name = "EmdbError";
    this.code = code;
    this.offset = options.offset;
    this.file = options.file;
  }
}

/** True when `err` is an `EmdbError`, optionally with the given code. */
export function isEmdbError(err: unknown, code?: EmdbErrorCode): err is EmdbError {
  return err instanceof EmdbError && (code === undefined || err.code === code);
}

export function corrupted(reason: string, offset: number, file?: string): EmdbError {
  return new EmdbError(
    "EMDB_CORRUPTED",
    reason,
    file !== undefined ? { offset, file } : { offset },
  );
}
