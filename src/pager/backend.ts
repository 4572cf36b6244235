/**
 * The storage-backend interface: the only way code below `shards/` touches the disk.
 *
 * Two implementations: `FileBackend` (real files, positional I/O, fdatasync, directory
 * fsync) and `MemoryBackend` (test double that keeps a durable and a volatile image of
 * every file and of the directory, so a test can "crash" between any two writes and see
 * exactly what a power loss would leave, and can inject I/O errors at named failpoints).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { EmdbError } from "../errors.js";

export interface StorageFile {
  readonly name: string;
  size(): number;
  /** Reads up to `length` bytes at `position` into `buf[offset..]`; returns the count read. */
  read(buf: Buffer, offset: number, length: number, position: number): number;
  /** Writes all of `buf[offset..offset+length]` at `position`. */
  write(buf: Buffer, offset: number, length: number, position: number): void;
  truncate(length: number): void;
  /** Makes every completed write to this file durable (fdatasync). */
  sync(): void;
  close(): void;
  /** The OS file descriptor, when there is one (used for mmap and locks). */
  readonly fd: number | undefined;
}

export interface StorageBackend {
  /** Opens a file; `create` makes it when missing. Throws ENOENT-style errors otherwise. */
  open(name: string, create: boolean): StorageFile;
  exists(name: string): boolean;
  remove(name: string): void;
  /** Atomically replaces `to` with `from`. */
  rename(from: string, to: string): void;
  /** Makes the directory entries of `dir` durable (after create, rename, remove). */
  syncDir(dir: string): void;
}

function ioError(op: string, name: string, cause: unknown): EmdbError {
  const msg = cause instanceof Error ? cause.message : String(cause);
  return new EmdbError("EMDB_IO", `${op} failed: ${msg}`, { file: name, cause });
}

class RealFile implements StorageFile {
  private closed = false;
  constructor(
    readonly name: string,
    readonly fd: number,
  ) {}

  size(): number {
    return fs.fstatSync(this.fd).size;
  }

