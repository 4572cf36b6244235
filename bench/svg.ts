/**
 * A hand-written SVG bar chart of emdb's advantage over each peer at the largest size:
 * emdb ÷ peer for rates, peer ÷ emdb for ms and MiB, so a bar right of 1× always means emdb
 * is ahead. Log scale, because the ratios span from well under 1× to tens of ×.
 */
import { ENGINE_NAMES, type EngineName } from "./engine.js";
import { LINES } from "./lines.js";
import { DISPLAY, formatRatio } from "./report.js";
import type { Column, ResultsJson } from "./results.js";
import { TARGETS } from "./targets.js";

const COLORS: Record<Column, string> = {
  emdb: "#333",
  lmdb: "#4e79a7",
  "classic-level": "#f28e2b",
  sqlite: "#59a14f",
  map: "#b07aa1",
  raw: "#9c755f",
};

const W = 960;
const LABEL_W = 230;
const RIGHT_PAD = 70;
/** Room left of the axis for the value labels of bars that point left. */
const PLOT_X = LABEL_W + 50;
/** The axis spans at most 2^-8 … 2^8. */
const MAX_EXP = 8;
const BAR_H = 13;
const GROUP_GAP = 12;
const TOP = 64;

function esc(s: string): string {
  return s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

/** Powers of two: 1/8×, 1/2×, 1×, 4×… (decimals of 2^-k read badly). */
function tick(e: number): string {
  return e >= 0 ? `${2 ** e}×` : `1/${2 ** -e}×`;
}

/** 0.002× reads badly; "1/480×" says emdb is 480 times behind. */
function advantageLabel(a: number): string {
  return a >= 1 ? formatRatio(a) : `1/${formatRatio(1 / a)}`;
}

interface Bar {
  peer: Column;
  advantage: number;
  /** The target bound expressed as an advantage, when a target compares with this peer. */
  target: number | undefined;
}

export function renderSvg(res: ResultsJson): string {
  const n = Math.max(...res.options.sizes);
  const byLine = res.medians[String(n)] ?? {};
  const peers: Column[] = [...ENGINE_NAMES.filter((e): e is EngineName => e !== "emdb"), "raw"];
  const groups: { label: string; bars: Bar[] }[] = [];
  for (const def of LINES) {
    const emdb = byLine[def.id]?.emdb;
    if (emdb === undefined) continue;
    const peerRow = byLine[def.peersFrom ?? def.id] ?? {};
    const bars: Bar[] = [];
    for (const p of peers) {
      const v = p === "raw" ? byLine[def.id]?.raw : peerRow[p];
      if (v === undefined || v <= 0 || emdb <= 0) continue;
      const t = TARGETS.find(
        (t) =>
          t.lines.includes(def.id) &&
          t.against.kind === "peer" &&
          t.against.peer === p &&
          (t.onlyAt === undefined || t.onlyAt === n),
      );
      bars.push({
        peer: p,
        advantage: def.higherIsBetter ? emdb / v : v / emdb,
        target: t === undefined ? undefined : def.higherIsBetter ? t.bound : 1 / t.bound,
      });
    }
    if (bars.length > 0) groups.push({ label: `${def.short} (${def.unit})`, bars });
  }

  const all = groups.flatMap((g) => g.bars.flatMap((b) => [b.advantage, b.target ?? 1]));
  // Clamped, so one extreme ratio (the Map's O(n) prefix scan) does not squash the rest;
  // bars beyond the edge stop there and their label still gives the true figure.
  const lo = Math.max(-MAX_EXP, Math.floor(Math.log2(Math.min(0.5, ...all))));
  const hi = Math.min(MAX_EXP, Math.ceil(Math.log2(Math.max(2, ...all))));
  const plotW = W - PLOT_X - RIGHT_PAD;
  const x = (r: number) =>
    PLOT_X + ((Math.min(hi, Math.max(lo, Math.log2(r))) - lo) / (hi - lo)) * plotW;
  const height = TOP + groups.reduce((h, g) => h + g.bars.length * BAR_H + GROUP_GAP, 0) + 30;

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}" font-family="sans-serif" font-size="11">`,
  );
  out.push(`<rect width="${W}" height="${height}" fill="#fff"/>`);
  out.push(
    `<text x="10" y="18" font-size="14" font-weight="bold">${esc(`emdb's advantage over each peer at N = ${n.toLocaleString("en-US")} (right of 1× = emdb ahead; log scale)`)}</text>`,
  );
  let lx = 10;
  for (const p of peers) {
    out.push(`<rect x="${lx}" y="30" width="10" height="10" fill="${COLORS[p]}"/>`);
    out.push(`<text x="${lx + 14}" y="39">${esc(DISPLAY[p])}</text>`);
    lx += 24 + DISPLAY[p].length * 7;
  }
  out.push(`<text x="${lx + 10}" y="39">▮ black tick = target</text>`);
  // Every tick gets a grid line; labels only as densely as they fit.
  const labelEvery = Math.max(1, Math.ceil(48 / (plotW / (hi - lo))));
  for (let e = lo; e <= hi; e++) {
    const gx = x(2 ** e);
    out.push(
      `<line x1="${gx.toFixed(1)}" y1="${TOP - 6}" x2="${gx.toFixed(1)}" y2="${height - 24}" stroke="${e === 0 ? "#000" : "#ddd"}"/>`,
    );
    if (e % labelEvery === 0) {
      out.push(
        `<text x="${gx.toFixed(1)}" y="${height - 10}" text-anchor="middle">${esc(tick(e))}</text>`,
      );
    }
  }
  let y = TOP;
  for (const g of groups) {
    out.push(
      `<text x="${LABEL_W - 8}" y="${y + BAR_H - 3}" text-anchor="end">${esc(g.label)}</text>`,
    );
    for (const b of g.bars) {
      const x0 = x(1);
      const x1 = x(b.advantage);
      const left = Math.min(x0, x1);
      out.push(
        `<rect x="${left.toFixed(1)}" y="${y + 1}" width="${Math.max(1, Math.abs(x1 - x0)).toFixed(1)}" height="${BAR_H - 2}" fill="${COLORS[b.peer]}"><title>${esc(`${DISPLAY[b.peer]}: ${advantageLabel(b.advantage)}`)}</title></rect>`,
      );
      const tx = x1 >= x0 ? x1 + 3 : x1 - 3;
      out.push(
        `<text x="${tx.toFixed(1)}" y="${y + BAR_H - 3}" text-anchor="${x1 >= x0 ? "start" : "end"}" font-size="10">${esc(advantageLabel(b.advantage))}</text>`,
      );
      if (b.target !== undefined) {
        const tx2 = x(b.target);
        out.push(
          `<line x1="${tx2.toFixed(1)}" y1="${y}" x2="${tx2.toFixed(1)}" y2="${y + BAR_H}" stroke="#000" stroke-width="2"/>`,
        );
      }
      y += BAR_H;
    }
    y += GROUP_GAP;
  }
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}
