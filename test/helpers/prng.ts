/**
 * A small seeded PRNG (mulberry32) for randomized tests, which print their seed on failure;
 * set EMDB_SEED to replay one.
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed of this run: EMDB_SEED when set, otherwise a fresh one. */
export function testSeed(): number {
  return Number(process.env.EMDB_SEED ?? Math.floor(Math.random() * 1_000_000));
}
