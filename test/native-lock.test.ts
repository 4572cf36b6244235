/**
 * The database lock (src/pager/lock.ts), in whichever mode this process loaded: "flock"
 * with the native addon, "pidfile" without it. The last test runs this same file again in a
 * child process with EMDB_DISABLE_NATIVE=1, so both modes are covered by one run.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { isEmdbError } from "../src/errors.js";
import { acquireLock } from "../src/pager/lock.js";
import { native, nativeLoadError } from "../src/pager/native.js";
import { runToEnd } from "./helpers/kill-child.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const THIS_FILE = fileURLToPath(import.meta.url);
const HOLDER = fileURLToPath(new URL("./helpers/lock-holder.ts", import.meta.url));
const MODE = native !== undefined ? "flock" : "pidfile";
const NO_NATIVE = native === undefined ? `native addon not built: ${nativeLoadError}` : false;
if (native === undefined) console.log(`# lock tests run in pidfile mode: ${nativeLoadError}`);

function tempDb(t: { after(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-lock-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, "db.emdb");
}

function assertBusy(fn: () => unknown, file: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isEmdbError(err, "EMDB_LOCK_BUSY"), `expected EMDB_LOCK_BUSY, got ${String(err)}`);
    assert.equal(err.file, file);
    return true;
  });
}

/** Starts a process that holds the lock of `dbPath`; resolves once it says so. */
async function startHolder(
  dbPath: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ChildProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", HOLDER, dbPath], {
    cwd: ROOT,
    env,
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    err += d;
  });
  const line = await new Promise<string>((resolve, reject) => {
    child.stdout?.setEncoding("utf8").on("data", (d: string) => {
      out += d;
      const nl = out.indexOf("\n");
      if (nl >= 0) resolve(out.slice(0, nl));
    });
    child.on("exit", (code) => reject(new Error(`holder exited (${code}): ${out}${err}`)));
    child.on("error", reject);
  });
  assert.match(line, /^locked (flock|pidfile)$/);
  return child;
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGKILL");
  // Only after "exit" has Node reaped it, so its pid is really gone for kill(pid, 0).
  await exited;
}

function writeHolderLine(file: string, pid: number, kind: string, hostname = os.hostname()): void {
  fs.writeFileSync(
    file,
    `${JSON.stringify({ pid, hostname, since: new Date().toISOString(), kind })}\n`,
  );
}

test(`[${MODE}] a second acquire in the same process is EMDB_LOCK_BUSY`, (t) => {
  const db = tempDb(t);
  const lock = acquireLock(db);
  t.after(() => lock.release());
  assert.equal(lock.kind, MODE);
  assert.equal(lock.file, `${db}.lock`);
  assertBusy(() => acquireLock(db), `${db}.lock`);
  // Still busy after the failed attempt: refusing must not have dropped the holder's lock.
  assertBusy(() => acquireLock(db), `${db}.lock`);
});

test(`[${MODE}] another spelling of the same path is the same lock`, (t) => {
  const db = tempDb(t);
  const dir = path.dirname(db);
  const link = `${dir}-link`;
  fs.symlinkSync(dir, link);
  t.after(() => fs.rmSync(link, { force: true }));
  const lock = acquireLock(db);
  t.after(() => lock.release());
  const viaLink = path.join(link, path.basename(db));
  assertBusy(() => acquireLock(viaLink), `${viaLink}.lock`);
  // path.join would normalise the "./" away; the lock must not depend on that.
  const dotted = `${dir}/./${path.basename(db)}`;
  assertBusy(() => acquireLock(dotted), `${dotted}.lock`);
});

test(`[${MODE}] release lets the next acquire in, and keeps the lock file`, (t) => {
  const db = tempDb(t);
  const first = acquireLock(db);
  const holder = JSON.parse(fs.readFileSync(`${db}.lock`, "utf8")) as Record<string, unknown>;
  assert.equal(holder.pid, process.pid);
  assert.equal(holder.hostname, os.hostname());
  assert.equal(holder.kind, MODE);
  first.release();
  first.release(); // a second release is a no-op, not a double close
  assert.ok(fs.existsSync(`${db}.lock`), "the lock file is never deleted");
  const second = acquireLock(db);
  second.release();
  const third = acquireLock(db);
  third.release();
});

test(`[${MODE}] a lock file that cannot be opened is EMDB_IO`, (t) => {
  const db = path.join(tempDb(t), "missing-dir", "db.emdb");
  assert.throws(
    () => acquireLock(db),
    (err: unknown) => isEmdbError(err, "EMDB_IO") && err.file === `${db}.lock`,
  );
});

test(`[${MODE}] a live pid-file holder blocks; our own stale line does not`, (t) => {
  const db = tempDb(t);
  // The test runner that started us is alive and is not us.
  writeHolderLine(`${db}.lock`, process.ppid, "pidfile");
  assertBusy(() => acquireLock(db), `${db}.lock`);
  writeHolderLine(`${db}.lock`, process.pid, "pidfile");
  acquireLock(db).release();
  // A holder on another host cannot be checked, so it counts as alive.
  writeHolderLine(`${db}.lock`, process.ppid, "pidfile", `not-${os.hostname()}`);
  assertBusy(() => acquireLock(db), `${db}.lock`);
  fs.writeFileSync(`${db}.lock`, "not json");
  acquireLock(db).release();
});

