import assert from "node:assert/strict";
import { test } from "node:test";
import { isEmdbError } from "../src/errors.js";
import { MemoryBackend, type StorageBackend, type StorageFile } from "../src/pager/backend.js";
import { encodeWalHeader } from "../src/wal/header.js";
import { deleteRecordSize, putRecordSize } from "../src/wal/record.js";
import { replayWal } from "../src/wal/replay.js";
import { RETAIN_BYTES, WalWriter } from "../src/wal/writer.js";
import { replayAll } from "./wal-model.js";

const WAL = "w.emdb.wal";
const fileId = Buffer.from("0011223344556677", "latin1");

/** A MemoryBackend whose files log every write (with the very Buffer passed) and sync. */
function tracing(): {
  backend: StorageBackend;
  mem: MemoryBackend;
  log: { op: string; buf?: Buffer; length?: number }[];
} {
  const mem = new MemoryBackend();
  const log: { op: string; buf?: Buffer; length?: number }[] = [];
  const wrap = (f: StorageFile): StorageFile => ({
    name: f.name,
    fd: f.fd,
    size: () => f.size(),
    read: (b, o, l, p) => f.read(b, o, l, p),
    write: (b, o, l, p) => {
      log.push({ op: "write", buf: b, length: l });
      f.write(b, o, l, p);
    },
    truncate: (l) => {
      log.push({ op: "truncate" });
      f.truncate(l);
    },
    sync: () => {
      log.push({ op: "sync" });
      f.sync();
    },
    close: () => f.close(),
  });
  const backend: StorageBackend = {
    open: (name, create) => wrap(mem.open(name, create)),
    exists: (name) => mem.exists(name),
    remove: (name) => mem.remove(name),
    rename: (a, b) => mem.rename(a, b),
    syncDir: (dir) => {
      log.push({ op: "syncDir" });
      mem.syncDir(dir);
    },
  };
  return { backend, mem, log };
}

const expect1 = { fileId, generation: 1 };

/** Writes of zeros: the preallocation ahead of the records. */
const isZeros = (l: { op: string; buf?: Buffer; length?: number }) =>
  l.op === "write" && l.buf !== undefined && l.buf.subarray(0, l.length).every((b) => b === 0);
const notZeros = (l: { op: string; buf?: Buffer; length?: number }) => !isZeros(l);

test("create writes a synced header and a synced directory entry", () => {
  const { backend, mem, log } = tracing();
  const w = WalWriter.create(backend, WAL, fileId, 1);
  assert.deepEqual(
    log.map((l) => l.op),
    ["truncate", "sync", "write", "sync", "syncDir"],
  );
  assert.equal(w.size, 64);
  assert.equal(w.generation, 1);
  assert.deepEqual(w.fileId, fileId);
  mem.crash();
  assert.deepEqual(mem.bytes(WAL), encodeWalHeader(fileId, 1));
  const r = replayWal(mem, WAL, expect1, () => assert.fail());
  assert.equal(r.status, "ok");
  assert.equal(r.validEnd, 64);
});

test("appends cost no I/O; writeOut is one write of the records (plus zeros when they pass the file end); sync one write and one fdatasync", () => {
  const { backend, log } = tracing();
  const w = WalWriter.create(backend, WAL, fileId, 1);
  log.length = 0;
  assert.equal(w.appendPut("key", Buffer.from("value"), 0), 1);
  assert.equal(w.appendDelete(Buffer.from("key")), 2);
  assert.equal(w.appendClear(), 3);
  assert.equal(w.appendBatchBegin(5, 0), 4);
  assert.equal(w.appendBatchEnd(5, 0), 5);
  assert.equal(w.lastLsn, 5);
  const expected = putRecordSize(3, 5) + deleteRecordSize(3) + 17 + 29 + 29;
  assert.equal(w.bufferedBytes, expected);
  assert.equal(w.size, 64 + expected);
  assert.equal(log.length, 0, "appends do no I/O");

  w.writeOut();
  // The records pass the file's end, so 1 MiB of zeros goes after them (preallocation).
  assert.deepEqual(
    log.map((l) => [l.op, l.length, isZeros(l)]),
    [
      ["write", expected, false],
      ["write", 1024 * 1024, true],
    ],
  );
  assert.equal(w.bufferedBytes, 0);
  assert.equal(w.size, 64 + expected);
  w.writeOut();
  assert.equal(log.length, 2, "nothing buffered: no write");

  w.appendClear();
  log.length = 0;
  w.sync();
  assert.deepEqual(
    log.map((l) => l.op),
    ["write", "sync"],
    "inside the preallocated zeros: no zeros written",
  );
  log.length = 0;
  w.sync();
  assert.equal(log.length, 0, "nothing new: no fdatasync");
});

