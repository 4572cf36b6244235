/**
 * The ceiling: a plain Map with latin1 string keys (one char per key byte, as §4 and as emdb
 * itself keys its shards) holding the caller's value Buffers. No durability, no files.
 * A Map has no order, so its scan sorts the keys first and its prefix scan filters every key
 * and sorts the matches: both costs are included, as §4 does for the scan.
 */
import type { Engine, EngineModule } from "../engine.js";

class MapEngine implements Engine<string> {
  readonly name = "map" as const;
  readonly persistent = false;
  readonly describe = {
    open: "new Map<string, Buffer>() (keys as latin1 strings, converted before timing)",
    bulk: "map.set(k, v) × N",
    reads: "map.get(k)",
    scan: "[...map.keys()].sort(), then map.get per key (sort included)",
    prefix:
      "filter every key by gte <= k < lt, sort the matches, take 100 (O(n): a Map has no order)",
    nonDurable: "map.set(k, v)",
  };
  private map = new Map<string, Buffer>();

  key(k: Buffer): string {
    return k.toString("latin1");
  }

  open(): void {
    this.map = new Map();
  }

  bulkInsert(keys: readonly string[], values: readonly Buffer[]): void {
    const map = this.map;
    const n = keys.length;
    for (let i = 0; i < n; i++) map.set(keys[i]!, values[i]!);
  }

  get(key: string): Uint8Array | undefined {
    return this.map.get(key);
  }

  scanAll() {
    const map = this.map;
    // Default sort compares UTF-16 code units: for latin1 keys that is unsigned byte order.
    const keys = [...map.keys()].sort();
    let valueBytes = 0;
    let ordered = true;
    for (let i = 0; i < keys.length; i++) {
      if (i > 0 && !(keys[i - 1]! < keys[i]!)) ordered = false;
      valueBytes += map.get(keys[i]!)!.length;
    }
    return { count: keys.length, ordered, valueBytes };
  }

  prefixScan(gte: string, lt: string, limit: number): number {
    const hits: string[] = [];
    for (const k of this.map.keys()) if (k >= gte && k < lt) hits.push(k);
    hits.sort();
    const n = Math.min(limit, hits.length);
    // Read the values too, as every ordered engine's range does.
    for (let i = 0; i < n; i++) this.map.get(hits[i]!);
    return n;
  }

  prepare(): void {}

  nonDurablePut(key: string, value: Buffer): void {
    this.map.set(key, value);
  }

  close(): void {}
}

export const engine: EngineModule = { create: () => new MapEngine() };
