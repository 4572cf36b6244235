/**
 * Entry point of every measuring child process. One process per engine × size × run (and
 * per reopen), so no engine's heap, JIT state or page-cache warm-up leaks into another's
 * figures. Prints one line, `@@bench <json>`, which the runner parses; anything else an
 * engine prints passes through untouched.
 *
 *   child.ts load   --engine E --n N --dir D [--variant V] [--bulk-only] [--bench-time MS]
 *   child.ts reopen --engine E --n N --dir D [--variant V]
 *   child.ts fsync  --dir D --count C
 */
import { parseArgs } from "node:util";
import { loadEngine } from "./adapters/index.js";
import type { EngineName } from "./engine.js";
import { runLoad } from "./load-task.js";
import { isPromise, nowMs, peakRss, rawFsyncLoop } from "./measure.js";
import { keyOf, prefixBounds, RECORD_BYTES, SEED_VALUES, valueAt } from "./workload.js";

const RESULT_TAG = "@@bench ";

function emit(result: unknown): void {
  process.stdout.write(`\n${RESULT_TAG}${JSON.stringify(result)}\n`);
}

async function reopen(
  name: EngineName,
  n: number,
  dir: string,
  variant: string | undefined,
): Promise<void> {
  const loaded = await loadEngine(name);
  if (!loaded.ok) return emit({ skipped: loaded.reason });
  const engine = loaded.module.create(variant);
  if (engine.reopenAndGet === undefined) throw new Error(`${name} cannot reopen`);
  // The key and its expected value are computed before the clock starts.
  const i = prefixBounds(n).first;
  const key = engine.key(keyOf(i));
  const expected = valueAt(i, SEED_VALUES);
  const t0 = nowMs();
  const r = engine.reopenAndGet(dir, key);
  const value = isPromise(r) ? await r : r;
  const ms = nowMs() - t0;
  if (value === undefined || !expected.equals(value)) {
    throw new Error(`${name}: reopened store returned a wrong value for key ${i}`);
  }
  const rss = peakRss() / 2 ** 20;
  const closed = engine.closeReopened?.();
  if (isPromise(closed)) await closed;
  emit({ ms, rss });
}

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      engine: { type: "string" },
      n: { type: "string" },
      dir: { type: "string" },
      variant: { type: "string" },
      "bulk-only": { type: "boolean", default: false },
      "bench-time": { type: "string", default: "1000" },
      count: { type: "string", default: "2000" },
    },
  });
  const task = positionals[0];
  const dir = values.dir;
  if (dir === undefined) throw new Error("--dir is required");
  if (task === "fsync") {
    return emit({ rate: rawFsyncLoop(dir, Number(values.count), RECORD_BYTES) });
  }
  const name = values.engine as EngineName;
  const n = Number(values.n);
  if (task === "reopen") return reopen(name, n, dir, values.variant);
  if (task !== "load") throw new Error(`unknown task ${String(task)}`);
  const loaded = await loadEngine(name);
  if (!loaded.ok) return emit({ skipped: loaded.reason });
  const about = loaded.module.create(values.variant);
  const sample = await runLoad(loaded.module, {
    n,
    dir,
    variant: values.variant,
    bulkOnly: values["bulk-only"] === true,
    benchTimeMs: Number(values["bench-time"]),
  });
  emit({
    ...sample,
    persistent: about.persistent,
    describe: about.describe,
    variants: loaded.module.bulkVariants ?? {},
    reopenVariants: loaded.module.reopenVariants ?? {},
  });
}

main().catch((err: unknown) => {
  const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
  process.stderr.write(`${message}\n`);
  emit({ error: message.split("\n")[0] });
  process.exitCode = 1;
});
