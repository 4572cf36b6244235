/**
 * The legacy replay (§1.6) against a model: random logs of inserts (with and without expiry),
 * removes, clears, checkpoints and batches (some malformed), cut at a random byte or with a
 * random flipped byte, replayed at random chunk sizes. Prints its seed; EMDB_SEED replays it.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type PositionalReader, replayLog } from "../migrations/legacy-log.js";
import { LiveSet } from "../migrations/live-set.js";
import { begin, buildLog, end, ins, type LogOp, rm } from "./helpers/legacy-writer.js";
import { testSeed, uniform } from "./helpers/prng.js";

/** A PositionalReader over a Buffer, for replaying without a file. */
function memReader(bytes: Buffer): PositionalReader {
  return {
    read(buf, offset, length, position) {
      const n = Math.max(0, Math.min(length, bytes.length - position));
      bytes.copy(buf, offset, position, position + n);
      return n;
    },
  };
}

/**
 * The model: §1.6 stated over the op list. The first `count` records are intact; when `torn`,
 * the record after them does not decode (a cut through it or a flipped byte).
 */
function model(ops: LogOp[], offsets: number[], count: number, torn: boolean, size: number) {
  const map = new Map<string, [string, number]>();
  const apply = (op: LogOp) => {
    if (op.op === "insert") map.set(hex(op.key), [hex(op.value), op.expiresAt ?? 0]);
    else if (op.op === "remove") map.delete(hex(op.key));
    else if (op.op === "clear") map.clear();
  };
  let open: { tx: number; count: number; at: number; ops: LogOp[] } | undefined;
  let maxTx = 0;
  const stop = (validEnd: number) => ({ map, validEnd, maxTx, stopped: true });
  for (let i = 0; i < count; i++) {
    const op = ops[i]!;
    if (op.op === "batchBegin") {
      if (open) return stop(open.at);
      open = { tx: op.txId, count: op.opCount, at: offsets[i]!, ops: [] };
    } else if (op.op === "batchEnd") {
      if (!open) return stop(offsets[i]!);
      if (op.txId !== open.tx || open.ops.length !== open.count) return stop(open.at);
      for (const o of open.ops) apply(o);
      maxTx = Math.max(maxTx, op.txId);
      open = undefined;
    } else if (open) open.ops.push(op);
    else apply(op);
  }
  if (torn) return stop(open ? open.at : offsets[count]!);
  if (open) return stop(open.at);
  return { map, validEnd: size, maxTx, stopped: false };
}

function hex(b: Buffer | string): string {
  return (typeof b === "string" ? Buffer.from(b) : b).toString("hex");
}

function randomOps(rand: () => number, n: number): LogOp[] {
  const ops: LogOp[] = [];
  const key = () => `k${Math.floor(rand() * 40)}`;
  const value = () =>
    "v".repeat(Math.floor(rand() * 3) === 0 ? Math.floor(rand() * 3000) : Math.floor(rand() * 20));
  let tx = 1;
  while (ops.length < n) {
    const r = rand();
    if (r < 0.5)
      ops.push(rand() < 0.5 ? ins(key(), value()) : ins(key(), value(), Math.floor(rand() * 5000)));
    else if (r < 0.65) ops.push(rm(key()));
    else if (r < 0.67) ops.push({ op: "clear" });
    else if (r < 0.69) ops.push({ op: "checkpoint", count: 3 });
    else {
      // A batch, usually well formed, sometimes not.
      const count = Math.floor(rand() * 4);
      const flaw = rand();
      const id = tx++;
      ops.push(begin(id, flaw < 0.05 ? count + 1 : count));
      for (let i = 0; i < count; i++) ops.push(rand() < 0.8 ? ins(key(), value(), 0) : rm(key()));
      if (flaw < 0.08) continue; // missing BatchEnd
      ops.push(end(flaw < 0.1 ? id + 1 : id));
      if (flaw > 0.98) ops.push(end(id)); // orphan
    }
  }
  return ops;
}

describe("randomized against the model", () => {
  test("random logs, cut at a random byte or with a random flipped byte, at random chunk sizes", () => {
    const seed = testSeed();
    const rand = uniform(seed);
    for (let iter = 0; iter < 60; iter++) {
      const ops = randomOps(rand, 5 + Math.floor(rand() * 60));
      const { bytes, offsets } = buildLog({}, ops);
      let log = Buffer.from(bytes);
      let count = ops.length;
      let torn = false;
      const mode = rand();
      if (mode < 0.4) {
        const cut = 64 + Math.floor(rand() * (bytes.length - 64));
        log = log.subarray(0, cut);
        count = offsets.filter((_o, i) => (offsets[i + 1] ?? bytes.length) <= cut).length;
        torn = count < ops.length && offsets[count]! < cut;
      } else if (mode < 0.7) {
        const at = 64 + Math.floor(rand() * (bytes.length - 64));
        log[at]! ^= 1 << Math.floor(rand() * 8);
        count = offsets.filter((o) => o <= at).length - 1;
        torn = true;
      }
      const want = model(ops, offsets, count, torn, log.length);
      const set = new LiveSet();
      const chunkSize = 64 + Math.floor(rand() * 5000);
      const got = replayLog(memReader(log), 64, log.length, set, { chunkSize });
      const { entries } = set.finish();
      const gotMap = new Map(
        entries.map((e) => [e.key.toString("hex"), [e.value.toString("hex"), e.expiresAt]]),
      );
      const ctx = `seed ${seed} iteration ${iter} mode ${mode.toFixed(2)} chunk ${chunkSize}`;
      assert.deepEqual(gotMap, new Map([...want.map].sort()), ctx);
      assert.equal(got.validEnd, want.validEnd, ctx);
      assert.equal(got.maxBatchTxId, want.maxTx, ctx);
      assert.equal(got.stoppedAt !== undefined, want.stopped, ctx);
    }
  });

  test("a record larger than the chunk size and records straddling every boundary", () => {
    const big = "x".repeat(10_000);
    const ops = [
      ins("a", "1"),
      ins("big", big, 7),
      ins("b", "2"),
      begin(1, 2),
      ins("c", big),
      rm("a"),
      end(1),
    ];
    const { bytes } = buildLog({}, ops);
    for (const chunkSize of [64, 65, 100, 333, 4096]) {
      const set = new LiveSet();
      const r = replayLog(memReader(bytes), 64, bytes.length, set, { chunkSize });
      assert.equal(r.validEnd, bytes.length);
      const got = set.finish().entries.map((e) => [e.key.toString(), e.value.length, e.expiresAt]);
      assert.deepEqual(
        got,
        [
          ["b", 1, 0],
          ["big", 10_000, 7],
          ["c", 10_000, 0],
        ],
        `chunk ${chunkSize}`,
      );
    }
  });
});
