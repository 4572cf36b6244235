/**
 * The database lock: one handle at a time per database, across this process and others.
 *
 * The lock file is `<dbPath>.lock`. It is never deleted, not even on release: deleting it
 * lets a third opener create a fresh file and lock that while a second one still holds the
 * old, unlinked inode (the unlink race, emdb-rs weakness D16).
 *
 * Two mechanisms, chosen by whether the native addon loaded:
 *
 * - "flock" (addon): flock(LOCK_EX | LOCK_NB) on the lock file. The kernel drops it when the
 *   process dies, however it dies, so a killed process never blocks the next open. A flock
 *   belongs to an open file description, so even a second open in this same process fails.
 *   (Closing a descriptor on which the lock was refused releases nothing: unlike fcntl
 *   locks, closing one descriptor does not drop locks held through another.) On NFS, Linux
 *   emulates flock with fcntl locks, which are per process: the in-process registry below
 *   still refuses a second handle there.
 *
 * - "pidfile" (fallback): the holder's pid in the lock file, checked with kill(pid, 0). This
 *   is advisory and racy between processes: two processes that read the file at the same
 *   moment can both take it (re-reading after the write narrows the window, nothing closes
 *   it), a recycled pid makes a dead holder look alive, and a holder on another host cannot
 *   be checked at all, so it counts as alive until someone deletes the file.
 *
 * With the addon, the page file itself is flocked too (`guardPageFile`), so that a hard link,
 * another name with a lock file of its own, cannot open the same database a second time.
 *
 * In both modes the file holds one JSON line naming the holder (pid, host, since, kind):
 * diagnostics for "who holds it" in the EMDB_LOCK_BUSY message, and the lock itself in
 * pidfile mode. Node opens files with O_CLOEXEC, so child processes never inherit the lock.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import { EmdbError, isEmdbError } from "../errors.js";
import { native } from "./native.js";

export type LockKind = "flock" | "pidfile";

export interface FileLock {
  /** The lock file, `<dbPath>.lock`. */
  readonly file: string;
  /** How the lock is held: a kernel flock, or the advisory pid-file fallback. */
  readonly kind: LockKind;
  /**
   * Also locks the page file itself (again after a compaction replaced it): a hard link is
   * another name for the same page file, with a lock file and a WAL of its own, and only a
   * lock on the file itself sees that it is already open, in this process or another. A
   * flock on a descriptor of its own, which nothing maps: a memory map holds its open file
   * description, and with it any flock taken through it, until the map is collected. Without
   * the native addon there is no flock, and hard links go unnoticed (the README says so).
   */
  guardPageFile(path: string): void;
  /** Releases the lock (the page file's too); the file stays. Calling it again does nothing. */
  release(): void;
}

interface Holder {
  pid: number;
  hostname: string;
  since: string;
  kind: LockKind;
}

/**
 * Lock files this process holds, by device and inode rather than by path, so a symlink, a
 * hard link or a different spelling of the path is still the same lock.
 */
const held = new Set<string>();

function keyOf(fd: number): string {
  const st = fs.fstatSync(fd);
  return `${st.dev}:${st.ino}`;
}

function readHolder(fd: number): Holder | undefined {
  try {
    const size = fs.fstatSync(fd).size;
    // A holder line is well under 1 KiB; anything longer is not ours.
    if (size === 0 || size > 4096) return undefined;
    const buf = Buffer.alloc(size);
    const n = fs.readSync(fd, buf, 0, size, 0);
    const parsed = JSON.parse(buf.toString("utf8", 0, n)) as Partial<Holder>;
    if (
      typeof parsed.pid !== "number" ||
      !Number.isSafeInteger(parsed.pid) ||
      parsed.pid <= 0 ||
      typeof parsed.hostname !== "string"
    ) {
      return undefined;
    }
    return {
      pid: parsed.pid,
      hostname: parsed.hostname,
      since: typeof parsed.since === "string" ? parsed.since : "?",
      kind: parsed.kind === "flock" ? "flock" : "pidfile",
    };
  } catch {
    // Torn by a concurrent writer, or not JSON: nobody we can name holds it.
    return undefined;
  }
}

function writeHolder(fd: number, kind: LockKind): void {
  const line = `${JSON.stringify({
    pid: process.pid,
    hostname: os.hostname(),
    since: new Date().toISOString(),
    kind,
  } satisfies Holder)}\n`;
  fs.ftruncateSync(fd, 0);
  const buf = Buffer.from(line);
  fs.writeSync(fd, buf, 0, buf.length, 0);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else. Only ESRCH proves it is gone.
    return (err as NodeJS.ErrnoException).code !== "ESRCH";
  }
}

