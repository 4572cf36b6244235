/**
 * A crash at any moment of a migration leaves either the untouched legacy file (the next
 * open migrates again) or the complete new file. A child process opens a legacy log and is
 * killed with SIGKILL at random moments or at each migration failpoint; the parent then
 * opens the database and checks the content and the backup.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { MIGRATION_FAILPOINTS } from "../src/failpoints.js";
import { Emdb } from "../src/index.js";
import { runKillableChild } from "./helpers/kill-child.js";
import { type LogOp, writeLogFile } from "./helpers/legacy-writer.js";
import { Prng, testSeed } from "./helpers/prng.js";

const CHILD = fileURLToPath(new URL("./helpers/migrate-child.ts", import.meta.url));
const root = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-migrate-crash-"));
after(() => fs.rmSync(root, { recursive: true, force: true }));
const master = path.join(root, "master.emdb");
const model = new Map<string, string>();

before(() => {
  const ops: LogOp[] = [];
  for (let i = 0; i < 60_000; i++) {
    const key = `user:${String(i).padStart(11, "0")}`;
    const value = `value ${i} ${"x".repeat(i % 90)}`;
    ops.push({ op: "insert", key, value, expiresAt: 0 });
    model.set(key, value);
    if (i % 7 === 0) {
      const gone = `user:${String(i >> 1).padStart(11, "0")}`;
      ops.push({ op: "remove", key: gone });
      model.delete(gone);
    }
  }
  writeLogFile(master, { version: 2, lastTxId: 41 }, ops);
});

function runChild(
  file: string,
  crashAt: string | undefined,
  killAfterMs: number | undefined,
): Promise<boolean> {
  // "S" is printed once the module is loaded: the migration starts right after it. "D" once
  // the database is closed: a timed kill that would land after it is not sent, so `true`
  // means killed before the work was done.
  let finished = false;
  return runKillableChild(CHILD, [file], crashAt, (line, child) => {
    if (line === "D") finished = true;
    if (killAfterMs !== undefined && line === "S")
      setTimeout(() => {
        if (!finished) child.kill("SIGKILL");
      }, killAfterMs);
  });
}

async function round(
  crashAt: string | undefined,
  killAfterMs: number | undefined,
): Promise<boolean> {
  const dir = fs.mkdtempSync(path.join(root, "round-"));
  const file = path.join(dir, "db.emdb");
  fs.copyFileSync(master, file);
  const killed = await runChild(file, crashAt, killAfterMs);
  const legacyStill = fs.readFileSync(file).subarray(0, 8).toString("latin1") === "EMDB\0\0\0\0";
  if (legacyStill)
    assert.deepEqual(
      fs.readFileSync(file),
      fs.readFileSync(master),
      "the legacy file is untouched",
    );
  const db = Emdb.open(file);
  try {
    assert.equal(db.len(), model.size);
    for (const [k, v] of db.iter()) assert.equal(v.toString(), model.get(k.toString()));
    assert.equal(db.stats().lastTxId, 41);
    assert.deepEqual(db.check(), []);
  } finally {
    db.close();
  }
  assert.deepEqual(
    fs.readFileSync(`${file}.v2.bak`),
    fs.readFileSync(master),
    "the backup is the original",
  );
  fs.rmSync(dir, { recursive: true, force: true });
  return killed;
}

test("SIGKILL at each migration failpoint leaves the old file or the complete new one", {
  timeout: 300_000,
}, async () => {
  for (const fp of MIGRATION_FAILPOINTS) {
    assert.equal(await round(`${fp}:1`, undefined), true, `${fp} was reached`);
  }
});

/** How long, as the parent sees it, a migration takes from "S" to "D": median of 3. */
async function migrationMs(): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    const dir = fs.mkdtempSync(path.join(root, "timing-"));
    try {
      const file = path.join(dir, "db.emdb");
      fs.copyFileSync(master, file);
      let started = 0;
      await runKillableChild(CHILD, [file], undefined, (line) => {
        if (line === "S") started = performance.now();
        if (line === "D") times.push(performance.now() - started);
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  return times.sort((a, b) => a - b)[1]!;
}

test("SIGKILL at random moments of a migration", { timeout: 300_000 }, async () => {
  const seed = testSeed();
  const rng = new Prng(seed);
  // Kill times are drawn within the migration's own measured duration, so the rounds land
  // inside it on a fast machine as on a slow one.
  // Every round checks the outcome; rounds go on until 8 were killed mid-way (at most 24).
  const span = Math.max(1, Math.floor(0.8 * (await migrationMs())));
  let kills = 0;
  let rounds = 0;
  while (kills < 8 && rounds < 24) {
    rounds++;
    if (await round(undefined, rng.int(span))) kills++;
  }
  assert.ok(
    kills >= 8,
    `only ${kills} of ${rounds} rounds were killed mid-way (kills within ${span} ms; seed=${seed})`,
  );
});
