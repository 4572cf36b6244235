import assert from "node:assert/strict";
import { Emdb } from "../../src/index.js";

/** A manual clock for TTL tests: time moves only when the test says so. */
export class FakeClock {
  constructor(public now = 1_700_000_000_000) {}
  readonly fn = (): number => this.now;
  advance(ms: number): void {
    this.now += ms;
  }
}

export function memDb(clock?: FakeClock, defaultTtl?: number): Emdb {
  const b = Emdb.builder();
  if (clock !== undefined) b.clock(clock.fn);
  if (defaultTtl !== undefined) b.defaultTtl(defaultTtl);
  return b.build();
}

/** The consistency checker must find nothing: every test ends with this. */
export function assertConsistent(db: Emdb): void {
  assert.deepEqual(db.check(), []);
}

export const str = (b: Buffer | undefined): string | undefined => b?.toString("utf8");

export function entriesAsStrings(it: Iterable<[Buffer, Buffer]>): [string, string][] {
  return [...it].map(([k, v]) => [k.toString("utf8"), v.toString("utf8")]);
}
