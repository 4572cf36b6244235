/**
 * classic-level (LevelDB) as node-peers.md §4 drives it: buffer encodings, the bulk load as
 * one chained batch per 100k records written with `{ sync: true }` (the array form is 4.5×
 * slower, §4), `getSync` for point reads (`await get` costs 14×), `nextv(1000)` for the scan.
 * Single-record puts are `await db.put` (there is no synchronous put).
 */
import { ClassicLevel } from "classic-level";
import { assertOrdered, type Engine, type EngineModule, ScanTally } from "../engine.js";

type Db = ClassicLevel<Buffer, Buffer>;

const BATCH = 100_000;
const ENCODINGS = { keyEncoding: "buffer", valueEncoding: "buffer" } as const;

class ClassicLevelEngine implements Engine<Buffer> {
  readonly name = "classic-level" as const;
  readonly persistent = true;
  readonly describe = {
    open: "new ClassicLevel(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' }) + await open()",
    bulk: "db.batch() chained, put × 100k per batch, await write({ sync: true }) (1 batch at ≤100k, 10 at 1M, as §4)",
    reads: "db.getSync(k)",
    scan: "db.iterator() + await nextv(1000) until empty",
    prefix: "db.iterator({ gte, lt, limit: 100 }) + await nextv(100)",
    durable: "await db.put(k, v, { sync: true })",
    nonDurable: "await db.put(k, v)",
    reopen: "new ClassicLevel(dir, …) + await open() + db.getSync(k)",
  };
  private db: Db | undefined;

  key(k: Buffer): Buffer {
    return k;
  }

  private get handle(): Db {
    if (this.db === undefined) throw new Error("classic-level: not open");
    return this.db;
  }

  async open(dir: string): Promise<void> {
    this.db = new ClassicLevel<Buffer, Buffer>(dir, ENCODINGS);
    await this.db.open();
  }

  async bulkInsert(keys: readonly Buffer[], values: readonly Buffer[]): Promise<void> {
    const db = this.handle;
    const n = keys.length;
    for (let start = 0; start < n; start += BATCH) {
      const batch = db.batch();
      const end = Math.min(n, start + BATCH);
      for (let i = start; i < end; i++) batch.put(keys[i]!, values[i]!);
      await batch.write({ sync: true });
    }
  }

  get(key: Buffer): Uint8Array | undefined {
    return this.handle.getSync(key);
  }

  async scanAll() {
    const tally = new ScanTally();
    const it = this.handle.iterator();
    try {
      for (;;) {
        const entries = await it.nextv(1000);
        if (entries.length === 0) break;
        for (const [key, value] of entries) tally.add(key, value);
      }
    } finally {
      await it.close();
    }
    return tally.result();
  }

  async prefixScan(gte: Buffer, lt: Buffer, limit: number): Promise<number> {
    const it = this.handle.iterator({ gte, lt, limit });
    try {
      const entries = await it.nextv(limit);
      let prev: Buffer | undefined;
      for (const [key] of entries) {
        assertOrdered(prev, key, "classic-level");
        prev = key;
      }
      return entries.length;
    } finally {
      await it.close();
    }
  }

  prepare(): void {}

  durablePut(key: Buffer, value: Buffer): Promise<void> {
    return this.handle.put(key, value, { sync: true });
  }

  nonDurablePut(key: Buffer, value: Buffer): Promise<void> {
    return this.handle.put(key, value);
  }

  async close(): Promise<void> {
    const db = this.db;
    this.db = undefined;
    if (db !== undefined) await db.close();
  }

  async reopenAndGet(dir: string, key: Buffer): Promise<Uint8Array | undefined> {
    await this.open(dir);
    return this.handle.getSync(key);
  }

  closeReopened(): Promise<void> {
    return this.close();
  }
}

export const engine: EngineModule = { create: () => new ClassicLevelEngine() };
