/**
 * The seeded random programs of the I/O fault tests and the Map model whose states they must
 * show. Kept apart from the harness so that the fixed programs of io-faults-open.test.ts build
 * their states and durability floors with the same model the randomized runs are held to.
 */
import type { Core } from "../../src/core.js";
import type { FlushPolicy } from "../../src/index.js";
import type { Prng } from "./prng.js";

/** The clock when a program starts; only "advance" ops move it. */
export const T0 = 1_000_000;
/** The store's checkpoint threshold: small, so that the programs checkpoint often. */
export const CHECKPOINT_BYTES = 4096;

/** A stored value and its deadline (0: none). */
export interface Rec {
  readonly v: string;
  readonly at: number;
}
export type Model = ReadonlyMap<string, Rec>;

export type Op =
  | { readonly kind: "put"; readonly key: string; readonly rec: Rec }
  | { readonly kind: "remove"; readonly key: string }
  | {
      readonly kind: "tx" | "bigTx";
      readonly writes: readonly (readonly [string, Rec | null])[];
      readonly staged: boolean;
    }
  | { readonly kind: "advance"; readonly ms: number }
  | { readonly kind: "flush" | "clear" | "sweep" | "reopen" }
  /** `leftover`: a killed compaction's complete output is there first, for it to remove. */
  | { readonly kind: "compact"; readonly leftover: boolean }
  /** The process dies (no close) and the database is opened again: `onEachWrite()` only. */
  | { readonly kind: "restart" };

export interface Program {
  readonly ops: Op[];
  /** `states[i]`: the model before op i; `states[ops.length]`: after the last. */
  readonly states: Model[];
  /** `clocks[i]`: the clock while op i runs (only "advance" moves it, for the next op). */
  readonly clocks: number[];
}

const isLive = (r: Rec, now: number) => r.at === 0 || r.at > now;

/** The model's live entries at `now`, as `core.entries` lists them. */
export function view(m: Model, now: number): string[] {
  const out: string[] = [];
  for (const [k, r] of m) if (isLive(r, now)) out.push(`${k}=${r.v}`);
  return out.sort();
}

export function dump(core: Core): string[] {
  return [...core.entries(undefined, true, undefined, true, false, Infinity)].map(
    ([k, v]) => `${k.toString("latin1")}=${v.toString("latin1")}`,
  );
}

/** What makes a transaction skip the WAL (file-store.ts: DIRECT_BATCH_MIN_OPS). */
const DIRECT_MIN_OPS = 64;

