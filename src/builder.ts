/**
 * `Emdb.builder()`: every option is checked when it is set, so a mistake is reported at the
 * line that made it, with EMDB_INVALID_CONFIG (or TypeError for a wrong type).
 */
import type { Emdb } from "./emdb.js";
import { EmdbError } from "./errors.js";
import { DEFAULT_FLUSH_POLICY, type FlushPolicy, isFlushPolicy } from "./flush-policy.js";
import { type Clock, systemClock } from "./ttl/ttl.js";

export interface EmdbConfig {
  readonly path: string | undefined;
  readonly flushPolicy: FlushPolicy;
  readonly defaultTtlMs: number | undefined;
  readonly useMmap: boolean;
  readonly clock: Clock;
}

function invalid(message: string): EmdbError {
  return new EmdbError("EMDB_INVALID_CONFIG", message);
}

export class EmdbBuilder {
  private cfg: {
    path: string | undefined;
    flushPolicy: FlushPolicy;
    defaultTtlMs: number | undefined;
    useMmap: boolean;
    clock: Clock;
  } = {
    path: undefined,
    flushPolicy: DEFAULT_FLUSH_POLICY,
    defaultTtlMs: undefined,
    useMmap: false,
    clock: systemClock,
  };

  /** @internal */
  constructor(private readonly finish: (config: EmdbConfig) => Emdb) {}

  /** Opens the database with these options. */
  build(): Emdb {
    return this.finish(this.config());
  }

  /** The database file. Without a path the database lives in memory only. */
  path(path: string): this {
    if (typeof path !== "string") throw new TypeError(`path must be a string, got ${typeof path}`);
    if (path.length === 0) throw invalid("path must not be empty");
    if (path.includes("\0")) throw invalid("path must not contain NUL bytes");
    this.cfg.path = path;
    return this;
  }

  /** When writes become durable: `onEachWrite()`, `everyN(n)` (default `everyN(64)`), `manual()`. */
  flushPolicy(policy: FlushPolicy): this {
    if (!isFlushPolicy(policy)) {
      throw invalid("flushPolicy needs onEachWrite(), everyN(n) or manual()");
    }
    this.cfg.flushPolicy = policy;
    return this;
  }

  /** TTL in milliseconds for writes that use `Ttl.default()` (plain `insert` does). */
  defaultTtl(ms: number): this {
    if (typeof ms !== "number")
      throw new TypeError(`defaultTtl(ms) needs a number, got ${typeof ms}`);
    if (!Number.isSafeInteger(ms) || ms <= 0) {
      throw invalid(`defaultTtl(ms) needs a positive integer of milliseconds, got ${ms}`);
    }
    this.cfg.defaultTtlMs = ms;
    return this;
  }

  /** Read the page file through a memory map (falls back to pread where none is available). */
  useMmap(on: boolean): this {
    if (typeof on !== "boolean")
      throw new TypeError(`useMmap(on) needs a boolean, got ${typeof on}`);
    this.cfg.useMmap = on;
    return this;
  }

  /** The time source for TTLs, in ms since the Unix epoch (default `Date.now`). */
  clock(clock: () => number): this {
    if (typeof clock !== "function") throw new TypeError("clock must be a function returning ms");
    this.cfg.clock = clock;
    return this;
  }

  /** @internal */
  config(): EmdbConfig {
    return { ...this.cfg };
  }
}
