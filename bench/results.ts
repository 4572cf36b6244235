/**
 * The shape of a results file (bench/results/<timestamp>.json) and the medians the report is
 * built from. Every figure is kept per run in `samples`, so a reader can recompute anything.
 */
import type { EngineName } from "./engine.js";
import type { LineId } from "./lines.js";

/** "raw" is the write + fdatasync loop: a column of its own on the durable line. */
export type Column = EngineName | "raw";

export interface Sample {
  run: number;
  n: number;
  engine: Column;
  line: LineId;
  value: number;
}

export interface EngineInfo {
  status: "measured" | "skipped" | "failed";
  reason?: string;
  persistent?: boolean;
  describe?: Record<string, string>;
  variants?: Record<string, string>;
}

export interface Failure {
  run: number;
  n: number;
  engine: Column;
  task: string;
  error: string;
}

export interface RunOptions {
  sizes: number[];
  runs: number;
  engines: EngineName[];
  /** Reopens after the first, per run; the report shows their median as "steady". */
  steadyReopens: number;
  /** tinybench time budget per sampled task, ms. */
  benchTimeMs: number;
  /** Iterations of the raw write + fdatasync loop. */
  fsyncCount: number;
  quick: boolean;
}

/** medians[n][line][column] */
export type Medians = Record<string, Partial<Record<LineId, Partial<Record<Column, number>>>>>;

export interface TargetOutcome {
  n: number;
  line: LineId;
  text: string;
  /** The figure compared with the bound: a ratio or an absolute value. */
  value: number | undefined;
  bound: number;
  met: boolean | undefined;
  summary: string;
}

export interface ResultsJson {
  meta: {
    startedAt: string;
    finishedAt: string;
    node: string;
    v8: string;
    platform: string;
    cpus: string;
    cpuCount: number;
    memoryGiB: number;
    packages: Record<string, string>;
    /** The commit whose emdb was measured, "+dirty" when src/ or migrations/ had changes. */
    emdbCommit?: string;
  };
  options: RunOptions;
  engines: Partial<Record<EngineName, EngineInfo>>;
  /** Records in each engine's store at close, per size (raw data = records × 116 bytes). */
  records: Record<string, Partial<Record<EngineName, number>>>;
  /** RSS (MiB) of the load child after generating the workload, before opening the engine. */
  harnessRss: Record<string, Partial<Record<EngineName, number>>>;
  samples: Sample[];
  medians: Medians;
  targets: TargetOutcome[];
  failures: Failure[];
  markdown: string;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function computeMedians(samples: readonly Sample[]): Medians {
  const groups = new Map<string, number[]>();
  for (const s of samples) {
    const k = `${s.n}\u0000${s.line}\u0000${s.engine}`;
    const g = groups.get(k);
    if (g === undefined) groups.set(k, [s.value]);
    else g.push(s.value);
  }
  const out: Medians = {};
  for (const [k, values] of groups) {
    const [n, line, engine] = k.split("\u0000") as [string, LineId, Column];
    const byLine = out[n] ?? {};
    out[n] = byLine;
    const byEngine = byLine[line] ?? {};
    byLine[line] = byEngine;
    byEngine[engine] = median(values);
  }
  return out;
}
