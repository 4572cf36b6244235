/**
 * Overflow chains: the bytes of a value too large to sit in its leaf.
 *
 * | offset | size | field                                                  |
 * |-------:|-----:|--------------------------------------------------------|
 * |      0 |   16 | page header: type 3 (overflow), u16 at 6 = chunk bytes |
 * |     16 |    8 | next page id u64 (0 = last page of the chain)          |
 * |     24 |    … | chunk bytes                                            |
 *
 * Every page but the last is full, so the value length stored in the record fixes the
 * number of pages: a walk never follows more links than that, and a cycle cannot hang it.
 * Chains are allocated as one run of adjacent pages whenever possible (always for large
 * values, which extend the file rather than scatter), and the record then says so: such a
 * chain is read with a few large reads and freed without reading it at all. Short chains
 * may take scattered free pages so that small holes get reused.
 */
import { readU64, writeU64 } from "../codec.js";
import { corrupted } from "../errors.js";
import { newPage, OFF_AUX16, PAGE_HEADER_SIZE, type PageId, PageType } from "../pager/page.js";
import type { Pager } from "../pager/pager.js";

const NEXT_AT = PAGE_HEADER_SIZE;
const DATA_AT = PAGE_HEADER_SIZE + 8;
/** Chains up to this many pages may use scattered free pages instead of a run. */
const SCATTER_MAX = 16;
/** Pages per read when loading an adjacent chain. */
const READ_BATCH = 256;

export function overflowCapacity(pageSize: number): number {
  return pageSize - DATA_AT;
}

export function overflowPageCount(pageSize: number, length: number): number {
  return Math.ceil(length / overflowCapacity(pageSize));
}

/** Writes `value` into a new chain. */
export function writeOverflow(pager: Pager, value: Buffer): { head: PageId; contiguous: boolean } {
  const P = pager.pageSize;
  const cap = overflowCapacity(P);
  const n = overflowPageCount(P, value.length);
  const ids: PageId[] = [];
  const first = pager.allocateRun(n, n > SCATTER_MAX);
  if (first !== undefined) for (let k = 0; k < n; k++) ids.push((first + k) as PageId);
  else for (let k = 0; k < n; k++) ids.push(pager.allocate());
  let contiguous = true;
  for (let k = 0; k < n; k++) {
    const start = k * cap;
    const chunk = Math.min(cap, value.length - start);
    const page = newPage(P, PageType.Overflow, chunk);
    const next = ids[k + 1] ?? 0;
    if (next !== 0 && next !== ids[k]! + 1) contiguous = false;
    writeU64(page, next, NEXT_AT);
    value.copy(page, DATA_AT, start, start + chunk);
    pager.write(ids[k]!, page);
  }
  return { head: ids[0]!, contiguous };
}

/** Checks one chain page; returns its next link. */
function checkPage(
  page: Buffer,
  id: number,
  k: number,
  n: number,
  length: number,
  cap: number,
  contiguous: boolean,
  file: string,
): number {
  const base = id * page.length;
  const want = k === n - 1 ? length - k * cap : cap;
  if (page.readUInt16LE(OFF_AUX16) !== want) {
    throw corrupted(
      `overflow page ${id} holds ${page.readUInt16LE(OFF_AUX16)} bytes, expected ${want}`,
      base + OFF_AUX16,
      file,
    );
  }
  const next = readU64(page, NEXT_AT);
  const ok = k === n - 1 ? next === 0 : next >= 2 && (!contiguous || next === id + 1);
  if (!ok) throw corrupted(`overflow page ${id} has a bad next link ${next}`, base + NEXT_AT, file);
  return next;
}

/**
 * Reads a whole value. `from` is the file offset of the record that names the chain, for
 * errors about the head link.
 */
export function readOverflow(
  pager: Pager,
  head: number,
  length: number,
  contiguous: boolean,
  from: number,
): Buffer {
  const P = pager.pageSize;
  const cap = overflowCapacity(P);
  const n = overflowPageCount(P, length);
  if (n >= pager.pageCount) {
    throw corrupted(`overflow value of ${length} bytes is longer than the file`, from, pager.path);
  }
  const out = Buffer.allocUnsafe(length);
  if (contiguous) {
    if (head + n > pager.pageCount) {
      throw corrupted(`overflow chain ${head}+${n} runs past the file`, from, pager.path);
    }
    for (let k0 = 0; k0 < n; k0 += READ_BATCH) {
      const ids: PageId[] = [];
      for (let k = k0; k < Math.min(n, k0 + READ_BATCH); k++) ids.push((head + k) as PageId);
      const pages = pager.readMany(ids, PageType.Overflow, from);
      for (let k = k0; k < k0 + ids.length; k++) {
        const page = pages[k - k0]!;
        checkPage(page, head + k, k, n, length, cap, true, pager.path);
        page.copy(out, k * cap, DATA_AT, DATA_AT + Math.min(cap, length - k * cap));
      }
    }
    return out;
  }
  let id = head;
  let link = from;
  for (let k = 0; k < n; k++) {
    const page = pager.read(id as PageId, PageType.Overflow, link);
    const next = checkPage(page, id, k, n, length, cap, false, pager.path);
    page.copy(out, k * cap, DATA_AT, DATA_AT + Math.min(cap, length - k * cap));
    link = id * P + NEXT_AT;
    id = next;
  }
  return out;
}

/** The page ids of a chain (reads only scattered chains). */
export function overflowIds(
  pager: Pager,
  head: number,
  length: number,
  contiguous: boolean,
  from: number,
): PageId[] {
  const P = pager.pageSize;
  const cap = overflowCapacity(P);
  const n = overflowPageCount(P, length);
  const ids: PageId[] = [];
  if (contiguous) {
    if (head + n > pager.pageCount) {
      throw corrupted(`overflow chain ${head}+${n} runs past the file`, from, pager.path);
    }
    for (let k = 0; k < n; k++) ids.push((head + k) as PageId);
    return ids;
  }
  let id = head;
  let link = from;
  for (let k = 0; k < n; k++) {
    ids.push(id as PageId);
    const page = pager.read(id as PageId, PageType.Overflow, link);
    link = id * P + NEXT_AT;
    id = checkPage(page, id, k, n, length, cap, false, pager.path);
  }
  return ids;
}

export function freeOverflow(
  pager: Pager,
  head: number,
  length: number,
  contiguous: boolean,
  from: number,
): void {
  for (const id of overflowIds(pager, head, length, contiguous, from)) pager.free(id);
}

/** For `check()`: verifies a chain page read by the checker; returns its next link. */
export function checkOverflowPage(
  page: Buffer,
  id: number,
  k: number,
  length: number,
  contiguous: boolean,
  file: string,
): number {
  const cap = overflowCapacity(page.length);
  return checkPage(
    page,
    id,
    k,
    overflowPageCount(page.length, length),
    length,
    cap,
    contiguous,
    file,
  );
}