test("failpoints fire in order at every durability boundary", () => {
  const mem = new MemoryBackend();
  const w = WalWriter.create(mem, WAL, fileId, 1);
  const seen: string[] = [];
  w.failpoint = (name) => seen.push(name);
  w.appendClear();
  w.sync();
  assert.deepEqual(seen, ["wal:before-write", "wal:after-write", "wal:after-sync"]);
  seen.length = 0;
  w.reset(2);
  assert.deepEqual(seen, ["wal:reset:header-written", "wal:after-sync"]);
  seen.length = 0;
  w.appendPut("k", Buffer.alloc(2 * 1024 * 1024), 0);
  assert.deepEqual(seen, ["wal:before-write", "wal:after-write"]);
});

test("a large value is written straight from the caller's buffer, after what was buffered", () => {
  const { backend, mem, log } = tracing();
  const w = WalWriter.create(backend, WAL, fileId, 1);
  w.appendPut("small", Buffer.from("x"), 0);
  const big = Buffer.alloc(1024 * 1024, 0x5a);
  log.length = 0;
  const lsn = w.appendPut("big", big, 77);
  assert.equal(lsn, 2);
  assert.equal(w.bufferedBytes, 0);
  const writes = log.filter(notZeros);
  assert.equal(writes.length, 3, "buffered records + record head, the value, the checksum");
  assert.equal(writes[0]?.length, putRecordSize(5, 1) + putRecordSize(3, 0) - 4);
  assert.ok(writes[1]?.buf === big, "the value itself is handed to write, not a copy");
  assert.equal(writes[2]?.length, 4);
  assert.equal(w.size, 64 + putRecordSize(5, 1) + putRecordSize(3, big.length));

  // A plain Uint8Array value takes the same path.
  const u8 = new Uint8Array(1024 * 1024 + 3).fill(7);
  w.appendPut(Buffer.from("u8"), u8, 0);
  w.appendDelete("small");
  w.sync();
  const { ops } = replayAll(mem, WAL, expect1);
  assert.deepEqual(ops, [
    { kind: "put", key: "small", value: Buffer.from("x"), expiresAt: 0 },
    { kind: "put", key: "big", value: big, expiresAt: 77 },
    { kind: "put", key: "u8", value: Buffer.from(u8), expiresAt: 0 },
    { kind: "delete", key: "small" },
  ]);
});

test("the buffer grows geometrically and spills to the OS at 4 MiB, never losing order", () => {
  const { backend, mem, log } = tracing();
  const w = WalWriter.create(backend, WAL, fileId, 1);
  log.length = 0;
  const value = Buffer.alloc(1000, 1);
  let maxBuffered = 0;
  const n = 10_000; // ~10 MiB of records
  for (let i = 0; i < n; i++) {
    w.appendPut(`k${i}`, value, i);
    maxBuffered = Math.max(maxBuffered, w.bufferedBytes);
  }
  assert.ok(maxBuffered < 4 * 1024 * 1024, `buffered at most ${maxBuffered}`);
  assert.equal(log.filter((l) => l.op === "write" && notZeros(l)).length, 2, "two spills");
  assert.deepEqual(
    log.filter((l) => l.op === "sync"),
    [],
    "spilling never syncs",
  );
  w.sync();
  let count = 0;
  const r = replayWal(mem, WAL, expect1, (op) => {
    assert.equal(op.kind === "put" && op.key, `k${count}`);
    count++;
  });
  assert.equal(count, n);
  assert.equal(r.lastLsn, n);
});

