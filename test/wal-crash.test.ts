/**
 * Power-loss tests over MemoryBackend. What MemoryBackend models: `sync()` makes a file's
 * current bytes durable; `crash()` brings back exactly the bytes of the last sync (every
 * write since is lost, even a completed one) and forgets files whose directory entry was never
 * synced. A real filesystem may also keep any prefix of unsynced writes, or any subset of
 * their sectors (`crash({ keepSector })`); the tests marked "beyond MemoryBackend" build the
 * other images by hand.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { MemoryBackend, type StorageBackend } from "../src/pager/backend.js";
import { encodeWalHeader } from "../src/wal/header.js";
import { replayWal, type WalOp } from "../src/wal/replay.js";
import { type WalFailpoint, WalWriter } from "../src/wal/writer.js";
import {
  appendStep,
  expectedPrefix,
  forSeeds,
  prng,
  randInt,
  randomSteps,
  replayAll,
  syncedThenUnsynced,
  toOp,
  type Written,
} from "./wal-model.js";

const WAL = "c.emdb.wal";
const fileId = Buffer.from("crash-test-file!", "latin1");

class Crash extends Error {}

function crashAt(target: WalFailpoint): (name: WalFailpoint) => void {
  return (name) => {
    if (name === target) throw new Crash(name);
  };
}

test("after a crash exactly the synced records replay, and the WAL continues from there", () => {
  forSeeds(1, 50, (seed) => {
    const rand = prng(seed);
    const mem = new MemoryBackend();
    const w = WalWriter.create(mem, WAL, fileId, 1);
    const synced = randomSteps(rand, randInt(rand, 0, 15));
    for (const s of synced) appendStep(w, s);
    w.sync();
    const syncedSize = w.size;
    for (const s of randomSteps(rand, randInt(rand, 1, 15), 100)) {
      appendStep(w, s);
      if (rand() < 0.5) w.writeOut(); // handed to the OS, never synced
    }
    mem.crash();

    const { result, ops } = replayAll(mem, WAL, { fileId, generation: 1 });
    assert.deepEqual(ops, synced.map(toOp));
    assert.equal(result.validEnd, syncedSize);
    assert.equal(result.tornTail, undefined);

    const again = WalWriter.openAt(mem, WAL, result);
    again.appendDelete("after");
    again.sync();
    mem.crash();
    assert.deepEqual(replayAll(mem, WAL, { fileId, generation: 1 }).ops, [
      ...synced.map(toOp),
      { kind: "delete", key: "after" },
    ]);
  });
});

test("beyond MemoryBackend: any prefix of the unsynced writes surviving yields the synced records plus the complete ones after", () => {
  forSeeds(100, 30, (seed) => {
    const rand = prng(seed);
    const mem = new MemoryBackend();
    const w = WalWriter.create(mem, WAL, fileId, 1);
    const written: Written[] = randomSteps(rand, randInt(rand, 0, 8)).map((s) => appendStep(w, s));
    w.sync();
    const syncedSize = w.size;
    const syncedOps = expectedPrefix(written, syncedSize).ops;
    for (const s of randomSteps(rand, randInt(rand, 1, 8), 100)) written.push(appendStep(w, s));
    w.writeOut();
    const live = mem.bytes(WAL);
    // Every prefix of the records, then the whole file (the records and preallocated zeros).
    const cuts = Array.from({ length: w.size - syncedSize + 1 }, (_, i) => syncedSize + i);
    for (const cut of [...cuts, live.length]) {
      const img = new MemoryBackend();
      img.setBytes(WAL, live.subarray(0, cut));
      const { ops } = replayAll(img, WAL, { fileId, generation: 1 });
      assert.deepEqual(ops, expectedPrefix(written, cut).ops, `cut ${cut}`);
      assert.deepEqual(ops.slice(0, syncedOps.length), syncedOps);
    }
  });
});

test("a power loss that keeps any subset of the unsynced sectors: the synced records, then the complete ones before the first sector lost", () => {
  let holes = 0;
  forSeeds(300, 80, (seed) => {
    const rand = prng(seed);
    const mem = new MemoryBackend();
    const w = WalWriter.create(mem, WAL, fileId, 1);
    // A WAL reused after a checkpoint: records of the older generation lie under the new ones.
    for (const s of randomSteps(rand, randInt(rand, 0, 40))) appendStep(w, s);
    w.sync();
    w.reset(2);
    const { written, syncedSize } = syncedThenUnsynced(
      w,
      rand,
      randInt(rand, 0, 12),
      randInt(rand, 1, 30),
      0.4,
    );
    const live = mem.bytes(WAL);
    mem.crash({ keepSector: () => rand() < 0.6 });

    const left = mem.bytes(WAL);
    const lost = left.findIndex((b, i) => b !== live[i]);
    assert.ok(lost === -1 || lost >= syncedSize, "synced bytes survive");
    const e = expectedPrefix(written, lost === -1 ? live.length : lost);
    const { result, ops } = replayAll(mem, WAL, { fileId, generation: 2 });
    assert.deepEqual(ops, e.ops, `seed ${seed}`);
    assert.equal(result.validEnd, e.validEnd);
    assert.ok(result.validEnd >= syncedSize);
    if ((result.tornTail?.validAfter ?? 0) > 0) holes++;
    if (result.tornTail !== undefined) {
      assert.ok(result.tornTail.dropped >= (result.tornTail.validAfter ?? 0));
    }
  });
  assert.ok(holes > 20, `${holes} crashes kept records after a lost sector`);
});

test("a crash at each failpoint of sync(): the records are durable only once after-sync is reached", () => {
  for (const target of ["wal:before-write", "wal:after-write", "wal:after-sync"] as const) {
    const mem = new MemoryBackend();
    const w = WalWriter.create(mem, WAL, fileId, 1);
    w.appendPut("a", Buffer.from("1"), 0);
    w.sync();
    w.appendBatchBegin(1, 1);
    w.appendDelete("a");
    w.appendBatchEnd(1, 1);
    w.failpoint = crashAt(target);
    assert.throws(() => w.sync(), Crash);
    mem.crash();
    const { ops } = replayAll(mem, WAL, { fileId, generation: 1 });
    const first: WalOp = { kind: "put", key: "a", value: Buffer.from("1"), expiresAt: 0 };
    const batch: WalOp = { kind: "batch", txId: 1, ops: [{ kind: "delete", key: "a" }] };
    assert.deepEqual(ops, target === "wal:after-sync" ? [first, batch] : [first], target);
  }
});

test("a synced but unfinished batch is dropped after a crash; the next batch after reopening is kept", () => {
  const mem = new MemoryBackend();
  const w = WalWriter.create(mem, WAL, fileId, 1);
  w.appendClear();
  w.appendBatchBegin(1, 3);
  w.appendPut("x", Buffer.from("1"), 0);
  w.appendPut("y", Buffer.from("2"), 0);
  w.sync(); // e.g. the buffer spilled and an everyN sync landed mid-transaction
  mem.crash();
  const { result, ops } = replayAll(mem, WAL, { fileId, generation: 1 });
  assert.deepEqual(ops, [{ kind: "clear" }]);
  assert.equal(result.lastLsn, 1);
  assert.equal(result.tornTail?.offset, 64 + 17);
  // The batch's BatchBegin and its two puts.
  assert.equal(result.tornTail?.dropped, 3);
  const w2 = WalWriter.openAt(mem, WAL, result);
  assert.equal(w2.size, 64 + 17);
  w2.appendBatchBegin(1, 1);
  w2.appendDelete("z");
  w2.appendBatchEnd(1, 1);
  w2.sync();
  mem.crash();
  assert.deepEqual(replayAll(mem, WAL, { fileId, generation: 1 }).ops, [
    { kind: "clear" },
    { kind: "batch", txId: 1, ops: [{ kind: "delete", key: "z" }] },
  ]);
});

/** Sets up a WAL for generation 1 holding two synced records; returns what they replay to. */
function oldWal(mem: StorageBackend): { w: WalWriter; ops: WalOp[] } {
  const w = WalWriter.create(mem, WAL, fileId, 1);
  w.appendPut("old", Buffer.from("v"), 0);
  w.appendDelete("gone");
  w.sync();
  return {
    w,
    ops: [
      { kind: "put", key: "old", value: Buffer.from("v"), expiresAt: 0 },
      { kind: "delete", key: "gone" },
    ],
  };
}

