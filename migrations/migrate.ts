/**
 * Automatic migration of files written by emdb-rs (log v1, log v2, page file v3 + `P.wal`)
 * into emdb's own page file. No on-disk structure of its own: it reads through
 * `read-legacy.ts` and writes through the bulk loader.
 *
 * The original is never modified, and a crash at any instant leaves either the untouched
 * legacy file (the next open migrates again) or the complete new file:
 *
 * | step | what | failpoint after it | a crash here leaves |
 * |---|---|---|---|
 * | 1 | stream the live, unexpired entries, in key order, into `P.migrate.tmp` (bulk load), commit (fdatasync) | `migrate:tmp-written` | legacy `P` (+ `P.wal`); a stale temp file, rebuilt next time |
 * | 2 | hard-link `P` → `P.vN.bak` (and a v3 `P.wal` → `P.v3.bak.wal`), fsync the directory | `migrate:backup-linked` | legacy `P`, backups that are the same inodes |
 * | 3 | rename `P.migrate.tmp` → `P`, fsync the directory | `migrate:renamed` | the new `P`; a v3 `P.wal` that is the backup's inode (removed at open) |
 * | 4 | remove the legacy `P.wal`, fsync the directory | | the new `P`, no WAL |
 *
 * Reading is O(n log n) (the live set is sorted once) and loading O(n). A torn or corrupt
 * log tail ends the replay, exactly as emdb-rs would have read the file, but nothing is cut
 * from the original: the backup is the original byte for byte.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { BulkLoader } from "../src/btree/bulk-load.js";
import { PROGRESS_EVERY } from "../src/builder.js";
import { EmdbError } from "../src/errors.js";
import { failpoint } from "../src/failpoints.js";
import { keyLimit, MAX_KEY_SIZE } from "../src/keys.js";
import { FileBackend } from "../src/pager/backend.js";
import { Pager } from "../src/pager/pager.js";
import { detectFormat } from "./detect.js";
import { readLegacyEach } from "./read-legacy.js";

export interface MigrationProgress {
  /** "migrate-read" while the legacy file is replayed (done/total in bytes), "migrate-write" while loading (entries). */
  phase: "migrate-read" | "migrate-write";
  done: number;
  total: number | undefined;
}

export interface MigrationOptions {
  /** Page size of the new file. */
  pageSize: number;
  /** Entries with `expiresAt <= now()` are not carried over. */
  now: () => number;
  onProgress?: ((p: MigrationProgress) => void) | undefined;
}

export interface MigrationReport {
  from: "log-v1" | "log-v2" | "page-v3";
  /** Where the original went (byte for byte). */
  backup: string;
  /** The v3 WAL's backup, when there was one. */
  walBackup: string | undefined;
  entries: number;
  expiredDropped: number;
  lastTxId: number;
  /** Set when the legacy replay stopped before the end of the file (a torn or corrupt tail). */
  skippedTail: { offset: number; reason: string } | undefined;
}

/** The backup name of a v3 WAL: the name emdb-rs itself would look for next to `P.v3.bak`. */
export function legacyWalBackup(dbPath: string): string {
  return `${dbPath}.v3.bak.wal`;
}

/**
 * Migrates `dbPath` if it holds an emdb-rs file; returns undefined when it is missing,
 * empty or already in emdb's format. The caller holds the database lock.
 */
