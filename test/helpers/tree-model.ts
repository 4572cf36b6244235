/** A `Map` model of tree contents and helpers to compare a tree against it. */
import assert from "node:assert/strict";
import type { BTree, Change } from "../../src/btree/tree.js";
import type { Prng } from "./prng.js";

export interface ModelEntry {
  readonly value: Buffer;
  readonly expiresAt: number;
}

/** Keyed by the key's hex form; hex order is unsigned byte order only for equal lengths, so sort with Buffer.compare. */
export type Model = Map<string, ModelEntry>;

export function dumpTree(tree: BTree): Model {
  const out: Model = new Map();
  let prev: Buffer | undefined;
  tree.forEach((key, value, expiresAt) => {
    if (prev !== undefined) assert.ok(Buffer.compare(prev, key) < 0, "forEach must ascend");
    prev = Buffer.from(key);
    out.set(key.toString("hex"), { value: Buffer.from(value), expiresAt });
  });
  return out;
}

export function assertSameContents(actual: Model, expected: Model, what: string): void {
  assert.equal(actual.size, expected.size, `${what}: entry count`);
  for (const [k, e] of expected) {
    const a = actual.get(k);
    assert.ok(a !== undefined, `${what}: key ${k} missing`);
    assert.equal(a.expiresAt, e.expiresAt, `${what}: expiresAt of ${k}`);
    assert.ok(
      a.value.equals(e.value),
      `${what}: value of ${k} (${a.value.length} vs ${e.value.length} bytes)`,
    );
  }
}

export function sameContents(a: Model, b: Model): boolean {
  if (a.size !== b.size) return false;
  for (const [k, e] of b) {
    const x = a.get(k);
    if (x === undefined || x.expiresAt !== e.expiresAt || !x.value.equals(e.value)) return false;
  }
  return true;
}

export function cloneModel(m: Model): Model {
  return new Map(m);
}

export function sortChanges(changes: Change[]): Change[] {
  return changes.sort((a, b) => Buffer.compare(a.key, b.key));
}

/** Applies a batch to the model. */
export function applyToModel(model: Model, changes: readonly Change[]): void {
  for (const c of changes) {
    const k = c.key.toString("hex");
    if (c.value === undefined) model.delete(k);
    else model.set(k, { value: c.value, expiresAt: c.expiresAt });
  }
}

export interface BatchShape {
  readonly size: number;
  readonly keySpace: number;
  readonly deleteRatio: number;
  readonly maxValue: number;
}

/** A random sorted batch over keys `k<n>` with varied lengths, values 0..maxValue bytes. */
export function randomBatch(rng: Prng, model: Model, shape: BatchShape): Change[] {
  const seen = new Set<string>();
  const out: Change[] = [];
  for (let i = 0; i < shape.size; i++) {
    const n = rng.int(shape.keySpace);
    const key = Buffer.from(`k${n}${"x".repeat(n % 7)}`);
    const hex = key.toString("hex");
    if (seen.has(hex)) continue;
    seen.add(hex);
    if (model.has(hex) && rng.chance(shape.deleteRatio)) {
      out.push({ key, value: undefined, expiresAt: 0 });
      continue;
    }
    const big = rng.chance(0.15);
    const len = big ? rng.int(shape.maxValue + 1) : rng.int(Math.min(64, shape.maxValue) + 1);
    out.push({ key, value: rng.bytes(len), expiresAt: rng.chance(0.3) ? 1 + rng.int(2 ** 40) : 0 });
  }
  return sortChanges(out);
}
