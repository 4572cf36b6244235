/**
 * Damaged or mismatched files and locking: a damaged meta page of a completed checkpoint,
 * a torn meta write, a WAL whose page file is missing, empty or another database's, and a
 * second open of a locked path, in this process or another. A test whose open is refused
 * has no database to check; the others end with the consistency checker.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, test } from "node:test";
import { onEachWrite } from "../src/index.js";
import { native } from "../src/pager/native.js";
import { EMDB_RS_FIXTURES } from "./helpers/emdb-rs-fixtures.js";
import { openFile, scratchDir } from "./helpers/storage.js";

const { root, freshPath } = scratchDir("file-safety");

describe("meta pages", () => {
  test("a damaged meta page of a completed checkpoint is EMDB_CORRUPTED, never a silent rollback", () => {
    const p = freshPath();
    const db = openFile(p);
    db.insert("k", "first");
    db.flush();
    db.insert("k", "second");
    db.flush(); // completed: the WAL now follows this generation
    const gen = db.stats().disk!.generation as number;
    db.close();
    const bytes = fs.readFileSync(p);
    // The newest meta lives in slot generation % 2 (page 0 or 1); damage its root field.
    const current = gen % 2;
    assert.equal(bytes.readUInt32LE(current * 4096 + 32), gen);
    bytes[current * 4096 + 40]! ^= 0xff;
    fs.writeFileSync(p, bytes);
    assert.throws(() => openFile(p), { code: "EMDB_CORRUPTED" });
  });

  test("a torn meta write of a checkpoint that never completed falls back to the previous one", () => {
    const p = freshPath();
    let db = openFile(p, onEachWrite());
    db.insert("k", "first");
    db.flush();
    db.insert("k", "second"); // durable in the WAL only
    const gen = db.stats().disk!.generation as number;
    const wal = fs.readFileSync(`${p}.wal`);
    const page = fs.readFileSync(p);
    db.close();
    // Simulate a crash in the next checkpoint: its meta slot (the other one) is torn garbage,
    // and the WAL still follows generation `gen`.
    const torn = Buffer.from(page);
    const nextSlot = (gen + 1) % 2;
    torn.fill(0x5a, nextSlot * 4096 + 20, nextSlot * 4096 + 100);
    fs.writeFileSync(p, torn);
    fs.writeFileSync(`${p}.wal`, wal);
    db = openFile(p);
    assert.equal(db.get("k")?.toString(), "second");
    assert.deepEqual(db.check(), []);
    db.close();
  });
});

describe("a WAL without its page file", () => {
  /** The files a kill -9 would leave with acknowledged writes in the WAL only. */
  function walWithRecords(p: string): { wal: Buffer } {
    const db = openFile(p, onEachWrite());
    db.insert("kept", "checkpointed");
    db.flush();
    db.insert("only-in-wal", "acknowledged");
    const wal = fs.readFileSync(`${p}.wal`);
    db.close();
    return { wal };
  }

  for (const damage of ["emptied", "deleted"] as const) {
    test(`a page file ${damage} beside a WAL holding records is EMDB_CORRUPTED, and nothing on disk changes`, () => {
      const p = freshPath();
      const { wal } = walWithRecords(p);
      fs.writeFileSync(`${p}.wal`, wal);
      if (damage === "emptied") fs.writeFileSync(p, Buffer.alloc(0));
      else fs.rmSync(p);
      const files = () =>
        fs
          .readdirSync(root)
          .filter((f) => f.startsWith(path.basename(p)))
          .sort();
      const before = files();
      for (let attempt = 0; attempt < 2; attempt++) {
        assert.throws(() => openFile(p), {
          code: "EMDB_CORRUPTED",
          message: /missing or empty but its WAL sidecar holds records/,
        });
        assert.ok(fs.readFileSync(`${p}.wal`).equals(wal), "the WAL must not be overwritten");
        if (damage === "emptied") assert.equal(fs.statSync(p).size, 0);
        else assert.equal(fs.existsSync(p), false, "no new page file is created");
        assert.deepEqual(files(), before, "no file appears or goes away");
      }
    });
  }

  test("an emdb-rs WAL beside a missing page file is EMDB_CORRUPTED, not overwritten", () => {
    const p = freshPath();
    const legacyWal = fs.readFileSync(path.join(EMDB_RS_FIXTURES, "v3.emdb.wal"));
    fs.writeFileSync(`${p}.wal`, legacyWal);
    assert.throws(() => openFile(p), { code: "EMDB_CORRUPTED", message: /not an emdb WAL/ });
    assert.ok(fs.readFileSync(`${p}.wal`).equals(legacyWal));
    assert.equal(fs.existsSync(p), false);
  });

  test("an empty WAL beside a missing page file is replaced: a new database", () => {
    const p = freshPath();
    fs.writeFileSync(`${p}.wal`, Buffer.alloc(0));
    const db = openFile(p);
    db.insert("k", "v");
    assert.deepEqual(db.check(), []);
    db.close();
  });

  test("a page file of another database beside a WAL holding records is EMDB_CORRUPTED", () => {
    const p = freshPath();
    const { wal } = walWithRecords(p);
    const q = freshPath();
    const other = openFile(q);
    other.insert("other", "db");
    other.close();
    fs.copyFileSync(q, p);
    fs.writeFileSync(`${p}.wal`, wal);
    assert.throws(() => openFile(p), {
      code: "EMDB_CORRUPTED",
      message: /belongs to another page file and holds records/,
    });
    assert.ok(fs.readFileSync(`${p}.wal`).equals(wal));
  });

  test("a page file without any emdb magic beside an emdb WAL is EMDB_CORRUPTED, not 'not an emdb database'", () => {
    const p = freshPath();
    const { wal } = walWithRecords(p);
    const page = fs.readFileSync(p);
    const noMagic = Buffer.from(page);
    noMagic.fill(0x41, 0, 8); // slot A
    noMagic.fill(0x41, 4096, 4096 + 8); // slot B
    for (const image of [page.subarray(0, 3), page.subarray(0, 7), noMagic]) {
      fs.writeFileSync(p, image);
      fs.writeFileSync(`${p}.wal`, wal);
      assert.throws(
        () => openFile(p),
        { code: "EMDB_CORRUPTED" },
        `a page file of ${image.length} bytes`,
      );
    }
    // Without the WAL the same bytes are simply not a database.
    fs.rmSync(`${p}.wal`);
    assert.throws(() => openFile(p), { code: "EMDB_MAGIC_MISMATCH" });
  });

  test("a cleanly closed database's WAL holds no records: deleting the page file starts afresh", () => {
    const p = freshPath();
    walWithRecords(p); // closed cleanly: the WAL is a bare header again
    fs.rmSync(p);
    const db = openFile(p);
    assert.equal(db.len(), 0);
    db.insert("new", "start");
    assert.deepEqual(db.check(), []);
    db.close();
  });
});

