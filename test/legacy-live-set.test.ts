/**
 * LiveSet, the replay target of the legacy readers, against a Map model: last write wins,
 * Remove and Clear, compaction under churn, expiry at finish, and the radix sort's order.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { LiveSet } from "../migrations/live-set.js";
import { testSeed, uniform } from "./helpers/prng.js";

/** Inserts through a scratch buffer laid out like a log record: key, 4 junk bytes, value. */
function put(set: LiveSet, key: Buffer, value: Buffer, expiresAt = 0): void {
  const buf = Buffer.concat([
    Buffer.from([0xee]),
    key,
    Buffer.alloc(4, 0xdd),
    value,
    Buffer.from([0xcc]),
  ]);
  const ks = 1;
  const ke = ks + key.length;
  set.insert(buf, ks, ke, ke + 4, ke + 4 + value.length, expiresAt);
  // The set may keep pointing into `buf` until told it is about to be reused.
  set.detach(buf);
  buf.fill(0);
}

function del(set: LiveSet, key: Buffer): void {
  const buf = Buffer.concat([Buffer.from([1, 2]), key]);
  set.remove(buf, 2, 2 + key.length);
}

function randomKey(rand: () => number): Buffer {
  // Few distinct first bytes and shared prefixes, so the radix sort recurses and sees ties.
  const prefix = ["", "a", "ab", "user.", "\x00", "\xff\xff"][Math.floor(rand() * 6)]!;
  const len = Math.floor(rand() * (rand() < 0.1 ? 40 : 6));
  const tail = Buffer.alloc(len);
  for (let i = 0; i < len; i++)
    tail[i] = rand() < 0.5 ? Math.floor(rand() * 3) : Math.floor(rand() * 256);
  return Buffer.concat([Buffer.from(prefix, "latin1"), tail]);
}

test("random inserts, removes and clears match a Map model, sorted by key bytes", () => {
  const seed = testSeed();
  const rand = uniform(seed);
  for (let round = 0; round < 8; round++) {
    const set = new LiveSet();
    const model = new Map<string, [Buffer, number]>();
    const keys: Buffer[] = [];
    const steps = 200 + Math.floor(rand() * 6000);
    for (let i = 0; i < steps; i++) {
      const r = rand();
      const key =
        keys.length > 0 && rand() < 0.6 ? keys[Math.floor(rand() * keys.length)]! : randomKey(rand);
      keys.push(key);
      if (r < 0.7) {
        const value = Buffer.alloc(Math.floor(rand() * (rand() < 0.05 ? 300_000 : 40)), i & 0xff);
        const exp = rand() < 0.3 ? 1 + Math.floor(rand() * 100) : 0;
        put(set, key, value, exp);
        model.set(key.toString("latin1"), [value, exp]);
      } else if (r < 0.995) {
        del(set, key);
        model.delete(key.toString("latin1"));
      } else {
        set.clear();
        model.clear();
      }
    }
    assert.equal(set.size, model.size, `seed ${seed} round ${round}`);
    const now = rand() < 0.5 ? 50 : undefined;
    const { entries, expiredDropped } = set.finish(now);
    const want = [...model]
      .filter(([, [, e]]) => now === undefined || e === 0 || e > now)
      .map(([k, [v, e]]) => [Buffer.from(k, "latin1"), v, e] as const)
      .sort((a, b) => Buffer.compare(a[0], b[0]));
    const ctx = `seed ${seed} round ${round}`;
    assert.equal(entries.length, want.length, ctx);
    assert.equal(expiredDropped, model.size - want.length, ctx);
    entries.forEach((e, i) => {
      const [k, v, exp] = want[i]!;
      assert.ok(
        e.key.equals(k),
        `${ctx}: key ${i} is ${e.key.toString("hex")}, want ${k.toString("hex")}`,
      );
      assert.ok(e.value.equals(v), `${ctx}: value of ${k.toString("hex")}`);
      assert.equal(e.expiresAt, exp, ctx);
    });
  }
});

