/**
 * Crash-test child: opens the database, runs the deterministic workload, and writes one
 * line to stdout (synchronously) after each op returns: "A <i>" for an acknowledged op,
 * "F <i>" once a flush after op i returned. The parent kills it with SIGKILL at random
 * moments (or EMDB_CRASH_AT makes it kill itself at a failpoint). Its clock reads
 * CRASH_EPOCH + i during op i, so inserts with a TTL expire while it runs. Each compaction's progress
 * listener tries a write, which must be refused with EMDB_BUSY (exit 3 otherwise).
 *
 * argv: <path> <policy: each | n:<N> | manual> <seed> <count> [pageSize] [checkpointBytes]
 */
import { writeSync } from "node:fs";
import { Emdb, everyN, isEmdbError, manual, onEachWrite, Ttl } from "../../src/index.js";
import { CRASH_EPOCH, type CrashInsert, crashOps } from "./crash-ops.js";
import { writeLine } from "./write-line.js";

const [path, policyArg, seedArg, countArg, pageArg, cpArg] = process.argv.slice(2);
const policy =
  policyArg === "each"
    ? onEachWrite()
    : policyArg === "manual"
      ? manual()
      : everyN(Number(policyArg!.slice(2)));
let now = CRASH_EPOCH;
const db: Emdb = Emdb.builder()
  .clock(() => now)
  .path(path!)
  .flushPolicy(policy)
  .pageSize(Number(pageArg ?? 4096))
  .checkpointThreshold(Number(cpArg ?? 64 * 1024))
  .onProgress((e) => {
    if (e.phase !== "compact") return;
    // A write from here once went to the WAL being replaced and was lost at the next crash;
    // it must be refused, and the compaction (killed or not) must go on.
    db.get("k1");
    try {
      db.insert("k1", "written during compaction");
    } catch (err) {
      if (isEmdbError(err) && err.code === "EMDB_BUSY") return;
      throw err;
    }
    writeSync(2, "a write from compact()'s progress listener was accepted\n");
    process.exit(3);
  })
  .build();
writeLine("O");
const ops = crashOps(Number(seedArg), Number(countArg));
const ttl = (o: CrashInsert) => (o.ttl === undefined ? Ttl.never() : Ttl.after(o.ttl));
for (let i = 0; i < ops.length; i++) {
  const op = ops[i]!;
  now = CRASH_EPOCH + i;
  switch (op.kind) {
    case "insert":
      db.insertWithTtl(op.key, op.value, ttl(op));
      break;
    case "remove":
      db.remove(op.key);
      break;
    case "tx":
      db.transaction((tx) => {
        for (const o of op.ops) {
          if (o.kind === "insert") tx.insertWithTtl(o.key, o.value, ttl(o));
          else tx.remove(o.key);
        }
      });
      break;
    case "flush":
      db.flush();
      writeLine(`F ${i}`);
      break;
    case "compact":
      db.compact();
      writeLine(`F ${i}`);
      break;
  }
  writeLine(`A ${i}`);
}
db.close();
writeLine("C");
