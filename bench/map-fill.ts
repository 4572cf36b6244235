/**
 * The floor under emdb's reopen time: filling V8 Maps with 1M 16-byte latin1 string keys
 * (the workload's keys, in a shuffled order), as an open must. Variants: strings only (no
 * Map), one Map with small-integer values, 32 shards picked by FNV-1a as emdb does, and the
 * same with a 100-byte value Buffer copied per entry. Run: `npx tsx bench/map-fill.ts [n]`.
 */
const n = Number(process.argv[2] ?? 1_000_000);
const keyBytes = Buffer.alloc(n * 16);
for (let i = 0; i < n; i++) {
  keyBytes.write(`user:${String((i * 7919) % n).padStart(11, "0")}`, i * 16, "latin1");
}
const value = Buffer.alloc(100, 5);

function fnv(k: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < k.length; i++) h = Math.imul(h ^ k.charCodeAt(i), 0x01000193);
  return h;
}

const variants: Record<string, (maps: Map<string, unknown>[], k: string, i: number) => void> = {
  "key strings only": () => {},
  "1 Map, small-integer values": (maps, k, i) => maps[0]!.set(k, i),
  "32 shards (FNV-1a), small-integer values": (maps, k, i) => {
    const h = fnv(k);
    maps[(h ^ (h >>> 15)) & 31]!.set(k, i);
  },
  "32 shards, a 100-byte value copy each": (maps, k) => {
    const h = fnv(k);
    const v = Buffer.allocUnsafe(100);
    value.copy(v);
    maps[(h ^ (h >>> 15)) & 31]!.set(k, v);
  },
};

console.log(`filling Maps with ${n.toLocaleString("en")} keys (one fresh set of Maps per line):`);
for (const [name, fill] of Object.entries(variants)) {
  const maps = Array.from({ length: 32 }, () => new Map<string, unknown>());
  const keep: string[] = [];
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const k = keyBytes.toString("latin1", i * 16, i * 16 + 16);
    keep.push(k);
    fill(maps, k, i);
  }
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  console.log(`  ${name.padEnd(42)} ${ms.toFixed(0)} ms`);
}
