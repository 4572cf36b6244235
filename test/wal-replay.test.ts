import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { xxh32 } from "@node-rs/xxhash";
import { isEmdbError } from "../src/errors.js";
import { FileBackend, MemoryBackend } from "../src/pager/backend.js";
import { decodeWalHeader, encodeWalHeader } from "../src/wal/header.js";
import { encodeRecord, putRecordSize, type WalDataOp, type WalEntry } from "../src/wal/record.js";
import { replayWal, type WalOp } from "../src/wal/replay.js";
import { WalWriter } from "../src/wal/writer.js";
import {
  appendStep,
  expectedPrefix,
  forSeeds,
  prng,
  randBytes,
  randInt,
  randomSteps,
  replayAll,
  type Step,
  syncedThenUnsynced,
  syncRecorded,
  type Written,
} from "./wal-model.js";

const WAL = "db.emdb.wal";
const fileId = Buffer.from("fedcba9876543210", "latin1");
const GEN = 3;
const expect = { fileId, generation: GEN };

function isCorrupted(offset?: number, message?: RegExp) {
  return (err: unknown) =>
    isEmdbError(err, "EMDB_CORRUPTED") &&
    (offset === undefined || err.offset === offset) &&
    (message === undefined || message.test(err.message));
}

/**
 * Writes `steps` into a fresh WAL, syncs, and returns the backend and the record map.
 * `syncEach`: a sync after every step, as `onEachWrite()` does, so every step after the first
 * starts with a Synced record covering the steps before it.
 */
function writeWal(
  steps: Step[],
  syncEach = false,
): { mem: MemoryBackend; written: Written[]; bytes: Buffer } {
  const mem = new MemoryBackend();
  const w = WalWriter.create(mem, WAL, fileId, GEN);
  const written: Written[] = [];
  for (const s of steps) {
    written.push(appendStep(w, s));
    if (syncEach) syncRecorded(w, written);
  }
  w.sync();
  w.close();
  return { mem, written, bytes: mem.bytes(WAL) };
}

function withBytes(bytes: Buffer): MemoryBackend {
  const mem = new MemoryBackend();
  mem.setBytes(WAL, bytes);
  return mem;
}

const neverCalled = () => assert.fail("onOp must not be called");

test("replays puts, deletes, clears and whole batches in order", () => {
  const steps: Step[] = [
    { kind: "put", key: "a", value: Buffer.from("1"), expiresAt: 0 },
    {
      kind: "batch",
      txId: 41,
      ops: [
        { kind: "put", key: "b", value: Buffer.from("2"), expiresAt: 1_700_000_000_000 },
        { kind: "delete", key: "a" },
      ],
    },
    { kind: "clear" },
    { kind: "batch", txId: 40, ops: [] },
    { kind: "delete", key: "zz" },
  ];
  const { mem, written, bytes } = writeWal(steps);
  const { result, ops } = replayAll(mem, WAL, expect);
  const e = expectedPrefix(written, bytes.length);
  assert.equal(result.status, "ok");
  assert.deepEqual(ops, e.ops);
  assert.equal(ops.length, 5);
  assert.equal(result.validEnd, bytes.length);
  assert.equal(result.fileSize, bytes.length);
  assert.equal(result.lastLsn, 9);
  assert.equal(result.records, 9);
  assert.equal(result.maxTxId, 41);
  assert.equal(result.tornTail, undefined);
  assert.equal(result.header?.generation, GEN);
});

