/**
 * The emdb-rs legacy log reader: record framing (§1.2), header (§1.1) and the batch-aware
 * replay (§1.6), on logs made by the test writer and on byte-surgery copies of the fixtures.
 * Every read goes through a temp copy and checks the copy is unchanged afterwards.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { crc32 } from "node:zlib";
import type { StopReason } from "../migrations/legacy-log.js";
import { type LegacyContent, readLegacy } from "../migrations/read-legacy.js";
import { isEmdbError } from "../src/errors.js";
import { MAX_EXPIRY_MS } from "../src/ttl/ttl.js";
import { EMDB_RS_FIXTURES } from "./helpers/emdb-rs-fixtures.js";
import {
  begin,
  buildLog,
  encodeLogHeader,
  encodeRecord,
  end,
  frameRawPayload,
  ins,
  type LogHeaderSpec,
  type LogOp,
  rm,
  writeLogFile,
} from "./helpers/legacy-writer.js";

const FIXTURES = EMDB_RS_FIXTURES;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-legacy-log-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
let fileNo = 0;

/** Writes `bytes` to a fresh temp file, reads it, and checks the file was not touched. */
function read(bytes: Buffer, opts: { now?: number; chunkSize?: number } = {}): LegacyContent {
  const file = path.join(dir, `log-${fileNo++}.emdb`);
  fs.writeFileSync(file, bytes);
  const content = readLegacy(file, opts);
  assert.ok(fs.readFileSync(file).equals(bytes), "the source file must be left unchanged");
  return content;
}

function fixtureCopy(name: string): Buffer {
  return fs.readFileSync(path.join(FIXTURES, name));
}

/** key (utf8) → [value (utf8), expiresAt] for compact assertions. */
function state(c: LegacyContent): Record<string, [string, number]> {
  const out: Record<string, [string, number]> = {};
  for (const e of c.entries) out[e.key.toString("utf8")] = [e.value.toString("utf8"), e.expiresAt];
  return out;
}

/** Record boundaries of a whole log (header excluded), found from the length fields. */
function recordOffsets(log: Buffer): number[] {
  const out: number[] = [];
  for (let p = 64; p < log.length; p += log.readUInt32LE(p) + 8) out.push(p);
  return out;
}

function setCrc(log: Buffer, at: number): void {
  const len = log.readUInt32LE(at);
  log.writeUInt32LE(crc32(log.subarray(at + 4, at + 4 + len)), at + 4 + len);
}

