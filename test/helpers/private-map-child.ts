/**
 * Child process for test/private-map.test.ts: opens a database with `useMmap(true)`, so
 * the values it loads lie in private maps of the page file, then makes the pager overwrite
 * or truncate away the leaves they came from, and reads every value back. Run in a child
 * because touching a mapped page the file was cut below kills the process with SIGBUS,
 * even a page made private before. Prints one JSON line: what changed in the file, and the
 * values that came back wrong (none, when the maps were kept in time).
 *
 *   private-map-child <file> <pageSize> <reuse | truncate>
 */
import * as fs from "node:fs";
import { Emdb, manual } from "../../src/index.js";

const [file, pageSizeArg, scenario] = process.argv.slice(2);
if (
  file === undefined ||
  pageSizeArg === undefined ||
  (scenario !== "reuse" && scenario !== "truncate")
) {
  process.stderr.write("usage: private-map-child <file> <pageSize> <reuse | truncate>\n");
  process.exit(2);
}
const pageSize = Number(pageSizeArg);
const N = 8000;
const key = (i: number) => `k${String(i).padStart(6, "0")}`;
const original = (i: number) => `value ${i} `.repeat(3);
const open = (mmap: boolean) =>
  Emdb.builder().path(file).flushPolicy(manual()).pageSize(pageSize).useMmap(mmap).build();
/** A checkpoint whose meta makes the pages freed by the one before reusable. */
const twoCheckpoints = (db: Emdb) => {
  db.flush();
  db.insert("zz-pad", String(Math.random()));
  db.flush();
};

let db = open(false);
db.transaction((tx) => {
  for (let i = 0; i < N; i++) tx.insert(key(i), original(i));
});
db.close();

db = open(true);
const loaded = fs.readFileSync(file);
const expected = new Map<string, string>();
for (let i = 0; i < N; i++) expected.set(key(i), original(i));
const stats0 = db.stats();
const change = (i: number, v: string | undefined) => {
  if (v === undefined) db.remove(key(i));
  else db.insert(key(i), v);
  if (v === undefined) expected.delete(key(i));
  else expected.set(key(i), v);
};

if (scenario === "reuse") {
  // One record in five rewritten: every leaf is copied elsewhere and its old page freed;
  // then as many new records, which the checkpoints write into the freed pages.
  for (let i = 0; i < N; i += 5) change(i, `new ${i}`);
  twoCheckpoints(db);
  for (let i = N; i < 2 * N; i++) change(i, `more ${i} `.repeat(3));
  twoCheckpoints(db);
} else {
  // The front half removed (its pages freed), then one record in five of the last quarter
  // and the first record left (its leaf, rewritten by the removal, went to the end of the
  // file) rewritten into them: the file's tail is freed and cut, under the unchanged
  // records of those leaves.
  for (let i = 0; i < N / 2; i++) change(i, undefined);
  twoCheckpoints(db);
  for (let i = (3 * N) / 4; i < N; i += 5) change(i, `new ${i}`);
  change(N / 2, "first");
  twoCheckpoints(db);
}

const now = fs.readFileSync(file);
let pagesChanged = 0;
for (let at = 2 * pageSize; at + pageSize <= Math.min(loaded.length, now.length); at += pageSize) {
  if (!loaded.subarray(at, at + pageSize).equals(now.subarray(at, at + pageSize))) pagesChanged++;
}
const wrong: string[] = [];
for (const [k, v] of expected) {
  const got = db.get(k)?.toString();
  if (got !== v) wrong.push(`${k}: ${JSON.stringify(got)}`);
}
process.stdout.write(
  `${JSON.stringify({
    reads: stats0.disk?.reads,
    loadedPageBytes: stats0.loadedPageBytes,
    stillLoaded: db.stats().loadedPageBytes,
    bytesBefore: loaded.length,
    bytesAfter: now.length,
    pagesChanged,
    wrong: wrong.slice(0, 5),
    wrongCount: wrong.length,
    problems: db.check(),
  })}\n`,
);
db.close();
