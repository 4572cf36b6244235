/**
 * lmdb-js as node-peers.md §4 drives it: binary key and value encodings, `getBinary`,
 * `transactionSync` + `putSync` for the bulk load (then `await db.flushed`), `putSync` for
 * durable commits (fdatasync on the main thread before it returns, §4's strace), `getRange`
 * for scans. Its non-durable put is `putSync` on an environment reopened with `noSync: true`:
 * `await put` still fsyncs on a worker thread (§4's strace), so it is not a non-durable put.
 */
import * as path from "node:path";
import { open, type RootDatabase } from "lmdb";
import {
  assertOrdered,
  type Engine,
  type EngineModule,
  ScanTally,
  type WritePhase,
} from "../engine.js";

type Db = RootDatabase<Buffer, Buffer>;

function openDb(dir: string, noSync: boolean): Db {
  return open<Buffer, Buffer>({
    path: path.join(dir, "bench.mdb"),
    keyEncoding: "binary",
    encoding: "binary",
    noSync,
  });
}

class LmdbEngine implements Engine<Buffer> {
  readonly name = "lmdb" as const;
  readonly persistent = true;
  readonly describe = {
    open: "open({ path, keyEncoding: 'binary', encoding: 'binary' }), defaults otherwise (overlappingSync)",
    bulk: "db.transactionSync(() => db.putSync(k, v) × N), then await db.flushed",
    reads: "db.getBinary(k)",
    scan: "db.getRange()",
    prefix: "db.getRange({ start: gte, end: lt, limit: 100 })",
    durable: "db.putSync(k, v)",
    nonDurable: "db.putSync(k, v) with the env reopened (untimed) with noSync: true",
    reopen: "open(...) + db.getBinary(k)",
  };
  private db: Db | undefined;
  private dir = "";

  key(k: Buffer): Buffer {
    return k;
  }

  private get handle(): Db {
    if (this.db === undefined) throw new Error("lmdb: not open");
    return this.db;
  }

  open(dir: string): void {
    this.dir = dir;
    this.db = openDb(dir, false);
  }

  async bulkInsert(keys: readonly Buffer[], values: readonly Buffer[]): Promise<void> {
    const db = this.handle;
    const n = keys.length;
    db.transactionSync(() => {
      for (let i = 0; i < n; i++) db.putSync(keys[i]!, values[i]!);
    });
    await db.flushed;
  }

  get(key: Buffer): Uint8Array | undefined {
    return this.handle.getBinary(key);
  }

  scanAll() {
    const tally = new ScanTally();
    for (const { key, value } of this.handle.getRange()) tally.add(key, value);
    return tally.result();
  }

  prefixScan(gte: Buffer, lt: Buffer, limit: number): number {
    let count = 0;
    let prev: Buffer | undefined;
    for (const { key } of this.handle.getRange({ start: gte, end: lt, limit })) {
      assertOrdered(prev, key, "lmdb");
      prev = key;
      count++;
    }
    return count;
  }

  async prepare(phase: WritePhase): Promise<void> {
    if (phase !== "nonDurable") return;
    await this.handle.close();
    this.db = openDb(this.dir, true);
  }

  durablePut(key: Buffer, value: Buffer): void {
    this.handle.putSync(key, value);
  }

  nonDurablePut(key: Buffer, value: Buffer): void {
    this.handle.putSync(key, value);
  }

  async close(): Promise<void> {
    const db = this.db;
    this.db = undefined;
    if (db !== undefined) await db.close();
  }

  reopenAndGet(dir: string, key: Buffer): Uint8Array | undefined {
    this.db = openDb(dir, false);
    return this.db.getBinary(key);
  }

  closeReopened(): Promise<void> {
    return this.close();
  }
}

export const engine: EngineModule = { create: () => new LmdbEngine() };
