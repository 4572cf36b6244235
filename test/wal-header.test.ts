import assert from "node:assert/strict";
import { test } from "node:test";
import { xxh32 } from "@node-rs/xxhash";
import { isEmdbError } from "../src/errors.js";
import {
  decodeWalHeader,
  encodeWalHeader,
  WAL_HEADER_SIZE,
  WAL_VERSION,
} from "../src/wal/header.js";

const fileId = Buffer.from("0123456789abcdef", "latin1");

function reseal(buf: Buffer): Buffer {
  buf.writeUInt32LE(xxh32(buf.subarray(0, 60)), 60);
  return buf;
}

test("header round-trips and matches its documented layout", () => {
  for (const generation of [0, 1, 0xffff_ffff, 2 ** 32, 2 ** 53 - 1]) {
    const bytes = encodeWalHeader(fileId, generation);
    assert.equal(bytes.length, WAL_HEADER_SIZE);
    assert.equal(bytes.toString("latin1", 0, 8), "EMDBWAL\0");
    assert.equal(bytes.readUInt32LE(8), WAL_VERSION);
    assert.deepEqual(bytes.subarray(16, 32), fileId);
    assert.deepEqual(bytes.subarray(12, 16), Buffer.alloc(4));
    assert.deepEqual(bytes.subarray(40, 60), Buffer.alloc(20));
    const h = decodeWalHeader(bytes);
    assert.equal(h.generation, generation);
    assert.deepEqual(h.fileId, fileId);
    assert.equal(h.version, 1);
    assert.equal(h.checksum, bytes.readUInt32LE(60));
  }
});

test("headers of different generations or files have different checksums (record seeds)", () => {
  const a = decodeWalHeader(encodeWalHeader(fileId, 5)).checksum;
  const b = decodeWalHeader(encodeWalHeader(fileId, 6)).checksum;
  const c = decodeWalHeader(encodeWalHeader(Buffer.alloc(16), 5)).checksum;
  assert.notEqual(a, b);
  assert.notEqual(a, c);
});

test("every single-bit flip is rejected as corruption (a flipped version byte is damage, not a new format)", () => {
  const good = encodeWalHeader(fileId, 42);
  for (let byte = 0; byte < WAL_HEADER_SIZE; byte++) {
    for (let bit = 0; bit < 8; bit++) {
      const bad = Buffer.from(good);
      bad[byte]! ^= 1 << bit;
      assert.throws(
        () => decodeWalHeader(bad, "x.wal"),
        (err) => isEmdbError(err, "EMDB_CORRUPTED") && err.offset === 0 && err.file === "x.wal",
        `flip of byte ${byte} bit ${bit}`,
      );
    }
  }
});

test("an unknown version is a version mismatch even with a valid checksum", () => {
  const bytes = encodeWalHeader(fileId, 1);
  bytes.writeUInt32LE(2, 8);
  assert.throws(
    () => decodeWalHeader(reseal(bytes)),
    (e) => isEmdbError(e, "EMDB_VERSION_MISMATCH"),
  );
});

test("a generation above 2^53 is corruption, not a rounded number", () => {
  const bytes = encodeWalHeader(fileId, 1);
  bytes.writeUInt32LE(0xffff_ffff, 32);
  bytes.writeUInt32LE(0xffff_ffff, 36);
  assert.throws(
    () => decodeWalHeader(reseal(bytes)),
    (e) => isEmdbError(e, "EMDB_CORRUPTED"),
  );
});

test("short input, wrong fileId size and bad generations are refused", () => {
  assert.throws(
    () => decodeWalHeader(Buffer.alloc(63)),
    (e) => isEmdbError(e, "EMDB_CORRUPTED"),
  );
  assert.throws(() => encodeWalHeader(Buffer.alloc(15), 1), RangeError);
  assert.throws(() => encodeWalHeader(fileId, -1), RangeError);
  assert.throws(() => encodeWalHeader(fileId, 1.5), RangeError);
  assert.throws(() => encodeWalHeader(fileId, 2 ** 53), RangeError);
});
