/**
 * Fixed programs that fail every backend call in turn, where the seeded picks of
 * io-faults.test.ts rarely land: a compaction over a killed one's output (its remove, its
 * rename, and the directory syncs after that and after its new WAL), the first open of a new
 * database (the rename of its first meta page, the directory syncs), an open after a kill
 * whose sweep checkpoints, and an open that writes again a meta page whose sync failed before
 * it binds a new WAL (and syncs the directory). The same harness holds them to the rules in
 * that file's header; each power loss is run twice, undoing the directory changes not yet
 * synced, and keeping them.
 * A close or an open that fails must leave no file open: the real lock goes with the page
 * file, and a lock still held refuses every later open in this process (EMDB_LOCK_BUSY).
 * Two bugs broke that rule (a close whose WAL trim failed, an open whose sweep failed); the
 * tests after those pin each, the second on real files, where the lock is real.
 * Last, MemoryBackend's directory model itself: what a power loss leaves of renames, creates
 * and removes with and without a directory sync, and a compaction whose directory sync after
 * its rename fails, with either outcome.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { createRequire, syncBuiltinESMExports } from "node:module";
import { describe, test } from "node:test";
import type { Core } from "../src/core.js";
import { Emdb, type FlushPolicy, manual, onEachWrite, Ttl } from "../src/index.js";
import { hashInternalKey } from "../src/keys.js";
import { dirOf, MemoryBackend } from "../src/pager/backend.js";
import type { PersistenceStats } from "../src/persistence.js";
import {
  type Aftermath,
  cleanRun,
  copyOf,
  describeCall,
  type FailedCall,
  faultRun,
  generation,
  inspect,
  isEio,
  openOn,
  PATH,
  type Phase,
  TrackedBackend,
} from "./helpers/fault-harness.js";
import {
  applyToModel,
  CHECKPOINT_BYTES,
  durableFloors,
  type Model,
  type Op,
  type Program,
  type Rec,
  T0,
} from "./helpers/fault-program.js";
import { scratchDir } from "./helpers/storage.js";

/** node:fs as CommonJS sees it: a test replaces `fdatasyncSync` there (and syncs the ESM view). */
const nodeFs = createRequire(import.meta.url)("node:fs") as typeof fs;
const scratch = scratchDir("io-faults");
const walBytes = (stats: PersistenceStats) => Number(stats.walBytes);

/**
 * A fixed program (no clock moves); its last op fails at each of its backend calls in turn,
 * followed by each of `aftermaths`, whose power loss undoes the directory changes that were
 * not synced, then keeps them. Returns the calls that failed.
 */
function failEachCallOfLast(ops: Op[], policy: FlushPolicy, aftermaths: Aftermath[]): FailedCall[] {
  let m = new Map<string, Rec>();
  const states: Model[] = [m];
  for (const op of ops) {
    m = applyToModel(m, op, T0);
    states.push(m);
  }
  const p: Program = { ops, states, clocks: states.map(() => T0) };
  const floors = durableFloors(p, policy);
  const at = ops.length - 1;
  const { calls } = cleanRun(p, policy, floors)[at]!;
  const failed: FailedCall[] = [];
  for (const aftermath of aftermaths) {
    for (const keepDirectory of [false, true]) {
      for (let nth = 0; nth < calls; nth++) {
        const fault = { at, nth, second: 0.5, keepDirectory };
        failed.push(faultRun(p, policy, floors, fault, aftermath));
      }
    }
  }
  return failed;
}

/** A clock the setup of `failEachCallOfOpen` moves. */
interface Clock {
  now: number;
}

/**
 * `setup` leaves files on `be` as an open finds them (unsynced bytes included) and returns
 * what that open must show; the open then fails at each of its calls in turn. An open of what
 * the failed one left, and one after a power loss (that undoes the unsynced directory
 * changes, or keeps them), must show exactly that, and the failed open must leave no file
 * open. Returns the calls that failed, as "phase: op of file".
 */
