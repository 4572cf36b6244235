/**
 * better-sqlite3 12 as node-peers.md §4 drives it: WAL journal, a WITHOUT ROWID table of
 * BLOB keys and values, default cache_size, prepared statements, the bulk load inside one
 * `db.transaction()`. `synchronous = FULL` for the bulk load and the durable commits (in WAL
 * mode NORMAL does not fsync commits, §4's strace), NORMAL for the non-durable puts.
 */
import * as path from "node:path";
import Database from "better-sqlite3";
import {
  assertOrdered,
  type Engine,
  type EngineModule,
  ScanTally,
  type WritePhase,
} from "../engine.js";

type Db = InstanceType<typeof Database>;
type Stmt = Database.Statement<unknown[]>;

interface Statements {
  insert: Stmt;
  get: Stmt;
  scan: Stmt;
  range: Stmt;
}

class SqliteEngine implements Engine<Buffer> {
  readonly name = "sqlite" as const;
  readonly persistent = true;
  readonly describe = {
    open: "new Database(file), journal_mode = WAL, synchronous = FULL, default cache_size; CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID",
    bulk: "db.transaction(() => insert.run(k, v) × N)() with a prepared INSERT, synchronous = FULL",
    reads: "prepared SELECT v FROM kv WHERE k = ? with .pluck().get(k)",
    scan: "prepared SELECT k, v FROM kv ORDER BY k, .raw().iterate()",
    prefix: "prepared SELECT k, v … WHERE k >= ? AND k < ? ORDER BY k LIMIT 100, .raw().all()",
    durable: "insert.run(k, v) in autocommit, synchronous = FULL",
    nonDurable:
      "insert.run(k, v) in autocommit, synchronous = NORMAL (set untimed before the phase)",
    reopen: "new Database(file) + prepare + .pluck().get(k)",
  };
  private db: Db | undefined;
  private st: Statements | undefined;

  key(k: Buffer): Buffer {
    return k;
  }

  private get s(): Statements {
    if (this.st === undefined) throw new Error("sqlite: not open");
    return this.st;
  }

  open(dir: string): void {
    const db = new Database(path.join(dir, "bench.sqlite"));
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    db.exec("CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID");
    this.db = db;
    this.st = {
      insert: db.prepare("INSERT INTO kv (k, v) VALUES (?, ?)"),
      get: db.prepare("SELECT v FROM kv WHERE k = ?").pluck(),
      scan: db.prepare("SELECT k, v FROM kv ORDER BY k").raw(),
      range: db.prepare("SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k LIMIT ?").raw(),
    };
  }

  bulkInsert(keys: readonly Buffer[], values: readonly Buffer[]): void {
    const insert = this.s.insert;
    const n = keys.length;
    this.db!.transaction(() => {
      for (let i = 0; i < n; i++) insert.run(keys[i]!, values[i]!);
    })();
  }

  get(key: Buffer): Uint8Array | undefined {
    return this.s.get.get(key) as Buffer | undefined;
  }

  scanAll() {
    const tally = new ScanTally();
    for (const row of this.s.scan.iterate()) {
      const [key, value] = row as [Buffer, Buffer];
      tally.add(key, value);
    }
    return tally.result();
  }

  prefixScan(gte: Buffer, lt: Buffer, limit: number): number {
    const rows = this.s.range.all(gte, lt, limit) as [Buffer, Buffer][];
    let prev: Buffer | undefined;
    for (const [key] of rows) {
      assertOrdered(prev, key, "sqlite");
      prev = key;
    }
    return rows.length;
  }

  prepare(phase: WritePhase): void {
    this.db!.pragma(phase === "durable" ? "synchronous = FULL" : "synchronous = NORMAL");
  }

  durablePut(key: Buffer, value: Buffer): void {
    this.s.insert.run(key, value);
  }

  nonDurablePut(key: Buffer, value: Buffer): void {
    this.s.insert.run(key, value);
  }

  close(): void {
    this.db?.close();
    this.db = undefined;
    this.st = undefined;
  }

  reopenAndGet(dir: string, key: Buffer): Uint8Array | undefined {
    const db = new Database(path.join(dir, "bench.sqlite"));
    this.db = db;
    return db.prepare("SELECT v FROM kv WHERE k = ?").pluck().get(key) as Buffer | undefined;
  }

  closeReopened(): void {
    this.close();
  }
}

export const engine: EngineModule = { create: () => new SqliteEngine() };
