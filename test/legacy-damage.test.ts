/**
 * Random damage to the files written by emdb-rs (byte flips and truncations of each fixture,
 * and of the v3 WAL sidecar), then `Emdb.open`, which migrates them. Every open must either
 * throw an `EmdbError` and leave the damaged original where it was, or give a database that
 * passes `check()`, holds exactly what the legacy reader reads from the kept original, and
 * keeps that original byte for byte as the backup. Never another kind of exception, a hang
 * or a lost original.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, test } from "node:test";
import { readLegacy } from "../migrations/read-legacy.js";
import { Emdb, EmdbError } from "../src/index.js";
import { EMDB_RS_FIXTURES } from "./helpers/emdb-rs-fixtures.js";
import { Prng, testSeed, withSeed } from "./helpers/prng.js";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-legacy-damage-"));
after(() => fs.rmSync(root, { recursive: true, force: true }));

const MAIN_FILES = ["v1-nottl.emdb", "v1-ttl.emdb", "v2-ttl.emdb", "v1-then-v2.emdb", "v3.emdb"];

function damage(rng: Prng, bytes: Buffer): { image: Buffer; what: string } {
  if (rng.chance(0.75)) {
    const image = Buffer.from(bytes);
    const at = rng.int(image.length);
    image[at]! ^= 1 + rng.int(255);
    return { image, what: `a flip at ${at}` };
  }
  const n = rng.int(bytes.length);
  return { image: bytes.subarray(0, n), what: `a truncation to ${n} bytes` };
}

/** The backup a migration left beside `p` (`p.v1.bak`, `p.v2.bak` or `p.v3.bak`), if any. */
function mainBackup(p: string): string | undefined {
  return [1, 2, 3].map((v) => `${p}.v${v}.bak`).find((b) => fs.existsSync(b));
}

/** Entries as comparable strings: hex key, hex value. */
function listed(entries: Iterable<[Buffer, Buffer]>): string[] {
  return [...entries].map(([k, v]) => `${k.toString("hex")}=${v.toString("hex")}`);
}

test("damaged emdb-rs files: an EmdbError with the original in place, or the reader's content and the original kept", {
  timeout: 120_000,
}, () => {
  const base = testSeed();
  let opened = 0;
  let refused = 0;
  withSeed(base, () => {
    for (let i = 0; i < 300; i++) {
      const seed = (base + i) >>> 0;
      withSeed(seed, () => {
        const rng = new Prng(seed);
        const name = rng.pick(MAIN_FILES);
        const main = fs.readFileSync(path.join(EMDB_RS_FIXTURES, name));
        const walFixture = path.join(EMDB_RS_FIXTURES, `${name}.wal`);
        let wal: Buffer | undefined = fs.existsSync(walFixture)
          ? fs.readFileSync(walFixture)
          : undefined;
        let image: Buffer = main;
        let what: string;
        if (wal !== undefined && rng.chance(0.4)) {
          const d = damage(rng, wal);
          wal = d.image;
          what = `${name}.wal: ${d.what}`;
        } else {
          const d = damage(rng, main);
          image = d.image;
          what = `${name}: ${d.what}`;
        }
        const dir = fs.mkdtempSync(path.join(root, "t-"));
        const p = path.join(dir, "db.emdb");
        fs.writeFileSync(p, image);
        if (wal !== undefined) fs.writeFileSync(`${p}.wal`, wal);
        try {
          const db = Emdb.open(p);
          let got: string[];
          try {
            got = listed(db.iter());
            assert.equal(got.length, db.len(), `after ${what} iteration and len() disagree`);
            assert.deepEqual(db.check(), [], `after ${what}`);
          } finally {
            db.close();
          }
          opened++;
          // Only an empty image opens as a new database; anything else was migrated, and
          // the original (with its WAL) is kept byte for byte.
          if (image.length === 0) assert.deepEqual(got, [], `after ${what}`);
          else {
            const backup = mainBackup(p);
            const kept = backup === undefined ? undefined : fs.readFileSync(backup);
            assert.ok(kept?.equals(image), `after ${what} the original is not kept byte for byte`);
            // What the reader makes of the damaged original is what the database holds.
            const legacy = readLegacy(backup!, { now: Date.now() }).entries;
            assert.deepEqual(
              got,
              listed(legacy.map((e) => [e.key, e.value])),
              `after ${what} the content differs from the reader's`,
            );
            if (wal !== undefined) {
              assert.ok(
                fs.readFileSync(`${p}.v3.bak.wal`).equals(wal),
                `after ${what} the original WAL is not kept byte for byte`,
              );
            }
          }
        } catch (err) {
          if (!(err instanceof EmdbError)) throw err;
          refused++;
          assert.ok(fs.readFileSync(p).equals(image), `after ${what} the refused original changed`);
          if (wal !== undefined) {
            assert.ok(
              fs.readFileSync(`${p}.wal`).equals(wal),
              `after ${what} the refused original WAL changed`,
            );
          }
        } finally {
          fs.rmSync(dir, { recursive: true, force: true });
        }
      });
    }
    assert.ok(
      opened > 0 && refused > 0,
      `both outcomes occur (opened ${opened}, refused ${refused})`,
    );
  });
});