function failEachCallOfOpen(setup: (be: MemoryBackend, clock: Clock) => string[]): string[] {
  const counting = new MemoryBackend();
  const clock = { now: T0 };
  setup(counting, clock);
  const seen: Phase[] = [];
  let phase: Phase = "op";
  const enter = (p: Phase) => {
    phase = p;
  };
  counting.hook = () => {
    seen.push(phase);
  };
  openOn(counting, () => clock.now, onEachWrite(), enter);
  const calls: string[] = [];
  for (let run = 0; run < 2 * seen.length; run++) {
    const n = run >> 1;
    const keepDirectory = run % 2 === 1;
    const be = new TrackedBackend();
    const c = { now: T0 };
    const want = setup(be, c);
    let call = 0;
    let failed: FailedCall | undefined;
    be.hook = (op, name) => {
      if (call++ === n) {
        failed = { op, name, n, phase };
        throw new Error("EIO (injected)");
      }
    };
    const mark = be.mark();
    const open = () => openOn(be, () => c.now, onEachWrite(), enter);
    let opened: Core | undefined;
    let thrown: unknown;
    try {
      opened = open();
    } catch (err) {
      thrown = err;
    }
    be.hook = undefined;
    assert.ok(failed !== undefined, `call #${n} of ${seen.length} did not happen`);
    const where = `the open failing ${describeCall(failed)}${keepDirectory ? ", a crash keeping the directory" : ""}`;
    if (!keepDirectory) calls.push(`${failed.phase}: ${failed.op} of ${failed.name}`);
    if (opened !== undefined) {
      // The commit of the sweep's checkpoint leaves the page file's free tail to the next.
      assert.ok(failed.op === "truncate" && failed.name === PATH, `${where}: swallowed`);
      assert.deepEqual(inspect(opened, `${where}: opened`), want, `${where}: opened`);
    } else {
      assert.ok(isEio(thrown), `${where}: threw ${String(thrown)}`);
      assert.deepEqual(be.openSince(mark), [], `${where}: left open`);
    }
    const reopened = openOn(copyOf(be), () => c.now, onEachWrite());
    assert.deepEqual(inspect(reopened, `${where}: reopened`), want, `${where}: reopened`);
    be.crash({ keepDirectory });
    const recovered = openOn(be, () => c.now, onEachWrite());
    assert.deepEqual(
      inspect(recovered, `${where}: crash`),
      want,
      `${where}: reopened after a crash`,
    );
  }
  return calls;
}

const put = (core: Core, k: string, v: string, at?: number) =>
  core.put(k, hashInternalKey(k), v, at);

describe("a compaction that finds a killed compaction's output", () => {
  test("each of its calls fails in turn (the removal of that output, the rename and the directory syncs too): the rules above hold, then a crash, or a reopen and a crash", () => {
    const ops: Op[] = [];
    for (let i = 0; i < 30; i++) {
      const v = i % 7 === 0 ? "o".repeat(300) : `v${i}`; // some overflow chains
      ops.push({ kind: "put", key: `k${String(i).padStart(3, "0")}`, rec: { v, at: 0 } });
    }
    ops.push({ kind: "remove", key: "k003" }, { kind: "compact", leftover: true });
    for (const policy of [onEachWrite(), manual()]) {
      const failed = failEachCallOfLast(ops, policy, ["crash", "reopen, then crash"]);
      const kinds = new Set(failed.map((c) => c.op));
      for (const op of ["write", "sync", "truncate", "rename", "remove", "syncDir"] as const) {
        assert.ok(kinds.has(op), `${policy.kind}: no ${op} failed`);
      }
    }
  });
});

