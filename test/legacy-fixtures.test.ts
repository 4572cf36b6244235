/**
 * Every file written by a real emdb-rs build (fixtures/emdb-rs) reads back exactly as the
 * same Rust version reported it, and reading it leaves the file byte for byte unchanged.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, test } from "node:test";
import { detectFormat } from "../migrations/detect.js";
import { type LegacyProgress, readLegacy, readLegacyEach } from "../migrations/read-legacy.js";
import { EMDB_RS_FIXTURES } from "./helpers/emdb-rs-fixtures.js";

const FIXTURES = EMDB_RS_FIXTURES;
const NOW = 1_795_300_000_000;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-legacy-fixtures-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

interface Expected {
  writer: string;
  count: number;
  entries: { key: string; value: string; expiresAt: number | null }[];
}

const cases = [
  { name: "v1-nottl.emdb", format: "log-v1", lastTxId: 0, files: ["v1-nottl.emdb"] },
  { name: "v1-ttl.emdb", format: "log-v1", lastTxId: 0, files: ["v1-ttl.emdb"] },
  { name: "v2-ttl.emdb", format: "log-v2", lastTxId: 53, files: ["v2-ttl.emdb"] },
  { name: "v1-then-v2.emdb", format: "log-v1", lastTxId: 19, files: ["v1-then-v2.emdb"] },
  { name: "v3.emdb", format: "page-v3", lastTxId: 1, files: ["v3.emdb", "v3.emdb.wal"] },
] as const;

function copyFixture(files: readonly string[]): string {
  const sub = fs.mkdtempSync(path.join(dir, "f-"));
  for (const f of files) fs.copyFileSync(path.join(FIXTURES, f), path.join(sub, f));
  return path.join(sub, files[0]!);
}

for (const c of cases) {
  test(`${c.name} yields exactly its expected.json and is left unchanged`, () => {
    const expected = JSON.parse(
      fs.readFileSync(path.join(FIXTURES, `${c.name}.expected.json`), "utf8"),
    ) as Expected;
    const file = copyFixture(c.files);
    const before = c.files.map((f) => fs.readFileSync(path.join(path.dirname(file), f)));

    const progress: LegacyProgress[] = [];
    const got = readLegacy(file, { now: NOW, onProgress: (p) => progress.push(p) });

    assert.equal(got.format, c.format);
    assert.equal(got.lastTxId, c.lastTxId);
    assert.equal(got.entries.length, expected.count);
    assert.deepEqual(
      got.entries.map((e) => ({
        key: e.key.toString("hex"),
        value: e.value.toString("hex"),
        expiresAt: e.expiresAt === 0 ? null : e.expiresAt,
      })),
      expected.entries,
    );
    assert.equal(got.stoppedAt, undefined, "a file from a clean writer has no torn tail");
    assert.equal(got.validBytes, before[0]!.length);
    if (c.format === "page-v3") {
      assert.equal(got.wal?.validBytes, before[1]!.length);
      assert.equal(got.wal?.stoppedAt, undefined);
    }
    c.files.forEach((f, i) => {
      assert.ok(
        fs.readFileSync(path.join(path.dirname(file), f)).equals(before[i]!),
        `${f} changed`,
      );
    });
    assert.ok(progress.length > 0, "progress is reported");
    const last = progress.at(-1)!;
    assert.ok(last.bytesDone <= last.bytesTotal && last.bytesDone > 0);
  });
}

test("the fixtures hold expired records, which `now` drops and counts", () => {
  for (const c of cases) {
    const file = copyFixture(c.files);
    const withNow = readLegacy(file, { now: NOW });
    const all = readLegacy(file);
    assert.equal(all.expiredDropped, 0);
    assert.equal(all.entries.length, withNow.entries.length + withNow.expiredDropped, c.name);
    const dropped = all.entries.filter((e) => e.expiresAt !== 0 && e.expiresAt <= NOW).length;
    assert.equal(dropped, withNow.expiredDropped, c.name);
  }
  // v1-nottl has no expiry field at all, the others carry expired records.
  assert.equal(readLegacy(copyFixture(["v1-nottl.emdb"]), { now: NOW }).expiredDropped, 0);
  assert.ok(readLegacy(copyFixture(["v1-ttl.emdb"]), { now: NOW }).expiredDropped > 0);
});

test("detectFormat classifies every fixture", () => {
  assert.deepEqual(detectFormat(copyFixture(["v1-nottl.emdb"])), {
    kind: "log",
    version: 1,
    ttlFlag: false,
  });
  assert.deepEqual(detectFormat(copyFixture(["v1-ttl.emdb"])), {
    kind: "log",
    version: 1,
    ttlFlag: true,
  });
  assert.deepEqual(detectFormat(copyFixture(["v2-ttl.emdb"])), {
    kind: "log",
    version: 2,
    ttlFlag: true,
  });
  assert.deepEqual(detectFormat(copyFixture(["v1-then-v2.emdb"])), {
    kind: "log",
    version: 1,
    ttlFlag: true,
  });
  assert.deepEqual(detectFormat(copyFixture(["v3.emdb"])), { kind: "page-v3" });
});

test("the page file without its WAL yields only the checkpointed content", () => {
  const withWal = readLegacy(copyFixture(["v3.emdb", "v3.emdb.wal"]));
  const pagesOnly = readLegacy(copyFixture(["v3.emdb"]));
  assert.equal(pagesOnly.wal, undefined);
  assert.notDeepEqual(
    pagesOnly.entries.map((e) => e.key.toString("hex") + e.value.toString("hex")),
    withWal.entries.map((e) => e.key.toString("hex") + e.value.toString("hex")),
  );
});

test("readLegacyEach streams the same entries, in the same order, with the same report", () => {
  for (const c of cases) {
    const file = copyFixture(c.files);
    const { entries, ...whole } = readLegacy(file, { now: NOW });
    const seen: [string, string, number][] = [];
    const scan = readLegacyEach(
      file,
      (bytes, ks, ke, vs, ve, exp) => {
        seen.push([bytes.toString("hex", ks, ke), bytes.toString("hex", vs, ve), exp]);
      },
      { now: NOW },
    );
    assert.deepEqual(
      seen,
      entries.map((e) => [e.key.toString("hex"), e.value.toString("hex"), e.expiresAt]),
      c.name,
    );
    const { count, ...rest } = scan;
    assert.equal(count, entries.length);
    assert.deepEqual(rest, whole, c.name);
  }
});
