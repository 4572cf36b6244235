/**
 * Seeded randomness for model tests. The seed comes from `SEED` when set (to replay a
 * failure) and is otherwise random; `withSeed` puts it into any failure message.
 */

/** mulberry32: small, fast, good enough to drive test workloads. */
export class Prng {
  private s: number;

  constructor(readonly seed: number) {
    this.s = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

export function testSeed(): number {
  const env = process.env.SEED;
  return env !== undefined && env !== "" ? Number(env) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
}

/** Runs `fn` with a seeded PRNG; a failure is rethrown with the seed in its message. */
export function withSeed(fn: (rng: Prng) => void, seed = testSeed()): void {
  try {
    fn(new Prng(seed));
  } catch (err) {
    const msg = `(replay with SEED=${seed})`;
    if (err instanceof Error) {
      err.message = `${err.message} ${msg}`;
      throw err;
    }
    throw new Error(`${String(err)} ${msg}`);
  }
}
