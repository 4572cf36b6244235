/**
 * The storage-backend interface: the only way code below `shards/` touches the disk.
 *
 * Two implementations: `FileBackend` (real files, positional I/O, fdatasync, directory
 * fsync) and `MemoryBackend` (test double that keeps a durable and a volatile image of
 * every file, so a test can "crash" between any two writes and see exactly what a power
 * loss would leave, and can inject I/O errors at named failpoints).
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
  op: "write" | "sync" | "truncate" | "rename" | "remove",
  name: string,
) => void;

interface MemImage {
  /** What the "disk" holds after the last sync. */
  durable: Buffer;
  /** What reads see now (page cache). */
  live: Buffer;
  /** Whether the directory entry itself is durable (create/rename followed by syncDir). */
  entryDurable: boolean;
}

class MemFile implements StorageFile {
  readonly fd = undefined;
  constructor(
    readonly name: string,
    private readonly backend: MemoryBackend,
  ) {}

  private img(): MemImage {
    return this.backend.image(this.name);
  }

  size(): number {
    return this.img().live.length;
  }

  read(buf: Buffer, offset: number, length: number, position: number): number {
    const live = this.img().live;
    if (position >= live.length) return 0;
    const n = Math.min(length, live.length - position);
    live.copy(buf, offset, position, position + n);
    return n;
  }

  write(buf: Buffer, offset: number, length: number, position: number): void {
    this.backend.hook?.("write", this.name);
    const img = this.img();
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
    const img = this.img();
    const next = Buffer.alloc(length);
    img.live.copy(next, 0, 0, Math.min(length, img.live.length));
    img.live = next;
  }

  sync(): void {
    this.backend.hook?.("sync", this.name);
    const img = this.img();
    img.durable = Buffer.from(img.live);
  }

  close(): void {}
}

/**
 * In-memory files with a separate durable image. `crash()` throws away everything that was
 * not synced (file contents and directory entries), like a power loss with a volatile cache.
 */
export class MemoryBackend implements StorageBackend {
  private readonly files = new Map<string, MemImage>();
  hook: FaultHook | undefined;

  image(name: string): MemImage {
    const img = this.files.get(name);
    if (img === undefined) throw ioError("open", name, new Error("ENOENT: no such file"));
    return img;
  }

  open(name: string, create: boolean): StorageFile {
    if (!this.files.has(name)) {
      if (!create) throw ioError("open", name, new Error("ENOENT: no such file"));
      this.files.set(name, {
        durable: Buffer.alloc(0),
        live: Buffer.alloc(0),
        entryDurable: false,
      });
    }
    return new MemFile(name, this);
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
    this.files.set(to, { ...img, entryDurable: false });
  }

  syncDir(_dir: string): void {
    for (const img of this.files.values()) img.entryDurable = true;
  }

  /** Simulates a power loss: unsynced bytes and unsynced directory entries are gone. */
  crash(): void {
    for (const [name, img] of this.files) {
      if (!img.entryDurable) this.files.delete(name);
      else img.live = Buffer.from(img.durable);
    }
    this.hook = undefined;
  }

  /** A copy of the current (live) bytes of a file, for byte-surgery tests. */
  bytes(name: string): Buffer {
    return Buffer.from(this.image(name).live);
  }

  setBytes(name: string, data: Buffer): void {
    this.files.set(name, {
      durable: Buffer.from(data),
      live: Buffer.from(data),
      entryDurable: true,
    });
  }

  names(): string[] {
    return [...this.files.keys()];
  }
}
