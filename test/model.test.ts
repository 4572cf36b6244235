/**
 * Randomized test against a plain Map model with an injected clock, mixing every operation
 * of the API (transactions that commit and that throw included). Seeded: a failure prints
 * the seed, and EMDB_SEED=<seed> replays it.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Emdb, type Transaction, Ttl } from "../src/index.js";
import { FakeClock } from "./helpers/db.js";
import { Prng, testSeed, withSeed } from "./helpers/prng.js";

interface ModelEntry {
  value: string;
  expiresAt: number | undefined;
}

class Model {
  readonly map = new Map<string, ModelEntry>();
  constructor(readonly clock: FakeClock) {}
  live(k: string): ModelEntry | undefined {
    const e = this.map.get(k);
    if (e === undefined) return undefined;
    if (e.expiresAt !== undefined && e.expiresAt <= this.clock.now) return undefined;
    return e;
  }
  liveSorted(): [string, string][] {
    return [...this.map.keys()]
      .filter((k) => this.live(k) !== undefined)
      .sort(compareBytes)
      .map((k) => [k, this.map.get(k)!.value]);
  }
}

/** Keys are latin1 strings here (one char per byte), which compare like emdb's keys. */
function compareBytes(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

const toKey = (k: string): Buffer => Buffer.from(k, "latin1");
const fromKey = (b: Buffer): string => b.toString("latin1");

function randomKey(rng: Prng): string {
  if (rng.chance(0.1))
    return String.fromCharCode(...Array.from({ length: rng.int(4) }, () => rng.int(256)));
  const segs = ["a", "b", "ab", "c", "z\u00ff"];
  const n = 1 + rng.int(3);
  return Array.from({ length: n }, () => rng.pick(segs)).join(".");
}

function randomTtl(rng: Prng): { ttl: Ttl; ms: number | undefined } {
  const r = rng.int(3);
  if (r === 0) return { ttl: Ttl.never(), ms: undefined };
  const ms = rng.int(50);
  return { ttl: Ttl.after(ms), ms };
}

function runModel(seed: number, steps: number): void {
  const rng = new Prng(seed);
  const clock = new FakeClock(1_000_000);
  const db = Emdb.builder().clock(clock.fn).build();
  const m = new Model(clock);
  const value = () => `v${rng.int(1000)}`;

  const txStep = (tx: Transaction, staged: Map<string, ModelEntry | null>) => {
    const k = randomKey(rng);
    const visible = (): ModelEntry | undefined => {
      if (!staged.has(k)) return m.live(k);
      const s = staged.get(k)!;
      if (s === null) return undefined;
      return s.expiresAt !== undefined && s.expiresAt <= clock.now ? undefined : s;
    };
    switch (rng.int(4)) {
      case 0: {
        const v = value();
        tx.insert(toKey(k), v);
        staged.set(k, { value: v, expiresAt: undefined });
        break;
      }
      case 1: {
        const v = value();
        const { ttl, ms } = randomTtl(rng);
        tx.insertWithTtl(toKey(k), v, ttl);
        staged.set(k, { value: v, expiresAt: ms === undefined ? undefined : clock.now + ms });
        break;
      }
      case 2:
        assert.equal(tx.remove(toKey(k))?.toString(), visible()?.value);
        staged.set(k, null);
        break;
      default:
        assert.equal(tx.get(toKey(k))?.toString(), visible()?.value);
        assert.equal(tx.containsKey(toKey(k)), visible() !== undefined);
    }
  };

  for (let step = 0; step < steps; step++) {
    const op = rng.int(100);
    const k = randomKey(rng);
    if (op < 25) {
      const v = value();
      db.insert(toKey(k), v);
      m.map.set(k, { value: v, expiresAt: undefined });
    } else if (op < 40) {
      const v = value();
      const { ttl, ms } = randomTtl(rng);
      db.insertWithTtl(toKey(k), v, ttl);
      m.map.set(k, { value: v, expiresAt: ms === undefined ? undefined : clock.now + ms });
    } else if (op < 50) {
      assert.equal(db.remove(toKey(k))?.toString(), m.live(k)?.value, `remove ${k}`);
      m.map.delete(k);
    } else if (op < 60) {
      assert.equal(db.get(toKey(k))?.toString(), m.live(k)?.value, `get ${k}`);
      assert.equal(db.containsKey(toKey(k)), m.live(k) !== undefined);
    } else if (op < 68) {
      const staged = new Map<string, ModelEntry | null>();
      const fail = rng.chance(0.3);
      const n = rng.int(6);
      try {
        db.transaction((tx) => {
          for (let i = 0; i < n; i++) txStep(tx, staged);
          if (fail) throw new Error("rollback");
        });
      } catch (e) {
        assert.ok(fail && (e as Error).message === "rollback");
      }
      if (!fail) {
        for (const [key, s] of staged) {
          if (s === null) m.map.delete(key);
          else m.map.set(key, s);
        }
      }
    } else if (op < 72) {
      const e = m.live(k);
      const ok = db.persist(toKey(k));
      assert.equal(ok, e !== undefined && e.expiresAt !== undefined, `persist ${k}`);
      if (ok) m.map.set(k, { value: e!.value, expiresAt: undefined });
    } else if (op < 76) {
      const e = m.live(k);
      const ttl = db.ttl(toKey(k));
      if (e === undefined) assert.equal(ttl, undefined);
      else
        assert.equal(
          ttl,
          e.expiresAt === undefined ? Number.POSITIVE_INFINITY : e.expiresAt - clock.now,
        );
      assert.deepEqual(
        db.expiresAt(toKey(k)),
        e?.expiresAt === undefined ? undefined : new Date(e.expiresAt),
      );
    } else if (op < 80) {
      clock.advance(rng.int(20));
    } else if (op < 83) {
      const expired = [...m.map].filter(([key]) => m.live(key) === undefined).length;
      const swept = db.sweepExpired();
      // len() and stats() may already have dropped some expired entries silently.
      assert.ok(swept <= expired, `swept ${swept} of ${expired}`);
      for (const [key] of [...m.map]) if (m.live(key) === undefined) m.map.delete(key);
    } else if (op < 86) {
      const prefix = rng.pick(["a", "b", "ab", "a.b", "c"]);
      const expected = m.liveSorted().filter(([key]) => key.startsWith(`${prefix}.`));
      if (rng.chance(0.5)) {
        assert.deepEqual(
          [...db.group(prefix)].map(([kb, v]) => [fromKey(kb), v.toString()]),
          expected,
          `group ${prefix}`,
        );
      } else {
        assert.equal(db.deleteGroup(prefix), expected.length, `deleteGroup ${prefix}`);
        for (const key of [...m.map.keys()]) if (key.startsWith(`${prefix}.`)) m.map.delete(key);
      }
    } else if (op < 93) {
      const lo = randomKey(rng);
      const hi = randomKey(rng);
      const reverse = rng.chance(0.5);
      const limit = rng.chance(0.5) ? rng.int(5) : undefined;
      let expected = m.liveSorted().filter(([key]) => key >= lo && key < hi);
      if (reverse) expected.reverse();
      if (limit !== undefined) expected = expected.slice(0, limit);
      const opts =
        limit === undefined
          ? { gte: toKey(lo), lt: toKey(hi), reverse }
          : { gte: toKey(lo), lt: toKey(hi), reverse, limit };
      assert.deepEqual(
        [...db.range(opts)].map(([kb, v]) => [fromKey(kb), v.toString()]),
        expected,
        `range [${lo}, ${hi}) reverse=${reverse} limit=${limit}`,
      );
    } else if (op < 98) {
      assert.equal(db.len(), m.liveSorted().length);
      assert.equal(db.isEmpty(), m.liveSorted().length === 0);
    } else if (op < 99) {
      assert.deepEqual(
        [...db.iter()].map(([kb, v]) => [fromKey(kb), v.toString()]),
        m.liveSorted(),
      );
    } else {
      db.clear();
      m.map.clear();
    }
  }
  assert.deepEqual(
    [...db.iter()].map(([kb, v]) => [fromKey(kb), v.toString()]),
    m.liveSorted(),
  );
  assert.deepEqual(db.check(), []);
}

test("randomized operations agree with a Map model (several seeds)", () => {
  const base = testSeed();
  for (let i = 0; i < 8; i++) {
    const seed = (base + i) >>> 0;
    withSeed(seed, () => runModel(seed, 4000));
  }
});
