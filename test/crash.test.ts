/**
 * Durability under SIGKILL (DESIGN.md §3). A child process runs a deterministic workload of
 * writes, transactions, flushes and compactions under one flush policy and is killed at a
 * random moment, or kills itself at a named failpoint. The parent then opens the database
 * and checks that its content is exactly the model after some prefix of the ops (so no
 * transaction is half applied), that the prefix holds every write the policy promised
 * durable, and that `check()` finds nothing. Some inserts carry a TTL that runs out while
 * the child runs: the parent reads at a clock before every deadline, so an entry expired
 * by the time of the kill may be missing (a sweep or a checkpoint dropped it), and every
 * other entry must be there with its value and deadline.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { FAILPOINTS } from "../src/failpoints.js";
import { Emdb } from "../src/index.js";
import {
  applyToModel,
  CRASH_EPOCH,
  type CrashOp,
  crashOps,
  type ModelEntry,
} from "./helpers/crash-ops.js";
import { runKillableChild } from "./helpers/kill-child.js";
import { Prng, testSeed } from "./helpers/prng.js";

const CHILD = fileURLToPath(new URL("./helpers/crash-child.ts", import.meta.url));
const OPS = 400;
const PAGE_SIZE = 512;
const CHECKPOINT_BYTES = 16 * 1024;

interface Round {
  policy: string;
  seed: number;
  killAfterAcks?: number;
  crashAt?: string;
}

interface Outcome {
  acked: number;
  flushed: number;
  killed: boolean;
}

async function runChild(dbPath: string, r: Round): Promise<Outcome> {
  let acked = 0;
  let flushed = 0;
  const args = [
    dbPath,
    r.policy,
    String(r.seed),
    String(OPS),
    String(PAGE_SIZE),
    String(CHECKPOINT_BYTES),
  ];
  const killed = await runKillableChild(CHILD, args, r.crashAt, (line, child) => {
    if (line.startsWith("A ")) acked = Number(line.slice(2)) + 1;
    else if (line.startsWith("F ")) flushed = Number(line.slice(2)) + 1;
    if (r.killAfterAcks !== undefined && acked >= r.killAfterAcks && child.exitCode === null) {
      child.kill("SIGKILL");
    }
  });
  return { acked, flushed, killed };
}

/** Smallest prefix length the policy allows to survive. */
function durableFloor(policy: string, ops: CrashOp[], o: Outcome): number {
  if (policy === "each") return o.acked;
  if (policy === "manual") return o.flushed;
  const n = Number(policy.slice(2));
  // Logged writes per op, computed on the model as it evolves.
  const model = new Map<string, ModelEntry>();
  const logged = ops.slice(0, o.acked).map((op, i) => applyToModel(model, op, i));
  let floor = o.acked;
  let lost = 0;
  while (floor > o.flushed) {
    const w = logged[floor - 1]! ? 1 : 0;
    if (lost + w > n - 1) break;
    lost += w;
    floor--;
  }
  return floor;
}

function verify(dbPath: string, r: Round, o: Outcome): void {
  const ops = crashOps(r.seed, OPS);
  const db = Emdb.builder()
    .path(dbPath)
    .pageSize(PAGE_SIZE)
    .clock(() => CRASH_EPOCH)
    .build();
  try {
    const actual = new Map<string, ModelEntry>();
    for (const [k, v] of db.iter()) {
      const key = k.toString();
      actual.set(key, { v: v.toString(), at: db.expiresAt(key)?.getTime() ?? 0 });
    }
    const lo = durableFloor(r.policy, ops, o);
    const hi = Math.min(o.acked + 1, OPS);
    // The op in progress at the kill ran at this clock reading (or an earlier one).
    const killedAt = CRASH_EPOCH + Math.min(o.acked, OPS - 1);
    const model = new Map<string, ModelEntry>();
    let match = -1;
    for (let L = 0; L <= hi; L++) {
      if (L >= lo && sameContent(model, actual, killedAt)) {
        match = L;
        break;
      }
      if (L < hi) applyToModel(model, ops[L]!, L);
    }
    assert.ok(
      match >= 0,
      `after ${o.killed ? "kill" : "exit"} (acked ${o.acked}, flushed ${o.flushed}) the database is not the model after any prefix in [${lo}, ${hi}] (${actual.size} keys)`,
    );
    assert.deepEqual(db.check(), []);
  } finally {
    db.close();
  }
}

/**
 * Whether the database holds the model: every entry with its value and deadline, except
 * that one whose deadline had come by `killedAt` may be missing; nothing else.
 */
