/**
 * The emdb-rs 0.6 page file reader (§2) with its WAL (§3) and legacy tail (§2.12): byte
 * surgery on copies of the v3 fixture. Damage inside the page structure is EMDB_CORRUPTED
 * with an offset inside the damaged page, a cycle never hangs, and nothing is ever written.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { crc32 } from "node:zlib";
import { parsePageHeader, readPageFileV3, walPathFor } from "../migrations/page-v3.js";
import { type LegacyContent, readLegacy } from "../migrations/read-legacy.js";
import { type EmdbError, isEmdbError } from "../src/errors.js";
import { MAX_EXPIRY_MS } from "../src/ttl/ttl.js";
import { EMDB_RS_FIXTURES } from "./helpers/emdb-rs-fixtures.js";
import { encodeRecord, type LogOp } from "./helpers/legacy-writer.js";

const P = 4096;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-legacy-v3-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const pristine = fs.readFileSync(path.join(EMDB_RS_FIXTURES, "v3.emdb"));
const pristineWal = fs.readFileSync(path.join(EMDB_RS_FIXTURES, "v3.emdb.wal"));

const u64 = (b: Buffer, at: number) => Number(b.readBigUInt64LE(at));
const setU64 = (b: Buffer, at: number, v: number) => b.writeBigUInt64LE(BigInt(v), at);

/** The fixture's structure, found by walking it the way the reader must. */
const layout = (() => {
  const pageCount = u64(pristine, 36);
  const root = u64(pristine, 44);
  const internals: number[] = [];
  let id = root;
  while (pristine[id * P + 16] === 0) {
    internals.push(id);
    id = u64(pristine, id * P + 19);
  }
  const leaves: number[] = [];
  const values: { id: number; linkAt: number }[] = [];
  for (; id !== 0; id = u64(pristine, id * P + 19)) {
    leaves.push(id);
    let at = id * P + 27;
    for (let i = 0; i < pristine.readUInt16LE(id * P + 17); i++) {
      at += 2 + pristine.readUInt16LE(at);
      values.push({ id: u64(pristine, at), linkAt: at });
      at += 8;
    }
  }
  const chains = values.map((v) => {
    const ids: number[] = [];
    for (let o = u64(pristine, v.id * P + 28); o !== 0; o = u64(pristine, o * P + 16)) ids.push(o);
    return { head: v.id, ids };
  });
  const longChain = chains.find((c) => c.ids.length >= 2)!;
  return { pageCount, root, internals, leaves, values, longChain };
})();

let n = 0;
/** A temp copy of the fixture (page file and WAL) after `patch`; returns the page file path. */
function copy(patch?: (page: Buffer) => void, wal: Buffer | null = pristineWal): string {
  const sub = path.join(dir, `db-${n++}`);
  fs.mkdirSync(sub);
  const file = path.join(sub, "v3.emdb");
  const bytes = Buffer.from(pristine);
  patch?.(bytes);
  fs.writeFileSync(file, bytes);
  if (wal !== null) fs.writeFileSync(walPathFor(file), wal);
  return file;
}

/** Reads `file` and checks that neither it nor its WAL changed. */
function read(file: string): LegacyContent {
  const before = fs.readFileSync(file);
  const walBefore = fs.existsSync(walPathFor(file)) ? fs.readFileSync(walPathFor(file)) : undefined;
  try {
    return readLegacy(file);
  } finally {
    assert.ok(fs.readFileSync(file).equals(before), "page file changed");
    if (walBefore !== undefined)
      assert.ok(fs.readFileSync(walPathFor(file)).equals(walBefore), "WAL changed");
  }
}

function fixPageCrc(b: Buffer, id: number): void {
  b.writeUInt32LE(crc32(b.subarray(id * P + 16, (id + 1) * P)), id * P + 12);
}

function fixHeaderCrc(b: Buffer): void {
  b.writeUInt32LE(crc32(b.subarray(0, 100)), 100);
}

function corruptedAt(lo: number, hi: number) {
  return (e: unknown) => {
    assert.ok(isEmdbError(e, "EMDB_CORRUPTED"), String(e));
    const off = (e as EmdbError).offset!;
    assert.ok(off >= lo && off < hi, `offset ${off} not in [${lo}, ${hi})`);
    return true;
  };
}

const dump = (c: LegacyContent) =>
  c.entries.map((e) => [e.key.toString("hex"), e.value.toString("hex"), e.expiresAt]);

