/**
 * The deterministic workload of the crash tests, shared by the child that runs it and the
 * parent that checks what survived. Op i depends only on (seed, i), and runs at the child's
 * clock reading `CRASH_EPOCH + i`, so the deadline of an insert with a TTL is known too.
 */
import { Prng } from "./prng.js";

/** The child's clock during op i reads CRASH_EPOCH + i; the parent reads at CRASH_EPOCH. */
export const CRASH_EPOCH = 1_700_000_000_000;

/** An insert; with `ttl`, it expires `ttl` ms (ops) after the op that wrote it. */
export type CrashInsert = { kind: "insert"; key: string; value: string; ttl?: number };
export type CrashRemove = { kind: "remove"; key: string };

export type CrashOp =
  | CrashInsert
  | CrashRemove
  | { kind: "tx"; ops: (CrashInsert | CrashRemove)[] }
  | { kind: "flush" }
  | { kind: "compact" };

/** A model entry: the value and its deadline (0: none). */
export interface ModelEntry {
  v: string;
  at: number;
}

function value(rng: Prng, i: number): string {
  // Mostly small values; now and then one that needs overflow pages.
  if (rng.chance(0.03)) return `big${i}:${"x".repeat(5000 + rng.int(20_000))}`;
  return `v${i}`;
}

/** One in five inserts expires 1 to 40 ops later: many expire before a checkpoint runs. */
function insert(rng: Prng, key: string, i: number): CrashInsert {
  const v = value(rng, i);
  return rng.chance(0.2)
    ? { kind: "insert", key, value: v, ttl: 1 + rng.int(40) }
    : { kind: "insert", key, value: v };
}

export function crashOps(seed: number, count: number): CrashOp[] {
  const rng = new Prng(seed);
  const key = () => (rng.chance(0.02) ? "" : `k${rng.int(300)}`);
  const ops: CrashOp[] = [];
  for (let i = 0; i < count; i++) {
    const r = rng.int(100);
    if (r < 50) ops.push(insert(rng, key(), i));
    else if (r < 70) ops.push({ kind: "remove", key: key() });
    else if (r < 95) {
      const n = 1 + rng.int(5);
      ops.push({
        kind: "tx",
        ops: Array.from({ length: n }, () =>
          rng.chance(0.7) ? insert(rng, key(), i) : { kind: "remove" as const, key: key() },
        ),
      });
    } else if (r < 96) {
      // A transaction bigger than the checkpoint threshold: it skips the WAL and goes
      // straight into a checkpoint.
      ops.push({
        kind: "tx",
        ops: Array.from({ length: 80 }, (_, j) =>
          rng.chance(0.9)
            ? { kind: "insert" as const, key: key(), value: `bulk${i}.${j}:${"b".repeat(300)}` }
            : { kind: "remove" as const, key: key() },
        ),
      });
    } else if (r < 98) ops.push({ kind: "flush" });
    else ops.push({ kind: "compact" });
  }
  return ops;
}

/**
 * Applies op i to a model; returns whether the engine certainly logs a write for it (what
 * `everyN` counts): removing an absent key and an all-no-op transaction log nothing, and
 * removing a key that has expired logs a delete only if no sweep took it first.
 */
export function applyToModel(model: Map<string, ModelEntry>, op: CrashOp, i: number): boolean {
  const now = CRASH_EPOCH + i;
  const put = (o: CrashInsert) =>
    model.set(o.key, { v: o.value, at: o.ttl === undefined ? 0 : now + o.ttl });
  const remove = (key: string): boolean => {
    const e = model.get(key);
    model.delete(key);
    return e !== undefined && (e.at === 0 || e.at > now);
  };
  switch (op.kind) {
    case "insert":
      put(op);
      return true;
    case "remove":
      return remove(op.key);
    case "tx": {
      const staged = new Map<string, CrashInsert | null>();
      for (const o of op.ops) staged.set(o.key, o.kind === "insert" ? o : null);
      let logged = false;
      for (const [k, o] of staged) {
        if (o === null) {
          if (remove(k)) logged = true;
        } else {
          put(o);
          logged = true;
        }
      }
      return logged;
    }
    default:
      return false;
  }
}
