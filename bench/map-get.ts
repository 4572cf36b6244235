/**
 * The ceiling under emdb's point reads: random `get`s from 32 V8 Map shards holding 1M
 * entries (the workload's 16-byte keys, 100-byte values), step by step from what the
 * benchmark's `Map` line does to what emdb's `get(Buffer)` must do. Variants: the stored
 * string object itself (the Map line), an equal string made from the Buffer key, the same
 * plus the FNV-1a shard pick, and that plus the copy handed to the caller.
 * Run: `npx tsx bench/map-get.ts [n]`.
 */
const n = Number(process.argv[2] ?? 1_000_000);
const keyBytes = Buffer.alloc(n * 16);
for (let i = 0; i < n; i++) {
  keyBytes.write(`user:${String(i).padStart(11, "0")}`, i * 16, "latin1");
}

/** Node's direct Buffer → latin1 string path, the one emdb's `get(Buffer)` takes (keys.ts). */
function latin1(b: Buffer, start: number, end: number): string {
  return (b as unknown as { latin1Slice(s: number, e: number): string }).latin1Slice(start, end);
}

function fnvBytes(k: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < k.length; i++) h = Math.imul(h ^ k[i]!, 0x01000193);
  return h;
}

const shards = Array.from({ length: 32 }, () => new Map<string, Buffer>());
const stored: string[] = [];
for (let i = 0; i < n; i++) {
  const k = latin1(keyBytes, i * 16, i * 16 + 16);
  const v = Buffer.allocUnsafe(100).fill(i & 0xff);
  const h = fnvBytes(keyBytes.subarray(i * 16, i * 16 + 16));
  shards[(h ^ (h >>> 15)) & 31]!.set(k, v);
  stored.push(k);
}
const one = new Map<string, Buffer>();
for (const m of shards) for (const [k, v] of m) one.set(k, v);

// Reads in a random order (a fixed permutation: i × a prime, mod n).
const order = Array.from({ length: n }, (_, i) => (i * 104_729) % n);
const storedKeys = order.map((j) => stored[j]!);
const bufferKeys = order.map((j) => keyBytes.subarray(j * 16, j * 16 + 16));

function shardOf(kb: Buffer): Map<string, Buffer> {
  const h = fnvBytes(kb);
  return shards[(h ^ (h >>> 15)) & 31]!;
}

const variants: Record<string, (i: number) => number> = {
  "1 Map, the stored string (the Map line)": (i) => one.get(storedKeys[i]!)!.length,
  "1 Map, an equal string from the Buffer key": (i) =>
    one.get(latin1(bufferKeys[i]!, 0, 16))!.length,
  "32 shards picked by FNV-1a, string from Buffer": (i) => {
    const kb = bufferKeys[i]!;
    return shardOf(kb).get(latin1(kb, 0, 16))!.length;
  },
  "... and a copy of the value (emdb's get)": (i) => {
    const kb = bufferKeys[i]!;
    const v = shardOf(kb).get(latin1(kb, 0, 16))!;
    const out = Buffer.allocUnsafe(v.length);
    v.copy(out);
    return out.length;
  },
};

console.log(`random gets from Maps holding ${n.toLocaleString("en")} keys (best of 3 passes):`);
for (const [name, get] of Object.entries(variants)) {
  let best = Number.POSITIVE_INFINITY;
  for (let pass = 0; pass < 3; pass++) {
    let sum = 0;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) sum += get(i);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (sum !== 100 * n) throw new Error("lookup missed");
    best = Math.min(best, ms);
  }
  const rate = (n / best) * 1000;
  console.log(
    `  ${name.padEnd(48)} ${((best * 1e6) / n).toFixed(0).padStart(5)} ns/get  ${(rate / 1e6).toFixed(2)}M/s`,
  );
}