  read(buf: Buffer, offset: number, length: number, position: number): number {
    let done = 0;
    while (done < length) {
      const n = fs.readSync(this.fd, buf, offset + done, length - done, position + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  write(buf: Buffer, offset: number, length: number, position: number): void {
    let done = 0;
    try {
      while (done < length) {
        done += fs.writeSync(this.fd, buf, offset + done, length - done, position + done);
      }
    } catch (err) {
      throw ioError("write", this.name, err);
    }
  }

  truncate(length: number): void {
    fs.ftruncateSync(this.fd, length);
  }

  sync(): void {
    try {
      fs.fdatasyncSync(this.fd);
    } catch (err) {
      throw ioError("fdatasync", this.name, err);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
  }
}

export class FileBackend implements StorageBackend {
  open(name: string, create: boolean): StorageFile {
    const flags = create ? fs.constants.O_RDWR | fs.constants.O_CREAT : fs.constants.O_RDWR;
    return new RealFile(name, fs.openSync(name, flags, 0o644));
  }

  exists(name: string): boolean {
    return fs.existsSync(name);
  }

  remove(name: string): void {
    fs.rmSync(name, { force: true });
  }

  rename(from: string, to: string): void {
    fs.renameSync(from, to);
  }

  syncDir(dir: string): void {
    let fd: number | undefined;
    try {
      fd = fs.openSync(dir, fs.constants.O_RDONLY);
      fs.fsyncSync(fd);
    } catch (err) {
      // Some filesystems refuse fsync on a directory (EINVAL/EISDIR); there is nothing more
      // we can do there, and every other error is real.
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "EINVAL" && code !== "EISDIR") throw ioError("directory fsync", dir, err);
    } finally {
      if (fd !== undefined) fs.closeSync(fd);
    }
  }
}

/** Directory that holds `file`, for `syncDir`. */
export function dirOf(file: string): string {
  return path.dirname(path.resolve(file));
}

// ---------------------------------------------------------------------------------------------
// MemoryBackend: the crash simulator.

/** A failpoint hook: called before every mutating operation; throw to inject a fault. */
export type FaultHook = (
  op: "write" | "sync" | "truncate" | "rename" | "remove" | "syncDir",
  /** The file; for "rename" the source; for "syncDir" the directory. */
  name: string,
) => void;

/** A file's contents (an inode): directory entries point at it, open handles hold it. */
interface MemImage {
  /** What the "disk" holds after the last sync. */
  durable: Buffer;
  /** What reads see now (page cache). */
  live: Buffer;
}

export interface CrashOptions {
  /**
   * Keep the directories as they are now (every create, rename and remove since the last
   * `syncDir` survives) instead of as of that `syncDir` (the default: all of them undone).
   * File contents revert to their last sync either way.
   */
  readonly keepDirectory?: boolean | undefined;
  /**
   * A disk whose volatile cache writes sectors back in any order: asked once for each
   * 512-byte sector a file's unsynced writes changed (and once for a changed length), keeps
   * the unsynced bytes where it returns true. Without it every unsynced byte is lost. A kept
   * length with its sectors lost reads as zeros, as an unwritten extent does.
   */
  readonly keepSector?: (() => boolean) | undefined;
}

const SECTOR = 512;

/** What a power loss leaves of a file: its durable bytes, plus the unsynced sectors `keep` picks. */
function survivingBytes(img: MemImage, keep: (() => boolean) | undefined): Buffer {
  const { durable, live } = img;
  if (keep === undefined) return Buffer.from(durable);
  const length = live.length !== durable.length && keep() ? live.length : durable.length;
  const out = Buffer.alloc(length);
  durable.copy(out, 0, 0, Math.min(length, durable.length));
  for (let at = 0; at < length; at += SECTOR) {
    const end = Math.min(at + SECTOR, length);
    const next = live.subarray(at, Math.min(end, live.length));
    if (next.length === 0) break;
    if (!next.equals(out.subarray(at, at + next.length)) && keep()) next.copy(out, at);
  }
  return out;
}

class MemFile implements StorageFile {
  readonly fd = undefined;
  constructor(
    readonly name: string,
    private readonly img: MemImage,
    private readonly backend: MemoryBackend,
  ) {}

  size(): number {
    return this.img.live.length;
  }

  read(buf: Buffer, offset: number, length: number, position: number): number {
    const live = this.img.live;
    if (position >= live.length) return 0;
    const n = Math.min(length, live.length - position);
    live.copy(buf, offset, position, position + n);
    return n;
  }

  write(buf: Buffer, offset: number, length: number, position: number): void {
    this.backend.hook?.("write", this.name);
    const img = this.img;
    const end = position + length;
    if (end > img.live.length) {
      const grown = Buffer.alloc(end);
      img.live.copy(grown);
      img.live = grown;
    }
    buf.copy(img.live, position, offset, offset + length);
  }

  truncate(length: number): void {
    this.backend.hook?.("truncate", this.name);
    const img = this.img;
    const next = Buffer.alloc(length);
    img.live.copy(next, 0, 0, Math.min(length, img.live.length));
    img.live = next;
  }

  sync(): void {
    this.backend.hook?.("sync", this.name);
    this.img.durable = Buffer.from(this.img.live);
  }

  close(): void {}
}

/**
 * In-memory files with a separate durable image, in directories with a separate durable
 * state. A file's contents are an image that names point at and open handles hold, as an
 * inode: a handle keeps its file across a rename or a remove of its name. `sync()` makes a
 * file's bytes durable; `syncDir(dir)` makes the names in `dir` durable (which image each
 * points at, and which are gone). `crash()` is a power loss with a volatile cache: every file
 * is back to the bytes of its last sync, and the directories are back to their last
 * `syncDir` (unsynced creates, renames and removes undone: a rename leaves its source with
 * its contents and its target as it was), or, with `keepDirectory`, stay as they are (all of
 * those done): POSIX rename is atomic, so the names never show half of one.
 */
export class MemoryBackend implements StorageBackend {
  /** Each name's image, as `open` and `exists` see it now. */
  private readonly files = new Map<string, MemImage>();
  /** Each name's image as of the last `syncDir` of its directory (or a `setBytes`). */
  private readonly durableFiles = new Map<string, MemImage>();
  hook: FaultHook | undefined;

  /** The image `name` points at now: tests read and edit its `live` and `durable` bytes. */
  image(name: string): MemImage {
    const img = this.files.get(name);
    if (img === undefined) throw ioError("open", name, new Error("ENOENT: no such file"));
    return img;
  }

  open(name: string, create: boolean): StorageFile {
    let img = this.files.get(name);
    if (img === undefined) {
      if (!create) throw ioError("open", name, new Error("ENOENT: no such file"));
      // A new name: not durable until its directory is synced.
      img = { durable: Buffer.alloc(0), live: Buffer.alloc(0) };
      this.files.set(name, img);
    }
    return new MemFile(name, img, this);
  }

  exists(name: string): boolean {
    return this.files.has(name);
  }

  remove(name: string): void {
    this.hook?.("remove", name);
    this.files.delete(name);
  }

  rename(from: string, to: string): void {
    this.hook?.("rename", from);
    const img = this.image(from);
    this.files.delete(from);
    this.files.set(to, img);
  }

  syncDir(dir: string): void {
    this.hook?.("syncDir", dir);
    const d = path.resolve(dir);
    for (const name of this.durableFiles.keys()) {
      if (dirOf(name) === d && !this.files.has(name)) this.durableFiles.delete(name);
    }
    for (const [name, img] of this.files) {
      if (dirOf(name) === d) this.durableFiles.set(name, img);
    }
  }

  /**
   * Simulates a power loss: unsynced bytes are gone (or some of their sectors stay, with
   * `keepSector`), and so are unsynced directory changes unless `keepDirectory` (see the
   * class comment). Removes the hook.
   */
  crash(options: CrashOptions = {}): void {
    const names = [...(options.keepDirectory === true ? this.files : this.durableFiles)];
    this.files.clear();
    this.durableFiles.clear();
    for (const [name, img] of names) {
      img.live = survivingBytes(img, options.keepSector);
      img.durable = Buffer.from(img.live);
      this.files.set(name, img);
      this.durableFiles.set(name, img);
    }
    this.hook = undefined;
  }

  /**
   * An independent copy, durable and unsynced state alike: a power loss can be tried on it
   * while this one goes on. Open handles and the hook are not copied.
   */
  clone(): MemoryBackend {
    const c = new MemoryBackend();
    const copies = new Map<MemImage, MemImage>();
    const copy = (img: MemImage): MemImage => {
      let x = copies.get(img);
      if (x === undefined) {
        x = { durable: Buffer.from(img.durable), live: Buffer.from(img.live) };
        copies.set(img, x);
      }
      return x;
    };
    for (const [name, img] of this.files) c.files.set(name, copy(img));
    for (const [name, img] of this.durableFiles) c.durableFiles.set(name, copy(img));
    return c;
  }

  /** A copy of the current (live) bytes of a file, for byte-surgery tests. */
  bytes(name: string): Buffer {
    return Buffer.from(this.image(name).live);
  }

  /**
   * Makes `name` hold `data`, durably (bytes and directory entry). An existing file is
   * rewritten in place, so handles open on it see the new bytes.
   */
  setBytes(name: string, data: Buffer): void {
    const img = this.files.get(name) ?? { durable: Buffer.alloc(0), live: Buffer.alloc(0) };
    img.durable = Buffer.from(data);
    img.live = Buffer.from(data);
    this.files.set(name, img);
    this.durableFiles.set(name, img);
  }

  /** The names as they are now. */
  names(): string[] {
    return [...this.files.keys()];
  }
}
