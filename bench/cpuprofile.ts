/**
 * Reads a V8 .cpuprofile (what `node --cpu-prof` and the inspector's Profiler.stop produce)
 * and ranks functions by self time. Samples are attributed to the node they hit; nodes of the
 * same function (same name, script and line) are summed, as DevTools' "Bottom-Up" view does.
 *
 *   npx tsx bench/cpuprofile.ts FILE.cpuprofile [top]
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

export interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
    hitCount?: number;
  }[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface SelfTime {
  name: string;
  where: string;
  selfMs: number;
  /** Percent of all sampled time, idle and GC included. */
  share: number;
}

export function topSelfTimes(profile: CpuProfile, top: number): SelfTime[] {
  const byNode = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  // timeDeltas[i] is the gap *before* sample i, so sample i lasted timeDeltas[i + 1].
  for (let i = 0; i < samples.length; i++) {
    const us = deltas[i + 1] ?? 0;
    byNode.set(samples[i]!, (byNode.get(samples[i]!) ?? 0) + us);
  }
  const byFn = new Map<string, SelfTime>();
  let total = 0;
  for (const node of profile.nodes) {
    const us = byNode.get(node.id) ?? 0;
    total += us;
    const f = node.callFrame;
    const name = f.functionName || "(anonymous)";
    const file = f.url === "" ? "" : path.basename(f.url.replace(/^file:\/\//, ""));
    const where = file === "" ? "" : `${file}:${f.lineNumber + 1}`;
    const key = `${name}\u0000${where}`;
    const row = byFn.get(key) ?? { name, where, selfMs: 0, share: 0 };
    row.selfMs += us / 1000;
    byFn.set(key, row);
  }
  const rows = [...byFn.values()].sort((a, b) => b.selfMs - a.selfMs).slice(0, top);
  for (const r of rows) r.share = total === 0 ? 0 : (r.selfMs * 1000 * 100) / total;
  return rows;
}

if (
  process.argv[1] !== undefined &&
  fileURLToPath(import.meta.url) === path.resolve(process.argv[1])
) {
  const file = process.argv[2];
  if (file === undefined) throw new Error("usage: cpuprofile.ts FILE.cpuprofile [top]");
  const profile = JSON.parse(fs.readFileSync(file, "utf8")) as CpuProfile;
  for (const r of topSelfTimes(profile, Number(process.argv[3] ?? 10))) {
    process.stdout.write(
      `${r.selfMs.toFixed(1).padStart(9)} ms ${r.share.toFixed(1).padStart(5)}%  ${r.name}  ${r.where}\n`,
    );
  }
}
