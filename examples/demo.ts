/**
 * The README's first command: `npm run demo`. Creates a database, writes to it, reads it
 * back, and prints each step. Pass a path to use that file instead of the default.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Emdb, EmdbError, onEachWrite, Ttl } from "../src/index.js";

let now = Date.now();
const clock = () => now;

function show(label: string, value: unknown): void {
  const text = Buffer.isBuffer(value)
    ? JSON.stringify(value.toString("utf8"))
    : JSON.stringify(value);
  console.log(`${label.padEnd(44)} ${text}`);
}

const dir =
  process.argv[2] === undefined ? fs.mkdtempSync(path.join(os.tmpdir(), "emdb-demo-")) : undefined;
const file = process.argv[2] ?? path.join(dir!, "demo.emdb");
const open = () => Emdb.builder().path(file).flushPolicy(onEachWrite()).clock(clock).build();
let db = open();
console.log(`emdb demo: database file ${file}\n`);

db.insert("user:1", "james");
db.insert("user:2", "alex");
show('insert user:1, user:2 → get("user:1")', db.get("user:1"));

db.transaction((tx) => {
  tx.insert("user:3", "sam");
  tx.remove("user:2");
});
show("transaction(+user:3, -user:2) → keys()", [...db.keys()].map(String));

try {
  db.transaction((tx) => {
    tx.insert("user:4", "never stored");
    throw new EmdbError("EMDB_TRANSACTION_ABORTED", "demo rollback");
  });
} catch (err) {
  show("a throwing transaction rolls back", (err as EmdbError).code);
}
show('get("user:4") after the rollback', db.get("user:4") ?? null);

db.insertWithTtl("session", "token", Ttl.after(30_000));
show('insertWithTtl("session", 30 s) → ttl()', db.ttl("session"));
now += 30_000;
show("30 s later (injected clock) → get()", db.get("session") ?? null);

const product = db.focus("product");
product.set("name", "phone");
product.focus("price").set("eur", "499");
show(
  'focus("product") → group("product")',
  [...db.group("product")].map(([k, v]) => `${k}=${v}`),
);
show(
  'range({ gte: "product", lt: "user:2" })',
  [...db.range({ gte: "product", lt: "user:2" })].map(([k]) => String(k)),
);
show("len()", db.len());
db.close();
db = open();
show("close() and reopen → len()", db.len());
show('after reopen: get("user:1")', db.get("user:1"));
show(
  'after reopen: group("product")',
  [...db.group("product")].map(([k, v]) => `${k}=${v}`),
);
show("check() (consistency problems)", db.check());
const disk = db.stats().disk!;
show("stats(): pages, file bytes, WAL bytes", [disk.pageCount, disk.fileBytes, disk.walBytes]);
db.close();
show(
  "close() → get() throws",
  (() => {
    try {
      db.get("user:1");
      return "no error";
    } catch (err) {
      return (err as EmdbError).code;
    }
  })(),
);
