/** Migration kill-test child: opens (and so migrates) the database at argv[2], then closes it. */
import { writeSync } from "node:fs";
import { Emdb } from "../../src/index.js";

writeSync(1, "S\n");
Emdb.open(process.argv[2]!).close();
writeSync(1, "D\n");