test("100,000 shuffled keys sharing long prefixes come out in byte order", () => {
  const set = new LiveSet();
  const n = 100_000;
  const rand = uniform(7);
  const ids = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [ids[i], ids[j]] = [ids[j]!, ids[i]!];
  }
  for (const id of ids) {
    // 12 shared bytes, then a 5-hex-digit counter, some keys a prefix of others.
    put(
      set,
      Buffer.from(`common.prefix${id.toString(16).padStart(5, "0")}${id % 7 === 0 ? "" : "z"}`),
      Buffer.from([id & 0xff]),
    );
  }
  const { entries } = set.finish();
  assert.equal(entries.length, n);
  for (let i = 1; i < n; i++) {
    assert.ok(
      Buffer.compare(entries[i - 1]!.key, entries[i]!.key) < 0,
      `entries ${i - 1} and ${i} out of order`,
    );
  }
});

test("heavy overwriting and removing keep memory near the live data (compaction)", () => {
  const set = new LiveSet();
  const value = Buffer.alloc(1000);
  let peak = 0;
  for (let i = 0; i < 40_000; i++) {
    value.writeUInt32LE(i);
    put(set, Buffer.from(`k${i % 10}`), value);
    if (i % 3 === 0) del(set, Buffer.from(`k${(i + 5) % 10}`));
    peak = Math.max(peak, set.heldBytes);
  }
  // 40 MB went in; at most ten ~1 KB values are ever live. The bound is the compaction slack
  // (8 MiB of garbage) plus one slab.
  assert.ok(peak <= 10 << 20, `peak ${peak} bytes held`);
  const { entries } = set.finish();
  assert.ok(entries.length > 0 && entries.length <= 10);
  for (const e of entries) {
    const k = Number(e.key.toString().slice(1));
    assert.equal(e.value.readUInt32LE(0), 39_990 + k, `value of ${e.key}`);
  }
});

test("keys that are each a prefix of the next (deep radix recursion) sort by length", () => {
  const set = new LiveSet();
  const rand = uniform(3);
  const lengths = Array.from({ length: 3000 }, (_, i) => i);
  for (let i = lengths.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [lengths[i], lengths[j]] = [lengths[j]!, lengths[i]!];
  }
  for (const len of lengths) put(set, Buffer.alloc(len, 0x61), Buffer.from(String(len)));
  const { entries } = set.finish();
  assert.deepEqual(
    entries.map((e) => e.key.length),
    Array.from({ length: 3000 }, (_, i) => i),
  );
  assert.ok(entries.every((e) => e.value.toString() === String(e.key.length)));
});

test("a compaction while entries still point into the caller's buffer keeps them intact", () => {
  const set = new LiveSet();
  const n = 10_000;
  for (let i = 0; i < n; i++) put(set, Buffer.from(`key${i}`), Buffer.alloc(1000, 1));
  // Overwrite every key with a short value, all from one buffer that is never detached: the
  // slots stay pending while the garbage left in the slabs forces a compaction midway.
  const shared = Buffer.alloc(n * 16);
  let at = 0;
  for (let i = 0; i < n; i++) {
    const k = Buffer.from(`key${i}`);
    k.copy(shared, at);
    shared.writeUInt32LE(i, at + k.length);
    set.insert(shared, at, at + k.length, at + k.length, at + k.length + 4, i);
    at += k.length + 4;
  }
  assert.ok(set.heldBytes < 9 << 20, `compaction ran (held ${set.heldBytes})`);
  const { entries } = set.finish();
  assert.equal(entries.length, n);
  for (const e of entries) {
    const i = Number(e.key.toString().slice(3));
    assert.equal(e.value.length, 4);
    assert.equal(e.value.readUInt32LE(0), i);
    assert.equal(e.expiresAt, i);
  }
});

test("clear empties the set and later inserts start afresh", () => {
  const set = new LiveSet();
  put(set, Buffer.from("a"), Buffer.from("1"));
  set.clear();
  put(set, Buffer.from("b"), Buffer.from("2"));
  del(set, Buffer.from("a"));
  const { entries } = set.finish();
  assert.deepEqual(
    entries.map((e) => [e.key.toString(), e.value.toString()]),
    [["b", "2"]],
  );
});
