/**
 * The markdown report: one row per line and size, each engine's median, emdb's ratio to each
 * peer (emdb ÷ peer: above 1 is better for rates, below 1 for ms and MiB), and the targets.
 */
import { ENGINE_NAMES, type EngineName } from "./engine.js";
import { LINES, type LineDef, MAP_HAS_NO } from "./lines.js";
import type { Column, ResultsJson } from "./results.js";

export const DISPLAY: Record<Column, string> = {
  emdb: "emdb",
  lmdb: "lmdb",
  "classic-level": "classic-level",
  sqlite: "sqlite",
  map: "Map",
  raw: "raw fsync",
};

const PEERS: readonly EngineName[] = ENGINE_NAMES.filter((e) => e !== "emdb");

/** Rates in k/M with three significant digits; ms and MiB with the line's decimals. */
export function formatFigure(x: number, def: LineDef): string {
  if (!def.unit.endsWith("/s")) return x.toFixed(def.digits);
  const sig = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
  if (x >= 1e6) return `${sig(x / 1e6)}M`;
  if (x >= 1e3) return `${sig(x / 1e3)}k`;
  return sig(x);
}

export function formatRatio(r: number): string {
  return r >= 100 ? `${r.toFixed(0)}×` : r >= 10 ? `${r.toFixed(1)}×` : `${r.toFixed(2)}×`;
}

function sizeLabel(n: number): string {
  return n >= 1e6 && n % 1e6 === 0
    ? `${n / 1e6}M`
    : n >= 1e3 && n % 1e3 === 0
      ? `${n / 1e3}k`
      : String(n);
}

/** Why a cell is empty: the engine was skipped, failed, or has no such line. */
function missing(res: ResultsJson, engine: EngineName, line: LineDef): string {
  const info = res.engines[engine];
  if (info?.status === "skipped") return "skipped";
  if (info?.status === "failed") return "failed";
  if (engine === "map" && MAP_HAS_NO.has(line.id)) return "n/a";
  return "—";
}

export function renderTable(res: ResultsJson): string {
  const engines = ENGINE_NAMES;
  const head = [
    "line",
    "N",
    "unit",
    ...engines.map((e) => DISPLAY[e]),
    DISPLAY.raw,
    ...PEERS.map((p) => `emdb÷${DISPLAY[p]}`),
    "target",
  ];
  const rows: string[][] = [];
  for (const n of res.options.sizes) {
    const byLine = res.medians[String(n)] ?? {};
    for (const def of LINES) {
      const row = byLine[def.id] ?? {};
      const peerRow = def.peersFrom !== undefined ? (byLine[def.peersFrom] ?? {}) : row;
      const emdb = row.emdb;
      const cells = [def.label, sizeLabel(n), def.unit];
      for (const e of engines) {
        const v = e === "emdb" ? emdb : peerRow[e];
        cells.push(v === undefined ? missing(res, e, def) : formatFigure(v, def));
      }
      const raw = row.raw;
      cells.push(raw === undefined ? "" : formatFigure(raw, def));
      for (const p of PEERS) {
        const v = peerRow[p];
        cells.push(emdb === undefined || v === undefined || v === 0 ? "" : formatRatio(emdb / v));
      }
      const targets = res.targets.filter((t) => t.n === n && t.line === def.id);
      cells.push(targets.map((t) => t.summary).join("; "));
      rows.push(cells);
    }
  }
  const line = (cells: string[]) => `| ${cells.map((c) => c.replaceAll("|", "\\|")).join(" | ")} |`;
  return [line(head), line(head.map(() => "---")), ...rows.map(line)].join("\n");
}

function renderNotes(res: ResultsJson): string {
  const out: string[] = [];
  const o = res.options;
  out.push(
    `Medians of ${o.runs} run(s); every engine × size × run in a fresh child process (\`--expose-gc\`, GC before each timed phase); ` +
      `reopen = open + one get in a fresh child, import excluded, page cache warm, "steady" = median of ${o.steadyReopens} more opens. ` +
      `Point reads and prefix scans are sampled by tinybench (${o.benchTimeMs} ms budget and at least one pass over all keys; rate from the median sample); ` +
      `the bulk load, full scan and commit loops are one-shot phases timed with process.hrtime.bigint(). ` +
      `Ratios are emdb ÷ peer: above 1× is better for rates, below 1× for ms and MiB.`,
  );
  const met = res.targets.filter((t) => t.met === true).length;
  const missed = res.targets.filter((t) => t.met === false);
  out.push(
    `\n**Targets:** ${met} met, ${missed.length} missed, ${res.targets.length - met - missed.length} without a figure.`,
  );
  for (const t of missed) out.push(`- ${sizeLabel(t.n)} · ${t.line}: ${t.summary}`);
  out.push("\n**Engines:**");
  for (const e of ENGINE_NAMES) {
    const info = res.engines[e];
    if (info === undefined) continue;
    if (info.status !== "measured") {
      out.push(`- ${DISPLAY[e]}: **${info.status}**: ${info.reason ?? ""}`);
      continue;
    }
    const how = [
      ...Object.entries(info.describe ?? {}),
      ...Object.entries(info.variants ?? {}).map(([k, v]) => [`variant ${k}`, v]),
    ]
      .map(([k, v]) => `${k}: ${v}`)
      .join("; ");
    out.push(`- ${DISPLAY[e]} (${res.meta.packages[e] ?? "?"}): ${how}`);
  }
  for (const f of res.failures) {
    out.push(
      `- failure: ${DISPLAY[f.engine]} ${f.task} at N=${f.n}, run ${f.run}: ${f.error.split("\n")[0]}`,
    );
  }
  const harness = Object.entries(res.harnessRss).map(
    ([n, byEngine]) =>
      `${sizeLabel(Number(n))}: ${Math.round(byEngine.map ?? byEngine.emdb ?? 0)} MiB`,
  );
  out.push(
    `\nHarness RSS before any engine opens (workload in memory, included in every peak RSS): ${harness.join(", ")}.`,
  );
  out.push(
    `Machine: ${res.meta.cpus} × ${res.meta.cpuCount}, ${res.meta.memoryGiB} GiB, Node ${res.meta.node} (V8 ${res.meta.v8}), ${res.meta.platform}. emdb at ${res.meta.emdbCommit ?? "an unrecorded commit"}; ${res.meta.packages.tinybench ?? "tinybench ?"}.`,
  );
  return out.join("\n");
}

export function renderMarkdown(res: ResultsJson): string {
  return `${renderTable(res)}\n\n${renderNotes(res)}\n`;
}
