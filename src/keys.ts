/**
 * Keys and values at the API boundary.
 *
 * Inside emdb a key is a *latin1 string*: one char per key byte (0..255). Two reasons:
 * a V8 Map can only look a key up by value if it is a primitive, and JS string comparison
 * (`<`) on such strings is exactly unsigned byte order, which is the order emdb promises.
 * ASCII string keys (the common case) are already in that form, so they need no conversion.
 *
 * Values are latin1 strings inside emdb too. A 100-byte value is then one string in the V8
 * heap, about 120 bytes, where a Buffer of its own costs an object of about 96 bytes plus its
 * bytes in an allocation pool outside the heap: at a million values, about 80 MiB less, and
 * no pools for the collector to free. A value is copied in once (`encodeValue`) and out at
 * each read (`valueOut`), as it was with Buffers: the caller never holds stored bytes.
 */
import { maxKeySize } from "./btree/limits.js";
import { EmdbError } from "./errors.js";

/** The longest key, in bytes, that emdb accepts (chosen so a 4 KB page holds several). */
export const MAX_KEY_SIZE = 1024;

/**
 * The longest key a database with pages of `pageSize` bytes accepts: `MAX_KEY_SIZE`, or a
 * quarter of the page when pages are under 4 KiB (`btree/limits.ts`).
 */
export function keyLimit(pageSize: number): number {
  return Math.min(MAX_KEY_SIZE, maxKeySize(pageSize));
}
/** The largest value, in bytes, that emdb accepts. */
export const MAX_VALUE_SIZE = 256 * 1024 * 1024;

export type Key = string | Uint8Array;
export type Value = string | Uint8Array;

/** Hash of the last key encoded by `encodeKey`: computed in the same pass, read at once. */
export let keyHash = 0;

/** EMDB_KEY_TOO_LARGE for a key of `size` bytes where at most `max` are accepted. */
export function keyTooLarge(size: number, max = MAX_KEY_SIZE): EmdbError {
  const why = max === MAX_KEY_SIZE ? "MAX_KEY_SIZE" : `a quarter of this database's page size`;
  return new EmdbError(
    "EMDB_KEY_TOO_LARGE",
    `key is ${size} bytes; the maximum is ${max} (${why})`,
  );
}

/**
 * Converts a user key to its internal latin1 form and sets `keyHash` (FNV-1a over the
 * key bytes). Throws TypeError for a wrong type, EMDB_KEY_TOO_LARGE past `MAX_KEY_SIZE`.
 * `store`: the key may be kept (an insert), so it must not be a view of a larger string.
 */
export function encodeKey(key: unknown, store = false): string {
  if (typeof key === "string") {
    const n = key.length;
    let h = 0x811c9dc5;
    for (let i = 0; i < n; i++) {
      const c = key.charCodeAt(i);
      if (c > 0x7f) return encodeUtf8Key(key);
      h = Math.imul(h ^ c, 0x01000193);
    }
    if (n > MAX_KEY_SIZE) throw keyTooLarge(n);
    keyHash = h;
    return store ? ownString(key) : key;
  }
  if (key instanceof Uint8Array) {
    const n = key.length;
    if (n > MAX_KEY_SIZE) throw keyTooLarge(n);
    keyHash = hashKeyBytes(key, 0, n);
    return toLatin1(key);
  }
  throw new TypeError(`key must be a string or a Uint8Array, got ${describe(key)}`);
}

function encodeUtf8Key(key: string): string {
  const bytes = Buffer.from(key, "utf8");
  return encodeKey(bytes);
}

interface Latin1Slicer {
  latin1Slice(start: number, end: number): string;
}

/** `buf[start..end)` as a latin1 string, without a view or `toString`'s encoding lookup. */
export function latin1Slice(buf: Buffer, start: number, end: number): string {
  return (buf as unknown as Latin1Slicer).latin1Slice(start, end);
}

/**
 * V8 represents a substring or a concatenation of 13 chars or more as a view of its parts (a
 * sliced or a cons string). Kept in the index, such a view would keep its parent alive: a
 * whole file's text, for a key or a value split out of it. Strings that may be views are
 * copied before they are stored; shorter ones are always flat.
 */
