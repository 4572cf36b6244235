import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { Emdb } from "../src/index.js";
import { SHARD_COUNT } from "../src/shards/keyspace.js";
import { assertConsistent } from "./helpers/db.js";

test("keys spread over all 32 shards", () => {
  const db = Emdb.openInMemory();
  for (let i = 0; i < 10_000; i++) db.insert(`user:${String(i).padStart(11, "0")}`, "v");
  const sizes = db.stats().shardSizes;
  assert.equal(sizes.length, SHARD_COUNT);
  assert.equal(
    sizes.reduce((a, b) => a + b, 0),
    10_000,
  );
  // A fair spread puts ~312 keys in each; a bad hash leaves shards empty or overloaded.
  assert.ok(Math.min(...sizes) > 200 && Math.max(...sizes) < 450, `shard sizes ${sizes.join(",")}`);
  assertConsistent(db);
});

test("a database holds more than 2^24 keys (one V8 Map cannot)", { timeout: 300_000 }, () => {
  // One Map throws "Map maximum size exceeded" at 2^24 entries; check that first, so this
  // test proves something on this Node version.
  const m = new Map<number, number>();
  assert.throws(() => {
    for (let i = 0; i <= 2 ** 24; i++) m.set(i, i);
  }, RangeError);
  m.clear();

  const n = 2 ** 24 + 1000;
  const script = fileURLToPath(new URL("./helpers/many-keys.ts", import.meta.url));
  const out = execFileSync(
    process.execPath,
    ["--max-old-space-size=12000", "--import", "tsx", script, String(n)],
    {
      encoding: "utf8",
      maxBuffer: 1 << 20,
    },
  );
  const r = JSON.parse(out.trim().split("\n").pop()!) as {
    len: number;
    liveKeys: number;
    maxShard: number;
    minShard: number;
    last: string[];
    probe: boolean[];
  };
  assert.equal(r.liveKeys, n);
  assert.equal(r.len, n - 1, "remove works at this size");
  assert.deepEqual(r.probe, [true, true, true, true]);
  assert.ok(r.maxShard < 2 ** 24);
  assert.deepEqual(r.last, [
    `k${(n - 1).toString(36).padStart(6, "0")}`,
    `k${(n - 2).toString(36).padStart(6, "0")}`,
  ]);
});
