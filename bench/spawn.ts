/**
 * Runs one measuring child (bench/child.ts) to completion and returns the JSON it printed.
 * Children run one at a time: the machine has two cores and the figures are wall-clock.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const CHILD = fileURLToPath(new URL("./child.ts", import.meta.url));
const RESULT_TAG = "@@bench ";
/** A 1M-record SQLite load with its default 2 MB cache takes minutes on this machine. */
const CHILD_TIMEOUT_MS = 30 * 60 * 1000;

export type ChildOutcome =
  | { ok: true; result: Record<string, unknown> }
  | { ok: false; error: string };

export function runChild(args: readonly string[]): ChildOutcome {
  const r = spawnSync(process.execPath, ["--expose-gc", "--import", "tsx", CHILD, ...args], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    timeout: CHILD_TIMEOUT_MS,
    maxBuffer: 64 * 1024 * 1024,
  });
  const line = (r.stdout ?? "")
    .split("\n")
    .reverse()
    .find((l) => l.startsWith(RESULT_TAG));
  const result =
    line === undefined
      ? undefined
      : (JSON.parse(line.slice(RESULT_TAG.length)) as Record<string, unknown>);
  if (result !== undefined && typeof result.error !== "string" && r.status === 0) {
    return { ok: true, result };
  }
  const why =
    typeof result?.error === "string"
      ? result.error
      : r.error !== undefined
        ? r.error.message
        : r.signal !== null
          ? `child killed by ${r.signal}`
          : `child exited with status ${r.status} and no result`;
  const tail = (r.stderr ?? "").trim().split("\n").slice(-5).join("\n");
  return { ok: false, error: tail.length > 0 && !tail.includes(why) ? `${why}\n${tail}` : why };
}
