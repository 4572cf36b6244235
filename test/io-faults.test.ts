/**
 * A failed write or sync, then a power loss, against a Map model (seeded, randomized).
 *
 * The other crash tests cut the power between two successful I/O calls; this one makes one
 * call fail first, the way a full or dying disk does, because the engine then has to decide
 * what memory keeps while the file's state is only partly known. A large transaction whose
 * checkpoint failed after its meta page was synced used to be undone in memory although a
 * reopen showed it (see storage.test.ts); this generalises that case to every operation.
 *
 * Each seed is a random program (puts with and without TTL, removes, small logged
 * transactions, large ones that skip the WAL, flush, clear, sweep, compact, close and
 * reopen) on 512-byte pages with a 4 KiB checkpoint threshold, so checkpoints, splits and
 * overflow values are frequent. A clean run counts the backend writes and syncs of every
 * operation; then, for a few (operation, n-th call) picks, the program is run again up to
 * that operation and that call throws. Then:
 *  1. memory shows the model before or after the operation, never a mix;
 *  2. the store refuses writes (EMDB_IO) and still answers reads, except for a compaction
 *     that failed before its rename, which leaves the old files and a usable store;
 *  3. after `crash()` a reopen shows what memory showed. A MemoryBackend call that throws
 *     has done nothing, so under `onEachWrite()` memory and disk must agree exactly. Under
 *     `everyN(4)` and `manual()` the reopen may be any model state from the last one the
 *     policy promised durable up to what memory showed: no promised write lost, no half
 *     transaction.
 * A kill without a power loss keeps what was written but not synced, so a failed sync may
 * leave the file ahead of memory: a reopen of the files as a kill leaves them must show one
 * whole state, before or after, and so must a power loss after such a reopen (which once
 * lost the database: the open bound a new WAL to a meta page that was never synced).
 * Comparisons read live entries at the clock of the failing operation; the model keeps
 * deadlines, so entries expired by then are left out on both sides.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Core } from "../src/core.js";
import { EmdbError } from "../src/errors.js";
import { everyN, type FlushPolicy, manual, onEachWrite } from "../src/index.js";
import { hashInternalKey } from "../src/keys.js";
import { MemoryBackend } from "../src/pager/backend.js";
import { type Entry, Timed } from "../src/shards/keyspace.js";
import { StagedWrites } from "../src/shards/staged-writes.js";
import { Prng, testSeed, withSeed } from "./helpers/prng.js";
import { openCore } from "./helpers/storage.js";

const PATH = "/faults.emdb";
const T0 = 1_000_000;
const CHECKPOINT_BYTES = 4096;
/** What makes a transaction skip the WAL (file-store.ts: DIRECT_BATCH_MIN_OPS). */
const DIRECT_MIN_OPS = 64;

/** A stored value and its deadline (0: none). */
interface Rec {
  readonly v: string;
  readonly at: number;
}
type Model = ReadonlyMap<string, Rec>;

type Op =
  | { readonly kind: "put"; readonly key: string; readonly rec: Rec }
  | { readonly kind: "remove"; readonly key: string }
  | {
      readonly kind: "tx" | "bigTx";
      readonly writes: readonly (readonly [string, Rec | null])[];
      readonly staged: boolean;
    }
  | { readonly kind: "advance"; readonly ms: number }
  | { readonly kind: "flush" | "clear" | "sweep" | "compact" | "reopen" };

interface Program {
  readonly ops: Op[];
  /** `states[i]`: the model before op i; `states[ops.length]`: after the last. */
  readonly states: Model[];
  /** `clocks[i]`: the clock while op i runs (only "advance" moves it, for the next op). */
  readonly clocks: number[];
}

const isLive = (r: Rec, now: number) => r.at === 0 || r.at > now;

/** The model's live entries at `now`, as `core.entries` lists them. */
function view(m: Model, now: number): string[] {
  const out: string[] = [];
  for (const [k, r] of m) if (isLive(r, now)) out.push(`${k}=${r.v}`);
  return out.sort();
}

function dump(core: Core): string[] {
  return [...core.entries(undefined, true, undefined, true, false, Infinity)].map(
    ([k, v]) => `${k.toString("latin1")}=${v.toString("latin1")}`,
  );
}

function generate(rng: Prng, count: number): Program {
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
    else if (r < 89) op = { kind: "compact" };
    else op = r < 94 ? { kind: "reopen" } : { kind: "put", key: key(rng.int(keys)), rec: rec() };
    clocks.push(now);
    m = applyToModel(m, op, now);
    if (op.kind === "advance") now += op.ms;
    ops.push(op);
    states.push(m);
  }
  clocks.push(now);
  return { ops, states, clocks };
}

