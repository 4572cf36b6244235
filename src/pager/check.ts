/**
 * The page-accounting checker behind `Pager.check()`.
 *
 * It looks at the last commit as a reopen would: it reads the free-list chain and every page
 * the tree walker names straight from the file (not the cache), verifies their checksums and
 * types, and requires every page id below the meta's page count to be exactly one of: a meta
 * page (0, 1), a free-list page, a free id, a pending id, or a page the tree reaches, reached
 * exactly once. Pages nothing accounts for are leaks. No page may carry a generation newer
 * than the meta. When no transaction is open, the pager's in-memory free/pending sets must
 * match the disk. Problems are collected, never thrown.
 */

import { decodeFreelistPage } from "./freelist.js";
import type { Meta } from "./meta.js";
import { NO_PAGE, PageType, pageGeneration } from "./page.js";

/** What the tree walker gets from `check()`. */
export interface PageVisitor {
  readonly meta: Meta;
  readonly pageSize: number;
  /** Claims a page for the tree; false (and a problem recorded) if out of range or claimed twice. */
  claim(id: number, what: string): boolean;
  problem(message: string): void;
  /** Reads and verifies a page from the file itself (not the cache); undefined on failure. */
  read(id: number, type: PageType | undefined): Buffer | undefined;
}

/** What the checker needs from the pager. */
export interface CheckState {
  readonly meta: Meta;
  readonly pageSize: number;
  readonly path: string;
  /** A verified page straight from the file; throws EMDB_CORRUPTED. */
  readFromFile(id: number, type: PageType | undefined): Buffer;
  /** The pager's own accounting, when no transaction is open. */
  readonly inMemory:
    | {
        readonly free: readonly number[];
        readonly pending: readonly number[];
        readonly freelistPages: readonly number[];
        readonly pageCount: number;
      }
    | undefined;
}

const OWNER_NAMES = ["nothing", "a meta page", "a free-list page", "free", "pending", "the tree"];

export function checkPager(state: CheckState, walkTree?: (visitor: PageVisitor) => void): string[] {
  const problems: string[] = [];
  const m = state.meta;
  const owner = new Uint8Array(m.pageCount);
  const claim = (id: number, code: number, what: string): boolean => {
    if (!Number.isSafeInteger(id) || id < 2 || id >= m.pageCount) {
      problems.push(`${what}: page ${id} out of range (page count ${m.pageCount})`);
      return false;
    }
    if (owner[id] !== 0) {
      problems.push(`${what}: page ${id} already belongs to ${OWNER_NAMES[owner[id]!]}`);
      return false;
    }
    owner[id] = code;
    return true;
  };
  owner[0] = 1;
  owner[1] = 1;
  const read = (id: number, type: PageType | undefined): Buffer | undefined => {
    try {
      const page = state.readFromFile(id, type);
      const g = pageGeneration(page);
      if (g > m.generation) {
        problems.push(`page ${id} claims generation ${g}, newer than the meta's ${m.generation}`);
      }
      return page;
    } catch (err) {
      problems.push(err instanceof Error ? err.message : String(err));
      return undefined;
    }
  };
  const listedFree: number[] = [];
  const listedPending: number[] = [];
  const chain: number[] = [];
  for (let id = m.freelistRoot; id !== NO_PAGE; ) {
    if (!claim(id, 2, "free-list chain")) break;
    chain.push(id);
    const page = read(id, PageType.FreeList);
    if (page === undefined) break;
    try {
      const { next, runs } = decodeFreelistPage(page, id * state.pageSize, state.path);
      for (const r of runs) {
        for (let p = r.start; p < r.start + r.length; p++) {
          if (claim(p, r.pending ? 4 : 3, "free-list entry")) {
            (r.pending ? listedPending : listedFree).push(p);
          }
        }
      }
      id = next;
    } catch (err) {
      problems.push(err instanceof Error ? err.message : String(err));
      break;
    }
  }
  if (listedFree.length + listedPending.length !== m.freePageCount) {
    problems.push(
      `free-list lists ${listedFree.length + listedPending.length} pages, meta says ${m.freePageCount}`,
    );
  }
  walkTree?.({
    meta: m,
    pageSize: state.pageSize,
    claim: (id, what) => claim(id, 5, what),
    problem: (message) => problems.push(message),
    read,
  });
  const leaked: number[] = [];
  for (let id = 2; id < m.pageCount; id++) if (owner[id] === 0) leaked.push(id);
  if (leaked.length > 0) {
    problems.push(
      `${leaked.length} page(s) leaked (neither reachable nor free): ${leaked.slice(0, 20).join(", ")}${leaked.length > 20 ? ", …" : ""}`,
    );
  }
  const mem = state.inMemory;
  if (mem !== undefined) {
    const same = (a: readonly number[], b: readonly number[]) =>
      a.length === b.length && a.every((x, i) => x === b[i]);
    // releasePending() moves ids from pending to free without a commit, so compare the
    // union, and require only that what memory still holds back is pending on disk.
    const asc = (a: number[]) => a.sort((x, y) => x - y);
    if (!same(asc([...mem.free, ...mem.pending]), asc([...listedFree, ...listedPending]))) {
      problems.push("in-memory free and pending ids differ from the free-list on disk");
    }
    const onDisk = new Set(listedPending);
    if (!mem.pending.every((id) => onDisk.has(id))) {
      problems.push("in-memory pending ids are not all pending on disk");
    }
    if (!same(mem.freelistPages, chain)) problems.push("in-memory free-list chain differs");
    if (mem.pageCount !== m.pageCount) problems.push("in-memory page count differs");
  }
  return problems;
}
