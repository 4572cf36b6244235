/**
 * Named failpoints at every durability boundary, for crash tests.
 *
 * A test process sets `EMDB_CRASH_AT=<name>:<n>` and the process kills itself with SIGKILL
 * the n-th time it reaches the named point (n defaults to 1), exactly as a power cut or
 * `kill -9` would stop it there. Unset (always, outside tests), a failpoint is one
 * comparison.
 */
const spec = process.env.EMDB_CRASH_AT;
const [armedName, armedCount] =
  spec === undefined || spec === "" ? [undefined, 0] : parseSpec(spec);
let hits = 0;

function parseSpec(s: string): [string, number] {
  const i = s.lastIndexOf(":");
  if (i < 0) return [s, 1];
  const n = Number(s.slice(i + 1));
  return [s.slice(0, i), Number.isSafeInteger(n) && n > 0 ? n : 1];
}

export function failpoint(name: string): void {
  if (armedName === undefined || name !== armedName) return;
  hits++;
  if (hits === armedCount) process.kill(process.pid, "SIGKILL");
}

/** Every failpoint name the engine passes, for tests that iterate over them. */
export const FAILPOINTS = [
  "pager:create:tmp-written",
  "wal:before-write",
  "wal:after-write",
  "wal:after-sync",
  "wal:create:truncated",
  "wal:reset:header-written",
  "commit:pages-written",
  "commit:pages-synced",
  "commit:meta-written",
  "commit:meta-synced",
  "checkpoint:before",
  "checkpoint:after-wal-reset",
  "compact:tmp-written",
  "compact:renamed",
] as const;

/** The failpoints of a migration from an emdb-rs file (see migrations/migrate.ts). */
export const MIGRATION_FAILPOINTS = [
  "migrate:tmp-written",
  "migrate:backup-linked",
  "migrate:renamed",
] as const;