function applyToModel(m: Map<string, Rec>, op: Op, now: number): Map<string, Rec> {
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
 * may not be), which can only make the bound weaker than what the engine keeps.
 */
function durableFloors(p: Program, policy: FlushPolicy): number[] {
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

class Harness {
  readonly be = new MemoryBackend();
  now = T0;
  core: Core;
  /** Set during the failing op; the hook counts its writes and syncs. */
  armed = false;
  calls = 0;
  failAt = -1;
  failed: string | undefined;
  /** Closed, and the open that follows has not returned (it threw if this stays set). */
  reopening = false;

  constructor(private readonly policy: FlushPolicy) {
    this.core = this.open();
  }

  open(): Core {
    const core = openOn(this.be, () => this.now, this.policy);
    this.be.hook = (op, name) => {
      if (op !== "write" && op !== "sync") return;
      if (this.armed && this.calls === this.failAt) {
        this.failed = `${op} #${this.calls} of ${name}`;
        this.calls++;
        throw new Error("EIO (injected)");
      }
      this.calls++;
    };
    return core;
  }

  run(op: Op): void {
    const core = this.core;
    switch (op.kind) {
      case "put":
        core.put(
          op.key,
          hashInternalKey(op.key),
          op.rec.v,
          op.rec.at === 0 ? undefined : op.rec.at,
        );
        return;
      case "remove":
        core.remove(op.key, hashInternalKey(op.key));
        return;
      case "tx":
      case "bigTx": {
        const entry = (r: Rec | null): Entry | null =>
          r === null ? null : r.at === 0 ? r.v : new Timed(r.v, r.at);
        if (op.staged) {
          const s = new StagedWrites();
          for (const [k, r] of op.writes) s.set(k, hashInternalKey(k), entry(r));
          core.applyBatch(s);
        } else {
          core.applyBatch(new Map(op.writes.map(([k, r]) => [k, entry(r)])));
        }
        return;
      }
      case "flush":
        core.persistence.flush();
        return;
      case "clear":
        core.clear();
        return;
      case "sweep":
        core.sweep();
        return;
      case "compact":
        core.persistence.compact();
        return;
      case "reopen":
        core.persistence.close();
        this.reopening = true;
        this.core = this.open();
        this.reopening = false;
        return;
      case "advance":
        return;
    }
  }

  /**
   * The files as a killed process leaves them once the OS has written back what it was
   * given, opened on a copy: the original keeps its unsynced state for `crashAndReopen`.
   */
  killAndReopen(where: string): string[] {
    const copy = new MemoryBackend();
    for (const name of this.be.names()) copy.setBytes(name, this.be.bytes(name));
    return inspect(
      openOn(copy, () => this.now, this.policy),
      where,
    );
  }

  /** Power loss, then a reopen that must find a sound file. */
  crashAndReopen(where: string): string[] {
    this.be.crash();
    this.armed = false;
    this.core = this.open();
    return inspect(this.core, where);
  }
}

function openOn(be: MemoryBackend, clock: () => number, policy: FlushPolicy): Core {
  return openCore(be, PATH, {
    clock,
    flushPolicy: policy,
    pageSize: 512,
    checkpointBytes: CHECKPOINT_BYTES,
  });
}

/** A just opened database's live entries, after both consistency checks. */
function inspect(core: Core, where: string): string[] {
  assert.deepEqual(core.ks.check(), [], `${where}: keyspace`);
  assert.deepEqual(core.persistence.check(), [], `${where}: store`);
  return dump(core);
}

interface OpIo {
  /** Backend writes and syncs. */
  readonly calls: number;
  /** Whether it committed a checkpoint (a new generation). */
  readonly checkpointed: boolean;
}

const generation = (core: Core) => Number(core.persistence.stats().generation);

/** The clean run: memory follows the model op by op; returns each op's I/O. */
function cleanRun(p: Program, policy: FlushPolicy, floors: number[]): OpIo[] {
  const h = new Harness(policy);
  const io: OpIo[] = [];
  p.ops.forEach((op, i) => {
    h.now = p.clocks[i]!;
    const before = h.calls;
    const gen = generation(h.core);
    h.run(op);
    io.push({ calls: h.calls - before, checkpointed: generation(h.core) !== gen });
    h.now = p.clocks[i + 1]!;
    const where = `clean run, op #${i} ${op.kind}`;
    if (op.kind === "bigTx")
      assert.ok(io[i]!.checkpointed, `${where}: not committed by a checkpoint`);
    assert.deepEqual(dump(h.core), view(p.states[i + 1]!, h.now), where);
    if (op.kind !== "put" && op.kind !== "remove") {
      assert.deepEqual([...h.core.ks.check(), ...h.core.persistence.check()], [], where);
    }
  });
  const n = p.ops.length;
  const reopened = h.crashAndReopen("clean run, crash at the end");
  assertOneOf(reopened, p, floors[n]!, n, p.clocks[n]!, "clean run, crash at the end");
  return io;
}

/** `got` is the model's view at one of states[from..to]. */
function assertOneOf(
  got: string[],
  p: Program,
  from: number,
  to: number,
  now: number,
  where: string,
): void {
  const want = p.states.slice(from, to + 1).map((m) => view(m, now));
  if (want.some((w) => sameList(w, got))) return;
  assert.deepEqual(got, want[want.length - 1], `${where}: not one of model states ${from}..${to}`);
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

const isEio = (err: unknown) => {
  for (let e = err; e instanceof Error; e = e.cause)
    if (/EIO \(injected\)/.test(e.message)) return true;
  return false;
};

/**
 * What follows the failure: a power loss at once (the rules in the header), or a reopen
 * first, as after a killed process or the close and reopen that EMDB_IO asks for, and the
 * power loss after it.
 */
type Aftermath = "crash" | "reopen, then crash";

/** Runs `p` up to op `at`, fails its `nth` write or sync, and checks what follows. */
function faultRun(
  p: Program,
  policy: FlushPolicy,
  floors: number[],
  at: number,
  nth: number,
  aftermath: Aftermath,
): void {
  const h = new Harness(policy);
  for (let i = 0; i < at; i++) {
    h.now = p.clocks[i]!;
    h.run(p.ops[i]!);
  }
  const op = p.ops[at]!;
  const now = p.clocks[at]!;
  h.now = now;
  h.calls = 0;
  h.failAt = nth;
  h.armed = true;
  let thrown: unknown;
  try {
    h.run(op);
  } catch (err) {
    thrown = err;
  }
  h.armed = false;
  const where = `op #${at} ${op.kind}, failing ${h.failed ?? `call #${nth} (never reached)`}`;
  assert.ok(h.failed !== undefined, `${where}: the chosen call did not happen`);
  assert.ok(thrown !== undefined, `${where}: the injected error was swallowed`);
  assert.ok(isEio(thrown), `${where}: threw ${String(thrown)}`);
  if (aftermath === "reopen, then crash") {
    // Written bytes stay in the OS, synced or not: the reopen may show the op done although
    // memory showed it undone (a failed sync leaves the outcome open), but never half of it,
    // and nothing a power loss takes afterwards may break that.
    h.core = h.open();
    const reopened = inspect(h.core, `${where}: reopened without a crash`);
    assertOneOf(reopened, p, floors[at]!, at + 1, now, `${where}: reopened without a crash`);
    const recovered = h.crashAndReopen(`${where}: reopened, then a crash`);
    assertOneOf(recovered, p, floors[at]!, at + 1, now, `${where}: reopened, then a crash`);
    return;
  }
  const before = view(p.states[at]!, now);
  const after = view(p.states[at + 1]!, now);
  // The process dies and the OS writes back everything it was given: one whole state.
  const killed = h.killAndReopen(`${where}: process killed after the failure`);
  assertOneOf(killed, p, floors[at]!, at + 1, now, `${where}: reopened after a kill`);
  // A reopen whose open() failed has no memory to compare: only the disk is checked.
  let shown: string[] | undefined;
  let shownIdx = at + 1;
  if (!h.reopening) {
    const core = h.core;
    shown = dump(core);
    const isAfter = sameList(shown, after);
    assert.ok(isAfter || sameList(shown, before), `${where}: memory is neither before nor after`);
    if (!isAfter) shownIdx = at;
    assert.deepEqual(core.ks.check(), [], `${where}: keyspace`);
    const probe = () => core.put("probe", hashInternalKey("probe"), "p", undefined);
    if (h.failed!.includes(".compact.tmp")) {
      // The old files are untouched: the store stays usable (FileStore.compact).
      probe();
      core.persistence.flush();
      shown = [...shown, "probe=p"].sort();
    } else {
      assert.throws(
        probe,
        (e: unknown) => e instanceof EmdbError && e.code === "EMDB_IO",
        `${where}: a write after the failure`,
      );
      assert.deepEqual(dump(core), shown, `${where}: memory after a refused write`);
    }
  }
  const reopened = h.crashAndReopen(`${where}: crash after the failure`);
  if (shown !== undefined && (policy.kind === "onEachWrite" || shown.includes("probe=p"))) {
    assert.deepEqual(
      reopened,
      shown,
      `${where}: reopened after a crash, memory showed ${shownIdx === at ? "before" : "after"}`,
    );
  } else {
    assertOneOf(reopened, p, floors[at]!, shownIdx, now, `${where}: reopened after a crash`);
  }
}

/**
 * Chooses an op kind (a put that checkpointed counts as its own kind: those are rare and
 * fail differently), then an op of that kind, then one of its writes and syncs.
 */
function pickFault(rng: Prng, p: Program, io: OpIo[]): [number, number] {
  const byKind = new Map<string, number[]>();
  io.forEach(({ calls, checkpointed }, i) => {
    if (calls === 0) return;
    const kind = `${p.ops[i]!.kind}${checkpointed ? "+checkpoint" : ""}`;
    byKind.set(kind, [...(byKind.get(kind) ?? []), i]);
  });
  const at = rng.pick(rng.pick([...byKind.values()]));
  return [at, rng.int(io[at]!.calls)];
}

function runSeeds(
  policy: FlushPolicy,
  o: { seeds: number; faultsPerSeed: number; ops: number; aftermath: Aftermath },
): void {
  const base = testSeed();
  for (let round = 0; round < o.seeds; round++) {
    const seed = (base + round) >>> 0;
    withSeed(seed, () => {
      const rng = new Prng(seed);
      const p = generate(rng, o.ops);
      const floors = durableFloors(p, policy);
      const io = cleanRun(p, policy, floors);
      for (let f = 0; f < o.faultsPerSeed; f++) {
        const [at, nth] = pickFault(rng, p, io);
        faultRun(p, policy, floors, at, nth, o.aftermath);
      }
    });
  }
}

describe("a failed write or sync, then a crash", () => {
  test("onEachWrite(): memory shows the op done or not, writes are refused, and a reopen after a crash shows what memory showed", () => {
    runSeeds(onEachWrite(), { seeds: 40, faultsPerSeed: 4, ops: 100, aftermath: "crash" });
  });

  test("everyN(4): a reopen after a crash loses no write the policy promised and no part of a transaction", () => {
    runSeeds(everyN(4), { seeds: 12, faultsPerSeed: 3, ops: 100, aftermath: "crash" });
  });

  test("manual(): a reopen after a crash keeps everything up to the last flush and no part of a transaction", () => {
    runSeeds(manual(), { seeds: 12, faultsPerSeed: 3, ops: 100, aftermath: "crash" });
  });
});

describe("a failed write or sync, a reopen, then a crash", () => {
  test("a checkpoint whose meta page sync fails, a reopen, then a power loss: the acknowledged write is kept", () => {
    const be = new MemoryBackend();
    const open = () => openOn(be, () => T0, onEachWrite());
    let core = open();
    core.put("a", hashInternalKey("a"), "1", undefined); // synced in the WAL
    // flush() writes and syncs the tree's pages, then writes the meta page and syncs it:
    // that second sync of the page file fails (as would a kill just before it).
    let syncs = 0;
    be.hook = (op, name) => {
      if (op === "sync" && name === PATH && ++syncs === 2) throw new Error("EIO (injected)");
    };
    assert.throws(() => core.persistence.flush(), /EIO \(injected\)/);
    be.hook = undefined;
    assert.equal(syncs, 2);
    // The reopen EMDB_IO asks for. Closing skips the checkpoint of a failed store.
    core.persistence.close();
    core = open();
    assert.deepEqual(inspect(core, "reopened"), ["a=1"]);
    be.crash();
    // Before FileStore.open wrote and synced the meta page it adopted, this reopen found a
    // WAL following checkpoint 1 beside meta 0 (EMDB_CORRUPTED), and the write was lost.
    core = open();
    assert.deepEqual(inspect(core, "reopened after a crash"), ["a=1"]);
  });

  test("onEachWrite(), randomized: the reopen shows one whole state, and so does a reopen after a power loss that follows it", () => {
    runSeeds(onEachWrite(), {
      seeds: 20,
      faultsPerSeed: 3,
      ops: 100,
      aftermath: "reopen, then crash",
    });
  });
});
