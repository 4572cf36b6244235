/**
 * `npm run bench` (full: 100k and 1M, 3 runs) and `npm run bench -- --quick` (10k, 1 run).
 * Prints the markdown report; writes bench/results/<timestamp>.json and ratios.svg.
 *
 *   --quick              every line at a small size, once (quick files get a -quick suffix)
 *   --sizes 100000,...   record counts        --runs 3         runs per engine and size
 *   --engines emdb,map   a subset of engines  --out DIR        results directory
 *   --no-write           print only
 *   --render FILE.json   no measuring: re-render a results file's report and ratios.svg
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ENGINE_NAMES, type EngineName } from "./engine.js";
import { renderMarkdown } from "./report.js";
import type { ResultsJson, RunOptions } from "./results.js";
import { FULL, QUICK, runBench, writeResults } from "./run.js";
import { renderSvg } from "./svg.js";

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    sizes: { type: "string" },
    runs: { type: "string" },
    engines: { type: "string" },
    out: { type: "string" },
    "no-write": { type: "boolean", default: false },
    render: { type: "string" },
  },
});

if (values.render !== undefined) {
  const results = JSON.parse(fs.readFileSync(values.render, "utf8")) as ResultsJson;
  process.stdout.write(renderMarkdown(results));
  const svg = path.join(
    path.dirname(values.render),
    results.options.quick ? "ratios-quick.svg" : "ratios.svg",
  );
  fs.writeFileSync(svg, renderSvg(results));
  process.stderr.write(`wrote ${svg}\n`);
  process.exit(0);
}

const base = values.quick === true ? QUICK : FULL;
const engines = (values.engines?.split(",") ?? base.engines) as EngineName[];
for (const e of engines) {
  if (!ENGINE_NAMES.includes(e))
    throw new Error(`unknown engine ${e}; known: ${ENGINE_NAMES.join(", ")}`);
}
if (!engines.includes("emdb")) throw new Error("the suite measures emdb against peers: keep emdb");
const options: RunOptions = {
  ...base,
  engines,
  sizes: values.sizes?.split(",").map(Number) ?? base.sizes,
  runs: values.runs === undefined ? base.runs : Number(values.runs),
};

const t0 = Date.now();
const results = await runBench(options, { log: (line) => process.stderr.write(`${line}\n`) });
process.stdout.write(results.markdown);
if (values["no-write"] !== true) {
  const dir = values.out ?? path.join(path.dirname(fileURLToPath(import.meta.url)), "results");
  for (const f of writeResults(results, dir)) process.stderr.write(`wrote ${f}\n`);
}
process.stderr.write(`done in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
