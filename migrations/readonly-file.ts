/**
 * A file opened with O_RDONLY for the legacy readers. They must never change what they read
 * (emdb-rs truncated torn tails in place; a migration here keeps the original intact), and a
 * read-only handle makes that a property of the OS rather than of the code.
 */
import * as fs from "node:fs";
import { EmdbError } from "../src/errors.js";
import type { PositionalReader } from "./legacy-log.js";

export interface ReadOnlyFile extends PositionalReader {
  readonly path: string;
  /** Length at open time. */
  readonly size: number;
  close(): void;
}

/** Opens `path` read-only; returns undefined when it does not exist. */
export function openReadOnly(path: string): ReadOnlyFile | undefined {
  let fd: number;
  try {
    fd = fs.openSync(path, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new EmdbError("EMDB_IO", `open failed: ${(err as Error).message}`, {
      file: path,
      cause: err,
    });
  }
  let size: number;
  try {
    size = fs.fstatSync(fd).size;
  } catch (err) {
    fs.closeSync(fd);
    throw new EmdbError("EMDB_IO", `stat failed: ${(err as Error).message}`, {
      file: path,
      cause: err,
    });
  }
  let closed = false;
  return {
    path,
    size,
    read(buf: Buffer, offset: number, length: number, position: number): number {
      let done = 0;
      try {
        while (done < length) {
          const n = fs.readSync(fd, buf, offset + done, length - done, position + done);
          if (n === 0) break;
          done += n;
        }
      } catch (err) {
        throw new EmdbError("EMDB_IO", `read failed: ${(err as Error).message}`, {
          file: path,
          offset: position + done,
          cause: err,
        });
      }
      return done;
    },
    close(): void {
      if (closed) return;
      closed = true;
      fs.closeSync(fd);
    },
  };
}