/** A holder that still counts: alive on this host, or anywhere on another host. */
function liveHolder(holder: Holder | undefined): holder is Holder {
  if (holder === undefined) return false;
  if (holder.hostname !== os.hostname()) return true;
  // Our own pid, yet not in `held`: a lock this process released, or a stale file left by
  // an earlier process that had the same pid (common in containers).
  if (holder.pid === process.pid) return false;
  return isAlive(holder.pid);
}

function busy(file: string, holder: Holder | undefined): EmdbError {
  let who = "another handle holds it";
  if (holder !== undefined) {
    who = `held by pid ${holder.pid} on ${holder.hostname} since ${holder.since}`;
    if (holder.kind === "pidfile") {
      who += "; if that process is gone, delete the lock file";
    }
  }
  return new EmdbError("EMDB_LOCK_BUSY", `the database is locked: ${who}`, { file });
}

function ioError(op: string, file: string, cause: unknown): EmdbError {
  const msg = cause instanceof Error ? cause.message : String(cause);
  return new EmdbError("EMDB_IO", `${op} failed: ${msg}`, { file, cause });
}

class HeldLock implements FileLock {
  private released = false;
  /** The descriptor holding the page file's flock (`guardPageFile`). */
  private pageFd: number | undefined;

  constructor(
    readonly file: string,
    readonly kind: LockKind,
    private readonly fd: number,
    private readonly key: string,
  ) {}

  guardPageFile(path: string): void {
    if (native === undefined) return;
    this.unguardPageFile();
    let fd: number;
    try {
      fd = fs.openSync(path, "r");
    } catch (err) {
      throw ioError("open page file to lock it", path, err);
    }
    let locked = false;
    try {
      locked = native.flock(fd, true, true);
    } catch (err) {
      throw ioError("lock of the page file", path, err);
    } finally {
      if (!locked) fs.closeSync(fd);
    }
    if (!locked) {
      throw new EmdbError(
        "EMDB_LOCK_BUSY",
        "the page file is already open under another name (a hard link to it), by this process or another",
        { file: path },
      );
    }
    this.pageFd = fd;
  }

  private unguardPageFile(): void {
    const fd = this.pageFd;
    this.pageFd = undefined;
    if (fd !== undefined) fs.closeSync(fd);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    held.delete(this.key);
    try {
      this.unguardPageFile();
    } catch {
      // Closing a read-only descriptor does not fail in a way that matters here.
    }
    try {
      // Emptied while still held, so a pid-file reader never sees our (living) pid as a
      // holder after we are done.
      fs.ftruncateSync(this.fd, 0);
    } catch {
      // Harmless either way: in flock mode the line is diagnostics only, and in pidfile mode
      // others see our live pid and stay out until we exit, which is safe, just strict.
    }
    // Closing the only descriptor of this open file description drops the flock.
    fs.closeSync(this.fd);
  }
}

/**
 * Takes the exclusive lock of the database at `dbPath`, or throws `EMDB_LOCK_BUSY` when a
 * handle in this process or another holds it (`EMDB_IO` when the lock file cannot be opened).
 */
export function acquireLock(dbPath: string): FileLock {
  const file = `${dbPath}.lock`;
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
  } catch (err) {
    throw ioError("open lock file", file, err);
  }
  try {
    const key = keyOf(fd);
    if (held.has(key)) throw busy(file, readHolder(fd));
    let kind: LockKind;
    if (native !== undefined) {
      kind = "flock";
      if (!native.flock(fd, true, true)) throw busy(file, readHolder(fd));
      // A pid-file holder (a process without the addon) does not flock: respect it too. A
      // stale "flock" line is ignored, since the kernel already proved that holder gone.
      const previous = readHolder(fd);
      if (previous?.kind === "pidfile" && liveHolder(previous)) throw busy(file, previous);
      writeHolder(fd, kind);
    } else {
      kind = "pidfile";
      const previous = readHolder(fd);
      if (liveHolder(previous)) throw busy(file, previous);
      writeHolder(fd, kind);
      // Another process may have read the same free file and written after us: whoever's
      // line is left in the file holds the lock.
      const now = readHolder(fd);
      if (now === undefined || now.pid !== process.pid || now.hostname !== os.hostname()) {
        throw busy(file, now);
      }
    }
    held.add(key);
    return new HeldLock(file, kind, fd, key);
  } catch (err) {
    // Closing releases nothing that another descriptor holds (see the header comment).
    fs.closeSync(fd);
    if (isEmdbError(err)) throw err;
    throw ioError("lock", file, err);
  }
}