type ResetOutcome = "old" | "empty-unbound" | "new";

/** What the disk holds after a crash: the old WAL for generation 1, nothing bound, or gen 2. */
function outcome(mem: MemoryBackend, oldOps: WalOp[]): ResetOutcome {
  const asNew = replayAll(mem, WAL, { fileId, generation: 2 });
  if (asNew.result.status === "empty-unbound") return "empty-unbound";
  if (asNew.result.status === "ok") {
    assert.deepEqual(asNew.ops, [], "a fresh generation has no records");
    return "new";
  }
  assert.equal(asNew.result.status, "older-generation");
  const asOld = replayAll(mem, WAL, { fileId, generation: 1 });
  assert.equal(asOld.result.status, "ok");
  assert.deepEqual(asOld.ops, oldOps, "the old WAL is intact");
  return "old";
}

test("a crash at every failpoint of reset leaves the old WAL or an empty one, as documented", () => {
  // The header is rewritten in place; until its fdatasync the old one is what is durable.
  const expected: [WalFailpoint, ResetOutcome][] = [
    ["wal:reset:header-written", "old"],
    ["wal:after-sync", "new"],
  ];
  for (const [target, want] of expected) {
    const mem = new MemoryBackend();
    const { w, ops } = oldWal(mem);
    w.appendClear(); // buffered, covered by the checkpoint, dropped by reset
    w.failpoint = crashAt(target);
    assert.throws(() => w.reset(2), Crash);
    mem.crash();
    assert.equal(outcome(mem, ops), want, target);
  }
});

