/**
 * The runner: for each run, size and engine it starts the measuring children one after the
 * other, collects their figures, and builds the results (medians, targets, markdown, SVG).
 * Engines are rotated between runs so a slow drift of the shared machine does not always
 * land on the same engine.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { ENGINE_NAMES, type EngineName } from "./engine.js";
import type { Figures, LineId } from "./lines.js";
import { renderMarkdown } from "./report.js";
import {
  computeMedians,
  type EngineInfo,
  type Failure,
  median,
  type ResultsJson,
  type RunOptions,
  type Sample,
} from "./results.js";
import { runChild } from "./spawn.js";
import { renderSvg } from "./svg.js";
import { evaluateTargets } from "./targets.js";

/** Which report line each bulk-load variant's figure goes to. */
const VARIANT_LINES: Record<string, LineId> = { manual: "bulkManual" };
/** Which report line each reopen variant's figure (the median of its opens) goes to. */
const REOPEN_VARIANT_LINES: Record<string, LineId> = { mmap: "reopenMmap" };

export const FULL: RunOptions = {
  sizes: [100_000, 1_000_000],
  runs: 3,
  engines: [...ENGINE_NAMES],
  steadyReopens: 3,
  benchTimeMs: 1000,
  fsyncCount: 2000,
  quick: false,
};

export const QUICK: RunOptions = {
  sizes: [10_000],
  runs: 1,
  engines: [...ENGINE_NAMES],
  steadyReopens: 1,
  benchTimeMs: 150,
  fsyncCount: 500,
  quick: true,
};

export interface RunnerIo {
  /** Progress lines (stderr by default). */
  log: (line: string) => void;
  /** Scratch space for the stores; removed at the end. */
  workDir?: string;
}

const PACKAGES: Partial<Record<EngineName, string>> = {
  lmdb: "lmdb",
  "classic-level": "classic-level",
  sqlite: "better-sqlite3",
};

/** Versions read from node_modules directly: lmdb's `exports` hide its package.json. */
function packageVersions(): Record<string, string> {
  const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
  const version = (dir: string): string | undefined => {
    try {
      const text = fs.readFileSync(path.join(dir, "package.json"), "utf8");
      return (JSON.parse(text) as { version: string }).version;
    } catch {
      return undefined;
    }
  };
  const out: Record<string, string> = {
    emdb: version(root) ?? "?",
    map: `V8 ${process.versions.v8}`,
  };
  for (const [engine, pkg] of Object.entries({ ...PACKAGES, tinybench: "tinybench" })) {
    const v = version(path.join(root, "node_modules", pkg));
    out[engine] = v === undefined ? `${pkg} (not installed)` : `${pkg} ${v}`;
  }
  return out;
}