/** `restarts`: the program may restart (only under `onEachWrite()`, where a kill loses nothing). */
export function generate(rng: Prng, count: number, restarts: boolean): Program {
  let m = new Map<string, Rec>();
  let now = T0;
  const ops: Op[] = [];
  const states: Model[] = [m];
  const clocks: number[] = [];
  let serial = 0;
  // Half the programs keep a small database, whose checkpoint threshold stays near
  // CHECKPOINT_BYTES (it grows with the file), so puts checkpoint in settle() too.
  const keys = rng.chance(0.5) ? 40 : 500;
  const key = (i: number) => `k${String(i).padStart(3, "0")}`;
  // Mostly short values; some past a quarter of a 512-byte page (an overflow chain); a few
  // larger than the checkpoint threshold, so a single put checkpoints in settle().
  const value = () => {
    const r = rng.int(40);
    const len = r === 0 ? 1500 + rng.int(5000) : r < 4 ? 140 + rng.int(600) : rng.int(40);
    return `v${serial++}.`.padEnd(len, String.fromCharCode(97 + rng.int(26)));
  };
  const rec = (): Rec => ({ v: value(), at: rng.chance(0.15) ? now + 1 + rng.int(4000) : 0 });
  const liveKey = (): string | undefined => {
    const live = [...m].filter(([, r]) => isLive(r, now));
    return live.length === 0 ? undefined : rng.pick(live)[0];
  };
  for (let i = 0; i < count; i++) {
    const r = i === 0 && rng.chance(0.5) ? 60 : rng.int(100);
    let op: Op;
    if (r < 30) op = { kind: "put", key: key(rng.int(keys)), rec: rec() };
    else if (r < 44) op = { kind: "remove", key: liveKey() ?? key(rng.int(keys)) };
    else if (r < 56) {
      const writes = new Map<string, Rec | null>();
      for (let n = 1 + rng.int(20); writes.size < n; ) {
        writes.set(
          rng.chance(0.2) ? (liveKey() ?? key(rng.int(keys))) : key(rng.int(keys)),
          rng.chance(0.2) ? null : rec(),
        );
      }
      op = { kind: "tx", writes: [...writes], staged: rng.chance(0.5) };
    } else if (r < 64) {
      // Past both limits, so it is not logged: the checkpoint inside applyBatch commits it.
      // Its keys reach past a small database's, half of those as removes of absent keys.
      const writes = new Map<string, Rec | null>();
      const target = DIRECT_MIN_OPS + rng.int(200);
      const removals = rng.chance(0.7) ? 0.15 : 0;
      let bytes = 0;
      while (writes.size < target) {
        const i = rng.int(Math.max(keys, 300));
        const k = rng.chance(removals) ? liveKey() : key(i);
        if (k === undefined || writes.has(k)) continue;
        const e = rng.chance(i >= keys ? 0.5 : removals) ? null : rec();
        writes.set(k, e);
        bytes += k.length + (e === null ? 0 : e.v.length);
      }
      const k = key(rng.int(keys));
      const last = writes.get(k);
      const pad = Math.max(0, CHECKPOINT_BYTES - bytes + (last?.v.length ?? 0));
      writes.set(k, { v: `v${serial++}.`.padEnd(pad, "z"), at: last?.at ?? 0 });
      op = { kind: "bigTx", writes: [...writes], staged: rng.chance(0.5) };
    } else if (r < 69) op = { kind: "flush" };
    else if (r < 71) op = { kind: "clear" };
    else if (r < 77) op = { kind: "sweep" };
    else if (r < 85) op = { kind: "advance", ms: rng.int(3000) };
    else if (r < 89) op = { kind: "compact", leftover: rng.chance(0.3) };
    else if (r < 94) op = { kind: restarts && rng.chance(0.5) ? "restart" : "reopen" };
    else op = { kind: "put", key: key(rng.int(keys)), rec: rec() };
    clocks.push(now);
    m = applyToModel(m, op, now);
    if (op.kind === "advance") now += op.ms;
    ops.push(op);
    states.push(m);
  }
  clocks.push(now);
  return { ops, states, clocks };
}

export function applyToModel(m: Map<string, Rec>, op: Op, now: number): Map<string, Rec> {
  switch (op.kind) {
    case "put":
      return new Map(m).set(op.key, op.rec);
    case "remove": {
      const next = new Map(m);
      next.delete(op.key);
      return next;
    }
    case "tx":
    case "bigTx": {
      const next = new Map(m);
      for (const [k, r] of op.writes) {
        if (r === null) next.delete(k);
        else next.set(k, r);
      }
      return next;
    }
    case "clear":
      return new Map();
    case "sweep":
      return new Map([...m].filter(([, r]) => isLive(r, now)));
    default:
      return m;
  }
}

/**
 * For each op, the first model state the policy promises to keep across a crash before the
 * op starts. Counts only the writes certain to be logged (a remove of an expired key may or
 * may not be), which can only make the bound weaker than what the engine keeps. Programs
 * restart only under `onEachWrite()`, where every op's state is durable when it returns.
 */
export function durableFloors(p: Program, policy: FlushPolicy): number[] {
  const floors: number[] = [];
  let floor = 0;
  const writesAt: number[] = [];
  p.ops.forEach((op, i) => {
    floors.push(policy.kind === "onEachWrite" ? i : floor);
    const m = p.states[i]!;
    const now = p.clocks[i]!;
    let counted = false;
    if (op.kind === "put" || op.kind === "tx") counted = true;
    else if (op.kind === "remove") {
      const r = m.get(op.key);
      counted = r !== undefined && isLive(r, now);
    } else if (op.kind === "clear") counted = [...m.values()].some((r) => isLive(r, now));
    else if (["bigTx", "flush", "compact", "reopen"].includes(op.kind)) floor = i + 1;
    if (counted) {
      writesAt.push(i + 1);
      if (policy.kind === "everyN" && writesAt.length >= policy.n) {
        floor = Math.max(floor, writesAt[writesAt.length - policy.n]!);
      }
    }
  });
  floors.push(policy.kind === "onEachWrite" ? p.ops.length : floor);
  return floors;
}
