/**
 * What the I/O fault tests share: a MemoryBackend that fails a chosen call and knows which
 * files are still open, a harness that runs a program over it and opens as `Emdb` does, the
 * clean run that counts each op's backend calls, and the fault run that checks what memory
 * and the files show after the failure. io-faults.test.ts (seeded programs) and
 * io-faults-open.test.ts (fixed ones) both go through it, so one set of checks holds the
 * engine to the rules listed in io-faults.test.ts's header.
 */
import assert from "node:assert/strict";
import type { Core } from "../../src/core.js";
import { EmdbError } from "../../src/errors.js";
import type { FlushPolicy } from "../../src/index.js";
import { hashInternalKey } from "../../src/keys.js";
import { type FaultHook, MemoryBackend, type StorageFile } from "../../src/pager/backend.js";
import { type Entry, Timed } from "../../src/shards/keyspace.js";
import { StagedWrites } from "../../src/shards/staged-writes.js";
import {
  CHECKPOINT_BYTES,
  dump,
  durableFloors,
  generate,
  type Op,
  type Program,
  type Rec,
  T0,
  view,
} from "./fault-program.js";
import { Prng, testSeed, withSeed } from "./prng.js";
import { openCore } from "./storage.js";

export const PATH = "/faults.emdb";
const COMPACT_TMP = `${PATH}.compact.tmp`;

/**
 * A MemoryBackend that knows which files are open. A real store holds its lock as long as its
 * page file: a failed open or close that leaves a file open would leave the database locked
 * against every later open in this process.
 */
export class TrackedBackend extends MemoryBackend {
  private readonly handles = new Map<StorageFile, number>();
  private opened = 0;

  override open(name: string, create: boolean): StorageFile {
    const file = super.open(name, create);
    const handles = this.handles;
    const tracked: StorageFile = {
      name: file.name,
      fd: file.fd,
      size: () => file.size(),
      read: (buf, offset, length, position) => file.read(buf, offset, length, position),
      write: (buf, offset, length, position) => file.write(buf, offset, length, position),
      truncate: (length) => file.truncate(length),
      sync: () => file.sync(),
      close: () => {
        handles.delete(tracked);
        file.close();
      },
    };
    handles.set(tracked, this.opened++);
    return tracked;
  }

  /** A mark for `openSince`. */
  mark(): number {
    return this.opened;
  }

  /** The files opened since `mark` and still open. */
  openSince(mark: number): string[] {
    return [...this.handles]
      .filter(([, n]) => n >= mark)
      .map(([f]) => f.name)
      .sort();
  }
}

/** Where the failing call was made: by the op itself, or by the close or the open of a reopen. */
export type Phase = "op" | "close" | "open" | "sweep at open";

/** A kind of backend call: write, sync, truncate, rename, remove, syncDir. */
export type CallKind = Parameters<FaultHook>[0];

export interface FailedCall {
  readonly op: CallKind;
  readonly name: string;
  readonly n: number;
  readonly phase: Phase;
}

export const describeCall = (c: FailedCall) =>
  `${c.op} #${c.n} of ${c.name}${c.phase === "op" ? "" : ` (in the ${c.phase})`}`;

class Harness {
  readonly be = new TrackedBackend();
  now = T0;
  core: Core;
  /** Set during the failing op; the hook counts its backend calls. */
  armed = false;
  calls = 0;
  /** The kind of each backend call, in order (cleared by whoever reads it). */
  kinds: CallKind[] = [];
  failAt = -1;
  failed: FailedCall | undefined;
  phase: Phase = "op";
  /** Set when the open of a reopen or restart threw: `core` is the store closed or killed. */
  openFailed = false;
  /** What the last close left open, and what the last failed open left open. */
  leftByClose: string[] = [];
  leftByOpen: string[] = [];
  /** Called before each backend call takes effect (a test may copy the files there). */
  beforeCall: ((op: CallKind) => void) | undefined;
  /** `be.mark()` before the current store's open. */
  private storeMark = 0;

