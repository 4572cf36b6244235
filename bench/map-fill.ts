/**
 * The floor under emdb's reopen time: filling V8 Maps with 1M 16-byte latin1 string keys
 * (the workload's keys, in a shuffled order), as an open must. Variants: strings only (no
 * Map), one Map with small-integer values, 32 shards picked by FNV-1a as emdb does, the same
 * with a 100-byte value copied per entry (a Buffer, as emdb kept values before, or a latin1
 * string, as it does now), and the shards filled one at a time from per-shard buckets, as
 * emdb's open does now. Run: `npx tsx bench/map-fill.ts [n]`.
 */
const n = Number(process.argv[2] ?? 1_000_000);
const keyBytes = Buffer.alloc(n * 16);
for (let i = 0; i < n; i++) {
  keyBytes.write(`user:${String((i * 7919) % n).padStart(11, "0")}`, i * 16, "latin1");
}
const value = Buffer.alloc(100, 5);

function shardOf(k: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < k.length; i++) h = Math.imul(h ^ k.charCodeAt(i), 0x01000193);
  return (h ^ (h >>> 15)) & 31;
}

type Maps = Map<string, unknown>[];

/** One way to fill: `add` per entry, then `finish` (part of the time too). */
interface Fill {
  add(maps: Maps, k: string, i: number): void;
  finish?(maps: Maps): void;
}

function bucketed(): Fill {
  const keys: string[][] = Array.from({ length: 32 }, () => []);
  const values: string[][] = Array.from({ length: 32 }, () => []);
  return {
    add: (_maps, k) => {
      const s = shardOf(k);
      keys[s]!.push(k);
      values[s]!.push(value.toString("latin1", 0, 100));
    },
    finish: (maps) => {
      for (let s = 0; s < 32; s++) {
        const m = maps[s]!;
        const ks = keys[s]!;
        const vs = values[s]!;
        for (let j = 0; j < ks.length; j++) m.set(ks[j]!, vs[j]!);
      }
    },
  };
}

const variants: Record<string, () => Fill> = {
  "key strings only": () => ({ add: () => {} }),
  "1 Map, small-integer values": () => ({ add: (maps, k, i) => maps[0]!.set(k, i) }),
  "32 shards (FNV-1a), small-integer values": () => ({
    add: (maps, k, i) => maps[shardOf(k)]!.set(k, i),
  }),
  "32 shards, a 100-byte value Buffer each": () => ({
    add: (maps, k) => {
      const v = Buffer.allocUnsafe(100);
      value.copy(v);
      maps[shardOf(k)]!.set(k, v);
    },
  }),
  "32 shards, a 100-byte value string each": () => ({
    add: (maps, k) => maps[shardOf(k)]!.set(k, value.toString("latin1", 0, 100)),
  }),
  "as above, shards filled one at a time": bucketed,
};

console.log(`filling Maps with ${n.toLocaleString("en")} keys (one fresh set of Maps per line):`);
for (const [name, make] of Object.entries(variants)) {
  const maps = Array.from({ length: 32 }, () => new Map<string, unknown>());
  const fill = make();
  const keep: string[] = [];
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const k = keyBytes.toString("latin1", i * 16, i * 16 + 16);
    keep.push(k);
    fill.add(maps, k, i);
  }
  fill.finish?.(maps);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  console.log(`  ${name.padEnd(42)} ${ms.toFixed(0)} ms`);
}