describe("record framing", () => {
  test("ttl and non-ttl Inserts mixed in one file are each decoded by their length", () => {
    for (const spec of [
      { version: 1, flags: 0 },
      { version: 2, flags: 1 },
    ] as LogHeaderSpec[]) {
      const { bytes } = buildLog(spec, [
        ins("a", "no-field"),
        ins("b", "ttl-field", 2_000_000_000_000),
        ins("c", "ttl-field-zero", 0),
        ins("d", ""),
        ins("", "empty key"),
      ]);
      const c = read(bytes);
      assert.deepEqual(state(c), {
        "": ["empty key", 0],
        a: ["no-field", 0],
        b: ["ttl-field", 2_000_000_000_000],
        c: ["ttl-field-zero", 0],
        d: ["", 0],
      });
      assert.equal(c.stoppedAt, undefined);
      assert.equal(c.validBytes, bytes.length);
    }
  });

  test("an expires_at beyond the latest Date (8.64e15 ms) is clamped to it", () => {
    const rec = encodeRecord(ins("k", "v", 0));
    // Patch the expiry to 2^60 and fix the CRC.
    const withBig = Buffer.concat([encodeLogHeader(), rec]);
    const expAt = 64 + rec.length - 4 - 8;
    withBig.writeBigUInt64LE(1n << 60n, expAt);
    setCrc(withBig, 64);
    assert.deepEqual(state(read(withBig)), { k: ["v", MAX_EXPIRY_MS] });
    withBig.writeBigUInt64LE(BigInt(MAX_EXPIRY_MS) + 1n, expAt);
    setCrc(withBig, 64);
    assert.deepEqual(state(read(withBig)), { k: ["v", MAX_EXPIRY_MS] });
  });

  test("Remove, Clear and Checkpoint are applied in order; Checkpoint changes nothing", () => {
    const { bytes } = buildLog({}, [
      ins("gone", "1"),
      { op: "clear" },
      ins("a", "1"),
      ins("b", "2"),
      rm("a"),
      rm("never-there"),
      { op: "checkpoint", count: 7 },
      ins("b", "3"),
    ]);
    const c = read(bytes);
    assert.deepEqual(state(c), { b: ["3", 0] });
    assert.equal(c.stoppedAt, undefined);
  });

  const malformed: [string, Buffer, StopReason][] = [
    ["L < 9", frameRawPayload(Buffer.alloc(8)), "length-too-small"],
    [
      "an unknown kind",
      frameRawPayload(Buffer.concat([Buffer.from([9]), Buffer.alloc(8)])),
      "unknown-kind",
    ],
    [
      "bytes left after a Remove body",
      frameRawPayload(
        Buffer.concat([Buffer.from([1]), Buffer.alloc(8), u32(1), Buffer.from("kX")]),
      ),
      "trailing-bytes",
    ],
    [
      "an Insert with 4 bytes after the value (neither 0 nor 8)",
      frameRawPayload(
        Buffer.concat([
          Buffer.from([0]),
          Buffer.alloc(8),
          u32(1),
          Buffer.from("k"),
          u32(1),
          Buffer.from("v"),
          u32(0),
        ]),
      ),
      "field-overrun",
    ],
    [
      "an Insert with 12 bytes after the value",
      frameRawPayload(
        Buffer.concat([
          Buffer.from([0]),
          Buffer.alloc(8),
          u32(1),
          Buffer.from("k"),
          u32(1),
          Buffer.from("v"),
          Buffer.alloc(12),
        ]),
      ),
      "trailing-bytes",
    ],
    [
      "a key length past the payload",
      frameRawPayload(
        Buffer.concat([Buffer.from([1]), Buffer.alloc(8), u32(50), Buffer.from("k")]),
      ),
      "field-overrun",
    ],
    [
      "a Clear with a body",
      frameRawPayload(Buffer.concat([Buffer.from([2]), Buffer.alloc(9)])),
      "trailing-bytes",
    ],
  ];
  for (const [what, record, reason] of malformed) {
    test(`a record with ${what} ends the valid prefix (${reason})`, () => {
      const good = buildLog({}, [ins("a", "1")]).bytes;
      const bytes = Buffer.concat([good, record, encodeRecord(ins("after", "x"))]);
      const c = read(bytes);
      assert.deepEqual(state(c), { a: ["1", 0] });
      assert.equal(c.validBytes, good.length);
      assert.equal(c.stoppedAt?.reason, reason);
      assert.equal(c.stoppedAt?.offset, good.length);
      assert.equal(c.stoppedAt?.recordOffset, good.length);
    });
  }
});

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
}

describe("torn and corrupt tails", () => {
  test("a last record cut at every possible length is dropped, and only it", () => {
    const { bytes, offsets } = buildLog({}, [ins("a", "1"), ins("b", "2", 5), ins("c", "three")]);
    const last = offsets[2]!;
    for (let cut = last + 1; cut < bytes.length; cut++) {
      const c = read(bytes.subarray(0, cut));
      assert.deepEqual(state(c), { a: ["1", 0], b: ["2", 5] }, `cut at ${cut}`);
      assert.equal(c.validBytes, last);
      assert.equal(c.stoppedAt?.reason, "truncated");
    }
  });

  test("a flipped CRC bit in the last record drops that record", () => {
    const { bytes, offsets } = buildLog({}, [ins("a", "1"), ins("b", "2")]);
    const broken = Buffer.from(bytes);
    broken[broken.length - 1]! ^= 0x10;
    const c = read(broken);
    assert.deepEqual(state(c), { a: ["1", 0] });
    assert.equal(c.validBytes, offsets[1]);
    assert.equal(c.stoppedAt?.reason, "crc-mismatch");
  });

  test("a corrupt record in the middle hides every later record, valid or not", () => {
    const { bytes, offsets } = buildLog({}, [
      ins("a", "1"),
      ins("b", "2"),
      ins("c", "3"),
      ins("d", "4"),
    ]);
    const broken = Buffer.from(bytes);
    broken[offsets[1]! + 20]! ^= 0xff; // inside b's payload
    const c = read(broken);
    assert.deepEqual(state(c), { a: ["1", 0] });
    assert.equal(c.validBytes, offsets[1]);
  });

  test("a huge length field in the last record is reported as truncated, not allocated", () => {
    const { bytes, offsets } = buildLog({}, [ins("a", "1"), ins("b", "2")]);
    const broken = Buffer.from(bytes);
    broken.writeUInt32LE(0xffff_fff0, offsets[1]!);
    const c = read(broken);
    assert.deepEqual(state(c), { a: ["1", 0] });
    assert.equal(c.stoppedAt?.reason, "truncated");
  });

  test("1 to 7 stray bytes after the last record are a torn tail", () => {
    const { bytes } = buildLog({}, [ins("a", "1")]);
    for (let n = 1; n < 8; n++) {
      const c = read(Buffer.concat([bytes, Buffer.alloc(n, 0xaa)]));
      assert.deepEqual(state(c), { a: ["1", 0] });
      assert.equal(c.validBytes, bytes.length);
      assert.equal(c.stoppedAt?.reason, "truncated");
    }
  });
});

