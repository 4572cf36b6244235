/**
 * Writes emdb-rs legacy logs (format v1/v2, reference §1.1–1.2) for tests and benchmarks only.
 * Never imported by `src/` or `migrations/`: emdb does not write this format. It is written
 * from the reference tables independently of the reader, so a shared misreading would show.
 *
 * Header (64 bytes):
 *
 * | Offset | Size | Field                                  |
 * |--------|------|----------------------------------------|
 * | 0      | 8    | magic `45 4D 44 42 00 00 00 00`        |
 * | 8      | 4    | u32 version                            |
 * | 12     | 4    | u32 flags (bit 0 ttl, bit 1 nested)    |
 * | 16     | 8    | u64 created_at                         |
 * | 24     | 8    | zero                                   |
 * | 32     | 8    | u64 last_tx_id                         |
 * | 40     | 24   | zero                                   |
 *
 * Record: u32 L | payload (u8 kind, u64 timestamp, body) | u32 CRC-32 of the payload.
 */
import * as fs from "node:fs";
import { crc32 } from "node:zlib";

export interface LogHeaderSpec {
  /** Written as given, so tests can also write unsupported versions. Default 2. */
  version?: number;
  /** Default 1 (ttl). */
  flags?: number;
  createdAt?: number;
  lastTxId?: number;
}

type Bytes = Buffer | string;

export type LogOp =
  /** `expiresAt` undefined writes a non-ttl Insert (no field); a number (0 = none) writes the field. */
  | { op: "insert"; key: Bytes; value: Bytes; expiresAt?: number }
  | { op: "remove"; key: Bytes }
  | { op: "clear" }
  | { op: "checkpoint"; count: number }
  | { op: "batchBegin"; txId: number; opCount: number }
  | { op: "batchEnd"; txId: number };

const KIND = { insert: 0, remove: 1, clear: 2, checkpoint: 3, batchBegin: 4, batchEnd: 5 } as const;

function bytes(b: Bytes): Buffer {
  return typeof b === "string" ? Buffer.from(b, "utf8") : b;
}

function putU64(buf: Buffer, v: number, at: number): void {
  buf.writeBigUInt64LE(BigInt(v), at);
}

export function encodeLogHeader(spec: LogHeaderSpec = {}): Buffer {
  const h = Buffer.alloc(64);
  h.write("EMDB", 0, "latin1");
  h.writeUInt32LE(spec.version ?? 2, 8);
  h.writeUInt32LE(spec.flags ?? 1, 12);
  putU64(h, spec.createdAt ?? 1_795_235_567_000, 16);
  putU64(h, spec.lastTxId ?? 0, 32);
  return h;
}

function payloadLength(op: LogOp): number {
  switch (op.op) {
    case "insert":
      return (
        17 + bytes(op.key).length + bytes(op.value).length + (op.expiresAt === undefined ? 0 : 8)
      );
    case "remove":
      return 13 + bytes(op.key).length;
    case "clear":
      return 9;
    case "checkpoint":
      return 13;
    case "batchBegin":
      return 21;
    case "batchEnd":
      return 17;
  }
}

/** Encodes `op` at `buf[at..]`; returns the record size. `buf` must have room for it. */
function encodeInto(buf: Buffer, at: number, op: LogOp, timestamp: number): number {
  const len = payloadLength(op);
  buf.writeUInt32LE(len, at);
  const p0 = at + 4;
  buf[p0] = KIND[op.op];
  putU64(buf, timestamp, p0 + 1);
  let p = p0 + 9;
  const put = (b: Buffer) => {
    buf.writeUInt32LE(b.length, p);
    b.copy(buf, p + 4);
    p += 4 + b.length;
  };
  switch (op.op) {
    case "insert":
      put(bytes(op.key));
      put(bytes(op.value));
      if (op.expiresAt !== undefined) {
        putU64(buf, op.expiresAt, p);
        p += 8;
      }
      break;
    case "remove":
      put(bytes(op.key));
      break;
    case "clear":
      break;
    case "checkpoint":
      buf.writeUInt32LE(op.count, p);
      p += 4;
      break;
    case "batchBegin":
      putU64(buf, op.txId, p);
      buf.writeUInt32LE(op.opCount, p + 8);
      p += 12;
      break;
    case "batchEnd":
      putU64(buf, op.txId, p);
      p += 8;
      break;
  }
  buf.writeUInt32LE(crc32(buf.subarray(p0, p)), p);
  return len + 8;
}

