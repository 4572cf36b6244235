/**
 * Branch pages: separator keys and child page ids.
 *
 * | offset   | size | field                                                           |
 * |---------:|-----:|-----------------------------------------------------------------|
 * |        0 |   16 | page header: type 2 (branch), u8 at 5 = height (children are    |
 * |          |      | leaves at height 1), u16 at 6 = separator count n               |
 * |       16 |    8 | child 0 page id u64                                             |
 * |       24 |  2·n | slots: u16 page offset of entry i                               |
 * |        … |    … | free space, then the entries packed up to the end of the page   |
 *
 * Entry i: u16 key length, u64 page id of child i + 1, key bytes.
 *
 * Separator i divides child i from child i + 1: every key under child i is < key i, every
 * key under child i + 1 is >= key i. Separators are the shortest prefix of the right side's
 * first key that still exceeds the left side's last key, which keeps branches wide when keys
 * share long prefixes (dotted groups do). The height makes a corrupt link that points up or
 * sideways detectable, so a walk always terminates.
 */
import { readU64, writeU64 } from "../codec.js";
import { corrupted } from "../errors.js";
import { newPage, OFF_AUX8, OFF_AUX16, type PageId, PageType } from "../pager/page.js";

const CHILD0_AT = 16;
const SLOTS_AT = 24;
const ENTRY_FIXED = 10;

export const BRANCH_FIXED = SLOTS_AT;

/** Bytes one separator costs in a branch: slot, length, child id, key. */
export function separatorCost(key: Buffer): number {
  return 2 + ENTRY_FIXED + key.length;
}

export interface BranchNode {
  readonly height: number;
  readonly children: PageId[];
  readonly keys: Buffer[];
}

export function branchHeight(page: Buffer): number {
  return page[OFF_AUX8]!;
}

/** Decodes a verified branch page; keys are views into it. */
export function decodeBranch(page: Buffer, base: number, file: string): BranchNode {
  const height = page[OFF_AUX8]!;
  const n = page.readUInt16LE(OFF_AUX16);
  if (height === 0) throw corrupted("branch page with height 0", base + OFF_AUX8, file);
  const lo = SLOTS_AT + 2 * n;
  if (lo > page.length)
    throw corrupted(`branch claims ${n} keys, more than fit`, base + OFF_AUX16, file);
  const child = (at: number): PageId => {
    const id = readU64(page, at);
    if (id < 2) throw corrupted(`branch child link ${id} invalid`, base + at, file);
    return id as PageId;
  };
  const children: PageId[] = [child(CHILD0_AT)];
  const keys: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const off = page.readUInt16LE(SLOTS_AT + 2 * i);
    if (off < lo || off + ENTRY_FIXED > page.length) {
      throw corrupted(`branch entry offset ${off} out of bounds`, base + SLOTS_AT + 2 * i, file);
    }
    const len = page.readUInt16LE(off);
    if (off + ENTRY_FIXED + len > page.length) {
      throw corrupted("branch key runs past the page", base + off, file);
    }
    children.push(child(off + 2));
    keys.push(page.subarray(off + ENTRY_FIXED, off + ENTRY_FIXED + len));
  }
  return { height, children, keys };
}

export function branchBytes(keys: readonly Buffer[], from = 0, to = keys.length): number {
  let bytes = BRANCH_FIXED;
  for (let i = from; i < to; i++) bytes += separatorCost(keys[i]!);
  return bytes;
}

/** Encodes children[from..to] with the keys between them (keys[from..to-1]). */
export function encodeBranch(
  pageSize: number,
  height: number,
  children: readonly PageId[],
  keys: readonly Buffer[],
  from = 0,
  to = children.length,
): Buffer {
  const n = to - from - 1;
  if (height < 1 || height > 255) throw new Error(`internal: branch height ${height}`);
  const page = newPage(pageSize, PageType.Branch, n, height);
  writeU64(page, children[from]!, CHILD0_AT);
  let at = pageSize;
  for (let i = 0; i < n; i++) at -= ENTRY_FIXED + keys[from + i]!.length;
  if (at < SLOTS_AT + 2 * n) throw new Error("internal: branch entries do not fit");
  for (let i = 0; i < n; i++) {
    const key = keys[from + i]!;
    page.writeUInt16LE(at, SLOTS_AT + 2 * i);
    page.writeUInt16LE(key.length, at);
    writeU64(page, children[from + i + 1]!, at + 2);
    key.copy(page, at + ENTRY_FIXED);
    at += ENTRY_FIXED + key.length;
  }
  return page;
}

/** Index of the child whose subtree may hold `key`: the number of separators <= key. */
export function childIndex(keys: readonly Buffer[], key: Buffer): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (Buffer.compare(keys[mid]!, key) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Shortest key s with left < s <= right (requires left < right). */
export function shortestSeparator(left: Buffer, right: Buffer): Buffer {
  const n = Math.min(left.length, right.length);
  let i = 0;
  while (i < n && left[i] === right[i]) i++;
  return right.subarray(0, i + 1);
}
