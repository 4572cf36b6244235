/**
 * Seeded PRNG for randomized tests (sfc32). The seed comes from EMDB_SEED when set, so a
 * failure printed as "seed=N" can be replayed exactly: `EMDB_SEED=N npm run test:unit`.
 */
export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(readonly seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    for (let i = 0; i < 15; i++) this.next();
  }

  /** Uniform in [0, 2^32). */
  next(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.next() / 0x1_0000_0000) * n);
  }

  chance(p: number): boolean {
    return this.next() / 0x1_0000_0000 < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

/** The seed for this run: EMDB_SEED if set, else a fresh random one. */
export function testSeed(): number {
  const env = process.env.EMDB_SEED;
  if (env !== undefined && env !== "") return Number(env) >>> 0;
  return (Math.random() * 0x1_0000_0000) >>> 0;
}

/** Runs `body` and, if it throws, prefixes the error with the seed to replay it. */
export function withSeed(seed: number, body: () => void): void {
  try {
    body();
  } catch (err) {
    const note = `[seed=${seed}; replay with EMDB_SEED=${seed}]`;
    // Also on stderr: for an assertion with a generated message the reporter prints the
    // diff, not the message.
    console.error(note);
    if (err instanceof Error) err.message = `${note} ${err.message}`;
    throw err;
  }
}

/** A `() => number in [0, 1)` view of `Prng`, for tests written against that shape. */
export function uniform(seed: number): () => number {
  const p = new Prng(seed);
  return () => p.next() / 0x1_0000_0000;
}

/** Runs `fn` with a PRNG seeded from `testSeed()` (or `seed`); failures name the seed. */
export function withPrng(fn: (rng: Prng) => void, seed = testSeed()): void {
  withSeed(seed, () => fn(new Prng(seed)));
}