test("torn at every byte offset (including inside an unfinished batch): exactly the complete prefix, and appends continue after it", () => {
  const steps: Step[] = [
    { kind: "put", key: "k1", value: Buffer.from("v1"), expiresAt: 0 },
    {
      kind: "batch",
      txId: 1,
      ops: [
        { kind: "put", key: "k2", value: Buffer.from("v2"), expiresAt: 99 },
        { kind: "delete", key: "k1" },
      ],
    },
    { kind: "delete", key: "k3" },
    { kind: "clear" },
    { kind: "batch", txId: 2, ops: [] },
    { kind: "put", key: "", value: Buffer.alloc(0), expiresAt: 0 },
    {
      kind: "batch",
      txId: 3,
      unfinished: true,
      ops: [{ kind: "put", key: "k4", value: Buffer.from("v4"), expiresAt: 0 }, { kind: "clear" }],
    },
  ];
  const { written, bytes } = writeWal(steps, true);
  const real = written.filter((w) => w.step.kind !== "synced");
  assert.ok(
    real.slice(1).every((w) => w.records[0]?.synced),
    "Synced records are cut too",
  );
  assert.equal(written.length, 2 * real.length - 1, "and so are those a sync ends with");
  let torn = 0;
  for (let cut = 0; cut <= bytes.length; cut++) {
    const mem = withBytes(bytes.subarray(0, cut));
    const { result, ops } = replayAll(mem, WAL, expect);
    if (cut < 64) {
      assert.equal(result.status, "empty-unbound", `cut ${cut}`);
      assert.equal(ops.length, 0);
      continue;
    }
    const e = expectedPrefix(written, cut);
    assert.equal(result.status, "ok", `cut ${cut}`);
    assert.deepEqual(ops, e.ops, `cut ${cut}`);
    assert.equal(result.validEnd, e.validEnd, `cut ${cut}`);
    assert.equal(result.lastLsn, e.lastLsn, `cut ${cut}`);
    assert.equal(result.records, e.records, `cut ${cut}`);
    assert.equal(result.maxTxId, e.maxTxId, `cut ${cut}`);
    // Zeros past the last record are the end of the log (the writer preallocates with
    // zeros), so a cut that leaves only zero bytes of the next record is no torn tail.
    if (cut > e.validEnd && !bytes.subarray(e.validEnd, cut).every((b) => b === 0)) {
      torn++;
      assert.ok(result.tornTail !== undefined, `cut ${cut}: torn tail reported`);
      assert.ok(result.tornTail.offset >= e.validEnd && result.tornTail.offset <= cut);
    } else {
      assert.equal(result.tornTail, undefined, `cut ${cut}`);
    }

    // Reopen after the replay: the torn bytes go, LSNs continue, the next replay sees both.
    const w = WalWriter.openAt(mem, WAL, result);
    assert.equal(w.size, e.validEnd);
    const lsn = w.appendPut("after", Buffer.from("x"), 0);
    // openAt synced the records kept: a Synced record saying so comes first.
    assert.equal(lsn, e.lastLsn + (e.lastLsn > 0 ? 2 : 1));
    w.sync();
    w.close();
    const again = replayAll(mem, WAL, expect);
    assert.deepEqual(again.ops, [
      ...e.ops,
      { kind: "put", key: "after", value: Buffer.from("x"), expiresAt: 0 },
    ]);
    assert.equal(again.result.tornTail, undefined);
  }
  assert.ok(torn > 100, "most cuts fall inside a record");
});

test("random single-byte damage under a sync per step: the exact prefix when the last step is hit, EMDB_CORRUPTED at the damaged record otherwise", () => {
  let tornCount = 0;
  let corruptCount = 0;
  forSeeds(1, 600, (seed) => {
    const rand = prng(seed);
    const { written, bytes } = writeWal(randomSteps(rand, randInt(rand, 1, 10)), true);
    const pos = rand() < 0.05 ? randInt(rand, 0, 63) : randInt(rand, 64, bytes.length - 1);
    const damaged = Buffer.from(bytes);
    damaged[pos]! ^= randInt(rand, 1, 255);
    const records = written.flatMap((w) => w.records);
    const hit = records.find((r) => r.offset <= pos && pos < r.end);
    const run = () => replayAll(withBytes(damaged), WAL, expect);
    if (hit === undefined) {
      // The header: any damage (the version field included) is corruption.
      assert.throws(run, (err) => isEmdbError(err, "EMDB_CORRUPTED"));
      return;
    }
    // The last step, and the Synced record the sync after it ended its write with.
    const tail = written.slice(written.length > 1 ? -2 : -1);
    if (tail.some((w) => w.records.includes(hit))) {
      // No Synced record follows to prove the last step was synced: a torn tail.
      tornCount++;
      const { result, ops } = run();
      const e = expectedPrefix(written, hit.offset);
      assert.deepEqual(ops, e.ops);
      assert.equal(result.validEnd, e.validEnd);
      assert.equal(result.tornTail?.offset, hit.offset);
    } else {
      corruptCount++;
      assert.throws(run, isCorrupted(hit.offset, /had been synced/));
    }
  });
  assert.ok(tornCount > 50 && corruptCount > 200, `${tornCount} torn, ${corruptCount} corrupt`);
});