test(`[${MODE}] a process holding the lock blocks us until it is SIGKILLed`, async (t) => {
  const db = tempDb(t);
  const child = await startHolder(db);
  t.after(() => kill(child));
  assert.throws(
    () => acquireLock(db),
    (err: unknown) =>
      isEmdbError(err, "EMDB_LOCK_BUSY") && err.message.includes(`pid ${child.pid}`),
  );
  await kill(child);
  const lock = acquireLock(db);
  lock.release();
});

test("[flock] flock refuses a second open file description in the same process", {
  skip: NO_NATIVE,
}, (t) => {
  const file = `${tempDb(t)}.lock`;
  const a = fs.openSync(file, "w+");
  const b = fs.openSync(file, "r+");
  t.after(() => {
    fs.closeSync(a);
    fs.closeSync(b);
  });
  assert.equal(native!.flock(a, true, true), true);
  assert.equal(native!.flock(b, true, true), false, "EWOULDBLOCK within one process");
  assert.equal(native!.flock(b, false, true), false, "no shared lock beside an exclusive one");
  native!.funlock(a);
  assert.equal(native!.flock(b, true, true), true);
  assert.equal(native!.flock(a, false, true), false);
});

test("[flock] flock errors carry the errno name", { skip: NO_NATIVE }, (t) => {
  const file = `${tempDb(t)}.lock`;
  const fd = fs.openSync(file, "w+");
  fs.closeSync(fd);
  assert.throws(
    () => native!.flock(fd, true, true),
    (err: unknown) =>
      err instanceof Error &&
      (err as NodeJS.ErrnoException).code === "EBADF" &&
      (err as NodeJS.ErrnoException).syscall === "flock" &&
      err.message.includes("flock"),
  );
  assert.throws(() => native!.flock(-1, true, true), RangeError);
  assert.throws(() => native!.flock(0, "yes" as unknown as boolean, true), TypeError);
});

test("[flock] a stale flock-mode line from a dead holder is ignored", { skip: NO_NATIVE }, (t) => {
  const db = tempDb(t);
  // Alive pid, but the kernel granted us the flock, so that holder no longer holds it.
  writeHolderLine(`${db}.lock`, process.ppid, "flock");
  acquireLock(db).release();
});

test("[flock] a pid-file holder without the addon blocks a flock acquirer, and back", {
  skip: NO_NATIVE,
}, async (t) => {
  const db = tempDb(t);
  const fallbackChild = await startHolder(db, { ...process.env, EMDB_DISABLE_NATIVE: "1" });
  t.after(() => kill(fallbackChild));
  assertBusy(() => acquireLock(db), `${db}.lock`);
  await kill(fallbackChild);
  const lock = acquireLock(db);
  lock.release();

  const flockChild = await startHolder(db);
  t.after(() => kill(flockChild));
  const env: NodeJS.ProcessEnv = { ...process.env, EMDB_DISABLE_NATIVE: "1" };
  delete env.NODE_TEST_CONTEXT;
  const second = spawn(process.execPath, ["--import", "tsx", HOLDER, db], { cwd: ROOT, env });
  // Closed stdin: should it wrongly take the lock, it exits instead of holding it forever.
  second.stdin.end();
  let out = "";
  second.stdout.setEncoding("utf8").on("data", (d: string) => {
    out += d;
  });
  const [code] = (await once(second, "exit")) as [number | null];
  assert.equal(out.trim(), "failed EMDB_LOCK_BUSY");
  assert.equal(code, 1);
});

test("the native addon is loaded when EMDB_REQUIRE_NATIVE=1", {
  skip: process.env.EMDB_REQUIRE_NATIVE !== "1" && "EMDB_REQUIRE_NATIVE is not set",
}, () => {
  assert.equal(nativeLoadError, undefined);
  assert.ok(native !== undefined);
});

test("the lock tests also pass without the addon (EMDB_DISABLE_NATIVE=1)", {
  skip: native === undefined && "this process already runs without the addon",
}, async () => {
  const env: NodeJS.ProcessEnv = { ...process.env, EMDB_DISABLE_NATIVE: "1" };
  // Without this the child would report to our runner's protocol instead of printing TAP.
  delete env.NODE_TEST_CONTEXT;
  // The child runs without the addon on purpose.
  delete env.EMDB_REQUIRE_NATIVE;
  const r = await runToEnd(["--import", "tsx", "--test", "--test-reporter=tap", THIS_FILE], {
    cwd: ROOT,
    env,
  });
  const out = r.stdout + r.stderr;
  const code = r.code;
  assert.equal(code, 0, out);
  assert.match(out, /^# fail 0$/m, out);
  const passed = Number(/^# pass (\d+)$/m.exec(out)?.[1]);
  assert.ok(passed >= 6, `expected the 6 shared tests to pass in pidfile mode:\n${out}`);
  assert.match(out, /\[pidfile\] a second acquire/, out);
});
