/**
 * The targets emdb must reach, each checked on figures of the same run (never against the
 * baselines in node-peers.md, which were measured on another day).
 */
import type { EngineName } from "./engine.js";
import { LINES, type LineId } from "./lines.js";
import type { Medians, TargetOutcome } from "./results.js";
import { RECORD_BYTES } from "./workload.js";

const MILLION = 1_000_000;

type Against =
  | { kind: "peer"; peer: EngineName | "raw" }
  | { kind: "absolute"; unit: string }
  /** emdb's size over the raw payload of the records it holds. */
  | { kind: "rawData" };

interface TargetDef {
  lines: LineId[];
  /** Only at this size (the targets that say "at 1M"); otherwise at every size. */
  onlyAt?: number;
  against: Against;
  /** ≥ bound when true, ≤ bound otherwise. */
  atLeast: boolean;
  bound: number;
  text: string;
}

export const TARGETS: readonly TargetDef[] = [
  {
    lines: ["reads"],
    against: { kind: "peer", peer: "lmdb" },
    atLeast: true,
    bound: 5,
    text: "≥ 5× lmdb",
  },
  {
    lines: ["reads"],
    against: { kind: "peer", peer: "map" },
    atLeast: true,
    bound: 0.7,
    text: "≥ 0.7× Map",
  },
  {
    lines: ["bulk", "bulkManual"],
    against: { kind: "peer", peer: "lmdb" },
    atLeast: true,
    bound: 1.5,
    text: "≥ 1.5× lmdb",
  },
  {
    lines: ["bulk", "bulkManual"],
    against: { kind: "peer", peer: "classic-level" },
    atLeast: true,
    bound: 1.2,
    text: "≥ 1.2× classic-level",
  },
  {
    lines: ["scan"],
    against: { kind: "peer", peer: "lmdb" },
    atLeast: true,
    bound: 1.5,
    text: "≥ 1.5× lmdb",
  },
  {
    lines: ["prefix"],
    onlyAt: MILLION,
    against: { kind: "peer", peer: "lmdb" },
    atLeast: true,
    bound: 1,
    text: "≥ lmdb at 1M",
  },
  {
    lines: ["durable"],
    against: { kind: "peer", peer: "raw" },
    atLeast: true,
    bound: 0.9,
    text: "≥ 0.9× raw fsync loop",
  },
  {
    lines: ["nonDurable"],
    against: { kind: "absolute", unit: "/s" },
    atLeast: true,
    bound: 500_000,
    text: "≥ 500,000/s",
  },
  {
    lines: ["reopenFirst", "reopenSteady", "reopenMmap"],
    onlyAt: MILLION,
    against: { kind: "absolute", unit: " ms" },
    atLeast: false,
    bound: 500,
    text: "≤ 0.5 s at 1M",
  },
  {
    lines: ["sizeAllocated"],
    onlyAt: MILLION,
    against: { kind: "rawData" },
    atLeast: false,
    bound: 1.3,
    text: "≤ 1.3× raw data at 1M",
  },
  {
    lines: ["rss", "rssAboveHarness"],
    onlyAt: MILLION,
    against: { kind: "peer", peer: "map" },
    atLeast: false,
    bound: 1.3,
    text: "≤ 1.3× Map at 1M",
  },
];

function fmt(x: number): string {
  if (x >= 100) return Math.round(x).toLocaleString("en-US");
  return x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

function describeOutcome(
  def: TargetDef,
  value: number | undefined,
): { met: boolean | undefined; summary: string } {
  if (value === undefined || !Number.isFinite(value))
    return { met: undefined, summary: `${def.text}: no figure` };
  const shown =
    def.against.kind === "absolute" ? `${fmt(value)}${def.against.unit}` : `${fmt(value)}×`;
  const met = def.atLeast ? value >= def.bound : value <= def.bound;
  if (met) return { met, summary: `${def.text}: met (${shown})` };
  // How far off: the share of the goal still missing, or the excess over the cap.
  const by = def.atLeast ? (1 - value / def.bound) * 100 : (value / def.bound - 1) * 100;
  const how = def.atLeast ? `${by.toFixed(0)}% short` : `${by.toFixed(0)}% over`;
  return { met, summary: `${def.text}: MISSED (${shown}, ${how})` };
}

/** Evaluates every target that applies at each measured size. */
export function evaluateTargets(
  medians: Medians,
  records: Record<string, Partial<Record<EngineName, number>>>,
): TargetOutcome[] {
  const out: TargetOutcome[] = [];
  for (const nKey of Object.keys(medians)) {
    const n = Number(nKey);
    for (const def of TARGETS) {
      if (def.onlyAt !== undefined && def.onlyAt !== n) continue;
      for (const line of def.lines) {
        const row = medians[nKey]?.[line];
        const emdb = row?.emdb;
        let value: number | undefined;
        if (emdb !== undefined) {
          if (def.against.kind === "absolute") value = emdb;
          else if (def.against.kind === "rawData") {
            const recs = records[nKey]?.emdb;
            value = recs === undefined ? undefined : (emdb * 2 ** 20) / (recs * RECORD_BYTES);
          } else {
            // A variant line (bulkManual) is compared with the peers' headline figures.
            const peerLine = LINES.find((l) => l.id === line)?.peersFrom ?? line;
            const peer = medians[nKey]?.[peerLine]?.[def.against.peer];
            value = peer === undefined ? undefined : emdb / peer;
          }
        }
        const { met, summary } = describeOutcome(def, value);
        out.push({ n, line, text: def.text, value, bound: def.bound, met, summary });
      }
    }
  }
  return out;
}