test("oversized keys and values and bad numbers are refused without consuming an LSN", () => {
  const mem = new MemoryBackend();
  const w = WalWriter.create(mem, WAL, fileId, 1);
  const code = (c: string) => (e: unknown) => isEmdbError(e) && e.code === c;
  assert.throws(
    () => w.appendPut("k".repeat(1025), Buffer.alloc(1), 0),
    code("EMDB_KEY_TOO_LARGE"),
  );
  assert.throws(
    () => w.appendPut(Buffer.alloc(1025), Buffer.alloc(1), 0),
    code("EMDB_KEY_TOO_LARGE"),
  );
  assert.throws(() => w.appendDelete("k".repeat(70_000)), code("EMDB_KEY_TOO_LARGE"));
  const huge = { length: 256 * 1024 * 1024 + 1 } as unknown as Buffer;
  assert.throws(() => w.appendPut("k", huge, 0), code("EMDB_VALUE_TOO_LARGE"));
  assert.throws(() => w.appendPut("k", Buffer.alloc(1), -1), RangeError);
  assert.throws(() => w.appendPut("k", Buffer.alloc(1), Number.NaN), RangeError);
  assert.throws(() => w.appendPut("k", Buffer.alloc(2 * 1024 * 1024), 1.5), RangeError);
  assert.throws(() => w.appendBatchBegin(-1, 0), RangeError);
  assert.throws(() => w.appendBatchEnd(1, -1), RangeError);
  assert.equal(w.lastLsn, 0);
  assert.equal(w.bufferedBytes, 0);
  w.appendPut("k".repeat(1024), Buffer.alloc(1), 0);
  w.sync();
  const r = replayWal(mem, WAL, expect1, () => {});
  assert.equal(r.records, 1);
  assert.equal(r.tornTail, undefined);
});

test("a failed write or fdatasync latches the writer until a reset succeeds", () => {
  for (const failing of ["write", "sync"] as const) {
    const mem = new MemoryBackend();
    const w = WalWriter.create(mem, WAL, fileId, 1);
    w.appendClear();
    const boom = new Error(`injected ${failing} failure`);
    mem.hook = (op) => {
      if (op === failing) throw boom;
    };
    assert.throws(
      () => w.sync(),
      (e) => e === boom,
    );
    mem.hook = undefined;
    const latched = (e: unknown) => isEmdbError(e, "EMDB_IO") && e.cause === boom;
    assert.throws(() => w.appendClear(), latched, failing);
    assert.throws(() => w.writeOut(), latched);
    assert.throws(() => w.sync(), latched);
    w.reset(2);
    w.appendDelete("x");
    w.sync();
    const { result, ops } = replayAll(mem, WAL, { fileId, generation: 2 });
    assert.equal(result.status, "ok");
    assert.deepEqual(ops, [{ kind: "delete", key: "x" }]);
  }
});

test("the file is preallocated with zeros ahead of the records, and reset keeps it, rewriting only the header", () => {
  const { backend, mem, log } = tracing();
  const w = WalWriter.create(backend, WAL, fileId, 1);
  const value = Buffer.alloc(100, 3);
  for (let i = 0; i < 100; i++) w.appendPut(`k${i}`, value, 0);
  w.sync();
  const allocated = mem.bytes(WAL).length;
  assert.equal(allocated, w.size + 1024 * 1024, "1 MiB of zeros after the records");
  assert.ok(
    mem
      .bytes(WAL)
      .subarray(w.size)
      .every((b) => b === 0),
  );
  // Syncs inside the allocation write only the records: the file length never changes.
  log.length = 0;
  for (let i = 0; i < 100; i++) {
    w.appendDelete(`k${i}`);
    w.sync();
  }
  assert.equal(log.filter(isZeros).length, 0);
  assert.equal(mem.bytes(WAL).length, allocated);
  let r = replayWal(mem, WAL, expect1, () => {});
  assert.equal(r.records, 400, "each delete after a sync between two Synced records");
  assert.equal(r.tornTail, undefined, "a tail of zeros is the end of the log, not a torn record");

  log.length = 0;
  w.reset(2);
  assert.deepEqual(
    log.map((l) => [l.op, l.length]),
    [
      ["write", 64],
      ["sync", undefined],
    ],
  );
  assert.equal(mem.bytes(WAL).length, allocated, "the length is kept");
  mem.crash();
  r = replayWal(mem, WAL, { fileId, generation: 2 }, () => assert.fail("old records replayed"));
  assert.equal(r.status, "ok");
  assert.equal(r.validEnd, 64);
  assert.equal(r.tornTail?.offset, 64, "the old records fail the new header's seed");
  w.appendClear();
  w.sync();
  r = replayWal(mem, WAL, { fileId, generation: 2 }, () => {});
  assert.equal(r.records, 1);
});

test("a reset trims a file grown past RETAIN_BYTES back to it, and the WAL stays usable", () => {
  const mem = new MemoryBackend();
  const w = WalWriter.create(mem, WAL, fileId, 1);
  w.appendPut("big", Buffer.alloc(RETAIN_BYTES, 1), 0); // written through, then zeros after it
  w.sync();
  assert.ok(mem.bytes(WAL).length > RETAIN_BYTES + 1024 * 1024);
  w.reset(2);
  assert.equal(mem.bytes(WAL).length, RETAIN_BYTES);
  mem.crash();
  const r = replayWal(mem, WAL, { fileId, generation: 2 }, () => assert.fail("old records"));
  assert.equal(r.status, "ok");
  assert.equal(r.validEnd, 64);
  w.appendDelete("after");
  w.sync();
  const { ops } = replayAll(mem, WAL, { fileId, generation: 2 });
  assert.deepEqual(ops, [{ kind: "delete", key: "after" }]);
});

