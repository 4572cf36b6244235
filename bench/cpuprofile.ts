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
    children?: number[];
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
  /** Time with this function anywhere on the stack (each sample counted once). */
  totalMs: number;
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
  const parent = new Map<number, number>();
  const byId = new Map<number, CpuProfile["nodes"][number]>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const c of node.children ?? []) parent.set(c, node.id);
  }
  const fnKey = (node: CpuProfile["nodes"][number]) => {
    const f = node.callFrame;
    const name = f.functionName || "(anonymous)";
    const file = f.url === "" ? "" : path.basename(f.url.replace(/^file:\/\//, ""));
    return { name, where: file === "" ? "" : `${file}:${f.lineNumber + 1}` };
  };
  const byFn = new Map<string, SelfTime>();
  const row = (node: CpuProfile["nodes"][number]) => {
    const { name, where } = fnKey(node);
    const key = `${name}\u0000${where}`;
    let r = byFn.get(key);
    if (r === undefined) {
      r = { name, where, selfMs: 0, totalMs: 0, share: 0 };
      byFn.set(key, r);
    }
    return r;
  };
  let total = 0;
  for (const [id, us] of byNode) {
    const node = byId.get(id);
    if (node === undefined) continue;
    total += us;
    row(node).selfMs += us / 1000;
    // Inclusive time: once per function on this sample's stack, however deep the recursion.
    const seen = new Set<SelfTime>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const r = row(byId.get(at)!);
      if (!seen.has(r)) {
        seen.add(r);
        r.totalMs += us / 1000;
      }
    }
  }
  const rows = [...byFn.values()].sort((a, b) => b.selfMs - a.selfMs).slice(0, top);
  for (const r of rows) r.share = total === 0 ? 0 : (r.selfMs * 1000 * 100) / total;
  return rows;
}

export function formatRow(r: SelfTime): string {
  const ms = (x: number) => x.toFixed(0).padStart(7);
  const share = r.share.toFixed(1).padStart(5);
  return `self ${ms(r.selfMs)} ms ${share}%  total ${ms(r.totalMs)} ms  ${r.name}  ${r.where}\n`;
}

if (
  process.argv[1] !== undefined &&
  fileURLToPath(import.meta.url) === path.resolve(process.argv[1])
) {
  const file = process.argv[2];
  if (file === undefined) throw new Error("usage: cpuprofile.ts FILE.cpuprofile [top]");
  const profile = JSON.parse(fs.readFileSync(file, "utf8")) as CpuProfile;
  for (const r of topSelfTimes(profile, Number(process.argv[3] ?? 10))) {
    process.stdout.write(formatRow(r));
  }
}
