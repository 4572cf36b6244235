/**
 * emdb through its public API only, with Buffer keys and values for parity with the native
 * engines. Headline bulk load: one `transaction` under `onEachWrite()`, which returns once
 * the transaction is durable (its WAL batch fdatasynced, or, for a batch larger than the
 * checkpoint threshold, the checkpoint it went into) — the honest peer of lmdb's `transactionSync`
 * and LevelDB's `write({sync:true})`. Variant "manual": plain inserts under `manual()`, then
 * `flush()` (a checkpoint: pages and meta written and synced). Reopen variant "mmap": `useMmap(true)`, pages read
 * through a memory map and the values the open loads left in private maps of the file
 * instead of copies (the README says what that setting costs).
 */
import * as path from "node:path";
import { Emdb, everyN, type FlushPolicy, manual, onEachWrite } from "../../src/index.js";
import {
  assertOrdered,
  type Engine,
  type EngineModule,
  ScanTally,
  type WritePhase,
} from "../engine.js";

type Variant = "tx" | "manual" | "mmap";

function build(file: string, policy: FlushPolicy): Emdb {
  return Emdb.builder().path(file).flushPolicy(policy).build();
}

class EmdbEngine implements Engine<Buffer> {
  readonly name = "emdb" as const;
  readonly persistent = true;
  readonly describe = {
    open: "Emdb.builder().path(p).flushPolicy(onEachWrite()).build(), default page size, cache and mmap setting (off)",
    bulk: "db.transaction(tx => tx.insert(k, v) × N) under onEachWrite(): durable before it returns (a WAL batch + fdatasync, or a checkpoint when larger than 16 MiB)",
    reads: "db.get(Buffer)",
    scan: "db.iter()",
    prefix: "db.range({ gte, lt, limit: 100 })",
    durable: "db.insert(k, v) under onEachWrite()",
    nonDurable: "db.insert(k, v) under everyN(64) (reopened untimed before the phase)",
    reopen: "Emdb.builder().path(p).build() + db.get(k)",
  };
  private db: Emdb | undefined;
  private file = "";

  constructor(private readonly variant: Variant) {}

  key(k: Buffer): Buffer {
    return k;
  }

  private get handle(): Emdb {
    if (this.db === undefined) throw new Error("emdb: not open");
    return this.db;
  }

  open(dir: string): void {
    this.file = path.join(dir, "bench.emdb");
    this.db = build(this.file, this.variant === "manual" ? manual() : onEachWrite());
  }

  bulkInsert(keys: readonly Buffer[], values: readonly Buffer[]): void {
    const db = this.handle;
    const n = keys.length;
    if (this.variant === "manual") {
      for (let i = 0; i < n; i++) db.insert(keys[i]!, values[i]!);
      db.flush();
      return;
    }
    db.transaction((tx) => {
      for (let i = 0; i < n; i++) tx.insert(keys[i]!, values[i]!);
    });
  }

  get(key: Buffer): Uint8Array | undefined {
    return this.handle.get(key);
  }

  scanAll() {
    const tally = new ScanTally();
    for (const [k, v] of this.handle.iter()) tally.add(k, v);
    return tally.result();
  }

  prefixScan(gte: Buffer, lt: Buffer, limit: number): number {
    let count = 0;
    let prev: Buffer | undefined;
    for (const [k] of this.handle.range({ gte, lt, limit })) {
      assertOrdered(prev, k, "emdb");
      prev = k;
      count++;
    }
    return count;
  }

  prepare(phase: WritePhase): void {
    // The store was opened with onEachWrite(); everyN(64) needs a reopen.
    if (phase !== "nonDurable") return;
    this.handle.close();
    this.db = build(this.file, everyN(64));
  }

  durablePut(key: Buffer, value: Buffer): void {
    this.handle.insert(key, value);
  }

  nonDurablePut(key: Buffer, value: Buffer): void {
    this.handle.insert(key, value);
  }

  close(): void {
    this.db?.close();
    this.db = undefined;
  }

  reopenAndGet(dir: string, key: Buffer): Uint8Array | undefined {
    this.db = Emdb.builder()
      .path(path.join(dir, "bench.emdb"))
      .useMmap(this.variant === "mmap")
      .build();
    return this.db.get(key);
  }

  closeReopened(): void {
    this.close();
  }
}

export const engine: EngineModule = {
  create: (variant) =>
    new EmdbEngine(variant === "manual" ? "manual" : variant === "mmap" ? "mmap" : "tx"),
  bulkVariants: {
    manual:
      "plain db.insert × N under manual(), then db.flush() (checkpoint: pages + meta fdatasynced)",
  },
  reopenVariants: {
    mmap: "Emdb.builder().path(p).useMmap(true).build() + db.get(k): pages read through a memory map, the values loaded left in private maps of the file",
  },
};