describe("batches (§1.6)", () => {
  test("a complete batch is applied and raises lastTxId above the header's", () => {
    const { bytes } = buildLog({ lastTxId: 41 }, [
      ins("x", "0"),
      begin(42, 2),
      ins("a", "1"),
      rm("x"),
      end(42),
    ]);
    const c = read(bytes);
    assert.deepEqual(state(c), { a: ["1", 0] });
    assert.equal(c.lastTxId, 42);
    assert.equal(c.stoppedAt, undefined);
  });

  test("lastTxId keeps a header value larger than every BatchEnd", () => {
    const { bytes } = buildLog({ lastTxId: 100 }, [begin(7, 1), ins("a", "1"), end(7)]);
    assert.equal(read(bytes).lastTxId, 100);
  });

  test("Clear, Remove and Checkpoint inside a batch count as ops and apply in order", () => {
    const { bytes } = buildLog({}, [
      ins("old", "1"),
      begin(1, 5),
      { op: "clear" },
      ins("a", "1"),
      ins("b", "2"),
      rm("a"),
      { op: "checkpoint", count: 1 },
      end(1),
    ]);
    const c = read(bytes);
    assert.deepEqual(state(c), { b: ["2", 0] });
    assert.equal(c.stoppedAt, undefined);
  });

  test("an empty batch (op_count 0) is valid", () => {
    const { bytes } = buildLog({}, [begin(3, 0), end(3), ins("a", "1")]);
    const c = read(bytes);
    assert.deepEqual(state(c), { a: ["1", 0] });
    assert.equal(c.lastTxId, 3);
  });

  const cases: {
    name: string;
    ops: LogOp[];
    /** Index of the record where the valid prefix ends. */
    cutAt: number;
    reason: StopReason;
    /** Index of the record that made the replay stop (cutAt when omitted). */
    culprit?: number;
    expect: Record<string, [string, number]>;
    lastTxId: number;
  }[] = [
    {
      name: "a batch missing its BatchEnd at end of file is dropped",
      ops: [ins("a", "1"), begin(1, 2), ins("b", "2"), ins("c", "3")],
      cutAt: 1,
      reason: "unterminated-batch",
      culprit: 4,
      expect: { a: ["1", 0] },
      lastTxId: 0,
    },
    {
      name: "a BatchEnd with the wrong count drops the batch and everything after",
      ops: [ins("a", "1"), begin(1, 3), ins("b", "2"), ins("c", "3"), end(1), ins("d", "4")],
      cutAt: 1,
      reason: "batch-count-mismatch",
      culprit: 4,
      expect: { a: ["1", 0] },
      lastTxId: 0,
    },
    {
      name: "a BatchEnd with the wrong tx id drops the batch and everything after",
      ops: [begin(1, 1), ins("a", "1"), end(1), begin(2, 1), ins("b", "2"), end(3), ins("c", "3")],
      cutAt: 3,
      reason: "batch-tx-mismatch",
      culprit: 5,
      expect: { a: ["1", 0] },
      lastTxId: 1,
    },
    {
      name: "a nested BatchBegin cuts at the outer batch",
      ops: [ins("a", "1"), begin(1, 1), ins("b", "2"), begin(2, 1), ins("c", "3"), end(2), end(1)],
      cutAt: 1,
      reason: "nested-batch",
      culprit: 3,
      expect: { a: ["1", 0] },
      lastTxId: 0,
    },
    {
      name: "an orphan BatchEnd cuts at itself, keeping what came before",
      ops: [ins("a", "1"), ins("b", "2"), end(9), ins("c", "3")],
      cutAt: 2,
      reason: "orphan-batch-end",
      expect: { a: ["1", 0], b: ["2", 0] },
      lastTxId: 0,
    },
    {
      name: "a batch cut short by a corrupt op is dropped whole",
      ops: [ins("a", "1"), begin(1, 2), ins("b", "2"), ins("c", "3"), end(1)],
      cutAt: 1,
      reason: "crc-mismatch",
      culprit: 3,
      expect: { a: ["1", 0] },
      lastTxId: 0,
    },
  ];
  for (const k of cases) {
    test(k.name, () => {
      const { bytes, offsets } = buildLog({}, k.ops);
      const log = Buffer.from(bytes);
      if (k.reason === "crc-mismatch") log[offsets[k.culprit!]! + 6]! ^= 1;
      const c = read(log);
      assert.deepEqual(state(c), k.expect);
      assert.equal(c.validBytes, offsets[k.cutAt]);
      assert.equal(c.stoppedAt?.offset, offsets[k.cutAt]);
      assert.equal(c.stoppedAt?.reason, k.reason);
      const culprit = k.culprit ?? k.cutAt;
      assert.equal(
        c.stoppedAt?.recordOffset,
        culprit < offsets.length ? offsets[culprit] : log.length,
      );
      assert.equal(c.lastTxId, k.lastTxId);
    });
  }
});

