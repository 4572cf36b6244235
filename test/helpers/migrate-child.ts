/** Migration kill-test child: opens (and so migrates) the database at argv[2], then closes it. */
import { Emdb } from "../../src/index.js";
import { writeLine } from "./write-line.js";

writeLine("S");
Emdb.open(process.argv[2]!).close();
writeLine("D");