function sameContent(
  model: Map<string, ModelEntry>,
  actual: Map<string, ModelEntry>,
  killedAt: number,
): boolean {
  let found = 0;
  for (const [k, e] of model) {
    const got = actual.get(k);
    if (got === undefined) {
      if (e.at === 0 || e.at > killedAt) return false;
      continue;
    }
    if (got.v !== e.v || got.at !== e.at) return false;
    found++;
  }
  return found === actual.size;
}

/** Runs the rounds two at a time; returns the rounds whose child was killed. */
async function runRounds(rounds: Round[]): Promise<Round[]> {
  const killed: Round[] = [];
  let next = 0;
  const worker = async () => {
    while (next < rounds.length) {
      const r = rounds[next++]!;
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-crash-"));
      try {
        const dbPath = path.join(dir, "db.emdb");
        const o = await runChild(dbPath, r);
        if (o.killed) killed.push(r);
        try {
          verify(dbPath, r, o);
        } catch (err) {
          if (err instanceof Error) err.message = `[round ${JSON.stringify(r)}] ${err.message}`;
          throw err;
        }
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  };
  await Promise.all([worker(), worker()]);
  return killed;
}

const POLICIES = ["each", "n:8", "manual"];

test("SIGKILL at random moments under every flush policy loses nothing promised", {
  timeout: 600_000,
}, async () => {
  const seed = testSeed();
  const rng = new Prng(seed);
  const rounds: Round[] = [];
  for (const policy of POLICIES) {
    for (let i = 0; i < 55; i++)
      rounds.push({ policy, seed: rng.next(), killAfterAcks: 1 + rng.int(OPS) });
  }
  const kills = (await runRounds(rounds)).length;
  assert.ok(kills >= 150, `only ${kills} of ${rounds.length} rounds were killed (seed=${seed})`);
});

test("SIGKILL at every named failpoint, each policy trying each point, every point reached under some policy", {
  timeout: 600_000,
}, async () => {
  const seed = testSeed();
  const rng = new Prng(seed);
  const rounds: Round[] = [];
  for (const policy of POLICIES) {
    for (const fp of FAILPOINTS) {
      // A new file is created once per round; the other points are passed many times.
      const nth = fp.startsWith("pager:create") ? 1 : 1 + rng.int(3);
      rounds.push({ policy, seed: rng.next(), crashAt: `${fp}:${nth}` });
    }
  }
  const killed = await runRounds(rounds);
  // Every failpoint is reached by this workload under some policy (compaction and checkpoints
  // included). Under manual() the WAL is written only when its buffer fills, which a round
  // may not reach, so not every round is a kill.
  const reached = new Set(killed.map((r) => r.crashAt?.replace(/:\d+$/, "")));
  const never = FAILPOINTS.filter((fp) => !reached.has(fp));
  assert.deepEqual(never, [], `failpoints no round reached (seed=${seed})`);
  assert.ok(
    killed.length >= rounds.length * 0.9,
    `only ${killed.length} of ${rounds.length} failpoint rounds crashed (seed=${seed})`,
  );
});

test("a child's acknowledgements survive a full stdout pipe made non-blocking (writeLine)", async () => {
  // Touching process.stdout makes the pipe non-blocking, after which a plain writeSync to a
  // full pipe throws EAGAIN: that killed a crash child once on a loaded machine. Here the
  // parent stops reading until the child has written well past a pipe's 64 KiB.
  const writeLine = new URL("./helpers/write-line.ts", import.meta.url).href;
  const script = `process.stdout; const { writeLine } = await import(${JSON.stringify(writeLine)});
process.stderr.write("writing ");
for (let i = 0; i < 512; i++) writeLine("A " + i + " " + "x".repeat(1000));
process.stderr.write("done");`;
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const closed = new Promise((r) => child.on("close", r));
  let out = "";
  let err = "";
  child.stderr.setEncoding("utf8").on("data", (d: string) => {
    err += d;
  });
  child.stdout.pause();
  // Read only once the child is writing, and a while after: the pipe is full by then.
  await new Promise<void>((r) => child.stderr.once("data", () => setTimeout(r, 300)));
  child.stdout.setEncoding("utf8").on("data", (d: string) => {
    out += d;
  });
  child.stdout.resume();
  const code = await closed;
  assert.equal(code, 0, err);
  assert.equal(err, "writing done");
  const lines = out.trimEnd().split("\n");
  assert.equal(lines.length, 512);
  for (const [i, l] of lines.entries()) assert.ok(l.startsWith(`A ${i} `), l.slice(0, 20));
});