test("a crash before each I/O call of reset (and right after it) leaves the old WAL or an empty one", () => {
  // reset issues: write the header in place, fdatasync
  const want: ResetOutcome[] = ["old", "old", "new"];
  for (let crashBefore = 0; crashBefore < want.length; crashBefore++) {
    const mem = new MemoryBackend();
    const { w, ops } = oldWal(mem);
    let calls = 0;
    mem.hook = () => {
      if (calls++ === crashBefore) throw new Crash(`before I/O call ${crashBefore}`);
    };
    if (crashBefore < 2) assert.throws(() => w.reset(2), Crash);
    else w.reset(2);
    assert.equal(calls, Math.min(crashBefore + 1, 2));
    mem.crash();
    const got = outcome(mem, ops);
    assert.equal(got, want[crashBefore], `crash before call ${crashBefore}`);

    // Recovery as the engine does it: bind an empty WAL to the page file's generation 2.
    const r = replayWal(mem, WAL, { fileId, generation: 2 }, () => {});
    const next =
      r.status === "ok" ? WalWriter.openAt(mem, WAL, r) : WalWriter.create(mem, WAL, fileId, 2);
    next.appendDelete("fresh");
    next.sync();
    mem.crash();
    assert.deepEqual(replayAll(mem, WAL, { fileId, generation: 2 }).ops, [
      { kind: "delete", key: "fresh" },
    ]);
  }
});