  constructor(private readonly policy: FlushPolicy) {
    this.core = this.open();
  }

  /** Opens as Emdb does, the hook live all along (crash() removes it: installed each time). */
  open(): Core {
    this.be.hook = (op, name) => {
      this.beforeCall?.(op);
      if (this.armed && this.calls === this.failAt) {
        this.failed = { op, name, n: this.calls, phase: this.phase };
        this.calls++;
        throw new Error("EIO (injected)");
      }
      this.calls++;
      this.kinds.push(op);
    };
    const mark = this.be.mark();
    try {
      const core = openOn(
        this.be,
        () => this.now,
        this.policy,
        (phase) => {
          this.phase = phase;
        },
      );
      this.storeMark = mark;
      return core;
    } catch (err) {
      this.leftByOpen = this.be.openSince(mark);
      throw err;
    } finally {
      this.phase = "op";
    }
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
        if (op.leftover) this.be.setBytes(COMPACT_TMP, this.be.bytes(PATH));
        core.persistence.compact();
        return;
      case "reopen":
        this.phase = "close";
        try {
          core.persistence.close();
        } finally {
          this.phase = "op";
          this.leftByClose = this.be.openSince(this.storeMark);
        }
        this.openAgain();
        return;
      case "restart":
        // The killed process's files stay open here; the kernel would close them.
        this.openAgain();
        return;
      case "advance":
        return;
    }
  }

  private openAgain(): void {
    this.openFailed = true;
    this.core = this.open();
    this.openFailed = false;
  }

  /**
   * The files as a killed process leaves them once the OS has written back what it was
   * given, opened on a copy: the original keeps its unsynced state for `crashAndReopen`.
   */
  killAndReopen(where: string): string[] {
    return inspect(
      openOn(copyOf(this.be), () => this.now, this.policy),
      where,
    );
  }

  /** How many backend calls an open of the files as they are makes (on a copy). */
  openCalls(): number {
    const copy = copyOf(this.be);
    let calls = 0;
    copy.hook = () => {
      calls++;
    };
    openOn(copy, () => this.now, this.policy);
    return calls;
  }

  /**
   * Power loss, then a reopen that must find a sound file. The directory comes back as last
   * synced, or with `keepDirectory` as it was (see MemoryBackend.crash).
   */
  crashAndReopen(where: string, keepDirectory: boolean): string[] {
    this.be.crash({ keepDirectory });
    this.armed = false;
    this.core = this.open();
    return inspect(this.core, where);
  }
}

/** The files as they are now (a killed process's, once the OS wrote back what it had). */
export function copyOf(be: MemoryBackend): MemoryBackend {
  const copy = new MemoryBackend();
  for (const name of be.names()) copy.setBytes(name, be.bytes(name));
  return copy;
}

/**
 * Opens as `Emdb`'s constructor does: the store, then a sweep of the entries that expired
 * while it was closed (its deletes are logged, and may checkpoint). A sweep that throws
 * leaves the store open, as there.
 */
export function openOn(
  be: MemoryBackend,
  clock: () => number,
  policy: FlushPolicy,
  enter: (phase: Phase) => void = () => {},
): Core {
  enter("open");
  const core = openCore(be, PATH, {
    clock,
    flushPolicy: policy,
    pageSize: 512,
    checkpointBytes: CHECKPOINT_BYTES,
  });
  enter("sweep at open");
  try {
    core.sweep();
  } catch (err) {
    try {
      core.persistence.close();
    } catch {
      // As Emdb's constructor does: the sweep's error is the one reported.
    }
    throw err;
  }
  return core;
}

/** A just opened database's live entries, after both consistency checks. */
export function inspect(core: Core, where: string): string[] {
  assert.deepEqual(core.ks.check(), [], `${where}: keyspace`);
  assert.deepEqual(core.persistence.check(), [], `${where}: store`);
  return dump(core);
}

