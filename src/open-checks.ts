/**
 * What an open refuses before it writes anything: the cases where going on (creating a new
 * page file, replacing the WAL) would destroy data that is still on disk. Each throws
 * `EMDB_CORRUPTED` naming the file, and leaves both files as they were.
 */
import { EmdbError, isEmdbError } from "./errors.js";
import type { StorageBackend } from "./pager/backend.js";
import { isBlank } from "./pager/meta.js";
import { probeWal } from "./wal/replay.js";

/**
 * A page file that does not read as any database, next to a WAL with a valid header of ours,
 * is our page file damaged (both meta magics, or cut to a few bytes): `EMDB_CORRUPTED`, not
 * "not an emdb database", which would invite deleting the files.
 */
export function damagedBesideOwnWal(err: unknown, backend: StorageBackend, path: string): unknown {
  const walPath = `${path}.wal`;
  if (!isEmdbError(err, "EMDB_MAGIC_MISMATCH") || probeWal(backend, walPath) === undefined) {
    return err;
  }
  return new EmdbError(
    "EMDB_CORRUPTED",
    `the page file has no emdb magic in either meta page, but ${walPath} is an emdb WAL: the page file is damaged`,
    { file: path, offset: 0, cause: err },
  );
}

/**
 * A page file that is missing or blank is created before its WAL, so a WAL beside it that
 * holds records, or bytes that are not an emdb WAL at all (an emdb-rs v3 WAL whose page
 * file was lost), is data this open would destroy: `EMDB_CORRUPTED`. An empty WAL, or a bare
 * header of ours (a clean close), is replaced.
 */
export function refuseOrphanWal(backend: StorageBackend, walPath: string): void {
  if (!backend.exists(walPath)) return;
  const probe = probeWal(backend, walPath);
  let holds: string | undefined;
  if (probe !== undefined) {
    if (probe.holdsRecords) holds = "holds records (acknowledged writes)";
  } else {
    const file = backend.open(walPath, false);
    try {
      if (file.size() > 0) holds = "holds bytes that are not an emdb WAL (an emdb-rs WAL?)";
    } finally {
      file.close();
    }
  }
  if (holds === undefined) return;
  throw new EmdbError(
    "EMDB_CORRUPTED",
    `the page file is missing or empty but its WAL sidecar ${holds}, which a new database would overwrite. Move the WAL away to start a new database`,
    { file: walPath, offset: 0 },
  );
}

/** A page file that does not exist yet, or that the pager would treat as new (`isBlank`). */
export function isBlankFile(backend: StorageBackend, path: string): boolean {
  if (!backend.exists(path)) return true;
  const file = backend.open(path, false);
  try {
    return isBlank(file);
  } finally {
    file.close();
  }
}
