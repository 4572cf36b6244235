/**
 * Time-to-live values and expiry arithmetic.
 *
 * All time comes from an injectable clock (`() => ms since the Unix epoch`), never from
 * `Date.now()` directly, so tests can move time without sleeping. An expiry is an absolute
 * millisecond deadline; an entry is expired when `expiresAt <= now` (so `Ttl.after(0)` is
 * expired at once, as in emdb-rs).
 */
import { EmdbError } from "../errors.js";

export type Clock = () => number;

export const systemClock: Clock = () => Date.now();

/** Sentinel meaning "this entry never expires". */
export const NO_EXPIRY = 0;

export class Ttl {
  private constructor(
    /** "default" uses the builder's `defaultTtl`; "never" and "after" are explicit. */
    readonly kind: "default" | "never" | "after",
    readonly ms: number,
  ) {}

  private static readonly DEFAULT = new Ttl("default", 0);
  private static readonly NEVER = new Ttl("never", 0);

  /** Use the database's default TTL (set with `builder().defaultTtl(ms)`), or never expire. */
  static default(): Ttl {
    return Ttl.DEFAULT;
  }

  /** Never expire, whatever the database's default. */
  static never(): Ttl {
    return Ttl.NEVER;
  }

  /** Expire `ms` milliseconds from now (`0` means already expired). */
  static after(ms: number): Ttl {
    if (typeof ms !== "number")
      throw new TypeError(`Ttl.after(ms) needs a number, got ${typeof ms}`);
    if (!Number.isSafeInteger(ms) || ms < 0) {
      throw new RangeError(`Ttl.after(ms) needs a non-negative integer of milliseconds, got ${ms}`);
    }
    return new Ttl("after", ms);
  }
}

/**
 * The absolute deadline for a write made at `now`, or `undefined` for "never expires".
 * `defaultTtlMs` is the builder's default (undefined when none).
 */
export function resolveExpiry(
  ttl: Ttl,
  now: number,
  defaultTtlMs: number | undefined,
): number | undefined {
  if (!(ttl instanceof Ttl)) {
    throw new TypeError("ttl must be Ttl.default(), Ttl.never() or Ttl.after(ms)");
  }
  let ms: number;
  if (ttl.kind === "after") ms = ttl.ms;
  else if (ttl.kind === "default" && defaultTtlMs !== undefined) ms = defaultTtlMs;
  else return undefined;
  const at = now + ms;
  if (!Number.isSafeInteger(at)) {
    throw new EmdbError(
      "EMDB_TTL_OVERFLOW",
      `expiry ${now} + ${ms} ms does not fit in 2^53 - 1 ms`,
    );
  }
  return at;
}