test("damage before records that no Synced record covers is a torn tail: a power loss keeps unsynced sectors in any order", () => {
  let dropped = 0;
  let corrupt = 0;
  forSeeds(2000, 300, (seed) => {
    const rand = prng(seed);
    const mem = new MemoryBackend();
    const w = WalWriter.create(mem, WAL, fileId, GEN);
    const { written, syncedSize: synced } = syncedThenUnsynced(
      w,
      rand,
      randInt(rand, 1, 6),
      randInt(rand, 1, 8),
      0.5,
    );
    const bytes = mem.bytes(WAL).subarray(0, w.size);
    const pos = randInt(rand, 64, w.size - 1);
    const damaged = Buffer.from(bytes);
    // Lost (zeros, as preallocated) or damaged.
    if (rand() < 0.5) damaged.fill(0, pos, Math.min(pos + randInt(rand, 1, 600), w.size));
    else damaged[pos]! ^= randInt(rand, 1, 255);
    const first = damaged.findIndex((b, i) => b !== bytes[i]);
    if (first < 0) return;
    const records = written.flatMap((x) => x.records);
    const hit = records.find((r) => r.offset <= first && first < r.end)!;
    // Proof that the damaged record had been synced: an intact later Synced record reaching it.
    const proof = records.some(
      (r) =>
        r.synced &&
        r.offset >= hit.end &&
        damaged.subarray(r.offset, r.end).equals(bytes.subarray(r.offset, r.end)) &&
        bytes.readUInt32LE(r.offset + 13) >= hit.lsn,
    );
    // Damage to synced bytes is proven unless it also took every later Synced record.
    if (first < synced && first + 600 < synced) assert.ok(proof, `seed ${seed}`);
    if (proof) {
      corrupt++;
      assert.throws(
        () => replayAll(withBytes(damaged), WAL, expect),
        isCorrupted(hit.offset, /had been synced/),
      );
      return;
    }
    const { result, ops } = replayAll(withBytes(damaged), WAL, expect);
    const e = expectedPrefix(written, hit.offset);
    assert.deepEqual(ops, e.ops, `seed ${seed}`);
    assert.equal(result.validEnd, e.validEnd);
    if (first >= synced) assert.ok(e.validEnd >= synced, "every synced record is kept");
    if ((result.tornTail?.validAfter ?? 0) > 0) dropped++;
  });
  assert.ok(dropped > 50 && corrupt > 50, `${dropped} dropped valid records, ${corrupt} corrupt`);
});

