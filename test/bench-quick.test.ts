/**
 * The benchmark suite end to end at a tiny size: every line must come out with a figure for
 * emdb and for the Map ceiling (n/a where a Map has no such thing), positive except where
 * 0 is legitimate (`MAY_BE_ZERO`). Timings and
 * ratios are never asserted: they depend on the machine, and this test only guards the
 * suite against rotting.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { ENGINE_NAMES } from "../bench/engine.js";
import { LINES, MAP_HAS_NO } from "../bench/lines.js";
import { DISPLAY } from "../bench/report.js";
import { QUICK, runBench } from "../bench/run.js";

/** A non-negative figure as the report prints it; a negative one is "not a figure". */
const FIGURE = /^(\d+(?:\.\d+)?)(k|M)?$/;

/**
 * Lines that may legitimately be 0 at this size: the peak RSS above the harness's own is a
 * difference, and an engine that holds 2,000 records may not raise the peak at all.
 */
const MAY_BE_ZERO = new Set<string>(["rssAboveHarness"]);

function positive(cell: string | undefined, where: string, line: string): void {
  const m = FIGURE.exec(cell ?? "");
  assert.ok(m !== null, `${where}: "${cell}" is not a figure`);
  const v = Number(m[1]);
  if (!MAY_BE_ZERO.has(line)) assert.ok(v > 0, `${where}: ${cell} is not positive`);
}

test("bench --quick at N = 2,000 reports every line for emdb and Map", {
  timeout: 120_000,
}, async () => {
  const results = await runBench(
    { ...QUICK, sizes: [2_000], runs: 1, steadyReopens: 1, benchTimeMs: 20, fsyncCount: 50 },
    { log: () => {} },
  );
  assert.deepEqual(results.failures, [], "no child failed");
  assert.equal(results.engines.emdb?.status, "measured");
  assert.equal(results.engines.map?.status, "measured");

  const rows = results.markdown
    .split("\n")
    .filter((l) => l.startsWith("| "))
    .map((l) => l.slice(2, -2).split(" | "));
  const head = rows[0]!;
  const col = (name: string) => head.indexOf(name);
  for (const def of LINES) {
    const row = rows.find((r) => r[0] === def.label);
    assert.ok(row !== undefined, `the table has the line "${def.label}"`);
    assert.equal(row[1], "2k");
    positive(row[col("emdb")], `emdb · ${def.id}`, def.id);
    if (MAP_HAS_NO.has(def.id)) assert.equal(row[col("Map")], "n/a", `Map · ${def.id}`);
    else positive(row[col("Map")], `Map · ${def.id}`, def.id);
    // Peers that loaded must give a figure wherever they show one.
    for (const e of ENGINE_NAMES) {
      const cell = row[col(DISPLAY[e])];
      if (cell === "skipped" || cell === "n/a") continue;
      positive(cell, `${e} · ${def.id}`, def.id);
    }
    if (def.id === "durable") positive(row[col(DISPLAY.raw)], "raw fsync loop", def.id);
  }
  const medians = Object.entries(results.medians["2000"] ?? {});
  assert.ok(medians.length > 0, "the results hold medians at 2k");
  for (const [line, byEngine] of medians) {
    for (const [engine, v] of Object.entries(byEngine)) {
      assert.ok(MAY_BE_ZERO.has(line) ? v >= 0 : v > 0, `${engine} · ${line}: ${v}`);
    }
  }
});
