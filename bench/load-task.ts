/**
 * One engine, one size, one run, in its own child process: build the store, then time each
 * line in turn on it. Point reads and prefix scans repeat cheaply, so tinybench samples them
 * and the median sample gives the rate. The bulk load, the full scan and the commit loops are
 * one-shot phases (a bulk load cannot be repeated without rebuilding the store, a scan of 1M
 * takes seconds): they are timed once with process.hrtime.bigint(), and the repetition comes
 * from the separate runs whose medians the report shows.
 */
import { Bench } from "tinybench";
import type { Engine, EngineModule, WritePhase } from "./engine.js";
import type { Figures } from "./lines.js";
import { diskSize, isPromise, nowMs, peakRss, settleHeap } from "./measure.js";
import {
  buildWorkload,
  DURABLE_PUTS,
  NON_DURABLE_PUTS,
  PREFIX_LIMIT,
  VALUE_BYTES,
  type Workload,
} from "./workload.js";

export interface LoadOptions {
  n: number;
  dir: string;
  variant: string | undefined;
  /** Only the bulk load (a variant's child): no reads, scans or puts. */
  bulkOnly: boolean;
  /** tinybench time budget per task, ms (it also runs at least one pass over the keys). */
  benchTimeMs: number;
}

export interface LoadSample {
  figures: Figures;
  /** Records in the store when it was closed: the unit of "raw data" for the size line. */
  records: number;
  /** RSS (MiB) after the workload was generated, before the engine opened: the harness's share. */
  harnessRss: number;
  /** tinybench relative margin of error (%) of the sampled lines. */
  rme: Record<string, number>;
}

const READ_BATCH = 1000;
const MiB = 2 ** 20;

function fail(engine: Engine, what: string): never {
  throw new Error(`${engine.name}: ${what}`);
}

export async function timeBulk(engine: Engine, wl: Workload, keys: unknown[]): Promise<number> {
  const order = wl.insertOrder;
  const k = new Array<unknown>(wl.n);
  const v = new Array<Buffer>(wl.n);
  for (let i = 0; i < wl.n; i++) {
    k[i] = keys[order[i]!];
    v[i] = wl.values[order[i]!]!;
  }
  settleHeap();
  const t0 = nowMs();
  const r = engine.bulkInsert(k, v);
  if (isPromise(r)) await r;
  return (wl.n / (nowMs() - t0)) * 1000;
}

export async function timeReads(engine: Engine, wl: Workload, keys: unknown[], timeMs: number) {
  const n = wl.n;
  const readKeys = new Array<unknown>(n);
  for (let i = 0; i < n; i++) readKeys[i] = keys[wl.readOrder[i]!];
  const batch = Math.min(READ_BATCH, n);
  let pos = 0;
  let bytes = 0;
  const task = () => {
    for (let j = 0; j < batch; j++) {
      const value = engine.get(readKeys[pos]);
      if (value === undefined) fail(engine, `get of a stored key returned undefined`);
      bytes += value.length;
      pos = pos + 1 === n ? 0 : pos + 1;
    }
  };
  settleHeap();
  const bench = new Bench({ time: timeMs, iterations: Math.ceil(n / batch), throws: true });
  bench.add("reads", task);
  await bench.run();
  if (bytes % VALUE_BYTES !== 0) fail(engine, "a value had the wrong length");
  return sampled(bench, batch);
}

export async function timePrefix(engine: Engine, wl: Workload, timeMs: number) {
  const gte = engine.key(wl.prefixGte);
  const lt = engine.key(wl.prefixLt);
  const check = (count: number) => {
    if (count !== PREFIX_LIMIT) fail(engine, `prefix scan returned ${count} entries`);
  };
  const first = engine.prefixScan(gte, lt, PREFIX_LIMIT);
  // Asynchronous engines get an async task; synchronous ones must not pay for a promise.
  const task = isPromise(first)
    ? async () => check(await engine.prefixScan(gte, lt, PREFIX_LIMIT))
    : () => check(engine.prefixScan(gte, lt, PREFIX_LIMIT) as number);
  check(isPromise(first) ? await first : first);
  settleHeap();
  const bench = new Bench({ time: timeMs, throws: true });
  bench.add("prefix", task);
  await bench.run();
  return sampled(bench, 1);
}