test("damage that also takes the Synced record a commit starts with is proven by the one its sync ends with", () => {
  const put = (i: number): Step => ({
    kind: "put",
    key: `single${i}`,
    value: Buffer.alloc(40, i),
    expiresAt: 0,
  });
  const tx: Step = {
    kind: "batch",
    txId: 1,
    ops: Array.from({ length: 30 }, (_, i) => put(100 + i) as WalDataOp),
  };
  const { written, bytes } = writeWal([...Array.from({ length: 20 }, (_, i) => put(i)), tx], true);
  // One 512-byte sector garbled: the end of earlier commits and the start of the last one.
  const last = written.findIndex((w) => w.step === tx);
  const start = written[last]!.records[0]!.offset;
  const from = start - 300;
  const damaged = Buffer.from(bytes);
  for (let i = from; i < from + 512; i++) damaged[i] = (damaged[i]! * 7 + 13) & 0xff;
  assert.ok(
    written[last + 1]!.records[0]!.offset > from + 512,
    "the sync's Synced record survives",
  );
  const hit = written.flatMap((w) => w.records).find((r) => r.offset <= from && from < r.end)!;
  assert.throws(
    () => replayAll(withBytes(damaged), WAL, expect),
    isCorrupted(hit.offset, /had been synced/),
  );
});

test("the first commit after a reopen proves the records the replay kept", () => {
  const mem = new MemoryBackend();
  let w = WalWriter.create(mem, WAL, fileId, GEN);
  const offsets: number[] = [];
  for (const k of ["a", "b", "c"]) {
    offsets.push(w.size);
    w.appendPut(k, Buffer.from(k), 0);
    w.sync();
  }
  // A kill, a reopen, one durable commit, another kill.
  w = WalWriter.openAt(
    mem,
    WAL,
    replayWal(mem, WAL, expect, () => {}),
  );
  w.appendPut("d", Buffer.from("d"), 0);
  w.sync();
  const damaged = mem.bytes(WAL);
  damaged[offsets[2]! + 20]! ^= 0xff;
  assert.throws(
    () => replayAll(withBytes(damaged), WAL, expect),
    isCorrupted(offsets[2], /had been synced/),
  );
});

test("random garbage after the last record is a torn tail; zeros are the end of the log", () => {
  forSeeds(1000, 200, (seed) => {
    const rand = prng(seed);
    const { written, bytes } = writeWal(randomSteps(rand, randInt(rand, 0, 6)));
    const zeros = rand() < 0.3;
    const tail = zeros
      ? Buffer.alloc(randInt(rand, 1, 5000))
      : randBytes(rand, randInt(rand, 1, 5000));
    const { result, ops } = replayAll(withBytes(Buffer.concat([bytes, tail])), WAL, expect);
    const e = expectedPrefix(written, bytes.length);
    assert.deepEqual(ops, e.ops);
    assert.equal(result.validEnd, bytes.length);
    // Zeros are the writer's preallocation: the end of the log, not damage.
    assert.equal(result.tornTail?.offset, zeros ? undefined : bytes.length);
  });
});

test("damage in the middle is found past any amount of garbage", () => {
  const steps: Step[] = Array.from({ length: 20 }, (_, i) => ({
    kind: "put" as const,
    key: `key${i}`,
    value: Buffer.alloc(i * 50, i),
    expiresAt: 0,
  }));
  const { written, bytes } = writeWal(steps, true);
  const r5 = written[5]!.records[0]!;
  const r15 = written[15]!.records[0]!;
  // Zero everything from record 5 up to record 15: the records after still decode.
  const zeroed = Buffer.from(bytes);
  zeroed.fill(0, r5.offset, r15.offset);
  assert.throws(
    () => replayAll(withBytes(zeroed), WAL, expect),
    isCorrupted(r5.offset, new RegExp(`record at offset ${r15.offset} .* had been synced`)),
  );
  // A length field claiming a record past the end of file.
  const longLength = Buffer.from(bytes);
  longLength.writeUInt32LE(0x00ff_ffff, r5.offset);
  assert.throws(() => replayAll(withBytes(longLength), WAL, expect), isCorrupted(r5.offset));
  // A step's records cut out of the middle (the file shifts): the next one has the wrong LSN.
  const step5End = written[5]!.records.at(-1)!.end;
  const spliced = Buffer.concat([bytes.subarray(0, r5.offset), bytes.subarray(step5End)]);
  const r6 = written[6]!.records[0]!;
  assert.throws(
    () => replayAll(withBytes(spliced), WAL, expect),
    isCorrupted(r5.offset, new RegExp(`LSN ${r6.lsn} where ${r5.lsn}`)),
  );
});

