/**
 * The one little-endian codec every on-disk structure uses.
 *
 * u64 fields are carried as JS numbers: emdb never stores a value above 2^53 - 1 (page ids,
 * offsets, tx ids and millisecond timestamps all stay far below it), and a u64 above that on
 * disk is reported as corruption rather than silently rounded.
 */
import { corrupted } from "./errors.js";

const TWO_32 = 0x1_0000_0000;

export function writeU64(buf: Buffer, value: number, offset: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`u64 field out of range: ${value}`);
  }
  buf.writeUInt32LE(value % TWO_32, offset);
  buf.writeUInt32LE(Math.floor(value / TWO_32), offset + 4);
}

/** Reads a u64; returns -1 when it does not fit in a safe integer (callers report corruption). */
export function readU64(buf: Buffer, offset: number): number {
  const lo = buf.readUInt32LE(offset);
  const hi = buf.readUInt32LE(offset + 4);
  if (hi >= 0x20_0000) return -1;
  return hi * TWO_32 + lo;
}

/**
 * Bounds-checked reader over a byte range. Every failure is an `EMDB_CORRUPTED` error that
 * names the absolute file offset (`base + position`), so a decoder never throws a RangeError
 * from Buffer and never reads past its record.
 */
export class ByteReader {
  pos: number;

  constructor(
    readonly buf: Buffer,
    start = 0,
    readonly end = buf.length,
    /** Absolute file offset of `buf[0]`, for error messages. */
    readonly base = 0,
    readonly file?: string,
  ) {
    this.pos = start;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  fail(reason: string, at = this.pos): never {
    throw corrupted(reason, this.base + at, this.file);
  }

  need(n: number, what: string): void {
    if (n < 0 || this.pos + n > this.end) this.fail(`${what} runs past the end of its record`);
  }

  u8(what = "u8"): number {
    this.need(1, what);
    return this.buf[this.pos++]!;
  }

  u16(what = "u16"): number {
    this.need(2, what);
    const v = this.buf.readUInt16LE(this.pos);
    this.pos += 2;
    return v;
  }

  u32(what = "u32"): number {
    this.need(4, what);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  u64(what = "u64"): number {
    this.need(8, what);
    const v = readU64(this.buf, this.pos);
    if (v < 0) this.fail(`${what} is larger than 2^53`);
    this.pos += 8;
    return v;
  }

  /** A view (not a copy) of the next `n` bytes. */
  bytes(n: number, what = "bytes"): Buffer {
    this.need(n, what);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
}

/**
 * Copies `length` bytes of `src` from `start` into `dst` at `at`. For a key's worth of bytes
 * a plain loop is cheaper than `Buffer.copy`, whose argument checks and temporary view cost
 * more than the copy itself; past 48 bytes `Buffer.copy` wins.
 */
export function copyBytes(
  src: Buffer,
  start: number,
  dst: Buffer,
  at: number,
  length: number,
): void {
  if (length < 48) {
    for (let j = 0; j < length; j++) dst[at + j] = src[start + j]!;
  } else {
    src.copy(dst, at, start, start + length);
  }
}