describe("a failed backend call in an open", () => {
  test("each call of a new database's creation fails in turn: the next open creates it or finds it empty, and a power loss after it too", () => {
    const create = (be: MemoryBackend) => openOn(be, () => T0, onEachWrite());
    let calls = 0;
    const counting = new MemoryBackend();
    counting.hook = () => {
      calls++;
    };
    create(counting);
    assert.ok(calls > 0);
    const kinds = new Set<string>();
    for (let run = 0; run < 2 * calls; run++) {
      const n = run >> 1;
      const keepDirectory = run % 2 === 1;
      const be = new TrackedBackend();
      let call = 0;
      let failed = "";
      be.hook = (op, name) => {
        if (call++ === n) {
          failed = `${op} #${n} of ${name}${keepDirectory ? ", a crash keeping the directory" : ""}`;
          kinds.add(op);
          throw new Error("EIO (injected)");
        }
      };
      assert.throws(() => create(be), isEio, `call #${n}`);
      be.hook = undefined;
      const where = `creation failing ${failed}`;
      assert.deepEqual(be.openSince(0), [], `${where}: left open`);
      // The files as the failed open left them, then after a power loss.
      assert.deepEqual(inspect(create(copyOf(be)), `${where}: reopened`), [], `${where}: reopened`);
      be.crash({ keepDirectory });
      const core = create(be);
      assert.deepEqual(inspect(core, `${where}: reopened after a crash`), []);
      put(core, "a", "1");
      be.crash({ keepDirectory });
      assert.deepEqual(inspect(create(be), `${where}: a write, then a crash`), ["a=1"]);
    }
    // The page file's rename, then the WAL's creation, each end with a directory sync.
    assert.ok(kinds.has("syncDir") && kinds.has("rename"), [...kinds].join(", "));
  });

  test("after a kill, each call of an open that cuts the WAL's tail and whose sweep checkpoints fails in turn: nothing is lost", () => {
    const calls = failEachCallOfOpen((be, clock) => {
      const core = openOn(be, () => clock.now, onEachWrite());
      put(core, "keep", "1");
      // Entries that expire before the open, up to just below the checkpoint threshold:
      // the open's sweep logs their deletes, which pass it.
      for (let i = 0; walBytes(core.persistence.stats()) < CHECKPOINT_BYTES - 200; i++) {
        put(core, `t${i}`, "x".repeat(20), clock.now + 10);
      }
      assert.equal(generation(core), 0);
      clock.now += 1000; // killed: no close
      return ["keep=1"];
    });
    for (const call of [`open: truncate of ${PATH}.wal`, `sweep at open: write of ${PATH}`]) {
      assert.ok(calls.includes(call), `no ${call} in ${calls.join(", ")}`);
    }
  });

  test("after a checkpoint whose meta page sync failed, each call of the open that writes that page again, binds a new WAL and removes the records expired in the tree fails in turn: nothing is lost", () => {
    const calls = failEachCallOfOpen((be, clock) => {
      const core = openOn(be, () => clock.now, onEachWrite());
      // Entries in the tree that expire before the open: it logs their deletes, which make
      // it checkpoint.
      for (let i = 0; i < 300; i++) put(core, `t${i}`, "x", clock.now + 10);
      put(core, "keep", "1");
      core.persistence.flush();
      put(core, "a", "1");
      let syncs = 0;
      be.hook = (op, name) => {
        if (op === "sync" && name === PATH && ++syncs === 2) throw new Error("EIO (injected)");
      };
      assert.throws(() => core.persistence.flush(), isEio);
      be.hook = undefined;
      clock.now += 1000; // killed
      return ["a=1", "keep=1"];
    });
    const [first, second, ...wal] = calls;
    // Pager.persistMeta, then WalWriter.create, then the checkpoint of those deletes.
    assert.deepEqual([first, second], [`open: write of ${PATH}`, `open: sync of ${PATH}`]);
    assert.equal(wal[0], `open: truncate of ${PATH}.wal`);
    const bound = calls.indexOf(`open: syncDir of ${dirOf(PATH)}`);
    assert.ok(bound > 0, calls.join(", "));
    assert.ok(calls.indexOf(`open: write of ${PATH}`, bound) > bound, calls.join(", "));
  });
});