test("beyond MemoryBackend: a reset whose header write tore over the old records never replays them and is no error", () => {
  const mem = new MemoryBackend();
  oldWal(mem);
  const old = mem.bytes(WAL);
  assert.ok(old.length > 64 + 1024, "old records and preallocated zeros after the header");
  const header2 = encodeWalHeader(fileId, 2);
  for (let k = 0; k <= 64; k++) {
    const torn = Buffer.concat([header2.subarray(0, k), old.subarray(k)]);
    const t = new MemoryBackend();
    t.setBytes(WAL, torn);
    const r = replayWal(t, WAL, { fileId, generation: 2 }, () => assert.fail("no records"));
    const whole = torn.subarray(0, 64).equals(header2);
    const oldHeader = torn.subarray(0, 64).equals(old.subarray(0, 64));
    assert.equal(
      r.status,
      whole ? "ok" : oldHeader ? "older-generation" : "empty-unbound",
      `k=${k}`,
    );
  }
});

test("beyond MemoryBackend: a reset whose truncation was lost, or whose header was torn, still never replays old records", () => {
  const mem = new MemoryBackend();
  oldWal(mem);
  const old = mem.bytes(WAL);
  const header2 = encodeWalHeader(fileId, 2);
  // New header over the old records (the truncate never reached the disk).
  const img = new MemoryBackend();
  img.setBytes(WAL, Buffer.concat([header2, old.subarray(64)]));
  const { result, ops } = replayAll(img, WAL, { fileId, generation: 2 });
  assert.equal(result.status, "ok");
  assert.deepEqual(ops, []);
  assert.equal(result.validEnd, 64);
  assert.equal(result.tornTail?.offset, 64);
  // Any torn header image of at most 64 bytes: new bytes over old, or over zeros.
  for (let k = 0; k <= 64; k++) {
    for (const under of [old.subarray(0, 64), Buffer.alloc(64)]) {
      for (const size of [k, 64]) {
        const torn = Buffer.concat([header2.subarray(0, k), under.subarray(k)]).subarray(0, size);
        const t = new MemoryBackend();
        t.setBytes(WAL, torn);
        const r = replayWal(t, WAL, { fileId, generation: 2 }, () => assert.fail("no records"));
        const whole = size === 64 && (k === 64 || torn.equals(header2));
        const oldHeader = size === 64 && torn.equals(old.subarray(0, 64));
        assert.equal(
          r.status,
          whole ? "ok" : oldHeader ? "older-generation" : "empty-unbound",
          `k=${k} size=${size}`,
        );
      }
    }
  }
});

test("a crash during create leaves no WAL, the previous one, or the new one", () => {
  for (const previous of [false, true]) {
    for (let crashBefore = 0; crashBefore <= 5; crashBefore++) {
      const mem = new MemoryBackend();
      const prevOps = previous ? oldWal(mem).ops : [];
      let calls = 0;
      const step = () => {
        if (calls++ === crashBefore) throw new Crash(`before call ${crashBefore}`);
      };
      // create issues: truncate, fdatasync, write header, fdatasync, directory fsync
      mem.hook = step;
      if (crashBefore < 5) assert.throws(() => WalWriter.create(mem, WAL, fileId, 2), Crash);
      else WalWriter.create(mem, WAL, fileId, 2);
      mem.crash();
      const label = `previous=${previous} crash before call ${crashBefore}`;
      if (!previous) {
        // The directory entry is durable only after the directory fsync.
        const want = crashBefore < 5 ? "missing" : "ok";
        assert.equal(replayWal(mem, WAL, { fileId, generation: 2 }, () => {}).status, want, label);
      } else {
        const want: ResetOutcome[] = ["old", "old", "empty-unbound", "empty-unbound", "new", "new"];
        assert.equal(outcome(mem, prevOps), want[crashBefore], label);
      }
    }
  }
});

