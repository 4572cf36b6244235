/**
 * The lines of the report: what each measures, its unit, which way is better and how it is
 * timed. Kept apart from the runner so the report, the chart and the test share one list.
 */

export type LineId =
  | "bulk"
  | "bulkManual"
  | "reads"
  | "scan"
  | "prefix"
  | "durable"
  | "nonDurable"
  | "reopenFirst"
  | "reopenSteady"
  | "sizeAllocated"
  | "sizeApparent"
  | "rss"
  | "rssReopen";

export interface LineDef {
  id: LineId;
  label: string;
  unit: string;
  higherIsBetter: boolean;
  /** Decimal places for the figure. */
  digits: number;
  /** Peers are compared on this line's figures instead (a variant of emdb only). */
  peersFrom?: LineId;
}

export const LINES: readonly LineDef[] = [
  {
    id: "bulk",
    label: "bulk insert, 1 durable txn, shuffled",
    unit: "rec/s",
    higherIsBetter: true,
    digits: 0,
  },
  {
    id: "bulkManual",
    label: "bulk insert, emdb manual()+flush() (peers: as above)",
    unit: "rec/s",
    higherIsBetter: true,
    digits: 0,
    peersFrom: "bulk",
  },
  {
    id: "reads",
    label: "point reads, 2nd random permutation",
    unit: "rec/s",
    higherIsBetter: true,
    digits: 0,
  },
  {
    id: "scan",
    label: "full ordered scan (count + order checked)",
    unit: "rec/s",
    higherIsBetter: true,
    digits: 0,
  },
  {
    id: "prefix",
    label: "prefix scan, 100 keys (range gte/lt, limit 100)",
    unit: "scans/s",
    higherIsBetter: true,
    digits: 0,
  },
  {
    id: "durable",
    label: "durable 1-record commits (2,000 new keys)",
    unit: "commits/s",
    higherIsBetter: true,
    digits: 0,
  },
  {
    id: "nonDurable",
    label: "non-durable puts (emdb everyN(64); 20,000 new keys)",
    unit: "puts/s",
    higherIsBetter: true,
    digits: 0,
  },
  {
    id: "reopenFirst",
    label: "reopen + 1 get, first after load (fresh child)",
    unit: "ms",
    higherIsBetter: false,
    digits: 1,
  },
  {
    id: "reopenSteady",
    label: "reopen + 1 get, steady (median of next opens)",
    unit: "ms",
    higherIsBetter: false,
    digits: 1,
  },
  {
    id: "sizeAllocated",
    label: "files after close, allocated (st_blocks×512)",
    unit: "MiB",
    higherIsBetter: false,
    digits: 1,
  },
  {
    id: "sizeApparent",
    label: "files after close, apparent (st_size)",
    unit: "MiB",
    higherIsBetter: false,
    digits: 1,
  },
  {
    id: "rss",
    label: "peak RSS of the load child (before any reopen)",
    unit: "MiB",
    higherIsBetter: false,
    digits: 0,
  },
  {
    id: "rssReopen",
    label: "peak RSS of the reopen child (first open)",
    unit: "MiB",
    higherIsBetter: false,
    digits: 0,
  },
];

export function lineDef(id: LineId): LineDef {
  const def = LINES.find((l) => l.id === id);
  if (def === undefined) throw new Error(`unknown line ${id}`);
  return def;
}

/** Lines the Map ceiling has no figure for: it is neither durable nor on disk. */
export const MAP_HAS_NO: ReadonlySet<LineId> = new Set<LineId>([
  "durable",
  "reopenFirst",
  "reopenSteady",
  "sizeAllocated",
  "sizeApparent",
  "rssReopen",
]);

/** The figures one child measured, by line. */
export type Figures = Partial<Record<LineId, number>>;
