/**
 * The install step (native/build.mjs), run on a copy of native/ in a temp directory so the
 * addon the other tests load is never rebuilt under them. It must exit 0 whatever happens.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { EXPECTED_ABI_VERSION, native, nativeLoadError } from "../src/pager/native.js";
import { type ChildResult, runToEnd } from "./helpers/kill-child.js";

const NATIVE_DIR = fileURLToPath(new URL("../native/", import.meta.url));
const SOURCES = ["emdb_native.c", "binding.gyp", "build.mjs"];
const WARNING = /^emdb: native addon not built \((.+)\); using pread and a pid lock file instead$/;

function copyNative(t: { after(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-build-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const native = path.join(dir, "native");
  fs.mkdirSync(native);
  for (const f of SOURCES) fs.copyFileSync(path.join(NATIVE_DIR, f), path.join(native, f));
  return native;
}

async function runBuild(dir: string, extraEnv: Record<string, string> = {}): Promise<ChildResult> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extraEnv };
  if (extraEnv.EMDB_SKIP_NATIVE_BUILD === undefined) delete env.EMDB_SKIP_NATIVE_BUILD;
  return runToEnd([path.join(dir, "build.mjs")], { cwd: dir, env });
}

test("a failed build prints one warning line, logs why, and exits 0", async (t) => {
  const dir = copyNative(t);
  fs.appendFileSync(path.join(dir, "emdb_native.c"), "\nthis is not C;\n");
  const r = await runBuild(dir);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "");
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  const reason = WARNING.exec(lines[0]!)?.[1];
  assert.ok(reason !== undefined, r.stderr);
  const log = fs.readFileSync(path.join(dir, "build", "build.log"), "utf8");
  assert.equal(log.split("\n", 1)[0], reason, "the log starts with the same reason");
  assert.ok(!fs.existsSync(path.join(dir, "build", "Release", "emdb_native.node")));
});

test("EMDB_SKIP_NATIVE_BUILD=1 skips the build", async (t) => {
  const dir = copyNative(t);
  const r = await runBuild(dir, { EMDB_SKIP_NATIVE_BUILD: "1" });
  assert.equal(r.code, 0);
  assert.match(r.stderr.trim(), WARNING);
  assert.match(r.stderr, /EMDB_SKIP_NATIVE_BUILD=1/);
  assert.ok(!fs.existsSync(path.join(dir, "build", "Release")));
});

test("a good build leaves an addon that loads", {
  // Only where the toolchain is known to work: the install step built the addon here.
  skip: native === undefined && `native addon not built: ${nativeLoadError}`,
}, async (t) => {
  const dir = copyNative(t);
  const r = await runBuild(dir);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "");
  const addon = path.join(dir, "build", "Release", "emdb_native.node");
  assert.ok(fs.existsSync(addon), r.stdout);
  const loaded = createRequire(import.meta.url)(addon) as { ABI_VERSION: number; flock: unknown };
  assert.equal(loaded.ABI_VERSION, EXPECTED_ABI_VERSION);
  assert.equal(typeof loaded.flock, "function");
});

test("a build that runs past its timeout is stopped and reported", async (t) => {
  const dir = copyNative(t);
  // Starting node-gyp alone takes far longer than 1 ms, so this always times out.
  const r = await runBuild(dir, { EMDB_NATIVE_BUILD_TIMEOUT_MS: "1" });
  assert.equal(r.code, 0);
  assert.match(r.stderr.trim(), WARNING);
  assert.match(r.stderr, /timed out after 1 ms/);
});
