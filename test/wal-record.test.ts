import assert from "node:assert/strict";
import { test } from "node:test";
import { xxh32 } from "@node-rs/xxhash";
import fc from "fast-check";
import { isEmdbError } from "../src/errors.js";
import {
  decodeRecord,
  encodePut,
  encodeRecord,
  plausibleFrame,
  RECORD_OVERHEAD,
  WAL_MAX_KEY_BYTES,
  type WalEntry,
} from "../src/wal/record.js";

const SEED = 0x9e37_79b9;

function reseal(buf: Buffer, seed = SEED): Buffer {
  buf.writeUInt32LE(xxh32(buf.subarray(0, buf.length - 4), seed), buf.length - 4);
  return buf;
}

function isCorrupted(offset?: number, message?: RegExp) {
  return (err: unknown) =>
    isEmdbError(err, "EMDB_CORRUPTED") &&
    (offset === undefined || err.offset === offset) &&
    (message === undefined || message.test(err.message));
}

const samples: { entry: WalEntry; size: number }[] = [
  {
    entry: { kind: "put", key: "user:1", value: Buffer.from("james"), expiresAt: 0 },
    size: 17 + 14 + 6 + 5,
  },
  {
    entry: {
      kind: "put",
      key: "\u0000\u00ff".repeat(512),
      value: Buffer.alloc(0),
      expiresAt: 2 ** 53 - 1,
    },
    size: 17 + 14 + 1024,
  },
  { entry: { kind: "put", key: "", value: Buffer.alloc(300, 1), expiresAt: 1 }, size: 331 },
  { entry: { kind: "delete", key: "user:1" }, size: 17 + 2 + 6 },
  { entry: { kind: "delete", key: "" }, size: 19 },
  { entry: { kind: "clear" }, size: 17 },
  { entry: { kind: "batch-begin", txId: 7, opCount: 3 }, size: 29 },
  { entry: { kind: "batch-begin", txId: 2 ** 53 - 1, opCount: 0xffff_ffff }, size: 29 },
  { entry: { kind: "batch-end", txId: 7, opCount: 3 }, size: 29 },
  // Every test below writes samples at LSN 2 or later: a Synced record names an earlier one.
  { entry: { kind: "synced", upTo: 1 }, size: 25 },
];

test("every kind round-trips at its documented size", () => {
  for (const { entry, size } of samples) {
    for (const lsn of [2, 2 ** 32 + 5, 2 ** 53 - 1]) {
      const bytes = encodeRecord(lsn, entry, SEED);
      assert.equal(bytes.length, size, entry.kind);
      assert.equal(bytes.readUInt32LE(0), size - RECORD_OVERHEAD);
      const decoded = decodeRecord(bytes, 0, bytes.length, SEED);
      assert.equal(decoded.lsn, lsn);
      assert.deepEqual(decoded.entry, entry);
    }
  }
});

test("the frame layout: length, lsn, kind, body, checksum over all of them", () => {
  const bytes = encodeRecord(0x1_0000_0002, { kind: "delete", key: "ab" }, SEED);
  assert.deepEqual(
    bytes.subarray(0, 17),
    Buffer.from([4, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 2, 0, 0x61, 0x62]),
  );
  assert.equal(bytes.readUInt32LE(17), xxh32(bytes.subarray(0, 17), SEED));
});

// fc.record builds null-prototype objects; spread them so deepStrictEqual compares like for like.
const arbOp: fc.Arbitrary<WalEntry> = fc.oneof(
  fc
    .record({
      kind: fc.constant("put" as const),
      key: fc
        .uint8Array({ maxLength: WAL_MAX_KEY_BYTES })
        .map((b) => Buffer.from(b).toString("latin1")),
      value: fc.uint8Array({ maxLength: 2000 }).map((b) => Buffer.from(b)),
      expiresAt: fc.oneof(fc.constant(0), fc.maxSafeNat()),
    })
    .map((r) => ({ ...r })),
  fc
    .record({
      kind: fc.constant("delete" as const),
      key: fc
        .uint8Array({ maxLength: WAL_MAX_KEY_BYTES })
        .map((b) => Buffer.from(b).toString("latin1")),
    })
    .map((r) => ({ ...r })),
  fc.constant({ kind: "clear" as const }),
  fc
    .record({
      kind: fc.constantFrom("batch-begin" as const, "batch-end" as const),
      txId: fc.maxSafeNat(),
      opCount: fc.nat({ max: 0xffff_ffff }),
    })
    .map((r) => ({ ...r })),
);

