/**
 * The entries of an open's bulk load, sorted by shard before any key string exists.
 *
 * Why: the load reads records in key order, but fills the shards' Maps one shard at a time
 * (`Keyspace.loadEntry` says why). A key string made while scanning sits in memory in key
 * order, so filling one shard touched strings strewn across the heap: a cache miss for
 * nearly every insert. Here a key's bytes are copied, while its page is in the cache, into
 * a byte run of its shard; each shard's strings are made from that run just before they go
 * into its Map, so they are in the cache. The ordered view is filled last, in key order:
 * `shardOf` says which shard's next key comes next (`SortedKeys.loadInterleaved`), so it
 * reads 32 arrays front to back and writes its own in order. Placing each key by its rank
 * as its shard was filled cost a cache miss per key, about 45 ms at a million.
 *
 * Each key is its own flat string. Views into one string per run (V8's sliced strings, as
 * `substring` makes them) are quicker to make, but the open was no faster for it while the
 * point reads after it were 12% slower (`bench/open-time.ts --reads`: 737k against 841k
 * reads/s), each lookup comparing the key through the view's parent.
 *
 * Measured with `bench/open-time.ts` on a million 16-byte keys, 15 runs alternating with
 * the build before (medians): the open went from 549 to 481 ms, and from 497 to 475 ms
 * once the shards' arrays started with room for the meta page's record count.
 *
 * Per shard, staged entry `j` has its key at `bytes[ends[j-1] .. ends[j])` (from 0 for the
 * first) and its entry in `refs[j]` (see `Drained`).
 */
import { latin1Slice } from "../keys.js";
import type { Stored } from "./keyspace.js";

/** Staged entries a shard starts with room for, at least; the arrays double as needed. */
const FIRST_ROOM = 256;
/** The most entries a load's hint makes room for up front (beyond that, they double). */
const MOST_EXPECTED = 1 << 22;

class ShardStage {
  bytes: Buffer;
  view: DataView;
  ends: Int32Array;
  /** A loaded value's ref, or -1 for an entry that is not a number: the next of `others`. */
  refs: Float64Array;
  readonly others: Stored[] = [];
  count = 0;
  used = 0;

  constructor(room = FIRST_ROOM) {
    this.bytes = Buffer.allocUnsafeSlow(room * 16);
    this.view = viewOf(this.bytes);
    this.ends = new Int32Array(room);
    this.refs = new Float64Array(room);
  }

  add(src: DataView, start: number, end: number, e: Stored): void {
    const j = this.count++;
    if (j === this.ends.length) {
      this.ends = grown(this.ends);
      const refs = new Float64Array(this.ends.length);
      refs.set(this.refs);
      this.refs = refs;
    }
    let o = this.used;
    if (o + (end - start) > this.bytes.length) {
      const bytes = Buffer.allocUnsafeSlow(Math.max(2 * this.bytes.length, o + end - start));
      this.bytes.copy(bytes, 0, 0, o);
      this.bytes = bytes;
      this.view = viewOf(bytes);
    }
    // Four bytes at a time, in a loop: a native `copy` per key would cost more than the
    // copy of ~16 bytes, and this runs about 1.5× faster than byte by byte.
    const dst = this.view;
    let i = start;
    for (; i + 4 <= end; i += 4, o += 4) dst.setUint32(o, src.getUint32(i));
    for (; i < end; i++, o++) dst.setUint8(o, src.getUint8(i));
    this.used = o;
    this.ends[j] = o;
    if (typeof e === "number") this.refs[j] = e;
    else {
      this.refs[j] = -1;
      this.others.push(e);
    }
  }
}

function viewOf(b: Buffer): DataView {
  return new DataView(b.buffer, b.byteOffset, b.length);
}

function grown<T extends Int32Array | Uint8Array>(a: T): T {
  const b = new (a.constructor as new (n: number) => T)(Math.max(FIRST_ROOM, a.length * 2));
  b.set(a);
  return b;
}

/**
 * A shard's staged entries: key `j` is `keys[j]`, and its entry the ref `refs[j]`, or when
 * that is -1 the next of `others` (in staging order).
 */
export interface Drained {
  keys: string[];
  refs: Float64Array;
  others: Stored[];
}

export class LoadStaging {
  private readonly stages: ShardStage[] = [];
  /** Entries staged so far. */
  count = 0;
  /** `shardOf[r]`: the shard of the entry staged `r`th, that is `r`th in key order. */
  private order: Uint8Array;

  /**
   * `expected`: about how many entries will come (the meta page's record count, trusted
   * with room for at most `MOST_EXPECTED`), so that the shards' arrays start at about their
   * final size instead of being copied as they double.
   */
  constructor(shards: number, expected = 0) {
    if (shards > 256) throw new Error("internal: shard numbers are kept in bytes");
    const room = Math.min(expected, MOST_EXPECTED);
    const share = Math.ceil((room / shards) * 1.1);
    for (let i = 0; i < shards; i++) this.stages.push(new ShardStage(FIRST_ROOM + share));
    this.order = new Uint8Array(FIRST_ROOM + room);
  }

  /** Which shard each staged entry went to, by its place in key order (`count` of them). */
  get shardOf(): Uint8Array {
    return this.order.subarray(0, this.count);
  }

  /** The page the last key came from, and a view of it. */
  private srcPage: Buffer | undefined;
  private src: DataView = new DataView(new ArrayBuffer(0));

  /** Stages the next entry in key order; its key is `kb[start..end)`. */
  add(shard: number, kb: Buffer, start: number, end: number, e: Stored): void {
    if (kb !== this.srcPage) {
      this.srcPage = kb;
      this.src = viewOf(kb);
    }
    const r = this.count++;
    if (r === this.order.length) this.order = grown(this.order);
    this.order[r] = shard;
    this.stages[shard]!.add(this.src, start, end, e);
  }

  /**
   * One shard's staged entries with their key strings, made now in one tight loop (making
   * each just before its insert ran slower). The shard's stage is let go.
   */
  drain(shard: number): Drained {
    const s = this.stages[shard]!;
    const n = s.count;
    const keys = new Array<string>(n);
    const { bytes, ends } = s;
    let o = 0;
    for (let j = 0; j < n; j++) {
      const end = ends[j]!;
      keys[j] = latin1Slice(bytes, o, end);
      o = end;
    }
    this.stages[shard] = new ShardStage(0);
    return { keys, refs: s.refs, others: s.others };
  }
}