/** Which emdb was measured: results outlive the branch they were taken on. */
function gitCommit(): string | undefined {
  const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
  const git = (args: string[]) =>
    execFileSync("git", args, {
      cwd: root,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
  try {
    const dirty = git(["status", "--porcelain", "--", "src", "migrations"]) !== "";
    return `${git(["rev-parse", "HEAD"])}${dirty ? "+dirty" : ""}`;
  } catch {
    return undefined;
  }
}

export async function runBench(options: RunOptions, io: RunnerIo): Promise<ResultsJson> {
  const startedAt = new Date().toISOString();
  const work = io.workDir ?? fs.mkdtempSync(path.join(os.tmpdir(), "emdb-bench-"));
  const samples: Sample[] = [];
  const failures: Failure[] = [];
  const engines: Partial<Record<EngineName, EngineInfo>> = {};
  const records: ResultsJson["records"] = {};
  const harnessRss: ResultsJson["harnessRss"] = {};
  let dirCount = 0;
  const freshDir = () => {
    const d = path.join(work, `s${dirCount++}`);
    fs.mkdirSync(d, { recursive: true });
    return d;
  };
  const push = (run: number, n: number, engine: EngineName | "raw", figures: Figures) => {
    for (const [line, value] of Object.entries(figures)) {
      if (typeof value === "number" && Number.isFinite(value)) {
        samples.push({ run, n, engine, line: line as LineId, value });
      }
    }
  };

  try {
    for (let run = 1; run <= options.runs; run++) {
      for (const n of options.sizes) {
        const fsyncDir = freshDir();
        const raw = runChild(["fsync", "--dir", fsyncDir, "--count", String(options.fsyncCount)]);
        if (raw.ok) push(run, n, "raw", { durable: raw.result.rate as number });
        else failures.push({ run, n, engine: "raw", task: "fsync", error: raw.error });

        const order = options.engines.map((_, i, a) => a[(i + run - 1) % a.length]!);
        for (const engine of order) {
          const status = engines[engine]?.status;
          if (status === "skipped") continue;
          io.log(`run ${run}/${options.runs} · N=${n.toLocaleString("en-US")} · ${engine}`);
          runEngine(run, n, engine);
        }
      }
    }
  } finally {
    if (io.workDir === undefined) fs.rmSync(work, { recursive: true, force: true });
  }

  function runEngine(run: number, n: number, engine: EngineName): void {
    const dir = freshDir();
    const common = ["--engine", engine, "--n", String(n), "--dir", dir];
    const load = runChild(["load", ...common, "--bench-time", String(options.benchTimeMs)]);
    if (!load.ok) {
      failures.push({ run, n, engine, task: "load", error: load.error });
      engines[engine] ??= { status: "failed", reason: load.error.split("\n")[0]! };
      io.log(`  ${engine} failed: ${load.error}`);
      return;
    }
    const r = load.result;
    if (typeof r.skipped === "string") {
      engines[engine] = { status: "skipped", reason: `import failed: ${r.skipped}` };
      io.log(`  ${engine} skipped: ${r.skipped}`);
      return;
    }
    engines[engine] = {
      status: "measured",
      persistent: r.persistent as boolean,
      describe: r.describe as Record<string, string>,
      variants: { ...(r.variants as object), ...(r.reopenVariants as object) },
    };
    push(run, n, engine, r.figures as Figures);
    records[n] = { ...records[n], [engine]: r.records as number };
    harnessRss[n] = { ...harnessRss[n], [engine]: r.harnessRss as number };

    if (r.persistent === true) {
      const opens: { ms: number; rss: number }[] = [];
      for (let i = 0; i <= options.steadyReopens; i++) {
        const re = runChild(["reopen", ...common]);
        if (!re.ok) {
          failures.push({ run, n, engine, task: `reopen ${i}`, error: re.error });
          break;
        }
        opens.push({ ms: re.result.ms as number, rss: re.result.rss as number });
      }
      const [first, ...steady] = opens;
      if (first !== undefined)
        push(run, n, engine, { reopenFirst: first.ms, rssReopen: first.rss });
      if (steady.length > 0)
        push(run, n, engine, { reopenSteady: median(steady.map((s) => s.ms)) });
      // As many opens again with each variant, after the headline ones (all steady opens).
      for (const variant of Object.keys((r.reopenVariants as Record<string, string>) ?? {})) {
        const line = REOPEN_VARIANT_LINES[variant];
        if (line === undefined || first === undefined) continue;
        const ms: number[] = [];
        for (let i = 0; i < options.steadyReopens; i++) {
          const re = runChild(["reopen", ...common, "--variant", variant]);
          if (!re.ok) {
            failures.push({ run, n, engine, task: `reopen ${variant} ${i}`, error: re.error });
            break;
          }
          ms.push(re.result.ms as number);
        }
        if (ms.length > 0) push(run, n, engine, { [line]: median(ms) });
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });

    for (const variant of Object.keys((r.variants as Record<string, string>) ?? {})) {
      const line = VARIANT_LINES[variant];
      if (line === undefined) continue;
      const vdir = freshDir();
      const v = runChild([
        "load",
        "--engine",
        engine,
        "--n",
        String(n),
        "--dir",
        vdir,
        "--variant",
        variant,
        "--bulk-only",
      ]);
      if (v.ok && typeof (v.result.figures as Figures | undefined)?.bulk === "number") {
        push(run, n, engine, { [line]: (v.result.figures as Figures).bulk });
      } else {
        failures.push({
          run,
          n,
          engine,
          task: `bulk variant ${variant}`,
          error: v.ok ? "no figure" : v.error,
        });
      }
      fs.rmSync(vdir, { recursive: true, force: true });
    }
  }

  const medians = computeMedians(samples);
  const results: ResultsJson = {
    meta: {
      startedAt,
      finishedAt: new Date().toISOString(),
      node: process.versions.node,
      v8: process.versions.v8,
      platform: `${os.platform()} ${os.release()} ${os.arch()}`,
      cpus: os.cpus()[0]?.model.trim() ?? "unknown",
      cpuCount: os.cpus().length,
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      packages: packageVersions(),
      emdbCommit: gitCommit(),
    },
    options,
    engines,
    records,
    harnessRss,
    samples,
    medians,
    targets: evaluateTargets(medians, records),
    failures,
    markdown: "",
  };
  results.markdown = renderMarkdown(results);
  return results;
}

/** Writes `<dir>/<timestamp>.json` and `<dir>/ratios.svg`; returns their paths. */
export function writeResults(results: ResultsJson, dir: string): string[] {
  fs.mkdirSync(dir, { recursive: true });
  const stamp = results.meta.startedAt.replaceAll(":", "-").replace(/\.\d+Z$/, "Z");
  const json = path.join(dir, `${stamp}${results.options.quick ? "-quick" : ""}.json`);
  const svg = path.join(dir, results.options.quick ? "ratios-quick.svg" : "ratios.svg");
  fs.writeFileSync(json, `${JSON.stringify(results, null, 2)}\n`);
  fs.writeFileSync(svg, renderSvg(results));
  return [json, svg];
}