test("random records round-trip under any seed and LSN (fast-check)", () => {
  fc.assert(
    fc.property(arbOp, fc.integer({ min: 1, max: 2 ** 53 - 1 }), fc.nat(), (entry, lsn, seed) => {
      const bytes = encodeRecord(lsn, entry, seed);
      assert.deepEqual(decodeRecord(bytes, 0, bytes.length, seed), { lsn, entry });
    }),
    { numRuns: 300 },
  );
});

test("a latin1 string key and the same bytes as a Buffer encode identically", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ maxLength: 64 }), (k, v) => {
      const key = Buffer.from(k);
      const a = Buffer.alloc(200);
      const b = Buffer.alloc(200);
      const endA = encodePut(a, 3, 9, key.toString("latin1"), v, 5, SEED);
      const endB = encodePut(b, 3, 9, key, v, 5, SEED);
      assert.equal(endA, endB);
      assert.deepEqual(a, b);
    }),
  );
});

test("decoding a record inside a larger buffer reports absolute offsets", () => {
  const rec = encodeRecord(3, { kind: "delete", key: "k" }, SEED);
  const buf = Buffer.concat([Buffer.alloc(10, 0xee), rec, Buffer.alloc(5, 0xee)]);
  assert.deepEqual(decodeRecord(buf, 10, 10 + rec.length, SEED, 1000).entry, {
    kind: "delete",
    key: "k",
  });
  rec[14]! ^= 1;
  const damaged = Buffer.concat([Buffer.alloc(10), rec]);
  assert.throws(() => decodeRecord(damaged, 10, damaged.length, SEED, 1000), isCorrupted(1010));
});

test("every truncation of every kind is rejected", () => {
  for (const { entry } of samples) {
    const bytes = encodeRecord(2, entry, SEED);
    for (let n = 0; n < bytes.length; n++) {
      assert.throws(
        () => decodeRecord(bytes, 0, n, SEED),
        isCorrupted(0),
        `${entry.kind} cut at ${n}`,
      );
    }
  }
});

test("every single-bit flip of every kind is rejected", () => {
  for (const { entry } of samples.slice(0, 1).concat(samples.slice(3))) {
    const good = encodeRecord(2, entry, SEED);
    decodeRecord(good, 0, good.length, SEED);
    for (let i = 0; i < good.length * 8; i++) {
      const bad = Buffer.from(good);
      bad[i >> 3]! ^= 1 << (i & 7);
      assert.throws(() => decodeRecord(bad, 0, bad.length, SEED), isEmdbError, `bit ${i}`);
    }
  }
});

test("a record checksummed under another header's seed is rejected", () => {
  const bytes = encodeRecord(1, { kind: "clear" }, SEED);
  assert.throws(() => decodeRecord(bytes, 0, bytes.length, SEED + 1), isCorrupted(0, /checksum/));
});

test("an unknown kind is rejected even under a valid checksum", () => {
  for (const kind of [0, 7, 0x7f, 0xff]) {
    const bytes = encodeRecord(1, { kind: "clear" }, SEED);
    bytes[12] = kind;
    assert.throws(
      () => decodeRecord(reseal(bytes), 0, bytes.length, SEED, 100),
      isCorrupted(112, /unknown record kind/),
    );
  }
});

test("a Synced record under a valid checksum must name an earlier LSN", () => {
  const at = (lsn: number, upTo: number) => encodeRecord(lsn, { kind: "synced", upTo }, SEED);
  assert.deepEqual(decodeRecord(at(9, 8), 0, 25, SEED).entry, { kind: "synced", upTo: 8 });
  for (const [lsn, upTo] of [
    [9, 9],
    [9, 10],
    [9, 0],
  ] as const) {
    assert.throws(
      () => decodeRecord(at(lsn, upTo), 0, 25, SEED),
      isCorrupted(undefined, new RegExp(`Synced record \\(LSN ${lsn}\\) names LSN ${upTo}`)),
    );
  }
});

