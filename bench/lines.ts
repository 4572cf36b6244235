/**
 * The lines of the report: what each measures, its unit, which way is better. Kept apart
 * from the runner so the report, the chart, the targets and the test share one list; a
 * Record keyed by LineId makes the compiler refuse a line without a definition.
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
  | "reopenMmap"
  | "sizeAllocated"
  | "sizeApparent"
  | "rss"
  | "rssAboveHarness"
  | "rssReopen";

export interface LineDef {
  id: LineId;
  label: string;
  /** For the chart, where the full label does not fit. */
  short: string;
  unit: string;
  higherIsBetter: boolean;
  /** Decimal places for ms and MiB figures. */
  digits: number;
  /** Peers are compared on this line's figures instead (a variant of emdb only). */
  peersFrom?: LineId;
}

const rate = (label: string, short: string, unit = "rec/s") => ({
  label,
  short,
  unit,
  higherIsBetter: true,
  digits: 0,
});
const cost = (label: string, short: string, unit: string, digits: number) => ({
  label,
  short,
  unit,
  higherIsBetter: false,
  digits,
});

/** In report order. */
const DEFS: Record<LineId, Omit<LineDef, "id">> = {
  bulk: rate("bulk insert, 1 durable txn, shuffled", "bulk insert, 1 txn"),
  bulkManual: {
    ...rate("bulk insert, emdb manual()+flush() (peers: as above)", "bulk, emdb manual()+flush()"),
    peersFrom: "bulk",
  },
  reads: rate("point reads, 2nd random permutation", "point reads"),
  scan: rate("full ordered scan (count + order checked)", "full ordered scan"),
  prefix: rate("prefix scan, 100 keys (range gte/lt, limit 100)", "prefix scan of 100", "scans/s"),
  durable: rate("durable 1-record commits (2,000 new keys)", "durable 1-rec commits", "commits/s"),
  nonDurable: rate(
    "non-durable puts (emdb everyN(64); 20,000 new keys)",
    "non-durable puts",
    "puts/s",
  ),
  reopenFirst: cost("reopen + 1 get, first after load (fresh child)", "reopen, first", "ms", 1),
  reopenSteady: cost("reopen + 1 get, steady (median of next opens)", "reopen, steady", "ms", 1),
  reopenMmap: {
    ...cost(
      "reopen + 1 get, emdb useMmap(true), steady (peers: as above)",
      "reopen, emdb useMmap(true)",
      "ms",
      1,
    ),
    peersFrom: "reopenSteady",
  },
  sizeAllocated: cost(
    "files after close, allocated (st_blocks×512)",
    "file size, allocated",
    "MiB",
    1,
  ),
  sizeApparent: cost("files after close, apparent (st_size)", "file size, apparent", "MiB", 1),
  rss: cost("peak RSS of the load child (before any reopen)", "peak RSS, load child", "MiB", 0),
  rssAboveHarness: cost(
    "peak RSS above the harness's own (peak − harness)",
    "peak RSS above harness",
    "MiB",
    0,
  ),
  rssReopen: cost("peak RSS of the reopen child (first open)", "peak RSS, reopen child", "MiB", 0),
};

export const LINES: readonly LineDef[] = Object.entries(DEFS).map(([id, def]) => ({
  id: id as LineId,
  ...def,
}));

/** Lines the Map ceiling has no figure for: it is neither durable nor on disk. */
export const MAP_HAS_NO: ReadonlySet<LineId> = new Set<LineId>([
  "durable",
  "reopenFirst",
  "reopenSteady",
  "reopenMmap",
  "sizeAllocated",
  "sizeApparent",
  "rssReopen",
]);

/** The figures one child measured, by line. */
export type Figures = Partial<Record<LineId, number>>;