const MIN_VIEW_LENGTH = 13;

/** A latin1 string that is safe to keep: `s` itself when short, else a flat copy. */
function ownString(s: string): string {
  return s.length < MIN_VIEW_LENGTH ? s : toLatin1(Buffer.from(s, "latin1"));
}

/** Bytes → latin1 string; Buffers have a direct native path (60 ns cheaper per key). */
export function toLatin1(bytes: Uint8Array): string {
  if (Buffer.isBuffer(bytes)) return latin1Slice(bytes, 0, bytes.length);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("latin1");
}

/** Hash of the key `buf[start..end)`; equal to what `encodeKey` computes for those bytes. */
export function hashKeyBytes(buf: Uint8Array, start: number, end: number): number {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
  return h;
}

/** Hash of an internal (latin1) key; equal to what `encodeKey` computed for it. */
export function hashInternalKey(k: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < k.length; i++) h = Math.imul(h ^ k.charCodeAt(i), 0x01000193);
  return h;
}

/** Internal key → the Buffer users see: a copy of its bytes, made as `valueOut` makes one. */
export function keyToBuffer(k: string): Buffer {
  return valueOut(k);
}

/**
 * A user value in its internal latin1 form (see the file comment): a copy emdb owns, so later
 * changes to the caller's array cannot reach the database. A string value is stored as its
 * UTF-8 bytes; ASCII text already is that form (copied only when it may be a view, see
 * `ownString`). Throws TypeError for a wrong type, EMDB_VALUE_TOO_LARGE past `MAX_VALUE_SIZE`.
 */
export function encodeValue(value: unknown): string {
  if (typeof value === "string") {
    const bytes = Buffer.byteLength(value, "utf8");
    if (bytes > MAX_VALUE_SIZE) throw valueTooLarge(bytes);
    return bytes === value.length ? ownString(value) : toLatin1(Buffer.from(value, "utf8"));
  }
  if (value instanceof Uint8Array) {
    if (value.length > MAX_VALUE_SIZE) throw valueTooLarge(value.length);
    return toLatin1(value);
  }
  throw new TypeError(`value must be a string or a Uint8Array, got ${describe(value)}`);
}

function valueTooLarge(size: number): EmdbError {
  return new EmdbError(
    "EMDB_VALUE_TOO_LARGE",
    `value is ${size} bytes; the maximum is ${MAX_VALUE_SIZE} (MAX_VALUE_SIZE)`,
  );
}

/**
 * A stored value as the Buffer the caller gets: a copy of its bytes. `latin1Write` into an
 * unsafe allocation skips the encoding lookup of `Buffer.from(s, "latin1")`.
 */
export function valueOut(v: string): Buffer {
  const out = Buffer.allocUnsafe(v.length);
  writeLatin1(out, v, 0);
  return out;
}

interface Latin1Writer {
  latin1Write(s: string, offset: number, length: number): number;
}

/**
 * Writes a latin1 string's bytes at `buf[offset..]` (the caller makes room); returns the
 * count. Node's `latin1Write`, missing from @types/node, skips `buf.write`'s encoding lookup.
 */
export function writeLatin1(buf: Buffer, s: string, offset: number): number {
  return (buf as unknown as Latin1Writer).latin1Write(s, offset, s.length);
}

export function describe(x: unknown): string {
  if (x === null) return "null";
  if (Array.isArray(x)) return "an array";
  if (typeof x === "object") return `an object (${(x as object).constructor?.name ?? "Object"})`;
  return typeof x;
}

/**
 * Converts a range bound to internal form. Unlike keys, bounds have no length limit: a
 * bound only needs to compare.
 */
export function encodeBound(bound: unknown, name: string): string {
  if (typeof bound === "string") {
    for (let i = 0; i < bound.length; i++) {
      if (bound.charCodeAt(i) > 0x7f) return Buffer.from(bound, "utf8").toString("latin1");
    }
    return bound;
  }
  if (bound instanceof Uint8Array) return toLatin1(bound);
  throw new TypeError(
    `range option ${name} must be a string or a Uint8Array, got ${describe(bound)}`,
  );
}
