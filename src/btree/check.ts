/**
 * The consistency checker for the tree of the last commit, run on top of the pager's page
 * accounting (`Pager.check`): every tree and overflow page is claimed exactly once, keys
 * ascend strictly within and across pages, every key lies inside the range its separators
 * give it, heights decrease by one per level, overflow chains have the length their record
 * says, and the entry count matches the meta. Problems are collected, never thrown, so one
 * run reports everything it can reach.
 *
 * `treeShape` measures the working tree (fill per page type), for tests and stats.
 */
import { type PageId, PageType } from "../pager/page.js";
import type { Pager } from "../pager/pager.js";
import { BRANCH_FIXED, branchBytes, decodeBranch } from "./branch.js";
import { leafCount, leafRecordAt, REC_CONTIGUOUS } from "./leaf.js";
import { leafBody } from "./limits.js";
import { checkOverflowPage, overflowPageCount } from "./overflow.js";

export function checkTree(pager: Pager): string[] {
  const file = pager.path;
  return pager.check((v) => {
    const P = v.pageSize;
    let entries = 0;
    const problem = (id: number, msg: string) => v.problem(`page ${id}: ${msg}`);
    const fmt = (b: Buffer) => b.toString("hex");

    const chain = (leafId: number, head: number, length: number, contiguous: boolean) => {
      let id = head;
      const n = overflowPageCount(P, length);
      for (let k = 0; k < n; k++) {
        if (!v.claim(id, `overflow chain of leaf ${leafId}`)) return;
        const page = v.read(id, PageType.Overflow);
        if (page === undefined) return;
        id = checkOverflowPage(page, id, k, length, contiguous, file);
      }
    };

    const visit = (
      id: number,
      height: number | undefined,
      lo: Buffer | undefined,
      hi: Buffer | undefined,
      what: string,
    ): void => {
      if (!v.claim(id, what)) return;
      const type =
        height === undefined ? undefined : height === 0 ? PageType.Leaf : PageType.Branch;
      const page = v.read(id, type);
      if (page === undefined) return;
      const base = id * P;
      try {
        if (page[4] === PageType.Leaf) {
          const n = leafCount(page);
          if (n === 0) problem(id, "empty leaf");
          let prev: Buffer | undefined;
          for (let i = 0; i < n; i++) {
            const r = leafRecordAt(page, i, base, file);
            if (prev !== undefined && Buffer.compare(prev, r.key) >= 0) {
              problem(id, `key ${fmt(r.key)} does not ascend after ${fmt(prev)}`);
            }
            if (lo !== undefined && Buffer.compare(r.key, lo) < 0) {
              problem(id, `key ${fmt(r.key)} is below its separator ${fmt(lo)}`);
            }
            if (hi !== undefined && Buffer.compare(r.key, hi) >= 0) {
              problem(id, `key ${fmt(r.key)} is not below its separator ${fmt(hi)}`);
            }
            prev = r.key;
            if (r.inline === undefined) {
              chain(id, r.head, r.valueLength, (r.flags & REC_CONTIGUOUS) !== 0);
            }
          }
          entries += n;
          return;
        }
        if (page[4] !== PageType.Branch) {
          problem(id, "is not a tree page");
          return;
        }
        const node = decodeBranch(page, base, file);
        if (height !== undefined && node.height !== height) {
          problem(id, `height ${node.height}, expected ${height}`);
          return;
        }
        for (let i = 0; i < node.keys.length; i++) {
          const k = node.keys[i]!;
          if (i > 0 && Buffer.compare(node.keys[i - 1]!, k) >= 0) {
            problem(id, `separator ${fmt(k)} does not ascend`);
          }
          if (
            (lo !== undefined && Buffer.compare(k, lo) < 0) ||
            (hi !== undefined && Buffer.compare(k, hi) >= 0)
          ) {
            problem(id, `separator ${fmt(k)} lies outside its parent's range`);
          }
        }
        for (let i = 0; i < node.children.length; i++) {
          visit(
            node.children[i]!,
            node.height - 1,
            i === 0 ? lo : node.keys[i - 1],
            i < node.keys.length ? node.keys[i] : hi,
            `child ${i} of branch ${id}`,
          );
        }
      } catch (err) {
        v.problem(err instanceof Error ? err.message : String(err));
      }
    };

    if (v.meta.root !== 0) visit(v.meta.root, undefined, undefined, undefined, "tree root");
    if (entries !== v.meta.entryCount) {
      v.problem(`tree holds ${entries} entries, the meta says ${v.meta.entryCount}`);
    }
  });
}

export interface TreeShape {
  readonly height: number;
  readonly leaves: number;
  readonly branches: number;
  readonly overflowPages: number;
  readonly entries: number;
  /** Average share of the leaf body in use (0..1). */
  readonly leafFill: number;
  /** Average share of the branch page in use (0..1). */
  readonly branchFill: number;
  /** Leaves below a quarter full. */
  readonly underfullLeaves: number;
}

/** Page counts and fill of the working tree. */
export function treeShape(pager: Pager, root: PageId): TreeShape {
  const P = pager.pageSize;
  let leaves = 0;
  let branches = 0;
  let overflowPages = 0;
  let entries = 0;
  let leafBytes = 0;
  let branchBytesUsed = 0;
  let underfullLeaves = 0;
  let height = 0;
  const visit = (id: PageId, depth: number) => {
    const page = pager.read(id, undefined);
    if (page[4] === PageType.Leaf) {
      height = Math.max(height, depth);
      leaves++;
      const n = leafCount(page);
      entries += n;
      let used = 0;
      for (let i = 0; i < n; i++) {
        const r = leafRecordAt(page, i, id * P, pager.path);
        used += r.size + 2;
        if (r.inline === undefined) overflowPages += overflowPageCount(P, r.valueLength);
      }
      leafBytes += used;
      if (used < leafBody(P) / 4) underfullLeaves++;
      return;
    }
    const node = decodeBranch(page, id * P, pager.path);
    branches++;
    branchBytesUsed += branchBytes(node.keys) - BRANCH_FIXED;
    for (const c of node.children) visit(c, depth + 1);
  };
  if (root !== 0) visit(root, 1);
  return {
    height,
    leaves,
    branches,
    overflowPages,
    entries,
    leafFill: leaves === 0 ? 0 : leafBytes / (leaves * leafBody(P)),
    branchFill: branches === 0 ? 0 : branchBytesUsed / (branches * (P - BRANCH_FIXED)),
    underfullLeaves,
  };
}