/** Operations per second from the median sample, and the relative margin of error. */
function sampled(bench: Bench, opsPerSample: number): { rate: number; rme: number } {
  const result = bench.tasks[0]?.result;
  if (result === undefined || !("latency" in result)) throw new Error("tinybench: no result");
  return { rate: (opsPerSample * 1000) / result.latency.p50, rme: result.latency.rme };
}

export async function timeScan(engine: Engine, n: number): Promise<number> {
  settleHeap();
  const t0 = nowMs();
  const r = engine.scanAll();
  const scan = isPromise(r) ? await r : r;
  const ms = nowMs() - t0;
  if (scan.count !== n) fail(engine, `scan saw ${scan.count} entries, expected ${n}`);
  if (!scan.ordered) fail(engine, "scan was not in ascending key order");
  if (scan.valueBytes !== n * VALUE_BYTES) fail(engine, "scan values had the wrong length");
  return (n / ms) * 1000;
}

/**
 * Readies the engine for a put phase, untimed (`prepare`: emdb reopens under everyN(64),
 * SQLite switches `synchronous`), and returns the timed run of its puts (new keys from the
 * phase's own range; rate per second), or undefined when the engine has no such put.
 */
export async function preparePuts(
  engine: Engine,
  phase: WritePhase,
  wl: Workload,
  keys: unknown[],
): Promise<{ count: number; time: () => Promise<number> } | undefined> {
  const put: ((k: unknown, v: Buffer) => unknown) | undefined =
    phase === "durable" ? engine.durablePut : engine.nonDurablePut;
  if (put === undefined) return undefined;
  const p = engine.prepare(phase);
  if (isPromise(p)) await p;
  const from = phase === "durable" ? wl.durableFrom : wl.nonDurableFrom;
  const count = phase === "durable" ? DURABLE_PUTS : NON_DURABLE_PUTS;
  const time = async () => {
    settleHeap();
    const t0 = nowMs();
    for (let i = from; i < from + count; i++) {
      const r = put.call(engine, keys[i], wl.values[i]!);
      if (isPromise(r)) await r;
    }
    return (count / (nowMs() - t0)) * 1000;
  };
  return { count, time };
}

export async function runLoad(module: EngineModule, o: LoadOptions): Promise<LoadSample> {
  const wl = buildWorkload(o.n, true);
  const engine = module.create(o.variant);
  // Measured before the keys are converted, so the Map's string keys count as the Map's.
  settleHeap();
  const harnessRss = process.memoryUsage().rss / MiB;
  const keys = wl.keys.map((k) => engine.key(k));
  const figures: Figures = {};
  const rme: Record<string, number> = {};

  const opened = engine.open(o.dir);
  if (isPromise(opened)) await opened;
  figures.bulk = await timeBulk(engine, wl, keys);
  if (o.bulkOnly) {
    const closed = engine.close();
    if (isPromise(closed)) await closed;
    return { figures, records: o.n, harnessRss, rme };
  }

  const reads = await timeReads(engine, wl, keys, o.benchTimeMs);
  figures.reads = reads.rate;
  rme.reads = reads.rme;
  figures.scan = await timeScan(engine, o.n);
  const prefix = await timePrefix(engine, wl, o.benchTimeMs);
  figures.prefix = prefix.rate;
  rme.prefix = prefix.rme;

  let records = o.n;
  const durable = await preparePuts(engine, "durable", wl, keys);
  if (durable !== undefined) {
    figures.durable = await durable.time();
    records += durable.count;
  }
  // Before any reopen: a reopen would count two generations of the engine's heap at once.
  figures.rss = peakRss() / MiB;
  figures.rssAboveHarness = figures.rss - harnessRss;

  const nonDurable = await preparePuts(engine, "nonDurable", wl, keys);
  if (nonDurable !== undefined) {
    figures.nonDurable = await nonDurable.time();
    records += nonDurable.count;
  }

  const closed = engine.close();
  if (isPromise(closed)) await closed;
  if (engine.persistent) {
    const size = diskSize(o.dir);
    figures.sizeAllocated = size.allocated / MiB;
    figures.sizeApparent = size.apparent / MiB;
  }
  return { figures, records, harnessRss, rme };
}
