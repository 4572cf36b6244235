import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, test } from "node:test";
import { readU64, writeU64 } from "../src/codec.js";
import { isEmdbError } from "../src/errors.js";
import { FileBackend, MemoryBackend } from "../src/pager/backend.js";
import { decodeMeta, encodeMeta, META_BYTES } from "../src/pager/meta.js";
import { newPage, PAGE_HEADER_SIZE, type PageId, PageType } from "../src/pager/page.js";
import { type CommitFailpoint, Pager, type PageVisitor } from "../src/pager/pager.js";
import { withPrng } from "./helpers/prng.js";

// A minimal structure for exercising the pager without the B+tree: the root is an index
// page listing blob pages; each blob page holds a u32 length and bytes.
const P = 512;

function writeBlobs(pager: Pager, blobs: readonly Buffer[]): PageId {
  const ids: PageId[] = [];
  for (const b of blobs) {
    const id = pager.allocate();
    const page = newPage(pager.pageSize, PageType.Overflow);
    page.writeUInt32LE(b.length, 16);
    b.copy(page, 20);
    pager.write(id, page);
    ids.push(id);
  }
  const root = pager.allocate();
  const index = newPage(pager.pageSize, PageType.Branch);
  index.writeUInt32LE(ids.length, 16);
  for (let i = 0; i < ids.length; i++) writeU64(index, ids[i]!, 20 + 8 * i);
  pager.write(root, index);
  return root;
}

function blobIds(pager: Pager, root: number): PageId[] {
  const index = pager.read(root as PageId, PageType.Branch);
  const n = index.readUInt32LE(16);
  return Array.from({ length: n }, (_, i) => readU64(index, 20 + 8 * i) as PageId);
}

function readBlobs(pager: Pager): string[] {
  const root = pager.meta.root;
  if (root === 0) return [];
  return blobIds(pager, root).map((id) => {
    const page = pager.read(id, PageType.Overflow);
    return page.subarray(20, 20 + page.readUInt32LE(16)).toString();
  });
}

function freeBlobs(pager: Pager): void {
  const root = pager.meta.root;
  if (root === 0) return;
  for (const id of blobIds(pager, root)) pager.free(id);
  pager.free(root as PageId);
}

/** Replaces the committed blob set by `blobs` and commits. */
function commitBlobs(pager: Pager, blobs: readonly string[], lastTxId = 0) {
  freeBlobs(pager);
  const root = writeBlobs(
    pager,
    blobs.map((s) => Buffer.from(s)),
  );
  return pager.commit({ root, entryCount: blobs.length, lastTxId });
}

function walker(v: PageVisitor): void {
  const root = v.meta.root;
  if (root === 0 || !v.claim(root, "index")) return;
  const index = v.read(root, PageType.Branch);
  if (index === undefined) return;
  const n = index.readUInt32LE(16);
  for (let i = 0; i < n; i++) {
    const id = readU64(index, 20 + 8 * i);
    if (v.claim(id, "blob")) v.read(id, PageType.Overflow);
  }
}

function assertClean(pager: Pager): void {
  assert.deepEqual(pager.check(walker), []);
}

function expectCode(fn: () => unknown, code: string): unknown {
  let caught: unknown;
  assert.throws(fn, (err) => {
    caught = err;
    return isEmdbError(err) && err.code === code;
  });
  return caught;
}