export function migrateIfLegacy(
  dbPath: string,
  opts: MigrationOptions,
): MigrationReport | undefined {
  const fmt = detectFormat(dbPath);
  if (fmt.kind !== "log" && fmt.kind !== "page-v3") return undefined;
  const version = fmt.kind === "log" ? fmt.version : 3;
  const backup = `${dbPath}.v${version}.bak`;
  const tmp = `${dbPath}.migrate.tmp`;
  const dir = path.dirname(path.resolve(dbPath));
  const backend = new FileBackend();
  fs.rmSync(tmp, { force: true });

  // 1. The new file, complete and synced, beside the old one.
  const pager = Pager.open(backend, tmp, {
    temporary: true,
    pageSize: opts.pageSize,
    now: opts.now,
  });
  let scan: ReturnType<typeof readLegacyEach>;
  try {
    const loader = new BulkLoader(pager);
    const entry: { key: Buffer; value: Buffer; expiresAt: number } = {
      key: Buffer.alloc(0),
      value: Buffer.alloc(0),
      expiresAt: 0,
    };
    const progress = opts.onProgress;
    // Pages under 4 KiB hold shorter keys than MAX_KEY_SIZE (a quarter of the page), which
    // the loader would refuse with a bare RangeError after writing part of the new file.
    const limit = keyLimit(pager.pageSize);
    const limitName =
      limit === MAX_KEY_SIZE ? "MAX_KEY_SIZE" : `a quarter of the ${pager.pageSize}-byte page`;
    let n = 0;
    scan = readLegacyEach(
      dbPath,
      (bytes, ks, ke, vs, ve, expiresAt) => {
        if (ke - ks > limit) {
          throw new EmdbError(
            "EMDB_KEY_TOO_LARGE",
            `the emdb-rs file holds a key of ${ke - ks} bytes; emdb's maximum here is ${limit} (${limitName}). The original file is untouched`,
            { file: dbPath },
          );
        }
        entry.key = bytes.subarray(ks, ke);
        entry.value = bytes.subarray(vs, ve);
        entry.expiresAt = expiresAt;
        loader.add(entry);
        if (progress !== undefined && ++n % PROGRESS_EVERY === 0)
          progress({ phase: "migrate-write", done: n, total: undefined });
      },
      {
        now: opts.now(),
        ...(progress !== undefined
          ? {
              onProgress: (p) =>
                progress({ phase: "migrate-read", done: p.bytesDone, total: p.bytesTotal }),
            }
          : {}),
      },
    );
    const { root, entryCount } = loader.finish();
    pager.commit({ root, entryCount, lastTxId: scan.lastTxId });
    progress?.({ phase: "migrate-write", done: entryCount, total: entryCount });
  } catch (err) {
    pager.close();
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  pager.close();
  failpoint("migrate:tmp-written");

  // 2. Backups: hard links, so the original stays exactly what it was (a copy where the
  //    filesystem has no links).
  const backupPath = replaceWithLink(dbPath, backup);
  const legacyWal = `${dbPath}.wal`;
  let walBackup: string | undefined;
  if (fmt.kind === "page-v3" && fs.existsSync(legacyWal)) {
    walBackup = replaceWithLink(legacyWal, legacyWalBackup(dbPath));
  }
  backend.syncDir(dir);
  failpoint("migrate:backup-linked");

  // 3. The switch.
  fs.renameSync(tmp, dbPath);
  backend.syncDir(dir);
  failpoint("migrate:renamed");

  // 4. The legacy WAL now lives on as its backup only.
  if (walBackup !== undefined) {
    fs.rmSync(legacyWal, { force: true });
    backend.syncDir(dir);
  }
  return {
    from: fmt.kind === "log" ? (fmt.version === 1 ? "log-v1" : "log-v2") : "page-v3",
    backup: backupPath,
    walBackup,
    entries: scan.count,
    expiredDropped: scan.expiredDropped,
    lastTxId: scan.lastTxId,
    skippedTail:
      scan.stoppedAt !== undefined
        ? { offset: scan.stoppedAt.offset, reason: scan.stoppedAt.detail }
        : undefined,
  };
}

/**
 * What every open does under the database lock, before the file is read as emdb's own:
 * migrate an emdb-rs file if that is what is there, and drop a legacy WAL left by a
 * migration interrupted after its rename.
 */
export function prepareDatabaseFile(
  dbPath: string,
  opts: MigrationOptions,
): MigrationReport | undefined {
  const report = migrateIfLegacy(dbPath, opts);
  removeMigratedLegacyWal(dbPath);
  return report;
}

/**
 * After a crash between steps 3 and 4, `P.wal` is still the legacy WAL, the same inode as
 * its backup. It must not be read as emdb's WAL; it is safe to remove (the backup keeps it).
 */
export function removeMigratedLegacyWal(dbPath: string): void {
  const wal = `${dbPath}.wal`;
  const bak = legacyWalBackup(dbPath);
  try {
    const a = fs.statSync(wal);
    const b = fs.statSync(bak);
    if (a.ino === b.ino && a.dev === b.dev) {
      fs.rmSync(wal);
      new FileBackend().syncDir(path.dirname(path.resolve(dbPath)));
    }
  } catch {
    // One of them is missing: nothing was left over.
  }
}

/**
 * Makes `to` a hard link of `from`, or a synced copy where links are not supported. A `to`
 * left by an interrupted attempt (the same inode) is replaced; any other file of that name is
 * someone's older backup and is kept: the new backup then gets the next free `.N` suffix.
 */
function replaceWithLink(from: string, to: string): string {
  let target = to;
  for (let n = 1; fs.existsSync(target); n++) {
    const a = fs.statSync(from);
    const b = fs.statSync(target);
    if (a.ino === b.ino && a.dev === b.dev) {
      fs.rmSync(target);
      break;
    }
    target = `${to}.${n}`;
  }
  try {
    fs.linkSync(from, target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") throw err;
    // No hard links here: a copy, which never replaces an existing file.
    fs.copyFileSync(from, target, fs.constants.COPYFILE_EXCL);
    const fd = fs.openSync(target, "r");
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }
  return target;
}
