/**
 * Child process for test/native-mmap.test.ts, run with EMDB_DISABLE_NATIVE=1: prints what
 * MappedFile.open returns for a real file when the addon is off.
 */
import { FileBackend } from "../../src/pager/backend.js";
import { MappedFile } from "../../src/pager/mmap-reader.js";
import { native } from "../../src/pager/native.js";

const file = process.argv[2];
if (file === undefined) {
  process.stderr.write("usage: mmap-fallback <file>\n");
  process.exit(2);
}
const f = new FileBackend().open(file, true);
const mapped = MappedFile.open(f);
f.close();
process.stdout.write(
  `${JSON.stringify({ native: native !== undefined, mapped: mapped !== undefined })}\n`,
);