describe("a failed close or open leaves no file open and the database unlocked", () => {
  test("an open that fails reports its own error even when closing its files fails too", () => {
    const be = new MemoryBackend();
    const core = openOn(be, () => T0, onEachWrite());
    for (let i = 0; i < 200; i++) put(core, `k${i}`, "v");
    core.persistence.close();
    // A damaged tree page makes the open's load throw EMDB_CORRUPTED; then the page file's
    // close throws as well.
    const bytes = be.bytes(PATH);
    bytes[3 * 512 + 100]! ^= 0xff;
    be.setBytes(PATH, bytes);
    const openFile = be.open.bind(be);
    let opens = 0;
    be.open = (name, create) => {
      const f = openFile(name, create);
      // The first open only checks whether the file is blank; the second is the pager's.
      if (name === PATH && ++opens >= 2) {
        f.close = () => {
          throw new Error("EIO on close (injected)");
        };
      }
      return f;
    };
    assert.throws(() => openOn(be, () => T0, onEachWrite()), { code: "EMDB_CORRUPTED" });
  });

  test("a close whose WAL trim fails leaves no file open", () => {
    const be = new TrackedBackend();
    const core = openOn(be, () => T0, onEachWrite());
    put(core, "a", "1"); // the WAL grows zeros past its records; close trims them
    be.hook = (op, name) => {
      if (op === "truncate" && name === `${PATH}.wal`) throw new Error("EIO (injected)");
    };
    assert.throws(() => core.persistence.close(), isEio);
    be.hook = undefined;
    assert.deepEqual(be.openSince(0), []);
  });

  test("an Emdb open whose sweep fails releases the lock", () => {
    const now = { t: T0 };
    const open = (p: string) =>
      Emdb.builder()
        .path(p)
        .flushPolicy(onEachWrite())
        .checkpointThreshold(CHECKPOINT_BYTES)
        .clock(() => now.t)
        .build();
    const p = scratch.freshPath();
    const db = open(p);
    db.insert("keep", "1");
    for (let i = 0; walBytes(db.stats().disk!) < CHECKPOINT_BYTES - 200; i++) {
      db.insertWithTtl(`t${i}`, "x".repeat(20), Ttl.after(10));
    }
    // The files as a killed process leaves them, at another path: db keeps its lock.
    const killed = scratch.freshPath();
    fs.copyFileSync(p, killed);
    fs.copyFileSync(`${p}.wal`, `${killed}.wal`);
    db.close();
    now.t += 1000; // the open's sweep logs 70-odd deletes and checkpoints
    const pageFile = fs.statSync(killed).ino;
    const realSync = nodeFs.fdatasyncSync;
    nodeFs.fdatasyncSync = (fd: number) => {
      if (fs.fstatSync(fd).ino === pageFile) throw new Error("EIO (injected)");
      realSync(fd);
    };
    syncBuiltinESMExports();
    try {
      assert.throws(() => open(killed), isEio);
    } finally {
      nodeFs.fdatasyncSync = realSync;
      syncBuiltinESMExports();
    }
    const again = open(killed);
    try {
      assert.deepEqual([...again.keys()].map(String), ["keep"]);
    } finally {
      again.close();
    }
  });
});