describe("damaged pages", () => {
  const targets = [
    ["internal node", () => layout.internals[0]!],
    ["first leaf", () => layout.leaves[0]!],
    ["last leaf", () => layout.leaves.at(-1)!],
    ["value leaf", () => layout.values[5]!.id],
    ["overflow page", () => layout.longChain.ids[1]!],
  ] as const;
  for (const [what, pick] of targets) {
    test(`a flipped byte inside the ${what} is EMDB_CORRUPTED inside that page`, () => {
      const id = pick();
      for (const at of [16, 30, 2000, P - 1]) {
        const file = copy((b) => {
          b[id * P + at]! ^= 0x04;
        });
        assert.throws(
          () => read(file),
          corruptedAt(id * P, (id + 1) * P),
          `byte ${at} of page ${id}`,
        );
      }
    });
  }

  test("an expires_at past the latest Date (8.64e15 ms, any u64 in emdb-rs) is clamped to it, not corruption", () => {
    const before = dump(read(copy()));
    assert.ok(!before.some(([, , at]) => at === MAX_EXPIRY_MS));
    for (const big of [2 ** 60, MAX_EXPIRY_MS + 1]) {
      const file = copy((b) => {
        for (const v of layout.values) {
          b.writeBigUInt64LE(BigInt(big), v.id * P + 20);
          fixPageCrc(b, v.id);
        }
      });
      const after = dump(read(file));
      // Every record the WAL does not rewrite now carries the clamped deadline.
      const clamped = after.filter(([, , at]) => at === MAX_EXPIRY_MS);
      assert.ok(clamped.length > 0, String(big));
      assert.equal(after.length, before.length);
    }
  });

  test("a page type changed in the (unchecksummed) prefix is caught as a type mismatch", () => {
    const id = layout.values[0]!.id;
    const file = copy((b) => {
      b[id * P] = 4;
    });
    assert.throws(() => read(file), corruptedAt(id * P, id * P + 1));
    const file2 = copy((b) => {
      b[id * P] = 9;
    });
    assert.throws(() => read(file2), corruptedAt(id * P, id * P + 1));
  });

  test("a leaf entry pointing past page_count is EMDB_CORRUPTED at the link", () => {
    const v = layout.values[3]!;
    const leaf = Math.floor(v.linkAt / P);
    const file = copy((b) => {
      setU64(b, v.linkAt, layout.pageCount + 10);
      fixPageCrc(b, leaf);
    });
    assert.throws(() => read(file), corruptedAt(v.linkAt, v.linkAt + 1));
  });

  test("a leaf chain that reaches a value page is EMDB_CORRUPTED at that page", () => {
    const last = layout.leaves.at(-1)!;
    const target = layout.values[0]!.id;
    const file = copy((b) => {
      setU64(b, last * P + 19, target);
      fixPageCrc(b, last);
    });
    assert.throws(() => read(file), corruptedAt(target * P, (target + 1) * P));
  });

  test("a file cut before a page the tree references is EMDB_CORRUPTED at that page", () => {
    const leaf = layout.leaves[0]!;
    assert.ok(leaf > layout.root, "the first leaf lies after the root in the fixture");
    const sub = path.join(dir, `cut-${n++}`);
    fs.mkdirSync(sub);
    const file = path.join(sub, "v3.emdb");
    fs.writeFileSync(file, pristine.subarray(0, leaf * P + 100));
    assert.throws(() => read(file), corruptedAt(leaf * P, (leaf + 1) * P));
  });

  test("an overflow chain shorter than the value's length is EMDB_CORRUPTED", () => {
    const lastOverflow = layout.longChain.ids.at(-1)!;
    const file = copy((b) => {
      b.writeUInt32LE(b.readUInt32LE(lastOverflow * P + 24) - 1, lastOverflow * P + 24);
      fixPageCrc(b, lastOverflow);
    });
    assert.throws(
      () => read(file),
      (e) => isEmdbError(e, "EMDB_CORRUPTED"),
    );
  });
});

/**
 * Reads in a child process with a time limit, so a reader that loops on a cycle fails the test
 * instead of hanging the run.
 */
function readInChild(file: string): { code?: string; offset?: number; message?: string } {
  const script = `
    import { readLegacy } from ${JSON.stringify(path.resolve("migrations/read-legacy.ts"))};
    try { readLegacy(${JSON.stringify(file)}); console.log(JSON.stringify({})); }
    catch (e) { console.log(JSON.stringify({ code: e.code, offset: e.offset, message: e.message })); }`;
  const r = spawnSync(
    process.execPath,
    [...process.execArgv, "--input-type=module", "-e", script],
    {
      timeout: 20_000,
      encoding: "utf8",
    },
  );
  assert.equal(r.signal, null, "the read did not finish: it hangs on the cycle");
  return JSON.parse(r.stdout.trim().split("\n").at(-1)!);
}