function rawWal(entries: (WalEntry | [number, WalEntry])[]): Buffer {
  const header = encodeWalHeader(fileId, GEN);
  const seed = decodeWalHeader(header).checksum;
  const parts = [header];
  let lsn = 0;
  for (const item of entries) {
    const [at, entry] = Array.isArray(item) ? item : [lsn + 1, item];
    lsn = at;
    parts.push(encodeRecord(at, entry, seed));
  }
  return Buffer.concat(parts);
}

test("records with valid checksums that break LSN order or batch framing are corruption, even at the end", () => {
  const put: WalEntry = { kind: "put", key: "k", value: Buffer.from("v"), expiresAt: 0 };
  const begin = (txId: number, opCount: number): WalEntry => ({
    kind: "batch-begin",
    txId,
    opCount,
  });
  const end = (txId: number, opCount: number): WalEntry => ({ kind: "batch-end", txId, opCount });
  const putSize = putRecordSize(1, 1);
  const cases: {
    name: string;
    entries: (WalEntry | [number, WalEntry])[];
    at: number;
    msg: RegExp;
  }[] = [
    { name: "first LSN not 1", entries: [[2, put]], at: 64, msg: /LSN 2 where 1/ },
    { name: "LSN gap", entries: [put, [3, put], put], at: 64 + putSize, msg: /LSN 3 where 2/ },
    { name: "LSN repeated", entries: [put, [1, put]], at: 64 + putSize, msg: /LSN 1 where 2/ },
    {
      name: "orphan BatchEnd",
      entries: [put, end(1, 0)],
      at: 64 + putSize,
      msg: /without BatchBegin/,
    },
    {
      name: "BatchBegin inside a batch",
      entries: [begin(1, 1), put, begin(2, 0), end(2, 0)],
      at: 64 + 29 + putSize,
      msg: /inside the batch/,
    },
    {
      name: "BatchEnd txId differs",
      entries: [begin(1, 1), put, end(2, 1)],
      at: 64 + 29 + putSize,
      msg: /does not match/,
    },
    {
      name: "BatchEnd opCount differs",
      entries: [begin(1, 1), put, end(1, 2)],
      at: 64 + 29 + putSize,
      msg: /does not match/,
    },
    {
      name: "fewer ops than declared",
      entries: [begin(1, 2), put, end(1, 2)],
      at: 64 + 29 + putSize,
      msg: /does not match/,
    },
    {
      name: "more ops than declared",
      entries: [begin(1, 1), put, put, end(1, 1)],
      at: 64 + 29 + putSize,
      msg: /declared 1 ops and has more/,
    },
  ];
  for (const c of cases) {
    assert.throws(
      () => replayAll(withBytes(rawWal(c.entries)), WAL, expect),
      isCorrupted(c.at, c.msg),
      c.name,
    );
  }
  // and the well-formed version of the same shapes replays
  const ok = replayAll(withBytes(rawWal([put, begin(9, 1), put, end(9, 1)])), WAL, expect);
  assert.equal(ok.ops.length, 2);
  assert.equal(ok.result.maxTxId, 9);
});

test("only a WAL bound to the expected fileId and generation replays", () => {
  const { mem } = writeWal([{ kind: "put", key: "a", value: Buffer.from("1"), expiresAt: 0 }]);
  const cases = [
    { expect: { fileId: Buffer.alloc(16), generation: GEN }, status: "foreign" },
    { expect: { fileId, generation: GEN + 1 }, status: "older-generation" },
    { expect: { fileId, generation: GEN - 1 }, status: "newer-generation" },
  ] as const;
  for (const c of cases) {
    const r = replayWal(mem, WAL, c.expect, neverCalled);
    assert.equal(r.status, c.status);
    assert.equal(r.header?.generation, GEN);
    assert.equal(r.records, 0);
    assert.throws(() => WalWriter.openAt(mem, WAL, r), RangeError);
  }
  assert.equal(replayWal(new MemoryBackend(), WAL, expect, neverCalled).status, "missing");
});