describe("MemoryBackend's directories, which the power losses above follow", () => {
  /** Each name and its bytes. */
  const files = (be: MemoryBackend) =>
    Object.fromEntries(be.names().map((n) => [n, be.bytes(n).toString()]));
  const write = (be: MemoryBackend, name: string, text: string, sync: boolean) => {
    const f = be.open(name, true);
    f.write(Buffer.from(text), 0, text.length, 0);
    if (sync) f.sync();
    f.close();
  };

  test("a rename, a create and a remove not followed by syncDir: a crash undoes them all, or with keepDirectory keeps them all; file bytes are the synced ones either way", () => {
    const setup = () => {
      const be = new MemoryBackend();
      be.setBytes("/d/a", Buffer.from("old"));
      be.setBytes("/d/gone", Buffer.from("kept"));
      write(be, "/d/tmp", "new", true);
      be.syncDir("/d");
      be.rename("/d/tmp", "/d/a");
      be.remove("/d/gone");
      write(be, "/d/created", "synced", true);
      write(be, "/d/created", "SYNCED+", false);
      be.syncDir("/e"); // another directory's sync changes nothing here
      assert.deepEqual(files(be), { "/d/a": "new", "/d/created": "SYNCED+" });
      return be;
    };
    let be = setup();
    be.crash();
    assert.deepEqual(files(be), { "/d/a": "old", "/d/gone": "kept", "/d/tmp": "new" });
    be = setup();
    be.crash({ keepDirectory: true });
    assert.deepEqual(files(be), { "/d/a": "new", "/d/created": "synced" });
    be = setup();
    be.syncDir("/d");
    be.crash();
    assert.deepEqual(files(be), { "/d/a": "new", "/d/created": "synced" });
  });

  test("syncDir calls the hook first, and one that throws changes nothing", () => {
    const be = new MemoryBackend();
    be.setBytes("/d/a", Buffer.from("old"));
    write(be, "/d/tmp", "new", true);
    be.rename("/d/tmp", "/d/a");
    const seen: string[] = [];
    be.hook = (op, name) => {
      seen.push(`${op} ${name}`);
      throw new Error("EIO (injected)");
    };
    assert.throws(() => be.syncDir("/d"), isEio);
    assert.deepEqual(seen, ["syncDir /d"]);
    be.crash();
    assert.deepEqual(files(be), { "/d/a": "old" });
  });

  test("an open handle keeps its file across a rename over its name and a remove", () => {
    const be = new MemoryBackend();
    be.setBytes("/d/a", Buffer.from("aaa"));
    const a = be.open("/d/a", false);
    write(be, "/d/tmp", "new", true);
    be.rename("/d/tmp", "/d/a");
    const buf = Buffer.alloc(3);
    a.read(buf, 0, 3, 0);
    assert.equal(buf.toString(), "aaa");
    be.remove("/d/a");
    a.write(Buffer.from("b"), 0, 1, 0);
    a.read(buf, 0, 3, 0);
    assert.equal(buf.toString(), "baa");
    assert.deepEqual(be.names(), []);
  });

  test("a compaction whose directory sync after its rename fails, then a crash: the old page file or the new one, and the WAL, both holding every entry", () => {
    for (const keepDirectory of [false, true]) {
      const be = new MemoryBackend();
      const core = openOn(be, () => T0, onEachWrite());
      for (let i = 0; i < 200; i++) put(core, `k${i}`, i % 9 === 0 ? "o".repeat(300) : `v${i}`);
      for (let i = 0; i < 200; i += 3) core.remove(`k${i}`, hashInternalKey(`k${i}`));
      const want = inspect(core, "before");
      let oldFile: Buffer | undefined;
      let newFile: Buffer | undefined;
      be.hook = (op, name) => {
        if (op === "rename") {
          oldFile = be.bytes(PATH);
          newFile = be.bytes(name);
        } else if (op === "syncDir" && oldFile !== undefined) throw new Error("EIO (injected)");
      };
      assert.throws(() => core.persistence.compact(), isEio);
      assert.ok(oldFile !== undefined && newFile !== undefined && !oldFile.equals(newFile));
      be.crash({ keepDirectory });
      assert.deepEqual(be.bytes(PATH), keepDirectory ? newFile : oldFile, `${keepDirectory}`);
      // The output's own name was never synced: it goes with the rename undone.
      assert.deepEqual(be.names().sort(), [PATH, `${PATH}.wal`]);
      assert.deepEqual(
        inspect(
          openOn(be, () => T0, onEachWrite()),
          "reopened",
        ),
        want,
      );
    }
  });
});
