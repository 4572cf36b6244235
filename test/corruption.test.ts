/**
 * Random damage to the page file and the WAL: byte flips and truncations, many seeds.
 * Every open must either return correct data (for WAL damage: every op logged before the
 * damaged offset, and nothing that was never written) or throw EMDB_CORRUPTED with an
 * offset. Never wrong data, never a hang, never a crash of the process.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, test } from "node:test";
import { Emdb, EmdbError, onEachWrite } from "../src/index.js";
import { Prng, testSeed, withSeed } from "./helpers/prng.js";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-corrupt-"));
after(() => fs.rmSync(root, { recursive: true, force: true }));

interface Image {
  page: Buffer;
  wal: Buffer;
  /** WAL size after each op, and the model state after each op. */
  walEnds: number[];
  states: Map<string, string>[];
}

/** A database image with checkpointed data in the page file and more ops in the WAL. */
function makeImage(seed: number): Image {
  const rng = new Prng(seed);
  const dir = fs.mkdtempSync(path.join(root, "img-"));
  const p = path.join(dir, "db.emdb");
  const db = Emdb.builder()
    .path(p)
    .pageSize(512)
    .flushPolicy(onEachWrite())
    .checkpointThreshold(1 << 30)
    .build();
  const model = new Map<string, string>();
  for (let i = 0; i < 300; i++) {
    const k = `k${rng.int(150)}`;
    const v = rng.chance(0.05) ? "y".repeat(1000 + rng.int(2000)) : `v${i}`;
    db.insert(k, v);
    model.set(k, v);
  }
  db.flush(); // into the page file; the WAL is empty again
  const states: Map<string, string>[] = [new Map(model)];
  // Where the records end (the file itself runs on into preallocated zeros).
  const walEnd = () => {
    const bytes = db.stats().disk?.walBytes;
    assert.equal(typeof bytes, "number");
    return bytes as number;
  };
  const walEnds: number[] = [walEnd()];
  for (let i = 0; i < 40; i++) {
    const k = `k${rng.int(150)}`;
    if (rng.chance(0.7)) {
      db.insert(k, `w${i}`);
      model.set(k, `w${i}`);
    } else {
      db.remove(k);
      model.delete(k);
    }
    states.push(new Map(model));
    walEnds.push(walEnd());
  }
  // The image a kill -9 would leave right now (everything is synced under onEachWrite).
  const image = { page: fs.readFileSync(p), wal: fs.readFileSync(`${p}.wal`), walEnds, states };
  db.close();
  fs.rmSync(dir, { recursive: true, force: true });
  return image;
}

function openImage(page: Buffer, wal: Buffer): Map<string, string> | EmdbError {
  const dir = fs.mkdtempSync(path.join(root, "try-"));
  const p = path.join(dir, "db.emdb");
  fs.writeFileSync(p, page);
  fs.writeFileSync(`${p}.wal`, wal);
  try {
    const db = Emdb.builder().path(p).pageSize(512).build();
    try {
      const m = new Map<string, string>();
      for (const [k, v] of db.iter()) m.set(k.toString(), v.toString());
      assert.deepEqual(db.check(), []);
      return m;
    } finally {
      db.close();
    }
  } catch (err) {
    if (err instanceof EmdbError && err.code === "EMDB_CORRUPTED") {
      assert.equal(
        typeof err.offset,
        "number",
        `corruption reported without an offset: ${err.message}`,
      );
      return err;
    }
    throw err;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function sameMap(a: Map<string, string>, b: Map<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

test("an undamaged image opens to the full state", () => {
  const img = makeImage(1);
  const got = openImage(img.page, img.wal);
  assert.ok(got instanceof Map && sameMap(got, img.states[img.states.length - 1]!));
});

// Each test runs under one seed: the image and every round derive from it, so the seed a
// failure prints (EMDB_SEED=…) replays the whole test, and the message names the round.

test("page-file byte flips and truncations: correct data or EMDB_CORRUPTED", () => {
  const base = testSeed();
  withSeed(base, () => {
    const img = makeImage(base);
    const full = img.states[img.states.length - 1]!;
    let corrupted = 0;
    for (let i = 0; i < 400; i++) {
      const rng = new Prng((base + i) >>> 0);
      const page = Buffer.from(img.page);
      let damaged: Buffer = page;
      let what: string;
      if (rng.chance(0.8)) {
        const at = rng.int(page.length);
        page[at]! ^= 1 + rng.int(255);
        what = `a flip at ${at}`;
      } else {
        damaged = page.subarray(0, rng.int(page.length));
        what = `a truncation to ${damaged.length} bytes`;
      }
      const got = openImage(damaged, img.wal);
      if (got instanceof EmdbError) corrupted++;
      else {
        assert.ok(
          sameMap(got, full),
          `round ${i}: after ${what} the page file opened to different data`,
        );
      }
    }
    assert.ok(corrupted > 0, "some damage must be detected");
  });
});

test("a damaged magic in either meta page: correct data or EMDB_CORRUPTED, never 'not an emdb database'", () => {
  const base = testSeed();
  withSeed(base, () => {
    const img = makeImage(base + 3);
    const full = img.states[img.states.length - 1]!;
    // Meta slot 0 at offset 0 and slot 1 at one page (the image uses 512-byte pages).
    for (const slot of [0, 512]) {
      for (let i = 0; i < 8; i++) {
        const page = Buffer.from(img.page);
        page[slot + i]! ^= 0x5a;
        const got = openImage(page, img.wal);
        if (!(got instanceof EmdbError)) {
          assert.ok(sameMap(got, full), `magic byte ${slot + i} damaged: different data`);
        }
      }
    }
  });
});

test("WAL byte flips and truncations: every op before the damage, or EMDB_CORRUPTED", () => {
  const base = testSeed();
  withSeed(base, () => {
    const img = makeImage(base + 7);
    let corrupted = 0;
    let prefixes = 0;
    for (let i = 0; i < 400; i++) {
      const rng = new Prng((base + i) >>> 0);
      const wal = Buffer.from(img.wal);
      // Mostly inside the records; sometimes anywhere, preallocated zeros included.
      const span = rng.chance(0.9) ? img.walEnds[img.walEnds.length - 1]! : wal.length;
      const at = rng.int(span);
      let damaged: Buffer = wal;
      const flipped = rng.chance(0.6);
      if (flipped) wal[at]! ^= 1 + rng.int(255);
      else damaged = wal.subarray(0, at);
      const got = openImage(img.page, damaged);
      if (flipped && at >= img.walEnds[0]! && at < img.walEnds[img.walEnds.length - 2]!) {
        // Each op was synced before the next was written, and the next says so (a Synced
        // record): damage to any op but the last is reported, never cut as a torn tail.
        assert.ok(
          got instanceof EmdbError,
          `round ${i}: damage at WAL offset ${at} went unreported`,
        );
      }
      if (got instanceof EmdbError) {
        corrupted++;
        continue;
      }
      // Ops whose records end at or before the damage must all be there.
      let floor = 0;
      while (floor + 1 < img.walEnds.length && img.walEnds[floor + 1]! <= at) floor++;
      const match = img.states.findIndex((s, L) => L >= floor && sameMap(s, got));
      assert.ok(
        match >= 0,
        `round ${i}: damage at WAL offset ${at} opened to a state that is not a prefix of at least ${floor} ops`,
      );
      if (match < img.states.length - 1) prefixes++;
    }
    assert.ok(
      corrupted > 0 && prefixes > 0,
      `both outcomes occur (corrupted ${corrupted}, torn tails ${prefixes})`,
    );
  });
});
