/**
 * Recovery: what an open does before the store takes writes, in this order, all under the
 * database's lock (docs/design.md, "Recovery", gives the rules of each step):
 *
 * 1. migrate an emdb-rs file if that is what is there (`migrations/migrate.ts`);
 * 2. refuse a WAL holding records beside a missing or blank page file (`open-checks.ts`);
 * 3. open the page file at its newest valid meta page (`pager/meta.ts`) and lock it too;
 * 4. load the tree into the keyspace, leaving out records already expired (`tree-memory.ts`);
 * 5. replay the WAL that follows that checkpoint (`wal-memory.ts`), or bind a new one;
 * 6. log the removal of the records step 4 left out, which may checkpoint.
 *
 * A failure at any step closes what was opened and releases the lock.
 */
import { type MigrationReport, prepareDatabaseFile } from "../migrations/migrate.js";
import { BTree } from "./btree/tree.js";
import { EmdbError } from "./errors.js";
import { failpoint } from "./failpoints.js";
import { FileStore, type FileStoreOptions } from "./file-store.js";
import { damagedBesideOwnWal, isBlankFile, refuseOrphanWal } from "./open-checks.js";
import { openPager, privateMapperOf } from "./open-pager.js";
import { FileBackend, type StorageBackend } from "./pager/backend.js";
import { acquireLock } from "./pager/lock.js";
import type { Pager } from "./pager/pager.js";
import type { Keyspace } from "./shards/keyspace.js";
import { loadTree } from "./tree-memory.js";
import { WalWriter } from "./wal/writer.js";
import { replayIntoMemory } from "./wal-memory.js";

/**
 * Opens (or creates) the database at `opts.path` and loads it into `ks`: the newest valid
 * meta's tree, then the WAL records that follow that checkpoint.
 */
export function openFileStore(opts: FileStoreOptions, ks: Keyspace): FileStore {
  const backend = opts.backend ?? new FileBackend();
  const lock = opts.backend === undefined ? acquireLock(opts.path) : undefined;
  let pager: Pager | undefined;
  let wal: WalWriter | undefined;
  try {
    let migration: MigrationReport | undefined;
    if (opts.backend === undefined) {
      // Under the lock, before anything reads the file as ours.
      try {
        migration = prepareDatabaseFile(opts.path, {
          pageSize: opts.pageSize,
          now: opts.clock,
          onProgress: opts.onProgress,
        });
      } catch (err) {
        throw damagedBesideOwnWal(err, backend, opts.path);
      }
    }
    const walPath = `${opts.path}.wal`;
    // Checked before a new page file is created, so a refusal changes nothing on disk.
    if (isBlankFile(backend, opts.path)) refuseOrphanWal(backend, walPath);
    pager = openPager(backend, opts);
    lock?.guardPageFile(opts.path);
    const mapper = privateMapperOf(pager);
    if (mapper !== undefined) ks.arena.mapFrom(mapper);
    const expiredAtLoad = loadTree(
      new BTree(pager),
      ks,
      pager.meta.entryCount,
      opts.onProgress,
      opts.clock(),
    );
    const generation = pager.meta.generation;
    const replayed = replayIntoMemory(backend, walPath, { fileId: pager.fileId, generation }, ks);
    const result = replayed.result;
    switch (result.status) {
      case "ok":
        wal = WalWriter.openAt(backend, walPath, result);
        break;
      case "newer-generation":
        // The WAL is only reset to generation G after meta G is durable: meta G existed
        // and is now unreadable. Falling back to older data would lose committed writes.
        throw new EmdbError(
          "EMDB_CORRUPTED",
          `the WAL follows checkpoint ${result.header?.generation} but the newest readable meta page is ${generation}: ${pager.metaStatus.otherError ?? "the newer meta page is damaged"}`,
          { file: opts.path, offset: 0 },
        );
      case "foreign":
        if (result.holdsRecords === true) {
          throw new EmdbError(
            "EMDB_CORRUPTED",
            "the WAL sidecar belongs to another page file and holds records; it is never replayed into this one. Move it away to open the database",
            { file: walPath, offset: 0 },
          );
        }
        wal = bindNewWal(backend, walPath, pager);
        break;
      default:
        // missing, empty-unbound, older-generation: nothing in it follows this checkpoint.
        wal = bindNewWal(backend, walPath, pager);
    }
    // The WAL is now durably bound to this meta's generation, so the open can never fall
    // back to the previous meta: the pages its commit freed may be reused.
    pager.releasePending();
    const store = new FileStore(opts, backend, ks, {
      pager,
      wal,
      lock,
      dirty: replayed.dirty,
      cleared: replayed.cleared,
      lastTxId: Math.max(pager.meta.lastTxId, result.maxTxId),
      migration,
      replay: { records: result.records, tornTail: result.tornTail },
    });
    ks.reclaimDue();
    // The records that had expired by the load are still in the tree, unless the WAL wrote
    // them again or cleared everything: removed and logged as the sweep would have.
    if (!replayed.cleared) {
      const gone = expiredAtLoad.filter((k) => !ks.has(k));
      if (gone.length > 0) {
        store.expired(gone);
        try {
          store.settle();
        } finally {
          // Its checkpoint may have dropped entries expired since the load, loaded ones too.
          ks.reclaimDue();
        }
      }
    }
    return store;
  } catch (err) {
    // The open's error is the one to report, whatever closing the files throws.
    try {
      wal?.close();
    } catch {}
    try {
      pager?.close();
    } catch {}
    try {
      lock?.release();
    } catch {}
    throw err;
  }
}

/**
 * A new, empty WAL following the pager's meta page, made durable first: a WAL that follows a
 * generation the disk could still lose makes the file unopenable after a power cut.
 */
function bindNewWal(backend: StorageBackend, walPath: string, pager: Pager): WalWriter {
  pager.persistMeta();
  return WalWriter.create(backend, walPath, pager.fileId, pager.meta.generation, failpoint);
}
