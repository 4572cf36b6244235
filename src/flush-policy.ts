/**
 * When acknowledged writes become durable (DESIGN.md §3):
 * - `onEachWrite()`: every write is synced before it returns;
 * - `everyN(n)`: at most n − 1 acknowledged writes can be lost in any crash;
 * - `manual()`: writes are durable once `flush()` returns.
 * In-memory databases accept a policy and ignore it.
 */
import { EmdbError } from "./errors.js";

export type FlushPolicy =
  | { readonly kind: "onEachWrite" }
  | { readonly kind: "everyN"; readonly n: number }
  | { readonly kind: "manual" };

const ON_EACH_WRITE: FlushPolicy = Object.freeze({ kind: "onEachWrite" });
const MANUAL: FlushPolicy = Object.freeze({ kind: "manual" });

export function onEachWrite(): FlushPolicy {
  return ON_EACH_WRITE;
}

export function everyN(n: number): FlushPolicy {
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 1) {
    throw new EmdbError(
      "EMDB_INVALID_CONFIG",
      `everyN(n) needs a positive integer, got ${String(n)}`,
    );
  }
  return Object.freeze({ kind: "everyN", n });
}

export function manual(): FlushPolicy {
  return MANUAL;
}

/** The same factories as a namespace: `FlushPolicy.everyN(64)`. */
export const FlushPolicy = Object.freeze({ onEachWrite, everyN, manual });

export const DEFAULT_FLUSH_POLICY: FlushPolicy = Object.freeze({ kind: "everyN", n: 64 });

export function isFlushPolicy(p: unknown): p is FlushPolicy {
  if (typeof p !== "object" || p === null) return false;
  const kind = (p as { kind?: unknown }).kind;
  if (kind === "onEachWrite" || kind === "manual") return true;
  const n = (p as { n?: unknown }).n;
  return kind === "everyN" && typeof n === "number" && Number.isSafeInteger(n) && n >= 1;
}
