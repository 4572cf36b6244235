/**
 * A line to a child's stdout, synchronously and whole. The pipe the parent reads may be
 * non-blocking, and while a loaded machine keeps the parent from reading, a full pipe makes
 * `writeSync` throw EAGAIN (one crash test's child died of it): wait a millisecond and try
 * again, and go on after a partial write. The lines are the child's acknowledgements, so
 * losing one would make the parent expect less than the child was promised.
 */
import { writeSync } from "node:fs";

const pause = new Int32Array(new SharedArrayBuffer(4));

export function writeLine(line: string): void {
  const buf = Buffer.from(`${line}\n`);
  let done = 0;
  while (done < buf.length) {
    try {
      done += writeSync(1, buf, done, buf.length - done);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
      Atomics.wait(pause, 0, 0, 1);
    }
  }
}
