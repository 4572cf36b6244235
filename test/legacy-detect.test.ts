/**
 * detectFormat: which format a database path holds, from at most its first 4096 bytes.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, test } from "node:test";
import { DETECT_MAX_BYTES, detectFormat, detectFormatIn } from "../migrations/detect.js";
import { readLegacy } from "../migrations/read-legacy.js";
import { isEmdbError } from "../src/errors.js";
import { encodeLogHeader } from "./helpers/legacy-writer.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-legacy-detect-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
let n = 0;

function file(bytes: Buffer): string {
  const p = path.join(dir, `f-${n++}`);
  fs.writeFileSync(p, bytes);
  return p;
}

function pageHeader(version: number): Buffer {
  const b = Buffer.alloc(4096);
  b.write("EMDBPAGE", 0, "latin1");
  b.writeUInt32LE(version, 8);
  b.writeUInt32LE(4096, 16);
  return b;
}

const code = (c: string) => (e: unknown) => isEmdbError(e) && e.code === c;

test("a missing path and a 0-byte file are new databases", () => {
  assert.deepEqual(detectFormat(path.join(dir, "does-not-exist")), { kind: "missing" });
  assert.deepEqual(detectFormat(file(Buffer.alloc(0))), { kind: "empty" });
});

test("1 to 7 bytes are EMDB_MAGIC_MISMATCH, even a prefix of a known magic", () => {
  for (let len = 1; len <= 7; len++) {
    assert.throws(
      () => detectFormat(file(Buffer.from("EMDBPAGE").subarray(0, len))),
      code("EMDB_MAGIC_MISMATCH"),
    );
    assert.throws(() => detectFormat(file(Buffer.alloc(len, 0x45))), code("EMDB_MAGIC_MISMATCH"));
  }
});

test("an unknown magic is EMDB_MAGIC_MISMATCH", () => {
  for (const magic of ["SQLite format 3\0", "EMDB07\0\0xxxx", "emdbpage", "EMDB\0\0\0\x01"]) {
    assert.throws(
      () => detectFormat(file(Buffer.concat([Buffer.from(magic, "latin1"), Buffer.alloc(64)]))),
      code("EMDB_MAGIC_MISMATCH"),
      magic,
    );
  }
});

test("legacy logs report their version and ttl flag", () => {
  assert.deepEqual(detectFormat(file(encodeLogHeader({ version: 1, flags: 0 }))), {
    kind: "log",
    version: 1,
    ttlFlag: false,
  });
  assert.deepEqual(detectFormat(file(encodeLogHeader({ version: 2, flags: 3 }))), {
    kind: "log",
    version: 2,
    ttlFlag: true,
  });
  assert.deepEqual(detectFormat(file(encodeLogHeader({ version: 2, flags: 2 }))), {
    kind: "log",
    version: 2,
    ttlFlag: false,
  });
});

test("a legacy log with a version other than 1 or 2 is EMDB_VERSION_MISMATCH", () => {
  for (const version of [0, 3, 7]) {
    assert.throws(
      () => detectFormat(file(encodeLogHeader({ version }))),
      code("EMDB_VERSION_MISMATCH"),
    );
  }
});

test("a legacy log whose header is cut short is EMDB_CORRUPTED at its end", () => {
  for (const len of [8, 11, 30, 63]) {
    assert.throws(
      () => detectFormat(file(encodeLogHeader().subarray(0, len))),
      (e) => isEmdbError(e, "EMDB_CORRUPTED") && e.offset === len,
    );
  }
});

test("EMDBPAGE version 3 is page-v3; any other version is EMDB_VERSION_MISMATCH", () => {
  assert.deepEqual(detectFormat(file(pageHeader(3))), { kind: "page-v3" });
  for (const version of [2, 4, 0x0300_0000]) {
    assert.throws(() => detectFormat(file(pageHeader(version))), code("EMDB_VERSION_MISMATCH"));
  }
});

test("EMDBNODE is this package's own format", () => {
  assert.deepEqual(detectFormat(file(Buffer.from("EMDBNODE", "latin1"))), { kind: "emdb-ts" });
  assert.deepEqual(
    detectFormat(file(Buffer.concat([Buffer.from("EMDBNODE"), Buffer.alloc(9000, 1)]))),
    {
      kind: "emdb-ts",
    },
  );
});

test("detection reads at most 4096 bytes, from the first 64 KiB of the file", () => {
  const big = Buffer.alloc(10 << 20);
  const headers = [
    encodeLogHeader(),
    pageHeader(3),
    Buffer.from("EMDBNODE"),
    Buffer.from("NOTEMDB!"),
  ];
  for (const h of headers) {
    h.copy(big);
    const reads: [number, number][] = [];
    const src = {
      read(buf: Buffer, offset: number, length: number, position: number): number {
        reads.push([position, length]);
        return big.copy(buf, offset, position, position + length);
      },
    };
    try {
      detectFormatIn(src, big.length);
    } catch {
      // The unknown magic throws; what matters here is how much it read.
    }
    const bytes = reads.reduce((s, [, len]) => s + len, 0);
    assert.ok(reads.length > 0);
    assert.ok(bytes <= DETECT_MAX_BYTES, `read ${bytes} bytes`);
    // The header comes from the start; an unknown magic adds 8-byte probes for a second
    // meta page at each legal page size (512 B … 64 KiB).
    const probe = (pos: number) => pos >= 512 && pos <= 65536 && (pos & (pos - 1)) === 0;
    assert.ok(
      reads.every(([pos, len]) => pos + len <= DETECT_MAX_BYTES || (len === 8 && probe(pos))),
      "only the header and 8-byte probes at legal page sizes",
    );
  }
});

test("an unknown magic over a second EMDBNODE meta page is this package's file, damaged", () => {
  for (const pageSize of [512, 4096, 65536]) {
    const img = Buffer.alloc(pageSize * 2);
    img.write("EMDB\x1dNOD", 0, "latin1");
    img.write("EMDBNODE", pageSize, "latin1");
    assert.deepEqual(detectFormat(file(img)), { kind: "emdb-ts" }, `page size ${pageSize}`);
  }
  // The same bytes anywhere else are not a meta page.
  const other = Buffer.alloc(8192);
  other.write("EMDBNODE", 1000, "latin1");
  assert.throws(() => detectFormat(file(other)), { code: "EMDB_MAGIC_MISMATCH" });
});

test("readLegacy refuses what is not an emdb-rs file", () => {
  assert.throws(() => readLegacy(file(Buffer.alloc(0))), code("EMDB_MAGIC_MISMATCH"));
  assert.throws(() => readLegacy(file(Buffer.from("EMDBNODE"))), code("EMDB_MAGIC_MISMATCH"));
  assert.throws(() => readLegacy(path.join(dir, "nope")), code("EMDB_IO"));
});
