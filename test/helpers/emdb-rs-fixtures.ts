/**
 * Where the files written by the Rust emdb-rs live: `EMDB_RS_FIXTURES` when set, else
 * `test/fixtures/emdb-rs` when the repository carries a copy, else `shared/` beside the
 * checkout (where CI puts it). Tests copy them to a temp dir and never write here.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const inRepo = path.join(here, "..", "fixtures", "emdb-rs");
const besideCheckout = path.join(here, "..", "..", "..", "shared", "fixtures", "emdb-rs");

export const EMDB_RS_FIXTURES =
  process.env.EMDB_RS_FIXTURES ?? (fs.existsSync(inRepo) ? inRepo : besideCheckout);