test("a foreign WAL says whether it holds records of its own page file", () => {
  const other = { fileId: Buffer.alloc(16), generation: GEN };
  const { mem, bytes } = writeWal([
    { kind: "put", key: "a", value: Buffer.from("1"), expiresAt: 0 },
  ]);
  assert.equal(replayWal(mem, WAL, other, neverCalled).holdsRecords, true);
  // A checkpoint's reset rewrites the header in place: the old record stays in the file
  // but no longer validates under the header, so nothing of that page file would be lost.
  const w = WalWriter.openAt(
    mem,
    WAL,
    replayWal(mem, WAL, expect, () => {}),
  );
  w.reset(GEN + 1);
  const afterReset = mem.bytes(WAL);
  assert.ok(afterReset.length >= bytes.length, "the reset keeps the old record's bytes");
  assert.ok(afterReset.subarray(64, bytes.length).equals(bytes.subarray(64)));
  assert.equal(replayWal(mem, WAL, other, neverCalled).holdsRecords, false);
  w.close();
  // A header alone holds nothing either.
  assert.equal(replayWal(writeWal([]).mem, WAL, other, neverCalled).holdsRecords, false);
  // A damaged first record does not hide the valid ones after it.
  const two = writeWal([
    { kind: "put", key: "a", value: Buffer.from("1"), expiresAt: 0 },
    { kind: "put", key: "b", value: Buffer.from("2"), expiresAt: 0 },
  ]).bytes;
  two[64 + 20]! ^= 0xff;
  assert.equal(replayWal(withBytes(two), WAL, other, neverCalled).holdsRecords, true);
});

test("files without a usable header: empty-unbound only when they cannot hold a record", () => {
  for (const bytes of [
    Buffer.alloc(0),
    Buffer.alloc(10, 1),
    encodeWalHeader(fileId, GEN).subarray(0, 63),
  ]) {
    const r = replayWal(withBytes(bytes), WAL, expect, neverCalled);
    assert.equal(r.status, "empty-unbound");
    assert.equal(r.header, undefined);
  }
  // A header-sized file whose header is damaged (a torn header write): nothing to lose.
  const tornHeader = encodeWalHeader(fileId, GEN);
  tornHeader.fill(0, 40);
  assert.equal(replayWal(withBytes(tornHeader), WAL, expect, neverCalled).status, "empty-unbound");
  assert.equal(
    replayWal(withBytes(Buffer.alloc(64)), WAL, expect, neverCalled).status,
    "empty-unbound",
  );
  // With records behind it, a damaged header is corruption.
  const { bytes } = writeWal([{ kind: "clear" }]);
  const damaged = Buffer.from(bytes);
  damaged[20]! ^= 1;
  assert.throws(() => replayWal(withBytes(damaged), WAL, expect, neverCalled), isCorrupted(0));
  const magic = Buffer.from(bytes);
  magic[0] = 0x65;
  assert.throws(
    () => replayWal(withBytes(magic), WAL, expect, neverCalled),
    isCorrupted(0, /magic/),
  );
  // An unknown version under a valid checksum is a real header of another format version,
  // even in a header-only file; with a bad checksum there, it is a torn header.
  const v2 = encodeWalHeader(fileId, GEN);
  v2.writeUInt32LE(2, 8);
  assert.equal(replayWal(withBytes(v2), WAL, expect, neverCalled).status, "empty-unbound");
  v2.writeUInt32LE(xxh32(v2.subarray(0, 60)), 60);
  assert.throws(
    () => replayWal(withBytes(v2), WAL, expect, neverCalled),
    (e) => isEmdbError(e, "EMDB_VERSION_MISMATCH"),
  );
  // With records after it, a flipped version byte is damage; a resealed one a real version.
  const v2r = Buffer.from(bytes);
  v2r.writeUInt32LE(2, 8);
  assert.throws(() => replayWal(withBytes(v2r), WAL, expect, neverCalled), isCorrupted(0));
  v2r.writeUInt32LE(xxh32(v2r.subarray(0, 60)), 60);
  assert.throws(
    () => replayWal(withBytes(v2r), WAL, expect, neverCalled),
    (e) => isEmdbError(e, "EMDB_VERSION_MISMATCH"),
  );
});

