/**
 * `Emdb.builder()`: every option is checked when it is set, so a mistake is reported at the
 * line that made it, with EMDB_INVALID_CONFIG (or TypeError for a wrong type).
 */
import type { Emdb } from "./emdb.js";
import { EmdbError } from "./errors.js";
import { DEFAULT_FLUSH_POLICY, type FlushPolicy, isFlushPolicy } from "./flush-policy.js";
import { DEFAULT_PAGE_SIZE, isValidPageSize, MAX_PAGE_SIZE, MIN_PAGE_SIZE } from "./pager/page.js";
import { DEFAULT_CACHE_PAGES } from "./pager/page-cache.js";
import { type Clock, checkedClock, MAX_EXPIRY_MS, systemClock } from "./ttl/ttl.js";

export interface EmdbConfig {
  readonly path: string | undefined;
  readonly flushPolicy: FlushPolicy;
  readonly defaultTtlMs: number | undefined;
  readonly useMmap: boolean;
  readonly clock: Clock;
  readonly pageSize: number;
  readonly cachePages: number;
  readonly checkpointBytes: number;
  readonly onProgress: ProgressListener | undefined;
}

/**
 * What a progress report is about: `migrate-read` (bytes of the legacy file read, per
 * chunk), `migrate-write` (entries written to the new file), `open` (records loaded from the
 * page file, out of the meta page's count) and `compact` (entries written, out of the live
 * count). All but `migrate-read` report every 65,536 and once at the end.
 */
export type ProgressPhase = "migrate-read" | "migrate-write" | "open" | "compact";

/** Records between two progress reports of the phases that count records. */
export const PROGRESS_EVERY = 65_536;

/** Called on long work: at open (migration, loading) and during `compact()`. */
export type ProgressListener = (progress: {
  phase: ProgressPhase;
  done: number;
  total: number | undefined;
}) => void;

export const DEFAULT_CHECKPOINT_BYTES = 16 * 1024 * 1024;

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
    pageSize: number;
    cachePages: number;
    checkpointBytes: number;
    onProgress: ProgressListener | undefined;
  } = {
    path: undefined,
    flushPolicy: DEFAULT_FLUSH_POLICY,
    defaultTtlMs: undefined,
    useMmap: false,
    clock: systemClock,
    pageSize: DEFAULT_PAGE_SIZE,
    cachePages: DEFAULT_CACHE_PAGES,
    checkpointBytes: DEFAULT_CHECKPOINT_BYTES,
    onProgress: undefined,
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
    if (path.endsWith("/")) throw invalid(`path must name a file, not end with "/": ${path}`);
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
    needNumber(ms, "defaultTtl(ms)");
    if (!Number.isSafeInteger(ms) || ms <= 0 || ms > MAX_EXPIRY_MS) {
      throw invalid(
        `defaultTtl(ms) needs a positive integer of milliseconds up to ${MAX_EXPIRY_MS}, got ${ms}`,
      );
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
    this.cfg.clock = checkedClock(clock);
    return this;
  }

  /**
   * Page size of a *new* file, in bytes: a power of two from 512 to 65536 (default 4096).
   * An existing file keeps its own. Small pages are for tests that want deep trees.
   */
  pageSize(bytes: number): this {
    needNumber(bytes, "pageSize(bytes)");
    if (!isValidPageSize(bytes)) {
      throw invalid(
        `pageSize needs a power of two from ${MIN_PAGE_SIZE} to ${MAX_PAGE_SIZE}, got ${String(bytes)}`,
      );
    }
    this.cfg.pageSize = bytes;
    return this;
  }

  /** How many pages the page cache keeps (default 2048, i.e. 8 MiB of 4 KB pages). */
  cacheSize(pages: number): this {
    needNumber(pages, "cacheSize(pages)");
    if (!Number.isSafeInteger(pages) || pages < 16) {
      throw invalid(`cacheSize needs an integer of at least 16 pages, got ${String(pages)}`);
    }
    this.cfg.cachePages = pages;
    return this;
  }

  /**
   * WAL size, in bytes, past which a checkpoint runs (default 16 MiB; half the page file's
   * size instead when that is larger, so a growing database does not rewrite itself often).
   */
  checkpointThreshold(bytes: number): this {
    needNumber(bytes, "checkpointThreshold(bytes)");
    if (!Number.isSafeInteger(bytes) || bytes < 1) {
      throw invalid(`checkpointThreshold needs a positive integer of bytes, got ${String(bytes)}`);
    }
    this.cfg.checkpointBytes = bytes;
    return this;
  }

  /**
   * Called with the progress of long work (migrating an emdb-rs file and loading the page
   * file at open, compacting; see `ProgressPhase`). During
   * `compact()` the listener may read the database; writes, `flush`, `compact` and `close`
   * throw EMDB_BUSY there.
   */
  onProgress(listener: ProgressListener): this {
    if (typeof listener !== "function") throw new TypeError("onProgress needs a function");
    this.cfg.onProgress = listener;
    return this;
  }

  /** @internal */
  config(): EmdbConfig {
    return { ...this.cfg };
  }
}

function needNumber(v: unknown, what: string): void {
  if (typeof v !== "number") throw new TypeError(`${what} needs a number, got ${typeof v}`);
}
