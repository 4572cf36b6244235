/**
 * Loads emdb's own native addon (`native/emdb_native.c`: flock and 64-bit mmap, shared or private), or explains
 * why it is not there.
 *
 * The addon is optional: `native/build.mjs` builds it at install time and exits 0 when it
 * cannot, so every caller must cope with `native === undefined` (pid lock file, pread).
 * `EMDB_DISABLE_NATIVE=1` forces that fallback; it is read once, when this module loads.
 */
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

export interface NativeApi {
  /** Version of the addon's JS surface; a mismatch means a stale build. */
  readonly ABI_VERSION: number;
  readonly PAGE_SIZE: number;
  readonly MADV_NORMAL: number;
  readonly MADV_RANDOM: number;
  readonly MADV_SEQUENTIAL: number;
  readonly MADV_WILLNEED: number;
  readonly MADV_DONTNEED: number;
  /**
   * flock(2). Returns false when a non-blocking request would wait; throws an Error whose
   * `code` is the errno name otherwise. A blocking request blocks the whole event loop.
   */
  flock(fd: number, exclusive: boolean, nonBlocking: boolean): boolean;
  funlock(fd: number): void;
  /**
   * A MAP_SHARED mapping of `length` bytes at `offset` (a multiple of PAGE_SIZE), both up to
   * 2^53 - 1. There is no munmap: the mapping goes away when the Buffer and all its views
   * are garbage-collected. Touching a mapped page past the end of the file kills the process
   * with SIGBUS, so never map past EOF nor shrink a file while it is mapped.
   * On Node 20 one Buffer holds at most 4 GiB (`buffer.constants.MAX_LENGTH`).
   */
  mmap(fd: number, length: number, offset: number, writable: boolean): Buffer;
  /**
   * A MAP_PRIVATE (copy-on-write) mapping, readable and writable, with `mmap`'s rules for
   * `offset`, `length` and release. A page shows the file's current bytes until the first
   * store into it gives the process its own copy; from then on the file's changes no
   * longer show there, and a truncation below it no longer raises SIGBUS there.
   */
  mmapPrivate(fd: number, length: number, offset: number): Buffer;
  /** msync(2) on `[offset, offset + length)` of a Buffer returned by `mmap` (not a view). */
  msync(map: Buffer, offset: number, length: number, sync: boolean): void;
  /** madvise(2) over a whole Buffer returned by `mmap`, with one of the MADV_* constants. */
  madvise(map: Buffer, advice: number): void;
}

/** The ABI_VERSION this code was written against (`EMDB_NATIVE_ABI` in the C source). */
export const EXPECTED_ABI_VERSION = 2;

const ADDON_RELATIVE_PATH = path.join("native", "build", "Release", "emdb_native.node");

/**
 * The directory of emdb's package.json. Walking up instead of a fixed `../..` because this
 * file runs both as `src/pager/native.ts` (tsx) and as `dist/src/pager/native.js` (built).
 */
function packageRoot(start: string): string | undefined {
  let dir = start;
  for (;;) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")) as {
        name?: unknown;
      };
      if (pkg.name === "emdb") return dir;
    } catch {
      // no package.json here, or not JSON: keep walking
    }
    const parent = path.dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/** The first line of the build log, which says why the install step gave up. */
function buildFailureReason(root: string): string | undefined {
  try {
    const log = fs.readFileSync(path.join(root, "native", "build", "build.log"), "utf8");
    const first = log.split("\n", 1)[0]?.trim();
    return first !== undefined && first !== "" && !first.startsWith("$ ") ? first : undefined;
  } catch {
    return undefined;
  }
}

interface Loaded {
  api: NativeApi | undefined;
  error: string | undefined;
  file: string | undefined;
}

function load(): Loaded {
  if (process.env.EMDB_DISABLE_NATIVE === "1") {
    return { api: undefined, error: "disabled by EMDB_DISABLE_NATIVE=1", file: undefined };
  }
  const root = packageRoot(path.dirname(fileURLToPath(import.meta.url)));
  if (root === undefined) {
    return { api: undefined, error: "cannot find emdb's package.json", file: undefined };
  }
  const file = path.join(root, ADDON_RELATIVE_PATH);
  if (!fs.existsSync(file)) {
    const reason = buildFailureReason(root);
    return {
      api: undefined,
      error: `${file} is missing${reason !== undefined ? ` (install step: ${reason})` : " (the install step did not build it)"}`,
      file,
    };
  }
  try {
    const api = createRequire(import.meta.url)(file) as NativeApi;
    if (api.ABI_VERSION !== EXPECTED_ABI_VERSION) {
      return {
        api: undefined,
        error: `${file} is a stale build (ABI ${String(api.ABI_VERSION)}, expected ${EXPECTED_ABI_VERSION}); run node native/build.mjs`,
        file,
      };
    }
    return { api, error: undefined, file };
  } catch (err) {
    return {
      api: undefined,
      error: `cannot load ${file}: ${err instanceof Error ? err.message : String(err)}`,
      file,
    };
  }
}

const loaded = load();

/** The addon, or undefined when it is not built, does not load, or is disabled. */
export const native: NativeApi | undefined = loaded.api;
/** Why `native` is undefined; undefined when it loaded. */
export const nativeLoadError: string | undefined = loaded.error;
/** Where the addon was looked for (undefined when disabled or emdb's root was not found). */
export const nativeAddonPath: string | undefined = loaded.file;
