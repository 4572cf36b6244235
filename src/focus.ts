/**
 * A handle on one dotted-prefix group: `db.focus("product").set("name", v)` stores
 * `product.name`. Handles nest to any depth and hold no state but the database and the
 * prefix, so they are cheap to make and stay valid as long as the database is open.
 */
import type { Emdb } from "./emdb.js";
import { joinPath, validatePath } from "./groups.js";
import type { Value } from "./keys.js";
import type { Ttl } from "./ttl/ttl.js";

export class Focus {
  /** @internal */
  constructor(
    private readonly db: Emdb,
    /** The full dotted prefix of this handle, e.g. `"a.b"`. */
    readonly prefix: string,
  ) {}

  private full(key: string): string {
    return joinPath(this.prefix, validatePath(key, "focus key"));
  }

  /** Stores `prefix.key` with the database's default TTL. */
  set(key: string, value: Value): void {
    this.db.insert(this.full(key), value);
  }

  setWithTtl(key: string, value: Value, ttl: Ttl): void {
    this.db.insertWithTtl(this.full(key), value, ttl);
  }

  get(key: string): Buffer | undefined {
    return this.db.get(this.full(key));
  }

  remove(key: string): Buffer | undefined {
    return this.db.remove(this.full(key));
  }

  containsKey(key: string): boolean {
    return this.db.containsKey(this.full(key));
  }

  /** A handle on the sub-group `prefix.sub`. */
  focus(sub: string): Focus {
    return this.db.focus(this.full(sub));
  }

  /** The live entries of this group, with full keys, in key order. */
  iter(): IterableIterator<[Buffer, Buffer]> {
    return this.db.group(this.prefix);
  }

  /** Removes every key of this group atomically; returns how many live keys it removed. */
  deleteAll(): number {
    return this.db.deleteGroup(this.prefix);
  }
}
