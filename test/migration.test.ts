/**
 * Opening files written by emdb-rs: every fixture migrates to exactly its expected content,
 * survives a reopen in emdb's own format, and leaves the original byte for byte as a backup.
 * Byte surgery on logs shows the valid prefix is migrated and nothing is cut from the
 * original. Fixtures are copied to a temp dir; ../shared is never written.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { Emdb } from "../src/index.js";
import { EMDB_RS_FIXTURES } from "./helpers/emdb-rs-fixtures.js";
import { begin, buildLog, end, ins, rm } from "./helpers/legacy-writer.js";

const FIXTURES = EMDB_RS_FIXTURES;
const NOW = 1_795_300_000_000;
const root = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-migrate-"));
after(() => fs.rmSync(root, { recursive: true, force: true }));

interface Expected {
  count: number;
  entries: { key: string; value: string; expiresAt: number | null }[];
}

function copyFixture(name: string): { dir: string; file: string } {
  const dir = fs.mkdtempSync(path.join(root, `${name}-`));
  const file = path.join(dir, "db.emdb");
  fs.copyFileSync(path.join(FIXTURES, `${name}.emdb`), file);
  if (fs.existsSync(path.join(FIXTURES, `${name}.emdb.wal`))) {
    fs.copyFileSync(path.join(FIXTURES, `${name}.emdb.wal`), `${file}.wal`);
  }
  return { dir, file };
}

function openAt(file: string): Emdb {
  return Emdb.builder()
    .path(file)
    .clock(() => NOW)
    .build();
}

function dump(db: Emdb): Expected["entries"] {
  return [...db.iter()].map(([k, v]) => ({
    key: k.toString("hex"),
    value: v.toString("hex"),
    expiresAt: db.expiresAt(k)?.getTime() ?? null,
  }));
}

describe("the emdb-rs fixtures", () => {
  for (const [name, version] of [
    ["v1-nottl", 1],
    ["v1-ttl", 1],
    ["v2-ttl", 2],
    ["v1-then-v2", 1],
    ["v3", 3],
  ] as const) {
    test(`${name}: every key, value and expiry; again after reopen; the original kept as .v${version}.bak`, () => {
      const expected = JSON.parse(
        fs.readFileSync(path.join(FIXTURES, `${name}.emdb.expected.json`), "utf8"),
      ) as Expected;
      const { file } = copyFixture(name);
      const original = fs.readFileSync(file);
      const originalWal = fs.existsSync(`${file}.wal`) ? fs.readFileSync(`${file}.wal`) : undefined;
      let db = openAt(file);
      assert.equal(db.len(), expected.count);
      assert.deepEqual(dump(db), expected.entries);
      const report = db.migrate();
      assert.equal(report?.from, version === 3 ? "page-v3" : `log-v${version}`);
      assert.equal(db.stats().disk?.migratedFrom, report?.from);
      assert.deepEqual(db.check(), []);
      db.close();

      assert.deepEqual(
        fs.readFileSync(`${file}.v${version}.bak`),
        original,
        "backup is the original byte for byte",
      );
      if (originalWal !== undefined)
        assert.deepEqual(fs.readFileSync(`${file}.v3.bak.wal`), originalWal);
      assert.equal(fs.readFileSync(file).subarray(0, 8).toString("latin1"), "EMDBNODE");
      assert.ok(!fs.existsSync(`${file}.migrate.tmp`));

      db = openAt(file);
      assert.equal(db.migrate(), undefined, "a current file is not migrated again");
      assert.deepEqual(dump(db), expected.entries);
      assert.deepEqual(db.check(), []);
      db.close();
    });
  }

  test("the transaction id counter carries over", () => {
    const { file } = copyFixture("v2-ttl");
    const db = openAt(file);
    const lastTxId = db.migrate()!.lastTxId;
    assert.ok(lastTxId > 0);
    assert.equal(db.stats().lastTxId, lastTxId);
    db.transaction((tx) => tx.insert("new", "tx"));
    assert.equal(db.stats().lastTxId, lastTxId + 1);
    db.close();
  });

  test("Emdb.migrate(path) upgrades without opening and is a no-op on a current file", () => {
    const { file } = copyFixture("v1-ttl");
    const phases = new Set<string>();
    const report = Emdb.migrate(file, { clock: () => NOW, onProgress: (p) => phases.add(p.phase) });
    assert.equal(report?.from, "log-v1");
    assert.ok(phases.has("migrate-write"), `progress phases: ${[...phases].join(", ")}`);
    assert.equal(Emdb.migrate(file), undefined);
    assert.equal(Emdb.migrate(path.join(path.dirname(file), "missing.emdb")), undefined);
  });
});

function writeLog(bytes: Buffer): string {
  const dir = fs.mkdtempSync(path.join(root, "log-"));
  const file = path.join(dir, "db.emdb");
  fs.writeFileSync(file, bytes);
  return file;
}

function keysAfterMigration(file: string): string[] {
  const db = openAt(file);
  try {
    assert.deepEqual(db.check(), []);
    return [...db.iter()].map(([k, v]) => `${k}=${v}`);
  } finally {
    db.close();
  }
}

describe("byte surgery on legacy logs: the valid prefix is migrated, the original is kept whole", () => {
  const ops = [
    ins("a", "1", 0),
    ins("b", "2", 0),
    begin(7, 2),
    ins("c", "3", 0),
    rm("a"),
    end(7),
    ins("d", "4", 0),
  ];
  const { bytes, offsets } = buildLog({ version: 2 }, ops);

  const cases: [string, () => Buffer, string[]][] = [
    ["intact", () => bytes, ["b=2", "c=3", "d=4"]],
    ["a torn last record", () => bytes.subarray(0, bytes.length - 3), ["b=2", "c=3"]],
    [
      "a flipped CRC in the last record",
      () => {
        const b = Buffer.from(bytes);
        b[b.length - 1]! ^= 0x40;
        return b;
      },
      ["b=2", "c=3"],
    ],
    ["a batch missing its BatchEnd", () => bytes.subarray(0, offsets[5]!), ["a=1", "b=2"]],
    [
      "a BatchEnd with the wrong count",
      () =>
        buildLog({ version: 2 }, [
          ins("a", "1", 0),
          ins("b", "2", 0),
          begin(7, 3),
          ins("c", "3", 0),
          rm("a"),
          end(7),
          ins("d", "4", 0),
        ]).bytes,
      ["a=1", "b=2"],
    ],
  ];
  for (const [name, make, expected] of cases) {
    test(name, () => {
      const damaged = make();
      const file = writeLog(damaged);
      assert.deepEqual(keysAfterMigration(file), expected);
      assert.deepEqual(
        fs.readFileSync(`${file}.v2.bak`),
        damaged,
        "the backup holds every original byte",
      );
    });
  }

  test("non-ttl and ttl inserts in one file, decided per record", () => {
    const file = writeLog(
      buildLog({ version: 1, flags: 0 }, [
        ins("plain", "p"),
        ins("timed", "t", NOW + 5000),
        ins("gone", "g", NOW - 1),
      ]).bytes,
    );
    const db = openAt(file);
    assert.deepEqual([...db.keys()].map(String), ["plain", "timed"]);
    assert.equal(db.expiresAt("timed")?.getTime(), NOW + 5000);
    assert.equal(db.migrate()?.expiredDropped, 1, "expired records are not carried over");
    db.close();
  });

  test("a key longer than MAX_KEY_SIZE is refused and nothing changes", () => {
    const log = buildLog({ version: 2 }, [ins("k".repeat(2000), "v", 0)]).bytes;
    const file = writeLog(log);
    assert.throws(() => openAt(file), { code: "EMDB_KEY_TOO_LARGE" });
    assert.deepEqual(fs.readFileSync(file), log);
    assert.ok(!fs.existsSync(`${file}.migrate.tmp`) && !fs.existsSync(`${file}.v2.bak`));
  });

  test("with pages under 4 KiB, a key over a quarter of the page is refused the same way", () => {
    // 200 bytes: under MAX_KEY_SIZE, over the 128 that 512-byte pages hold.
    const log = buildLog({ version: 2 }, [ins("ok", "v", 0), ins("k".repeat(200), "v", 0)]).bytes;
    const file = writeLog(log);
    const open = (pageSize: number) =>
      Emdb.builder()
        .path(file)
        .pageSize(pageSize)
        .clock(() => NOW)
        .build();
    assert.throws(() => open(512), {
      code: "EMDB_KEY_TOO_LARGE",
      message: /key of 200 bytes; emdb's maximum here is 128 \(a quarter of the 512-byte page\)/,
    });
    assert.deepEqual(fs.readFileSync(file), log);
    assert.ok(!fs.existsSync(`${file}.migrate.tmp`) && !fs.existsSync(`${file}.v2.bak`));
    // The same file migrates into pages that hold the key.
    const db = open(1024);
    assert.deepEqual([...db.keys()].map(String), ["k".repeat(200), "ok"]);
    assert.deepEqual(db.check(), []);
    db.close();
  });

  test("an unknown legacy version is EMDB_VERSION_MISMATCH and an unknown magic EMDB_MAGIC_MISMATCH", () => {
    const file = writeLog(buildLog({ version: 9 }, []).bytes);
    assert.throws(() => openAt(file), { code: "EMDB_VERSION_MISMATCH" });
    const junk = writeLog(Buffer.alloc(64, 0xaa));
    assert.throws(() => openAt(junk), { code: "EMDB_MAGIC_MISMATCH" });
    assert.deepEqual(fs.readFileSync(junk), Buffer.alloc(64, 0xaa));
  });

  test("an older backup of the same name is never overwritten", () => {
    const file = writeLog(bytes);
    fs.writeFileSync(`${file}.v2.bak`, "someone's older backup");
    keysAfterMigration(file);
    assert.equal(fs.readFileSync(`${file}.v2.bak`, "utf8"), "someone's older backup");
    assert.deepEqual(fs.readFileSync(`${file}.v2.bak.1`), bytes);
  });
});
