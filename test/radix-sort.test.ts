/**
 * `sortLatin1` (src/shards/radix-sort.ts) must put internal keys in exactly the order of
 * `Array.prototype.sort()`: unsigned byte order, a prefix before its extensions. Seeded
 * random arrays of every shape the radix passes treat apart: sizes around the insertion-sort
 * cut-off, bytes over the whole 0–255 range, empty keys, duplicates, long shared prefixes
 * (levels skipped without moving), and the workload's keys.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { sortLatin1 } from "../src/shards/radix-sort.js";
import { type Prng, withPrng } from "./helpers/prng.js";

function assertSortsLikeDefault(keys: string[], what: string): void {
  const want = [...keys].sort();
  const got = [...keys];
  sortLatin1(got);
  // Compare as hex, so a difference in the low or high bytes prints readably.
  const hex = (a: string[]) => a.map((k) => Buffer.from(k, "latin1").toString("hex"));
  assert.deepEqual(hex(got), hex(want), what);
  // With a companion array, each element must travel with its key: every original index
  // once, each beside the key it came with.
  const withAlong = [...keys];
  const along = keys.map((_, i) => i);
  sortLatin1(withAlong, along);
  assert.deepEqual(hex(withAlong), hex(want), `${what}, with a companion array`);
  assert.deepEqual(
    [...along].sort((x, y) => x - y),
    keys.map((_, i) => i),
    `${what}: the companion array is a permutation`,
  );
  for (let i = 0; i < keys.length; i++) {
    if (keys[along[i]!] !== withAlong[i]) assert.fail(`${what}: companion ${i} left its key`);
  }
}

function randomKey(rng: Prng, prefix: string): string {
  const len = rng.pick([0, 1, 2, 3, 8, 16, 40, rng.int(300)]);
  // Narrow alphabets, at the bottom or the top of the byte range, make long runs of equal
  // bytes; the full one reaches 0x00 and 0xff.
  const alphabet = rng.pick([2, 3, 10, 256]);
  const base = rng.chance(0.5) ? 0 : 256 - alphabet;
  let k = prefix;
  for (let i = 0; i < len; i++) k += String.fromCharCode(base + rng.int(alphabet));
  return k;
}

test("sorts like Array.prototype.sort(): sizes, bytes, empty keys, duplicates, shared prefixes", () => {
  withPrng((rng) => {
    for (const n of [0, 1, 2, 31, 32, 33, 64, 65, 500, 5000, 40_000]) {
      for (let round = 0; round < (n > 5000 ? 2 : 6); round++) {
        const prefixes = [
          "",
          "a",
          String.fromCharCode(0xff).repeat(700), // deeper than any level a short key reaches
          `${"\u0000".repeat(3)}x`,
        ];
        const keys: string[] = [];
        for (let i = 0; i < n; i++) {
          if (i > 0 && rng.chance(0.05))
            keys.push(keys[rng.int(i)]!); // a duplicate
          else keys.push(randomKey(rng, rng.pick(prefixes)));
        }
        assertSortsLikeDefault(keys, `n=${n} round ${round}`);
      }
    }
  });
});

test("sorts the workload's keys, shuffled, and keys that differ only in their last byte", () => {
  withPrng((rng) => {
    const keys: string[] = [];
    for (let i = 0; i < 100_000; i++) keys.push(`user:${String(rng.int(1e11)).padStart(11, "0")}`);
    assertSortsLikeDefault(keys, "workload keys");
    const tails: string[] = [];
    const stem = "k".repeat(1000);
    for (let b = 255; b >= 0; b--) tails.push(stem + String.fromCharCode(b));
    tails.push(stem);
    assertSortsLikeDefault(tails, "one byte apart after 1000 equal ones");
  });
});

test("refuses a key that is not latin1 instead of misplacing it", () => {
  const keys = Array.from({ length: 100 }, (_, i) => `k${i}`);
  keys[50] = "k\u0100";
  assert.throws(() => sortLatin1(keys), /not latin1/);
});
