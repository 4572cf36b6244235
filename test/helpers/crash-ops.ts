/**
 * The deterministic workload of the crash tests, shared by the child that runs it and the
 * parent that checks what survived. Op i depends only on (seed, i).
 */
import { Prng } from "./prng.js";

export type CrashOp =
  | { kind: "insert"; key: string; value: string }
  | { kind: "remove"; key: string }
  | {
      kind: "tx";
      ops: ({ kind: "insert"; key: string; value: string } | { kind: "remove"; key: string })[];
    }
  | { kind: "flush" }
  | { kind: "compact" };

function value(rng: Prng, i: number): string {
  // Mostly small values; now and then one that needs overflow pages.
  if (rng.chance(0.03)) return `big${i}:${"x".repeat(5000 + rng.int(20_000))}`;
  return `v${i}`;
}

export function crashOps(seed: number, count: number): CrashOp[] {
  const rng = new Prng(seed);
  const key = () => (rng.chance(0.02) ? "" : `k${rng.int(300)}`);
  const ops: CrashOp[] = [];
  for (let i = 0; i < count; i++) {
    const r = rng.int(100);
    if (r < 50) ops.push({ kind: "insert", key: key(), value: value(rng, i) });
    else if (r < 70) ops.push({ kind: "remove", key: key() });
    else if (r < 95) {
      const n = 1 + rng.int(5);
      ops.push({
        kind: "tx",
        ops: Array.from({ length: n }, () =>
          rng.chance(0.7)
            ? { kind: "insert" as const, key: key(), value: value(rng, i) }
            : { kind: "remove" as const, key: key() },
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
 * Applies op to a model; returns whether the engine logs a write for it (what `everyN`
 * counts): removing an absent key and an all-no-op transaction log nothing.
 */
export function applyToModel(model: Map<string, string>, op: CrashOp): boolean {
  switch (op.kind) {
    case "insert":
      model.set(op.key, op.value);
      return true;
    case "remove":
      return model.delete(op.key);
    case "tx": {
      const staged = new Map<string, string | null>();
      for (const o of op.ops) staged.set(o.key, o.kind === "insert" ? o.value : null);
      let logged = false;
      for (const [k, v] of staged) {
        if (v === null) {
          if (model.delete(k)) logged = true;
        } else {
          model.set(k, v);
          logged = true;
        }
      }
      return logged;
    }
    default:
      return false;
  }
}