test("a crash while openAt truncates a torn tail replays the same records again", () => {
  for (let crashBefore = 0; crashBefore <= 2; crashBefore++) {
    const mem = new MemoryBackend();
    const w = WalWriter.create(mem, WAL, fileId, 1);
    w.appendPut("k", Buffer.from("v"), 0);
    w.sync();
    mem.setBytes(WAL, Buffer.concat([mem.bytes(WAL), Buffer.from("garbage from a torn write")]));
    const first = replayAll(mem, WAL, { fileId, generation: 1 });
    assert.ok(first.result.tornTail !== undefined);
    let calls = 0;
    mem.hook = () => {
      if (calls++ === crashBefore) throw new Crash();
    };
    if (crashBefore < 2) assert.throws(() => WalWriter.openAt(mem, WAL, first.result), Crash);
    else WalWriter.openAt(mem, WAL, first.result);
    mem.crash();
    const again = replayAll(mem, WAL, { fileId, generation: 1 });
    assert.deepEqual(again.ops, first.ops);
    assert.equal(again.result.validEnd, first.result.validEnd);
    assert.equal(
      again.result.tornTail !== undefined,
      crashBefore < 2,
      `crash before ${crashBefore}`,
    );
  }
});

test("randomized: appends, writeOuts, syncs, resets and a crash anywhere match the durable model", () => {
  const kinds = { sync: 0, reset: 0, inFlight: 0, plain: 0 };
  forSeeds(1, 300, (seed) => {
    const rand = prng(seed);
    const mem = new MemoryBackend();
    let generation = 1;
    const w = WalWriter.create(mem, WAL, fileId, generation);
    let sinceReset: WalOp[] = [];
    let durable = { generation, ops: [] as WalOp[] };
    let tx = 0;
    let crashed = false;
    const actions = randInt(rand, 1, 40);
    for (let i = 0; i < actions; i++) {
      const r = rand();
      if (r < 0.55) {
        const [step] = randomSteps(rand, 1, tx);
        if (step!.kind === "batch") tx = step!.txId;
        appendStep(w, step!);
        sinceReset.push(toOp(step!));
      } else if (r < 0.7) {
        w.writeOut();
      } else if (r < 0.9) {
        const fp =
          rand() < 0.3
            ? (["wal:before-write", "wal:after-write", "wal:after-sync"] as const)[
                randInt(rand, 0, 2)
              ]!
            : undefined;
        if (fp !== undefined) {
          w.failpoint = crashAt(fp);
          let fired = false;
          try {
            w.sync();
          } catch (err) {
            if (!(err instanceof Crash)) throw err;
            fired = true;
          }
          w.failpoint = undefined;
          // The sync completed if its failpoint never fired (e.g. nothing left to write) or
          // fired after the fdatasync.
          if (!fired || fp === "wal:after-sync") {
            durable = { generation, ops: [...sinceReset] };
          }
          if (fired) {
            crashed = true;
            kinds.sync++;
            break;
          }
          continue;
        }
        w.sync();
        durable = { generation, ops: [...sinceReset] };
      } else {
        const fps = ["wal:reset:header-written", "wal:after-sync"] as const;
        const fp = rand() < 0.2 ? fps[randInt(rand, 0, 1)]! : undefined;
        generation++;
        if (fp !== undefined) {
          w.failpoint = crashAt(fp);
          assert.throws(() => w.reset(generation), Crash);
          // Before its fdatasync the new header is not durable: the old generation stays.
          if (fp === "wal:after-sync") durable = { generation, ops: [] };
          crashed = true;
          kinds.reset++;
          break;
        }
        w.reset(generation);
        sinceReset = [];
        durable = { generation, ops: [] };
      }
    }
    if (!crashed && rand() < 0.3) {
      // A transaction in flight at the crash, partly synced: the sync makes everything before
      // it durable, and the unfinished batch must be dropped.
      w.appendBatchBegin(tx + 1, 2);
      w.appendPut("in-flight", Buffer.from("v"), 0);
      w.sync();
      durable = { generation, ops: [...sinceReset] };
      kinds.inFlight++;
    } else if (!crashed) {
      kinds.plain++;
    }
    mem.crash();
    const { result, ops } = replayAll(mem, WAL, { fileId, generation: durable.generation });
    assert.equal(result.status, "ok");
    assert.deepEqual(ops, durable.ops);
  });
  for (const [kind, n] of Object.entries(kinds)) assert.ok(n >= 10, `${kind} crashes: ${n}`);
});
