#!/usr/bin/env node
/**
 * The install step for emdb's native addon (flock + 64-bit mmap).
 *
 * The addon is an optimisation, never a requirement: emdb falls back to pread and a pid lock
 * file without it. So this script always exits 0. A failed build prints one warning line and
 * leaves the whole node-gyp output in native/build/build.log, because npm (7 and later) hides
 * the output of install scripts that succeed.
 *
 * Environment:
 *   EMDB_SKIP_NATIVE_BUILD=1        do not build (the runtime then uses the fallback)
 *   EMDB_NATIVE_BUILD_TIMEOUT_MS=n  give up after n ms (default 120000)
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const addonFile = path.join(here, "build", "Release", "emdb_native.node");
const logFile = path.join(here, "build", "build.log");
const timeoutMs = Number(process.env.EMDB_NATIVE_BUILD_TIMEOUT_MS) || 120_000;
/** Keeps the tail of node-gyp's output: the compiler's error is near the end. */
const MAX_LOG_CHARS = 256 * 1024;

function writeLog(text) {
  try {
    fs.mkdirSync(path.dirname(logFile), { recursive: true });
    fs.writeFileSync(logFile, text);
  } catch {
    // The log is a courtesy; a read-only install directory must not turn into a failure.
  }
}

function giveUp(reason, log) {
  writeLog(`${reason}\n\n${log ?? ""}\n`);
  console.warn(`emdb: native addon not built (${reason}); using pread and a pid lock file instead`);
  process.exit(0);
}

function exists(file) {
  try {
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** How to run node-gyp: npm's own copy when there is one, so nothing is downloaded. */
function findNodeGyp() {
  const candidates = [];
  // npm sets this for lifecycle scripts; it points at npm's bundled node-gyp.
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp);
  if (process.env.npm_execpath) {
    candidates.push(
      path.join(
        path.dirname(process.env.npm_execpath),
        "..",
        "node_modules",
        "node-gyp",
        "bin",
        "node-gyp.js",
      ),
    );
  }
  const bin = path.dirname(process.execPath);
  // Unix installs keep npm in <prefix>/lib/node_modules, Windows ones next to node.exe.
  candidates.push(
    path.join(
      bin,
      "..",
      "lib",
      "node_modules",
      "npm",
      "node_modules",
      "node-gyp",
      "bin",
      "node-gyp.js",
    ),
  );
  candidates.push(
    path.join(bin, "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"),
  );
  try {
    candidates.push(createRequire(import.meta.url).resolve("node-gyp/bin/node-gyp.js"));
  } catch {
    // not installed locally
  }
  const found = candidates.find(exists);
  if (found !== undefined) return { command: process.execPath, args: [found] };
  return { command: process.platform === "win32" ? "npx.cmd" : "npx", args: ["--yes", "node-gyp"] };
}

/**
 * Headers that ship with this very node (system packages put them in /usr/include/node,
 * official tarballs in <prefix>/include/node). Pointing node-gyp at them avoids a download
 * of the headers, which fails on machines that reach only the npm registry.
 */
function localNodeDir() {
  if (process.env.npm_config_nodedir) return undefined; // node-gyp reads it from the env itself
  const prefix = path.resolve(path.dirname(process.execPath), "..");
  return exists(path.join(prefix, "include", "node", "node_api.h")) ? prefix : undefined;
}

/** The line of node-gyp's output that best says what went wrong. */
function firstErrorLine(output) {
  const lines = output.split(/\r?\n/).map((l) => l.trim());
  const line =
    lines.find(
      (l) => /\berror\b/i.test(l) && !/^gyp ERR! (stack|System|command|cwd|node)/.test(l),
    ) ??
    lines.filter((l) => l.length > 0).pop() ??
    "";
  return line.length > 200 ? `${line.slice(0, 197)}...` : line;
}

function run(command, args) {
  return new Promise((resolve) => {
    let output = "";
    const append = (chunk) => {
      output += chunk;
      if (output.length > MAX_LOG_CHARS) output = output.slice(-MAX_LOG_CHARS);
    };
    const child = spawn(command, args, {
      cwd: here,
      stdio: ["ignore", "pipe", "pipe"],
      // Its own process group, so a timeout also stops the make and cc it started.
      detached: process.platform !== "win32",
      env: process.env,
    });
    child.stdout.setEncoding("utf8").on("data", append);
    child.stderr.setEncoding("utf8").on("data", append);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        if (process.platform === "win32") child.kill("SIGKILL");
        else process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }, timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      resolve({
        code: null,
        output: `${output}\n${err.message}`,
        spawnError: err.message,
        timedOut,
      });
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, output, spawnError: undefined, timedOut });
    });
  });
}

if (process.env.EMDB_SKIP_NATIVE_BUILD === "1") giveUp("EMDB_SKIP_NATIVE_BUILD=1");
if (process.platform === "win32") giveUp("flock and mmap are POSIX-only; Windows is not supported");

const gyp = findNodeGyp();
const nodedir = localNodeDir();
const args = [...gyp.args, "rebuild", ...(nodedir !== undefined ? [`--nodedir=${nodedir}`] : [])];
const started = Date.now();
const result = await run(gyp.command, args);
const header = `$ ${gyp.command} ${args.join(" ")}\n(cwd ${here}, ${Date.now() - started} ms)\n\n`;

if (result.spawnError !== undefined)
  giveUp(`cannot run node-gyp: ${result.spawnError}`, header + result.output);
if (result.timedOut) giveUp(`node-gyp timed out after ${timeoutMs} ms`, header + result.output);
if (result.code !== 0) {
  giveUp(
    `node-gyp exited with ${result.code}: ${firstErrorLine(result.output)}`,
    header + result.output,
  );
}
if (!exists(addonFile))
  giveUp(`node-gyp succeeded but ${addonFile} is missing`, header + result.output);
try {
  const addon = createRequire(import.meta.url)(addonFile);
  if (typeof addon.flock !== "function" || typeof addon.mmap !== "function") {
    throw new Error("it does not export flock and mmap");
  }
} catch (err) {
  giveUp(
    `the built addon does not load: ${err instanceof Error ? err.message : err}`,
    header + result.output,
  );
}
writeLog(header + result.output);
console.log(`emdb: native addon built (${path.relative(process.cwd(), addonFile) || addonFile})`);
