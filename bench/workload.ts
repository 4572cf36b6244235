/**
 * The workload of reference/node-peers.md §4, generated deterministically: key i is
 * "user:" + 11-digit zero-padded i (16 ASCII bytes), values are 100 pseudo-random bytes.
 * A seeded PRNG instead of crypto.randomBytes so that every run, child and engine sees the
 * very same bytes and insertion/read orders, which makes runs comparable.
 */

export const KEY_BYTES = 16;
export const VALUE_BYTES = 100;
/** Bytes of one record's payload, the unit of "raw data" for the file-size line. */
export const RECORD_BYTES = KEY_BYTES + VALUE_BYTES;

export const SEED_VALUES = 0x5eed_0001;
export const SEED_INSERT_ORDER = 0x5eed_0002;
export const SEED_READ_ORDER = 0x5eed_0003;

/** Durable single-record commits per run (node-peers.md §4: 2,000 new keys). */
export const DURABLE_PUTS = 2_000;
/** Non-durable single-record puts per run: enough for ~40 ms at 500k/s, short for slow peers. */
export const NON_DURABLE_PUTS = 20_000;
/** Entries returned by one prefix scan. */
export const PREFIX_LIMIT = 100;

/**
 * sfc32 seeded through splitmix32: fast, 32-bit, good enough statistically, and it fills
 * 100 MB of values in a fraction of a second (xorshift would do as well; crypto would not be
 * reproducible).
 */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  const split = (): number => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = split();
  let b = split();
  let c = split();
  let d = split();
  return () => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) >>> 0;
    return t;
  };
}

export function keyString(i: number): string {
  return "user:" + String(i).padStart(11, "0");
}

export function keyOf(i: number): Buffer {
  return Buffer.from(keyString(i), "latin1");
}

/** A seeded Fisher–Yates permutation of 0..n-1. */
export function permutation(n: number, seed: number): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  const rnd = prng(seed);
  for (let i = n - 1; i > 0; i--) {
    // Multiply-shift keeps the index unbiased enough for a benchmark and avoids a division.
    const j = Math.floor((rnd() / 2 ** 32) * (i + 1));
    const t = p[i]!;
    p[i] = p[j]!;
    p[j] = t;
  }
  return p;
}

/**
 * `count` values of 100 bytes each, as views into one slab: one allocation instead of a
 * million, so the harness's own memory stays small and equal for every engine.
 */
export function values(count: number, seed: number): Buffer[] {
  const slab = Buffer.allocUnsafeSlow(count * VALUE_BYTES);
  const words = new Uint32Array(slab.buffer, slab.byteOffset, slab.length >>> 2);
  const rnd = prng(seed);
  for (let i = 0; i < words.length; i++) words[i] = rnd();
  const out = new Array<Buffer>(count);
  for (let i = 0; i < count; i++) out[i] = slab.subarray(i * VALUE_BYTES, (i + 1) * VALUE_BYTES);
  return out;
}

/** Value i alone, without the slab: the reopen child checks one get without the memory. */
export function valueAt(i: number, seed: number): Buffer {
  const rnd = prng(seed);
  const wordsPerValue = VALUE_BYTES >>> 2;
  for (let w = 0; w < i * wordsPerValue; w++) rnd();
  const out = Buffer.allocUnsafeSlow(VALUE_BYTES);
  const words = new Uint32Array(out.buffer, out.byteOffset, wordsPerValue);
  for (let w = 0; w < wordsPerValue; w++) words[w] = rnd();
  return out;
}

/** Everything one child needs, built before any timer starts. */
export interface Workload {
  n: number;
  /** keys[i] is key i. */
  keys: Buffer[];
  /** values[i] belongs to key i; the extra keys after n get values too. */
  values: Buffer[];
  /** Bulk-insert order (first seeded permutation). */
  insertOrder: Uint32Array;
  /** Point-read order (second seeded permutation). */
  readOrder: Uint32Array;
  /** Keys n … n+DURABLE_PUTS-1 for the durable line, then the non-durable ones. */
  durableFrom: number;
  nonDurableFrom: number;
  /** Prefix-scan bounds: the 14-byte prefix of key ⌊n/200⌋·100 and its successor. */
  prefixGte: Buffer;
  prefixLt: Buffer;
  /** The first key of the prefix range, to check the scan's result. */
  prefixFirst: number;
}

export function prefixBounds(n: number): { first: number; gte: Buffer; lt: Buffer } {
  const first = Math.floor(n / 2 / PREFIX_LIMIT) * PREFIX_LIMIT;
  if (first + PREFIX_LIMIT > n) throw new RangeError(`n = ${n} is too small for a prefix scan`);
  // Keys first … first+99 share their first 14 bytes because first is a multiple of 100.
  const gte = keyOf(first).subarray(0, KEY_BYTES - 2);
  const lt = Buffer.from(gte);
  lt[lt.length - 1] = lt[lt.length - 1]! + 1;
  return { first, gte: Buffer.from(gte), lt };
}

export function buildWorkload(n: number, withOrders: boolean): Workload {
  const total = n + DURABLE_PUTS + NON_DURABLE_PUTS;
  const keys = new Array<Buffer>(total);
  for (let i = 0; i < total; i++) keys[i] = keyOf(i);
  const p = prefixBounds(n);
  return {
    n,
    keys,
    values: values(total, SEED_VALUES),
    insertOrder: withOrders ? permutation(n, SEED_INSERT_ORDER) : new Uint32Array(0),
    readOrder: withOrders ? permutation(n, SEED_READ_ORDER) : new Uint32Array(0),
    durableFrom: n,
    nonDurableFrom: n + DURABLE_PUTS,
    prefixGte: p.gte,
    prefixLt: p.lt,
    prefixFirst: p.first,
  };
}
