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

/**
 * Sentinel meaning "this entry never expires", on disk as in memory. A deadline of 0 itself
 * (a clock reading 0 and `Ttl.after(0)`) is expired at once, so it is logged as a removal.
 */
export const NO_EXPIRY = 0;

/** The latest deadline: the largest time a JS `Date` holds (8.64e15 ms, in the year 275760). */
export const MAX_EXPIRY_MS = 8_640_000_000_000_000;

/**
 * A deadline read from an emdb-rs file, which allowed any u64: one past `MAX_EXPIRY_MS`
 * (`readU64` gives -1 past 2^53) is clamped to it, still "never" in practice.
 */
export function clampExpiry(at: number): number {
  return at < 0 || at > MAX_EXPIRY_MS ? MAX_EXPIRY_MS : at;
}

/**
 * An injected clock, checked at every reading: deadlines are whole milliseconds since 1970,
 * stored as unsigned integers, so a reading that is negative, fractional or not a number
 * would make deadlines that cannot be stored, or compare wrongly.
 */
export function checkedClock(clock: () => number): Clock {
  return () => {
    const now = clock();
    if (!Number.isSafeInteger(now) || now < 0 || now > MAX_EXPIRY_MS) {
      throw new EmdbError(
        "EMDB_INVALID_CONFIG",
        `the clock returned ${typeof now === "number" ? now : typeof now}; it must return whole milliseconds since 1970 (an integer from 0 to ${MAX_EXPIRY_MS})`,
      );
    }
    return now;
  };
}

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
  if (!(at <= MAX_EXPIRY_MS)) {
    throw new EmdbError(
      "EMDB_TTL_OVERFLOW",
      `expiry ${now} + ${ms} ms is past ${MAX_EXPIRY_MS} ms since 1970, the latest a Date holds`,
    );
  }
  return at;
}