test("records straddling the 1 MiB read window and records read into their own buffer", () => {
  const rand = prng(77);
  const steps: Step[] = [];
  for (let i = 0; i < 2500; i++) {
    const size = i % 500 === 250 ? randInt(rand, 500_000, 1_200_000) : randInt(rand, 0, 3000);
    steps.push({ kind: "put", key: `k${i}`, value: randBytes(rand, size), expiresAt: i });
    if (i % 97 === 0) {
      steps.push({
        kind: "batch",
        txId: i + 1,
        ops: [{ kind: "delete", key: `k${i}` }, { kind: "clear" }],
      });
    }
  }
  const { mem, written, bytes } = writeWal(steps);
  assert.ok(bytes.length > 8 * 1024 * 1024);
  const { result, ops } = replayAll(mem, WAL, expect);
  assert.equal(result.status, "ok");
  assert.deepEqual(ops, expectedPrefix(written, bytes.length).ops);

  // cut inside one of the big records and inside a small one right after a window boundary
  const big = written.flatMap((w) => w.records).find((r) => r.end - r.offset > 500_000)!;
  for (const cut of [big.offset + 100_000, big.end - 1, 1024 * 1024 + 70, 3 * 1024 * 1024 + 1]) {
    const torn = replayAll(withBytes(bytes.subarray(0, cut)), WAL, expect);
    assert.deepEqual(torn.ops, expectedPrefix(written, cut).ops, `cut ${cut}`);
  }
});

test("with transientValues, puts outside a batch are views valid during the callback; batches still hold copies", () => {
  // Batches of puts spanning several refills of the 1 MiB read window, between lone puts.
  const rand = prng(91);
  const steps: Step[] = [];
  for (let b = 0; b < 6; b++) {
    steps.push({ kind: "put", key: `lone${b}`, value: randBytes(rand, 2000), expiresAt: 0 });
    const ops: Step[] = [];
    for (let i = 0; i < 400; i++) {
      ops.push({ kind: "put", key: `b${b}.${i}`, value: randBytes(rand, 3000), expiresAt: 0 });
    }
    steps.push({ kind: "batch", txId: b + 1, ops } as Step);
  }
  const { mem, written, bytes } = writeWal(steps);
  const want = expectedPrefix(written, bytes.length).ops;
  const show = (op: WalOp): string[] =>
    op.kind === "batch"
      ? op.ops.flatMap(show)
      : [op.kind === "put" ? `${op.key} ${op.value.toString("hex")}` : op.kind];
  // What a caller that converts each op at once sees, and batches kept to the end.
  const seen: string[] = [];
  const kept: WalOp[] = [];
  const r = replayWal(
    mem,
    WAL,
    expect,
    (op) => {
      seen.push(...show(op));
      if (op.kind === "batch") kept.push(op);
    },
    { transientValues: true },
  );
  assert.equal(r.status, "ok");
  assert.deepEqual(seen, want.flatMap(show));
  // Read again after the whole replay: no batch value was overwritten by a later read.
  assert.deepEqual(kept.flatMap(show), want.filter((op) => op.kind === "batch").flatMap(show));
});