describe("cycles", () => {
  test("an overflow page linking to itself (with an empty chunk) is EMDB_CORRUPTED, no hang", () => {
    const last = layout.longChain.ids.at(-1)!;
    const file = copy((b) => {
      setU64(b, last * P + 16, last);
      b.writeUInt32LE(0, last * P + 24);
      fixPageCrc(b, last);
    });
    const r = readInChild(file);
    assert.equal(r.code, "EMDB_CORRUPTED");
    assert.equal(r.offset, last * P + 16);
    assert.match(r.message!, /cycle/);
  });

  test("an overflow chain looping back to its first page is EMDB_CORRUPTED, no hang", () => {
    const [first, , ...rest] = layout.longChain.ids;
    const last = rest.at(-1) ?? layout.longChain.ids[1]!;
    const file = copy((b) => {
      setU64(b, last * P + 16, first!);
      fixPageCrc(b, last);
    });
    const r = readInChild(file);
    assert.equal(r.code, "EMDB_CORRUPTED");
    assert.ok(r.offset! >= last * P && r.offset! < (last + 1) * P);
  });

  test("a leaf chain looping back to its first leaf is EMDB_CORRUPTED, no hang", () => {
    const last = layout.leaves.at(-1)!;
    const file = copy((b) => {
      setU64(b, last * P + 19, layout.leaves[0]!);
      fixPageCrc(b, last);
    });
    const r = readInChild(file);
    assert.equal(r.code, "EMDB_CORRUPTED");
    assert.equal(r.offset, last * P + 19);
    assert.match(r.message!, /cycle/);
  });

  test("an internal node whose first child is itself is EMDB_CORRUPTED, no hang", () => {
    const node = layout.internals[0]!;
    const file = copy((b) => {
      setU64(b, node * P + 19, node);
      fixPageCrc(b, node);
    });
    const r = readInChild(file);
    assert.equal(r.code, "EMDB_CORRUPTED");
    assert.equal(r.offset, node * P + 19);
  });
});

describe("header (§2.2 order)", () => {
  test("a patched version is EMDB_VERSION_MISMATCH even though the CRC no longer matches", () => {
    const file = copy((b) => b.writeUInt32LE(4, 8));
    assert.throws(
      () => read(file),
      (e) => isEmdbError(e, "EMDB_VERSION_MISMATCH"),
    );
    // The page reader itself checks the version before the CRC, not only the detection.
    assert.throws(
      () => readPageFileV3(file, { insert() {}, remove() {}, clear() {} }),
      (e) => isEmdbError(e, "EMDB_VERSION_MISMATCH"),
    );
  });

  test("a header byte changed without fixing the CRC is EMDB_CORRUPTED at offset 100", () => {
    const file = copy((b) => {
      b[22]! ^= 1; // created_at
    });
    assert.throws(() => read(file), corruptedAt(100, 101));
  });

  test("page_size other than 4096 is EMDB_CORRUPTED at offset 16", () => {
    const file = copy((b) => {
      b.writeUInt32LE(8192, 16);
      fixHeaderCrc(b);
    });
    assert.throws(() => read(file), corruptedAt(16, 17));
  });

  test("a root page id past page_count is EMDB_CORRUPTED at offset 44", () => {
    const file = copy((b) => {
      setU64(b, 44, layout.pageCount + 1);
      fixHeaderCrc(b);
    });
    assert.throws(() => read(file), corruptedAt(44, 45));
  });

  test("unknown feature flags do not matter to this reader (0.6 refused them)", () => {
    const file = copy((b) => {
      b.writeUInt32LE(0x8000_0003, 12);
      fixHeaderCrc(b);
    });
    assert.deepEqual(dump(read(file)), dump(read(copy())));
  });

  test("a page file shorter than its header page is EMDB_CORRUPTED", () => {
    const file = path.join(dir, "short.emdb");
    fs.writeFileSync(file, pristine.subarray(0, 200));
    assert.throws(
      () => read(file),
      (e) => isEmdbError(e, "EMDB_CORRUPTED") && e.offset === 200,
    );
    assert.throws(
      () => parsePageHeader(pristine.subarray(0, 200), 200),
      (e) => isEmdbError(e, "EMDB_CORRUPTED"),
    );
  });
});

