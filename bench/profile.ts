/**
 * CPU profile of one line for one engine (emdb by default), for finding where a missed
 * target's time goes. The setup (workload, bulk load for the read lines) runs unprofiled;
 * the V8 sampling profiler — the one `node --cpu-prof` drives — is started through
 * node:inspector around that line's phase only, so the profile holds nothing else.
 *
 *   node --expose-gc --import tsx bench/profile.ts --line reads --n 1000000 [--engine emdb] [--out DIR]
 *
 * Lines: bulk, bulkManual, reads, scan, prefix, durable, nonDurable, reopen. Writes
 * <line>-<engine>-<n>.cpuprofile (open it in Chrome DevTools) and prints the top self times.
 */
import * as fs from "node:fs";
import { Session } from "node:inspector/promises";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { loadEngine } from "./adapters/index.js";
import { type CpuProfile, formatRow, topSelfTimes } from "./cpuprofile.js";
import type { EngineName } from "./engine.js";
import { preparePuts, timeBulk, timePrefix, timeReads, timeScan } from "./load-task.js";
import { heapFence, isPromise, nowMs, settleHeap } from "./measure.js";
import { buildWorkload } from "./workload.js";

const { values } = parseArgs({
  options: {
    line: { type: "string", default: "reads" },
    engine: { type: "string", default: "emdb" },
    n: { type: "string", default: "1000000" },
    out: { type: "string", default: "." },
    top: { type: "string", default: "10" },
  },
});
const line = values.line;
const n = Number(values.n);
const loaded = await loadEngine(values.engine as EngineName);
if (!loaded.ok) throw new Error(loaded.reason);
const engine = loaded.module.create(line === "bulkManual" ? "manual" : undefined);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-profile-"));
const wl = buildWorkload(n, true);
const keys = wl.keys.map((k) => engine.key(k));
const wait = async (x: unknown) => {
  if (isPromise(x as Promise<unknown>)) await x;
};

const session = new Session();
session.connect();
await session.post("Profiler.enable");
await session.post("Profiler.setSamplingInterval", { interval: 100 });

let figure = 0;
let profile: CpuProfile;
try {
  await wait(engine.open(dir));
  const run = async (phase: () => Promise<number>) => {
    // Collect the setup's garbage now, unprofiled, and keep the phase's own fence quiet:
    // two full collections of a 1 GB heap would otherwise dominate the profile.
    settleHeap();
    heapFence.enabled = false;
    await session.post("Profiler.start");
    const t0 = nowMs();
    figure = await phase();
    const ms = nowMs() - t0;
    profile = (await session.post("Profiler.stop")).profile as CpuProfile;
    process.stderr.write(`${line}: ${figure.toFixed(1)} (phase ${ms.toFixed(0)} ms)\n`);
  };
  if (line === "bulk" || line === "bulkManual") await run(() => timeBulk(engine, wl, keys));
  else {
    await timeBulk(engine, wl, keys);
    if (line === "reads") await run(async () => (await timeReads(engine, wl, keys, 1000)).rate);
    else if (line === "scan") await run(() => timeScan(engine, n));
    else if (line === "prefix") await run(async () => (await timePrefix(engine, wl, 1000)).rate);
    else if (line === "durable" || line === "nonDurable") {
      const puts = await preparePuts(engine, line, wl, keys);
      if (puts === undefined) throw new Error(`${engine.name} has no ${line} put`);
      await run(puts.time);
    } else if (line === "reopen") {
      await wait(engine.close());
      const key = keys[wl.prefixFirst];
      await run(async () => {
        const t0 = nowMs();
        await wait(engine.reopenAndGet?.(dir, key));
        return nowMs() - t0;
      });
      await wait(engine.closeReopened?.());
    } else throw new Error(`unknown line ${line}`);
  }
  await wait(engine.close());
} finally {
  session.disconnect();
  fs.rmSync(dir, { recursive: true, force: true });
}

const file = path.join(values.out, `${line}-${engine.name}-${n}.cpuprofile`);
fs.mkdirSync(values.out, { recursive: true });
fs.writeFileSync(file, JSON.stringify(profile!));
process.stdout.write(`wrote ${file}\n`);
for (const row of topSelfTimes(profile!, Number(values.top))) process.stdout.write(formatRow(row));
