/**
 * Where the files written by the Rust emdb-rs live: `test/fixtures/emdb-rs` when the repository
 * carries a copy, otherwise the shared reference directory. Tests copy them to a temp dir
 * before reading and never write here.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const inRepo = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "emdb-rs");

export const EMDB_RS_FIXTURES =
  process.env.EMDB_RS_FIXTURES ??
  (fs.existsSync(inRepo) ? inRepo : "/work/shared/fixtures/emdb-rs");