test("trailing bytes after the record and inside its body are rejected", () => {
  const rec = encodeRecord(1, { kind: "delete", key: "abc" }, SEED);
  const extra = Buffer.concat([rec, Buffer.alloc(1)]);
  assert.throws(
    () => decodeRecord(extra, 0, extra.length, SEED),
    isCorrupted(rec.length, /trailing/),
  );

  // Body one byte longer than its fields, with a valid checksum over everything.
  const body = Buffer.concat([
    rec.subarray(0, rec.length - 4),
    Buffer.from([0x7a]),
    Buffer.alloc(4),
  ]);
  body.writeUInt32LE(rec.readUInt32LE(0) + 1, 0);
  assert.throws(
    () => decodeRecord(reseal(body), 0, body.length, SEED),
    isCorrupted(undefined, /trailing/),
  );

  const clear = encodeRecord(1, { kind: "clear" }, SEED);
  const longClear = Buffer.concat([clear.subarray(0, 13), Buffer.alloc(2), Buffer.alloc(4)]);
  longClear.writeUInt32LE(2, 0);
  assert.throws(() => decodeRecord(reseal(longClear), 0, longClear.length, SEED), isCorrupted());
});

test("inconsistent field lengths under a valid checksum are rejected", () => {
  // valueLen says one byte more than the body holds
  const put = encodeRecord(
    1,
    { kind: "put", key: "k", value: Buffer.from("vv"), expiresAt: 0 },
    SEED,
  );
  put.writeUInt32LE(3, 13 + 2 + 1 + 8);
  assert.throws(
    () => decodeRecord(reseal(put), 0, put.length, SEED),
    isCorrupted(undefined, /value/),
  );
  // keyLen over the maximum
  const del = encodeRecord(1, { kind: "delete", key: "x".repeat(1030) }, SEED);
  assert.throws(() => decodeRecord(del, 0, del.length, SEED), isCorrupted(undefined, /key length/));
  // an LSN above 2^53
  const clear = encodeRecord(1, { kind: "clear" }, SEED);
  clear.writeUInt32LE(0xffff_ffff, 8);
  assert.throws(
    () => decodeRecord(reseal(clear), 0, clear.length, SEED),
    isCorrupted(undefined, /lsn/),
  );
});

test("encoders refuse fields the format cannot hold", () => {
  assert.throws(
    () => encodeRecord(1, { kind: "put", key: "k", value: Buffer.alloc(0), expiresAt: -1 }, SEED),
    RangeError,
  );
  assert.throws(
    () => encodeRecord(1, { kind: "put", key: "k", value: Buffer.alloc(0), expiresAt: 0.5 }, SEED),
    RangeError,
  );
  assert.throws(
    () => encodeRecord(1, { kind: "batch-end", txId: 2 ** 53, opCount: 0 }, SEED),
    RangeError,
  );
  assert.throws(
    () => encodeRecord(1, { kind: "batch-end", txId: 1, opCount: 2 ** 32 }, SEED),
    RangeError,
  );
});

test("plausibleFrame accepts every real record in its LSN range and nothing outside it", () => {
  for (const { entry } of samples) {
    const bytes = encodeRecord(50, entry, SEED);
    const padded = Buffer.concat([bytes, Buffer.alloc(2000)]);
    assert.equal(plausibleFrame(padded, 0, padded.length, 50, 50), bytes.length, entry.kind);
    assert.equal(plausibleFrame(padded, 0, padded.length, 1, 49), -1);
    assert.equal(plausibleFrame(padded, 0, padded.length, 51, 99), -1);
    assert.equal(plausibleFrame(padded, 0, bytes.length - 1, 1, 99), -1, "past end of file");
    const badKind = Buffer.from(padded);
    badKind[12] = 9;
    assert.equal(plausibleFrame(badKind, 0, padded.length, 1, 99), -1);
  }
  assert.equal(plausibleFrame(Buffer.alloc(4096), 0, 4096, 0, 10), -1, "zeros are never a frame");
});