test("reset empties the WAL, drops what was buffered and restarts LSNs", () => {
  const mem = new MemoryBackend();
  const w = WalWriter.create(mem, WAL, fileId, 1);
  w.appendClear();
  w.sync();
  w.appendDelete("buffered");
  w.reset(7);
  assert.equal(w.size, 64);
  assert.equal(w.bufferedBytes, 0);
  assert.equal(w.lastLsn, 0);
  assert.equal(w.generation, 7);
  assert.equal(w.appendClear(), 1);
  w.sync();
  assert.equal(replayWal(mem, WAL, expect1, () => {}).status, "newer-generation");
  const r = replayWal(mem, WAL, { fileId, generation: 7 }, () => {});
  assert.equal(r.status, "ok");
  assert.equal(r.records, 1);
});

test("close writes out (without syncing) and later use throws EMDB_CLOSED", () => {
  const { backend, mem, log } = tracing();
  const w = WalWriter.create(backend, WAL, fileId, 1);
  w.appendDelete("k");
  log.length = 0;
  w.close();
  assert.deepEqual(
    log.map((l) => [l.op, isZeros(l)]),
    [
      ["write", false],
      ["write", true],
      ["truncate", false],
    ],
    "the records, the preallocated zeros, then the zeros trimmed",
  );
  assert.equal(mem.bytes(WAL).length, 64 + deleteRecordSize(1));
  w.close();
  const closed = (e: unknown) => isEmdbError(e, "EMDB_CLOSED");
  assert.throws(() => w.appendClear(), closed);
  assert.throws(() => w.sync(), closed);
  assert.throws(() => w.reset(2), closed);
  assert.equal(replayWal(mem, WAL, expect1, () => {}).records, 1);
});

test("openAt refuses a replay that is not ok and a file shorter than the replay saw", () => {
  const mem = new MemoryBackend();
  const w = WalWriter.create(mem, WAL, fileId, 1);
  w.appendClear();
  w.sync();
  w.close();
  const r = replayWal(mem, WAL, expect1, () => {});
  assert.throws(() => WalWriter.openAt(mem, WAL, { ...r, status: "foreign" }), RangeError);
  mem.setBytes(WAL, mem.bytes(WAL).subarray(0, 70));
  assert.throws(
    () => WalWriter.openAt(mem, WAL, r),
    (e) => isEmdbError(e, "EMDB_IO"),
  );
});

test("create replaces whatever WAL was there", () => {
  const mem = new MemoryBackend();
  const old = WalWriter.create(mem, WAL, Buffer.alloc(16, 9), 4);
  old.appendClear();
  old.sync();
  old.close();
  const w = WalWriter.create(mem, WAL, fileId, 1);
  w.close();
  const r = replayWal(mem, WAL, expect1, () => {});
  assert.equal(r.status, "ok");
  assert.equal(r.records, 0);
  assert.equal(r.fileSize, 64);
});

test("a latin1 string value is logged as the very bytes of the equal Buffer, small or written through", () => {
  const value = (n: number) =>
    Buffer.from(Array.from({ length: n }, (_, i) => (i * 37 + 11) & 0xff));
  // 100 bytes goes through the buffer; 5 MiB takes the write-through path for large values.
  const values = new Map([
    ["small", value(100)],
    ["large", value(5 * 1024 * 1024)],
  ]);
  const logs = [false, true].map((asString) => {
    const mem = new MemoryBackend();
    const w = WalWriter.create(mem, WAL, fileId, 1);
    for (const [key, v] of values) w.appendPut(key, asString ? v.toString("latin1") : v, 0);
    w.sync();
    return mem;
  });
  assert.ok(
    logs[0]!.bytes(WAL).equals(logs[1]!.bytes(WAL)),
    "the two logs are byte for byte equal",
  );
  const { result, ops } = replayAll(logs[1]!, WAL, expect1);
  assert.equal(result.status, "ok");
  assert.deepEqual(
    ops.map((op) => (op.kind === "put" ? [op.key, op.value.equals(values.get(op.key)!)] : op.kind)),
    [
      ["small", true],
      ["large", true],
    ],
  );
});