describe("pager", () => {
  test("creates a file, commits, and reopens with the same state", () => {
    const be = new MemoryBackend();
    const pager = Pager.open(be, "db", { pageSize: P });
    assert.equal(pager.meta.generation, 0);
    assert.equal(pager.metaStatus.other, undefined);
    assert.match(pager.metaStatus.otherError ?? "", /empty/);
    assert.equal(pager.meta.fileId.length, 16);
    const fileId = Buffer.from(pager.fileId);
    commitBlobs(pager, ["alpha", "beta"], 7);
    assertClean(pager);
    pager.close();

    const again = Pager.open(be, "db");
    assert.equal(again.pageSize, P);
    assert.equal(again.meta.generation, 1);
    assert.equal(again.meta.lastTxId, 7);
    assert.equal(again.meta.entryCount, 2);
    assert.ok(again.fileId.equals(fileId));
    assert.equal(again.metaStatus.chosen.generation, 1);
    assert.equal(again.metaStatus.other?.generation, 0);
    assert.deepEqual(readBlobs(again), ["alpha", "beta"]);
    assertClean(again);
    again.close();
  });

  test("the file's page size wins over the option; a bad option is EMDB_INVALID_CONFIG", () => {
    const be = new MemoryBackend();
    Pager.open(be, "db", { pageSize: 1024 }).close();
    const p = Pager.open(be, "db", { pageSize: 4096 });
    assert.equal(p.pageSize, 1024);
    p.close();
    expectCode(() => Pager.open(be, "other", { pageSize: 1000 }), "EMDB_INVALID_CONFIG");
    expectCode(() => Pager.open(be, "other", { pageSize: 256 }), "EMDB_INVALID_CONFIG");
  });

  test("meta slots alternate by generation parity", () => {
    const be = new MemoryBackend();
    const pager = Pager.open(be, "db", { pageSize: P });
    for (let g = 1; g <= 5; g++) {
      commitBlobs(pager, [`v${g}`], g);
      const bytes = be.bytes("db");
      const slot = g % 2;
      const here = decodeMeta(bytes.subarray(slot * P, slot * P + META_BYTES), slot as 0 | 1);
      const there = decodeMeta(
        bytes.subarray((1 - slot) * P, (1 - slot) * P + META_BYTES),
        (1 - slot) as 0 | 1,
      );
      assert.ok(here.ok && here.meta.generation === g, `slot ${slot} holds generation ${g}`);
      assert.ok(there.ok && there.meta.generation === g - 1, "the other slot keeps the previous");
    }
    assertClean(pager);
    pager.close();
  });

  const failpoints: CommitFailpoint[] = [
    "commit:pages-written",
    "commit:pages-synced",
    "commit:meta-written",
    "commit:meta-synced",
  ];
  for (const fp of failpoints) {
    test(`a crash at ${fp} reopens on a complete generation`, () => {
      const be = new MemoryBackend();
      const pager = Pager.open(be, "db", { pageSize: P });
      commitBlobs(pager, ["one", "two"], 1);
      pager.releasePending();
      commitBlobs(pager, ["three"], 2);
      pager.releasePending();
      pager.failpoint = (name) => {
        if (name === fp) throw new Error(`crash at ${name}`);
      };
      assert.throws(() => commitBlobs(pager, ["four", "five", "six"], 3), /crash at/);
      be.crash();

      const re = Pager.open(be, "db");
      const durable = fp === "commit:meta-synced";
      assert.equal(re.meta.generation, durable ? 3 : 2);
      assert.deepEqual(readBlobs(re), durable ? ["four", "five", "six"] : ["three"]);
      assert.equal(re.metaStatus.other?.generation, durable ? 2 : 1);
      assertClean(re);
      // The file keeps working after the crash.
      re.releasePending();
      commitBlobs(re, ["seven"], 4);
      assertClean(re);
      re.close();
    });
  }

  test("a torn meta write falls back to the previous generation and says why", () => {
    const be = new MemoryBackend();
    const pager = Pager.open(be, "db", { pageSize: P });
    commitBlobs(pager, ["old"], 1);
    pager.releasePending();
    // Generation 2 goes to slot 0: let only its first 40 bytes reach the disk.
    pager.failpoint = (name) => {
      if (name !== "commit:meta-written") return;
      const img = be.image("db");
      img.live.copy(img.durable, 0, 0, 40);
      throw new Error("power cut");
    };
    assert.throws(() => commitBlobs(pager, ["new"], 2), /power cut/);
    be.crash();
    const re = Pager.open(be, "db");
    assert.equal(re.metaStatus.chosen.generation, 1);
    assert.equal(re.metaStatus.other, undefined);
    assert.match(re.metaStatus.otherError ?? "", /checksum/);
    assert.deepEqual(readBlobs(re), ["old"]);
    assertClean(re);
    // The next commit reuses generation 2 and overwrites the torn slot.
    commitBlobs(re, ["newer"], 2);
    re.close();
    const again = Pager.open(be, "db");
    assert.equal(again.meta.generation, 2);
    assert.equal(again.metaStatus.other?.generation, 1);
    assert.deepEqual(readBlobs(again), ["newer"]);
    again.close();
  });

  test("both metas invalid is EMDB_CORRUPTED; foreign files and versions are told apart", () => {
    const be = new MemoryBackend();
    const pager = Pager.open(be, "db", { pageSize: P });
    commitBlobs(pager, ["x"], 1);
    pager.close();
    const good = be.bytes("db");

    const bothBad = Buffer.from(good);
    bothBad[40] = bothBad[40]! ^ 0xff;
    bothBad[P + 40] = bothBad[P + 40]! ^ 0xff;
    be.setBytes("db", bothBad);
    const err = expectCode(() => Pager.open(be, "db"), "EMDB_CORRUPTED");
    assert.match(String(err), /both meta pages/);

    const version = Buffer.from(good);
    version.writeUInt32LE(9, 8);
    version.writeUInt32LE(9, P + 8);
    be.setBytes("db", version);
    expectCode(() => Pager.open(be, "db"), "EMDB_VERSION_MISMATCH");

    be.setBytes("db", Buffer.from("this is certainly not an emdb page file".repeat(40)));
    expectCode(() => Pager.open(be, "db"), "EMDB_MAGIC_MISMATCH");

    // One bad slot is not fatal: the other generation opens.
    const oneBad = Buffer.from(good);
    oneBad[P + 50] = oneBad[P + 50]! ^ 1;
    be.setBytes("db", oneBad);
    const p = Pager.open(be, "db");
    assert.equal(p.meta.generation, 0);
    assert.match(p.metaStatus.otherError ?? "", /checksum/);
    p.close();
  });

  test("slot A unreadable: slot B is found at the file's own page size", () => {
    const be = new MemoryBackend();
    const pager = Pager.open(be, "db", { pageSize: 2048 });
    commitBlobs(pager, ["b-slot"], 1);
    pager.close();
    const bytes = be.bytes("db");
    bytes.fill(0x5a, 0, META_BYTES);
    be.setBytes("db", bytes);
    const p = Pager.open(be, "db", { pageSize: 512 });
    assert.equal(p.pageSize, 2048);
    assert.equal(p.meta.generation, 1);
    assert.match(p.metaStatus.otherError ?? "", /magic/);
    assert.deepEqual(readBlobs(p), ["b-slot"]);
    p.close();
  });

  test("a zero-filled file (crash during creation) is treated as new", () => {
    const be = new MemoryBackend();
    be.setBytes("db", Buffer.alloc(2 * P));
    const p = Pager.open(be, "db", { pageSize: P });
    assert.equal(p.meta.generation, 0);
    p.close();
  });

  test("a new file appears whole: its meta is written to a temporary file and renamed", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-pager-create-"));
    try {
      const file = path.join(dir, "db");
      const crash = () => {
        throw new Error("crash after the temporary file");
      };
      assert.throws(
        () => Pager.open(new FileBackend(), file, { pageSize: P, failpoint: crash }),
        /crash after the temporary file/,
      );
      // What a crash there leaves: an empty database file, a complete temporary file.
      assert.equal(fs.statSync(file).size, 0);
      assert.equal(fs.statSync(`${file}.create.tmp`).size, 2 * P);
      const p = Pager.open(new FileBackend(), file, { pageSize: P });
      assert.equal(p.meta.generation, 0);
      assertClean(p);
      p.close();
      assert.equal(fs.existsSync(`${file}.create.tmp`), false, "the rename consumed it");
      // A compaction's or a migration's output is itself renamed into place: created in place.
      const tmp = path.join(dir, "out.tmp");
      const t = Pager.open(new FileBackend(), tmp, {
        pageSize: P,
        temporary: true,
        failpoint: crash,
      });
      assert.equal(t.meta.generation, 0);
      t.close();
      assert.deepEqual(fs.readdirSync(dir).sort(), ["db", "out.tmp"]);
      const again = Pager.open(new FileBackend(), file, { pageSize: P });
      assert.equal(again.meta.generation, 0);
      again.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a flipped byte in a page is EMDB_CORRUPTED at an offset inside that page", () => {
    withPrng((rng) => {
      const be = new MemoryBackend();
      const pager = Pager.open(be, "db", { pageSize: P });
      commitBlobs(pager, ["a", "b", "c", "d"], 1);
      const ids = blobIds(pager, pager.meta.root);
      pager.close();
      const victim = ids[rng.int(ids.length)]!;
      const bytes = be.bytes("db");
      const at = victim * P + rng.int(P);
      bytes[at] = bytes[at]! ^ (1 << rng.int(8));
      be.setBytes("db", bytes);

      const re = Pager.open(be, "db");
      const err = expectCode(() => readBlobs(re), "EMDB_CORRUPTED");
      assert.ok(isEmdbError(err));
      assert.ok(
        err.offset !== undefined && err.offset >= victim * P && err.offset < (victim + 1) * P,
        `offset ${err.offset} lies in page ${victim}`,
      );
      assert.equal(err.file, "db");
      assert.ok(re.check(walker).length > 0, "check() reports the damage");
      re.close();
    });
  });

  test("a page copied to another id fails its checksum (the id seeds it)", () => {
    const be = new MemoryBackend();
    const pager = Pager.open(be, "db", { pageSize: P });
    commitBlobs(pager, ["first", "second"], 1);
    const [a, b] = blobIds(pager, pager.meta.root);
    pager.close();
    const bytes = be.bytes("db");
    bytes.copy(bytes, b! * P, a! * P, (a! + 1) * P);
    be.setBytes("db", bytes);
    const re = Pager.open(be, "db");
    expectCode(() => re.read(b!, PageType.Overflow), "EMDB_CORRUPTED");
    re.close();
  });

  test("freed pages are reused only after releasePending(), also across a reopen", () => {
    const be = new MemoryBackend();
    let pager = Pager.open(be, "db", { pageSize: P });
    commitBlobs(pager, ["a", "b", "c"], 1);
    const before = [pager.meta.root, ...blobIds(pager, pager.meta.root)];
    commitBlobs(pager, ["d"], 2);
    assert.equal(pager.stats().pendingPages, before.length + 0);
    const fresh = pager.allocate();
    assert.ok(!before.includes(fresh), "a pending page must not be handed out");
    pager.rollback();
    pager.close();

    pager = Pager.open(be, "db");
    assert.ok(pager.stats().pendingPages >= before.length, "pending ids survive a reopen");
    const stillNot = pager.allocate();
    assert.ok(!before.includes(stillNot));
    pager.rollback();
    pager.releasePending();
    const got = new Set<number>();
    for (let i = 0; i < before.length; i++) got.add(pager.allocate());
    assert.ok(
      before.every((id) => got.has(id)),
      "released pages are reused first (lowest ids)",
    );
    pager.rollback();
    assertClean(pager);
    pager.close();
  });

  test("pages allocated and freed in the same transaction are reusable at once", () => {
    const be = new MemoryBackend();
    const pager = Pager.open(be, "db", { pageSize: P });
    const a = pager.allocate();
    pager.write(a, newPage(P, PageType.Overflow));
    pager.free(a);
    assert.equal(pager.allocate(), a);
    pager.rollback();
    assert.throws(
      () => pager.write(5 as PageId, newPage(P, PageType.Overflow)),
      /not being allocated|without being allocated/,
    );
    pager.close();
  });

  test("no leak: the page count settles in a steady update workload", () => {
    withPrng((rng) => {
      const be = new MemoryBackend();
      const pager = Pager.open(be, "db", { pageSize: P });
      const counts: number[] = [];
      for (let round = 1; round <= 150; round++) {
        const blobs = Array.from({ length: 20 + rng.int(5) }, (_, i) => `r${round}-${i}`);
        commitBlobs(pager, blobs, round);
        pager.releasePending();
        counts.push(pager.stats().pageCount);
        assertClean(pager);
      }
      // Live set (<= 25 pages) + the previous set still pending + old and new free-list
      // page + 2 metas: anything above that bound would be a leak.
      assert.ok(Math.max(...counts) <= 2 + 2 * 25 + 2, `page counts: ${counts.join(",")}`);
    });
  });

  test("without releasePending() freed pages pile up as pending, and are reused after it", () => {
    const be = new MemoryBackend();
    const pager = Pager.open(be, "db", { pageSize: P });
    for (let round = 1; round <= 10; round++) commitBlobs(pager, ["a", "b", "c", "d"], round);
    const grown = pager.stats();
    assert.ok(grown.pendingPages >= 9 * 5, `pending ${grown.pendingPages}`);
    assertClean(pager);
    pager.releasePending();
    for (let round = 11; round <= 20; round++) {
      commitBlobs(pager, ["a", "b", "c", "d"], round);
      pager.releasePending();
    }
    assert.ok(pager.stats().pageCount <= grown.pageCount, "no growth once released");
    assert.ok(pager.stats().pageCount <= 2 + 2 * 5 + 2, `page count ${pager.stats().pageCount}`);
    assertClean(pager);
    pager.close();
  });

  test("check() reports a leaked page and a page claimed twice", () => {
    const be = new MemoryBackend();
    const pager = Pager.open(be, "db", { pageSize: P });
    const root = writeBlobs(pager, [Buffer.from("x")]);
    const stray = pager.allocate();
    pager.write(stray, newPage(P, PageType.Overflow));
    pager.commit({ root, entryCount: 1, lastTxId: 1 });
    const problems = pager.check(walker);
    assert.ok(
      problems.some((p) => /leaked/.test(p) && p.includes(String(stray))),
      problems.join("\n"),
    );
    const twice = pager.check((v) => {
      walker(v);
      v.claim(root, "again");
    });
    assert.ok(twice.some((p) => /already belongs/.test(p)));
    pager.close();
  });

  test("a commit coalesces adjacent pages into few writes", () => {
    const be = new MemoryBackend();
    const pager = Pager.open(be, "db", { pageSize: P });
    let writes = 0;
    be.hook = (op) => {
      if (op === "write") writes++;
    };
    const blobs = Array.from({ length: 60 }, (_, i) => Buffer.from(`blob ${i}`));
    const root = writeBlobs(pager, blobs);
    pager.commit({ root, entryCount: 60, lastTxId: 1 });
    // 61 adjacent pages: one write for all of them, one for the meta.
    assert.equal(writes, 2);
    be.hook = undefined;
    assertClean(pager);
    pager.close();
  });

  test("a failed page write rolls the transaction back; the pager stays usable", () => {
    const be = new MemoryBackend();
    const pager = Pager.open(be, "db", { pageSize: P });
    commitBlobs(pager, ["keep"], 1);
    be.hook = (op) => {
      if (op === "write") throw new Error("EIO");
    };
    assert.throws(() => commitBlobs(pager, ["lost"], 2), /EIO/);
    be.hook = undefined;
    assert.equal(pager.inTransaction, false);
    assert.deepEqual(readBlobs(pager), ["keep"]);
    assertClean(pager);
    commitBlobs(pager, ["next"], 2);
    assert.deepEqual(readBlobs(pager), ["next"]);
    assertClean(pager);
    pager.close();
  });

  test("a failed meta write leaves the pager refusing work until reopened", () => {
    const be = new MemoryBackend();
    const pager = Pager.open(be, "db", { pageSize: P });
    commitBlobs(pager, ["keep"], 1);
    pager.failpoint = (name) => {
      if (name === "commit:meta-written") throw new Error("EIO on meta");
    };
    assert.throws(() => commitBlobs(pager, ["maybe"], 2), /EIO on meta/);
    expectCode(() => pager.allocate(), "EMDB_IO");
    pager.close();
    expectCode(() => pager.read(2 as PageId, PageType.Overflow), "EMDB_CLOSED");
  });

  test("early spills write uncommitted pages without touching the durable state", () => {
    const be = new MemoryBackend();
    const pager = Pager.open(be, "db", { pageSize: P, spillBytes: 4 * P });
    commitBlobs(pager, ["durable"], 1);
    pager.releasePending();
    freeBlobs(pager);
    writeBlobs(
      pager,
      Array.from({ length: 50 }, (_, i) => Buffer.from(`spilled ${i}`)),
    );
    assert.ok(be.bytes("db").length > pager.meta.pageCount * P, "pages reached the file early");
    be.crash();
    const re = Pager.open(be, "db");
    assert.deepEqual(readBlobs(re), ["durable"]);
    assertClean(re);
    re.close();
  });

  test("handed-over pages: buffers reused once written out, never while a reader holds one", () => {
    const be = new MemoryBackend();
    const pager = Pager.open(be, "db", { pageSize: P, spillBytes: 4 * P });
    const blob = (i: number) => `handed over ${i}`;
    const ids: PageId[] = [];
    const buffers: Buffer[] = [];
    let read: Buffer | undefined;
    for (let i = 0; i < 40; i++) {
      const page = pager.blankPage(PageType.Overflow);
      assert.ok(
        page.subarray(PAGE_HEADER_SIZE).every((b) => b === 0),
        `page ${i} is zeroed`,
      );
      const bytes = Buffer.from(blob(i));
      page.writeUInt32LE(bytes.length, 16);
      bytes.copy(page, 20);
      const id = pager.allocate();
      pager.writeHandedOver(id, page);
      ids.push(id);
      buffers.push(page);
      // A reader who gets a staged page may keep it: its buffer must not be reused.
      if (i === 1) read = pager.read(id, PageType.Overflow);
    }
    const distinct = new Set(buffers).size;
    assert.ok(distinct < 10, `40 pages went through ${distinct} buffers (spill of 4)`);
    assert.equal(buffers.filter((b) => b === read).length, 1, "the read page was not reused");
    assert.equal(read!.subarray(20, 20 + read!.readUInt32LE(16)).toString(), blob(1));
    const root = pager.allocate();
    const index = newPage(P, PageType.Branch);
    index.writeUInt32LE(ids.length, 16);
    for (let i = 0; i < ids.length; i++) writeU64(index, ids[i]!, 20 + 8 * i);
    pager.write(root, index);
    pager.commit({ root, entryCount: ids.length, lastTxId: 1 });
    pager.close();
    const re = Pager.open(be, "db");
    assert.deepEqual(
      readBlobs(re),
      ids.map((_, i) => blob(i)),
    );
    assertClean(re);
    re.close();
  });

  test("works on real files, and a meta written by hand with a bad checksum is ignored", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-pager-"));
    try {
      const file = path.join(dir, "data.emdb");
      const be = new FileBackend();
      const pager = Pager.open(be, file, { pageSize: 4096 });
      commitBlobs(pager, ["on", "disk"], 3);
      commitBlobs(pager, ["again"], 4);
      pager.close();
      assert.equal(fs.statSync(file).size % 4096, 0);
      const re = Pager.open(be, file);
      assert.deepEqual(readBlobs(re), ["again"]);
      assert.equal(re.meta.lastTxId, 4);
      assertClean(re);
      re.close();

      // A meta that decodes but whose checksum is wrong must not be chosen.
      const fd = fs.openSync(file, "r+");
      const forged = encodeMeta({ ...re.meta, generation: 10, lastTxId: 99 });
      forged[0x60] = forged[0x60]! ^ 1;
      fs.writeSync(fd, forged, 0, forged.length, 0);
      fs.closeSync(fd);
      const third = Pager.open(be, file);
      assert.equal(third.meta.lastTxId, 3);
      third.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