describe("header", () => {
  test("versions other than 1 and 2 are EMDB_VERSION_MISMATCH", () => {
    for (const version of [0, 3, 0xffff_ffff]) {
      const { bytes } = buildLog({ version }, [ins("a", "1")]);
      assert.throws(
        () => read(bytes),
        (e) => isEmdbError(e, "EMDB_VERSION_MISMATCH"),
        `version ${version}`,
      );
    }
  });

  test("a file shorter than the 64-byte header is EMDB_CORRUPTED at its end", () => {
    const header = encodeLogHeader();
    for (const len of [12, 40, 63]) {
      assert.throws(
        () => read(header.subarray(0, len)),
        (e) => isEmdbError(e, "EMDB_CORRUPTED") && e.offset === len,
        `length ${len}`,
      );
    }
  });

  test("a header alone is an empty, valid log; v1 and v2 report their format", () => {
    const v1 = read(encodeLogHeader({ version: 1, flags: 0 }));
    assert.equal(v1.format, "log-v1");
    assert.equal(v1.entries.length, 0);
    assert.equal(v1.validBytes, 64);
    const v2 = read(encodeLogHeader({ version: 2, lastTxId: 9 }));
    assert.equal(v2.format, "log-v2");
    assert.equal(v2.lastTxId, 9);
  });
});

describe("expiry and order", () => {
  test("entries with expiresAt <= now are dropped and counted only when now is given", () => {
    const { bytes } = buildLog({}, [
      ins("past", "1", 999),
      ins("edge", "2", 1000),
      ins("future", "3", 1001),
      ins("never", "4", 0),
    ]);
    const all = read(bytes);
    assert.equal(all.entries.length, 4);
    assert.equal(all.expiredDropped, 0);
    const live = read(bytes, { now: 1000 });
    assert.deepEqual(state(live), { future: ["3", 1001], never: ["4", 0] });
    assert.equal(live.expiredDropped, 2);
  });

  test("entries come out sorted by unsigned key bytes, prefixes first", () => {
    const keys = [
      Buffer.from([0xff]),
      Buffer.from([0x80, 0]),
      Buffer.from([0x80]),
      Buffer.alloc(0),
      Buffer.from([0x7f, 0xff]),
      Buffer.from("ab"),
      Buffer.from("a"),
    ];
    const { bytes } = buildLog(
      {},
      keys.map((key, i): LogOp => ({ op: "insert", key, value: String(i) })),
    );
    const got = read(bytes).entries.map((e) => e.key.toString("hex"));
    const want = [...keys].sort(Buffer.compare).map((k) => k.toString("hex"));
    assert.deepEqual(got, want);
  });
});