export interface OpIo {
  /** Backend calls: writes, syncs, truncates, renames, removes, directory syncs. */
  readonly calls: number;
  /** The kind of each of those calls, in order. */
  readonly kinds: readonly CallKind[];
  /** Whether it committed a checkpoint (a new generation). */
  readonly checkpointed: boolean;
}

export const generation = (core: Core) => Number(core.persistence.stats().generation);

/**
 * The clean run: memory follows the model op by op; returns each op's I/O. It ends with a
 * crash whose directory outcome is `keepDirectory`'s.
 */
export function cleanRun(
  p: Program,
  policy: FlushPolicy,
  floors: number[],
  keepDirectory = false,
): OpIo[] {
  const h = new Harness(policy);
  const io: OpIo[] = [];
  p.ops.forEach((op, i) => {
    h.now = p.clocks[i]!;
    const before = h.calls;
    const gen = generation(h.core);
    h.kinds = [];
    h.run(op);
    const kinds = h.kinds;
    h.kinds = [];
    assert.equal(kinds.length, h.calls - before);
    io.push({ calls: kinds.length, kinds, checkpointed: generation(h.core) !== gen });
    h.now = p.clocks[i + 1]!;
    const where = `clean run, op #${i} ${op.kind}`;
    if (op.kind === "bigTx")
      assert.ok(io[i]!.checkpointed, `${where}: not committed by a checkpoint`);
    if (op.kind === "reopen") assert.deepEqual(h.leftByClose, [], `${where}: left open`);
    assert.deepEqual(dump(h.core), view(p.states[i + 1]!, h.now), where);
    if (op.kind !== "put" && op.kind !== "remove") {
      assert.deepEqual([...h.core.ks.check(), ...h.core.persistence.check()], [], where);
    }
  });
  const n = p.ops.length;
  const reopened = h.crashAndReopen("clean run, crash at the end", keepDirectory);
  assertOneOf(reopened, p, floors[n]!, n, p.clocks[n]!, "clean run, crash at the end");
  return io;
}

/**
 * The clean run again, with power losses on copies of the files taken just before about
 * `chance` of the syncs (file or directory), when what was written since the last one is
 * still volatile: each copy loses power on a disk that keeps any subset of the unsynced
 * sectors, and for half of them the unsynced directory changes. Its reopen must show one model
 * state from what the policy promised before the op up to the op done. Returns how many power
 * losses it tried.
 */