test("a 64 MiB value round-trips; torn inside it is dropped, damaged inside it is corruption once synced", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-wal-"));
  try {
    const backend = new FileBackend();
    const walPath = path.join(dir, "big.emdb.wal");
    const value = Buffer.allocUnsafe(64 * 1024 * 1024);
    const words = new Uint32Array(value.buffer, value.byteOffset, value.length / 4);
    for (let i = 0; i < words.length; i++) words[i] = Math.imul(i, 0x9e37_79b1) >>> 0;
    const w = WalWriter.create(backend, walPath, fileId, GEN);
    w.appendPut("before", Buffer.from("small"), 0);
    const bigAt = w.size;
    w.appendPut("big", value, 123);
    assert.equal(w.bufferedBytes, 0, "a 64 MiB record is written straight through");
    const bigEnd = w.size;
    w.appendDelete("before");
    w.sync();
    w.close();

    const ops: { kind: string; key?: string; value?: Buffer }[] = [];
    const r = replayWal(backend, walPath, expect, (op) => ops.push(op));
    assert.equal(r.status, "ok");
    assert.equal(ops.length, 3);
    assert.equal(ops[1]?.key, "big");
    assert.ok(ops[1]?.value?.equals(value));

    // torn in the middle of the value (the crash happened while it was being written)
    fs.truncateSync(walPath, bigAt + 40 * 1024 * 1024);
    const torn = replayWal(backend, walPath, expect, () => {});
    assert.equal(torn.validEnd, bigAt);
    assert.equal(torn.tornTail?.offset, bigAt);
    assert.equal(torn.records, 1);

    // one byte flipped inside the value: the record after it still decodes, but nothing says
    // the big one had been synced when it was written, so this is a torn tail
    const flip = (at: number) => {
      const fd = fs.openSync(walPath, "r+");
      fs.writeSync(fd, Buffer.from([value[1000]! ^ 0xff]), 0, 1, at);
      fs.closeSync(fd);
    };
    const write = (syncAfterBig: boolean) => {
      fs.rmSync(walPath);
      const w2 = WalWriter.create(backend, walPath, fileId, GEN);
      w2.appendPut("before", Buffer.from("small"), 0);
      w2.appendPut("big", value, 123);
      if (syncAfterBig) w2.sync();
      w2.appendDelete("before");
      w2.sync();
      w2.close();
    };
    write(false);
    flip(bigEnd - 5000);
    const dropped = replayWal(backend, walPath, expect, () => {});
    assert.equal(dropped.validEnd, bigAt);
    assert.equal(dropped.tornTail?.validAfter, 1);
    // synced before the delete was written: the Synced record after it proves the damage
    write(true);
    flip(bigEnd - 5000);
    assert.throws(
      () => replayWal(backend, walPath, expect, () => {}),
      isCorrupted(bigAt, /had been synced/),
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a value crafted full of fake frames cannot make the forward scan hang", {
  timeout: 20_000,
}, () => {
  // A Put whose value is fake Put frames every 64 bytes, each with LSN 1 and a length that
  // reaches exactly to the end of file, then a cut inside the value: without the scan's work
  // cap, checking every fake frame would hash ~n²/128 bytes.
  const valueLength = 2 * 1024 * 1024;
  const valueAt = 64 + putRecordSize(1, 0) - 4;
  const size = valueAt + 1536 * 1024;
  const value = Buffer.alloc(valueLength);
  for (let v = 0; v + 31 <= valueLength && valueAt + v + 17 <= size; v += 64) {
    const total = size - (valueAt + v);
    value.writeUInt32LE(total - 17, v);
    value.writeUInt32LE(1, v + 4);
    value[v + 12] = 1;
    value.writeUInt16LE(0, v + 13);
    value.writeUInt32LE(total - 17 - 14, v + 23);
  }
  const { bytes } = writeWal([{ kind: "put", key: "k", value, expiresAt: 0 }]);
  assert.throws(
    () => replayAll(withBytes(bytes.subarray(0, size)), WAL, expect),
    isCorrupted(64, /cannot tell a torn tail/),
  );
});