describe("fixture surgery", () => {
  /** Reads `log` and the same log cut at `cut`; the two must agree and the first must stop at `cut`. */
  function assertPrefix(log: Buffer, cut: number, reason: StopReason): void {
    const damaged = read(log, { now: 1_795_300_000_000 });
    const prefix = read(log.subarray(0, cut), { now: 1_795_300_000_000 });
    assert.equal(prefix.stoppedAt, undefined);
    assert.equal(damaged.validBytes, cut);
    assert.equal(damaged.stoppedAt?.reason, reason);
    assert.deepEqual(
      damaged.entries.map((e) => [e.key.toString("hex"), e.value.toString("hex"), e.expiresAt]),
      prefix.entries.map((e) => [e.key.toString("hex"), e.value.toString("hex"), e.expiresAt]),
    );
  }

  test("v2-ttl with its last record torn reads as the log without it", () => {
    const log = fixtureCopy("v2-ttl.emdb");
    const last = recordOffsets(log).at(-1)!;
    assertPrefix(log.subarray(0, log.length - 3), last, "truncated");
  });

  test("v1-nottl with a flipped CRC in its last record reads as the log without it", () => {
    const log = Buffer.from(fixtureCopy("v1-nottl.emdb"));
    const last = recordOffsets(log).at(-1)!;
    log[log.length - 2]! ^= 0x40;
    assertPrefix(log, last, "crc-mismatch");
  });

  test("v1-nottl with a flipped CRC in the Insert before the last record loses that write", () => {
    const log = Buffer.from(fixtureCopy("v1-nottl.emdb"));
    const offs = recordOffsets(log);
    const at = offs.at(-2)!;
    assert.equal(log[at + 4], 0, "the record before the last is an Insert");
    const key = log.subarray(at + 17, at + 17 + log.readUInt32LE(at + 13)).toString();
    log[offs.at(-1)! - 1]! ^= 0x01; // last byte of its CRC
    assertPrefix(log, at, "crc-mismatch");
    // The intact file ends with this Insert's value for the key; the damaged one must not.
    const value = log.subarray(at + 21 + key.length, offs.at(-1)! - 4);
    const lastValue = (c: LegacyContent) => c.entries.find((e) => e.key.toString() === key)?.value;
    assert.ok(lastValue(read(fixtureCopy("v1-nottl.emdb")))?.equals(value));
    assert.ok(!lastValue(read(log))?.equals(value), key);
  });

  test("v2-ttl cut just before its last BatchEnd drops that whole transaction", () => {
    const log = fixtureCopy("v2-ttl.emdb");
    const offs = recordOffsets(log);
    const kinds = offs.map((o) => log[o + 4]);
    const lastEnd = kinds.lastIndexOf(5);
    const lastBegin = kinds.lastIndexOf(4);
    assert.ok(lastBegin < lastEnd);
    assertPrefix(log.subarray(0, offs[lastEnd]!), offs[lastBegin]!, "unterminated-batch");
  });

  test("v1-then-v2 with a middle BatchEnd's tx id changed stops at that batch", () => {
    const log = Buffer.from(fixtureCopy("v1-then-v2.emdb"));
    const offs = recordOffsets(log);
    const kinds = offs.map((o) => log[o + 4]);
    const ends = kinds.flatMap((k, i) => (k === 5 ? [i] : []));
    const mid = ends[Math.floor(ends.length / 2)]!;
    const begins = kinds.flatMap((k, i) => (k === 4 && i < mid ? [i] : []));
    const at = offs[mid]!;
    log.writeBigUInt64LE(log.readBigUInt64LE(at + 13) + 1000n, at + 13);
    setCrc(log, at);
    assertPrefix(log, offs[begins.at(-1)!]!, "batch-tx-mismatch");
  });
});

test("a 20,000-record file written by the streaming writer reads back whole", () => {
  const file = path.join(dir, "streamed.emdb");
  function* ops(): Generator<LogOp> {
    for (let i = 0; i < 20_000; i++) {
      if (i % 100 === 0) {
        yield begin(i / 100 + 1, 1);
        yield ins(`key-${i}`, `value-${i}`, 0);
        yield end(i / 100 + 1);
      } else yield ins(`key-${i}`, `value-${i}`, 0);
    }
  }
  const size = writeLogFile(file, { lastTxId: 0 }, ops());
  assert.equal(fs.statSync(file).size, size);
  const c = readLegacy(file, { chunkSize: 4096 });
  assert.equal(c.entries.length, 20_000);
  assert.equal(c.lastTxId, 200);
  assert.equal(c.validBytes, size);
  assert.ok(c.entries.every((e) => e.value.toString() === `value-${e.key.toString().slice(4)}`));
});