export function encodeRecord(op: LogOp, timestamp = 1_795_235_567_000): Buffer {
  const buf = Buffer.alloc(payloadLength(op) + 8);
  encodeInto(buf, 0, op, timestamp);
  return buf;
}

/** Frames an arbitrary payload (for malformed-record tests): length, payload, CRC. */
export function frameRawPayload(payload: Buffer): Buffer {
  const out = Buffer.alloc(payload.length + 8);
  out.writeUInt32LE(payload.length, 0);
  payload.copy(out, 4);
  out.writeUInt32LE(crc32(payload), 4 + payload.length);
  return out;
}

/** A whole log in memory, with the absolute offset of every record. */
export function buildLog(
  spec: LogHeaderSpec,
  ops: Iterable<LogOp>,
): { bytes: Buffer; offsets: number[] } {
  const parts = [encodeLogHeader(spec)];
  const offsets: number[] = [];
  let at = 64;
  for (const op of ops) {
    const r = encodeRecord(op);
    offsets.push(at);
    parts.push(r);
    at += r.length;
  }
  return { bytes: Buffer.concat(parts), offsets };
}

/** Streams a log to a file through a 1 MiB buffer, so millions of records never sit in memory. */
export class LogFileWriter {
  private readonly fd: number;
  private buf = Buffer.allocUnsafe(1 << 20);
  private used = 0;
  private position = 0;
  /** Bytes written so far (header included). */
  get size(): number {
    return this.position + this.used;
  }

  constructor(
    path: string,
    spec: LogHeaderSpec = {},
    private readonly timestamp = 1_795_235_567_000,
  ) {
    this.fd = fs.openSync(path, "w");
    this.appendRaw(encodeLogHeader(spec));
  }

  append(op: LogOp): void {
    const need = payloadLength(op) + 8;
    this.reserve(need);
    this.used += encodeInto(this.buf, this.used, op, this.timestamp);
  }

  appendRaw(data: Buffer): void {
    this.reserve(data.length);
    data.copy(this.buf, this.used);
    this.used += data.length;
  }

  close(): void {
    this.drain();
    fs.closeSync(this.fd);
  }

  private reserve(n: number): void {
    if (this.used + n <= this.buf.length) return;
    this.drain();
    if (n > this.buf.length) this.buf = Buffer.allocUnsafe(n);
  }

  private drain(): void {
    let done = 0;
    while (done < this.used) {
      done += fs.writeSync(this.fd, this.buf, done, this.used - done, this.position + done);
    }
    this.position += this.used;
    this.used = 0;
  }
}

/** Writes a whole log to `path` through `LogFileWriter`; returns the file size. */
export function writeLogFile(path: string, spec: LogHeaderSpec, ops: Iterable<LogOp>): number {
  const w = new LogFileWriter(path, spec);
  for (const op of ops) w.append(op);
  w.close();
  return w.size;
}

/** Shorthands for building op lists in tests. */
export const ins = (key: Bytes, value: Bytes, expiresAt?: number): LogOp =>
  expiresAt === undefined ? { op: "insert", key, value } : { op: "insert", key, value, expiresAt };
export const rm = (key: Bytes): LogOp => ({ op: "remove", key });
export const begin = (txId: number, opCount: number): LogOp => ({
  op: "batchBegin",
  txId,
  opCount,
});
export const end = (txId: number): LogOp => ({ op: "batchEnd", txId });
