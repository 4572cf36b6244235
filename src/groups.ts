/**
 * Dotted-prefix groups. The separator is `.` (0x2E); there is no escaping.
 *
 * Group `p` is exactly the keys that start with `p.`: for `product` that is `product.name`
 * and `product.a.b`, not `product` itself and not `products.x`. Because `/` (0x2F) is the
 * byte right after `.`, the group is the half-open byte range [`p.`, `p/`):
 *
 *     product        < product.a < product.zzz < product/ ≤ product0 < products.x
 *                      └──────── group "product" ────────┘
 *
 * So a group scan is one ordered-range scan, O(log n + k), never a walk of the database.
 *
 * Paths are validated the same way everywhere (emdb-rs was inconsistent, §9.3 S4): a prefix
 * or a focus key must be a non-empty string whose dotted segments are all non-empty, so
 * `""`, `".a"`, `"a."` and `"a..b"` throw EMDB_INVALID_PATH.
 */
import { EmdbError } from "./errors.js";
import { encodeKey } from "./keys.js";

export const SEPARATOR = ".";

export function validatePath(path: unknown, what: string): string {
  if (typeof path !== "string") {
    throw new TypeError(`${what} must be a string, got ${path === null ? "null" : typeof path}`);
  }
  if (path.length === 0) {
    throw new EmdbError("EMDB_INVALID_PATH", `${what} must not be empty`);
  }
  if (path.startsWith(SEPARATOR) || path.endsWith(SEPARATOR) || path.includes("..")) {
    throw new EmdbError(
      "EMDB_INVALID_PATH",
      `${what} ${JSON.stringify(path)} has an empty segment (segments are separated by ".")`,
    );
  }
  return path;
}

/** Internal (latin1) bounds of a group: [lo, hi). */
export function groupBounds(prefix: string): { lo: string; hi: string } {
  validatePath(prefix, "group prefix");
  // The prefix is encoded without the separator so its byte length check covers the key.
  const base = encodeKey(prefix);
  return { lo: base + ".", hi: base + "/" };
}

export function joinPath(prefix: string, key: string): string {
  return prefix + SEPARATOR + key;
}