describe("legacy tail and WAL", () => {
  const walRecords = (() => {
    const out: { at: number; kind: number; key: string }[] = [];
    for (let p = 0; p < pristineWal.length; p += pristineWal.readUInt32LE(p) + 8) {
      const kind = pristineWal[p + 4]!;
      const key =
        kind <= 1
          ? pristineWal
              .subarray(p + 17, p + 17 + pristineWal.readUInt32LE(p + 13))
              .toString("latin1")
          : "";
      out.push({ at: p, kind, key });
    }
    return out;
  })();
  const ops = (list: LogOp[]) => Buffer.concat(list.map((op) => encodeRecord(op)));

  test("records past page_count × 4096 apply after the pages and before the WAL", () => {
    const walKey = walRecords.find((r) => r.kind === 0)!.key;
    const pageKey = readLegacy(copy(undefined, null)).entries[3]!.key.toString("latin1");
    const tail = ops([
      { op: "insert", key: "tail-only", value: "t", expiresAt: 0 },
      { op: "insert", key: Buffer.from(walKey, "latin1"), value: "from-tail", expiresAt: 0 },
      { op: "batchBegin", txId: 77, opCount: 1 },
      { op: "remove", key: Buffer.from(pageKey, "latin1") },
      { op: "batchEnd", txId: 77 },
    ]);
    const file = copy((b) => b);
    fs.appendFileSync(file, tail);
    const c = read(file);
    const get = (k: string) => c.entries.find((e) => e.key.toString("latin1") === k);
    assert.equal(get("tail-only")?.value.toString(), "t");
    assert.notEqual(
      get(walKey)?.value.toString(),
      "from-tail",
      "the WAL is applied after the tail",
    );
    assert.equal(get(pageKey), undefined, "the tail's Remove applies to page entries");
    assert.equal(c.lastTxId, 77);
    assert.equal(c.validBytes, pristine.length + tail.length);
    assert.equal(c.stoppedAt, undefined);
  });

  test("a torn legacy tail is reported and cut; the WAL still applies", () => {
    const good = ops([{ op: "insert", key: "tail-a", value: "1" }]);
    const torn = ops([{ op: "insert", key: "tail-b", value: "2" }]).subarray(0, 10);
    const file = copy();
    fs.appendFileSync(file, Buffer.concat([good, torn]));
    const c = read(file);
    assert.equal(c.validBytes, pristine.length + good.length);
    assert.equal(c.stoppedAt?.reason, "truncated");
    assert.equal(c.stoppedAt?.offset, pristine.length + good.length);
    const keys = new Set(c.entries.map((e) => e.key.toString("latin1")));
    assert.ok(keys.has("tail-a") && !keys.has("tail-b"));
    assert.equal(c.entries.length, read(copy()).entries.length + 1);
  });

  test("a WAL cut inside its last transaction loses exactly that transaction", () => {
    const kinds = walRecords.map((r) => r.kind);
    const lastEnd = kinds.lastIndexOf(5);
    const lastBegin = kinds.lastIndexOf(4);
    assert.ok(lastBegin >= 0 && lastBegin < lastEnd, "the fixture's WAL ends with a transaction");
    const cutInside = copy(undefined, pristineWal.subarray(0, walRecords[lastEnd]!.at + 5));
    const cutBefore = copy(undefined, pristineWal.subarray(0, walRecords[lastBegin]!.at));
    const damaged = read(cutInside);
    assert.equal(damaged.wal?.stoppedAt?.reason, "truncated"); // torn BatchEnd, inside the batch
    assert.equal(damaged.wal?.validBytes, walRecords[lastBegin]!.at);
    assert.equal(damaged.wal?.stoppedAt?.offset, walRecords[lastBegin]!.at);
    assert.deepEqual(dump(damaged), dump(read(cutBefore)));
    assert.notDeepEqual(dump(damaged), dump(read(copy())));
  });

  test("a WAL with a flipped CRC in its first record contributes nothing", () => {
    const wal = Buffer.from(pristineWal);
    wal[wal.readUInt32LE(0) + 4]! ^= 0xff;
    const c = read(copy(undefined, wal));
    assert.equal(c.wal?.validBytes, 0);
    assert.equal(c.wal?.stoppedAt?.reason, "crc-mismatch");
    assert.deepEqual(dump(c), dump(read(copy(undefined, null))));
  });
});
