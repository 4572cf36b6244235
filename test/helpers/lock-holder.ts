/**
 * Child process for test/native-lock.test.ts: takes the lock of the database at argv[2],
 * prints "locked <kind>" and holds it until killed or until its stdin closes (so it never
 * outlives a test runner that died).
 */
import { isEmdbError } from "../../src/errors.js";
import { acquireLock } from "../../src/pager/lock.js";

const dbPath = process.argv[2];
if (dbPath === undefined) {
  process.stderr.write("usage: lock-holder <dbPath>\n");
  process.exit(2);
}
try {
  const lock = acquireLock(dbPath);
  process.stdout.write(`locked ${lock.kind}\n`);
  process.stdin.resume();
  process.stdin.on("end", () => process.exit(0));
} catch (err) {
  process.stdout.write(`failed ${isEmdbError(err) ? err.code : String(err)}\n`);
  process.exit(1);
}