describe("locking", () => {
  test("a second open of the same path, in this process, is EMDB_LOCK_BUSY; after close it opens", () => {
    const p = freshPath();
    const db = openFile(p);
    assert.throws(() => openFile(p), { code: "EMDB_LOCK_BUSY" });
    db.close();
    const again = openFile(p);
    assert.deepEqual(again.check(), []);
    again.close();
  });

  test("a symlink to the page file or to its directory, and a relative path, are the same database and the same lock", () => {
    const p = freshPath();
    const dir = path.dirname(p);
    const linkedDir = path.join(root, `linked-dir-${path.basename(p)}`);
    fs.symlinkSync(dir, linkedDir);
    const fileLink = `${p}.link`;
    fs.symlinkSync(p, fileLink); // dangling until the first open creates the page file
    const db = openFile(fileLink, onEachWrite());
    db.insert("a", "1");
    for (const other of [p, path.join(linkedDir, path.basename(p)), path.relative(".", p)]) {
      assert.throws(() => openFile(other), { code: "EMDB_LOCK_BUSY" }, other);
    }
    db.close();
    // The sidecars are named after the page file, whichever name opened it.
    assert.ok(fs.lstatSync(p).isFile());
    assert.ok(fs.existsSync(`${p}.wal`) && fs.existsSync(`${p}.lock`));
    assert.ok(!fs.existsSync(`${fileLink}.wal`) && !fs.existsSync(`${fileLink}.lock`));
    const again = openFile(path.join(linkedDir, path.basename(p)));
    assert.equal(again.get("a")?.toString(), "1");
    assert.throws(() => openFile(fileLink), { code: "EMDB_LOCK_BUSY" });
    assert.deepEqual(again.check(), []);
    again.close();
  });

  test("`..` after a symlinked directory is its target's parent, as the kernel reads it; a path ending in / is refused", () => {
    const p = freshPath();
    const db = openFile(p, onEachWrite());
    db.insert("k", "v");
    db.close();
    // link -> <dir of p>/sub, so link/.. is the directory of p, not the directory of link.
    const sub = path.join(path.dirname(p), `sub-${path.basename(p)}`);
    fs.mkdirSync(sub);
    const other = fs.mkdtempSync(path.join(root, "links-"));
    const link = path.join(other, "link");
    fs.symlinkSync(sub, link);
    const through = `${link}/../${path.basename(p)}`;
    const again = openFile(through);
    assert.equal(again.get("k")?.toString(), "v");
    assert.throws(() => openFile(p), { code: "EMDB_LOCK_BUSY" });
    again.close();
    assert.ok(!fs.existsSync(path.join(other, path.basename(p))), "no new database beside link");
    assert.throws(() => openFile(`${p}/`), { code: "EMDB_INVALID_CONFIG" });
  });

  test("a hard link to an open database's page file is EMDB_LOCK_BUSY, both ways (with the native addon)", {
    skip: native === undefined ? "no native addon: no flock" : false,
  }, () => {
    const p = freshPath();
    const link = `${p}.hardlink`;
    let db = openFile(p, onEachWrite());
    db.insert("a", "1");
    fs.linkSync(p, link);
    assert.throws(() => openFile(link), { code: "EMDB_LOCK_BUSY" });
    assert.ok(!fs.existsSync(`${link}.wal`), "the refused open created no WAL");
    db.close();
    db = openFile(link);
    assert.equal(db.get("a")?.toString(), "1");
    assert.throws(() => openFile(p), { code: "EMDB_LOCK_BUSY" });
    // compact() renames a new page file over the old one: the lock moves to the new file.
    db.compact();
    const second = `${p}.hardlink2`;
    fs.linkSync(link, second);
    assert.throws(() => openFile(second), { code: "EMDB_LOCK_BUSY" });
    assert.deepEqual(db.check(), []);
    db.close();
  });

  test("a database opened by a relative path stays where it was opened after process.chdir()", () => {
    const p = freshPath();
    const elsewhere = fs.mkdtempSync(path.join(root, "cwd-"));
    const cwd = process.cwd();
    try {
      process.chdir(path.dirname(p));
      const db = openFile(path.basename(p), onEachWrite());
      process.chdir(elsewhere);
      db.insert("a", "1");
      db.compact(); // renames a new page file over the old one, by name
      db.insert("b", "2");
      db.close();
    } finally {
      process.chdir(cwd);
    }
    assert.deepEqual(fs.readdirSync(elsewhere), [], "nothing written relative to the new cwd");
    const again = openFile(p);
    assert.deepEqual(
      [...again.iter()].map(([k, v]) => `${k}=${v}`),
      ["a=1", "b=2"],
    );
    assert.deepEqual(again.check(), []);
    again.close();
  });

  test("a database held by another process is EMDB_LOCK_BUSY; once that process is killed it opens", async () => {
    const p = freshPath();
    const child = spawn(process.execPath, [
      "--import",
      "tsx",
      "-e",
      `import("${path.resolve("src/index.ts")}").then(({ Emdb }) => { Emdb.open(${JSON.stringify(p)}); console.log("open"); setInterval(() => {}, 1000); })`,
    ]);
    await new Promise<void>((resolve) => child.stdout.once("data", () => resolve()));
    assert.throws(() => openFile(p), { code: "EMDB_LOCK_BUSY" });
    child.kill("SIGKILL");
    await new Promise((resolve) => child.once("close", resolve));
    const db = openFile(p);
    assert.deepEqual(db.check(), []);
    db.close();
  });
});