export function sectorLossRun(
  p: Program,
  policy: FlushPolicy,
  floors: number[],
  rng: Prng,
  chance: number,
): number {
  const h = new Harness(policy);
  let losses = 0;
  let copies: MemoryBackend[] = [];
  h.beforeCall = (op) => {
    if ((op === "sync" || op === "syncDir") && rng.chance(chance)) copies.push(h.be.clone());
  };
  p.ops.forEach((op, i) => {
    h.now = p.clocks[i]!;
    h.run(op);
    h.now = p.clocks[i + 1]!;
    for (const copy of copies) {
      losses++;
      const keepDirectory = rng.chance(0.5);
      copy.crash({ keepDirectory, keepSector: () => rng.chance(0.5) });
      const where = `power loss ${losses}, inside op #${i} ${op.kind}, keeping some unsynced sectors${keepDirectory ? " and the directory" : ""}`;
      const got = inspect(
        openOn(copy, () => h.now, policy),
        where,
      );
      assertOneOf(got, p, floors[i]!, i + 1, h.now, where);
    }
    copies = [];
  });
  return losses;
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

export const isEio = (err: unknown) => {
  for (let e = err; e instanceof Error; e = e.cause)
    if (/EIO \(injected\)/.test(e.message)) return true;
  return false;
};

/**
 * What follows the failure: a power loss at once (the rules in io-faults.test.ts's header),
 * or a reopen
 * first, as after a killed process or the close and reopen that EMDB_IO asks for, and the
 * power loss after it; that reopen may fail too, at one of its own calls.
 */
export type Aftermath = "crash" | "reopen, then crash" | "failed reopen, then crash";

export interface Fault {
  /** The op, and which of its backend calls fails. */
  readonly at: number;
  readonly nth: number;
  /** For "failed reopen, then crash": where in [0, 1) among the reopen's calls the second fails. */
  readonly second: number;
  /** Whether the power loss keeps the unsynced directory changes (else it undoes them). */
  readonly keepDirectory: boolean;
}

/**
 * Runs `p` up to op `at`, fails its `nth` backend call, and checks what follows; returns the
 * call that failed.
 */
export function faultRun(
  p: Program,
  policy: FlushPolicy,
  floors: number[],
  { at, nth, second, keepDirectory }: Fault,
  aftermath: Aftermath,
): FailedCall {
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
  const failed = h.failed;
  const where = `op #${at} ${op.kind}, failing ${failed === undefined ? `call #${nth} (never reached)` : describeCall(failed)}${keepDirectory ? ", a crash keeping the directory" : ""}`;
  assert.ok(failed !== undefined, `${where}: the chosen call did not happen`);
  // A commit leaves the page file's free tail to the next one when its truncate fails.
  const tolerated =
    thrown === undefined &&
    failed.op === "truncate" &&
    (failed.name === PATH || failed.name === COMPACT_TMP);
  assert.ok(thrown !== undefined || tolerated, `${where}: the injected error was swallowed`);
  assert.ok(tolerated || isEio(thrown), `${where}: threw ${String(thrown)}`);
  if (op.kind === "reopen") {
    assert.deepEqual(h.leftByClose, [], `${where}: the close left open`);
  }
  const openFailed = h.openFailed;
  if (openFailed) {
    assert.deepEqual(h.leftByOpen, [], `${where}: the failed open left open`);
  }
  const before = view(p.states[at]!, now);
  const after = view(p.states[at + 1]!, now);
  // Before an open that failed, a close made everything durable, or onEachWrite() had:
  // whatever the open did, the files must still hold exactly that.
  const onDisk = (got: string[], w: string) => {
    if (openFailed) assert.deepEqual(got, before, `${w}: not the state before the failed open`);
    else assertOneOf(got, p, floors[at]!, at + 1, now, w);
  };
  if (aftermath !== "crash") {
    // Written bytes stay in the OS, synced or not: the reopen may show the op done although
    // memory showed it undone (a failed sync leaves the outcome open), but never half of it,
    // and nothing a power loss takes afterwards may break that.
    let w = where;
    const calls = aftermath === "failed reopen, then crash" ? h.openCalls() : 0;
    if (calls === 0) {
      h.core = h.open();
      onDisk(inspect(h.core, `${w}: reopened without a crash`), `${w}: reopened without a crash`);
    } else {
      h.calls = 0;
      h.failAt = Math.floor(second * calls);
      h.failed = undefined;
      h.armed = true;
      let thrownAgain: unknown;
      try {
        h.core = h.open();
      } catch (err) {
        thrownAgain = err;
      }
      h.armed = false;
      const again = h.failed as FailedCall | undefined;
      w = `${where}, then the reopen failing ${again === undefined ? `call #${h.failAt} of ${calls} (never reached)` : describeCall(again)}`;
      assert.ok(again !== undefined, `${w}: the chosen call did not happen`);
      if (thrownAgain === undefined) {
        // Its sweep's checkpoint leaves the page file's free tail to the next commit.
        assert.ok(again.op === "truncate" && again.name === PATH, `${w}: swallowed`);
        onDisk(inspect(h.core, `${w}: opened`), `${w}: opened`);
      } else {
        assert.ok(isEio(thrownAgain), `${w}: threw ${String(thrownAgain)}`);
        assert.deepEqual(h.leftByOpen, [], `${w}: the failed open left open`);
        onDisk(h.killAndReopen(`${w}: reopened again`), `${w}: reopened again`);
      }
    }
    onDisk(h.crashAndReopen(`${w}: then a crash`, keepDirectory), `${w}: then a crash`);
    return failed;
  }
  // The process dies and the OS writes back everything it was given: one whole state.
  onDisk(h.killAndReopen(`${where}: reopened after a kill`), `${where}: reopened after a kill`);
  // A reopen whose open() failed has no memory to compare: only the disk is checked. After a
  // failed close neither: Emdb.close marks the database closed and drops memory whatever its
  // store's close threw, so what memory showed last is the state before the op.
  const closeFailed = !tolerated && failed.phase === "close";
  let shown = closeFailed ? before : undefined;
  let shownIdx = closeFailed ? at : at + 1;
  if (!openFailed && !closeFailed) {
    const core = h.core;
    shown = dump(core);
    const isAfter = sameList(shown, after);
    assert.ok(
      isAfter || (!tolerated && sameList(shown, before)),
      `${where}: memory is neither before nor after`,
    );
    if (!isAfter) shownIdx = at;
    assert.deepEqual(core.ks.check(), [], `${where}: keyspace`);
    const probe = () => core.put("probe", hashInternalKey("probe"), "p", undefined);
    if (tolerated || failed.name === COMPACT_TMP) {
      // The old files are untouched (FileStore.compact), or the commit went through: the
      // store stays usable.
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
  const reopened = h.crashAndReopen(`${where}: crash after the failure`, keepDirectory);
  if (shown !== undefined && (policy.kind === "onEachWrite" || shown.includes("probe=p"))) {
    assert.deepEqual(
      reopened,
      shown,
      `${where}: reopened after a crash, memory showed ${shownIdx === at ? "before" : "after"}`,
    );
  } else if (openFailed) {
    onDisk(reopened, `${where}: reopened after a crash`);
  } else {
    assertOneOf(reopened, p, floors[at]!, shownIdx, now, `${where}: reopened after a crash`);
  }
  return failed;
}

/**
 * Chooses an op kind (a put that checkpointed counts as its own kind: those are rare and
 * fail differently), then an op of that kind, then one of its backend calls: half the time
 * any call, else a kind of call first (a compaction's renames, removes and directory syncs
 * are a few among dozens of writes), then a call of that kind. Then whether the power loss
 * keeps the directory changes that were not synced.
 */
function pickFault(rng: Prng, p: Program, io: OpIo[]): Fault {
  const byKind = new Map<string, number[]>();
  io.forEach(({ calls, checkpointed }, i) => {
    if (calls === 0) return;
    const kind = `${p.ops[i]!.kind}${checkpointed ? "+checkpoint" : ""}`;
    byKind.set(kind, [...(byKind.get(kind) ?? []), i]);
  });
  const at = rng.pick(rng.pick([...byKind.values()]));
  const kinds = io[at]!.kinds;
  let nth = rng.int(kinds.length);
  if (rng.chance(0.5)) {
    const kind = rng.pick([...new Set(kinds)]);
    nth = rng.pick(kinds.flatMap((k, i) => (k === kind ? [i] : [])));
  }
  return { at, nth, second: rng.next() / 0x1_0000_0000, keepDirectory: rng.chance(0.5) };
}

export function runSeeds(
  policy: FlushPolicy,
  o: { seeds: number; faultsPerSeed: number; ops: number; aftermath: Aftermath },
): void {
  const base = testSeed();
  for (let round = 0; round < o.seeds; round++) {
    const seed = (base + round) >>> 0;
    withSeed(seed, () => {
      const rng = new Prng(seed);
      const p = generate(rng, o.ops, policy.kind === "onEachWrite");
      const floors = durableFloors(p, policy);
      const io = cleanRun(p, policy, floors, rng.chance(0.5));
      for (let f = 0; f < o.faultsPerSeed; f++) {
        faultRun(p, policy, floors, pickFault(rng, p, io), o.aftermath);
      }
    });
  }
}
