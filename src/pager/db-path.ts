/**
 * The one name of a database's page file, from which its sidecars are named (`P.wal`,
 * `P.lock`, `P.compact.tmp`, …).
 *
 * Why: the lock is a file named after the page file. Opened through a symlink, a relative
 * path or a symlinked directory, the same page file would get a second lock file and a
 * second WAL, so two handles could write it at once and one would lose the other's writes
 * (a review found exactly that). And a relative path is read again on every file operation:
 * after `process.chdir()`, a compaction would write the database into another directory.
 *
 * So the path is made absolute and every symlink in it is resolved, once, at open. Two hard
 * links to one page file remain two names: emdb cannot tell them apart from two databases.
 */
import * as fs from "node:fs";
import * as path from "node:path";

/** Symlink hops followed before giving up, as Linux's own limit (ELOOP). */
const MAX_LINKS = 40;

/**
 * `p` absolute, with every symlink resolved as the kernel would: `realpath(3)`, never a
 * lexical `path.resolve` first, which would read `link/..` as the directory holding the
 * link instead of the parent of its target. A page file that does not exist yet (or a
 * symlink to one that does not) resolves through its directory, so the first open and every
 * later one use the same name. A directory that does not exist is left as given: opening
 * the file there fails with its own error.
 */
export function canonicalPath(p: string): string {
  let cur = p;
  for (let hops = 0; hops <= MAX_LINKS; hops++) {
    try {
      return fs.realpathSync.native(cur);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    // The file is missing, or is a symlink to a missing file: resolve its directory, and
    // follow the link ourselves, since the open would create the file at its target.
    let dir: string;
    try {
      dir = fs.realpathSync.native(path.dirname(cur));
    } catch {
      return path.resolve(cur);
    }
    const name = path.join(dir, path.basename(cur));
    let target: string;
    try {
      target = fs.readlinkSync(name);
    } catch {
      return name; // not a symlink: a file still to be created
    }
    // Joined as text, so the next round resolves any `..` in the target through the kernel.
    cur = path.isAbsolute(target) ? target : `${dir}${path.sep}${target}`;
  }
  const err = new Error(`too many levels of symbolic links: ${p}`) as NodeJS.ErrnoException;
  err.code = "ELOOP";
  throw err;
}
